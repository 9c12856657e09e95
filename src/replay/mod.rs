//! `shake replay`: make a target hold what the journal's source held — each shard's last complete
//! snapshot, then its commands in order — onto a standalone server or a cluster, in bulk or
//! following a journal that still grows, resumable from a checkpoint.
//!
//! # Flow
//! Per shard, a blocking thread reads the journal (one frame at a time: memory is bounded by a
//! frame plus the value of [`STREAM_ABOVE`](bigkey::STREAM_ABOVE), never the journal; larger
//! values are streamed or spilled to disk) and converts records into [`op::Op`]s; an
//! async dispatcher spreads them by key slot over `--connections` lanes ([`partition`]), each
//! a task with its own [`writer::Writer`] that batches (`--pipeline` commands), rate-limits,
//! sends and checks every reply; ops spanning lanes go alone as barriers. The dispatcher
//! advances the shard's checkpoint only past rounds every lane fully acknowledged. Shards run
//! in parallel; order per key (and of everything spanning keys) within a shard is exact.
//!
//! # Layout
//!
//! | file | concept |
//! |------|---------|
//! | [`error`] | [`Error`]: names target address, shard, position and key, never a password |
//! | [`options`] | [`ReplayOptions`]: target, policies, limits |
//! | [`plan`] | what the target is (product, RDB version, `proto-max-bulk-len`, topology) |
//! | [`op`] | the unit of work between journal and target |
//! | `feed` | the journal's entries as the reader takes them: stream commands' arguments in a shared arena |
//! | [`snapshot`] | snapshot keys → RESTORE or rewrite, conflict policy, expired keys |
//! | [`bigkey`] | values too large to hold, streamed from the journal as one RESTORE |
//! | [`rebuild`] | values too large to hold that go by commands: built under a temporary name, renamed |
//! | [`spill`] | such a value written to an unlinked file as it arrives, mapped back |
//! | [`stream`] | commands/transactions → ops: db mapping, key positions, absolute expiries, cluster splits |
//! | [`router`] | cluster slot map, MOVED/ASK |
//! | [`partition`] | which connection (lane) an op goes to; barriers; per-lane markers |
//! | `lanes` | one connection set of a shard: a task sending its batches, reading their replies |
//! | [`writer`] | pipelined batches per node, reply checking, atomic marker batches (per slot on a cluster: `writer/slots.rs`) |
//! | [`checkpoint`] | the atomic checkpoint file |
//! | [`rate`] | `--max-ops` / `--max-bytes` token buckets |
//! | [`report`] | counters, errors by kind, the summary |
//! | [`metrics`] | the Prometheus page of `--metrics-addr` |
//!
//! The user-facing description is `docs/replay.md`.

pub mod arena;
pub mod bigkey;
pub mod checkpoint;
pub mod error;
mod feed;
mod lanes;
pub mod metrics;
pub mod op;
pub mod options;
pub mod partition;
pub mod plan;
pub mod rate;
pub mod rebuild;
pub mod report;
pub mod router;
pub mod snapshot;
pub mod spill;
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

use bytes::Bytes;

use crate::journal::{self, Position, Record, RecoveryMode, ShardReader};

use checkpoint::{Checkpoint, Phase};
use feed::Rec;
use op::Op;
use partition::{Lane, Marker};
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
            shard_slots: manifest
                .shards
                .iter()
                .find(|s| s.name == shard && manifest.shards.len() > 1)
                .and_then(|s| stream::ShardSlots::new(s.slots.clone())),
        };
        tasks.push((shard, tokio::spawn(replay_shard(Arc::new(ctx)))));
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
    /// This shard's source slot ranges in a multi-shard journal, as the manifest gives them
    /// ([`stream::ShardSlots`]).
    shard_slots: Option<stream::ShardSlots>,
}

/// Bytes of converted ops allowed between the journal reader and the target (in KiB permits),
/// so big values cannot pile up in the channel: memory stays bounded whatever the journal.
const INFLIGHT_KIB: u32 = 128 * 1024;
/// A round stops growing at this many bytes (counted in its ops' memory permits), whatever `--pipeline` says.
const BATCH_BYTES: u64 = 16 << 20;

fn kib(op: &Op) -> u32 {
    ((op.wire_len() >> 10) as u32).clamp(1, INFLIGHT_KIB)
}

enum Msg {
    /// Converted ops, in journal order, each with its share of the memory budget.
    Ops(Vec<(Op, Permit)>),
    /// The journal's end (bulk) was reached.
    End,
    Error(Error),
}

