//! A follower tails a shard while frames and segments appear: behind a live writer, or over
//! segment files being copied in from removable media.
//!
//! It reads with plain positioned reads (never maps a file that may grow), and treats a
//! partial frame, a partial header or a file shorter than a segment header as "not yet": it
//! returns what it has and picks up at the same byte on the next [`Follower::poll`]. A frame
//! that fails its checks but is followed only by zeros (or by the end of the file) is also "not
//! yet": copy tools may preallocate a file and fill it in place. Damage followed by written
//! bytes is final, and an error naming file and offset. Waiting also ends in that error when
//! the segment cannot grow any more: `shard.json` lists it as sealed and the file already has
//! the listed length, or a later segment exists and the file has not changed for
//! [`STALL_LIMIT`] (a writer only starts a segment after sealing the previous one; a copy tool
//! may run ahead by a file, not stall on one for that long).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, FRAME_HEADER_LEN, FrameHeader, FrameKind};
use super::segment::{self, SEGMENT_HEADER_LEN, SegmentHeader};
use super::{Entry, Error, Position, Result};

/// Most entries one [`Follower::poll`] returns, to bound memory when starting far behind.
const MAX_BATCH: usize = 65_536;

/// How long an unsealed segment followed by a later one may stay unchanged before its torn
/// or damaged end is reported as final.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Tails one shard directory. See the module docs.
pub struct Follower {
    dir: PathBuf,
    from: Position,
    current: Option<(PathBuf, Position, u64)>,
    done: Option<Position>,
    delivered: Option<Position>,
    /// Where the follower waited last (file, byte offset, file length) and since when.
    stalled: Option<(PathBuf, u64, u64, std::time::Instant)>,
    stall_limit: std::time::Duration,
}

impl Follower {
    /// A follower of the shard directory `dir` that delivers entries at or after `from`.
    pub fn new(dir: &Path, from: Position) -> Self {
        Follower {
            dir: dir.to_path_buf(),
            from,
            current: None,
            done: None,
            delivered: None,
            stalled: None,
            stall_limit: STALL_LIMIT,
        }
    }

    /// Replaces [`STALL_LIMIT`] (tests use a short one).
    pub fn with_stall_limit(mut self, limit: std::time::Duration) -> Self {
        self.stall_limit = limit;
        self
    }

    /// The last position delivered.
    pub fn position(&self) -> Option<Position> {
        self.delivered
    }

    /// Returns the entries that became readable since the last call (possibly none). Call it
    /// again later to get more; it never blocks.
    pub fn poll(&mut self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        while out.len() < MAX_BATCH {
            if self.current.is_none() && !self.pick_segment()? {
                break;
            }
            let (path, name_pos, offset) = self.current.clone().expect("picked");
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // An unsealed segment removed by recovery: look again.
                    self.current = None;
                    if !self.pick_segment()? {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(super::error::io(&path)(e)),
            };
            let mut at = offset;
            if at == 0 {
                let Some(h) = read_exact_or_wait(&file, &path, 0, SEGMENT_HEADER_LEN)? else {
                    break;
                };
                if h[SEGMENT_HEADER_LEN - 1] == 0
                    && SegmentHeader::decode(&h, &path).is_err()
                    && only_zeros_from(&file, &path, SEGMENT_HEADER_LEN as u64)?
                {
                    break; // preallocated by a copy tool, not written yet
                }
                SegmentHeader::decode(&h, &path)?;
                at = SEGMENT_HEADER_LEN as u64;
            }
            let mut sealed = false;
            while out.len() < MAX_BATCH {
                let Some(hb) = read_exact_or_wait(&file, &path, at, FRAME_HEADER_LEN)? else {
                    break;
                };
                let header = match FrameHeader::decode(&hb) {
                    Ok(h) => h,
                    Err(_)
                        if hb[FRAME_HEADER_LEN - 1] == 0
                            && only_zeros_from(&file, &path, at + FRAME_HEADER_LEN as u64)? =>
                    {
                        break; // not written yet (a preallocated file filled in place)
                    }
                    Err(e) => return Err(corrupt(&path, at, e.to_string())),
                };
                if header.kind == FrameKind::Seal {
                    sealed = true;
                    break;
                }
                let Some(payload) = read_exact_or_wait(
                    &file,
                    &path,
                    at + FRAME_HEADER_LEN as u64,
                    header.stored_len as usize,
                )?
                else {
                    break;
                };
                let end = at + header.frame_len();
                if let Err(e) = frame::check_payload(&header, &payload) {
                    if payload.last() == Some(&0) && only_zeros_from(&file, &path, end)? {
                        break; // the end of the payload may not be written yet
                    }
                    return Err(corrupt(&path, at, e.to_string()));
                }
                let entries = frame::decode_records(&header, &payload)
                    .map_err(|e| corrupt(&path, at, e.to_string()))?;
                for e in entries {
                    if e.position >= self.from && self.delivered.is_none_or(|d| e.position > d) {
                        self.delivered = Some(e.position);
                        out.push(e);
                    }
                }
                at += header.frame_len();
            }
            if sealed {
                self.done = Some(name_pos);
                self.current = None;
                self.stalled = None;
            } else {
                self.check_stall(&file, &path, name_pos, at)?;
                self.current = Some((path, name_pos, at));
                break;
            }
        }
        Ok(out)
    }

