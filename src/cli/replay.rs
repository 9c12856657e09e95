//! `shake replay`: apply a journal to a standalone server or a cluster.

use super::GlobalArgs;
use super::endpoint::TargetArgs;
use crate::exit;
use crate::progress::ProgressMode;
use crate::replay::{self, ConflictPolicy, ReplayOptions, RestoreMode, Stats, Until};
use anyhow::{Context, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `--restore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreArg {
    /// RESTORE when the target accepts the payload, commands otherwise.
    Auto,
    /// Always RESTORE; keys it cannot carry are reported.
    Always,
    /// Always rebuild keys with plain commands.
    Never,
}

/// `--on-conflict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConflictArg {
    /// Overwrite existing keys (replaying twice gives the same data).
    Replace,
    /// Keep existing keys, count them as skipped.
    Skip,
    /// Stop at the first existing key.
    Error,
}

/// Flags of `shake replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The journal directory.
    #[arg(value_name = "DIR")]
    pub journal: PathBuf,
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Replay only these shards (`shard-001` or `1`), comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub shards: Option<Vec<String>>,
    /// How snapshot keys are written: RESTORE when possible (auto), always, or never.
    #[arg(long, value_enum, default_value_t = RestoreArg::Auto)]
    pub restore: RestoreArg,
    /// What to do with snapshot keys that already exist on the target.
    #[arg(long, value_enum, default_value_t = ConflictArg::Replace)]
    pub on_conflict: ConflictArg,
    /// Write source db FROM into target db TO (repeatable). Dbs not mapped are kept.
    #[arg(long, value_name = "FROM:TO", value_parser = parse_map)]
    pub map_db: Vec<(u32, u32)>,
    /// Commands per batch on each connection (a batch is written while the server works on
    /// the previous one).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub pipeline: usize,
    /// Connections per shard and target node (1–64): commands are spread over them by key
    /// slot, order per key kept; commands spanning them are sent alone (barriers).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub connections: usize,
    /// Threads that send batches and read replies (default: one per core). Each shard's
    /// journal is read and converted on a thread of its own besides these; on a machine
    /// shared with the destination server, `--threads 1` leaves the server more CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Parse, route and count without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Send every SET as it is. By default a run of plain `SET key value` commands bound for
    /// one connection (and, on a cluster, one slot) is sent as one MSET: same effect, about
    /// 30 % less work for the destination per key; an error reply is reported against every
    /// SET of the run.
    #[arg(long)]
    pub no_fold: bool,
    /// Commands per second, all shards together (0: unlimited).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_ops: u64,
    /// Bytes per second, all shards together (`10MiB`; 0: unlimited).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = crate::units::parse_size)]
    pub max_bytes: u64,
    /// Snapshot values larger than this (as encoded in the RDB) are never held whole in
    /// memory: streamed from the journal into their RESTORE piece by piece, or, when they go
    /// by commands, spilled to a file in --spill-dir and rebuilt under a temporary name.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = crate::units::parse_size)]
    pub stream_values_above: u64,
    /// Do not wait for a cluster target's replicas: a round counts as acknowledged once its
    /// masters answered, so a master killed outright can lose writes it had not replicated
    /// (default: `WAIT` for each master's replicas after its slot transactions).
    #[arg(long)]
    pub no_wait_replicas: bool,
    /// Where large values that go by commands are spilled while rebuilt (an unlinked file;
    /// default: the checkpoint file's folder, `<journal dir>.replay-state/`).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Stop after the command at this replication offset (point-in-time recovery).
    #[arg(long, value_name = "N")]
    pub until_offset: Option<u64>,
    /// Stop before the first command captured after this time (RFC 3339, e.g.
    /// 2026-11-27T01:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub until_time: Option<String>,
    /// The checkpoint file (default: `<journal dir>.replay-state/<target host_port>.json`).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Do not read or write a checkpoint (every run starts from the snapshot).
    #[arg(long, conflicts_with = "checkpoint")]
    pub no_checkpoint: bool,
    /// After catching up, keep applying what is appended to the journal until SIGINT/SIGTERM.
    #[arg(long, conflicts_with_all = ["until_offset", "until_time"])]
    pub follow: bool,
    /// Consecutive failed reconnections before giving up; twice this many rounds of
    /// commands refused by a cluster in passing (TRYAGAIN, CLUSTERDOWN, LOADING) — except
    /// while their slot is being migrated, which is waited out however long it takes.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub max_retries: u32,
    /// Serve Prometheus metrics (per-shard acknowledged offset and lag, commands, failures,
    /// reconnects) on this address while the replay runs (meant for `--follow`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Seconds between progress lines in log mode.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::units::parse_duration)]
    pub progress_interval: Duration,
}

