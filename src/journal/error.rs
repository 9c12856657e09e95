//! The journal's error type.
//!
//! Callers branch on the variant: `Corruption` means the bytes on disk are not what the format
//! says (the message names the file and byte offset), `Io` means the operating system refused,
//! `Order` means the caller tried to append a record that does not come after the last one.

use std::path::PathBuf;

use super::Position;

/// Everything that can go wrong while writing, recovering or reading a journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system failed an operation on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk do not follow the format: a bad magic, a checksum mismatch, a length out of
    /// bounds, a record that does not decode, positions out of order.
    #[error("{}: byte {offset}: {what}", file.display())]
    Corruption {
        /// The segment (or index) file holding the damage.
        file: PathBuf,
        /// Byte offset in `file` where the damaged structure starts.
        offset: u64,
        /// What is wrong, in words.
        what: String,
    },
    /// A manifest (`journal.json`, `shard.json`) is missing, unreadable or inconsistent with the
    /// segment files beside it.
    #[error("{}: {what}", file.display())]
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A file was written by a newer format version than this build understands. Old builds
    /// refuse rather than misread.
    #[error("{}: format version {found} is newer than this shake understands ({supported})", file.display())]
    UnsupportedVersion {
        /// The file carrying the version.
        file: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An append would break the strictly increasing order of positions.
    #[error("position {next} does not come after {last}: {what}")]
    Order {
        /// The last position already in the shard.
        last: Position,
        /// The position the caller asked for.
        next: Position,
        /// Which call was refused.
        what: String,
    },
    /// A single record is larger than a frame may ever be (see [`super::frame::MAX_FRAME_LEN`]).
    #[error("record at {position} encodes to {len} bytes, more than the frame limit {limit}")]
    TooLarge {
        /// Where the record would have gone.
        position: Position,
        /// Its encoded length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The shard is open for writing elsewhere: another process (a running capture) holds the
    /// exclusive lock on its `writer.lock`. Callers branch on it: `shake ship --include-active`
    /// then asks the running capture to seal instead of sealing itself.
    #[error("{} is already open for writing (another capture holds {})", dir.display(), lock.display())]
    Locked {
        /// The shard directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// The caller asked for something the journal cannot do (unknown shard, credentials in a
    /// source description, a shard already open for writing...).
    #[error("{0}")]
    Invalid(String),
}

/// The journal's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
