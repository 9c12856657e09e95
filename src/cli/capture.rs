//! `shake capture`: a replica of every master into a journal, or an RDB file into a journal.

use super::{GlobalArgs, SourceArgs};
use crate::capture::plan::{self, CaptureOptions, ModeChoice};
use crate::capture::replica::SessionOptions;
use crate::capture::shard::{self, ShardStatus};
use crate::exit;
use crate::journal::{FsyncPolicy, WriterOptions};
use crate::probe::human;
use crate::progress::{Progress, ProgressMode};
use crate::rdb::ReaderOptions;
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Detect standalone or cluster from the server.
    Auto,
    /// Require a standalone server.
    Standalone,
    /// Require a cluster: one replica session per master.
    Cluster,
}

/// `--fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncArg {
    /// After every frame.
    Always,
    /// At most once per --fsync-interval (default 1s).
    Interval,
    /// Leave it to the OS (a crash may lose what was acknowledged).
    Never,
}

/// Flags of `shake capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The source server (any cluster node, a standalone server or replica, or a sentinel).
    #[command(flatten)]
    pub source: Option<SourceArgs>,
    /// Capture this RDB file (a backup) instead of a live server.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "sentinel_master", "shards", "from_replicas", "snapshot_only", "duration"])]
    pub from_rdb: Option<PathBuf>,
    /// The journal directory (created if new; an existing journal is resumed).
    #[arg(long, value_name = "DIR")]
    pub journal: PathBuf,
    /// Standalone or cluster; auto detects.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// The --source is a Sentinel: capture the master of this name (followed across failovers).
    #[arg(long, value_name = "NAME")]
    pub sentinel_master: Option<String>,
    /// Capture only these shards (`shard-001` or `1`), comma-separated: split a big cluster
    /// across machines.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub shards: Option<Vec<String>>,
    /// Attach to a replica of each cluster shard instead of its master (spares the master the
    /// fork and the output buffer; replicas keep the master's replid and offsets).
    #[arg(long)]
    pub from_replicas: bool,
    /// Name of the PSYNC command, for services that rename it.
    #[arg(long, value_name = "NAME", default_value = "PSYNC")]
    pub psync_command: String,
    /// Exit once every shard's snapshot is durable.
    #[arg(long)]
    pub snapshot_only: bool,
    /// Stop (and seal) after this long.
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub duration: Option<Duration>,
    /// Rotate segments at this size.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = crate::units::parse_size)]
    pub segment_size: u64,
    /// Also rotate (and seal) segments older than this, so a live capture has segments to ship.
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub segment_max_age: Option<Duration>,
    /// zstd level of journal frames.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression_level: i32,
    /// When journal writes are forced to disk. Only durable data is acknowledged to the master.
    #[arg(long, value_enum, default_value_t = FsyncArg::Interval)]
    pub fsync: FsyncArg,
    /// The interval of --fsync interval.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::units::parse_duration)]
    pub fsync_interval: Duration,
    /// Give up after this many consecutive failed reconnections (default: retry forever).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Accept RDB versions newer than this build knows.
    #[arg(long)]
    pub accept_newer_rdb: bool,
    /// Serve Prometheus metrics (offsets, lag, bytes, reconnects) on this address while the
    /// capture runs, e.g. 127.0.0.1:9121.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Seconds between progress lines in log mode.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::units::parse_duration)]
    pub progress_interval: Duration,
}

impl CaptureArgs {
    fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            segment_size: self.segment_size,
            segment_max_age: self.segment_max_age,
            fsync: match self.fsync {
                FsyncArg::Always => FsyncPolicy::Always,
                FsyncArg::Interval => FsyncPolicy::Interval(self.fsync_interval),
                FsyncArg::Never => FsyncPolicy::Never,
            },
            zstd_level: self.compression_level,
            ..WriterOptions::default()
        }
    }

    fn reader_options(&self) -> ReaderOptions {
        ReaderOptions {
            accept_newer: self.accept_newer_rdb,
            ..ReaderOptions::default()
        }
    }
}

