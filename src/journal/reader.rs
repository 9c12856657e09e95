//! Reading a shard: sealed segments through `memmap2`, an iterator over entries from any
//! position, and a parallel frame iterator for rayon scanners.
//!
//! Opening a reader finds every frame of every segment (from the sealed segments' indexes when
//! they are valid, else by scanning frame headers) and checks that positions increase across
//! segments. Payload checksums are verified when a frame is decoded. What happens on damage
//! depends on the [`RecoveryMode`].

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use super::error::io;
use super::frame::{self, FRAME_HEADER_LEN, FrameHeader};
use super::index::SegmentIndex;
use super::manifest::{self, ShardManifest};
use super::segment::{self, Damage, FrameInfo, SegmentHeader, Tail};
use super::{Entry, Error, Position, Record, Result};

/// What a reader does when it meets damaged bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Stop with [`Error::Corruption`] naming file and byte offset (the default: an audit or a
    /// replay must not silently skip data).
    #[default]
    Refuse,
    /// Skip the damaged frame (or stretch of bytes), record it in [`ShardReader::damage`], and
    /// go on with the next valid frame.
    Skip,
}

/// Segment bytes: a read-only map of a sealed (immutable) file, or an owned copy of a segment
/// that may still grow or be truncated by recovery (mapping those could fault).
enum Bytes {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

struct SegmentData {
    path: PathBuf,
    bytes: Bytes,
    header: SegmentHeader,
    sealed: bool,
}

/// One frame of a shard: which segment, where, and its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    /// Index of the segment in [`ShardReader::segment_paths`].
    pub segment: usize,
    /// Byte offset of the frame in that segment.
    pub offset: u64,
    /// The frame's header.
    pub header: FrameHeader,
}

/// A read-only view of one shard.
pub struct ShardReader {
    dir: PathBuf,
    mode: RecoveryMode,
    manifest: ShardManifest,
    segments: Vec<SegmentData>,
    frames: Vec<FrameRef>,
    damage: Mutex<Vec<Damage>>,
}

impl ShardReader {
    /// Opens shard `shard` of the journal at `journal_dir`.
    pub fn open(journal_dir: &Path, shard: &str, mode: RecoveryMode) -> Result<ShardReader> {
        Self::open_dir(&journal_dir.join(shard), mode)
    }

