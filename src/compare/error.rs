//! Compare errors. Each says where: which side (`source` or `target`), the node address, and
//! for per-key failures the key (printable) and its database — never a password (addresses
//! come from [`crate::net::Endpoint::addr`], which has none, and server messages are scrubbed
//! by [`crate::net`]).

/// Why a comparison could not run to its end. Differences found are not errors: they are the
/// [`super::Report`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to a node failed (connect, login, I/O, an error reply to a command that must
    /// succeed).
    #[error("{side} {addr}: {cause}")]
    Net {
        /// `source` or `target`.
        side: &'static str,
        /// `host:port` of the node.
        addr: String,
        /// The network error (already scrubbed of credentials).
        cause: crate::net::Error,
    },
    /// A node answered a per-key read with a reply of a shape the command does not allow.
    #[error("{side} {addr}: key {key} (db {db}): {what}")]
    Reply {
        /// `source` or `target`.
        side: &'static str,
        /// `host:port` of the node.
        addr: String,
        /// The key, printable.
        key: String,
        /// Its database.
        db: u32,
        /// What was expected and what came.
        what: String,
    },
    /// A node answered a keyless command (SCAN, INFO, SELECT) unexpectedly, or redirections
    /// did not settle.
    #[error("{side} {addr}: {what}")]
    Protocol {
        /// `source` or `target`.
        side: &'static str,
        /// `host:port` of the node.
        addr: String,
        /// What was wrong.
        what: String,
    },
    /// The scratch server for a journal source could not be started or reached.
    #[error("scratch server: {0}")]
    Scratch(String),
    /// Replaying the journal into the scratch server failed.
    #[error("replaying journal {dir} into the scratch server: {cause}")]
    ScratchReplay {
        /// The journal directory.
        dir: String,
        /// The replay error or the summary of failed commands.
        cause: String,
    },
    /// The options do not fit the endpoints (a sentinel given, a db on a cluster, …).
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, Error>;
