//! The checkpoint: per shard, the last journal position the target fully acknowledged.
//!
//! A JSON file (readable by an operator with any tool) replaced atomically — written to a
//! temporary file in the same directory, fsynced, renamed over the old one, directory fsynced —
//! so a crash leaves the old or the new checkpoint, never a torn one. It lives next to the
//! journal (`<journal>.replay-state/`), never inside it: the journal is an audited artifact.
//!
//! ```json
//! {"format":"shake-replay-checkpoint","version":1,"journal":"/data/j","target":"10.0.0.5:6379",
//!  "shards":{"shard-000":{"epoch":1,"offset":123456,"seq":0,"phase":"stream","updated_unix_ms":…}}}
//! ```
//! `phase` is `snapshot` while snapshot keys are being written (a resume re-sends keys after
//! the position, idempotent under `--on-conflict replace`) and `stream` after.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use crate::journal::Position;

/// Where a shard got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// Epoch of the last acknowledged record.
    pub epoch: u64,
    /// Its replication offset.
    pub offset: u64,
    /// Its sequence number.
    pub seq: u64,
    /// `snapshot` or `stream`.
    pub phase: Phase,
    /// When this was recorded, ms since the Unix epoch.
    pub updated_unix_ms: u64,
}

impl ShardState {
    /// The position.
    pub fn position(&self) -> Position {
        Position::new(self.epoch, self.offset, self.seq)
    }
}

/// Which part of the shard the position is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Snapshot keys.
    Snapshot,
    /// The command stream.
    Stream,
}

/// The file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointData {
    /// Always `shake-replay-checkpoint`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The journal directory replayed.
    pub journal: String,
    /// The target's `host:port` (no credentials).
    pub target: String,
    /// Per shard directory name.
    pub shards: BTreeMap<String, ShardState>,
}

/// A checkpoint file shared by the shard tasks.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    data: Mutex<CheckpointData>,
    /// Serialises file writes (tasks and the periodic writer may save at once).
    write: Mutex<()>,
}

impl Checkpoint {
    /// Opens `path` (an existing checkpoint is loaded; a missing one starts empty). A checkpoint
    /// of another target is refused: resuming from it would skip data this target never got.
    pub fn open(path: &Path, journal: &Path, target: &str) -> Result<Checkpoint> {
        let err = |why: String| Error::Checkpoint {
            path: path.display().to_string(),
            why,
        };
        let data = match std::fs::read(path) {
            Ok(bytes) => {
                let d: CheckpointData = serde_json::from_slice(&bytes)
                    .map_err(|e| err(format!("not a valid checkpoint: {e}")))?;
                if d.format != "shake-replay-checkpoint" || d.version != 1 {
                    return Err(err(format!(
                        "unknown format {} version {}",
                        d.format, d.version
                    )));
                }
                if d.target != target {
                    return Err(err(format!(
                        "it records a replay to {}, not to {target}: give another --checkpoint",
                        d.target
                    )));
                }
                d
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CheckpointData {
                format: "shake-replay-checkpoint".into(),
                version: 1,
                journal: journal.display().to_string(),
                target: target.to_string(),
                shards: BTreeMap::new(),
            },
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(Checkpoint {
            path: path.to_path_buf(),
            data: Mutex::new(data),
            write: Mutex::new(()),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded state of `shard`.
    pub fn get(&self, shard: &str) -> Option<ShardState> {
        self.data.lock().unwrap().shards.get(shard).copied()
    }

    /// Records (in memory) that `shard` is acknowledged up to `pos`.
    pub fn set(&self, shard: &str, pos: Position, phase: Phase) {
        self.data.lock().unwrap().shards.insert(
            shard.to_string(),
            ShardState {
                epoch: pos.epoch,
                offset: pos.offset,
                seq: pos.seq,
                phase,
                updated_unix_ms: crate::units::now_ms(),
            },
        );
    }

    /// Writes the file atomically (temp + fsync + rename + directory fsync).
    pub fn save(&self) -> Result<()> {
        let _guard = self.write.lock().unwrap();
        let text =
            serde_json::to_vec_pretty(&*self.data.lock().unwrap()).expect("checkpoint serialises");
        let err = |e: std::io::Error| Error::Checkpoint {
            path: self.path.display().to_string(),
            why: e.to_string(),
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&text).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_reloads_and_refuses_another_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/c.json");
        let c = Checkpoint::open(&path, Path::new("/j"), "h:1").unwrap();
        c.set("shard-000", Position::new(1, 5, 2), Phase::Stream);
        c.save().unwrap();
        let c2 = Checkpoint::open(&path, Path::new("/j"), "h:1").unwrap();
        assert_eq!(
            c2.get("shard-000").unwrap().position(),
            Position::new(1, 5, 2)
        );
        assert!(Checkpoint::open(&path, Path::new("/j"), "h:2").is_err());
    }
}
