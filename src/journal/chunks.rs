//! Chunk continuity: a snapshot key too large for one record is a [`Record::Key`] holding the
//! first part of its value and announcing `chunks` [`Record::ValueChunk`] records that must
//! follow immediately, numbered 1..=chunks, adding up to `value_len` bytes. A frame checksum
//! cannot see a chunk that is missing, repeated or cut off by another record — this can.
//!
//! Frames are decoded in parallel, so the check has two halves: [`FrameChunks::observe`] runs
//! inside one frame and records what the frame starts with (continuations of a key opened in
//! an earlier frame) and what it leaves open; [`ChunkTracker`] then walks the frames of a shard
//! in order, joining the halves. Memory is a few numbers per frame.
//!
//! [`Record::Key`]: super::Record::Key
//! [`Record::ValueChunk`]: super::Record::ValueChunk

use super::Position;
use super::record_ref::RecordRef;

/// A key whose value still expects chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenKey {
    /// The key, printable (escaped where not UTF-8).
    pub key: String,
    /// Database of the key.
    pub db: u32,
    /// Where the key record is.
    pub position: Position,
    /// Chunks announced.
    pub chunks: u32,
    /// The index the next chunk must carry.
    pub next: u32,
    /// Bytes of the value seen so far.
    pub have: u64,
    /// Bytes announced.
    pub value_len: u64,
}

impl OpenKey {
    fn describe(&self) -> String {
        format!(
            "key {} (db {}, at {}) announced {} chunks / {} bytes",
            self.key, self.db, self.position, self.chunks, self.value_len
        )
    }

    /// Adds chunk `index` of `len` bytes; returns a problem, and whether the key is complete.
    fn add(&mut self, index: u32, len: u64, at: Position) -> (Option<String>, bool) {
        let mut problem = None;
        if index != self.next {
            problem = Some(format!(
                "{}: chunk {index} at {at} where chunk {} was expected",
                self.describe(),
                self.next
            ));
        }
        self.next = index.saturating_add(1);
        self.have += len;
        if self.next > self.chunks {
            if self.have != self.value_len && problem.is_none() {
                problem = Some(format!(
                    "{}: its chunks hold {} bytes",
                    self.describe(),
                    self.have
                ));
            }
            return (problem, true);
        }
        (problem, false)
    }
}

/// What the first record that is not a chunk was, for messages about an interruption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interruption {
    /// Record kind (`key`, `command`, `marker` …).
    pub kind: &'static str,
    /// Its position.
    pub position: Position,
}

/// One frame's contribution to chunk continuity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameChunks {
    /// Chunks before any other record: continuations of a key opened earlier. (index, bytes,
    /// position).
    pub leading: Vec<(u32, u64, Position)>,
    /// The first record that is not a chunk, if any.
    pub first_other: Option<Interruption>,
    /// Problems found within the frame.
    pub problems: Vec<String>,
    /// Keys cut off by another record within the frame: (the key's epoch, message). Whether
    /// that is a problem depends on whether the epoch's snapshot ended (see [`Findings::cut`]).
    pub cut: Vec<(u64, String)>,
    /// The key left open at the end of the frame (opened after `first_other`).
    pub trailing: Option<OpenKey>,
}

impl FrameChunks {
    /// Feeds the frame's records, in order.
    pub fn observe(&mut self, position: Position, record: &RecordRef<'_>) {
        if let RecordRef::ValueChunk(c) = record {
            let len = c.data.0.len() as u64;
            if self.first_other.is_none() {
                self.leading.push((c.index, len, position));
                return;
            }
            match &mut self.trailing {
                Some(open) => {
                    let (problem, done) = open.add(c.index, len, position);
                    self.problems.extend(problem);
                    if done {
                        self.trailing = None;
                    }
                }
                None => self.problems.push(format!(
                    "chunk {} at {position} belongs to no key (no key record announced it)",
                    c.index
                )),
            }
            return;
        }
        let kind = record.kind_name();
        if self.first_other.is_none() {
            self.first_other = Some(Interruption { kind, position });
        } else if let Some(open) = self.trailing.take() {
            self.interrupted(&open, kind, position);
        }
        if let RecordRef::Key(k) = record {
            let first = k.value.0.len() as u64;
            if k.chunks == 0 {
                if first != k.value_len {
                    self.problems.push(format!(
                        "key {} (db {}, at {position}) announces {} bytes and holds {first}",
                        crate::rdb::error::printable_key(k.key.0),
                        k.db,
                        k.value_len
                    ));
                }
            } else {
                self.trailing = Some(OpenKey {
                    key: crate::rdb::error::printable_key(k.key.0),
                    db: k.db,
                    position,
                    chunks: k.chunks,
                    next: 1,
                    have: first,
                    value_len: k.value_len,
                });
            }
        }
    }

    fn interrupted(&mut self, open: &OpenKey, kind: &'static str, at: Position) {
        self.cut
            .push((open.position.epoch, interruption_message(open, kind, at)));
    }
}

fn interruption_message(open: &OpenKey, kind: &str, at: Position) -> String {
    format!(
        "{}: cut off after {} chunks / {} bytes by a {kind} record at {at}",
        open.describe(),
        open.next.saturating_sub(1),
        open.have
    )
}

/// What joining a frame found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Data problems (exit 3 in `verify`).
    pub problems: Vec<String>,
    /// Keys whose chunks stop early: (the key's epoch, message). A problem when that epoch's
    /// snapshot ended (it claims to be complete), harmless otherwise: a capture stopped or
    /// killed mid-snapshot leaves an incomplete snapshot, which replay never uses.
    pub cut: Vec<(u64, String)>,
}

