//! Segment files: naming, the segment header, the seal footer, and scanning a segment's frames.
//!
//! A segment is `header | frame | frame | … [| seal frame]`. Its name is its first position,
//! `EEEEEEEE-OOOOOOOOOOOOOOOOOOOO-SSSSSSSSSS.seg` (epoch, offset, seq, zero-padded decimal), so a
//! directory listing sorted by name is sorted by position and a reader can find the segment
//! holding a position without opening any file. Names are parsed, never trusted for order
//! alone: readers sort by the parsed position.
//!
//! # Segment header (96 bytes, little-endian)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8  | magic `SHAKESEG` |
//! | 8  | 4  | format version (1) |
//! | 12 | 4  | header length (96) |
//! | 16 | 8  | segment number (0, 1, 2 … within the shard) |
//! | 24 | 24 | first position of the segment |
//! | 48 | 24 | last position of the previous segment (zero if none) |
//! | 72 | 4  | flags: bit 0 = a previous segment exists |
//! | 76 | 16 | reserved, 0 |
//! | 92 | 4  | CRC-32C of bytes 0..92 |
//!
//! The segment number and previous last position chain segments together, so a deleted,
//! duplicated or reordered segment is detected without the manifest.
//!
//! # Seal payload (48 bytes, in a frame of kind 2, codec 0)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | number of record frames |
//! | 8  | 8 | number of records |
//! | 16 | 8 | raw (uncompressed) record bytes |
//! | 24 | 8 | stored record-frame bytes (headers included) |
//! | 32 | 8 | earliest capture time, ms (0 if no record carries one) |
//! | 40 | 8 | latest capture time, ms (0 if none) |

use std::path::{Path, PathBuf};

use super::frame::{self, Check, FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, FrameKind};
use super::{Error, Position, Result};

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SHAKESEG";
/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 96;
/// Length of the seal payload.
pub const SEAL_LEN: usize = 48;
/// File extension of segments.
pub const SEGMENT_EXT: &str = "seg";

/// The parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u32,
    /// Sequence number of the segment in its shard, from 0.
    pub number: u64,
    /// Position of the segment's first record.
    pub first: Position,
    /// Last position of the previous segment, if there is one.
    pub prev_last: Option<Position>,
}

impl SegmentHeader {
    /// The 96 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.number.to_le_bytes());
        h[24..48].copy_from_slice(&self.first.to_bytes());
        if let Some(p) = self.prev_last {
            h[48..72].copy_from_slice(&p.to_bytes());
            h[72] = 1;
        }
        let crc = crc32c::crc32c(&h[..92]);
        h[92..96].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses and checks a header; `file` names the segment in errors.
    pub fn decode(buf: &[u8], file: &Path) -> Result<SegmentHeader> {
        let bad = |what: String| Error::Corruption {
            file: file.to_path_buf(),
            offset: 0,
            what,
        };
        if buf.len() < SEGMENT_HEADER_LEN {
            return Err(bad(format!(
                "segment header truncated: {} of {SEGMENT_HEADER_LEN} bytes",
                buf.len()
            )));
        }
        if buf[0..8] != SEGMENT_MAGIC {
            return Err(bad("not a shake segment (bad magic)".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().expect("4"));
        let crc = crc32c::crc32c(&buf[..92]);
        if crc != u32_at(92) {
            return Err(bad("segment header checksum mismatch".into()));
        }
        let version = u32_at(8);
        if version > super::FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                file: file.to_path_buf(),
                found: version,
                supported: super::FORMAT_VERSION,
            });
        }
        if u32_at(12) as usize != SEGMENT_HEADER_LEN {
            return Err(bad(format!("unexpected header length {}", u32_at(12))));
        }
        Ok(SegmentHeader {
            version,
            number: u64::from_le_bytes(buf[16..24].try_into().expect("8")),
            first: Position::from_bytes(&buf[24..48]),
            prev_last: (buf[72] & 1 == 1).then(|| Position::from_bytes(&buf[48..72])),
        })
    }
}

