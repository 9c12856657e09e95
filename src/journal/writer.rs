//! The shard writer: appends records, groups them into frames, rotates and seals segments,
//! applies the fsync policy and reports the last durable position.
//!
//! A caller (capture) feeds one shard in order:
//!
//! ```text
//! open → capture_start → begin_snapshot → key* (big values chunked) → function_library*
//!      → module_aux* → end_snapshot → (command | transaction | marker)* → … → close
//! ```
//!
//! and acknowledges to the master only [`ShardWriter::durable_position`]. Records are buffered
//! into a frame until it reaches [`WriterOptions::frame_size`] or the caller calls
//! [`ShardWriter::flush`]; a frame is written whole and never straddles segments.
//!
//! Rotation order (what makes a crash at any point recoverable): the full segment gets its seal
//! frame, is synced, its index written, and its SHA-256 published in `shard.json` (atomic
//! replace); only then is the next segment created, its header written and synced, and the
//! directory synced.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::io;
use super::frame::{self, FrameKind, MAX_FRAME_LEN, PositionDelta};
use super::index::SegmentIndex;
use super::manifest::{self, EpochInfo, ReplIdSpan, SealedSegment, ShardManifest};
use super::record::{
    Command, FunctionLibrary, KeyRecord, MAX_POSITION_LEN, Marker, ModuleAux, Record,
    SnapshotBegin, SnapshotEnd, Transaction, ValueChunk, encode_position, encode_record,
};
use super::record_ref::{BytesRef, CommandRef, RecordRef, encode_record_ref};
use super::segment::{self, SealFooter, SegmentHeader};
use super::{Error, FORMAT_VERSION, Position, Result};

/// When appended data is forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every frame written: slowest, nothing acknowledged can be lost.
    Always,
    /// At most this long after a frame is written (checked on each write and each
    /// [`ShardWriter::tick`]). The default, 1 s.
    Interval(Duration),
    /// Never explicitly (only on rotation and close); the OS decides. For throwaway captures.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// Tuning of a [`ShardWriter`].
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Rotate when a segment would grow past this many bytes (default 256 MiB).
    pub segment_size: u64,
    /// Rotate a segment older than this, so a quiet capture still produces closed segments to
    /// ship (default: none).
    pub segment_max_age: Option<Duration>,
    /// Durability policy (default interval, 1 s).
    pub fsync: FsyncPolicy,
    /// Target uncompressed size of a frame (default 1 MiB).
    pub frame_size: usize,
    /// zstd level (default 3).
    pub zstd_level: i32,
    /// Key values longer than this are split into [`ValueChunk`] records (default 512 KiB).
    pub chunk_size: usize,
    /// Frames compressed concurrently on the rayon pool while the caller keeps appending
    /// (default 2; 1 compresses inline on the caller's thread). Frames are still written in
    /// order, and only written frames count towards the durable position.
    pub compress_threads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            segment_size: 256 << 20,
            segment_max_age: None,
            fsync: FsyncPolicy::default(),
            frame_size: 1 << 20,
            zstd_level: 3,
            chunk_size: 512 << 10,
            compress_threads: 2,
        }
    }
}

/// What a capture needs to resume with a partial resync; see [`ShardWriter::resume_point`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The epoch that continues.
    pub epoch: u64,
    /// The replication id to ask for.
    pub replid: String,
    /// The last offset captured durably; ask for the byte after it.
    pub offset: u64,
}

/// The segment being written.
pub(crate) struct Active {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) header: SegmentHeader,
    pub(crate) len: u64,
    pub(crate) sha: Sha256,
    pub(crate) footer: SealFooter,
    pub(crate) created: Instant,
    pub(crate) index: Vec<(Position, u64)>,
    pub(crate) last: Position,
}