    /// The follower stops at byte `at` of the unsealed segment `path`: fine while the segment
    /// can still grow, an error once it cannot (see the module docs).
    fn check_stall(&mut self, file: &File, path: &Path, name_pos: Position, at: u64) -> Result<()> {
        let len = file.metadata().map_err(super::error::io(path))?.len();
        let same = self
            .stalled
            .as_ref()
            .is_some_and(|(p, a, l, _)| p == path && *a == at && *l == len);
        if !same {
            // Progress since the last poll (or the first wait here): nothing to look up.
            self.stalled = Some((path.to_path_buf(), at, len, std::time::Instant::now()));
            return Ok(());
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Ok(m) = super::manifest::read_shard(&self.dir)
            && let Some(listed) = m.sealed.iter().find(|s| s.file == name)
            && len >= listed.bytes
        {
            return Err(corrupt(
                path,
                at,
                format!(
                    "shard.json lists this segment as sealed ({} bytes, all present), but it \
                     cannot be read past this offset",
                    listed.bytes
                ),
            ));
        }
        let since = self
            .stalled
            .as_ref()
            .map(|s| s.3.elapsed())
            .unwrap_or_default();
        if since >= self.stall_limit && segment::list(&self.dir)?.iter().any(|(p, _)| *p > name_pos)
        {
            return Err(corrupt(
                path,
                at,
                format!(
                    "the segment stops here (a torn or damaged frame, {len} bytes in the file) \
                     and a later segment exists, so it will not be completed; unchanged for {} s",
                    since.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Chooses the segment to read next; false if there is none yet.
    fn pick_segment(&mut self) -> Result<bool> {
        let files = segment::list(&self.dir)?;
        let pick = match self.done {
            Some(done) => files.into_iter().find(|(p, _)| *p > done),
            None => {
                let start = self.delivered.unwrap_or(self.from);
                let i = files.partition_point(|(p, _)| *p <= start);
                files.into_iter().nth(i.saturating_sub(1))
            }
        };
        Ok(match pick {
            Some((p, path)) => {
                self.current = Some((path, p, 0));
                true
            }
            None => false,
        })
    }
}

fn corrupt(path: &Path, offset: u64, what: String) -> Error {
    Error::Corruption {
        file: path.to_path_buf(),
        offset,
        what,
    }
}

/// Whether the file holds only zero bytes from `offset` (up to 64 KiB are looked at; the end
/// of the file counts as zeros). Damage followed by written data is final; damage followed by
/// nothing or by zeros may be a file still being filled in, so the follower waits on it.
fn only_zeros_from(file: &File, path: &Path, offset: u64) -> Result<bool> {
    let size = file.metadata().map_err(super::error::io(path))?.len();
    let len = size.saturating_sub(offset).min(64 << 10) as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .map_err(super::error::io(path))?;
    Ok(buf.iter().all(|b| *b == 0))
}

/// Reads `len` bytes at `offset`, or `None` if the file does not hold them yet.
fn read_exact_or_wait(
    file: &File,
    path: &Path,
    offset: u64,
    len: usize,
) -> Result<Option<Vec<u8>>> {
    let size = file.metadata().map_err(super::error::io(path))?.len();
    if size < offset + len as u64 {
        return Ok(None);
    }
    let mut buf = vec![0u8; len];
    match file.read_exact_at(&mut buf, offset) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(super::error::io(path)(e)),
    }
}
