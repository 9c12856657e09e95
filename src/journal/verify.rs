//! `verify`: an offline audit of a whole journal.
//!
//! Checks every frame's checksums and records, every sealed segment's SHA-256 and length
//! against `shard.json`, the chain of segments (numbers, names, previous-last positions, seals),
//! and that positions strictly increase across the shard (no overlap); then summarises each
//! shard. It never stops at the first problem: every problem is reported with the file, the
//! byte offset when there is one, and what is wrong. Frames are decoded in parallel (rayon).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Position;
use super::chunks::{ChunkTracker, FrameChunks};
use super::frame::{self, FRAME_HEADER_LEN};
use super::manifest::{self, ShardManifest};
use super::record_ref::{MarkerRef, RecordRef};
use super::segment::{self, Tail};
use super::writer::hex;

/// The outcome of [`verify()`]. Serializes to JSON for `shake verify --format json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The journal directory.
    pub journal: PathBuf,
    /// Format version from `journal.json`.
    pub format_version: Option<u32>,
    /// shake version that created the journal.
    pub shake_version: Option<String>,
    /// Source description from `journal.json`.
    pub source: Option<String>,
    /// One summary per shard.
    pub shards: Vec<ShardSummary>,
    /// Every problem found; empty when the journal is sound.
    pub problems: Vec<Problem>,
    /// States that are not damage: what a writer killed mid-write leaves at the end of a
    /// shard's last, unsealed segment (a torn frame or header, a seal not yet published), or a
    /// file still being copied in. Reopening the shard for append resolves them; nothing
    /// acknowledged as durable is involved.
    pub notes: Vec<Problem>,
}

impl Report {
    /// True when no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with a journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The shard, if the problem is inside one.
    pub shard: Option<String>,
    /// The file concerned.
    pub file: PathBuf,
    /// Byte offset in `file`, when the problem is at a place in it.
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{}: byte {o}: {}", self.file.display(), self.what),
            None => write!(f, "{}: {}", self.file.display(), self.what),
        }
    }
}

/// What a shard holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShardSummary {
    /// Shard name.
    pub name: String,
    /// Segment files.
    pub segments: u64,
    /// Of which sealed.
    pub sealed_segments: u64,
    /// Valid record frames.
    pub frames: u64,
    /// Records.
    pub records: u64,
    /// Bytes on disk (segment files).
    pub bytes: u64,
    /// Uncompressed record bytes.
    pub raw_bytes: u64,
    /// First position.
    pub first: Option<Position>,
    /// Last position.
    pub last: Option<Position>,
    /// Earliest capture time, ms since the Unix epoch.
    pub min_time_ms: Option<u64>,
    /// Latest capture time.
    pub max_time_ms: Option<u64>,
    /// Records per kind (`key`, `command` …).
    pub records_by_kind: BTreeMap<String, u64>,
    /// Per-epoch summary.
    pub epochs: Vec<EpochSummary>,
}

/// What an epoch of a shard holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EpochSummary {
    /// The epoch.
    pub epoch: u64,
    /// Replication ids of the epoch, from `shard.json`.
    pub replids: Vec<String>,
    /// First position.
    pub first: Option<Position>,
    /// Last position.
    pub last: Option<Position>,
    /// Records.
    pub records: u64,
    /// Keys in its snapshot (from the snapshot end record).
    pub snapshot_keys: Option<u64>,
    /// `complete` (begin and end records present), `incomplete` (the capture stopped inside
    /// the snapshot: not a usable base for replay) or `none` (no snapshot in this part of the
    /// journal). Not a problem in itself: a journal may end inside a snapshot.
    pub snapshot: String,
}

/// Audits the journal at `dir`. Never fails: an unreadable manifest or file is a problem in
/// the report.
pub fn verify(dir: &Path) -> Report {
    let mut report = Report {
        journal: dir.to_path_buf(),
        ..Default::default()
    };
    let jm = match manifest::read_journal(dir) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(Problem {
                shard: None,
                file: dir.join(manifest::JOURNAL_MANIFEST),
                offset: None,
                what: e.to_string(),
            });
            return report;
        }
    };
    report.format_version = Some(jm.format_version);
    report.shake_version = Some(jm.shake_version.clone());
    report.source = Some(format!("{}: {}", jm.source.kind, jm.source.description));
    for s in &jm.shards {
        let (summary, problems, notes) = verify_shard(&dir.join(&s.name), &s.name);
        report.shards.push(summary);
        report.problems.extend(problems);
        report.notes.extend(notes);
    }
    report
}