/// Appends records to one shard of a journal. One writer per shard at a time (not enforced by
/// a lock: capture owns its shards). Dropping a writer without [`ShardWriter::close`] loses
/// the records still buffered in memory, exactly as a crash would; everything written stays
/// recoverable.
pub struct ShardWriter {
    pub(crate) dir: PathBuf,
    pub(crate) opts: WriterOptions,
    pub(crate) manifest: ShardManifest,
    pub(crate) active: Option<Active>,
    pub(crate) next_number: u64,
    pub(crate) prev_last: Option<Position>,
    pub(crate) last: Option<Position>,
    pub(crate) written: Option<Position>,
    pub(crate) durable: Option<Position>,
    pub(crate) last_sync: Instant,
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    raw_count: u32,
    raw_first: Option<Position>,
    raw_last: Position,
    raw_times: (u64, u64),
    scratch: Vec<u8>,
    inflight: VecDeque<(FrameMeta, InFlight)>,
    poisoned: bool,
    /// `writer.lock`, held with an exclusive `flock` for the writer's life: a second writer on
    /// the same shard (another capture, or a second open in this process) is refused instead of
    /// interleaving frames. The kernel drops the lock when the process dies, so a crash never
    /// leaves it stale.
    _lock: File,
}

/// Name of the lock file in a shard directory.
pub const LOCK_FILE: &str = "writer.lock";

/// Name of the file another process creates in a shard directory to ask the shard's writer
/// (a running capture) to seal its active segment; the writer removes it once the seal is
/// published in `shard.json` (see [`ShardWriter::serve_seal_request`]). Its content is free
/// text for operators (who asked, when).
pub const SEAL_REQUEST: &str = "seal.request";

/// Takes the shard's writer lock.
pub(crate) fn lock_shard(dir: &Path) -> Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    // SAFETY: flock on a file descriptor we own, with constant flags; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                lock: path,
            });
        }
        return Err(io(&path)(err));
    }
    Ok(file)
}

/// What a frame in flight covers.
#[derive(Clone, Copy)]
struct FrameMeta {
    first: Position,
    last: Position,
    count: u32,
    raw_len: u64,
    times: (u64, u64),
}

/// A frame being compressed, or compressed and waiting for its turn.
enum InFlight {
    Ready(Vec<u8>),
    Pending(std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>),
}

