//! The comparison itself: one task per source master (scan or sample, then check batches),
//! one task per target master for extras, a re-check of every difference before it is
//! reported, and the shared report.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::progress::Progress;

use super::error::{Error, Result};
use super::keyspace::{self, Rng, Scan};
use super::quick::{self, KeyState, Verdict};
use super::report::{Bucket, Diff, Mode, Report, Sample, printable};
use super::side::{Cmd, Side, SideInfo};
use super::value::{self, How, ValueSettings};
use super::{CompareOptions, SCAN_COUNT};

/// What every task shares.
pub(crate) struct Shared {
    pub opts: CompareOptions,
    pub src: SideInfo,
    pub tgt: SideInfo,
    pub report: Mutex<Report>,
    pub progress: Progress,
}

impl Shared {
    fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> ValueSettings {
        ValueSettings {
            chunk_threshold: self.opts.chunk_threshold,
            window: self.opts.window,
            tolerance_ms: self.opts.ttl_tolerance.as_millis() as i64,
        }
    }
}

/// What one source-master task does.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Scan these databases.
    Scan(Vec<u32>),
    /// Draw this many keys from each `(db, keys in db, quota)`.
    Sample(Vec<(u32, u64, u64)>),
}

/// Runs every task and returns the filled report.
pub(crate) async fn compare(
    opts: CompareOptions,
    src_info: SideInfo,
    tgt_info: SideInfo,
    report: Report,
) -> Result<Report> {
    let mut src = src_info.handle();
    // Plan per source master: databases (and quotas when sampling).
    let mut plans: Vec<(String, Vec<(u32, u64)>)> = Vec::new();
    for addr in &src_info.masters {
        let dbs = keyspace::databases(&mut src, addr, &opts.dbs).await?;
        plans.push((addr.clone(), dbs));
    }
    drop(src);
    let mut total: u64 = plans.iter().flat_map(|(_, d)| d.iter().map(|x| x.1)).sum();
    let plans: Vec<(String, Plan)> = match opts.sample {
        None => plans
            .into_iter()
            .map(|(a, d)| (a, Plan::Scan(d.into_iter().map(|x| x.0).collect())))
            .collect(),
        Some(n) => {
            let groups: Vec<u64> = plans
                .iter()
                .flat_map(|(_, d)| d.iter().map(|x| x.1))
                .collect();
            let quotas = keyspace::allocate(n, &groups);
            total = quotas.iter().sum();
            let mut q = quotas.into_iter();
            plans
                .into_iter()
                .map(|(a, d)| {
                    let s = d
                        .into_iter()
                        .map(|(db, keys)| (db, keys, q.next().unwrap_or(0)))
                        .collect();
                    (a, Plan::Sample(s))
                })
                .collect()
        }
    };
    let progress = Progress::new(opts.progress, "compare", "keys", Some(total));
    let shared = Arc::new(Shared {
        opts,
        src: src_info,
        tgt: tgt_info,
        report: Mutex::new(report),
        progress,
    });
    let mut tasks = Vec::new();
    for (addr, plan) in plans {
        let shared = shared.clone();
        tasks.push(tokio::spawn(source_task(shared, addr, plan)));
    }
    let extras = shared.opts.sample.is_none();
    if extras {
        for addr in shared.tgt.masters.clone() {
            let shared = shared.clone();
            tasks.push(tokio::spawn(extras_task(shared, addr)));
        }
    }
    let mut first: Option<Error> = None;
    for t in tasks {
        let r = match t.await {
            Ok(r) => r,
            Err(e) => Err(Error::Invalid(format!("compare task failed: {e}"))),
        };
        if let (Err(e), None) = (r, &first) {
            first = Some(e);
        }
    }
    shared.progress.finish();
    if let Some(e) = first {
        return Err(e);
    }
    let mut r = shared.report().clone();
    r.extras_checked = extras;
    if let Some(n) = shared.opts.sample {
        r.sample = Some(Sample {
            requested: n,
            size: r.keys_compared + r.skipped.vanished,
        });
    }
    Ok(r)
}

