//! `ship`: copy the sealed segments not shipped before into a new shipment folder on the media.
//!
//! Order of operations (what makes an interruption at any point harmless):
//!
//! 1. give the journal an identity if it has none (old journals; `journal.json` replaced
//!    atomically);
//! 2. with `include_active`, seal the active segments ([`super::seal`]);
//! 3. read each `shard.json` once; the segments to ship are those listed after the last one
//!    `shipped.json` records for the shard (each copied with its SHA-256 checked against the
//!    manifest, so a damaged source segment is never shipped);
//! 4. write everything into `MEDIA/.<name>.partial/`, each file synced; then `shipment.json`,
//!    then `SHA256SUMS`; sync the folders; rename to `MEDIA/<name>/`; sync `MEDIA`;
//! 5. only then record the shipment in `shipped.json` (atomic replace).
//!
//! Interrupted before 4's rename: a `.partial` folder that receive ignores and the next ship
//! replaces. Between the rename and 5: a complete shipment that `shipped.json` does not
//! know; the next ship refuses to overwrite it and says so ([`Error::Exists`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::error::{Error, Result, io, jerr};
use super::format::{
    self, PreviousShipment, SHIPMENT_FILE, SHIPPED_FILE, SUMS_FILE, SegmentRef, ShardShipment,
    Shipment, ShippedRecord, ShippedSegment, ShippedShard, ShippedState,
};
use super::seal::{SealOutcome, seal_active};
use crate::journal::manifest::{self, JOURNAL_MANIFEST, SHARD_MANIFEST, ShardManifest};

/// How to ship.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// Seal the active segment of every shard first, so the newest data is shipped too.
    pub include_active: bool,
    /// How long to wait for a running capture to seal on request.
    pub seal_timeout: Duration,
    /// The shipment's creation time (ms since the Unix epoch); `None`: now. Fixtures set it.
    pub now_ms: Option<u64>,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            include_active: false,
            seal_timeout: Duration::from_secs(30),
            now_ms: None,
        }
    }
}

/// What `ship` did.
#[derive(Debug, Clone, Serialize)]
pub struct ShipOutcome {
    /// The journal shipped.
    pub journal: PathBuf,
    /// Its identity.
    pub journal_id: String,
    /// True when the journal had no identity and was given one now.
    pub assigned_id: bool,
    /// What `include_active` sealed, per shard (empty without it).
    pub sealed: Vec<SealOutcome>,
    /// The shipment written; `None` when nothing was new (then nothing was created).
    pub shipment: Option<ShipmentSummary>,
}

/// A shipment written.
#[derive(Debug, Clone, Serialize)]
pub struct ShipmentSummary {
    /// Its sequence number.
    pub sequence: u64,
    /// Its folder.
    pub path: PathBuf,
    /// Segments shipped.
    pub segments: u64,
    /// Segment bytes shipped.
    pub bytes: u64,
    /// Per shard: name, segments, bytes.
    pub shards: Vec<ShardSummary>,
}