#[derive(Default)]
struct FrameStats {
    records: u64,
    by_kind: BTreeMap<&'static str, u64>,
    min_t: Option<u64>,
    max_t: Option<u64>,
    epochs: BTreeMap<u64, (Position, Position, u64, Option<u64>, bool)>,
    epoch_starts: Vec<u64>,
}

impl FrameStats {
    fn merge(mut self, o: FrameStats) -> FrameStats {
        self.records += o.records;
        for (k, v) in o.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        self.min_t = opt(self.min_t, o.min_t, u64::min);
        self.max_t = opt(self.max_t, o.max_t, u64::max);
        for (e, (f, l, n, k, b)) in o.epochs {
            let x = self.epochs.entry(e).or_insert((f, l, 0, None, false));
            x.0 = x.0.min(f);
            x.1 = x.1.max(l);
            x.2 += n;
            x.3 = x.3.or(k);
            x.4 |= b;
        }
        self.epoch_starts.extend(o.epoch_starts);
        self
    }
}

fn opt(a: Option<u64>, b: Option<u64>, f: fn(u64, u64) -> u64) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, y) => x.or(y),
    }
}

fn verify_shard(dir: &Path, name: &str) -> (ShardSummary, Vec<Problem>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut note = |file: &Path, offset: Option<u64>, what: String| {
        notes.push(Problem {
            shard: Some(name.to_string()),
            file: file.to_path_buf(),
            offset,
            what,
        })
    };
    let mut sum = ShardSummary {
        name: name.to_string(),
        ..Default::default()
    };
    let mut p = |file: &Path, offset: Option<u64>, what: String| {
        problems.push(Problem {
            shard: Some(name.to_string()),
            file: file.to_path_buf(),
            offset,
            what,
        })
    };
    let man = match manifest::read_shard(dir) {
        Ok(m) => m,
        Err(e) => {
            p(&dir.join(manifest::SHARD_MANIFEST), None, e.to_string());
            ShardManifest::default()
        }
    };
    let files = match segment::list(dir) {
        Ok(f) => f,
        Err(e) => {
            p(dir, None, e.to_string());
            return (sum, problems, notes);
        }
    };
    let names: HashSet<String> = files
        .iter()
        .filter_map(|(_, f)| Some(f.file_name()?.to_str()?.to_string()))
        .collect();
    for s in &man.sealed {
        if !names.contains(&s.file) {
            p(
                &dir.join(&s.file),
                None,
                format!(
                    "sealed segment number {} ({} .. {}) listed in shard.json is missing",
                    s.number, s.first, s.last
                ),
            );
        }
    }
    let mut stats = FrameStats::default();
    // Large values span records, frames and segments: continuity is joined in order.
    let mut chunks = ChunkTracker::default();
    let mut last_unsealed: Option<PathBuf> = None;
    // Keys whose chunks stop early: (epoch, file, offset, message, whether the segment is still
    // being written); classified once the epochs' snapshots are known.
    let mut cut_keys: Vec<(u64, PathBuf, Option<u64>, String, bool)> = Vec::new();
    let mut prev_seg: Option<(u64, Option<Position>, PathBuf)> = None;
    let mut prev_last: Option<Position> = None;
    let count = files.len();
    for (i, (name_pos, path)) in files.iter().enumerate() {
        sum.segments += 1;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                p(path, None, e.to_string());
                continue;
            }
        };
        sum.bytes += bytes.len() as u64;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let listed = man.sealed.iter().find(|s| s.file == file_name);
        if let Some(s) = listed {
            let sha = hex(&Sha256::digest(&bytes));
            if s.bytes != bytes.len() as u64 {
                p(
                    path,
                    None,
                    format!("file is {} bytes, shard.json says {}", bytes.len(), s.bytes),
                );
            }
            if sha != s.sha256 {
                p(
                    path,
                    None,
                    format!("SHA-256 {sha} differs from shard.json's {}", s.sha256),
                );
            }
        }
        // The shard's last segment, not yet sealed in the manifest: the one a crash can leave
        // half-written. Recovery's rules decide what is a crash artifact there.
        let open_tail = i + 1 == count && listed.is_none();
        let scan = match segment::scan(&bytes, path, true, true) {
            Ok(s) => s,
            Err(e) if open_tail && segment::find_next_frame(&bytes, 0, true).is_none() => {
                note(
                    path,
                    Some(0),
                    format!("{e}, and no frame: a segment being created when its writer stopped"),
                );
                continue;
            }
            Err(e) => {
                p(path, Some(0), e.to_string());
                continue;
            }
        };
        let mut damage = scan.damage.clone();
        if open_tail
            && let Some(d) = damage.last()
            && d.offset + d.len == bytes.len() as u64
            && bytes[d.offset as usize..].iter().all(|b| *b == 0)
        {
            note(
                path,
                Some(d.offset),
                format!(
                    "{} zero bytes after the last frame: preallocated space of a stopped writer \
                     or a copy in progress",
                    d.len
                ),
            );
            damage.pop();
        }
        for d in &damage {
            p(
                path,
                Some(d.offset),
                format!("{} ({} bytes skipped)", d.what, d.len),
            );
        }
        if let Tail::Incomplete { offset, have } = scan.tail {
            (if open_tail {
                &mut note as &mut dyn FnMut(&Path, Option<u64>, String)
            } else {
                &mut p
            })(
                path,
                Some(offset),
                format!(
                    "segment ends inside a frame ({have} bytes of it): a torn tail (reopening \
                     the shard for append truncates it) or a file still being copied"
                ),
            );
        }
        let h = scan.header;
        if h.first != *name_pos {
            p(
                path,
                Some(24),
                format!(
                    "header's first position {} differs from the file name's {name_pos}",
                    h.first
                ),
            );
        }
        match &prev_seg {
            Some((num, last, prev_path)) => {
                if h.number != num + 1 {
                    p(
                        path,
                        Some(16),
                        format!(
                            "segment number {} follows {} ({}): {}",
                            h.number,
                            num,
                            prev_path.display(),
                            if h.number <= *num {
                                "duplicated or overlapping segment"
                            } else {
                                "a segment is missing (deleted?)"
                            }
                        ),
                    );
                } else if h.prev_last != *last {
                    p(
                        path,
                        Some(48),
                        format!(
                            "header says the previous segment ended at {}, it ends at {}",
                            fmt_pos(h.prev_last),
                            fmt_pos(*last)
                        ),
                    );
                }
            }
            None => {
                if h.number != 0 || h.prev_last.is_some() {
                    p(
                        path,
                        Some(16),
                        format!(
                            "first segment of the shard has number {} (and previous last {}): \
                             earlier segments are missing",
                            h.number,
                            fmt_pos(h.prev_last)
                        ),
                    );
                }
            }
        }
        match (&scan.seal, listed) {
            (Some((off, footer)), _) => {
                sum.sealed_segments += 1;
                let recs: u64 = scan
                    .frames
                    .iter()
                    .map(|f| u64::from(f.header.records))
                    .sum();
                if footer.frames != scan.frames.len() as u64 || footer.records != recs {
                    p(
                        path,
                        Some(*off),
                        format!(
                            "seal counts {} frames / {} records, the segment holds {} / {recs}",
                            footer.frames,
                            footer.records,
                            scan.frames.len()
                        ),
                    );
                }
                if listed.is_none() {
                    (if open_tail {
                        &mut note as &mut dyn FnMut(&Path, Option<u64>, String)
                    } else {
                        &mut p
                    })(
                        path,
                        None,
                        "sealed segment is not listed in shard.json (yet: reopening the shard \
                         for append publishes it)"
                            .into(),
                    );
                }
            }
            (None, Some(_)) => p(
                path,
                Some(scan.valid_len),
                "segment listed as sealed has no seal frame".into(),
            ),
            (None, None) if i + 1 != count => p(
                path,
                Some(scan.valid_len),
                "unsealed segment followed by other segments".into(),
            ),
            _ => {}
        }
        if let (Some(s), Some(last)) = (listed, scan.last())
            && (s.first != h.first || s.last != last)
        {
            p(
                path,
                None,
                format!(
                    "shard.json says {} .. {}, the segment holds {} .. {last}",
                    s.first, s.last, h.first
                ),
            );
        }
        for f in &scan.frames {
            if let Some(pl) = prev_last
                && f.header.first <= pl
            {
                p(
                    path,
                    Some(f.offset),
                    format!(
                        "frame starts at {} which is not after {pl}: positions overlap",
                        f.header.first
                    ),
                );
            }
            prev_last = Some(prev_last.map_or(f.header.last, |x| x.max(f.header.last)));
        }
        let results: Vec<Result<(FrameStats, FrameChunks), Problem>> = scan
            .frames
            .par_iter()
            .map(|f| {
                let start = f.offset as usize;
                let end = start + f.header.frame_len() as usize;
                // Borrowed parsing: an audit touches every record, and copying each field into
                // its own allocation would dominate its cost.
                let problem = |e: frame::FrameError| Problem {
                    shard: Some(name.to_string()),
                    file: path.clone(),
                    offset: Some(f.offset),
                    what: e.to_string(),
                };
                let raw = frame::raw_payload(&f.header, &bytes[start + FRAME_HEADER_LEN..end])
                    .map_err(problem)?;
                let mut s = FrameStats::default();
                let mut c = FrameChunks::default();
                // Visited in place; a damaged frame's partial figures are dropped with the error.
                frame::for_each_entry_ref(&f.header, &raw, |e| {
                    c.observe(e.position, &e.record);
                    s.records += 1;
                    *s.by_kind.entry(e.record.kind_name()).or_default() += 1;
                    if let Some(t) = e.record.time_ms() {
                        s.min_t = opt(s.min_t, Some(t), u64::min);
                        s.max_t = opt(s.max_t, Some(t), u64::max);
                    }
                    let x = s
                        .epochs
                        .entry(e.position.epoch)
                        .or_insert((e.position, e.position, 0, None, false));
                    x.0 = x.0.min(e.position);
                    x.1 = x.1.max(e.position);
                    x.2 += 1;
                    match &e.record {
                        RecordRef::SnapshotEnd(end) => x.3 = Some(end.key_count),
                        RecordRef::SnapshotBegin(_) => x.4 = true,
                        RecordRef::Marker(MarkerRef::EpochStart { epoch, .. }) => {
                            s.epoch_starts.push(*epoch)
                        }
                        _ => {}
                    }
                })
                .map_err(problem)?;
                Ok((s, c))
            })
            .collect();
        for (r, f) in results.into_iter().zip(&scan.frames) {
            match r {
                Ok((s, c)) => {
                    stats = std::mem::take(&mut stats).merge(s);
                    let found = chunks.frame(c);
                    for what in found.problems {
                        p(path, Some(f.offset), what);
                    }
                    cut_keys.extend(
                        found.cut.into_iter().map(|(epoch, what)| {
                            (epoch, path.clone(), Some(f.offset), what, false)
                        }),
                    );
                }
                Err(pr) => problems_push(&mut p, pr),
            }
        }
        last_unsealed = scan.seal.is_none().then(|| path.clone());
        sum.frames += scan.frames.len() as u64;
        sum.raw_bytes += scan
            .frames
            .iter()
            .map(|f| u64::from(f.header.raw_len))
            .sum::<u64>();
        prev_seg = Some((h.number, scan.last().or(h.prev_last), path.clone()));
    }
    // A key whose chunks stop early is damage only in a snapshot that claims to be complete
    // (it has its end record); a capture stopped or killed mid-snapshot leaves an incomplete
    // snapshot, which replay never uses, and the last key of a segment still being written is
    // simply not finished yet.
    if let Some((epoch, what)) = std::mem::take(&mut chunks).finish() {
        let still_written = last_unsealed.is_some();
        let file = last_unsealed.unwrap_or_else(|| dir.to_path_buf());
        cut_keys.push((epoch, file, None, what, still_written));
    }
    for (epoch, file, offset, what, still_written) in cut_keys {
        let snapshot_ended = stats.epochs.get(&epoch).is_some_and(|e| e.3.is_some());
        if snapshot_ended && !still_written {
            p(&file, offset, what);
        } else {
            note(
                &file,
                offset,
                what + " (in a snapshot the capture did not finish)",
            );
        }
    }
    for (&e, &(first, last, records, keys, begun)) in &stats.epochs {
        let info = man.epochs.iter().find(|x| x.epoch == e);
        if e > 0 && info.is_none() {
            p(
                &dir.join(manifest::SHARD_MANIFEST),
                None,
                format!("epoch {e} has records but is not in shard.json"),
            );
        }
        sum.epochs.push(EpochSummary {
            epoch: e,
            replids: info
                .map(|i| i.replids.iter().map(|r| r.replid.clone()).collect())
                .unwrap_or_default(),
            first: Some(first),
            last: Some(last),
            records,
            snapshot_keys: keys,
            snapshot: match (begun, keys) {
                (_, Some(_)) => "complete",
                (true, None) => "incomplete",
                (false, None) => "none",
            }
            .into(),
        });
    }
    sum.records = stats.records;
    sum.records_by_kind = stats
        .by_kind
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    sum.min_time_ms = stats.min_t;
    sum.max_time_ms = stats.max_t;
    sum.first = sum.epochs.first().and_then(|e| e.first);
    sum.last = sum.epochs.last().and_then(|e| e.last);
    (sum, problems, notes)
}

fn problems_push(p: &mut impl FnMut(&Path, Option<u64>, String), pr: Problem) {
    p(&pr.file, pr.offset, pr.what)
}

fn fmt_pos(p: Option<Position>) -> String {
    p.map_or("(none)".into(), |p| p.to_string())
}
