//! `shake compare`: key-level differences between a source — a live server or cluster, or a
//! journal — and a destination, so a migration can be verified instead of trusted.
//!
//! # Why
//! A replay reports what it sent and what the target acknowledged; it cannot see keys the
//! target already held, keys written there by someone else, TTLs that drifted, or values an old
//! target stored differently. Compare reads both sides and puts every key it finds different in
//! one bucket: `missing`, `extra`, `type`, `value`, `ttl` (see [`Report`]). With a journal
//! directory as the source it answers "does the destination hold what this journal says?":
//! the journal's end state is rebuilt exactly on a throwaway local server ([`scratch`]) by the
//! same replay code, then compared like a live source.
//!
//! # Flow
//! One task per source master scans its keys (`SCAN … COUNT 1000`, or draws a random sample),
//! checks each batch with one `TYPE`+`PTTL` pipeline per side ([`quick`]), then in full mode
//! the values ([`value`]: lengths, `DUMP` bytes, decoded values, or windows for big keys).
//! Every difference is checked a second time before it is reported, so a key that expired or
//! changed between two reads is not called a difference. One task per target master looks
//! for extras (pipelined `EXISTS` on the source). Reads on a cluster go to the slot's owner;
//! `MOVED`/`ASK` are followed ([`side`]).
//!
//! Compare is meant for a quiesced source or a journal: a live source that keeps changing
//! produces differences that are real at the moment they were read.
//!
//! # Layout
//!
//! | file | concept |
//! |------|---------|
//! | [`error`] | [`Error`]: names side, node address, key and db — never a password |
//! | [`side`] | one side: topology, RDB version, per-task connections, pipelined batches routed by slot, MOVED/ASK |
//! | [`keyspace`] | databases per node, `SCAN` batches, random samples |
//! | [`quick`] | `TYPE`/`PTTL` reads and the existence/type/TTL verdict |
//! | [`value`] | full mode: lengths, DUMP payloads, which path a key takes |
//! | [`logical`] | equality of decoded values whatever their encoding, and where they differ |
//! | [`window`] | big keys compared window by window (`GETRANGE`/`LRANGE`/`HSCAN`/`SSCAN`/`ZSCAN`/`XRANGE`) |
//! | `engine` | the tasks, the re-check, extras |
//! | [`report`] | buckets, counts, per-key details, table and JSON |
//! | [`scratch`] | the throwaway `redis-server` a journal source is replayed into |
//!
//! The user-facing description is `docs/compare.md`.

mod engine;
pub mod error;
pub mod keyspace;
pub mod logical;
pub mod quick;
pub mod report;
pub mod scratch;
pub mod side;
pub mod value;
pub mod window;

pub use error::{Error, Result};
pub use report::{Bucket, Diff, Mode, Report};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::net::{ConnectOptions, Endpoint};
use crate::progress::ProgressMode;

use side::SideInfo;

/// Keys per SCAN call and per checked batch: big enough that one round trip carries a useful
/// pipeline, small enough that a batch's replies stay small.
pub const SCAN_COUNT: usize = 1000;

/// What is compared against the target.
#[derive(Debug, Clone)]
pub enum Source {
    /// A live server or cluster.
    Live {
        /// Its endpoint (any node of a cluster).
        endpoint: Endpoint,
        /// TLS and timeouts.
        connect: ConnectOptions,
    },
    /// A journal directory, replayed into a scratch server first.
    Journal {
        /// The journal directory.
        dir: PathBuf,
        /// Stop after the command at this replication offset (the state at that point).
        until_offset: Option<u64>,
        /// The `redis-server` binary (a path, or a name looked up on PATH).
        scratch_server: PathBuf,
    },
}

/// Everything a comparison needs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The source.
    pub source: Source,
    /// The target endpoint (any node of a cluster).
    pub target: Endpoint,
    /// How to connect to the target.
    pub target_connect: ConnectOptions,
    /// Quick (existence, type, TTL) or full (values too).
    pub mode: Mode,
    /// TTLs this close are equal; a key missing on the target whose source TTL is at most this
    /// is expiring, not missing.
    pub ttl_tolerance: Duration,
    /// Keys whose size (`MEMORY USAGE`) exceeds this many bytes are compared window by window
    /// instead of by DUMP.
    pub chunk_threshold: u64,
    /// Elements per windowed read.
    pub window: usize,
    /// Compare a random sample of this many source keys (extras are not looked for).
    pub sample: Option<u64>,
    /// Only these databases (all when empty).
    pub dbs: Vec<u32>,
    /// Only keys matching this Redis glob (`SCAN MATCH`).
    pub keys: Option<String>,
    /// Per-key details kept per bucket.
    pub show_diffs: usize,
    /// Progress display.
    pub progress: ProgressMode,
}

impl CompareOptions {
    /// The defaults of the CLI for `source` and `target`.
    pub fn new(source: Source, target: Endpoint) -> Self {
        CompareOptions {
            source,
            target,
            target_connect: ConnectOptions {
                client_name: "shake-compare".into(),
                ..ConnectOptions::default()
            },
            mode: Mode::Full,
            ttl_tolerance: Duration::from_secs(2),
            chunk_threshold: 8 << 20,
            window: 1000,
            sample: None,
            dbs: Vec::new(),
            keys: None,
            show_diffs: 10,
            progress: ProgressMode::Auto,
        }
    }
}

/// Compares the source with the target and returns what differs. Differences are not errors;
/// an error means the comparison could not finish.
pub async fn run(opts: CompareOptions) -> Result<Report> {
    let started = Instant::now();
    let tgt = SideInfo::discover("target", opts.target.clone(), opts.target_connect.clone());
    let mut report = match &opts.source {
        Source::Live { endpoint, connect } => {
            let src = SideInfo::discover("source", endpoint.clone(), connect.clone()).await?;
            let tgt = tgt.await?;
            check_dbs(&opts, &src, &tgt)?;
            let report = Report::new(
                opts.mode,
                endpoint.to_string(),
                opts.target.to_string(),
                opts.show_diffs,
            );
            engine::compare(opts.clone(), src, tgt, report).await?
        }
        Source::Journal {
            dir,
            until_offset,
            scratch_server,
        } => {
            let tgt = tgt.await?;
            // Dropped at the end of this block, on success and on every error: killed, removed.
            let scratch = scratch::Scratch::start(scratch_server).await?;
            scratch.load(dir, *until_offset).await?;
            let connect = ConnectOptions {
                client_name: "shake-compare".into(),
                ..ConnectOptions::default()
            };
            let src = SideInfo::discover("source", scratch.endpoint().clone(), connect).await?;
            check_dbs(&opts, &src, &tgt)?;
            let report = Report::new(
                opts.mode,
                format!("journal {}", dir.display()),
                opts.target.to_string(),
                opts.show_diffs,
            );
            let r = engine::compare(opts.clone(), src, tgt, report).await;
            drop(scratch);
            r?
        }
    };
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn check_dbs(opts: &CompareOptions, src: &SideInfo, tgt: &SideInfo) -> Result<()> {
    if src.is_cluster() && tgt.is_cluster() && opts.dbs.iter().any(|&d| d != 0) {
        return Err(Error::Invalid(
            "--db other than 0 asked, but both sides are clusters (only db 0 exists there)".into(),
        ));
    }
    Ok(())
}