/// The counts a seal frame carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealFooter {
    /// Record frames in the segment.
    pub frames: u64,
    /// Records in the segment.
    pub records: u64,
    /// Uncompressed record bytes.
    pub raw_bytes: u64,
    /// Bytes of record frames on disk.
    pub stored_bytes: u64,
    /// Earliest capture time in ms (0 if none).
    pub min_time_ms: u64,
    /// Latest capture time in ms (0 if none).
    pub max_time_ms: u64,
}

impl SealFooter {
    /// The 48 payload bytes.
    pub fn encode(&self) -> [u8; SEAL_LEN] {
        let mut b = [0u8; SEAL_LEN];
        for (i, v) in [
            self.frames,
            self.records,
            self.raw_bytes,
            self.stored_bytes,
            self.min_time_ms,
            self.max_time_ms,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses the payload; `None` if it is not exactly 48 bytes.
    pub fn decode(b: &[u8]) -> Option<SealFooter> {
        if b.len() != SEAL_LEN {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8"));
        Some(SealFooter {
            frames: u(0),
            records: u(1),
            raw_bytes: u(2),
            stored_bytes: u(3),
            min_time_ms: u(4),
            max_time_ms: u(5),
        })
    }
}

/// The file name of a segment starting at `first`.
pub fn file_name(first: Position) -> String {
    format!(
        "{:08}-{:020}-{:010}.{SEGMENT_EXT}",
        first.epoch, first.offset, first.seq
    )
}

/// Parses a segment file name back into its first position; `None` for other files.
pub fn parse_file_name(name: &str) -> Option<Position> {
    let stem = name.strip_suffix(".seg")?;
    let mut it = stem.split('-');
    let (e, o, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some()
        || [e, o, s]
            .iter()
            .any(|p| !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(Position::new(
        e.parse().ok()?,
        o.parse().ok()?,
        s.parse().ok()?,
    ))
}

/// The segment files of a shard directory, sorted by first position.
pub fn list(shard_dir: &Path) -> Result<Vec<(Position, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(shard_dir).map_err(super::error::io(shard_dir))? {
        let entry = entry.map_err(super::error::io(shard_dir))?;
        let name = entry.file_name();
        if let Some(p) = name.to_str().and_then(parse_file_name) {
            out.push((p, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// One record frame found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Byte offset of the frame header in the segment file.
    pub offset: u64,
    /// The frame's header.
    pub header: FrameHeader,
}

/// How a scan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The file ends exactly after the last frame (sealed or not).
    Clean,
    /// The file ends inside a frame: a torn write, or a file still being written or copied.
    Incomplete {
        /// Where the partial frame starts.
        offset: u64,
        /// Bytes of it present.
        have: u64,
    },
    /// Bytes that are not a valid frame, starting at `offset`.
    Corrupt {
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// A stretch of damaged bytes a tolerant scan stepped over.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Damage {
    /// The segment file.
    pub file: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// How many bytes were skipped.
    pub len: u64,
    /// What is wrong.
    pub what: String,
}

/// What a scan of one segment found.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The segment header.
    pub header: SegmentHeader,
    /// The valid record frames, in file order.
    pub frames: Vec<FrameInfo>,
    /// The seal (offset of its frame, footer), if the segment is sealed.
    pub seal: Option<(u64, SealFooter)>,
    /// Byte offset just past the last valid frame (or the header).
    pub valid_len: u64,
    /// How the scan ended (for a tolerant scan: how the file ends).
    pub tail: Tail,
    /// Damage stepped over (tolerant scans only).
    pub damage: Vec<Damage>,
}

impl Scan {
    /// Last position in the segment, if it holds any record.
    pub fn last(&self) -> Option<Position> {
        self.frames.last().map(|f| f.header.last)
    }
}

/// Scans the frames of a segment held in `buf`. With `tolerant`, damaged stretches are stepped
/// over (resynchronising on the next frame whose checksums match) and listed in
/// [`Scan::damage`]; otherwise the scan stops at the first problem and reports it in
/// [`Scan::tail`]. Payload checksums are verified when `verify_payload` is set. Never panics;
/// the only error is an unreadable segment header.
pub fn scan(buf: &[u8], file: &Path, tolerant: bool, verify_payload: bool) -> Result<Scan> {
    let header = SegmentHeader::decode(buf, file)?;
    let mut s = Scan {
        header,
        frames: Vec::new(),
        seal: None,
        valid_len: SEGMENT_HEADER_LEN as u64,
        tail: Tail::Clean,
        damage: Vec::new(),
    };
    let mut at = SEGMENT_HEADER_LEN;
    let mut prev: Option<Position> = None;
    while at < buf.len() {
        let rest = &buf[at..];
        let checked = if verify_payload {
            frame::check(rest)
        } else {
            check_header_only(rest)
        };
        let problem = match checked {
            Ok(Check::Incomplete { have, .. }) => {
                s.tail = Tail::Incomplete {
                    offset: at as u64,
                    have: have as u64,
                };
                return Ok(s);
            }
            Ok(Check::Complete(h)) => if s.seal.is_some() {
                Some("frame after the seal".to_string())
            } else if h.kind == FrameKind::Seal {
                let payload = &rest[FRAME_HEADER_LEN..h.frame_len() as usize];
                match SealFooter::decode(payload) {
                    Some(f) => {
                        s.seal = Some((at as u64, f));
                        None
                    }
                    None => Some("seal payload is not 48 bytes".into()),
                }
            } else if let Some(p) = prev.filter(|p| h.first <= *p) {
                Some(format!(
                    "frame starts at {} which is not after {p}",
                    h.first
                ))
            } else if prev.is_none() && h.first != header.first {
                Some(format!(
                    "first frame starts at {}, segment header says {}",
                    h.first, header.first
                ))
            } else {
                prev = Some(h.last);
                s.frames.push(FrameInfo {
                    offset: at as u64,
                    header: h,
                });
                None
            }
            .map(|what| (what, h.frame_len() as usize))
            .map_or_else(
                || {
                    at += h.frame_len() as usize;
                    s.valid_len = at as u64;
                    None
                },
                Some,
            ),
            Err(e) => Some((e.to_string(), 1)),
        };
        if let Some((what, _)) = problem {
            if !tolerant {
                s.tail = Tail::Corrupt {
                    offset: at as u64,
                    what,
                };
                return Ok(s);
            }
            let next = find_next_frame(buf, at + 1, verify_payload);
            let end = next.unwrap_or(buf.len());
            s.damage.push(Damage {
                file: file.to_path_buf(),
                offset: at as u64,
                len: (end - at) as u64,
                what,
            });
            at = end;
        }
    }
    Ok(s)
}

/// Header-only variant of [`frame::check`] (payload presence checked, checksum not).
fn check_header_only(buf: &[u8]) -> Result<Check, frame::FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return frame::check(buf);
    }
    let h = FrameHeader::decode(buf)?;
    if (buf.len() as u64) < h.frame_len() {
        return Ok(Check::Incomplete {
            have: buf.len(),
            need: h.frame_len() as usize,
        });
    }
    Ok(Check::Complete(h))
}

/// The offset of the next whole, checksum-valid frame at or after `from`.
pub fn find_next_frame(buf: &[u8], from: usize, verify_payload: bool) -> Option<usize> {
    let mut at = from;
    while at + 4 <= buf.len() {
        let i = buf[at..].windows(4).position(|w| w == FRAME_MAGIC)?;
        at += i;
        let ok = if verify_payload {
            frame::check(&buf[at..])
        } else {
            check_header_only(&buf[at..])
        };
        if matches!(ok, Ok(Check::Complete(_))) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_position() {
        let p = Position::new(2, 1_234_567, 42);
        assert_eq!(parse_file_name(&file_name(p)), Some(p));
        assert_eq!(parse_file_name("shard.json"), None);
        assert_eq!(parse_file_name("1-2-x.seg"), None);
        assert!(file_name(Position::new(1, 99, 0)) < file_name(Position::new(1, 100, 0)));
    }

    #[test]
    fn header_round_trips_and_detects_flips() {
        let h = SegmentHeader {
            version: 1,
            number: 7,
            first: Position::new(1, 2, 3),
            prev_last: Some(Position::new(1, 2, 2)),
        };
        let b = h.encode();
        let p = Path::new("x.seg");
        assert_eq!(SegmentHeader::decode(&b, p).unwrap(), h);
        for i in 0..SEGMENT_HEADER_LEN * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(SegmentHeader::decode(&c, p).is_err(), "bit {i}");
        }
        assert!(SegmentHeader::decode(&b[..50], p).is_err());
    }
}