async fn source_task(shared: Arc<Shared>, addr: String, plan: Plan) -> Result<()> {
    let mut src = shared.src.handle();
    let mut tgt = shared.tgt.handle();
    let pattern = shared.opts.keys.clone();
    match plan {
        Plan::Scan(dbs) => {
            for db in dbs {
                let mut scan = Scan::new(&addr, db, pattern.as_deref(), SCAN_COUNT);
                while let Some(keys) = scan.next(&mut src).await? {
                    if !keys.is_empty() {
                        check_batch(&shared, &mut src, &mut tgt, db, keys).await?;
                    }
                }
            }
        }
        Plan::Sample(groups) => {
            let mut rng = Rng::from_time();
            for (db, db_keys, want) in groups {
                let keys = keyspace::sample(
                    &mut src,
                    &addr,
                    db,
                    db_keys,
                    want,
                    pattern.as_deref(),
                    &mut rng,
                )
                .await?;
                for chunk in keys.chunks(SCAN_COUNT) {
                    check_batch(&shared, &mut src, &mut tgt, db, chunk.to_vec()).await?;
                }
            }
        }
    }
    Ok(())
}

/// Checks a batch, re-checks what differed, and records the outcome.
async fn check_batch(
    shared: &Shared,
    src: &mut Side,
    tgt: &mut Side,
    db: u32,
    keys: Vec<Bytes>,
) -> Result<()> {
    let n = keys.len() as u64;
    let first = evaluate(shared, src, tgt, db, &keys).await?;
    let suspects: Vec<Bytes> = keys
        .iter()
        .zip(&first)
        .filter(|(_, (v, _))| matches!(v, Verdict::Diff(..)))
        .map(|(k, _)| k.clone())
        .collect();
    let second = if suspects.is_empty() {
        Vec::new()
    } else {
        evaluate(shared, src, tgt, db, &suspects).await?
    };
    let mut r = shared.report();
    let mut again = suspects.iter().zip(second);
    for (k, (v, how)) in keys.iter().zip(first) {
        let (v, how, rechecked) = match v {
            Verdict::Diff(..) => match again.next() {
                Some((_, (v2, how2))) => (v2, how2, true),
                None => (v, how, false),
            },
            other => (other, how, false),
        };
        match v {
            Verdict::Vanished => {
                r.skipped.vanished += 1;
                continue;
            }
            Verdict::Expiring => r.skipped.expiring += 1,
            Verdict::Same if rechecked => r.skipped.cleared_on_recheck += 1,
            Verdict::Same => {}
            Verdict::Diff(bucket, detail) => r.add(Diff {
                bucket,
                db,
                key: printable(k),
                detail,
            }),
        }
        r.keys_compared += 1;
        match how {
            Some(How::DumpBytes) => r.value_checks.dump_bytes += 1,
            Some(How::Decoded) => r.value_checks.decoded += 1,
            Some(How::Windowed) => r.value_checks.windowed += 1,
            Some(How::Length) | None => {}
        }
    }
    drop(r);
    shared.progress.inc(n);
    Ok(())
}

