//! `shake replay`: make a target hold what the journal's source held — each shard's last complete
//! snapshot, then its commands in order — onto a standalone server or a cluster, in bulk or
//! following a journal that still grows, resumable from a checkpoint.
//!
//! # Flow
//! Per shard, a blocking thread reads the journal (one frame at a time: memory is bounded by a
//! frame plus the largest value, never the journal) and converts records into [`op::Op`]s; an
//! async task batches them (`--pipeline` commands), rate-limits, sends them through a
//! [`writer::Writer`] that checks every reply, and advances the shard's checkpoint only past
//! batches the target fully acknowledged. Shards run in parallel; order within a shard is exact.
//!
//! # Layout
//!
//! | file | concept |
//! |------|---------|
//! | [`error`] | [`Error`]: names target address, shard, position and key, never a password |
//! | [`options`] | [`ReplayOptions`]: target, policies, limits |
//! | [`plan`] | what the target is (product, RDB version, `proto-max-bulk-len`, topology) |
//! | [`op`] | the unit of work between journal and target |
//! | [`snapshot`] | snapshot keys → RESTORE or rewrite, conflict policy, expired keys |
//! | [`stream`] | commands/transactions → ops: db mapping, key positions, absolute expiries, cluster splits |
//! | [`router`] | cluster slot map, MOVED/ASK |
//! | [`writer`] | pipelined batches per node, reply checking, atomic marker batches |
//! | [`checkpoint`] | the atomic checkpoint file |
//! | [`rate`] | `--max-ops` / `--max-bytes` token buckets |
//! | [`report`] | counters, errors by kind, the summary |
//!
//! The user-facing description is `docs/replay.md`.

pub mod checkpoint;
pub mod error;
pub mod op;
pub mod options;
pub mod plan;
pub mod rate;
pub mod report;
pub mod router;
pub mod snapshot;
pub mod stream;
pub mod writer;

pub use error::{Error, Result};
pub use options::{ConflictPolicy, ReplayOptions, RestoreMode, Until};
pub use report::{Stats, Summary};

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use crate::journal::{self, Position, Record, RecoveryMode, ShardReader};

use checkpoint::{Checkpoint, Phase};
use op::Op;
use plan::TargetInfo;
use rate::Bucket;
use router::SlotMap;
use snapshot::{Converted, KeyConverter};
use stream::StreamConverter;
use writer::{Failure, Writer};

/// How one shard ended.
#[derive(Debug)]
pub struct ShardOutcome {
    /// Shard name.
    pub shard: String,
    /// The last position acknowledged by the target.
    pub acked: Option<Position>,
    /// Why it stopped early, if it did.
    pub error: Option<Error>,
    /// Dry run: commands routed per target node.
    pub dry_counts: std::collections::BTreeMap<String, u64>,
}

/// The result of a replay.
#[derive(Debug)]
pub struct Outcome {
    /// Per shard.
    pub shards: Vec<ShardOutcome>,
    /// The counters.
    pub summary: Summary,
    /// What the target is.
    pub target: TargetInfo,
}

