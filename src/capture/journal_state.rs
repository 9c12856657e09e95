//! What an existing shard says about where a capture resumes: the replication id and offset,
//! whether the last epoch's snapshot is complete, and the db in force at that point.

use crate::capture::replica::Resume;
use crate::capture::stream::db_after;
use crate::journal::{self, Record, RecoveryMode, ShardReader, ShardWriter};
use std::path::Path;

/// The resume facts of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardState {
    /// How the next session should start.
    pub resume: Resume,
    /// The db in force after the last recorded command (0 when nothing follows a snapshot: a
    /// master re-selects before the first command after a full sync).
    pub db: u32,
    /// Why a full sync is needed, when it is (for the log).
    pub full_reason: Option<String>,
}

/// Reads the resume facts of shard `shard` whose writer `writer` is open (recovered).
pub fn shard_state(
    journal_dir: &Path,
    shard: &str,
    writer: &ShardWriter,
) -> Result<ShardState, journal::Error> {
    let Some(point) = writer.resume_point() else {
        return Ok(ShardState {
            resume: Resume::Full,
            db: 0,
            full_reason: Some("the shard has no complete snapshot yet".into()),
        });
    };
    let reader = ShardReader::open(journal_dir, shard, RecoveryMode::Refuse)?;
    // Walk frames backwards to the last record that is not a marker.
    for frame in reader.frames().iter().rev() {
        let entries = reader.decode(frame)?;
        for entry in entries.iter().rev() {
            if entry.position.epoch != point.epoch {
                continue;
            }
            let resume = Resume::From {
                replid: point.replid.clone(),
                offset: point.offset,
            };
            let incomplete = |what: &str| ShardState {
                resume: Resume::Full,
                db: 0,
                full_reason: Some(format!(
                    "epoch {} ends inside its snapshot (last record: {what}): the snapshot must be taken again",
                    point.epoch
                )),
            };
            return Ok(match &entry.record {
                Record::Marker(_) => continue,
                Record::SnapshotEnd(_) => ShardState {
                    resume,
                    db: 0,
                    full_reason: None,
                },
                Record::Command(c) => ShardState {
                    resume,
                    db: c.db,
                    full_reason: None,
                },
                Record::Transaction(t) => ShardState {
                    resume,
                    db: db_after(t.db, &t.commands),
                    full_reason: None,
                },
                other => incomplete(other.kind_name()),
            });
        }
    }
    Ok(ShardState {
        resume: Resume::Full,
        db: 0,
        full_reason: Some("no record of the resume epoch was found".into()),
    })
}
