//! What a replay is asked to do: the target, the journal, the policies. Filled by the CLI
//! (`src/cli/replay.rs`) or by a library user.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::net::{ConnectOptions, Endpoint};

/// `--restore`: how snapshot keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// RESTORE when the target accepts the payload (unchanged or relabelled), commands
    /// otherwise and for payloads above the target's `proto-max-bulk-len`.
    #[default]
    Auto,
    /// Always RESTORE (relabelling when needed); a payload the target cannot take is a per-key
    /// error rather than a silent rewrite.
    Always,
    /// Always rebuild keys with plain commands (module values, which have none, are errors).
    Never,
}

/// `--on-conflict`: what happens to a snapshot key that already exists on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Overwrite it (RESTORE … REPLACE, or DEL then write): replaying twice gives the same data.
    #[default]
    Replace,
    /// Keep the target's key and count it as skipped.
    Skip,
    /// Stop the replay with an error naming the key.
    Error,
}

/// Where the replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Until {
    /// Apply nothing whose replication offset is above this.
    pub offset: Option<u64>,
    /// Apply no command captured after this time (ms since the Unix epoch).
    pub time_ms: Option<u64>,
}

impl Until {
    /// Whether a record at `offset` captured at `time_ms` is beyond the stop point.
    pub fn beyond(&self, offset: u64, time_ms: Option<u64>) -> bool {
        self.offset.is_some_and(|o| offset > o)
            || matches!((self.time_ms, time_ms), (Some(limit), Some(t)) if t > limit)
    }
}

/// Everything a replay needs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The journal directory.
    pub journal_dir: PathBuf,
    /// The target (any node of a cluster, or a standalone server).
    pub target: Endpoint,
    /// How to connect to it (TLS, timeouts).
    pub connect: ConnectOptions,
    /// Only these shards (directory names); all when empty.
    pub shards: Vec<String>,
    /// RESTORE or commands.
    pub restore: RestoreMode,
    /// Snapshot key conflicts.
    pub on_conflict: ConflictPolicy,
    /// Source db → target db; dbs not listed are kept.
    pub map_db: BTreeMap<u32, u32>,
    /// Commands per batch on each connection.
    pub pipeline: usize,
    /// Connections per shard and target node: the stream is partitioned by key slot over
    /// them (order per key kept, cross-lane commands are barriers), see [`super::partition`].
    pub connections: usize,
    /// Parse, route and count without writing.
    pub dry_run: bool,
    /// Send runs of plain `SET`s on one connection as one `MSET` ([`super::op::Op::fold`]).
    pub fold_sets: bool,
    /// Commands per second across all shards (0: unlimited).
    pub max_ops: u64,
    /// Bytes of commands per second across all shards (0: unlimited).
    pub max_bytes: u64,
    /// Point-in-time stop.
    pub until: Until,
    /// The checkpoint file (`None`: no checkpoint).
    pub checkpoint: Option<PathBuf>,
    /// Keep tailing the journal after catching up.
    pub follow: bool,
    /// How often the checkpoint file is rewritten.
    pub checkpoint_interval: Duration,
    /// Consecutive failed reconnections before giving up.
    pub max_retries: u32,
    /// Snapshot values longer than this (encoded) that go by RESTORE are streamed from the
    /// journal instead of held whole ([`super::bigkey`]).
    pub stream_above: u64,
    /// Where large values that go by commands are spilled ([`super::spill`]); `None`: the
    /// checkpoint's folder ([`ReplayOptions::spill_dir`]).
    pub spill: Option<PathBuf>,
    /// On a cluster target with replicas, count a round of slot transactions as acknowledged
    /// only once each master's replicas have it ([`super::writer::Writer::wait_replicas`]).
    pub wait_replicas: bool,
}

impl ReplayOptions {
    /// Options with the defaults of the CLI for `journal_dir` and `target`.
    pub fn new(journal_dir: PathBuf, target: Endpoint) -> Self {
        ReplayOptions {
            journal_dir,
            target,
            connect: ConnectOptions {
                client_name: "shake-replay".into(),
                ..ConnectOptions::default()
            },
            shards: Vec::new(),
            restore: RestoreMode::Auto,
            on_conflict: ConflictPolicy::Replace,
            map_db: BTreeMap::new(),
            pipeline: 512,
            connections: 4,
            dry_run: false,
            fold_sets: true,
            max_ops: 0,
            max_bytes: 0,
            until: Until::default(),
            checkpoint: None,
            follow: false,
            checkpoint_interval: Duration::from_secs(1),
            max_retries: 30,
            stream_above: super::bigkey::STREAM_ABOVE,
            spill: None,
            wait_replicas: true,
        }
    }

    /// The target db of source db `db`.
    pub fn map(&self, db: u32) -> u32 {
        self.map_db.get(&db).copied().unwrap_or(db)
    }

    /// The folder large values are spilled to: `--spill-dir`, else the checkpoint file's
    /// folder, else the one the default checkpoint would be in (the replay's state folder,
    /// beside the journal, on disk — never `/tmp`, which can be a RAM filesystem).
    pub fn spill_dir(&self) -> PathBuf {
        if let Some(d) = &self.spill {
            return d.clone();
        }
        let file = self
            .checkpoint
            .clone()
            .unwrap_or_else(|| Self::default_checkpoint(&self.journal_dir, &self.target));
        match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The default checkpoint file: `<journal dir>.replay-state/<host_port>.json`, a sibling of
    /// the journal (never inside it: the journal is an audited artifact, copied read-only).
    pub fn default_checkpoint(journal_dir: &std::path::Path, target: &Endpoint) -> PathBuf {
        let dir = journal_dir.to_path_buf();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "journal".into());
        let parent = dir
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let host: String = target
            .host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        parent
            .join(format!("{name}.replay-state"))
            .join(format!("{host}_{}.json", target.port))
    }
}