thread_local! {
    /// One zstd compression context per rayon worker (and level).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

impl ShardWriter {
    /// Opens shard `shard` of the journal at `journal_dir` for appending, recovering from a
    /// crash if needed (see [`super::recovery`]): a torn tail of the last segment is cut (and
    /// logged), a sealed segment missing from the manifest is published.
    pub fn open(journal_dir: &Path, shard: &str, opts: WriterOptions) -> Result<ShardWriter> {
        super::recovery::open_for_append(&journal_dir.join(shard), opts)
    }

    pub(crate) fn from_parts(
        lock: File,
        dir: PathBuf,
        opts: WriterOptions,
        manifest: ShardManifest,
        active: Option<Active>,
        next_number: u64,
        prev_last: Option<Position>,
    ) -> Result<ShardWriter> {
        let last = active.as_ref().map(|a| a.last).or(prev_last);
        let compressor = zstd::bulk::Compressor::new(opts.zstd_level).map_err(io(&dir))?;
        Ok(ShardWriter {
            dir,
            opts,
            manifest,
            active,
            next_number,
            prev_last,
            last,
            written: last,
            durable: last,
            last_sync: Instant::now(),
            compressor,
            raw: Vec::new(),
            raw_count: 0,
            raw_first: None,
            raw_last: Position::ZERO,
            raw_times: (u64::MAX, 0),
            scratch: Vec::new(),
            inflight: VecDeque::new(),
            poisoned: false,
            _lock: lock,
        })
    }

    /// The last position appended (possibly still buffered, not yet durable).
    pub fn last_position(&self) -> Option<Position> {
        self.last
    }

    /// The last position known to be on stable storage: the only one capture may acknowledge.
    pub fn durable_position(&self) -> Option<Position> {
        self.durable
    }

    /// The current epoch (0 before the first snapshot).
    pub fn epoch(&self) -> u64 {
        self.last.map_or(0, |p| p.epoch)
    }

    /// The shard manifest as it stands (epochs, sealed segments).
    pub fn manifest(&self) -> &ShardManifest {
        &self.manifest
    }

    /// Where a capture resumes after a restart: the replication id in force at the last
    /// *durable* position's offset, and that offset (send `PSYNC <replid> <offset + 1>`).
    /// `None` before the first snapshot, or if `shard.json` does not know the epoch (then only
    /// a full resync is possible). The epoch of the durable position is used, not the newest
    /// epoch in the manifest: an epoch registered just before a crash may have lost its data.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        let p = self.durable?;
        let info = self.manifest.epochs.iter().find(|e| e.epoch == p.epoch)?;
        let span = info
            .replids
            .iter()
            .rev()
            .find(|r| r.from_offset <= p.offset.saturating_add(1))?;
        Some(ResumePoint {
            epoch: p.epoch,
            replid: span.replid.clone(),
            offset: p.offset,
        })
    }

    /// The position a marker or snapshot record appended now gets: same epoch and offset as
    /// the last record, next seq.
    fn next_seq(&self) -> Position {
        match self.last {
            None => Position::ZERO,
            Some(p) => Position::new(p.epoch, p.offset, p.seq + 1),
        }
    }

    /// Appends `record` at `position`, which must come after the last position. The low-level
    /// entry point; the typed methods below compute positions for you.
    pub fn append(&mut self, position: Position, record: &Record) -> Result<()> {
        self.append_with(position, record.kind_name(), record.time_ms(), |out| {
            encode_record(record, out)
        })
    }

    /// Appends a borrowed record (same bytes as its owned form); see [`RecordRef`]. Lets a
    /// caller journal data straight from its own buffers.
    pub fn append_ref(&mut self, position: Position, record: &RecordRef<'_>) -> Result<()> {
        self.append_with(position, record.kind_name(), record.time_ms(), |out| {
            encode_record_ref(record, out)
        })
    }

    fn append_with(
        &mut self,
        position: Position,
        kind: &str,
        time_ms: Option<u64>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        self.check_poisoned()?;
        if let Some(last) = self.last
            && position <= last
        {
            return Err(Error::Order {
                last,
                next: position,
                what: format!("append of a {kind} record"),
            });
        }
        self.scratch.clear();
        encode(&mut self.scratch);
        let entry_len = self.scratch.len() + MAX_POSITION_LEN;
        if entry_len > MAX_FRAME_LEN {
            return Err(Error::TooLarge {
                position,
                len: entry_len,
                limit: MAX_FRAME_LEN,
            });
        }
        if !self.raw.is_empty() && self.raw.len() + entry_len > self.opts.frame_size {
            self.write_frame()?;
        }
        // The position relative to the frame's previous entry (format 2, `PositionDelta`).
        let prev = (!self.raw.is_empty()).then_some(self.raw_last);
        encode_position(PositionDelta::encode(prev, position), &mut self.raw);
        self.raw.extend_from_slice(&self.scratch);
        self.raw_count += 1;
        self.raw_first.get_or_insert(position);
        self.raw_last = position;
        if let Some(t) = time_ms {
            self.raw_times = (self.raw_times.0.min(t), self.raw_times.1.max(t));
        }
        self.last = Some(position);
        if self.raw.len() >= self.opts.frame_size || self.raw_count == u32::MAX {
            self.write_frame()?;
        }
        Ok(())
    }

    /// Appends a command given as borrowed arguments (e.g. slices of the replication stream's
    /// receive buffer), without building an owned [`Command`].
    pub fn command_ref(
        &mut self,
        offset: u64,
        db: u32,
        time_ms: u64,
        argv: &[&[u8]],
    ) -> Result<Position> {
        let p = Position::new(self.epoch(), offset, 0);
        let record = RecordRef::Command(CommandRef {
            db,
            time_ms,
            argv: argv.iter().map(|a| BytesRef(a)).collect(),
        });
        self.append_ref(p, &record)?;
        Ok(p)
    }

    /// Appends a marker at the next seq of the current offset.
    pub fn marker(&mut self, marker: Marker) -> Result<Position> {
        let p = self.next_seq();
        self.append(p, &Record::Marker(marker))?;
        Ok(p)
    }

    /// Marks the start of a capture session.
    pub fn capture_start(&mut self, time_ms: u64) -> Result<Position> {
        self.marker(Marker::CaptureStart {
            time_ms,
            shake_version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    /// Starts a new epoch with a snapshot at `begin.offset`: records the epoch and its replid
    /// in `shard.json` (before any of its records, so the manifest never lacks an epoch that
    /// has data), then appends an `EpochStart` marker and the `SnapshotBegin` record.
    /// Returns the new epoch.
    pub fn begin_snapshot(&mut self, begin: SnapshotBegin, replid2: Option<String>) -> Result<u64> {
        let epoch = self
            .epoch()
            .max(self.manifest.epochs.last().map_or(0, |e| e.epoch))
            + 1;
        self.manifest.epochs.push(EpochInfo {
            epoch,
            start_offset: begin.offset,
            replids: vec![ReplIdSpan {
                from_offset: begin.offset,
                replid: begin.replid.clone(),
                replid2: replid2.clone(),
            }],
        });
        self.write_manifest()?;
        let p = Position::new(epoch, begin.offset, 0);
        self.append(
            p,
            &Record::Marker(Marker::EpochStart {
                epoch,
                replid: begin.replid.clone(),
                replid2,
            }),
        )?;
        self.append(
            Position::new(epoch, begin.offset, 1),
            &Record::SnapshotBegin(begin),
        )?;
        Ok(epoch)
    }

    /// Appends a snapshot key, splitting a value longer than [`WriterOptions::chunk_size`] into
    /// the key record and following [`ValueChunk`] records (`value_len` and `chunks` are set
    /// here; callers pass the whole value). For values too large to hold in memory, use
    /// [`ShardWriter::begin_key`].
    pub fn key(&mut self, mut key: KeyRecord) -> Result<Position> {
        let value = std::mem::take(&mut key.value);
        let mut kw = self.begin_key(key, value.len() as u64)?;
        if value.len() <= kw.chunk {
            // Small value: moved into the record, not copied.
            kw.buf = value;
            kw.remaining = 0;
        } else {
            kw.write(&value)?;
        }
        kw.finish()
    }

    /// Starts a snapshot key whose value, of exactly `value_len` bytes, is given in pieces
    /// through [`KeyValueWriter::write`] (e.g. straight from an RDB stream), and ends with
    /// [`KeyValueWriter::finish`]. The records written are the same as [`ShardWriter::key`]'s
    /// for the whole value. `meta.value`, `value_len` and `chunks` are ignored.
    pub fn begin_key(&mut self, meta: KeyRecord, value_len: u64) -> Result<KeyValueWriter<'_>> {
        let chunk = self.opts.chunk_size.max(1);
        let chunks = value_len.div_ceil(chunk as u64).saturating_sub(1);
        let chunks = u32::try_from(chunks).map_err(|_| {
            Error::Invalid(format!(
                "a value of {value_len} bytes needs more than 2^32 chunks of {chunk}"
            ))
        })?;
        Ok(KeyValueWriter {
            meta: Some(KeyRecord {
                value_len,
                chunks,
                value: Vec::new(),
                ..meta
            }),
            buf: Vec::with_capacity(chunk.min(value_len as usize)),
            remaining: value_len,
            next_index: 0,
            chunk,
            position: None,
            writer: self,
        })
    }

    /// Appends a function library of the snapshot.
    pub fn function_library(&mut self, code: Vec<u8>) -> Result<Position> {
        let p = self.next_seq();
        self.append(p, &Record::FunctionLibrary(FunctionLibrary { code }))?;
        Ok(p)
    }

    /// Appends module aux data of the snapshot.
    pub fn module_aux(&mut self, aux: ModuleAux) -> Result<Position> {
        let p = self.next_seq();
        self.append(p, &Record::ModuleAux(aux))?;
        Ok(p)
    }

    /// Ends the snapshot.
    pub fn end_snapshot(&mut self, end: SnapshotEnd) -> Result<Position> {
        let p = self.next_seq();
        self.append(p, &Record::SnapshotEnd(end))?;
        Ok(p)
    }

    /// Appends a command whose replication offset (after it) is `offset`, in the current epoch.
    pub fn command(&mut self, offset: u64, command: Command) -> Result<Position> {
        let p = Position::new(self.epoch(), offset, 0);
        self.append(p, &Record::Command(command))?;
        Ok(p)
    }

    /// Appends a whole `MULTI … EXEC` block ending at replication offset `offset`.
    pub fn transaction(&mut self, offset: u64, tx: Transaction) -> Result<Position> {
        let p = Position::new(self.epoch(), offset, 0);
        self.append(p, &Record::Transaction(tx))?;
        Ok(p)
    }

    /// Records that a partial resync continued the current epoch under a new replid, from
    /// `from_offset` on: in `shard.json` and as a marker.
    pub fn replid_changed(
        &mut self,
        from_offset: u64,
        replid: String,
        replid2: Option<String>,
    ) -> Result<Position> {
        let epoch = self.epoch();
        if let Some(e) = self.manifest.epochs.iter_mut().find(|e| e.epoch == epoch) {
            e.replids.push(ReplIdSpan {
                from_offset,
                replid: replid.clone(),
                replid2: replid2.clone(),
            });
            self.write_manifest()?;
        }
        self.marker(Marker::ReplId { replid, replid2 })
    }

    /// Writes the buffered records as a frame (if any) and applies the fsync policy. Capture
    /// calls this at least as often as it wants acknowledgements to advance.
    pub fn flush(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if !self.raw.is_empty() {
            self.write_frame()?;
        }
        self.drain()?;
        self.tick()
    }

    /// Writes buffered records and forces everything to stable storage now. Returns the durable
    /// position.
    pub fn sync(&mut self) -> Result<Option<Position>> {
        self.check_poisoned()?;
        if !self.raw.is_empty() {
            self.write_frame()?;
        }
        self.drain()?;
        self.sync_active()?;
        Ok(self.durable)
    }

    /// Time-driven work: an interval fsync that is due, and sealing a segment older than
    /// [`WriterOptions::segment_max_age`]. Call it periodically (e.g. every 100 ms) even when
    /// no data arrives.
    pub fn tick(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if let FsyncPolicy::Interval(d) = self.opts.fsync
            && self.durable != self.written
            && self.last_sync.elapsed() >= d
        {
            self.sync_active()?;
        }
        if let (Some(max), Some(a)) = (self.opts.segment_max_age, &self.active)
            && a.created.elapsed() >= max
        {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the segment being written now (writing buffered records first), so it can be
    /// shipped. The next record starts a new segment.
    pub fn seal(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if !self.raw.is_empty() {
            self.write_frame()?;
        }
        self.drain()?;
        self.seal_active()
    }

    /// Answers a [`SEAL_REQUEST`] left in the shard directory by another process (`shake ship
    /// --include-active` while this writer runs): seals the active segment (a no-op when it
    /// holds nothing), then removes the request, which tells the requester that `shard.json`
    /// is up to date. Returns whether there was a request. Cheap (one `stat`) when there is
    /// none; the capture calls it on its periodic tick.
    pub fn serve_seal_request(&mut self) -> Result<bool> {
        let req = self.dir.join(SEAL_REQUEST);
        if !req.exists() {
            return Ok(false);
        }
        self.seal()?;
        match std::fs::remove_file(&req) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&req)(e)),
        }
        manifest::sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Writes buffered records, seals the active segment and syncs everything. Returns the
    /// last (durable) position.
    pub fn close(mut self) -> Result<Option<Position>> {
        self.seal()?;
        Ok(self.durable)
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Invalid(
                "writer failed earlier; reopen the shard to recover".into(),
            ));
        }
        Ok(())
    }

    fn write_manifest(&mut self) -> Result<()> {
        manifest::write_json_atomic(&self.dir.join(manifest::SHARD_MANIFEST), &self.manifest)
    }

    fn sync_active(&mut self) -> Result<()> {
        if let Some(a) = &self.active {
            a.file.sync_data().map_err(io(&a.path))?;
        }
        self.durable = self.written;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Hands the buffered records over as a frame: compressed inline, or on the rayon pool
    /// when [`WriterOptions::compress_threads`] > 1, in which case up to that many frames are in
    /// flight and written in order as they complete.
    fn write_frame(&mut self) -> Result<()> {
        let first = self.raw_first.take().expect("a frame has records");
        let meta = FrameMeta {
            first,
            last: self.raw_last,
            count: self.raw_count,
            raw_len: self.raw.len() as u64,
            times: self.raw_times,
        };
        self.raw_count = 0;
        self.raw_times = (u64::MAX, 0);
        if self.opts.compress_threads <= 1 {
            let bytes = frame::encode_records_frame(
                &mut self.compressor,
                FrameKind::RecordsDelta,
                &self.raw,
                meta.first,
                meta.last,
                meta.count,
            );
            self.raw.clear();
            let bytes = bytes.map_err(io(&self.dir))?;
            self.inflight.push_back((meta, InFlight::Ready(bytes)));
        } else {
            let raw = std::mem::replace(&mut self.raw, Vec::with_capacity(self.opts.frame_size));
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let level = self.opts.zstd_level;
            rayon::spawn(move || {
                let r = COMPRESSOR.with(|c| {
                    let mut c = c.borrow_mut();
                    if c.as_ref().is_none_or(|(l, _)| *l != level) {
                        *c = Some((level, zstd::bulk::Compressor::new(level)?));
                    }
                    let (_, comp) = c.as_mut().expect("set above");
                    frame::encode_records_frame(
                        comp,
                        FrameKind::RecordsDelta,
                        &raw,
                        meta.first,
                        meta.last,
                        meta.count,
                    )
                });
                let _ = tx.send(r);
            });
            self.inflight.push_back((meta, InFlight::Pending(rx)));
        }
        // Inline: write at once. Pooled: up to `compress_threads` frames compress at the same
        // time while the caller fills the next one.
        let depth = if self.opts.compress_threads <= 1 {
            0
        } else {
            self.opts.compress_threads
        };
        while self.inflight.len() > depth {
            self.complete_frame()?;
        }
        Ok(())
    }

    /// Writes every frame still in flight.
    fn drain(&mut self) -> Result<()> {
        while !self.inflight.is_empty() {
            self.complete_frame()?;
        }
        Ok(())
    }

    /// Writes the oldest frame in flight to the active segment (rotating first if it would
    /// overflow), then applies the fsync policy.
    fn complete_frame(&mut self) -> Result<()> {
        let Some((meta, f)) = self.inflight.pop_front() else {
            return Ok(());
        };
        let bytes = match f {
            InFlight::Ready(b) => b,
            InFlight::Pending(rx) => match rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    self.poisoned = true;
                    return Err(io(&self.dir)(e));
                }
                Err(_) => {
                    self.poisoned = true;
                    return Err(Error::Invalid("frame compression task vanished".into()));
                }
            },
        };
        let rotate = self.active.as_ref().is_some_and(|a| {
            a.len + bytes.len() as u64 > self.opts.segment_size
                || self
                    .opts
                    .segment_max_age
                    .is_some_and(|m| a.created.elapsed() >= m)
        });
        if rotate {
            self.seal_active()?;
        }
        if self.active.is_none()
            && let Err(e) = self.create_segment(meta.first)
        {
            self.poisoned = true;
            return Err(e);
        }
        let a = self.active.as_mut().expect("created above");
        if let Err(e) = a.file.write_all(&bytes) {
            self.poisoned = true;
            return Err(io(&a.path)(e));
        }
        a.sha.update(&bytes);
        a.index.push((meta.first, a.len));
        a.len += bytes.len() as u64;
        a.last = meta.last;
        a.footer.frames += 1;
        a.footer.records += u64::from(meta.count);
        a.footer.raw_bytes += meta.raw_len;
        a.footer.stored_bytes += bytes.len() as u64;
        if meta.times.0 <= meta.times.1 {
            let f = &mut a.footer;
            f.min_time_ms = if f.min_time_ms == 0 {
                meta.times.0
            } else {
                f.min_time_ms.min(meta.times.0)
            };
            f.max_time_ms = f.max_time_ms.max(meta.times.1);
        }
        self.written = Some(meta.last);
        match self.opts.fsync {
            FsyncPolicy::Always => self.sync_active()?,
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync_active()?,
            _ => {}
        }
        Ok(())
    }

    fn create_segment(&mut self, first: Position) -> Result<()> {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            number: self.next_number,
            first,
            prev_last: self.prev_last,
        };
        let path = self.dir.join(segment::file_name(first));
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        let h = header.encode();
        file.write_all(&h).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        manifest::sync_dir(&self.dir)?;
        let mut sha = Sha256::new();
        sha.update(h);
        self.next_number += 1;
        self.active = Some(Active {
            file,
            path,
            header,
            len: h.len() as u64,
            sha,
            footer: SealFooter::default(),
            created: Instant::now(),
            index: Vec::new(),
            last: first,
        });
        Ok(())
    }

    /// Seals the active segment; any failure poisons the writer (the segment may hold a
    /// partial seal, which only recovery may judge).
    fn seal_active(&mut self) -> Result<()> {
        let r = self.seal_active_inner();
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn seal_active_inner(&mut self) -> Result<()> {
        let Some(mut a) = self.active.take() else {
            return Ok(());
        };
        if a.footer.frames == 0 {
            // Nothing but a header (reopened after a crash and never written): drop it.
            std::fs::remove_file(&a.path).map_err(io(&a.path))?;
            self.next_number = a.header.number;
            return manifest::sync_dir(&self.dir);
        }
        let footer = a.footer.encode();
        let bytes = frame::encode_plain_frame(
            FrameKind::Seal,
            &footer,
            a.header.first,
            a.last,
            a.footer.records.min(u64::from(u32::MAX)) as u32,
        );
        a.file.write_all(&bytes).map_err(io(&a.path))?;
        a.sha.update(&bytes);
        a.file.sync_all().map_err(io(&a.path))?;
        let len = a.len + bytes.len() as u64;
        let entry = SealedSegment {
            file: segment::file_name(a.header.first),
            number: a.header.number,
            first: a.header.first,
            last: a.last,
            frames: a.footer.frames,
            records: a.footer.records,
            bytes: len,
            sha256: hex(&a.sha.finalize()),
        };
        SegmentIndex {
            entries: a.index,
            segment_len: len,
        }
        .write(&a.path)?;
        self.manifest.sealed.push(entry);
        self.write_manifest()?;
        self.prev_last = Some(a.last);
        self.durable = self.written;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// Writes one key's value in pieces; see [`ShardWriter::begin_key`]. Dropping it unfinished
/// leaves an incomplete key in the journal, as a crash would (a snapshot without its
/// `SnapshotEnd` is incomplete anyway).
pub struct KeyValueWriter<'w> {
    writer: &'w mut ShardWriter,
    meta: Option<KeyRecord>,
    buf: Vec<u8>,
    remaining: u64,
    next_index: u32,
    chunk: usize,
    position: Option<Position>,
}

impl KeyValueWriter<'_> {
    /// Adds the next bytes of the value. More bytes than announced is an error (and poisons
    /// the writer: the records already written promised another length).
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.remaining {
            self.writer.poisoned = true;
            return Err(Error::Invalid(format!(
                "key value longer than announced: {} more bytes given, {} expected",
                data.len(),
                self.remaining
            )));
        }
        self.remaining -= data.len() as u64;
        while !data.is_empty() {
            let take = (self.chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk && (self.remaining > 0 || !data.is_empty()) {
                self.emit()?;
            }
        }
        Ok(())
    }

    /// Writes what is left and returns the key record's position. Fewer bytes than announced
    /// is an error (and poisons the writer).
    pub fn finish(mut self) -> Result<Position> {
        if self.remaining > 0 {
            self.writer.poisoned = true;
            return Err(Error::Invalid(format!(
                "key value ended {} bytes short of its announced length",
                self.remaining
            )));
        }
        if self.meta.is_some() || !self.buf.is_empty() {
            self.emit()?;
        }
        Ok(self.position.expect("the key record was written"))
    }

    fn emit(&mut self) -> Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        let p = self.writer.next_seq();
        match self.meta.take() {
            Some(mut key) => {
                key.value = data;
                self.writer.append(p, &Record::Key(key))?;
                self.position = Some(p);
            }
            None => {
                self.next_index += 1;
                self.writer.append(
                    p,
                    &Record::ValueChunk(ValueChunk {
                        index: self.next_index,
                        data,
                    }),
                )?;
            }
        }
        Ok(())
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
