//! shake — move Redis data across networks that cannot see each other.
//!
//! `shake capture` acts as a replica of every master of a source, writes the RDB snapshot and
//! the live command stream into a durable journal keyed by replication offset; the journal is
//! carried across an air gap, audited offline, and replayed onto a destination.
//!
//! # Layout
//!
//! | module        | what it holds | knows about |
//! |---------------|---------------|-------------|
//! | [`resp`]      | RESP2/RESP3 frames: `check` (no allocation, reports the exact wire length) then `parse`; an encoder | bytes only, no I/O |
//! | [`net`]       | endpoint URLs, credentials that never print, TLS (rustls), the tokio connection, topology discovery (standalone / cluster / sentinel), key → slot | tokio |
//! | [`probe`]     | the pre-flight facts `shake probe` reports, gathered from a live server | `net` |
//! | [`cli`]       | clap definitions, one file per subcommand, and the command handlers (anyhow lives here) | everything |
//! | [`journal`]   | the durable journal: segments of checksummed zstd frames keyed by (epoch, replication offset), writer with rotation/sealing/fsync policy, crash recovery, readers, follower, `verify` (format in `docs/journal-format.md`) | std, zstd, memmap2, rayon |
//! | [`commands`]  | which arguments are keys, from Redis' own `COMMAND INFO` key specs (`commands.json`, generated) | serde |
//! | [`exit`]      | the documented process exit codes | nothing |
//! | [`logging`]   | tracing subscriber set-up for `--log-format text|json` | tracing |
//! | [`progress`]  | progress bars on a terminal, periodic log lines otherwise | indicatif, tracing |
//! | [`rdb`]       | RDB files and streams: streaming reader (events with exact value bytes, bounded memory), decoders for every version/encoding, DUMP payloads, rewrite into commands | bytes only, no I/O runtime |
//! | [`capture`]   | the replica side of the replication protocol (handshake, PSYNC, RDB transfer, stream with offsets, durable ACKs) and stream units (SELECT, MULTI/EXEC) | tokio, `net`, `resp` |
//! | [`scan`]      | offline rayon scanners over journal frames: statistics, commands, big keys (`shake inspect DIR`) | `journal`, `rdb`, rayon |
//! | [`replay`]    | applying a journal to a standalone or cluster target: snapshot keys by RESTORE or rewrite, the stream in order, pipelined with every reply checked, MOVED/ASK, checkpoint and resume, follow mode | tokio, `net`, `journal`, `rdb` |
//! | [`ship`]      | air-gap shipments: `ship` copies new sealed segments with a checksum list into a folder on removable media, `receive` verifies the hash chain and grows a journal on the far side (format in `docs/shipping.md`) | `journal`, std |
//! | [`compare`]   | key-level differences between a live source or a journal (replayed into a scratch server) and a destination: missing, extra, type, value, TTL; pipelined, per cluster node, DUMP bytes / decoded values / windows for big keys | tokio, `net`, `rdb`, `replay` |
//! | [`units`]     | parsing of sizes (`64MiB`) and durations (`30s`) shared by every flag | nothing |
//!
//! The planned pipeline (capture → journal → inspect/filter → replay) and where each future
//! module sits is drawn in `docs/architecture.md`. Storage and format modules (`rdb`, `journal`)
//! never depend on the CLI, progress output or the async runtime.
#![warn(missing_docs)]

pub mod capture;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod exit;
pub mod journal;
pub mod logging;
pub mod net;
pub mod probe;
pub mod progress;
pub mod rdb;
pub mod replay;
pub mod resp;
pub mod scan;
pub mod ship;
pub mod units;