/// Runs `shake capture`.
pub async fn run(args: CaptureArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    if let Some(file) = &args.from_rdb {
        return from_rdb(&args, file, global).await;
    }
    let Some(source) = &args.source else {
        bail!("give --source URL (a live server) or --from-rdb FILE");
    };
    let (endpoint, connect) = source.resolve()?;
    let opts = CaptureOptions {
        source: endpoint,
        connect,
        mode: match args.mode {
            ModeArg::Auto => ModeChoice::Auto,
            ModeArg::Standalone => ModeChoice::Standalone,
            ModeArg::Cluster => ModeChoice::Cluster,
        },
        sentinel_master: args.sentinel_master.clone(),
        shards: args.shards.clone(),
        from_replicas: args.from_replicas,
        journal_dir: args.journal.clone(),
        session: SessionOptions {
            psync_command: args.psync_command.clone(),
            ..SessionOptions::default()
        },
        writer: args.writer_options(),
        reader: args.reader_options(),
        snapshot_only: args.snapshot_only,
        max_retries: args.max_retries,
    };
    let mut jobs = plan::plan(&opts).await?;
    // A cluster's layout is watched; every change becomes a marker in each shard's journal.
    if let Some(shard::Locator::Cluster { seeds, .. }) = jobs.first().map(|j| j.locator.clone()) {
        let initial = {
            let mut c = crate::net::Connection::connect(&opts.source, &opts.connect).await?;
            plan::describe(&crate::net::topology::discover(&mut c).await?)
        };
        let (tx, rx) = tokio::sync::watch::channel(initial);
        for j in &mut jobs {
            j.topology = Some(rx.clone());
        }
        tokio::spawn(plan::watch_topology(
            seeds,
            opts.connect.clone(),
            Duration::from_secs(5),
            tx,
        ));
    }
    tracing::info!(journal = %args.journal.display(), shards = jobs.len(), "capture starting");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let statuses: Vec<(String, Arc<Mutex<ShardStatus>>)> = jobs
        .iter()
        .map(|j| (j.name.clone(), Arc::new(Mutex::new(ShardStatus::default()))))
        .collect();
    let mut tasks = Vec::new();
    for (job, (_, status)) in jobs.into_iter().zip(&statuses) {
        tasks.push(tokio::spawn(shard::run(
            job,
            stop_rx.clone(),
            status.clone(),
        )));
    }
    // Signals: the first SIGINT/SIGTERM stops cleanly (seal, exit 0); a second aborts at once.
    let stopper = stop_tx.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            if round == 0 {
                tracing::warn!("stopping: sealing every shard (signal again to abort at once)");
                let _ = stopper.send(true);
            } else {
                eprintln!("aborted");
                std::process::exit(exit::INTERRUPTED as i32);
            }
        }
    });
    if let Some(d) = args.duration {
        let stopper = stop_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            tracing::info!("--duration reached: stopping");
            let _ = stopper.send(true);
        });
    }
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let listener = super::metrics_listener(addr).await?;
            Some(tokio::spawn(crate::capture::metrics::serve(
                listener,
                statuses.clone(),
            )))
        }
        None => None,
    };
    let reporter = spawn_reporter(global.progress, args.progress_interval, statuses.clone());
    let mut failed = false;
    let mut outcomes = Vec::new();
    for t in tasks {
        let outcome = t.await.context("a shard task panicked")?;
        if let Some(e) = &outcome.error {
            failed = true;
            tracing::error!("{e}");
        }
        outcomes.push(outcome);
    }
    reporter.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    println!("capture summary ({})", args.journal.display());
    for o in &outcomes {
        let s = &o.status;
        println!(
            "  {}  {}  replid {}  offset {} (durable {})  snapshot keys {}  stream units {}  full syncs {}  reconnects {}{}",
            o.name,
            s.server,
            if s.replid.is_empty() { "-" } else { &s.replid },
            s.offset,
            s.durable,
            s.keys,
            s.commands,
            s.full_syncs,
            s.reconnects,
            o.error
                .as_ref()
                .map(|e| format!("  ERROR: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(if failed {
        exit::RUNTIME_ERROR
    } else {
        exit::SUCCESS
    })
}

fn spawn_reporter(
    mode: ProgressMode,
    every: Duration,
    statuses: Vec<(String, Arc<Mutex<ShardStatus>>)>,
) -> tokio::task::JoinHandle<()> {
    let mode = mode.resolve();
    tokio::spawn(async move {
        if mode == ProgressMode::None {
            return;
        }
        let bars = (mode == ProgressMode::Bar).then(|| {
            let multi = indicatif::MultiProgress::new();
            let style =
                indicatif::ProgressStyle::with_template("{prefix:>10} {spinner} {wide_msg}").ok();
            let bars: Vec<indicatif::ProgressBar> = statuses
                .iter()
                .map(|(name, _)| {
                    let b = multi.add(indicatif::ProgressBar::new_spinner());
                    if let Some(st) = &style {
                        b.set_style(st.clone());
                    }
                    b.set_prefix(name.clone());
                    b
                })
                .collect();
            (multi, bars)
        });
        let every = if bars.is_some() {
            Duration::from_millis(500)
        } else {
            every
        };
        let mut last: Vec<(u64, u64)> = vec![(0, 0); statuses.len()];
        loop {
            tokio::time::sleep(every).await;
            for (i, (name, st)) in statuses.iter().enumerate() {
                let s = match st.lock() {
                    Ok(s) => s.clone(),
                    Err(_) => continue,
                };
                let rate = (s.rdb_received.saturating_sub(last[i].0)) as f64 / every.as_secs_f64();
                let cmd_rate = (s.commands.saturating_sub(last[i].1)) as f64 / every.as_secs_f64();
                last[i] = (s.rdb_received, s.commands);
                let snapshot = match s.rdb_size {
                    Some(total) if total > 0 => format!(
                        "{}/{} ({:.0}%, {}/s{})",
                        human(s.rdb_received),
                        human(total),
                        s.rdb_received as f64 * 100.0 / total as f64,
                        human(rate as u64),
                        if rate > 0.0 {
                            format!(
                                ", eta {:.0}s",
                                (total.saturating_sub(s.rdb_received)) as f64 / rate
                            )
                        } else {
                            String::new()
                        }
                    ),
                    _ => format!("{} ({}/s)", human(s.rdb_received), human(rate as u64)),
                };
                let lag = s.master_offset.map(|m| m.saturating_sub(s.durable));
                if let Some((_, bars)) = &bars {
                    bars[i].set_message(format!(
                        "{} | {} | snapshot {snapshot}, {} keys | offset {} durable {} lag {} | {cmd_rate:.0} cmd/s | reconnects {}",
                        s.server,
                        s.phase,
                        s.keys,
                        s.offset,
                        s.durable,
                        lag.map(human).unwrap_or_else(|| "?".into()),
                        s.reconnects
                    ));
                    bars[i].tick();
                    continue;
                }
                tracing::info!(
                    shard = %name,
                    server = %s.server,
                    phase = %s.phase,
                    snapshot = %snapshot,
                    keys = s.keys,
                    offset = s.offset,
                    durable = s.durable,
                    lag_bytes = lag,
                    commands_per_sec = format!("{cmd_rate:.0}"),
                    queued = %human(s.queued),
                    reconnects = s.reconnects,
                    "capture"
                );
            }
        }
    })
}

async fn from_rdb(
    args: &CaptureArgs,
    file: &std::path::Path,
    global: &GlobalArgs,
) -> anyhow::Result<u8> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let progress = Progress::new(
        global.progress,
        format!("{}", file.display()),
        "bytes",
        Some(size),
    );
    let writer = args.writer_options();
    let reader = args.reader_options();
    let file2 = file.to_path_buf();
    let journal = args.journal.clone();
    let summary = tokio::task::spawn_blocking(move || {
        plan::from_rdb(&file2, &journal, writer, reader, |n| progress.inc(n)).map(|s| (s, progress))
    })
    .await??;
    let (summary, progress) = summary;
    progress.finish();
    println!(
        "captured {} into {}: RDB {} , {} keys, {} function libraries, {} bytes, checksum {:?}",
        file.display(),
        args.journal.display(),
        summary.rdb_version,
        summary.keys,
        summary.functions,
        summary.bytes,
        summary.checksum
    );
    if !summary.late_aux.is_empty() {
        println!(
            "AUX fields after the keyspace not kept: {}",
            summary.late_aux.join(", ")
        );
    }
    Ok(exit::SUCCESS)
}