/// Runs a replay until the journal's end (or `--until`), or — with `follow` — until `stop` is
/// set. `stats` is shared so a caller can report progress while it runs.
pub async fn run(opts: ReplayOptions, stop: Arc<AtomicBool>, stats: Arc<Stats>) -> Result<Outcome> {
    let manifest = journal::read_journal(&opts.journal_dir).map_err(|source| Error::Journal {
        shard: "-".into(),
        cause: source,
    })?;
    let shards: Vec<String> = manifest
        .shards
        .iter()
        .map(|s| s.name.clone())
        .filter(|n| opts.shards.is_empty() || opts.shards.contains(n))
        .collect();
    if shards.is_empty() {
        return Err(Error::Invalid(format!(
            "journal {} has no shard to replay (asked: {:?})",
            opts.journal_dir.display(),
            opts.shards
        )));
    }
    // The target may be down or restarting when replay starts: retry like any later failure.
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 0;
    let target = loop {
        match plan::inspect(&opts.target, &opts.connect).await {
            Ok(t) => break t,
            Err(e @ Error::Net { .. }) if attempt < opts.max_retries && !stop.load(Relaxed) => {
                attempt += 1;
                stats.reconnects.fetch_add(1, Relaxed);
                tracing::warn!(attempt, "{e}: retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(
        target = %opts.target,
        version = %target.version,
        rdb_version = target.rdb_version,
        cluster = target.is_cluster(),
        shards = shards.len(),
        "replay starting"
    );
    let checkpoint = match &opts.checkpoint {
        Some(p) => Some(Arc::new(Checkpoint::open(
            p,
            &opts.journal_dir,
            &opts.target.addr(),
        )?)),
        None => None,
    };
    let buckets = Arc::new((Bucket::new(opts.max_ops), Bucket::new(opts.max_bytes)));
    let saver = checkpoint.clone().map(|c| {
        let every = opts.checkpoint_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = c.save() {
                    tracing::warn!("{e}");
                }
            }
        })
    });
    let mut tasks = Vec::new();
    for shard in shards {
        let ctx = ShardCtx {
            shard: shard.clone(),
            opts: opts.clone(),
            target: target.clone(),
            checkpoint: checkpoint.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            buckets: buckets.clone(),
            journal_id: manifest.created_unix_ms,
            journal_shards: manifest.shards.len(),
        };
        tasks.push((shard, tokio::spawn(replay_shard(ctx))));
    }
    let mut outcomes = Vec::new();
    for (shard, t) in tasks {
        let outcome = match t.await {
            Ok(o) => o,
            Err(e) => ShardOutcome {
                shard,
                acked: None,
                error: Some(Error::Invalid(format!("shard task failed: {e}"))),
                dry_counts: Default::default(),
            },
        };
        outcomes.push(outcome);
    }
    if let Some(s) = saver {
        s.abort();
    }
    if let Some(c) = &checkpoint {
        c.save()?;
    }
    Ok(Outcome {
        shards: outcomes,
        summary: stats.summary(),
        target,
    })
}

struct ShardCtx {
    shard: String,
    opts: ReplayOptions,
    target: TargetInfo,
    checkpoint: Option<Arc<Checkpoint>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    buckets: Arc<(Bucket, Bucket)>,
    journal_id: u64,
    journal_shards: usize,
}

/// Bytes of converted ops allowed between the journal reader and the target (in KiB permits),
/// so big values cannot pile up in the channel: memory stays bounded whatever the journal.
const INFLIGHT_KIB: u32 = 128 * 1024;
/// A batch stops growing at this many bytes, whatever `--pipeline` says.
const BATCH_BYTES: u64 = 16 << 20;

fn kib(op: &Op) -> u32 {
    ((op.wire_len() >> 10) as u32).clamp(1, INFLIGHT_KIB)
}

enum Msg {
    Op(Op, tokio::sync::OwnedSemaphorePermit),
    /// The journal's end (bulk) was reached.
    End,
    Error(Error),
}

async fn replay_shard(ctx: ShardCtx) -> ShardOutcome {
    let mut acked = None;
    let mut dry = Default::default();
    let error = drive(&ctx, &mut acked, &mut dry).await.err();
    if let Some(e) = &error {
        tracing::error!(shard = %ctx.shard, "{e}");
    }
    ShardOutcome {
        shard: ctx.shard.clone(),
        acked,
        error,
        dry_counts: dry,
    }
}

/// Finds the last epoch whose snapshot is complete, and its start position.
fn last_complete_epoch(reader: &ShardReader, shard: &str) -> Result<(u64, Position)> {
    let jerr = |source| Error::Journal {
        shard: shard.to_string(),
        cause: source,
    };
    let mut starts: Vec<Position> = reader
        .manifest()
        .epochs
        .iter()
        .map(|e| Position::new(e.epoch, e.start_offset, 0))
        .collect();
    if reader.manifest().epochs.is_empty() {
        // no epoch list (a shard manifest not yet rewritten): scan everything, keep the last
        let mut found = None;
        for e in reader.entries() {
            let e = e.map_err(jerr)?;
            if let Record::SnapshotEnd(_) = e.record {
                found = Some(e.position.epoch);
            }
        }
        if let Some(epoch) = found {
            return Ok((epoch, Position::new(epoch, 0, 0)));
        }
        starts.clear();
    }
    for start in starts.iter().rev() {
        for e in reader.entries_from(Position::new(start.epoch, 0, 0)) {
            let e = e.map_err(jerr)?;
            if e.position.epoch != start.epoch {
                break;
            }
            if let Record::SnapshotEnd(_) = e.record {
                return Ok((e.position.epoch, Position::new(e.position.epoch, 0, 0)));
            }
            if matches!(e.record, Record::Command(_) | Record::Transaction(_)) {
                break; // a snapshot ends before the stream starts
            }
        }
    }
    Err(Error::NoSnapshot {
        shard: shard.to_string(),
        why:
            "no complete snapshot (SnapshotBegin … SnapshotEnd) in any epoch: nothing to start from"
                .into(),
    })
}

