//! `shake compare`: key-level differences between a source (URL or journal directory) and a
//! target.

use super::endpoint::{SourceArgs, TargetArgs};
use super::{GlobalArgs, ReportFormat};
use crate::compare::{self, CompareOptions, Mode, Source};
use crate::exit;
use anyhow::{Context, bail};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Existence, type and TTL of every key (cheap: two commands per key and side).
    Quick,
    /// Quick, plus values: DUMP bytes, decoded values, or windows for keys above
    /// --chunk-threshold.
    Full,
}

/// Flags of `shake compare`.
#[derive(Debug, Args)]
#[command(mut_arg("source", |a| a.value_name("URL|DIR").help(
    "Source: a URL `redis://[user[:password]@]host[:port]` (`rediss://` for TLS; any node of a \
     cluster), or a journal directory, whose state is rebuilt on a scratch redis-server"
)))]
pub struct CompareArgs {
    /// The source: a URL (see below), or a journal directory — its end state (or the state at
    /// --until-offset) is rebuilt on a scratch redis-server started for the comparison.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The target.
    #[command(flatten)]
    pub target: TargetArgs,
    /// quick: existence, type, TTL; full: values too.
    #[arg(long, value_enum, default_value_t = ModeArg::Full)]
    pub mode: ModeArg,
    /// TTLs closer than this are equal; a key missing on the target whose source TTL is within
    /// it is expiring, not missing.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::units::parse_duration)]
    pub ttl_tolerance: Duration,
    /// Keys whose size (MEMORY USAGE on the source) exceeds this are compared window by window
    /// (HSCAN/SSCAN/ZSCAN/LRANGE/XRANGE/GETRANGE) instead of by DUMP.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = crate::units::parse_size)]
    pub chunk_threshold: u64,
    /// Elements per windowed read (strings: N × 4 KiB per GETRANGE).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub window: usize,
    /// Compare a random sample of N source keys instead of all (extras are not looked for).
    #[arg(long, value_name = "N")]
    pub sample: Option<u64>,
    /// Only this database (repeatable; default every database).
    #[arg(long, value_name = "N")]
    pub db: Vec<u32>,
    /// Only keys matching this Redis glob (SCAN MATCH), on both sides.
    #[arg(long, value_name = "GLOB")]
    pub keys: Option<String>,
    /// Per-key details printed per bucket.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub show_diffs: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Journal source only: the state after the command at this replication offset.
    #[arg(long, value_name = "N")]
    pub until_offset: Option<u64>,
    /// Journal source only: the redis-server binary to replay the journal into (a path, or a
    /// name on PATH). Use the journal source's version or newer.
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub scratch_server: PathBuf,
}

/// Runs `shake compare`.
pub async fn run(args: CompareArgs, global: &GlobalArgs) -> anyhow::Result<u8> {
    let (target, mut target_connect) = args.target.resolve()?;
    target_connect.client_name = "shake-compare".into();
    let no_db_path = |db: u32, side: &str| {
        if db != 0 {
            bail!(
                "the {side} URL selects db {db}: compare reads the same databases on both sides, chosen with --db N; drop /{db} from the URL"
            );
        }
        Ok(())
    };
    no_db_path(target.db, "target")?;
    let as_dir = Path::new(&args.source.source);
    let source = if as_dir.is_dir() {
        let s = &args.source;
        if s.source_password_file.is_some()
            || s.source_tls_ca.is_some()
            || s.source_tls_cert.is_some()
            || s.source_tls_insecure
        {
            bail!(
                "--source {} is a journal directory: the --source-password-file/--source-tls-* flags apply to a URL source only",
                as_dir.display()
            );
        }
        Source::Journal {
            dir: as_dir.to_path_buf(),
            until_offset: args.until_offset,
            scratch_server: args.scratch_server.clone(),
        }
    } else {
        if args.until_offset.is_some() {
            bail!("--until-offset applies to a journal source (a directory), not to a URL");
        }
        if args.source.source.starts_with('/') || args.source.source.starts_with('.') {
            bail!("--source {}: no such journal directory", args.source.source);
        }
        let (endpoint, mut connect) = args
            .source
            .resolve()
            .context("--source is neither a journal directory nor a valid URL")?;
        connect.client_name = "shake-compare".into();
        no_db_path(endpoint.db, "source")?;
        Source::Live { endpoint, connect }
    };
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    if args.sample == Some(0) {
        bail!("--sample must be at least 1");
    }
    let mut opts = CompareOptions::new(source, target);
    opts.target_connect = target_connect;
    opts.mode = match args.mode {
        ModeArg::Quick => Mode::Quick,
        ModeArg::Full => Mode::Full,
    };
    opts.ttl_tolerance = args.ttl_tolerance;
    opts.chunk_threshold = args.chunk_threshold;
    opts.window = args.window;
    opts.sample = args.sample;
    opts.dbs = args.db.clone();
    opts.keys = args.keys.clone();
    opts.show_diffs = args.show_diffs;
    opts.progress = global.progress;

    // SIGINT/SIGTERM: drop the comparison (which kills the scratch server) and exit 130.
    let interrupted = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    };
    let report = tokio::select! {
        r = compare::run(opts) => r?,
        _ = interrupted => {
            eprintln!("compare interrupted: no report");
            return Ok(exit::INTERRUPTED);
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json())?;
            writeln!(out)?;
        }
        ReportFormat::Table => report.write_table(&mut out)?,
    }
    out.flush()?;
    Ok(if report.differences() > 0 {
        exit::CHECK_FAILED
    } else {
        exit::SUCCESS
    })
}