async fn replay_shard(ctx: Arc<ShardCtx>) -> ShardOutcome {
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
        if reader
            .snapshot_complete(start.epoch, start.offset)
            .map_err(jerr)?
            == Some(true)
        {
            return Ok((start.epoch, Position::new(start.epoch, 0, 0)));
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
    ctx: &Arc<ShardCtx>,
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
    // Exactly-once: every lane's stream batches carry its marker, per slot on a cluster (see
    // `partition`).
    let atomic = ctx.checkpoint.is_some() && !opts.dry_run;
    let family = partition::marker_family(ctx.journal_id, &shard);
    let mut lanes_n = opts.connections.clamp(1, partition::MAX_CONNECTIONS);
    let make_writer = |lane: usize, lanes: usize| {
        Writer::new(
            &shard,
            &opts.target,
            &opts.connect,
            map.clone(),
            opts.dry_run,
            ctx.stats.clone(),
            atomic.then(|| Marker {
                key: partition::marker_key(ctx.journal_id, &shard, lane),
                lane,
                lanes,
                family: family.clone(),
                journal_id: ctx.journal_id,
                shard: shard.clone(),
            }),
        )
        .patience(opts.max_retries as usize * 2)
        .wait_replicas(opts.wait_replicas)
    };
    // Where to resume: after the checkpoint; and, per lane, after its marker when that is
    // further (a crash after the target applied a batch but before the checkpoint file
    // recorded it).
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
    let mut applied = partition::Applied::default();
    let mut stale_slots: Vec<u16> = Vec::new();
    if atomic {
        let mut w = make_writer(0, lanes_n);
        // (slot, lane, value) on a cluster; (lane, value) on a standalone target
        let values: Vec<(Option<u16>, usize, String)> = if map.is_cluster() {
            retry(ctx, &mut w, |w| Box::pin(w.read_slot_markers()))
                .await?
                .into_iter()
                .map(|(slot, lane, v)| (Some(slot), lane, v))
                .collect()
        } else {
            retry(ctx, &mut w, |w| {
                let names = family.clone();
                Box::pin(async move { w.read_markers(&names).await })
            })
            .await?
            .into_iter()
            .enumerate()
            .filter_map(|(lane, v)| Some((None, lane, v?)))
            .collect()
        };
        // every slot marker found is deleted with lane 0's (even those of older runs)
        stale_slots = values.iter().filter_map(|v| v.0).collect();
        let found: Vec<(Option<u16>, usize, Position, usize)> = values
            .iter()
            .filter_map(|(slot, lane, v)| {
                let (p, n) = partition::parse_marker(v)?;
                (p.epoch == epoch && after.is_none_or(|a| p > a)).then_some((*slot, *lane, p, n))
            })
            .collect();
        if let Some(&(_, _, _, n)) = found.first() {
            if found.iter().any(|f| f.3 != n) {
                return Err(Error::Invalid(format!(
                    "shard {shard}: the target holds replay markers of runs with different --connections: resume cannot tell what was applied"
                )));
            }
            if n != lanes_n {
                tracing::warn!(shard = %shard, connections = n, "the interrupted run used {n} connections: resuming with as many, so that its markers apply");
                lanes_n = n;
            }
            let mut lanes_seen = std::collections::BTreeSet::new();
            for (slot, lane, p, _) in found {
                if lane >= lanes_n {
                    continue;
                }
                match slot {
                    Some(slot) => applied.set_slot(slot, lane, p),
                    None => applied.set_lane(lane, p),
                }
                if lanes_seen.insert(lane) {
                    tracing::info!(shard = %shard, lane, "the target applied batches the checkpoint had not recorded: not sending them again");
                }
            }
        }
    }
    if let Some(a) = after {
        tracing::info!(shard = %shard, after = %a, "resuming");
        *acked = Some(a);
    }
    drop(reader);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(16);
    let budget = Arc::new(tokio::sync::Semaphore::new(INFLIGHT_KIB as usize));
    let rctx = ReadCtx {
        shard: shard.clone(),
        dir: dir.clone(),
        epoch,
        start,
        after,
        keys: KeyConverter::new(&ctx.target, opts.restore, opts.on_conflict)
            .plain_strings(opts.fold_sets)
            .watching(ctx.stats.clone()),
        shard_slots: ctx.shard_slots.clone(),
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
        budget: budget.clone(),
        handle: tokio::runtime::Handle::current(),
        big: (!opts.dry_run).then(|| bigkey::BigKeys {
            endpoint: opts.target.clone(),
            connect: opts.connect.clone(),
            map: std::sync::Mutex::new(map.clone()),
            max_retries: opts.max_retries,
        }),
        stream_above: opts.stream_above,
        buckets: ctx.buckets.clone(),
        journal_id: ctx.journal_id,
        spill_dir: opts.spill_dir(),
    };
    let reader_thread = tokio::task::spawn_blocking(move || read_shard(rctx, tx));

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<lanes::Done>();
    let mut lane_tx = Vec::new();
    let mut lane_tasks = Vec::new();
    for lane in 0..lanes_n {
        let (jtx, jrx) = tokio::sync::mpsc::channel(MAX_ROUNDS + 2);
        let mut writer = make_writer(lane, lanes_n);
        if lane == 0 {
            writer.touch(std::mem::take(&mut stale_slots));
        }
        lane_tasks.push(tokio::spawn(lanes::run(
            ctx.clone(),
            writer,
            jrx,
            done_tx.clone(),
        )));
        lane_tx.push(jtx);
    }
    drop(done_tx);

    let mut d = Dispatch {
        lanes: lanes_n,
        pipeline: opts.pipeline.max(1),
        open: Open::new(lanes_n, opts.fold_sets),
        rounds: VecDeque::new(),
        next_round: 0,
        atomic,
        cluster: map.is_cluster(),
        marker_dirty: false,
        hold_markers: applied.furthest(),
    };
    let mut waiting: Option<(Op, Permit, Wait)> = None;
    let mut inbox: VecDeque<(Op, Permit)> = VecDeque::new();
    let mut draining = false;
    let mut ended = false;
    let mut reader_error: Option<Error> = None;
    let result: Result<()> = async {
        loop {
            if draining && d.rounds.is_empty() {
                draining = false; // the barrier is acknowledged
            }
            // an op held back until the open round is sent (and, for a barrier, acknowledged)
            if let Some((op, permit, w)) = waiting.take() {
                let ready = match w {
                    Wait::Phase(_) => d.open.is_empty(),
                    Wait::Alone(_) => d.open.is_empty() && d.rounds.len() < MAX_ROUNDS,
                    Wait::Barrier => d.open.is_empty() && d.rounds.is_empty(),
                };
                if !ready {
                    waiting = Some((op, permit, w));
                } else {
                    match w {
                        Wait::Phase(lane) => d.open.push(lane, op, permit),
                        Wait::Alone(lane) => {
                            d.open.push(lane, op, permit);
                            d.dispatch(&lane_tx).await?;
                        }
                        Wait::Barrier => {
                            // what the markers cannot make exact is made so by the checkpoint
                            // file: it holds everything before, and the op once acknowledged
                            let unmarked = d.atomic
                                && op.phase == Phase::Stream
                                && partition::unmarked(&op, d.cluster);
                            if unmarked && let Some(c) = &ctx.checkpoint {
                                c.save()?;
                            }
                            d.open.push(0, op, permit);
                            d.dispatch(&lane_tx).await?;
                            if let Some(r) = d.rounds.back_mut() {
                                r.save_after = unmarked;
                            }
                            draining = true;
                        }
                    }
                    continue;
                }
            }
            if !inbox.is_empty() && waiting.is_none() && !draining && !d.open.full(d.pipeline) {
                while let Some((op, permit)) = inbox.pop_front() {
                    place(&mut d, &mut waiting, &applied, op, permit);
                    if waiting.is_some() || d.open.full(d.pipeline) {
                        break;
                    }
                }
                continue;
            }
            if !d.open.is_empty()
                && d.rounds.len() < MAX_ROUNDS
                && (d.open.full(d.pipeline)
                    || waiting.is_some()
                    || ended
                    || (rx.is_empty() && inbox.is_empty() && d.rounds.len() < 2))
            {
                d.dispatch(&lane_tx).await?;
                continue;
            }
            let idle =
                d.open.is_empty() && waiting.is_none() && d.rounds.is_empty() && inbox.is_empty();
            if idle && ended {
                return Ok(());
            }
            if idle && d.marker_dirty && rx.is_empty() && d.may_clear(*acked) {
                // caught up: make the checkpoint durable and drop the markers
                if let Some(c) = &ctx.checkpoint {
                    c.save()?;
                }
                clear_markers(&lane_tx, &mut done_rx).await?;
                d.marker_dirty = false;
                continue;
            }
            let accept = !ended
                && inbox.is_empty()
                && waiting.is_none()
                && !draining
                && !d.open.full(d.pipeline);
            tokio::select! {
                biased;
                done = done_rx.recv(), if !d.rounds.is_empty() => {
                    let Some(done) = done else {
                        return Err(Error::Invalid(format!("shard {shard}: every connection task ended")));
                    };
                    done.result?;
                    count(&ctx.stats, &done.ops);
                    if let Some(id) = done.round {
                        d.acked(ctx, id, acked)?;
                    }
                }
                msg = rx.recv(), if accept => match msg {
                    None | Some(Msg::End) => ended = true,
                    Some(Msg::Error(e)) => {
                        // finish what is in flight (so the checkpoint covers it), then stop
                        reader_error = Some(e);
                        ended = true;
                    }
                    Some(Msg::Ops(ops)) => inbox.extend(ops),
                },
                else => {
                    return Err(Error::Invalid(format!("shard {shard}: replay dispatcher stalled (a bug)")));
                }
            }
        }
    }
    .await;
    tracing::debug!(shard = %shard, rounds = d.next_round, lanes = lanes_n, "dispatch ended");
    let mut result = result;
    if let (Ok(()), Some(e)) = (&result, reader_error) {
        result = Err(e);
    }
    // what was not sent gives its memory back; after a failure the reader stops waiting for it
    drop(inbox);
    drop(waiting);
    d.open = Open::new(lanes_n, false);
    if result.is_err() {
        budget.close();
    }
    drop(rx);
    let _ = reader_thread.await;
    if d.marker_dirty
        && d.rounds.is_empty()
        && d.may_clear(*acked)
        && (result.is_ok() || matches!(result, Err(Error::Journal { .. })))
    {
        if let Some(c) = &ctx.checkpoint {
            c.save()?;
        }
        clear_markers(&lane_tx, &mut done_rx).await?;
    }
    drop(lane_tx);
    for t in lane_tasks {
        if let Ok(w) = t.await {
            for (node, n) in &w.dry_counts {
                *dry.entry(node.clone()).or_default() += n;
            }
        }
    }
    result
}

/// Puts an op from the reader into the open round, or holds it back (`waiting`) until the
/// open round is sent (another phase; a guarded op) or everything is acknowledged (a barrier).
/// An op its lane's marker shows applied (an interrupted run) is kept without its commands:
/// it only moves the checkpoint.
fn place(
    d: &mut Dispatch,
    waiting: &mut Option<(Op, Permit, Wait)>,
    applied: &partition::Applied,
    mut op: Op,
    permit: Permit,
) {
    let mut lane = partition::lane_of(&op, d.lanes);
    let marker_lane = match lane {
        Lane::One(l) => Some(l),
        Lane::Barrier => Some(0),
        Lane::Any => None,
    };
    if let Some(l) = marker_lane
        && !applied.is_empty()
    {
        // on a cluster each slot has its marker: an op split over slots may be partly applied
        let position = op.position;
        let (op::Unit::Commands(cmds) | op::Unit::Transaction(cmds)) = &mut op.unit;
        cmds.retain(|c| !applied.covers(l, c.route, position));
        if cmds.is_empty() {
            op.unit = op::Unit::Commands(Vec::new());
            op.guard = None;
            lane = Lane::Any;
        }
    }
    let l = match lane {
        Lane::One(l) => l,
        _ => 0,
    };
    let phase_change = d.open.phase.is_some_and(|p| p != op.phase);
    if op.guard.is_some() {
        *waiting = Some((op, permit, Wait::Alone(l)));
    } else if lane == Lane::Barrier {
        *waiting = Some((op, permit, Wait::Barrier));
    } else if phase_change {
        *waiting = Some((op, permit, Wait::Phase(l)));
    } else {
        d.open.push(l, op, permit);
    }
}

/// Rounds (a range of the journal spread over the lanes) in flight at most.
const MAX_ROUNDS: usize = 3;

/// Why an op waits before joining a round.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Another phase: after the open round is sent (a round is of one phase).
    Phase(usize),
    /// Guarded (EXISTS first): alone on its lane, after the open round.
    Alone(usize),
    /// Alone on lane 0 once everything before is acknowledged; nothing after it is sent before
    /// it is acknowledged.
    Barrier,
}