async fn drive(
    ctx: &ShardCtx,
    acked: &mut Option<Position>,
    dry: &mut std::collections::BTreeMap<String, u64>,
) -> Result<()> {
    let opts = &ctx.opts;
    let shard = ctx.shard.clone();
    let dir = opts.journal_dir.join(&shard);
    let reader =
        ShardReader::open_dir(&dir, RecoveryMode::Refuse).map_err(|source| Error::Journal {
            shard: shard.clone(),
            cause: source,
        })?;
    let (epoch, start) = last_complete_epoch(&reader, &shard)?;
    // lag is measured against the journal's end (moved on by the follower in --follow)
    if let Some(end) = reader.last() {
        ctx.stats.read_to(&shard, end.offset);
    }
    let standalone_addr = opts.target.addr();
    let map = SlotMap::new(&ctx.target.topology, &standalone_addr);
    let marker = ctx
        .checkpoint
        .as_ref()
        .map(|_| format!("shake-replay:{}:{}", ctx.journal_id, shard).into_bytes());
    let mut writer = Writer::new(
        &shard,
        &opts.target,
        &opts.connect,
        map,
        opts.dry_run,
        ctx.stats.clone(),
        marker,
    );
    // Where to resume: the checkpoint, or the marker when it is further (a crash after the
    // target applied a batch but before the checkpoint file recorded it).
    let mut after: Option<Position> = None;
    if let Some(state) = ctx.checkpoint.as_ref().and_then(|c| c.get(&shard)) {
        let p = state.position();
        if p.epoch == epoch {
            after = Some(p);
        } else if p.epoch < epoch {
            tracing::warn!(shard = %shard, checkpoint = %p, epoch, "the journal has a newer snapshot than the checkpoint: replaying it from its start");
        } else {
            return Err(Error::Invalid(format!(
                "shard {shard}: the checkpoint is at {p}, beyond the journal's last complete epoch {epoch}: wrong journal or checkpoint"
            )));
        }
    }
    if writer.atomic() {
        let m = retry(ctx, &mut writer, |w| Box::pin(w.marker_position())).await?;
        if let Some(m) = m
            && m.epoch == epoch
            && after.is_none_or(|a| m > a)
        {
            tracing::info!(shard = %shard, marker = %m, "the target applied a batch the checkpoint had not recorded: resuming after it");
            after = Some(m);
        }
    }
    if let Some(a) = after {
        tracing::info!(shard = %shard, after = %a, "resuming");
        *acked = Some(a);
    }
    drop(reader);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(4096);
    let budget = Arc::new(tokio::sync::Semaphore::new(INFLIGHT_KIB as usize));
    let rctx = ReadCtx {
        shard: shard.clone(),
        dir: dir.clone(),
        epoch,
        start,
        after,
        keys: KeyConverter::new(&ctx.target, opts.restore, opts.on_conflict),
        stream: StreamConverter {
            journal_shards: ctx.journal_shards,
            ..StreamConverter::new(
                &shard,
                ctx.target.is_cluster(),
                ctx.target.version_number(),
                opts,
            )
        },
        until: opts.until,
        follow: opts.follow,
        stop: ctx.stop.clone(),
        stats: ctx.stats.clone(),
        addr: standalone_addr.clone(),
        budget,
        handle: tokio::runtime::Handle::current(),
    };
    let reader_thread = tokio::task::spawn_blocking(move || read_shard(rctx, tx));

    let pipeline = opts.pipeline.max(1);
    let mut pending: Option<(Op, Permit)> = None;
    let mut marker_dirty = false;
    let mut result = Ok(());
    // Batches written whose replies are not read yet (at most two: the server works on one
    // while the next is written). `None`: the connection broke, resend (marker-checked).
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut ended = false;
    let mut keep_none = false;
    let mut reader_error: Option<Error> = None;
    'outer: loop {
        let mut batch: Vec<Op> = Vec::new();
        let mut permits = Vec::new();
        let mut cmds = 0usize;
        let mut bytes = 0u64;
        if let Some((op, permit)) = pending.take() {
            cmds += op.len();
            bytes += op.wire_len();
            batch.push(op);
            permits.push(permit);
        }
        while !ended && cmds < pipeline && bytes < BATCH_BYTES {
            let msg = if batch.is_empty() && inflight.is_empty() {
                // idle: caught up. Make the checkpoint durable and drop the marker.
                if marker_dirty && rx.is_empty() {
                    if let Some(c) = &ctx.checkpoint
                        && let Err(e) = c.save()
                    {
                        result = Err(e);
                        break 'outer;
                    }
                    if let Err(e) = retry(ctx, &mut writer, |w| Box::pin(w.clear_marker())).await {
                        result = Err(e);
                        break 'outer;
                    }
                    marker_dirty = false;
                }
                rx.recv().await
            } else {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(_) => None,
                }
            };
            match msg {
                None | Some(Msg::End) => {
                    ended = true;
                    break;
                }
                Some(Msg::Error(e)) => {
                    // finish what is in flight (so the checkpoint covers it), then stop
                    reader_error = Some(e);
                    ended = true;
                    break;
                }
                Some(Msg::Op(op, permit)) => {
                    let phase_change = batch.last().is_some_and(|l| l.phase != op.phase);
                    if op.guard.is_some() || phase_change {
                        if batch.is_empty() {
                            batch.push(op);
                            permits.push(permit);
                        } else {
                            pending = Some((op, permit));
                        }
                        break;
                    }
                    cmds += op.len();
                    bytes += op.wire_len();
                    batch.push(op);
                    permits.push(permit);
                }
            }
        }
        let guarded = batch.first().is_some_and(|o| o.guard.is_some());
        let formed = !batch.is_empty() && !guarded;
        if formed {
            let n = cmds as u64;
            ctx.buckets.0.take(n).await;
            ctx.buckets.1.take(bytes).await;
            let p = match writer.begin(&batch).await {
                Ok(p) => Some(p),
                Err(Failure::Fatal(e)) => {
                    result = Err(e);
                    break 'outer;
                }
                Err(Failure::Connection(e)) => {
                    if let Err(e) = recover(ctx, &mut writer, &mut RetryState::default(), e).await {
                        result = Err(e);
                        break 'outer;
                    }
                    for f in inflight.iter_mut() {
                        f.pending = None;
                    }
                    None
                }
            };
            let broken = p.is_none();
            inflight.push_back(InFlight {
                batch: std::mem::take(&mut batch),
                _permits: std::mem::take(&mut permits),
                pending: p,
            });
            if broken {
                // resend everything in flight, in order, before writing anything new
                keep_none = true;
            }
        }
        // Read replies: keep one batch in flight while more are coming (none after a failure:
        // what was in flight is resent in order first).
        let keep = if keep_none {
            0
        } else {
            usize::from(formed && !guarded && !ended)
        };
        keep_none = false;
        while inflight.len() > if keep_none { 0 } else { keep } {
            let mut f = inflight.pop_front().expect("non-empty");
            let res = match f.pending.take() {
                Some(p) => match writer.finish(&f.batch, p).await {
                    Err(Failure::Connection(e)) => {
                        match recover(ctx, &mut writer, &mut RetryState::default(), e).await {
                            Ok(()) => {
                                for g in inflight.iter_mut() {
                                    g.pending = None;
                                }
                                keep_none = true;
                                send(ctx, &mut writer, &mut f.batch, true).await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(Failure::Fatal(e)) => Err(e),
                    Ok(()) => Ok(()),
                },
                None => send(ctx, &mut writer, &mut f.batch, true).await,
            };
            if let Err(e) = res {
                result = Err(e);
                break 'outer;
            }
            ack(ctx, &writer, acked, &f.batch, &mut marker_dirty);
        }
        if guarded {
            if let Err(e) = send(ctx, &mut writer, &mut batch, false).await {
                result = Err(e);
                break 'outer;
            }
            ack(ctx, &writer, acked, &batch, &mut marker_dirty);
        }
        drop(permits);
        if ended && pending.is_none() && inflight.is_empty() {
            break;
        }
    }
    if let (Ok(()), Some(e)) = (&result, reader_error) {
        result = Err(e);
    }
    drop(rx);
    let _ = reader_thread.await;
    if marker_dirty && (result.is_ok() || matches!(result, Err(Error::Journal { .. }))) {
        if let Some(c) = &ctx.checkpoint {
            c.save()?;
        }
        retry(ctx, &mut writer, |w| Box::pin(w.clear_marker())).await?;
    }
    *dry = writer.dry_counts.clone();
    result
}

type Permit = tokio::sync::OwnedSemaphorePermit;

struct InFlight {
    batch: Vec<Op>,
    _permits: Vec<Permit>,
    pending: Option<writer::Pending>,
}

/// Records that the target acknowledged `batch`.
fn ack(
    ctx: &ShardCtx,
    writer: &Writer,
    acked: &mut Option<Position>,
    batch: &[Op],
    marker_dirty: &mut bool,
) {
    let Some(last) = batch.last() else {
        return;
    };
    *acked = Some(last.position);
    ctx.stats.acked_to(
        &ctx.shard,
        last.position.offset,
        last.phase == Phase::Snapshot,
    );
    if let Some(c) = &ctx.checkpoint {
        c.set(&ctx.shard, last.position, last.phase);
    }
    if writer.atomic() && last.phase == Phase::Stream {
        *marker_dirty = true;
    }
    count(&ctx.stats, batch);
}

fn count(stats: &Stats, batch: &[Op]) {
    for op in batch {
        let Some(first) = op.unit.cmds().first() else {
            continue;
        };
        match op.phase {
            Phase::Snapshot if op.key.is_some() => {
                stats.keys.fetch_add(1, Relaxed);
                if first.argv[0].as_slice() == b"RESTORE" {
                    stats.restored.fetch_add(1, Relaxed);
                } else {
                    stats.rewritten.fetch_add(1, Relaxed);
                }
            }
            Phase::Snapshot => {
                stats.functions.fetch_add(1, Relaxed);
            }
            Phase::Stream => {
                stats.records.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Reconnection attempts so far and the next wait.
struct RetryState {
    attempts: u32,
    backoff: Duration,
}

impl Default for RetryState {
    fn default() -> Self {
        RetryState {
            attempts: 0,
            backoff: Duration::from_millis(250),
        }
    }
}

/// After a connection failure: count, wait with backoff, drop connections, refresh a cluster's
/// topology. Gives up (returning the error) after `--max-retries`.
async fn recover(ctx: &ShardCtx, writer: &mut Writer, st: &mut RetryState, e: Error) -> Result<()> {
    st.attempts += 1;
    if st.attempts > ctx.opts.max_retries {
        return Err(e);
    }
    ctx.stats.reconnects.fetch_add(1, Relaxed);
    tracing::warn!(shard = %ctx.shard, attempt = st.attempts, "{e}: retrying in {:?}", st.backoff);
    writer.disconnect();
    tokio::time::sleep(st.backoff).await;
    st.backoff = (st.backoff * 2).min(Duration::from_secs(10));
    if writer.map().is_cluster()
        && let Ok(t) = plan::inspect(&ctx.opts.target, &ctx.opts.connect).await
    {
        writer.reset(SlotMap::new(&t.topology, &ctx.opts.target.addr()));
    }
    Ok(())
}

type BoxFut<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<T, Failure>> + Send + 'a>,
>;

/// Runs `f` until it succeeds, reconnecting with backoff on connection failures.
async fn retry<T>(
    ctx: &ShardCtx,
    writer: &mut Writer,
    mut f: impl for<'a> FnMut(&'a mut Writer) -> BoxFut<'a, T>,
) -> Result<T> {
    let mut st = RetryState::default();
    loop {
        match f(writer).await {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Connection(e)) => recover(ctx, writer, &mut st, e).await?,
        }
    }
}

/// Sends one batch and waits for its replies: guard checks, rate limits, and resending after a
/// connection failure — except for an atomic batch the marker shows was applied. `resend`: the
/// batch may already have been applied (check the marker first; it was rate-limited already).
async fn send(
    ctx: &ShardCtx,
    writer: &mut Writer,
    batch: &mut Vec<Op>,
    resend: bool,
) -> Result<()> {
    if let Some(g) = batch.first().and_then(|o| o.guard.clone()) {
        let db = batch[0].db;
        let exists = retry(ctx, writer, |w| {
            let g = g.clone();
            Box::pin(async move { w.exists(&g.key, g.route, db).await })
        })
        .await?;
        if exists {
            let op = &batch[0];
            match g.on_exists {
                op::OnBusy::Stop => {
                    return Err(Error::Conflict {
                        addr: ctx.opts.target.addr(),
                        shard: ctx.shard.clone(),
                        key: error::printable_key(&g.key),
                        db: op.db,
                        position: op.position,
                    });
                }
                _ => {
                    ctx.stats.skipped.fetch_add(1, Relaxed);
                    let mut o = batch.remove(0);
                    o.unit = op::Unit::Commands(vec![]);
                    o.key = None;
                    batch.insert(0, o);
                    return Ok(());
                }
            }
        }
    }
    let n: u64 = batch.iter().map(|o| o.len() as u64).sum();
    if n == 0 {
        return Ok(());
    }
    if !resend {
        let bytes: u64 = batch.iter().map(Op::wire_len).sum();
        ctx.buckets.0.take(n).await;
        ctx.buckets.1.take(bytes).await;
    }
    let last = batch.last().map(|o| o.position).unwrap_or_default();
    let atomic = writer.atomic() && batch.iter().all(|o| o.phase == Phase::Stream);
    let mut state = RetryState::default();
    let mut again = resend;
    loop {
        let res = async {
            if again && atomic && writer.marker_position().await?.is_some_and(|m| m >= last) {
                return Ok(()); // applied before the connection broke
            }
            writer.execute(batch).await
        }
        .await;
        match res {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Connection(e)) => recover(ctx, writer, &mut state, e).await?,
        }
        again = true;
    }
}

struct ReadCtx {
    shard: String,
    dir: std::path::PathBuf,
    epoch: u64,
    start: Position,
    after: Option<Position>,
    keys: KeyConverter,
    stream: StreamConverter,
    until: Until,
    follow: bool,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    addr: String,
    budget: Arc<tokio::sync::Semaphore>,
    handle: tokio::runtime::Handle,
}

struct ReadState {
    src_version: u16,
    pending: Option<(journal::KeyRecord, Vec<u8>)>,
    last: Option<Position>,
}

/// What to do after one entry.
enum Step {
    Go,
    Stop,
}

fn read_shard(rc: ReadCtx, tx: tokio::sync::mpsc::Sender<Msg>) {
    let send = |m: Msg| tx.blocking_send(m).is_ok();
    match read_inner(&rc, &send) {
        Ok(()) => {
            send(Msg::End);
        }
        Err(e) => {
            send(Msg::Error(e));
        }
    }
}

fn read_inner(rc: &ReadCtx, send: &dyn Fn(Msg) -> bool) -> Result<()> {
    let jerr = |source| Error::Journal {
        shard: rc.shard.clone(),
        cause: source,
    };
    let reader = ShardReader::open_dir(&rc.dir, RecoveryMode::Refuse).map_err(jerr)?;
    let mut st = ReadState {
        src_version: 0,
        pending: None,
        last: None,
    };
    for e in reader.entries_from(rc.start) {
        let e = e.map_err(jerr)?;
        if e.position.epoch != rc.epoch {
            if !rc.follow {
                tracing::warn!(shard = %rc.shard, at = %e.position, "the journal continues with a newer, incomplete snapshot: stopping at the end of epoch {}", rc.epoch);
            }
            break;
        }
        if rc.stop.load(Relaxed) {
            return Ok(());
        }
        match entry(rc, &mut st, e, send)? {
            Step::Go => {}
            Step::Stop => return Ok(()),
        }
    }
    drop(reader);
    if !rc.follow {
        return Ok(());
    }
    let from = st
        .last
        .or(rc.after)
        .map(|p| Position::new(p.epoch, p.offset, p.seq + 1))
        .unwrap_or(rc.start);
    let mut follower = journal::Follower::new(&rc.dir, from);
    tracing::info!(shard = %rc.shard, from = %from, "caught up: following the journal");
    while !rc.stop.load(Relaxed) {
        let batch = follower.poll().map_err(jerr)?;
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        for e in batch {
            if let Step::Stop = entry(rc, &mut st, e, send)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn entry(
    rc: &ReadCtx,
    st: &mut ReadState,
    e: journal::Entry,
    send: &dyn Fn(Msg) -> bool,
) -> Result<Step> {
    let pos = e.position;
    let skip = rc.after.is_some_and(|a| pos <= a);
    let stop = || Ok(Step::Stop);
    if let Record::SnapshotBegin(b) = &e.record {
        st.src_version = b.rdb_version as u16;
        if rc.until.offset.is_some_and(|o| b.offset > o) {
            return Err(Error::Invalid(format!(
                "shard {}: --until-offset {} is before the snapshot (offset {}): that point cannot be reached",
                rc.shard,
                rc.until.offset.unwrap_or(0),
                b.offset
            )));
        }
    }
    st.last = Some(pos);
    if pos.seq == 0 || matches!(e.record, Record::SnapshotEnd(_)) {
        rc.stats.read_to(&rc.shard, pos.offset);
    }
    if skip {
        return Ok(Step::Go);
    }
    let op = match e.record {
        Record::Key(k) => {
            if k.chunks > 0 {
                let v = k.value.clone();
                st.pending = Some((k, v));
                return Ok(Step::Go);
            }
            let v = k.value.clone();
            key_op(rc, st, &k, v, pos)?
        }
        Record::ValueChunk(c) => {
            let Some((k, mut v)) = st.pending.take() else {
                return Err(Error::Invalid(format!(
                    "shard {}: a value chunk at {pos} without its key (journal damaged?)",
                    rc.shard
                )));
            };
            v.extend_from_slice(&c.data);
            if c.index < k.chunks {
                st.pending = Some((k, v));
                return Ok(Step::Go);
            }
            if v.len() as u64 != k.value_len {
                rc.stats.fail(
                    &rc.shard,
                    &rc.addr,
                    "journal",
                    "-",
                    Some(&k.key),
                    pos,
                    "the reassembled value's length differs from the key record's",
                );
                return Ok(Step::Go);
            }
            key_op(rc, st, &k, v, pos)?
        }
        Record::FunctionLibrary(f) => Some(rc.keys.function(&f.code, pos)),
        Record::ModuleAux(_) => {
            rc.stats.module_aux.fetch_add(1, Relaxed);
            None
        }
        Record::SnapshotEnd(_) => Some(Op {
            position: pos,
            phase: Phase::Stream,
            db: 0,
            end_db: 0,
            key: None,
            unit: op::Unit::Commands(vec![]),
            guard: None,
        }),
        Record::Command(c) => {
            if rc.until.beyond(pos.offset, Some(c.time_ms)) {
                return stop();
            }
            rc.stream.command(c, pos)?
        }
        Record::Transaction(t) => {
            if rc.until.beyond(pos.offset, Some(t.time_ms)) {
                return stop();
            }
            rc.stream.transaction(&t, pos)?
        }
        Record::Marker(_) | Record::SnapshotBegin(_) => None,
    };
    if let Some(op) = op {
        let need = kib(&op);
        let permit = match rc.budget.clone().try_acquire_many_owned(need) {
            Ok(p) => Ok(p),
            Err(_) => rc
                .handle
                .block_on(rc.budget.clone().acquire_many_owned(need)),
        };
        let Ok(permit) = permit else {
            return stop();
        };
        if !send(Msg::Op(op, permit)) {
            return stop();
        }
    }
    Ok(Step::Go)
}

fn key_op(
    rc: &ReadCtx,
    st: &ReadState,
    k: &journal::KeyRecord,
    value: Vec<u8>,
    pos: Position,
) -> Result<Option<Op>> {
    let db = rc.stream.db(k.db, pos)?;
    Ok(
        match rc.keys.convert(
            k,
            value,
            st.src_version,
            db,
            pos,
            crate::units::now_ms() as i64,
        ) {
            Converted::Op(op, warnings) => {
                for w in warnings {
                    rc.stats.lossy.fetch_add(1, Relaxed);
                    tracing::warn!(
                        shard = %rc.shard,
                        %pos,
                        key = %error::printable_key(&k.key),
                        "written as commands, not exactly: {w}"
                    );
                }
                Some(op)
            }
            Converted::Expired => {
                rc.stats.expired.fetch_add(1, Relaxed);
                None
            }
            Converted::Impossible(why) => {
                rc.stats.fail(
                    &rc.shard,
                    &rc.addr,
                    "unreplayable",
                    "-",
                    Some(&k.key),
                    pos,
                    &why,
                );
                None
            }
        },
    )
}

/// The default checkpoint path (see [`ReplayOptions::default_checkpoint`]).
pub fn default_checkpoint(journal_dir: &Path, target: &crate::net::Endpoint) -> std::path::PathBuf {
    ReplayOptions::default_checkpoint(journal_dir, target)
}