fn parse_map(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not FROM:TO"))?;
    Ok((
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a db number"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a db number"))?,
    ))
}

/// Runs `shake replay`.
pub async fn run(args: ReplayArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let (endpoint, connect) = args.target.resolve()?;
    let mut opts = ReplayOptions::new(args.journal.clone(), endpoint.clone());
    opts.connect = connect;
    opts.shards = args
        .shards
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|s| match s.parse::<usize>() {
            Ok(n) => crate::journal::ShardInfo::name_for(n),
            Err(_) => s,
        })
        .collect();
    opts.restore = match args.restore {
        RestoreArg::Auto => RestoreMode::Auto,
        RestoreArg::Always => RestoreMode::Always,
        RestoreArg::Never => RestoreMode::Never,
    };
    opts.on_conflict = match args.on_conflict {
        ConflictArg::Replace => ConflictPolicy::Replace,
        ConflictArg::Skip => ConflictPolicy::Skip,
        ConflictArg::Error => ConflictPolicy::Error,
    };
    opts.map_db = args.map_db.iter().copied().collect::<BTreeMap<_, _>>();
    if args.pipeline == 0 {
        bail!("--pipeline must be at least 1");
    }
    opts.pipeline = args.pipeline;
    if !(1..=replay::partition::MAX_CONNECTIONS).contains(&args.connections) {
        bail!(
            "--connections must be between 1 and {}",
            replay::partition::MAX_CONNECTIONS
        );
    }
    opts.connections = args.connections;
    opts.dry_run = args.dry_run;
    opts.fold_sets = !args.no_fold;
    opts.max_ops = args.max_ops;
    opts.max_bytes = args.max_bytes;
    opts.stream_above = args.stream_values_above;
    opts.spill = args.spill_dir.clone();
    opts.wait_replicas = !args.no_wait_replicas;
    let time_ms = match &args.until_time {
        Some(t) => Some(
            humantime::parse_rfc3339_weak(t)
                .with_context(|| format!("--until-time {t:?} is not an RFC 3339 time"))?
                .duration_since(std::time::UNIX_EPOCH)
                .context("--until-time before 1970")?
                .as_millis() as u64,
        ),
        None => None,
    };
    opts.until = Until {
        offset: args.until_offset,
        time_ms,
    };
    opts.follow = args.follow;
    opts.max_retries = args.max_retries;
    opts.checkpoint = if args.no_checkpoint || args.dry_run {
        None
    } else {
        Some(
            args.checkpoint
                .clone()
                .unwrap_or_else(|| ReplayOptions::default_checkpoint(&args.journal, &endpoint)),
        )
    };
    if let Some(c) = &opts.checkpoint {
        let journal = std::fs::canonicalize(&args.journal).unwrap_or(args.journal.clone());
        let abs = std::fs::canonicalize(c.parent().unwrap_or(c)).unwrap_or(c.clone());
        if abs.starts_with(&journal) {
            bail!(
                "--checkpoint {} is inside the journal directory: the journal is never written to",
                c.display()
            );
        }
        tracing::info!(checkpoint = %c.display(), "checkpoint");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            for round in 0..2 {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
                if round == 0 {
                    tracing::warn!(
                        "stopping: finishing the batches in flight and writing the checkpoint (signal again to abort)"
                    );
                    interrupted.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                } else {
                    eprintln!("aborted");
                    std::process::exit(exit::INTERRUPTED as i32);
                }
            }
        });
    }
    let stats = Arc::new(Stats::default());
    let reporter = {
        let stats = stats.clone();
        let every = args.progress_interval;
        let mode = global.progress.resolve();
        tokio::spawn(async move {
            if mode == ProgressMode::None {
                return;
            }
            let mut last = 0u64;
            loop {
                tokio::time::sleep(every).await;
                let s = stats.summary();
                tracing::info!(
                    keys = s.keys,
                    records = s.records,
                    commands = s.commands,
                    commands_per_sec =
                        format!("{:.0}", (s.commands - last) as f64 / every.as_secs_f64()),
                    failed = s.failed,
                    reconnects = s.reconnects,
                    "replay"
                );
                last = s.commands;
                for (shard, p) in stats.shards() {
                    tracing::info!(
                        shard = %shard,
                        phase = if p.snapshot { "snapshot" } else { "stream" },
                        acked_offset = p.acked_offset,
                        lag_bytes = p.lag(),
                        "replay shard"
                    );
                }
            }
        })
    };
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let listener = super::metrics_listener(addr).await?;
            let stats = stats.clone();
            Some(tokio::spawn(crate::capture::metrics::serve_page(
                listener,
                move || replay::metrics::render(&stats),
            )))
        }
        None => None,
    };
    let started = std::time::Instant::now();
    let outcome = replay::run(opts.clone(), stop, stats).await;
    reporter.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    let outcome = outcome?;
    let s = &outcome.summary;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay summary ({} → {}, {} {}{})",
        args.journal.display(),
        endpoint,
        if outcome.target.is_cluster() {
            "cluster"
        } else {
            "standalone"
        },
        outcome.target.version,
        if opts.dry_run {
            ", DRY RUN: nothing written"
        } else {
            ""
        }
    );
    println!(
        "  snapshot keys {} (restored {} of which streamed {}, strings by SET {}, rewritten {} of which rebuilt {}, not exact {}), skipped (existing) {}, replaced (found existing) {}, expired (not written) {}, function libraries {}, module aux records ignored {}",
        s.keys,
        s.restored,
        s.streamed,
        s.as_set,
        s.rewritten,
        s.rebuilt,
        s.lossy,
        s.skipped,
        s.replaced,
        s.expired,
        s.functions,
        s.module_aux
    );
    println!(
        "  stream records {}  commands sent {}  bytes {}  in {:.1}s ({:.0} records/s: snapshot keys and stream records)  redirects {}  reconnects {}",
        s.records,
        s.commands,
        s.bytes,
        secs,
        (s.records + s.keys) as f64 / secs.max(1e-9),
        s.redirects,
        s.reconnects
    );
    for o in &outcome.shards {
        println!(
            "  {}  acknowledged up to {}{}",
            o.shard,
            o.acked.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            o.error
                .as_ref()
                .map(|e| format!("  ERROR: {e}"))
                .unwrap_or_default()
        );
        for (node, n) in &o.dry_counts {
            println!("    would send {n} commands to {node}");
        }
    }
    if s.migrated > 0 {
        println!(
            "  WARNING: {} key(s) moved between source masters during capture: their writes were replayed from two shards without order between them; check them (logged by name) with `shake compare`",
            s.migrated
        );
    }
    if s.failed > 0 {
        println!("  FAILED: {} (by kind: {:?})", s.failed, s.failures);
    } else {
        println!("  failed: 0");
    }
    if let Some(c) = &opts.checkpoint {
        println!("  checkpoint: {}", c.display());
    }
    let shard_error = outcome.shards.iter().any(|o| o.error.is_some());
    Ok(if shard_error || s.failed > 0 {
        exit::RUNTIME_ERROR
    } else if interrupted.load(Ordering::Relaxed) && !opts.follow {
        exit::INTERRUPTED
    } else {
        exit::SUCCESS
    })
}