    /// Opens a shard directory directly.
    pub fn open_dir(dir: &Path, mode: RecoveryMode) -> Result<ShardReader> {
        let manifest = manifest::read_shard(dir)?;
        let files = segment::list(dir)?;
        let mut r = ShardReader {
            dir: dir.to_path_buf(),
            mode,
            manifest,
            segments: Vec::new(),
            frames: Vec::new(),
            damage: Mutex::new(Vec::new()),
        };
        for s in &r.manifest.sealed {
            if !files
                .iter()
                .any(|(_, p)| p.file_name().and_then(|n| n.to_str()) == Some(s.file.as_str()))
            {
                r.damage_or_refuse(
                    &dir.join(&s.file),
                    0,
                    s.bytes,
                    format!(
                        "sealed segment number {} listed in shard.json is missing",
                        s.number
                    ),
                )?;
            }
        }
        let count = files.len();
        for (i, (_, path)) in files.into_iter().enumerate() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let listed = r.manifest.sealed.iter().any(|s| s.file == name);
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            let bytes = if listed {
                // SAFETY: sealed segments are never modified or truncated after sealing (the
                // format's contract); the map is read-only.
                Bytes::Map(unsafe { memmap2::Mmap::map(&file) }.map_err(io(&path))?)
            } else {
                Bytes::Owned(std::fs::read(&path).map_err(io(&path))?)
            };
            let is_last = i + 1 == count;
            let frames = match r.frames_of(&path, &bytes, listed, is_last) {
                Ok(f) => f,
                Err(e) if mode == RecoveryMode::Skip => {
                    r.note(Damage {
                        file: path.clone(),
                        offset: 0,
                        len: bytes.len() as u64,
                        what: e.to_string(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(header) = frames.1 else { continue };
            r.check_chain(&path, &header)?;
            let seg = r.segments.len();
            let sealed = frames.2;
            for f in frames.0 {
                if let Some(prev) = r.frames.last()
                    && f.header.first <= prev.header.last
                {
                    let what = format!(
                        "frame starts at {} which is not after {} (end of the previous frame \
                         in {}): overlapping or duplicated segment",
                        f.header.first,
                        prev.header.last,
                        r.segments[prev.segment].path.display()
                    );
                    r.damage_or_refuse(&path, f.offset, f.header.frame_len(), what)?;
                    continue;
                }
                r.frames.push(FrameRef {
                    segment: seg,
                    offset: f.offset,
                    header: f.header,
                });
            }
            r.segments.push(SegmentData {
                path,
                bytes,
                header,
                sealed,
            });
        }
        Ok(r)
    }

    /// Frames of one segment: from its index when sealed and the index is valid, else by a
    /// header scan. Returns the frames, the header, and whether it is sealed.
    fn frames_of(
        &self,
        path: &Path,
        bytes: &[u8],
        listed: bool,
        is_last: bool,
    ) -> Result<(Vec<FrameInfo>, Option<SegmentHeader>, bool)> {
        if bytes.len() < segment::SEGMENT_HEADER_LEN && is_last && !listed {
            // Being created or copied in: nothing to read yet.
            return Ok((Vec::new(), None, false));
        }
        let header = SegmentHeader::decode(bytes, path)?;
        if listed
            && let Some(idx) = SegmentIndex::load(path, bytes.len() as u64)
            && let Some(frames) = frames_from_index(&idx, bytes)
        {
            return Ok((frames, Some(header), true));
        }
        let scan = segment::scan(bytes, path, self.mode == RecoveryMode::Skip, false)?;
        for d in &scan.damage {
            self.note(d.clone());
        }
        match scan.tail {
            Tail::Clean => {}
            Tail::Incomplete { offset, have } if is_last && !listed => {
                let _ = (offset, have); // a growing tail: read up to it
            }
            Tail::Incomplete { offset, have } => self.damage_or_refuse(
                path,
                offset,
                have,
                format!("segment ends inside a frame ({have} bytes of it present)"),
            )?,
            Tail::Corrupt { offset, what } => {
                self.damage_or_refuse(path, offset, bytes.len() as u64 - offset, what)?
            }
        }
        if listed && scan.seal.is_none() {
            self.damage_or_refuse(
                path,
                scan.valid_len,
                0,
                "segment listed as sealed has no seal frame".into(),
            )?;
        }
        let sealed = scan.seal.is_some();
        Ok((scan.frames, Some(header), sealed))
    }

    /// Checks that a segment follows the previous one: next number, and the previous
    /// segment's last position as recorded in its header. Catches deleted, duplicated and
    /// reordered segments.
    fn check_chain(&self, path: &Path, h: &SegmentHeader) -> Result<()> {
        let (number, prev_last) = match self.segments.last() {
            Some(prev) => (
                prev.header.number + 1,
                self.frames
                    .iter()
                    .rev()
                    .find(|f| self.segments[f.segment].header.number == prev.header.number)
                    .map(|f| f.header.last)
                    .or(prev.header.prev_last),
            ),
            None => (self.manifest.sealed.first().map_or(0, |s| s.number), None),
        };
        if h.number != number {
            return self.damage_or_refuse(
                path,
                16,
                0,
                format!(
                    "segment number {} where {number} was expected: a segment is missing, \
                     duplicated or out of order",
                    h.number
                ),
            );
        }
        if self.segments.last().is_some() && h.prev_last != prev_last {
            return self.damage_or_refuse(
                path,
                48,
                0,
                format!(
                    "header says the previous segment ended at {:?}, it ended at {:?}",
                    h.prev_last, prev_last
                ),
            );
        }
        Ok(())
    }

    fn note(&self, d: Damage) {
        tracing::warn!(file = %d.file.display(), offset = d.offset, len = d.len, what = %d.what, "skipping damaged journal bytes");
        self.damage.lock().expect("damage lock").push(d);
    }

    fn damage_or_refuse(&self, file: &Path, offset: u64, len: u64, what: String) -> Result<()> {
        match self.mode {
            RecoveryMode::Refuse => Err(Error::Corruption {
                file: file.to_path_buf(),
                offset,
                what,
            }),
            RecoveryMode::Skip => {
                self.note(Damage {
                    file: file.to_path_buf(),
                    offset,
                    len,
                    what,
                });
                Ok(())
            }
        }
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shard manifest read at open.
    pub fn manifest(&self) -> &ShardManifest {
        &self.manifest
    }

    /// Paths of the segments read, in order.
    pub fn segment_paths(&self) -> Vec<&Path> {
        self.segments.iter().map(|s| s.path.as_path()).collect()
    }

    /// Whether segment `i` ends with a seal frame.
    pub fn is_sealed(&self, i: usize) -> bool {
        self.segments.get(i).is_some_and(|s| s.sealed)
    }

    /// Header of segment `i`.
    pub fn segment_header(&self, i: usize) -> Option<SegmentHeader> {
        self.segments.get(i).map(|s| s.header)
    }

    /// Every valid frame, in position order.
    pub fn frames(&self) -> &[FrameRef] {
        &self.frames
    }

    /// First position in the shard.
    pub fn first(&self) -> Option<Position> {
        self.frames.first().map(|f| f.header.first)
    }

    /// Last position in the shard.
    pub fn last(&self) -> Option<Position> {
        self.frames.last().map(|f| f.header.last)
    }

    /// Damage skipped so far (only in [`RecoveryMode::Skip`]).
    pub fn damage(&self) -> Vec<Damage> {
        self.damage.lock().expect("damage lock").clone()
    }

    /// The payload bytes of frame `f` (after its header) in its mapped segment.
    fn payload(&self, f: &FrameRef) -> &[u8] {
        let seg = &self.segments[f.segment];
        let start = f.offset as usize;
        let end = start + f.header.frame_len() as usize;
        &seg.bytes[start + FRAME_HEADER_LEN..end]
    }

    /// A damaged frame `f` (bad checksum, decompression or records) as an error naming its
    /// file and offset.
    pub fn frame_error(&self, f: &FrameRef, e: frame::FrameError) -> Error {
        Error::Corruption {
            file: self.segments[f.segment].path.clone(),
            offset: f.offset,
            what: e.to_string(),
        }
    }

    /// Verifies and decodes one frame.
    pub fn decode(&self, f: &FrameRef) -> Result<Vec<Entry>> {
        let payload = self.payload(f);
        frame::check_payload(&f.header, payload)
            .and_then(|()| frame::decode_records(&f.header, payload))
            .map_err(|e| self.frame_error(f, e))
    }

    /// [`ShardReader::decode`] appending to `out`, decompressing into `scratch` (both reused
    /// by a sequential reader).
    fn decode_into(
        &self,
        f: &FrameRef,
        scratch: &mut Vec<u8>,
        out: &mut std::collections::VecDeque<Entry>,
    ) -> Result<()> {
        let payload = self.payload(f);
        frame::check_payload(&f.header, payload)
            .and_then(|()| frame::decode_records_into(&f.header, payload, scratch, out))
            .map_err(|e| self.frame_error(f, e))
    }

    /// Verifies and decompresses one frame, without parsing its records: parse them with
    /// [`frame::parse_entries_ref`] to borrow from the returned buffer.
    pub fn decode_raw(&self, f: &FrameRef) -> Result<Vec<u8>> {
        let payload = self.payload(f);
        frame::check_payload(&f.header, payload)
            .and_then(|()| frame::raw_payload(&f.header, payload))
            .map_err(|e| self.frame_error(f, e))
    }

    /// [`ShardReader::decode_raw`] into `scratch`, reused from frame to frame by a sequential
    /// reader that parses borrowed records ([`frame::for_each_entry_ref`]) and keeps what it
    /// needs of them in its own form (replay copies command arguments into an arena).
    /// A record parse error is named with [`ShardReader::frame_error`].
    pub fn decode_raw_into(&self, f: &FrameRef, scratch: &mut Vec<u8>) -> Result<()> {
        let payload = self.payload(f);
        frame::check_payload(&f.header, payload)
            .and_then(|()| frame::raw_payload_into(&f.header, payload, scratch))
            .map_err(|e| self.frame_error(f, e))
    }

    /// Decompresses all frames in parallel, yielding each with its raw record bytes, for
    /// scanners that parse borrowed records ([`frame::parse_entries_ref`]) and so avoid an
    /// allocation per field. Damage is handled as in [`ShardReader::par_frames`] (only
    /// checksum and decompression failures are seen here; record parse errors are the
    /// caller's, with the frame to name).
    pub fn par_frames_raw(&self) -> impl ParallelIterator<Item = Result<(FrameRef, Vec<u8>)>> + '_ {
        self.frames
            .par_iter()
            .filter_map(move |f| match self.decode_raw(f) {
                Ok(v) => Some(Ok((*f, v))),
                Err(Error::Corruption { file, offset, what })
                    if self.mode == RecoveryMode::Skip =>
                {
                    self.note(Damage {
                        file,
                        offset,
                        len: f.header.frame_len(),
                        what,
                    });
                    None
                }
                Err(e) => Some(Err(e)),
            })
    }

    /// The file path of segment `i` (to name it in errors).
    pub fn segment_path(&self, i: usize) -> Option<&Path> {
        self.segments.get(i).map(|s| s.path.as_path())
    }

    /// Decodes a frame into `out` under the recovery mode: a damaged frame is skipped (and
    /// noted: `Ok(false)`) in [`RecoveryMode::Skip`], an error otherwise.
    fn decode_mode_into(
        &self,
        f: &FrameRef,
        scratch: &mut Vec<u8>,
        out: &mut std::collections::VecDeque<Entry>,
    ) -> Result<bool> {
        match self.decode_into(f, scratch, out) {
            Ok(()) => Ok(true),
            Err(Error::Corruption { file, offset, what }) if self.mode == RecoveryMode::Skip => {
                self.note(Damage {
                    file,
                    offset,
                    len: f.header.frame_len(),
                    what,
                });
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the snapshot of `epoch` (its records sit at the epoch's `start_offset`) ended
    /// with a `SnapshotEnd`, found by decoding only the last frames that hold records at that
    /// offset, walked backwards past markers (a stream record of the epoch always follows the
    /// end of its snapshot). `None`: the epoch has no record.
    ///
    /// Why: replay must pick the last complete snapshot before sending anything; scanning the
    /// whole snapshot for its end cost as much decoding as the replay itself.
    pub fn snapshot_complete(&self, epoch: u64, start_offset: u64) -> Result<Option<bool>> {
        let begin = self
            .frames
            .partition_point(|f| f.header.last < Position::new(epoch, 0, 0));
        let end = self
            .frames
            .partition_point(|f| f.header.first <= Position::new(epoch, start_offset, u64::MAX));
        let mut seen = false;
        for f in self.frames[begin..end].iter().rev() {
            for e in self.decode(f)?.iter().rev() {
                if e.position.epoch != epoch || e.position.offset != start_offset {
                    seen |= e.position.epoch == epoch;
                    continue;
                }
                seen = true;
                match e.record {
                    Record::SnapshotEnd(_) => return Ok(Some(true)),
                    Record::Marker(_) => continue,
                    _ => return Ok(Some(false)),
                }
            }
        }
        Ok(seen.then_some(false))
    }

    /// Index of the first frame that may hold `from` or anything after it.
    pub fn frame_index_for(&self, from: Position) -> usize {
        self.frames.partition_point(|f| f.header.last < from)
    }

    /// Iterates over the entries at or after `from`, in order.
    pub fn entries_from(&self, from: Position) -> Entries<'_> {
        Entries {
            reader: self,
            next_frame: self.frame_index_for(from),
            from,
            buf: std::collections::VecDeque::new(),
            scratch: Vec::new(),
            failed: false,
        }
    }

    /// Iterates over all entries.
    pub fn entries(&self) -> Entries<'_> {
        self.entries_from(Position::ZERO)
    }

    /// Decodes all frames in parallel on the current rayon pool, yielding each frame with its
    /// entries (in no particular order; sort by `FrameRef` position if order matters). Damaged
    /// frames are errors, or skipped and recorded in [`RecoveryMode::Skip`].
    pub fn par_frames(&self) -> impl ParallelIterator<Item = Result<(FrameRef, Vec<Entry>)>> + '_ {
        self.frames.par_iter().filter_map(move |f| {
            let mut out = std::collections::VecDeque::new();
            match self.decode_mode_into(f, &mut Vec::new(), &mut out) {
                Ok(true) => Some(Ok((*f, Vec::from(out)))),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })
    }
}

fn frames_from_index(idx: &SegmentIndex, bytes: &[u8]) -> Option<Vec<FrameInfo>> {
    idx.entries
        .iter()
        .map(|(p, off)| {
            let start = usize::try_from(*off).ok()?;
            let h = FrameHeader::decode(bytes.get(start..start.checked_add(FRAME_HEADER_LEN)?)?)
                .ok()?;
            (h.first == *p && start as u64 + h.frame_len() <= bytes.len() as u64).then_some(
                FrameInfo {
                    offset: *off,
                    header: h,
                },
            )
        })
        .collect()
}

/// Iterator over entries from a position; see [`ShardReader::entries_from`].
pub struct Entries<'a> {
    reader: &'a ShardReader,
    next_frame: usize,
    from: Position,
    /// The current frame's entries not yet returned; its capacity, like `scratch`'s, is kept
    /// from frame to frame.
    buf: std::collections::VecDeque<Entry>,
    /// The current frame, decompressed.
    scratch: Vec<u8>,
    failed: bool,
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                if e.position >= self.from {
                    return Some(Ok(e));
                }
                continue;
            }
            if self.failed {
                return None;
            }
            let f = self.reader.frames.get(self.next_frame)?;
            self.next_frame += 1;
            match self
                .reader
                .decode_mode_into(f, &mut self.scratch, &mut self.buf)
            {
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
