//! The command line: clap definitions, one file per subcommand, each turned into a validated
//! configuration and run. `anyhow` lives here and in `main`, nowhere below.
//!
//! The names follow `docs/cli.md` (and the design's `cli.md`): scripts and runbooks depend on
//! them. A subcommand appears here only when it works.

pub mod capture;
pub mod compare;
pub mod completions;
pub mod demo;
mod endpoint;
pub mod export;
pub mod filter;
pub mod inspect;
pub mod man;
pub mod probe;
pub mod receive;
pub mod replay;
pub mod ship;
pub mod verify;

pub use endpoint::{SourceArgs, TargetArgs};

use crate::logging::LogFormat;
use crate::progress::ProgressMode;
use clap::{Args, Parser, Subcommand};

/// shake — move Redis data across networks that cannot see each other.
///
/// Capture a source as a replica into a durable journal, carry the journal across an air gap,
/// audit it offline, and replay it onto a destination. Exit codes: 0 success, 1 runtime error,
/// 2 usage error, 3 a data check found problems, 130 interrupted after a clean stop.
#[derive(Debug, Parser)]
#[command(name = "shake", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Flags every subcommand accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Global flags.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Progress display: bars on a terminal, periodic log lines otherwise (auto).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub progress: ProgressMode,
}

impl GlobalArgs {
    /// `-v` count minus `-q` count.
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(10) as i8 - self.quiet.min(10) as i8
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pre-flight check of a source: version, RDB version, role, topology, backlog, output-buffer
    /// limit, PSYNC permission, and warnings where a capture is likely to fail.
    Probe(probe::ProbeArgs),
    /// Audit a journal offline: every frame checksum, every sealed segment's SHA-256 against
    /// the manifest, continuity of positions, and a per-shard summary. Exit 3 on problems.
    Verify(verify::VerifyArgs),
    /// Act as a replica of every master of the source (or read an RDB file) and write the
    /// snapshot and the live command stream into a journal; resumes an existing journal with a
    /// partial resync. SIGINT/SIGTERM seal the journal and exit 0.
    Capture(capture::CaptureArgs),
    /// Audit an RDB file or a journal offline: statistics per database and type (default),
    /// every key of an RDB with its decoded value (`--format jsonl`), a journal's stream commands
    /// (`--commands`) and biggest keys (`--big-keys N`).
    Inspect(inspect::InspectArgs),
    /// Write a new, valid journal holding only the selected keys, databases, types and
    /// commands, positions preserved.
    Filter(filter::FilterArgs),
    /// Export a journal as a RESP command stream (`redis-cli --pipe`) or as an RDB file of its
    /// snapshot.
    Export(export::ExportArgs),
    /// Apply a journal to a standalone server or a cluster: each shard's last complete snapshot
    /// (RESTORE or commands), then its commands in order, pipelined with every reply checked;
    /// resumable from a checkpoint; --follow keeps applying what the journal gains. Exit 1 if
    /// any command failed.
    Replay(replay::ReplayArgs),
    /// The whole chain on throwaway local servers, in about a minute: populate every data type,
    /// capture while a writer writes, verify, inspect, filter, replay, compare, and a verdict.
    /// `--cluster` uses 3-master clusters. Needs `redis-server` (PATH or --redis-server).
    Demo(demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), generated from
    /// these very definitions.
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one page per subcommand into a directory (`--out`).
    Man(man::ManArgs),
    /// Copy the sealed segments not shipped before (and the manifests) into a new shipment
    /// folder on removable media, with a checksum list and a hash-chain link to the previous
    /// shipment; remember what was sent. --include-active seals the active segments first.
    Ship(ship::ShipArgs),
    /// Verify a shipment (or every shipment in a media directory, in order) and add it to a
    /// journal on the far side; refuses gaps, repeats and damaged files, naming them, and adds
    /// nothing of a refused shipment. Exit 3 when a shipment was refused.
    Receive(receive::ReceiveArgs),
    /// Compare a source (a live server or cluster, or a journal directory, replayed into a
    /// scratch redis-server) with a destination, key by key: missing, extra, type, value and TTL
    /// differences, with per-key detail. Exit 3 if any difference, 0 if none.
    Compare(compare::CompareArgs),
}

/// `--format` for commands that print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ReportFormat {
    /// A readable table.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// Binds `--metrics-addr` (capture and replay serve their Prometheus page there).
async fn metrics_listener(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
    tracing::info!(%addr, "serving Prometheus metrics");
    Ok(listener)
}

/// Runs the parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Probe(args) => probe::run(args, &cli.global).await,
        Command::Verify(args) => verify::run(args, &cli.global).await,
        Command::Capture(args) => capture::run(args, &cli.global).await,
        Command::Inspect(args) => inspect::run(args, &cli.global).await,
        Command::Filter(args) => filter::run(args, &cli.global).await,
        Command::Export(args) => export::run(args, &cli.global).await,
        Command::Replay(args) => replay::run(args, &cli.global).await,
        Command::Demo(args) => demo::run(args, &cli.global).await,
        Command::Completions(args) => completions::run(args, &cli.global).await,
        Command::Man(args) => man::run(args, &cli.global).await,
        Command::Ship(args) => ship::run(args, &cli.global).await,
        Command::Receive(args) => receive::run(args, &cli.global).await,
        Command::Compare(args) => compare::run(args, &cli.global).await,
    }
}
