//! A flush of one shard of a multi-shard journal, applied to the target as it happened on the
//! source: only the keys of that shard's slots are deleted.
//!
//! A source cluster's `FLUSHALL` reaches each master on its own (clients send it to every
//! master), so each shard's stream holds its own, at its own position. Sent as it is, shard A's
//! flush would empty the whole target — including what shards B and C replayed after their own
//! flush, since shards replay in parallel, each at its own pace: keys lost without a word. So a
//! `FLUSHALL`/`FLUSHDB` of a shard whose source slot ranges the journal records
//! ([`crate::journal::ShardInfo::slots`]) deletes just the keys of those slots: on a cluster
//! target `CLUSTER GETKEYSINSLOT` on each slot's owner, 1000 keys at a time, then `UNLINK`; on
//! a standalone target a `SCAN` of the flushed database (every database with keys, for
//! `FLUSHALL`), keeping the keys whose slot is the shard's. Replay's own markers
//! (`shake-replay:` keys) are kept. Deleting is idempotent, so a resend after a broken
//! connection does it again safely.

use std::sync::Arc;

use crate::net::slot::key_slot;
use crate::resp::Frame;

use super::super::error::Error;
use super::super::op::{Op, Route};
use super::super::partition::is_marker_key;
use super::{Failure, Writer};

/// Keys asked for (and deleted) per request.
const PER_REQUEST: usize = 1000;

/// The flush in `ops` (a barrier, alone in its batch) with its database, when it is one of a
/// shard with recorded slots.
pub(super) fn of(ops: &[Op]) -> Option<(u32, Flush)> {
    let [op] = ops else { return None };
    let cmd = op.unit.cmds().iter().find(|c| c.flush_slots.is_some())?;
    Some((
        op.db,
        Flush {
            all_dbs: cmd.argv[0].eq_ignore_ascii_case(b"FLUSHALL"),
            ranges: cmd.flush_slots.clone()?,
        },
    ))
}

/// What to delete.
pub(super) struct Flush {
    /// `FLUSHALL` (every database) rather than `FLUSHDB`.
    all_dbs: bool,
    /// The shard's source slot ranges, inclusive.
    ranges: Arc<Vec<(u16, u16)>>,
}

impl Writer {
    /// Deletes the keys of `flush`'s slots in database `db` (every database for `FLUSHALL` on
    /// a standalone target), replay's markers excepted.
    pub(super) async fn flush_slots(
        &mut self,
        db: u32,
        flush: Flush,
    ) -> std::result::Result<(), Failure> {
        let mut deleted = 0u64;
        if self.map.is_cluster() {
            for &(a, b) in flush.ranges.iter() {
                for slot in a..=b.min(16383) {
                    deleted += self.flush_cluster_slot(slot).await?;
                }
            }
        } else {
            let mut mine = vec![false; 16384];
            for &(a, b) in flush.ranges.iter() {
                for s in a..=b.min(16383) {
                    mine[usize::from(s)] = true;
                }
            }
            let dbs = if flush.all_dbs {
                self.dbs_with_keys().await?
            } else {
                vec![db]
            };
            for db in dbs {
                deleted += self.flush_scanned(db, &mine).await?;
            }
        }
        tracing::info!(shard = %self.shard, deleted, "flush of one source shard: deleted the keys of its slots");
        Ok(())
    }

    /// Deletes the keys of `slot` on its owner; how many.
    async fn flush_cluster_slot(&mut self, slot: u16) -> std::result::Result<u64, Failure> {
        let addr = self.map.node(Route::Slot(slot));
        let (slot_s, per) = (slot.to_string(), PER_REQUEST.to_string());
        let mut deleted = 0;
        loop {
            let f = self
                .request_at(&addr, 0, &["CLUSTER", "GETKEYSINSLOT", &slot_s, &per])
                .await?;
            let keys = keys_of(&addr, "CLUSTER GETKEYSINSLOT", f)?;
            let listed = keys.len();
            let doomed: Vec<Vec<u8>> = keys.into_iter().filter(|k| !is_marker_key(k)).collect();
            if doomed.is_empty() {
                return Ok(deleted);
            }
            deleted += self.unlink(&addr, 0, doomed).await?;
            if listed < PER_REQUEST {
                return Ok(deleted);
            }
        }
    }

    /// Deletes the keys of database `db` whose slot is marked in `mine` (standalone target);
    /// how many.
    async fn flush_scanned(&mut self, db: u32, mine: &[bool]) -> std::result::Result<u64, Failure> {
        let addr = self.map.node(Route::Any);
        let per = PER_REQUEST.to_string();
        let mut cursor = b"0".to_vec();
        let mut deleted = 0;
        loop {
            let f = self
                .request_at(
                    &addr,
                    db,
                    &[b"SCAN".as_slice(), &cursor, b"COUNT", per.as_bytes()],
                )
                .await?;
            let Frame::Array(mut parts) = f else {
                return Err(unexpected(&addr, "SCAN", &f));
            };
            if parts.len() != 2 {
                return Err(unexpected(&addr, "SCAN", &Frame::Array(parts)));
            }
            let keys = keys_of(&addr, "SCAN", parts.pop().unwrap_or(Frame::Null))?;
            cursor = parts
                .pop()
                .and_then(|c| c.as_bytes().map(<[u8]>::to_vec))
                .unwrap_or_else(|| b"0".to_vec());
            let doomed: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| mine[usize::from(key_slot(k))] && !is_marker_key(k))
                .collect();
            if !doomed.is_empty() {
                deleted += self.unlink(&addr, db, doomed).await?;
            }
            if cursor == b"0" {
                return Ok(deleted);
            }
        }
    }

    /// `UNLINK keys…` on `addr` in `db`; how many were deleted.
    async fn unlink(
        &mut self,
        addr: &str,
        db: u32,
        keys: Vec<Vec<u8>>,
    ) -> std::result::Result<u64, Failure> {
        let mut argv = Vec::with_capacity(keys.len() + 1);
        argv.push(b"UNLINK".to_vec());
        argv.extend(keys);
        match self.request_at(addr, db, &argv).await? {
            Frame::Integer(n) => Ok(n.max(0) as u64),
            other => Err(unexpected(addr, "UNLINK", &other)),
        }
    }

    /// The databases of the (standalone) target that hold keys (`INFO keyspace`).
    async fn dbs_with_keys(&mut self) -> std::result::Result<Vec<u32>, Failure> {
        let addr = self.map.node(Route::Any);
        let f = self.request_at(&addr, 0, &["INFO", "keyspace"]).await?;
        let text = String::from_utf8_lossy(f.as_bytes().unwrap_or_default()).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("db")?.split_once(':')?.0.parse().ok())
            .collect())
    }
}

/// The keys of an array reply, or the error the reply is.
fn keys_of(addr: &str, what: &str, f: Frame) -> std::result::Result<Vec<Vec<u8>>, Failure> {
    match f {
        Frame::Array(items) => Ok(items
            .into_iter()
            .filter_map(|k| k.as_bytes().map(<[u8]>::to_vec))
            .collect()),
        other => Err(unexpected(addr, what, &other)),
    }
}

/// A reply that is not what `what` answers: an error reply is a connection failure (the lane
/// reconnects, refreshes the topology and does the flush again), anything else fatal.
fn unexpected(addr: &str, what: &str, f: &Frame) -> Failure {
    let e = Error::Protocol {
        addr: addr.to_string(),
        what: format!("deleting a flushed shard's keys: {what} answered {f:?}"),
    };
    match f {
        Frame::Error(_) => Failure::Connection(e),
        _ => Failure::Fatal(e),
    }
}
