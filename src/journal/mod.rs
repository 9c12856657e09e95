//! The journal: shake's durable, segmented, compressed, checksummed, offset-indexed storage.
//!
//! A journal is a directory (`journal.json` plus one sub-directory per shard); each shard holds
//! append-only segment files named by their first [`Position`]; each segment is a header and a
//! sequence of frames; each frame is an independent zstd frame of records behind a small
//! checksummed header. The byte-level format is tabled in `docs/journal-format.md` and pinned
//! by the golden fixtures in `fixtures/journal/`.
//!
//! # Why our own storage
//!
//! No storage crate gives all of what a replication journal kept for years needs at once:
//! per-frame zstd (random access and parallel decoding), positions that are the master's
//! replication offsets (so capture resumes with PSYNC and readers seek by offset), sealing of
//! closed segments with a SHA-256 recorded in a manifest (so a copy across an air gap can be
//! audited), torn-tail recovery with explicit recovery modes, and a follower that tails files
//! being copied in from removable media. The ideas come from raft-engine, okaywal, commitlog and
//! fjall (`shared/design/style.md` §3); the code is small enough to own.
//!
//! # Layout
//!
//! | file | what it holds |
//! |------|---------------|
//! | `chunks.rs`   | chunk continuity of large snapshot values, checked by `verify` |
//! | `error.rs`    | [`Error`]: variants name file, byte offset and what is wrong |
//! | `position.rs` | [`Position`] = (epoch, replication offset, seq) |
//! | `record.rs`   | [`Record`] types and their bincode encoding |
//! | `record_ref.rs` | [`record_ref::RecordRef`]: the same records borrowing from a frame, for scanners and capture |
//! | `frame.rs`    | frame header, `check` (no allocation) then decode |
//! | `segment.rs`  | segment naming, header, seal footer, scanning frames |
//! | `index.rs`    | sparse per-segment index, derived and rebuildable |
//! | `manifest.rs` | `journal.json` / `shard.json`, atomic replacement |
//! | `writer.rs`   | [`ShardWriter`]: frames, rotation, sealing, fsync policy, durable position |
//! | `recovery.rs` | opening a shard for append after a crash: torn-tail truncation |
//! | `reader.rs`   | [`ShardReader`]: memory-mapped reading, seeking, parallel frames |
//! | `follower.rs` | [`Follower`]: tails a shard while frames and segments appear |
//! | `verify.rs`   | [`verify()`]: offline audit of a whole journal, JSON report |
//!
//! This module is plain synchronous Rust: no CLI, no progress output, no async runtime.

pub mod chunks;
pub mod error;
pub mod follower;
pub mod frame;
pub mod index;
pub mod manifest;
pub mod position;
pub mod reader;
pub mod record;
pub mod record_ref;
pub mod recovery;
pub mod segment;
pub mod verify;
pub mod writer;

pub use error::{Error, Result};
pub use follower::Follower;
pub use manifest::{JournalManifest, ShardInfo, Source, create, read_journal};
pub use position::Position;
pub use reader::{RecoveryMode, ShardReader};
pub use record::{
    AuxField, Command, Entry, FunctionLibrary, KeyRecord, Marker, ModuleAux, RdbChecksum, Record,
    SnapshotBegin, SnapshotEnd, Transaction, ValueChunk,
};
pub use verify::{Report, verify};
pub use writer::{FsyncPolicy, KeyValueWriter, ResumePoint, ShardWriter, WriterOptions};

/// The on-disk format version this build writes and the newest it reads. Bumped only for a
/// change old readers cannot skip; readers refuse newer versions rather than misread them.
pub const FORMAT_VERSION: u32 = 2;
