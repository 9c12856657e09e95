//! The sparse segment index: first position of each frame → the frame's byte offset.
//!
//! The index is derived data: it is written beside a segment when the segment is sealed
//! (`<segment name>.idx`), is not covered by the segment's SHA-256, and is rebuilt from the
//! segment's frame headers whenever it is missing, fails its checksum or describes a different
//! length of file. Losing it costs a scan of the frame headers, never data.
//!
//! # Index file (little-endian)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8  | magic `SHAKEIDX` |
//! | 8  | 4  | format version (1) |
//! | 12 | 4  | entry count `n` |
//! | 16 | 8  | length of the segment file it describes |
//! | 24 | 32·n | entries: first position of a frame (24 bytes), frame offset (u64) |
//! | 24+32n | 4 | CRC-32C of all preceding bytes |

use std::path::{Path, PathBuf};

use super::segment::Scan;
use super::{Position, Result};

/// Magic bytes opening an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"SHAKEIDX";

/// A segment's index, in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// `(first position of frame, frame offset)`, increasing.
    pub entries: Vec<(Position, u64)>,
    /// Length of the segment file described.
    pub segment_len: u64,
}

impl SegmentIndex {
    /// Builds the index of a scanned segment (one entry per frame).
    pub fn from_scan(scan: &Scan, segment_len: u64) -> Self {
        SegmentIndex {
            entries: scan
                .frames
                .iter()
                .map(|f| (f.header.first, f.offset))
                .collect(),
            segment_len,
        }
    }

    /// Index of the frame a reader starting at `pos` should begin with: the last frame whose
    /// first position is at or before `pos` (0 if `pos` precedes them all).
    pub fn lookup(&self, pos: Position) -> usize {
        self.entries
            .partition_point(|(p, _)| *p <= pos)
            .saturating_sub(1)
    }

    /// The on-disk bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(28 + 32 * self.entries.len());
        b.extend_from_slice(&INDEX_MAGIC);
        b.extend_from_slice(&super::FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.segment_len.to_le_bytes());
        for (p, off) in &self.entries {
            b.extend_from_slice(&p.to_bytes());
            b.extend_from_slice(&off.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses index bytes; `None` if they are damaged or not an index (the caller rebuilds).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 28 || b[0..8] != INDEX_MAGIC {
            return None;
        }
        if u32::from_le_bytes(b[8..12].try_into().ok()?) != super::FORMAT_VERSION {
            return None; // another version's index: rebuild rather than guess
        }
        let n = u32::from_le_bytes(b[12..16].try_into().ok()?) as usize;
        if b.len() != 28usize.checked_add(n.checked_mul(32)?)? {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let segment_len = u64::from_le_bytes(b[16..24].try_into().ok()?);
        let entries = body[24..]
            .chunks_exact(32)
            .map(|e| {
                (
                    Position::from_bytes(&e[..24]),
                    u64::from_le_bytes(e[24..32].try_into().expect("8")),
                )
            })
            .collect();
        Some(SegmentIndex {
            entries,
            segment_len,
        })
    }

    /// Loads the index of `segment` if present, valid and describing `segment_len` bytes.
    pub fn load(segment: &Path, segment_len: u64) -> Option<Self> {
        let b = std::fs::read(path_for(segment)).ok()?;
        SegmentIndex::decode(&b).filter(|i| i.segment_len == segment_len)
    }

    /// Writes the index beside `segment` and syncs it. Not renamed into place: a torn index
    /// fails its checksum and is rebuilt.
    pub fn write(&self, segment: &Path) -> Result<()> {
        let path = path_for(segment);
        super::manifest::write_synced(&path, &self.encode())
    }
}

/// Rebuilds the index of a segment from its frame headers and writes it beside it (for
/// repair tools; readers rebuild in memory on their own). Returns the index.
pub fn rebuild(segment: &Path) -> Result<SegmentIndex> {
    let bytes = std::fs::read(segment).map_err(super::error::io(segment))?;
    let scan = super::segment::scan(&bytes, segment, false, true)?;
    let idx = SegmentIndex::from_scan(&scan, scan.valid_len);
    idx.write(segment)?;
    Ok(idx)
}

/// The index path of a segment: the segment path with `.idx` appended.
pub fn path_for(segment: &Path) -> PathBuf {
    let mut s = segment.as_os_str().to_owned();
    s.push(".idx");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let i = SegmentIndex {
            entries: vec![
                (Position::new(1, 10, 0), 96),
                (Position::new(1, 20, 0), 500),
                (Position::new(1, 30, 0), 900),
            ],
            segment_len: 1200,
        };
        let b = i.encode();
        assert_eq!(SegmentIndex::decode(&b), Some(i.clone()));
        let mut c = b.clone();
        c[30] ^= 1;
        assert_eq!(SegmentIndex::decode(&c), None);
        assert_eq!(SegmentIndex::decode(&b[..b.len() - 1]), None);
        assert_eq!(i.lookup(Position::new(0, 0, 0)), 0);
        assert_eq!(i.lookup(Position::new(1, 25, 0)), 1);
        assert_eq!(i.lookup(Position::new(1, 30, 0)), 2);
        assert_eq!(i.lookup(Position::new(9, 0, 0)), 2);
    }
}
