//! One lane of a shard: a task owning a [`Writer`] (its own connection per target node, its own
//! selected db and slot map, its own marker) that sends the batches the shard's dispatcher
//! gives it, in the order given, and reports each one's outcome once every reply was read and
//! checked.
//!
//! A lane has one batch in flight: it writes the next only once every reply of the previous
//! one was read and checked. Two in flight broke order and exactly-once: a batch partly
//! refused for a passing reason (`MOVED` in a failover, `TRYAGAIN`, `CLUSTERDOWN`, an `OOM`
//! that aborts a transaction) was resent after the next batch had already been applied — its
//! commands landing after later ones on the same keys, a slot's marker (or a standalone lane's)
//! moving past commands never applied, and the resend's replies read against the next batch's
//! (regression: `replay::a_failover_on_the_target_cluster_is_followed`). The lanes of a shard
//! run concurrently, so the server always has another lane's batch to work on, and their
//! replies are read concurrently.
//! After a broken connection a lane reconnects and resends what was in flight, in order — an
//! atomic batch whose marker shows it applied is not resent.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::error::Result;
use super::op::Op;
use super::writer::{Failure, Pending, Writer};
use super::{Permit, RetryState, ShardCtx, recover, retry, send};

/// Work for a lane.
pub(super) enum Job {
    /// Send these ops (one journal range's share for this lane) and report.
    Batch(Batch),
    /// Check that the target still holds what this lane's markers were acknowledged to hold
    /// (before any lane deletes markers).
    VerifyMarkers,
    /// Delete the shard's markers (the checkpoint file now holds every lane's position).
    ClearMarkers,
}

/// Ops for one lane with their memory permits (released when acknowledged).
pub(super) struct Batch {
    /// The dispatcher's round this batch belongs to.
    pub round: u64,
    /// The ops, in journal order.
    pub ops: Vec<Op>,
    /// Memory budget held until acknowledged.
    pub _permits: Vec<Permit>,
}

/// A lane's report.
pub(super) struct Done {
    /// `None` for [`Job::VerifyMarkers`] and [`Job::ClearMarkers`].
    pub round: Option<u64>,
    /// The ops of the batch (counted once acknowledged).
    pub ops: Vec<Op>,
    /// Acknowledged, or why the lane stopped.
    pub result: Result<()>,
}

struct InFlight {
    batch: Batch,
    pending: Option<Pending>,
}

/// A lane: sends what `jobs` brings, reports to `done`, returns its writer (for dry-run counts)
/// when `jobs` closes or after a fatal error.
pub(super) async fn run(
    ctx: Arc<ShardCtx>,
    mut writer: Writer,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::UnboundedSender<Done>,
) -> Writer {
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut closed = false;
    loop {
        let job = if inflight.is_empty() {
            match jobs.recv().await {
                Some(j) => Some(j),
                None => break,
            }
        } else if closed {
            None
        } else {
            match jobs.try_recv() {
                Ok(j) => Some(j),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    None
                }
            }
        };
        let ok = match job {
            None => finish_front(&ctx, &mut writer, &mut inflight, &done).await,
            Some(job @ (Job::VerifyMarkers | Job::ClearMarkers)) => {
                drain(&ctx, &mut writer, &mut inflight, &done).await && {
                    let result = match job {
                        Job::VerifyMarkers => {
                            retry(&ctx, &mut writer, |w| Box::pin(w.verify_markers())).await
                        }
                        _ => retry(&ctx, &mut writer, |w| Box::pin(w.clear_marker())).await,
                    };
                    let ok = result.is_ok();
                    let _ = done.send(Done {
                        round: None,
                        ops: Vec::new(),
                        result,
                    });
                    ok
                }
            }
            Some(Job::Batch(mut b)) if b.ops.first().is_some_and(|o| o.guard.is_some()) => {
                // a guarded op (EXISTS first) goes alone, after what is in flight
                drain(&ctx, &mut writer, &mut inflight, &done).await && {
                    let result = send(&ctx, &mut writer, &mut b.ops, false).await;
                    report(&done, b, result)
                }
            }
            Some(Job::Batch(b)) => {
                // after a broken connection, what was in flight is resent first, in order
                let ok = !inflight.iter().any(|f| f.pending.is_none())
                    || drain(&ctx, &mut writer, &mut inflight, &done).await;
                ok && begin(&ctx, &mut writer, &mut inflight, b, &done).await && {
                    let mut ok = true;
                    // one batch in flight (see the module doc)
                    while ok && !inflight.is_empty() {
                        ok = finish_front(&ctx, &mut writer, &mut inflight, &done).await;
                    }
                    ok
                }
            }
        };
        if !ok {
            break;
        }
    }
    writer
}