/// Walks one shard's frames in order, carrying the key left open across frames and segments.
#[derive(Debug, Default)]
pub struct ChunkTracker {
    open: Option<OpenKey>,
}

impl ChunkTracker {
    /// Joins the next frame.
    pub fn frame(&mut self, f: FrameChunks) -> Findings {
        let mut out = Findings::default();
        for (index, len, at) in f.leading {
            match &mut self.open {
                Some(open) => {
                    let (problem, done) = open.add(index, len, at);
                    out.problems.extend(problem);
                    if done {
                        self.open = None;
                    }
                }
                None => out.problems.push(format!(
                    "chunk {index} at {at} belongs to no key (no key record announced it)"
                )),
            }
        }
        if let Some(first) = &f.first_other {
            if let Some(open) = self.open.take() {
                out.cut.push((
                    open.position.epoch,
                    interruption_message(&open, first.kind, first.position),
                ));
            }
            self.open = f.trailing;
        }
        out.problems.extend(f.problems);
        out.cut.extend(f.cut);
        out
    }

    /// The shard's end: a key still open, as (its epoch, message). The caller decides as for
    /// [`Findings::cut`], and also tolerates it when the last segment is still being written.
    pub fn finish(self) -> Option<(u64, String)> {
        self.open.map(|open| {
            (
                open.position.epoch,
                format!(
                    "{}: the shard ends after {} chunks / {} bytes",
                    open.describe(),
                    open.next.saturating_sub(1),
                    open.have
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record_ref::{BytesRef, KeyRecordRef, ValueChunkRef};

    fn pos(o: u64) -> Position {
        Position {
            epoch: 1,
            offset: o,
            seq: 0,
        }
    }

    fn key(chunks: u32, first: &'static [u8], total: u64) -> RecordRef<'static> {
        RecordRef::Key(KeyRecordRef {
            db: 0,
            key: BytesRef(b"big"),
            type_id: 0,
            expire_ms: None,
            idle: None,
            freq: None,
            value_len: total,
            chunks,
            value: BytesRef(first),
        })
    }

    fn chunk(index: u32, data: &'static [u8]) -> RecordRef<'static> {
        RecordRef::ValueChunk(ValueChunkRef {
            index,
            data: BytesRef(data),
        })
    }

    fn frame(records: &[RecordRef<'static>]) -> FrameChunks {
        let mut f = FrameChunks::default();
        for (i, r) in records.iter().enumerate() {
            f.observe(pos(i as u64), r);
        }
        f
    }

    #[test]
    fn complete_chunked_key_across_frames_is_clean() {
        let mut t = ChunkTracker::default();
        let a = t.frame(frame(&[key(2, b"ab", 6), chunk(1, b"cd")]));
        let b = t.frame(frame(&[chunk(2, b"ef"), key(0, b"x", 1)]));
        assert_eq!(a, Findings::default());
        assert_eq!(b, Findings::default());
        assert_eq!(t.finish(), None);
    }

    #[test]
    fn missing_chunk_is_a_problem_naming_the_key() {
        let mut t = ChunkTracker::default();
        t.frame(frame(&[key(3, b"ab", 8), chunk(1, b"cd")]));
        let f = t.frame(frame(&[chunk(3, b"gh")]));
        assert_eq!(f.problems.len(), 1, "{f:?}");
        assert!(f.problems[0].contains("\"big\""), "{f:?}");
        assert!(f.problems[0].contains("chunk 3"), "{f:?}");
    }

    #[test]
    fn keys_cut_off_are_reported_with_their_epoch() {
        let mut t = ChunkTracker::default();
        t.frame(frame(&[key(2, b"ab", 6), chunk(1, b"cd")]));
        let cmd = RecordRef::Marker(crate::journal::record_ref::MarkerRef::CaptureStart {
            time_ms: 0,
            shake_version: "0",
        });
        let f = t.frame(frame(&[cmd]));
        assert!(f.problems.is_empty(), "{f:?}");
        assert_eq!(f.cut.len(), 1);
        assert_eq!(f.cut[0].0, 1);

        let inside = frame(&[key(0, b"x", 1), key(2, b"ab", 6), key(0, b"y", 1)]);
        assert_eq!(inside.cut.len(), 1, "{inside:?}");
        assert!(inside.cut[0].1.contains("cut off"));
    }

    #[test]
    fn a_key_open_at_the_end_is_returned_with_its_epoch() {
        let mut t = ChunkTracker::default();
        t.frame(frame(&[key(2, b"ab", 6)]));
        let (epoch, msg) = t.finish().unwrap();
        assert_eq!(epoch, 1);
        assert!(
            msg.contains("the shard ends after 0 chunks / 2 bytes"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_length_and_orphan_chunks_are_problems() {
        let f = frame(&[key(0, b"abc", 5)]);
        assert_eq!(f.problems.len(), 1);
        let mut t = ChunkTracker::default();
        let f = t.frame(frame(&[chunk(1, b"zz")]));
        assert_eq!(f.problems.len(), 1);
        assert!(f.problems[0].contains("belongs to no key"));
        let mut t = ChunkTracker::default();
        let f = t.frame(frame(&[key(1, b"ab", 9), chunk(1, b"cd"), key(0, b"q", 1)]));
        assert_eq!(f.problems.len(), 1, "{f:?}");
        assert!(f.problems[0].contains("hold 4 bytes"), "{f:?}");
    }
}
