//! The shipping error type.
//!
//! Every variant names what it is about — the file, the shard, the shipment's sequence number
//! and journal — because the person reading it stands at a machine on one side of an air gap
//! with a USB stick in hand and must know which file or which shipment to go back for.
//! [`Error::is_refusal`] separates "this shipment is not acceptable" (exit 3) from "the
//! operation could not run" (exit 1).

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while shipping or receiving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system failed an operation on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The journal (source or receiving side) could not be read or written.
    #[error("journal {}: {source}", dir.display())]
    Journal {
        /// The journal directory.
        dir: PathBuf,
        /// The journal error (it names the file).
        #[source]
        source: crate::journal::Error,
    },
    /// A state file of ours (`shipped.json`, `received.json`) or a source journal file does not
    /// say what it must; shipping stops rather than guess.
    #[error("{}: {what}", file.display())]
    State {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The media directory does not exist (media not mounted?).
    #[error("{}: no such directory (is the media mounted?)", dir.display())]
    NoMedia {
        /// The directory given with `--to`.
        dir: PathBuf,
    },
    /// A complete shipment with this name already exists on the media but the journal's
    /// `shipped.json` does not record it.
    #[error(
        "{} already exists but shipped.json does not record it (a ship interrupted after \
         the shipment was complete?): receive or remove it, then ship again",
        path.display()
    )]
    Exists {
        /// The existing folder.
        path: PathBuf,
    },
    /// The active segment of a shard was not sealed in time by the running capture.
    #[error(
        "shard {shard}: the running capture did not seal its active segment within {waited:?} \
         (is it a shake older than `shake ship --include-active`, or stuck?); request file {}",
        request.display()
    )]
    SealTimeout {
        /// The shard.
        shard: String,
        /// How long we waited.
        waited: Duration,
        /// The request file (removed again on timeout).
        request: PathBuf,
    },
    /// A folder holds no complete shipment.
    #[error("{}: {what}", path.display())]
    NoShipment {
        /// The folder given.
        path: PathBuf,
        /// What was found instead.
        what: String,
    },
    /// A shipment folder whose writing never finished (media pulled out, ship interrupted).
    #[error(
        "{} is an incomplete shipment (its writing was interrupted, e.g. the media was pulled \
         out): ignore it and ship again",
        path.display()
    )]
    Incomplete {
        /// The temporary folder.
        path: PathBuf,
    },
    /// `shipment.json` or `SHA256SUMS` is not what the format says.
    #[error("{}: {what}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A file listed in the shipment is missing.
    #[error("{}: missing from the shipment ({why})", file.display())]
    Missing {
        /// The file that should be there.
        file: PathBuf,
        /// Which list names it.
        why: String,
    },
    /// A file's SHA-256 or length is not the one the shipment records.
    #[error("{}: checksum mismatch: {what}", file.display())]
    Checksum {
        /// The damaged file.
        file: PathBuf,
        /// Expected and found values.
        what: String,
    },
    /// A segment in the shipment fails the journal's own checks (header, frames, seal, chain
    /// of segment numbers and positions).
    #[error("{}: {what}", file.display())]
    Segment {
        /// The segment file in the shipment.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The shipment belongs to another journal.
    #[error("shipment {sequence} belongs to journal {found}, the receiving journal is {expected}")]
    OtherJournal {
        /// The shipment's sequence number.
        sequence: u64,
        /// The receiving journal's identity.
        expected: String,
        /// The shipment's.
        found: String,
    },
    /// Shipments are missing between the last one received and this one.
    #[error(
        "journal {journal}: shipment {sequence} cannot be received: shipment(s) {} missing \
         (last received: {})",
        list(missing),
        last.map_or("none".to_string(), |l| l.to_string())
    )]
    Gap {
        /// The journal identity.
        journal: String,
        /// The shipment that was offered.
        sequence: u64,
        /// The sequence numbers not received yet that come before it.
        missing: Vec<u64>,
        /// The last sequence received.
        last: Option<u64>,
    },
    /// The shipment was received before.
    #[error("shipment {sequence} of journal {journal} was already received on {received_at}")]
    AlreadyReceived {
        /// The journal identity.
        journal: String,
        /// Its sequence number.
        sequence: u64,
        /// When (RFC 3339).
        received_at: String,
    },
    /// The shipment carries the sequence number of one received before, but other content: the
    /// sending journal's history is not the one received (restored from a backup, replaced).
    #[error(
        "journal {journal}: shipment {sequence} differs from the shipment {sequence} received on \
         {received_at} (shipment.json SHA-256 {found} instead of {expected}): the sending \
         side's history diverged"
    )]
    Diverged {
        /// The journal identity.
        journal: String,
        /// The sequence number.
        sequence: u64,
        /// When the first one was received.
        received_at: String,
        /// SHA-256 of the received one's `shipment.json`.
        expected: String,
        /// SHA-256 of this one's.
        found: String,
    },
    /// The shipment does not continue what the receiving journal holds: its link to the
    /// previous shipment, or a shard's link to its last segment, does not match.
    #[error("journal {journal}: shipment {sequence}: {what}")]
    Chain {
        /// The journal identity.
        journal: String,
        /// The sequence number.
        sequence: u64,
        /// Which link failed, naming the shard and segment.
        what: String,
    },
}

impl Error {
    /// True when a shipment was refused because of what it holds (verification, chain, gap,
    /// repeat, incomplete): exit code 3. False for errors of the operation itself (exit 1).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Incomplete { .. }
                | Error::Format { .. }
                | Error::Missing { .. }
                | Error::Checksum { .. }
                | Error::Segment { .. }
                | Error::OtherJournal { .. }
                | Error::Gap { .. }
                | Error::AlreadyReceived { .. }
                | Error::Diverged { .. }
                | Error::Chain { .. }
        )
    }
}

fn list(v: &[u64]) -> String {
    match v {
        [] => "(none)".into(),
        [a] => a.to_string(),
        [a, .., b] if v.len() > 5 => format!("{a}..{b}"),
        _ => v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The shipping result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Attach a journal directory to a journal error.
pub(crate) fn jerr(dir: impl Into<PathBuf>) -> impl FnOnce(crate::journal::Error) -> Error {
    let dir = dir.into();
    move |source| Error::Journal { dir, source }
}
