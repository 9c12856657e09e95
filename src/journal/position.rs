//! Positions: where a record sits in a shard's history.
//!
//! A position is `(epoch, offset, seq)`, compared in that order:
//!
//! * `epoch` starts at 0 (nothing captured yet) and increases by one on each full resync, i.e.
//!   each new snapshot. Offsets of different epochs are unrelated numbers.
//! * `offset` is the master's replication offset. A command's offset is the offset *after* it
//!   (what a replica acknowledges once it has applied it), so capture resumes with
//!   `PSYNC <replid> <offset + 1>`. All records of a snapshot carry the snapshot's offset.
//! * `seq` orders records that share an offset: the records of a snapshot (begin, keys, value
//!   chunks, end) and markers written between two commands. It restarts at 0 for each new
//!   offset. Commands usually have `seq == 0`.
//!
//! Positions are strictly increasing inside a shard; the writer refuses anything else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a record sits in a shard: `(epoch, replication offset, sequence)`. See the module docs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    /// Incremented on each full resync (new snapshot). 0 before the first snapshot.
    pub epoch: u64,
    /// The master's replication offset (after the command, for commands).
    pub offset: u64,
    /// Order among records sharing `(epoch, offset)`.
    pub seq: u64,
}

impl Position {
    /// The smallest position; every record comes at or after it.
    pub const ZERO: Position = Position {
        epoch: 0,
        offset: 0,
        seq: 0,
    };

    /// A position from its three parts.
    pub const fn new(epoch: u64, offset: u64, seq: u64) -> Self {
        Position { epoch, offset, seq }
    }

    /// The 24-byte on-disk form: epoch, offset, seq, each u64 little-endian.
    pub fn to_bytes(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.epoch.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Reads the 24-byte on-disk form. `b` must hold at least 24 bytes (callers slice headers
    /// whose length they checked).
    pub fn from_bytes(b: &[u8]) -> Self {
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Position {
            epoch: u(0),
            offset: u(8),
            seq: u(16),
        }
    }
}

/// `epoch:offset.seq`, e.g. `2:1048576.17`. Parsed back by [`FromStr`].
impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}.{}", self.epoch, self.offset, self.seq)
    }
}

/// Accepts `epoch:offset.seq`, `epoch:offset` (seq 0) for command-line use.
impl FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("position {s:?} is not EPOCH:OFFSET[.SEQ]");
        let (e, rest) = s.split_once(':').ok_or_else(bad)?;
        let (o, q) = rest.split_once('.').unwrap_or((rest, "0"));
        Ok(Position {
            epoch: e.parse().map_err(|_| bad())?,
            offset: o.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_epoch_then_offset_then_seq() {
        assert!(Position::new(1, 900, 5) < Position::new(2, 10, 0));
        assert!(Position::new(2, 10, 0) < Position::new(2, 10, 1));
        assert!(Position::new(2, 10, 9) < Position::new(2, 11, 0));
    }

    #[test]
    fn display_round_trips_and_bytes_round_trip() {
        let p = Position::new(3, 123_456, 7);
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        assert_eq!("3:5".parse::<Position>().unwrap(), Position::new(3, 5, 0));
        assert!("x".parse::<Position>().is_err());
        assert_eq!(Position::from_bytes(&p.to_bytes()), p);
    }
}
