//! Replay errors. Each names what an operator needs to find the problem: the target address,
//! the shard, the journal position and the key — never a password (addresses come from
//! [`crate::net::Endpoint::addr`], which has none).

use crate::journal::Position;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the target failed (connect, login, I/O) and retries did not help.
    #[error("target {addr}: {cause}")]
    Net {
        /// `host:port` of the target node.
        addr: String,
        /// The network error (already scrubbed of credentials).
        cause: crate::net::Error,
    },
    /// Reading the journal failed.
    #[error("journal shard {shard}: {cause}")]
    Journal {
        /// The shard directory name.
        shard: String,
        /// The journal error (names file and byte offset).
        cause: crate::journal::Error,
    },
    /// The journal holds nothing a replay can start from.
    #[error("journal shard {shard}: {why}")]
    NoSnapshot {
        /// The shard directory name.
        shard: String,
        /// What is missing.
        why: String,
    },
    /// A snapshot key exists on the target and `--on-conflict error` was asked for.
    #[error(
        "target {addr}: key {key} (db {db}) of shard {shard} at {position} already exists (--on-conflict error)"
    )]
    Conflict {
        /// `host:port` of the target node.
        addr: String,
        /// The shard.
        shard: String,
        /// The key, printable.
        key: String,
        /// Its database.
        db: u32,
        /// The journal position of the key.
        position: Position,
    },
    /// A non-zero database on a cluster target without a mapping to 0.
    #[error(
        "shard {shard} at {position}: db {db} cannot be written to a cluster target (only db 0 exists there): add --map-db {db}:0"
    )]
    ClusterDb {
        /// The shard.
        shard: String,
        /// The journal position.
        position: Position,
        /// The source database.
        db: u32,
    },
    /// The target answered something the protocol does not allow here.
    #[error("target {addr}: {what}")]
    Protocol {
        /// `host:port` of the target node.
        addr: String,
        /// What was wrong.
        what: String,
    },
    /// The checkpoint file could not be read or written.
    #[error("checkpoint {path}: {why}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A large value could not be streamed to the target ([`super::bigkey`]).
    #[error("shard {shard}: key {key} at {position}: {cause}")]
    LargeValue {
        /// The shard.
        shard: String,
        /// The key, printable.
        key: String,
        /// The journal position of the key's record.
        position: Position,
        /// What failed (boxed: it is large and rare).
        cause: Box<super::bigkey::StreamError>,
    },
    /// The options do not fit the journal or the target.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A key as printable text for messages: lossy UTF-8, control bytes escaped, at most 80
/// characters (keys can be binary and huge).
pub fn printable_key(key: &[u8]) -> String {
    let mut s = String::new();
    for c in String::from_utf8_lossy(&key[..key.len().min(120)]).chars() {
        if s.chars().count() >= 80 {
            s.push('…');
            return s;
        }
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    if key.len() > 120 {
        s.push('…');
    }
    s
}