/// Rate-limits and writes `b`; after a connection failure the lane reconnects and `b` waits
/// (with everything in flight) to be resent. `false`: the lane must stop (error reported).
async fn begin(
    ctx: &ShardCtx,
    writer: &mut Writer,
    inflight: &mut VecDeque<InFlight>,
    b: Batch,
    done: &mpsc::UnboundedSender<Done>,
) -> bool {
    if ctx.buckets.0.limited() {
        let n: u64 = b.ops.iter().map(|o| o.commands_carried() as u64).sum();
        ctx.buckets.0.take(n).await;
    }
    if ctx.buckets.1.limited() {
        let bytes: u64 = b.ops.iter().map(Op::wire_len).sum();
        ctx.buckets.1.take(bytes).await;
    }
    let pending = match writer.begin(&b.ops).await {
        Ok(p) => Some(p),
        Err(Failure::Connection(e)) => {
            if let Err(e) = recover(ctx, writer, &mut RetryState::default(), e).await {
                return report(done, b, Err(e));
            }
            for f in inflight.iter_mut() {
                f.pending = None;
            }
            None
        }
        Err(Failure::Fatal(e)) => return report(done, b, Err(e)),
    };
    inflight.push_back(InFlight { batch: b, pending });
    true
}

/// Reads the replies of the oldest batch in flight (resending it after a broken connection)
/// and reports it. `false`: the lane must stop (the error was reported).
async fn finish_front(
    ctx: &ShardCtx,
    writer: &mut Writer,
    inflight: &mut VecDeque<InFlight>,
    done: &mpsc::UnboundedSender<Done>,
) -> bool {
    let Some(mut f) = inflight.pop_front() else {
        return true;
    };
    let result = match f.pending.take() {
        Some(p) => match writer.finish(&f.batch.ops, p).await {
            Ok(()) => Ok(()),
            Err(Failure::Fatal(e)) => Err(e),
            Err(Failure::Connection(e)) => {
                match recover(ctx, writer, &mut RetryState::default(), e).await {
                    Ok(()) => {
                        for g in inflight.iter_mut() {
                            g.pending = None;
                        }
                        send(ctx, writer, &mut f.batch.ops, true).await
                    }
                    Err(e) => Err(e),
                }
            }
        },
        None => send(ctx, writer, &mut f.batch.ops, true).await,
    };
    report(done, f.batch, result)
}

/// Finishes everything in flight, in order.
async fn drain(
    ctx: &ShardCtx,
    writer: &mut Writer,
    inflight: &mut VecDeque<InFlight>,
    done: &mpsc::UnboundedSender<Done>,
) -> bool {
    while !inflight.is_empty() {
        if !finish_front(ctx, writer, inflight, done).await {
            return false;
        }
    }
    true
}

/// Sends the outcome of `b` to the dispatcher; `false` if the lane must stop.
fn report(done: &mpsc::UnboundedSender<Done>, b: Batch, result: Result<()>) -> bool {
    let ok = result.is_ok();
    let _ = done.send(Done {
        round: Some(b.round),
        ops: b.ops,
        result,
    });
    ok
}