/// The round being formed: per lane, the ops that will be its batch.
struct Open {
    ops: Vec<Vec<Op>>,
    permits: Vec<Vec<Permit>>,
    cmds: Vec<usize>,
    bytes: u64,
    phase: Option<Phase>,
    last: Option<Position>,
    /// Fold runs of plain SETs into MSETs ([`Op::fold`]).
    fold: bool,
    /// Per lane, the snapshot op later snapshot SETs fold into (see [`Open::push`]).
    fold_at: Vec<Option<usize>>,
}

impl Open {
    fn new(lanes: usize, fold: bool) -> Open {
        Open {
            fold,
            fold_at: vec![None; lanes],
            ops: (0..lanes).map(|_| Vec::new()).collect(),
            permits: (0..lanes).map(|_| Vec::new()).collect(),
            cmds: vec![0; lanes],
            bytes: 0,
            phase: None,
            last: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    fn full(&self, pipeline: usize) -> bool {
        self.bytes >= BATCH_BYTES || self.cmds.iter().any(|c| *c >= pipeline)
    }

    fn push(&mut self, lane: usize, op: Op, permit: Permit) {
        // the op's memory permits (KiB, at least one) stand for its size: no pass over its
        // arguments here
        self.bytes += permit.num_permits() as u64 * 1024;
        self.phase = Some(op.phase);
        self.last = Some(op.position);
        self.permits[lane].push(permit);
        // A plain SET joins the lane's previous op when that is one too (this lane's ops
        // only: order per key and the lane's marker hold; the round's acknowledgement covers
        // the whole fold). In a snapshot every key comes once, so its order against other keys
        // does not matter: a snapshot SET joins the lane's open fold even past RESTOREs of
        // other keys (a snapshot interleaves strings with other types in hash-table order, so
        // runs of strings are short), and the round is acknowledged whole as before.
        if self.fold {
            let into = match op.phase {
                Phase::Snapshot => self.fold_at[lane],
                Phase::Stream => self.ops[lane].len().checked_sub(1),
            };
            if let Some(prev) = into.and_then(|i| self.ops[lane].get_mut(i))
                && prev.can_fold(&op)
            {
                prev.fold(op);
                return;
            }
            if op.phase == Phase::Snapshot && op.takes_folds() {
                self.fold_at[lane] = Some(self.ops[lane].len());
            }
        }
        self.cmds[lane] += op.len();
        self.ops[lane].push(op);
    }
}

/// A round sent: acknowledged when every lane it used has acknowledged its part.
struct Round {
    id: u64,
    last: Position,
    phase: Phase,
    left: usize,
    /// Save the checkpoint file as soon as acknowledged (see [`partition::unmarked`]).
    save_after: bool,
}

/// The dispatcher's state: the round being formed and those in flight.
struct Dispatch {
    lanes: usize,
    pipeline: usize,
    open: Open,
    rounds: VecDeque<Round>,
    next_round: u64,
    atomic: bool,
    /// The target is a cluster (markers per slot).
    cluster: bool,
    marker_dirty: bool,
    /// The furthest position an interrupted run's markers show applied: they are deleted only
    /// once the checkpoint has passed it (see [`Dispatch::may_clear`]).
    hold_markers: Option<Position>,
}

impl Dispatch {
    /// Whether the markers may be deleted now that the checkpoint is at `acked`: not while an
    /// interrupted run's marker records a position beyond it — the reader may simply not have
    /// got there yet (regression: a resumed replay that caught up with its reader for a moment
    /// deleted such a marker; killed then, the next resume applied those commands again).
    fn may_clear(&self, acked: Option<Position>) -> bool {
        self.hold_markers
            .is_none_or(|h| acked.is_some_and(|a| a >= h))
    }

    /// Sends the open round, each lane its part.
    async fn dispatch(&mut self, lane_tx: &[tokio::sync::mpsc::Sender<lanes::Job>]) -> Result<()> {
        let fresh = Open::new(self.lanes, self.open.fold);
        let open = std::mem::replace(&mut self.open, fresh);
        let (Some(last), Some(phase)) = (open.last, open.phase) else {
            return Ok(());
        };
        let id = self.next_round;
        self.next_round += 1;
        let mut left = 0;
        for (lane, (ops, permits)) in open.ops.into_iter().zip(open.permits).enumerate() {
            if ops.is_empty() {
                continue;
            }
            left += 1;
            let job = lanes::Job::Batch(lanes::Batch {
                round: id,
                ops,
                _permits: permits,
            });
            if lane_tx[lane].send(job).await.is_err() {
                return Err(Error::Invalid(format!(
                    "connection task {lane} ended before the replay did"
                )));
            }
        }
        self.rounds.push_back(Round {
            id,
            last,
            phase,
            left,
            save_after: false,
        });
        Ok(())
    }

    /// A lane acknowledged its part of round `id`: rounds complete in order, and the
    /// checkpoint moves to the end of the last round whose every part is acknowledged.
    fn acked(&mut self, ctx: &ShardCtx, id: u64, acked: &mut Option<Position>) -> Result<()> {
        if let Some(r) = self.rounds.iter_mut().find(|r| r.id == id) {
            r.left = r.left.saturating_sub(1);
        }
        while self.rounds.front().is_some_and(|r| r.left == 0) {
            let r = self.rounds.pop_front().expect("non-empty");
            *acked = Some(r.last);
            ctx.stats
                .acked_to(&ctx.shard, r.last.offset, r.phase == Phase::Snapshot);
            if let Some(c) = &ctx.checkpoint {
                c.set(&ctx.shard, r.last, r.phase);
                if r.save_after {
                    c.save()?;
                }
            }
            if self.atomic && r.phase == Phase::Stream {
                self.marker_dirty = true;
            }
        }
        Ok(())
    }
}

/// Asks every lane to check that the target still holds what its markers were acknowledged
/// to hold, then — once all have — to delete the shard's markers it knows of (every lane
/// idle), and waits for them all. Two steps: on a standalone target lane 0 deletes every
/// lane's marker, which another lane would then find missing.
async fn clear_markers(
    lane_tx: &[tokio::sync::mpsc::Sender<lanes::Job>],
    done_rx: &mut tokio::sync::mpsc::UnboundedReceiver<lanes::Done>,
) -> Result<()> {
    all_lanes(lane_tx, done_rx, || lanes::Job::VerifyMarkers).await?;
    all_lanes(lane_tx, done_rx, || lanes::Job::ClearMarkers).await
}

/// Sends `job()` to every lane and waits for each one's report.
async fn all_lanes(
    lane_tx: &[tokio::sync::mpsc::Sender<lanes::Job>],
    done_rx: &mut tokio::sync::mpsc::UnboundedReceiver<lanes::Done>,
    job: impl Fn() -> lanes::Job,
) -> Result<()> {
    for tx in lane_tx {
        if tx.send(job()).await.is_err() {
            return Err(Error::Invalid("a connection task ended".into()));
        }
    }
    let mut left = lane_tx.len();
    while let Some(d) = done_rx.recv().await {
        if d.round.is_none() {
            d.result?;
            left -= 1;
            if left == 0 {
                return Ok(());
            }
        }
    }
    Err(Error::Invalid("a connection task ended".into()))
}

type Permit = tokio::sync::OwnedSemaphorePermit;

fn count(stats: &Stats, batch: &[Op]) {
    for op in batch {
        let Some(first) = op.unit.cmds().first() else {
            continue;
        };
        match op.phase {
            Phase::Snapshot if op.key.is_some() => {
                stats.keys.fetch_add(op.records() as u64, Relaxed);
                if first.argv[0].as_ref() == b"RESTORE" {
                    stats.restored.fetch_add(1, Relaxed);
                } else if matches!(first.argv[0].as_ref(), b"SET" | b"MSET") {
                    // the plain-string path (the rewrite path starts with DEL)
                    stats.as_set.fetch_add(op.records() as u64, Relaxed);
                } else {
                    stats.rewritten.fetch_add(op.records() as u64, Relaxed);
                }
            }
            Phase::Snapshot => {
                stats.functions.fetch_add(1, Relaxed);
            }
            Phase::Stream => {
                stats.records.fetch_add(op.records() as u64, Relaxed);
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
    let n: u64 = batch.iter().map(|o| o.commands_carried() as u64).sum();
    if n == 0 {
        return Ok(());
    }
    if !resend {
        let bytes: u64 = batch.iter().map(Op::wire_len).sum();
        ctx.buckets.0.take(n).await;
        ctx.buckets.1.take(bytes).await;
    }
    let mut state = RetryState::default();
    let mut again = resend;
    loop {
        let res = if again {
            writer.resend(batch).await
        } else {
            writer.execute(batch).await
        };
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
    /// This shard's source slot ranges as the manifest gives them, in a multi-shard journal.
    shard_slots: Option<stream::ShardSlots>,
    until: Until,
    follow: bool,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    addr: String,
    budget: Arc<tokio::sync::Semaphore>,
    handle: tokio::runtime::Handle,
    /// Sends large values itself (`None` in a dry run).
    big: Option<bigkey::BigKeys>,
    /// Values above this are streamed ([`ReplayOptions::stream_above`]).
    stream_above: u64,
    buckets: Arc<(Bucket, Bucket)>,
    /// Names the temporary key of a rebuild ([`rebuild::build_key`]).
    journal_id: u64,
    /// Where values to rebuild are spilled ([`spill`]).
    spill_dir: std::path::PathBuf,
}

struct ReadState {
    src_version: u16,
    pending: Option<(journal::KeyRecord, Vec<u8>)>,
    /// A large value being spilled to disk for a rebuild: its record and position.
    spilled: Option<(journal::KeyRecord, Position, spill::Spill)>,
    /// Chunks still to pass over of a key streamed to the target ([`bigkey`]).
    streamed: Option<u32>,
    last: Option<Position>,
    /// Where snapshot keys' names, strings and encoded RESTOREs are built ([`arena`]).
    arena: arena::Arena,
    /// This shard's source slot ranges here, in a multi-shard journal.
    slots: Option<stream::ShardSlots>,
    /// Whether topology markers before `rc.start` may still move [`ReadState::slots`]: a
    /// resumed replay reads them only when a flush needs the slots and no marker came since
    /// ([`slots_before`]).
    slots_unread: bool,
}

/// What to do after one entry.
enum Step {
    Go,
    Stop,
}

fn read_shard(rc: ReadCtx, tx: tokio::sync::mpsc::Sender<Msg>) {
    let out = Outbox {
        tx,
        buf: std::cell::RefCell::new(Vec::new()),
    };
    match read_inner(&rc, &out) {
        Ok(()) => {
            out.send(Msg::End);
        }
        Err(e) => {
            out.send(Msg::Error(e));
        }
    }
}

/// Ops converted by the reader thread, handed to the dispatcher a few hundred at a time (one
/// channel message and wake-up per group rather than per op).
struct Outbox {
    tx: tokio::sync::mpsc::Sender<Msg>,
    buf: std::cell::RefCell<Vec<(Op, Permit)>>,
}

/// Ops per message from the reader thread.
const OUTBOX_OPS: usize = 256;

impl Outbox {
    /// Queues an op; `false` when the dispatcher is gone.
    fn op(&self, op: Op, permit: Permit) -> bool {
        let full = {
            let mut b = self.buf.borrow_mut();
            b.push((op, permit));
            b.len() >= OUTBOX_OPS
        };
        !full || self.flush()
    }

    /// Hands over what is queued (before waiting for anything, so nothing waits behind it).
    fn flush(&self) -> bool {
        let ops = std::mem::replace(&mut *self.buf.borrow_mut(), Vec::with_capacity(OUTBOX_OPS));
        ops.is_empty() || self.tx.blocking_send(Msg::Ops(ops)).is_ok()
    }

    /// Sends `m` after what is queued.
    fn send(&self, m: Msg) -> bool {
        self.flush() && self.tx.blocking_send(m).is_ok()
    }
}

fn read_inner(rc: &ReadCtx, out: &Outbox) -> Result<()> {
    let jerr = |source| Error::Journal {
        shard: rc.shard.clone(),
        cause: source,
    };
    let reader = ShardReader::open_dir(&rc.dir, RecoveryMode::Refuse).map_err(jerr)?;
    let mut st = ReadState {
        src_version: 0,
        pending: None,
        spilled: None,
        streamed: None,
        last: None,
        arena: arena::Arena::default(),
        slots: rc.shard_slots.clone(),
        slots_unread: rc.shard_slots.is_some() && rc.start > Position::ZERO,
    };
    for e in feed::Feed::new(&reader, rc.start) {
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
        match entry(rc, &mut st, e, out)? {
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
    if !out.flush() {
        return Ok(());
    }
    let mut follower = journal::Follower::new(&rc.dir, from);
    tracing::info!(shard = %rc.shard, from = %from, "caught up: following the journal");
    while !rc.stop.load(Relaxed) {
        let batch = follower.poll().map_err(jerr)?;
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        for e in batch {
            if let Step::Stop = entry(rc, &mut st, e.into(), out)? {
                return Ok(());
            }
        }
        if !out.flush() {
            return Ok(());
        }
    }
    Ok(())
}

/// Moves `slots` by the last topology marker before `rc.start`, for a resumed replay's first
/// flush of one shard (each marker gives the whole layout, so the last one is enough). The
/// journal's frames before the checkpoint are decoded once more, which is why this waits for a
/// flush rather than running at every resume.
fn slots_before(rc: &ReadCtx, slots: &mut stream::ShardSlots) -> Result<()> {
    let jerr = |cause| Error::Journal {
        shard: rc.shard.clone(),
        cause,
    };
    let reader = ShardReader::open_dir(&rc.dir, RecoveryMode::Refuse).map_err(jerr)?;
    let mut last = None;
    for e in feed::Feed::new(&reader, Position::ZERO) {
        let e = e.map_err(jerr)?;
        if e.position >= rc.start {
            break;
        }
        if let Rec::Other(Record::Marker(journal::Marker::Topology { description, .. })) = e.rec {
            last = Some((description, e.position));
        }
    }
    if let Some((description, at)) = last {
        slots.follow(&description, &rc.shard, at);
    }
    Ok(())
}

fn entry(rc: &ReadCtx, st: &mut ReadState, e: feed::Item, out: &Outbox) -> Result<Step> {
    let pos = e.position;
    if let (Rec::Other(Record::Marker(journal::Marker::Topology { description, .. })), Some(s)) =
        (&e.rec, &mut st.slots)
    {
        s.follow(description, &rc.shard, pos);
        st.slots_unread = false;
    }
    let skip = rc.after.is_some_and(|a| pos <= a);
    let stop = || Ok(Step::Stop);
    if let Rec::Other(Record::SnapshotBegin(b)) = &e.rec {
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
    if pos.seq == 0 || matches!(e.rec, Rec::Other(Record::SnapshotEnd(_))) {
        rc.stats.read_to(&rc.shard, pos.offset);
    }
    if skip {
        return Ok(Step::Go);
    }
    let record = match e.rec {
        Rec::Command(c) => return stream_command(rc, st, out, c, pos),
        Rec::Key(k) => {
            let op = key_op(rc, st, k.meta, k.key, k.value, pos)?;
            return hand_on(rc, out, op);
        }
        Rec::Other(r) => r,
    };
    let op = match record {
        Record::Key(mut k)
            if k.chunks > 0 && k.value_len > rc.stream_above.min(rebuild::REBUILD_ABOVE) =>
        {
            let now = crate::units::now_ms() as i64;
            match rc.keys.streamed_restore(&k, st.src_version, now) {
                // by RESTORE, and small enough to hold: reassembled like any other key
                Some(_) if k.value_len <= rc.stream_above => {
                    let v = std::mem::take(&mut k.value);
                    st.pending = Some((k, v));
                }
                Some((label, head, tail)) => {
                    if !out.flush() {
                        return stop(); // earlier keys go on while this one is sent
                    }
                    stream_key(rc, &k, pos, label, head, tail)?;
                    st.streamed = Some(k.chunks);
                }
                None => {
                    // by commands (or expired, or impossible): spilled, rebuilt at its last chunk
                    let mut spill =
                        spill::Spill::new(&rc.spill_dir).map_err(|e| spill_error(rc, &e))?;
                    spill.write(&k.value).map_err(|e| spill_error(rc, &e))?;
                    st.spilled = Some((k, pos, spill));
                }
            }
            return Ok(Step::Go);
        }
        Record::Key(mut k) => {
            let v = std::mem::take(&mut k.value);
            if k.chunks > 0 {
                st.pending = Some((k, v));
                return Ok(Step::Go);
            }
            owned_key_op(rc, st, k, v, pos)?
        }
        Record::ValueChunk(c) if st.streamed.is_some() => {
            // the key went to the target already; its last chunk moves the checkpoint past it
            if st.streamed.is_some_and(|n| c.index < n) {
                return Ok(Step::Go);
            }
            st.streamed = None;
            Some(Op::checkpoint_only(pos, Phase::Snapshot))
        }
        Record::ValueChunk(c) if st.spilled.is_some() => {
            let Some((k, at, mut spill)) = st.spilled.take() else {
                return Ok(Step::Go);
            };
            spill.write(&c.data).map_err(|e| spill_error(rc, &e))?;
            if c.index < k.chunks {
                st.spilled = Some((k, at, spill));
                return Ok(Step::Go);
            }
            if spill.len() != k.value_len {
                length_differs(rc, &k, pos);
                return Ok(Step::Go);
            }
            let value = spill.map().map_err(|e| spill_error(rc, &e))?;
            if !out.flush() {
                return stop(); // earlier keys go on while this one is sent
            }
            rebuild_key(rc, st.src_version, &k, at, value)?;
            Some(Op::checkpoint_only(pos, Phase::Snapshot))
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
                length_differs(rc, &k, pos);
                return Ok(Step::Go);
            }
            owned_key_op(rc, st, k, v, pos)?
        }
        Record::FunctionLibrary(f) => Some(rc.keys.function(&f.code, pos)),
        Record::ModuleAux(_) => {
            rc.stats.module_aux.fetch_add(1, Relaxed);
            None
        }
        Record::SnapshotEnd(_) => Some(Op::checkpoint_only(pos, Phase::Stream)),
        // (`feed` turns commands into `Rec::Command`; kept for completeness)
        Record::Command(c) => return stream_command(rc, st, out, c.into(), pos),
        Record::Transaction(t) => {
            if rc.until.beyond(pos.offset, Some(t.time_ms)) {
                return stop();
            }
            rc.stream.transaction(&t, pos)?
        }
        Record::Marker(_) | Record::SnapshotBegin(_) => None,
    };
    hand_on(rc, out, op)
}

/// One command of the stream at `pos`: the end of the replay past `--until`, else its op.
fn stream_command(
    rc: &ReadCtx,
    st: &mut ReadState,
    out: &Outbox,
    c: stream::Command,
    pos: Position,
) -> Result<Step> {
    if rc.until.beyond(pos.offset, Some(c.time_ms)) {
        return Ok(Step::Stop);
    }
    if rc.stream.journal_shards > 1 && stream::is(&c.argv, b"RESTORE-ASKING") {
        // a key moved in from another source master (Stats::migrated)
        rc.stats.migrated.fetch_add(1, Relaxed);
        tracing::warn!(shard = %rc.shard, %pos, key = %error::printable_key(c.argv.get(1).map_or(&[][..], |k| &k[..])), "this key moved between source masters during capture: its writes before the move are in another shard, replayed without order against these; check it with `shake compare`");
    }
    if st.slots_unread
        && stream::is_flush(&c.argv)
        && let Some(slots) = &mut st.slots
    {
        slots_before(rc, slots)?;
        st.slots_unread = false;
    }
    hand_on(rc, out, rc.stream.command(c, pos, st.slots.as_ref())?)
}

/// Hands `op` (if any) to the dispatcher once the memory budget has room for it.
fn hand_on(rc: &ReadCtx, out: &Outbox, op: Option<Op>) -> Result<Step> {
    let stop = || Ok(Step::Stop);
    if let Some(op) = op {
        let need = kib(&op);
        let permit = match rc.budget.clone().try_acquire_many_owned(need) {
            Ok(p) => Ok(p),
            Err(_) => {
                if !out.flush() {
                    return stop();
                }
                rc.handle
                    .block_on(rc.budget.clone().acquire_many_owned(need))
            }
        };
        let Ok(permit) = permit else {
            return stop();
        };
        if !out.op(op, permit) {
            return stop();
        }
    }
    Ok(Step::Go)
}

/// Reports a snapshot key (at `pos`) that cannot reach the target, and why.
fn unreplayable(rc: &ReadCtx, key: &[u8], pos: Position, why: &str) {
    rc.stats.fail(
        &rc.shard,
        &rc.addr,
        "unreplayable",
        "-",
        Some(key),
        pos,
        why,
    );
}

/// Reports a key whose chunks, reassembled at `pos`, do not add up to its record's length.
fn length_differs(rc: &ReadCtx, k: &journal::KeyRecord, pos: Position) {
    rc.stats.fail(
        &rc.shard,
        &rc.addr,
        "journal",
        "-",
        Some(&k.key),
        pos,
        "the reassembled value's length differs from the key record's",
    );
}

/// Streams a large value's RESTORE to the target from the journal ([`bigkey`]) and accounts
/// for the outcome like a batch's reply. A dry run counts it.
fn stream_key(
    rc: &ReadCtx,
    k: &journal::KeyRecord,
    at: Position,
    label: u16,
    head: bytes::Bytes,
    tail: bytes::Bytes,
) -> Result<()> {
    let db = rc.stream.db(k.db, at)?;
    // head, payload (type byte, value, 10-byte footer), its "\r\n", tail
    let len = head.len() as u64 + (1 + k.value_len + 10) + 2 + tail.len() as u64;
    let Some(big) = rc.big.as_ref() else {
        rc.stats.streamed.fetch_add(1, Relaxed);
        return settle(
            rc,
            k,
            at,
            db,
            "RESTORE",
            Ok((bigkey::Sent::Applied, 1, len)),
        );
    };
    let reader =
        ShardReader::open_dir(&rc.dir, RecoveryMode::Refuse).map_err(|source| Error::Journal {
            shard: rc.shard.clone(),
            cause: source,
        })?;
    let key = bigkey::BigKey {
        record: k,
        at,
        db,
        head,
        tail,
        label,
        on_busy: rc.keys.on_busy(),
    };
    let sent = rc.handle.block_on(async {
        rc.buckets.0.take(1).await;
        rc.buckets.1.take(len).await;
        big.send(&reader, &key).await
    });
    if matches!(sent, Ok(bigkey::Sent::Applied)) {
        rc.stats.streamed.fetch_add(1, Relaxed);
    }
    settle(rc, k, at, db, "RESTORE", sent.map(|s| (s, 1, len)))
}

/// Rebuilds a large value with commands under a temporary name ([`rebuild`]) from its spilled
/// bytes, and accounts for the outcome like a batch's reply. A dry run counts the commands.
fn rebuild_key(
    rc: &ReadCtx,
    src_version: u16,
    k: &journal::KeyRecord,
    at: Position,
    value: bytes::Bytes,
) -> Result<()> {
    let db = rc.stream.db(k.db, at)?;
    let build = rebuild::build_key(rc.journal_id, &rc.shard, &k.key);
    let source = || {
        rc.keys.rebuild(
            k,
            value.clone(),
            src_version,
            &build,
            crate::units::now_ms() as i64,
        )
    };
    let rebuilt = match rc.big.as_ref() {
        Some(big) => {
            let r = rebuild::Rebuild {
                key: &k.key,
                build: &build,
                at,
                db,
                on_busy: rc.keys.on_busy(),
                expire_ms: k.expire_ms,
            };
            rc.handle.block_on(big.rebuild(&r, &source, &rc.buckets))
        }
        None => Ok(rebuild::count(&source)),
    };
    let rebuilt = rebuilt.map(|r| {
        for w in r.warnings {
            rc.stats.lossy.fetch_add(1, Relaxed);
            tracing::warn!(shard = %rc.shard, %at, key = %error::printable_key(&k.key), "written as commands, not exactly: {w}");
        }
        (r.sent, r.commands, r.bytes)
    });
    if matches!(rebuilt, Ok((bigkey::Sent::Applied, ..))) {
        rc.stats.rebuilt.fetch_add(1, Relaxed);
    }
    settle(rc, k, at, db, "rebuild", rebuilt)
}

/// Accounts for a large key sent by the reader itself ([`stream_key`], [`rebuild_key`]): the
/// outcome, the commands and bytes the target accepted.
fn settle(
    rc: &ReadCtx,
    k: &journal::KeyRecord,
    at: Position,
    db: u32,
    what: &str,
    sent: std::result::Result<(bigkey::Sent, u64, u64), bigkey::StreamError>,
) -> Result<()> {
    let printable = || error::printable_key(&k.key);
    match sent {
        Ok((bigkey::Sent::Applied, commands, bytes)) => {
            rc.stats.keys.fetch_add(1, Relaxed);
            if what == "RESTORE" {
                rc.stats.restored.fetch_add(1, Relaxed);
            } else {
                rc.stats.rewritten.fetch_add(1, Relaxed);
            }
            rc.stats.commands.fetch_add(commands, Relaxed);
            rc.stats.bytes.fetch_add(bytes, Relaxed);
        }
        Ok((bigkey::Sent::Skipped, ..)) => {
            rc.stats.skipped.fetch_add(1, Relaxed);
        }
        Ok((bigkey::Sent::Expired, ..)) => {
            rc.stats.expired.fetch_add(1, Relaxed);
        }
        Ok((bigkey::Sent::Conflict, ..)) => {
            return Err(Error::Conflict {
                addr: rc.addr.clone(),
                shard: rc.shard.clone(),
                key: printable(),
                db,
                position: at,
            });
        }
        Ok((bigkey::Sent::Refused(m), ..)) => {
            let kind = writer::error_kind(&m);
            rc.stats
                .fail(&rc.shard, &rc.addr, &kind, what, Some(&k.key), at, &m);
        }
        Ok((bigkey::Sent::Unreplayable(why), ..)) => unreplayable(rc, &k.key, at, &why),
        Err(cause) => {
            return Err(Error::LargeValue {
                shard: rc.shard.clone(),
                key: printable(),
                position: at,
                cause: Box::new(cause),
            });
        }
    }
    Ok(())
}

/// A spill file that could not be written or mapped.
fn spill_error(rc: &ReadCtx, e: &std::io::Error) -> Error {
    Error::Invalid(format!(
        "shard {}: spilling a large value to {}: {e}",
        rc.shard,
        rc.spill_dir.display()
    ))
}

/// [`key_op`] of a key whose record owns its name (the follower's records, a value
/// reassembled from chunks).
fn owned_key_op(
    rc: &ReadCtx,
    st: &mut ReadState,
    mut k: journal::KeyRecord,
    value: Vec<u8>,
    pos: Position,
) -> Result<Option<Op>> {
    let key = Bytes::from(std::mem::take(&mut k.key));
    key_op(rc, st, k, key, value.into(), pos)
}

/// The op of snapshot key `key` (its record `k`, whose name and value fields are not read)
/// with `value`, or `None` when it is expired or cannot be written (reported).
fn key_op(
    rc: &ReadCtx,
    st: &mut ReadState,
    k: journal::KeyRecord,
    key: Bytes,
    value: Bytes,
    pos: Position,
) -> Result<Option<Op>> {
    let db = rc.stream.db(k.db, pos)?;
    let now = || crate::units::now_ms() as i64;
    let ReadState {
        src_version, arena, ..
    } = st;
    Ok(
        match rc
            .keys
            .convert(&k, &key, value, *src_version, db, pos, now, arena)
        {
            Converted::Op(op, warnings) => {
                for w in warnings {
                    rc.stats.lossy.fetch_add(1, Relaxed);
                    tracing::warn!(
                        shard = %rc.shard,
                        %pos,
                        key = %error::printable_key(op.key.as_deref().unwrap_or_default()),
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
                unreplayable(rc, &key, pos, &why);
                None
            }
        },
    )
}

/// The default checkpoint path (see [`ReplayOptions::default_checkpoint`]).
pub fn default_checkpoint(journal_dir: &Path, target: &crate::net::Endpoint) -> std::path::PathBuf {
    ReplayOptions::default_checkpoint(journal_dir, target)
}
