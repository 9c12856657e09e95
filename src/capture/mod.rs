//! Capture: acting as a replica of a Redis master and turning what it sends into journal input.
//!
//! We write the replica side of the protocol ourselves: no crate implements it, and every detail
//! matters for correctness — byte-exact offset accounting, never replying on the link, ACKing
//! only what is durable, the two RDB transfer forms (`$<len>` and diskless `$EOF:<mark>`), and
//! the keepalive newlines around them (see the design reference §1 and its traps 1–17).
//!
//! - [`replica`]: one replication session with one master: handshake, `PSYNC`, the RDB transfer
//!   as a sequence of byte chunks, then the command stream with each command's offset, `GETACK`
//!   answered and `REPLCONF ACK` sent every second with the offset the caller says is durable.
//! - [`stream`]: turns stream commands into journal units: `SELECT` tracked (also inside
//!   `MULTI`), `MULTI … EXEC` kept as one atomic group, keepalives (`PING`, `REPLCONF`) dropped
//!   from the data while their bytes still count in the offset.

pub mod journal_state;
pub mod metrics;
pub mod plan;
pub mod replica;
pub mod shard;
pub mod snapshot;
pub mod stream;
pub mod writer_thread;