/// One shard's part of a shipment written.
#[derive(Debug, Clone, Serialize)]
pub struct ShardSummary {
    /// The shard.
    pub name: String,
    /// Segments shipped.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Ships the journal at `journal` to the media directory `media`; see the module docs.
pub fn ship(journal: &Path, media: &Path, opts: &ShipOptions) -> Result<ShipOutcome> {
    if !media.is_dir() {
        return Err(Error::NoMedia {
            dir: media.to_path_buf(),
        });
    }
    let (jm, assigned_id) = ensure_identity(journal)?;
    let journal_id = jm.journal_id.clone().expect("ensured");
    let shard_names: Vec<String> = jm.shards.iter().map(|s| s.name.clone()).collect();
    let shipped_path = journal.join(SHIPPED_FILE);
    let mut state: ShippedState = format::read_state(&shipped_path)?;
    if state.shipments.is_empty() {
        state.format_version = format::FORMAT_VERSION;
        state.journal_id = journal_id.clone();
    } else if state.journal_id != journal_id {
        return Err(Error::State {
            file: shipped_path,
            what: format!(
                "records shipments of journal {}, but journal.json says {journal_id}",
                state.journal_id
            ),
        });
    }
    let sealed = if opts.include_active {
        seal_active(journal, &shard_names, opts.seal_timeout)?
    } else {
        Vec::new()
    };
    let journal_bytes = std::fs::read(journal.join(JOURNAL_MANIFEST))
        .map_err(io(journal.join(JOURNAL_MANIFEST)))?;

    // What is new, per shard, from one read of each shard.json.
    let mut plan = Vec::new();
    for name in &shard_names {
        let sdir = journal.join(name);
        let mpath = sdir.join(SHARD_MANIFEST);
        let bytes = std::fs::read(&mpath).map_err(io(&mpath))?;
        let sm: ShardManifest = serde_json::from_slice(&bytes).map_err(|e| Error::State {
            file: mpath.clone(),
            what: e.to_string(),
        })?;
        let follows = state.last_of(name).cloned();
        let start = match &follows {
            None => 0,
            Some(f) => {
                sm.sealed
                    .iter()
                    .position(|s| s.file == f.file && s.sha256 == f.sha256)
                    .ok_or_else(|| Error::State {
                        file: mpath.clone(),
                        what: format!(
                            "segment {} (SHA-256 {}), shipped before, is no longer listed: the \
                             journal was replaced or altered since; shipping from it would break \
                             the chain",
                            f.file, f.sha256
                        ),
                    })?
                    + 1
            }
        };
        let new: Vec<ShippedSegment> = sm.sealed[start..]
            .iter()
            .map(|s| ShippedSegment {
                file: s.file.clone(),
                number: s.number,
                first: s.first,
                last: s.last,
                bytes: s.bytes,
                sha256: s.sha256.clone(),
            })
            .collect();
        plan.push((name.clone(), bytes, follows, new));
    }
    let mut outcome = ShipOutcome {
        journal: journal.to_path_buf(),
        journal_id: journal_id.clone(),
        assigned_id,
        sealed,
        shipment: None,
    };
    if plan.iter().all(|p| p.3.is_empty()) {
        return Ok(outcome);
    }

    let last = state.shipments.last();
    let sequence = last.map_or(1, |l| l.sequence + 1);
    let shipment = Shipment {
        format: format::FORMAT_NAME.into(),
        format_version: format::FORMAT_VERSION,
        shake_version: env!("CARGO_PKG_VERSION").into(),
        journal_id: journal_id.clone(),
        sequence,
        created_unix_ms: opts.now_ms.unwrap_or_else(crate::units::now_ms),
        previous: last.map(|l| PreviousShipment {
            sequence: l.sequence,
            sha256: l.sha256.clone(),
        }),
        shards: plan
            .iter()
            .map(|(name, _, follows, segs)| ShardShipment {
                name: name.clone(),
                follows: follows.clone(),
                segments: segs.clone(),
            })
            .collect(),
    };
    let name = shipment.folder_name();
    let dest = media.join(&name);
    if dest.exists() {
        return Err(Error::Exists { path: dest });
    }
    let tmp = media.join(format::partial_name(&journal_id, sequence));
    if tmp.exists() {
        // Ours, from an interrupted ship: never complete, never received.
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let mut sums: Vec<(String, String)> = Vec::new();
    let put = |rel: String, bytes: &[u8], sums: &mut Vec<(String, String)>| -> Result<()> {
        manifest::write_synced(&tmp.join(&rel), bytes).map_err(jerr(journal))?;
        sums.push((rel, format::sha256_hex(bytes)));
        Ok(())
    };
    put(JOURNAL_MANIFEST.into(), &journal_bytes, &mut sums)?;
    let mut shards = Vec::new();
    for (name, manifest_bytes, _, segs) in &plan {
        let sdir = tmp.join(name);
        std::fs::create_dir(&sdir).map_err(io(&sdir))?;
        put(
            format!("{name}/{SHARD_MANIFEST}"),
            manifest_bytes,
            &mut sums,
        )?;
        for s in segs {
            let from = journal.join(name).join(&s.file);
            let (sha, len) = format::copy_synced(&from, &sdir.join(&s.file))?;
            if sha != s.sha256 || len != s.bytes {
                return Err(Error::State {
                    file: from,
                    what: format!(
                        "the sealed segment is {len} bytes with SHA-256 {sha}, shard.json says \
                         {} bytes with {}: the source journal is damaged (run shake verify); \
                         nothing was shipped",
                        s.bytes, s.sha256
                    ),
                });
            }
            sums.push((format!("{name}/{}", s.file), sha));
        }
        format::sync_dir(&sdir)?;
        shards.push(ShardSummary {
            name: name.clone(),
            segments: segs.len() as u64,
            bytes: segs.iter().map(|s| s.bytes).sum(),
        });
    }
    let sbytes = shipment.to_bytes();
    let shipment_sha = format::sha256_hex(&sbytes);
    put(SHIPMENT_FILE.into(), &sbytes, &mut sums)?;
    sums.sort();
    manifest::write_synced(&tmp.join(SUMS_FILE), &format::format_sums(&sums))
        .map_err(jerr(journal))?;
    format::sync_dir(&tmp)?;
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    format::sync_dir(media)?;

    state.shipments.push(ShippedRecord {
        sequence,
        name: name.clone(),
        created_unix_ms: shipment.created_unix_ms,
        sha256: shipment_sha,
        shards: plan
            .iter()
            .filter(|p| !p.3.is_empty())
            .map(|(name, _, _, segs)| ShippedShard {
                name: name.clone(),
                segments: segs
                    .iter()
                    .map(ShippedSegment::as_ref)
                    .collect::<Vec<SegmentRef>>(),
            })
            .collect(),
    });
    manifest::write_json_atomic(&shipped_path, &state).map_err(jerr(journal))?;
    outcome.shipment = Some(ShipmentSummary {
        sequence,
        path: dest,
        segments: shipment.segment_count() as u64,
        bytes: shipment.segment_bytes(),
        shards,
    });
    Ok(outcome)
}

/// Reads `journal.json`, giving the journal an identity if it has none (recorded atomically).
fn ensure_identity(journal: &Path) -> Result<(manifest::JournalManifest, bool)> {
    let mut jm = crate::journal::read_journal(journal).map_err(jerr(journal))?;
    match &jm.journal_id {
        Some(id) if manifest::valid_journal_id(id) => Ok((jm, false)),
        Some(id) => Err(Error::State {
            file: journal.join(JOURNAL_MANIFEST),
            what: format!("journal_id {id:?} is not 8 to 64 lower-case hex digits"),
        }),
        None => {
            jm.journal_id = Some(manifest::new_journal_id());
            manifest::write_json_atomic(&journal.join(JOURNAL_MANIFEST), &jm)
                .map_err(jerr(journal))?;
            Ok((jm, true))
        }
    }
}