/// The quick check of a batch, then (full mode) the value check of keys present on both sides
/// with one type. A value difference outranks a TTL difference.
async fn evaluate(
    shared: &Shared,
    src: &mut Side,
    tgt: &mut Side,
    db: u32,
    keys: &[Bytes],
) -> Result<Vec<(Verdict, Option<How>)>> {
    // A cluster has db 0 only: keys of other databases are absent there.
    let tgt_has_db = !(tgt.info().is_cluster() && db != 0);
    let (s, t) = if tgt_has_db {
        let (s, t) = tokio::join!(quick::read(src, db, keys), quick::read(tgt, db, keys));
        (s?, t?)
    } else {
        (
            quick::read(src, db, keys).await?,
            vec![KeyState::absent(); keys.len()],
        )
    };
    let tol = shared.opts.ttl_tolerance.as_millis() as i64;
    let mut out: Vec<(Verdict, Option<How>)> = s
        .iter()
        .zip(&t)
        .map(|(a, b)| (quick::judge(a, b, tol), None))
        .collect();
    if shared.opts.mode == Mode::Full {
        let idx: Vec<usize> = (0..keys.len())
            .filter(|&i| matches!(out[i].0, Verdict::Same | Verdict::Diff(Bucket::Ttl, _)))
            .collect();
        if !idx.is_empty() {
            let typed: Vec<(Bytes, String)> = idx
                .iter()
                .map(|&i| (keys[i].clone(), s[i].ty.clone().unwrap_or_default()))
                .collect();
            let values = value::compare(src, tgt, db, &typed, &shared.settings()).await?;
            for (&i, (diff, how)) in idx.iter().zip(values) {
                out[i].1 = Some(how);
                if let Some(d) = diff {
                    out[i].0 = Verdict::Diff(Bucket::Value, d);
                }
            }
        }
    }
    Ok(out)
}

/// Scans one target master and reports keys the source lacks (re-checked once).
async fn extras_task(shared: Arc<Shared>, addr: String) -> Result<()> {
    let mut src = shared.src.handle();
    let mut tgt = shared.tgt.handle();
    let dbs = keyspace::databases(&mut tgt, &addr, &shared.opts.dbs).await?;
    for (db, _) in dbs {
        let mut scan = Scan::new(&addr, db, shared.opts.keys.as_deref(), SCAN_COUNT);
        while let Some(mut keys) = scan.next(&mut tgt).await? {
            // a running (or killed) replay's markers are not data
            let before = keys.len();
            keys.retain(|k| !crate::replay::partition::is_marker_key(k));
            if before != keys.len() {
                shared.report().replay_markers += (before - keys.len()) as u64;
            }
            if keys.is_empty() {
                continue;
            }
            let mut candidates = absent_on(&mut src, db, &keys).await?;
            if !candidates.is_empty() {
                // Re-check: still absent on the source, still present on the target.
                let still = absent_on(&mut src, db, &candidates).await?;
                let present = present_on(&mut tgt, db, &still).await?;
                candidates = present;
            }
            let mut r = shared.report();
            r.target_keys_scanned += keys.len() as u64;
            for k in candidates {
                r.add(Diff {
                    bucket: Bucket::Extra,
                    db,
                    key: printable(&k),
                    detail: "not on the source".into(),
                });
            }
        }
    }
    Ok(())
}

/// The keys of `keys` that `side` does not hold (a db a cluster cannot have holds nothing).
async fn absent_on(side: &mut Side, db: u32, keys: &[Bytes]) -> Result<Vec<Bytes>> {
    if side.info().is_cluster() && db != 0 {
        return Ok(keys.to_vec());
    }
    let found = exists(side, db, keys).await?;
    Ok(keys
        .iter()
        .zip(found)
        .filter(|(_, e)| !e)
        .map(|(k, _)| k.clone())
        .collect())
}

/// The keys of `keys` that `side` holds.
async fn present_on(side: &mut Side, db: u32, keys: &[Bytes]) -> Result<Vec<Bytes>> {
    let found = exists(side, db, keys).await?;
    Ok(keys
        .iter()
        .zip(found)
        .filter(|(_, e)| *e)
        .map(|(k, _)| k.clone())
        .collect())
}

async fn exists(side: &mut Side, db: u32, keys: &[Bytes]) -> Result<Vec<bool>> {
    let cmds: Vec<Cmd> = keys.iter().map(|k| Cmd::new("EXISTS", k, &[])).collect();
    let replies = side.batch(db, &cmds).await?;
    keys.iter()
        .zip(replies)
        .map(|(k, r)| {
            r.as_int().map(|n| n > 0).ok_or_else(|| Error::Reply {
                side: side.role(),
                addr: side.info().endpoint.addr(),
                key: printable(k),
                db,
                what: format!("EXISTS answered {}", quick::short(&r)),
            })
        })
        .collect()
}
