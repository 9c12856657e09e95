//! Counters shared by the shard tasks, errors by kind, and the final summary. Every error reply
//! is counted; the first ones are logged in full (command, key, journal position, message) so
//! nothing is dropped silently, and the summary lists the counts by kind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::journal::Position;

use super::error::printable_key;

/// How many failures are logged one by one before only counting.
const LOGGED_FAILURES: u64 = 200;

/// Counters of one replay (all shards).
#[derive(Debug, Default)]
pub struct Stats {
    /// Snapshot keys written.
    pub keys: AtomicU64,
    /// Snapshot keys written through RESTORE.
    pub restored: AtomicU64,
    /// Snapshot keys written as commands (the RDB engine's rewrite).
    pub rewritten: AtomicU64,
    /// Snapshot strings without TTL written with a plain `SET` (folded into `MSET`s) rather
    /// than RESTORE: same value, less work for the target.
    pub as_set: AtomicU64,
    /// Snapshot keys (among `restored`) whose value was streamed from the journal rather than
    /// held whole ([`super::bigkey`]).
    pub streamed: AtomicU64,
    /// Snapshot keys (among `rewritten`) too large to hold, rebuilt from a spill file under a
    /// temporary name ([`super::rebuild`]).
    pub rebuilt: AtomicU64,
    /// Snapshot keys kept because they existed (`--on-conflict skip`).
    pub skipped: AtomicU64,
    /// Snapshot keys that existed on the target and were replaced (`--on-conflict replace`,
    /// known for those sent by RESTORE without `REPLACE`: see [`super::op::OnBusy::Replace`]).
    pub replaced: AtomicU64,
    /// Snapshot keys not written because their expiry had passed.
    pub expired: AtomicU64,
    /// Function libraries loaded.
    pub functions: AtomicU64,
    /// Rewritten keys the commands could not reproduce exactly (each logged with its key).
    pub lossy: AtomicU64,
    /// Module AUX records (not replayable: modules rebuild them).
    pub module_aux: AtomicU64,
    /// Keys that moved between source masters while capture ran (a `RESTORE-ASKING` in a
    /// multi-shard journal): their writes before the move are in one shard's stream, those
    /// after it in another's, replayed without order between them, so the target may hold an
    /// older value of such a key, or lack it. Each is warned about with its key.
    pub migrated: AtomicU64,
    /// Stream records (commands and transactions) applied.
    pub records: AtomicU64,
    /// Commands sent (snapshot and stream).
    pub commands: AtomicU64,
    /// Bytes of commands sent, roughly.
    pub bytes: AtomicU64,
    /// MOVED / ASK followed.
    pub redirects: AtomicU64,
    /// Reconnections after a failure.
    pub reconnects: AtomicU64,
    /// Commands (or keys) that failed.
    pub failed: AtomicU64,
    /// Commands sent that delete or move replay markers (`FLUSHALL`, `FLUSHDB`, `SWAPDB`),
    /// by any shard: a marker missing after one of them is no sign of a lost write
    /// ([`super::writer::Writer`] checks what the target acknowledged only within one count).
    pub markers_dropped: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    shards: Mutex<BTreeMap<String, ShardProgress>>,
}

/// Where one shard is, for progress lines.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ShardProgress {
    /// In the snapshot (true) or the stream.
    pub snapshot: bool,
    /// Replication offset of the last record the target acknowledged.
    pub acked_offset: u64,
    /// Replication offset of the journal's end as far as replay knows it (the last record when
    /// it started, then what the follower read).
    pub read_offset: u64,
}

impl ShardProgress {
    /// Bytes of replication stream read but not yet acknowledged by the target.
    pub fn lag(&self) -> u64 {
        self.read_offset.saturating_sub(self.acked_offset)
    }
}

/// A counter snapshot for the summary and the tests.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// See [`Stats::keys`].
    pub keys: u64,
    /// See [`Stats::restored`].
    pub restored: u64,
    /// See [`Stats::rewritten`].
    pub rewritten: u64,
    /// See [`Stats::as_set`].
    pub as_set: u64,
    /// See [`Stats::streamed`].
    pub streamed: u64,
    /// See [`Stats::rebuilt`].
    pub rebuilt: u64,
    /// See [`Stats::skipped`].
    pub skipped: u64,
    /// See [`Stats::replaced`].
    pub replaced: u64,
    /// See [`Stats::expired`].
    pub expired: u64,
    /// See [`Stats::functions`].
    pub functions: u64,
    /// See [`Stats::lossy`].
    pub lossy: u64,
    /// See [`Stats::module_aux`].
    pub module_aux: u64,
    /// See [`Stats::migrated`].
    pub migrated: u64,
    /// See [`Stats::records`].
    pub records: u64,
    /// See [`Stats::commands`].
    pub commands: u64,
    /// See [`Stats::bytes`].
    pub bytes: u64,
    /// See [`Stats::redirects`].
    pub redirects: u64,
    /// See [`Stats::reconnects`].
    pub reconnects: u64,
    /// See [`Stats::failed`].
    pub failed: u64,
    /// Failures by kind (the error reply's first word, or `impossible`, `crossslot` …).
    pub failures: BTreeMap<String, u64>,
}

impl Stats {
    /// Records a failed command or key. `kind` groups the summary; the rest goes to the log.
    #[allow(clippy::too_many_arguments)]
    pub fn fail(
        &self,
        shard: &str,
        addr: &str,
        kind: &str,
        command: &str,
        key: Option<&[u8]>,
        position: Position,
        message: &str,
    ) {
        let n = self.failed.fetch_add(1, Relaxed);
        *self
            .failures
            .lock()
            .unwrap()
            .entry(kind.to_string())
            .or_default() += 1;
        if n < LOGGED_FAILURES {
            tracing::error!(
                shard,
                target = addr,
                %position,
                command,
                key = %key.map(printable_key).unwrap_or_else(|| "-".into()),
                "{message}"
            );
        } else if n == LOGGED_FAILURES {
            tracing::error!("more than {LOGGED_FAILURES} failures: only counting from now on");
        }
    }

    /// Records what the journal reader of `shard` reached.
    pub fn read_to(&self, shard: &str, offset: u64) {
        let mut m = self.shards.lock().unwrap();
        let p = m.entry(shard.to_string()).or_default();
        p.read_offset = p.read_offset.max(offset);
    }

    /// Records what the target acknowledged for `shard`.
    pub fn acked_to(&self, shard: &str, offset: u64, snapshot: bool) {
        let mut m = self.shards.lock().unwrap();
        let p = m.entry(shard.to_string()).or_default();
        p.acked_offset = offset;
        p.snapshot = snapshot;
    }

    /// Per-shard progress now.
    pub fn shards(&self) -> BTreeMap<String, ShardProgress> {
        self.shards.lock().unwrap().clone()
    }

    /// The counters now.
    pub fn summary(&self) -> Summary {
        Summary {
            keys: self.keys.load(Relaxed),
            restored: self.restored.load(Relaxed),
            rewritten: self.rewritten.load(Relaxed),
            as_set: self.as_set.load(Relaxed),
            streamed: self.streamed.load(Relaxed),
            rebuilt: self.rebuilt.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
            expired: self.expired.load(Relaxed),
            functions: self.functions.load(Relaxed),
            lossy: self.lossy.load(Relaxed),
            module_aux: self.module_aux.load(Relaxed),
            migrated: self.migrated.load(Relaxed),
            records: self.records.load(Relaxed),
            commands: self.commands.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            redirects: self.redirects.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            failed: self.failed.load(Relaxed),
            failures: self.failures.lock().unwrap().clone(),
        }
    }
}
