//! Sealing the active segment of every shard before a shipment (`--include-active`).
//!
//! Only sealed segments are shipped: they are immutable and their SHA-256 is published, so a
//! copy can be checked. To ship the newest data too, the active segment is sealed first:
//!
//! * no capture running (the shard's `writer.lock` can be taken): open the shard writer
//!   (which recovers a torn tail, as a restarted capture would), seal, close;
//! * a capture running (lock held): write [`SEAL_REQUEST`] in the shard directory; the
//!   capture's writer thread notices it on its periodic tick (≤ 100 ms), seals, publishes the
//!   seal in `shard.json` and removes the request. We wait for the removal, bounded by a
//!   timeout that names the shard. Should the capture exit meanwhile, the lock frees and we
//!   seal ourselves.
//!
//! An active segment holding no frame is not sealed (the writer drops it instead): there is
//! nothing in it to ship.

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::{Error, Result, io, jerr};
use crate::journal::manifest;
use crate::journal::writer::SEAL_REQUEST;
use crate::journal::{ShardWriter, WriterOptions};

/// How the active segment of a shard was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedBy {
    /// No capture was running: sealed by us.
    Ship,
    /// A capture was running: sealed by it, on request.
    Capture,
}

/// What sealing did to one shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SealOutcome {
    /// The shard.
    pub shard: String,
    /// Who sealed.
    pub by: SealedBy,
    /// Segments newly sealed (0 when the active segment was empty or absent, 1 otherwise).
    pub sealed: usize,
}

/// Seals the active segment of each of `shards` of the journal at `dir`; see the module docs.
/// Shards with a running capture are asked all at once and sealed in parallel.
pub fn seal_active(dir: &Path, shards: &[String], timeout: Duration) -> Result<Vec<SealOutcome>> {
    let mut out = Vec::new();
    let mut asked = Vec::new();
    for shard in shards {
        let sdir = dir.join(shard);
        let before = sealed_count(&sdir)?;
        match ShardWriter::open(dir, shard, WriterOptions::default()) {
            Ok(w) => {
                w.close().map_err(jerr(dir))?;
                out.push(SealOutcome {
                    shard: shard.clone(),
                    by: SealedBy::Ship,
                    sealed: sealed_count(&sdir)?.saturating_sub(before),
                });
            }
            Err(crate::journal::Error::Locked { .. }) => {
                let req = sdir.join(SEAL_REQUEST);
                let text = format!(
                    "seal requested by shake ship (pid {}) at {}\n",
                    std::process::id(),
                    super::rfc3339(crate::units::now_ms())
                );
                manifest::write_synced(&req, text.as_bytes()).map_err(jerr(dir))?;
                asked.push((shard.clone(), req, before));
            }
            Err(e) => return Err(jerr(dir)(e)),
        }
    }
    let start = Instant::now();
    while !asked.is_empty() {
        let mut still = Vec::new();
        for (shard, req, before) in asked {
            let sdir = dir.join(&shard);
            if !req.exists() {
                out.push(SealOutcome {
                    shard,
                    by: SealedBy::Capture,
                    sealed: sealed_count(&sdir)?.saturating_sub(before),
                });
                continue;
            }
            // The capture may have stopped since: then the lock is free and we seal.
            match ShardWriter::open(dir, &shard, WriterOptions::default()) {
                Ok(w) => {
                    remove_request(&req)?;
                    w.close().map_err(jerr(dir))?;
                    out.push(SealOutcome {
                        shard,
                        by: SealedBy::Ship,
                        sealed: sealed_count(&sdir)?.saturating_sub(before),
                    });
                    continue;
                }
                Err(crate::journal::Error::Locked { .. }) => {}
                Err(e) => return Err(jerr(dir)(e)),
            }
            still.push((shard, req, before));
        }
        if !still.is_empty() && start.elapsed() >= timeout {
            // Withdraw every request: a capture must not seal later, unasked.
            for (_, r, _) in &still {
                remove_request(r)?;
            }
            let (shard, request, _) = still.swap_remove(0);
            return Err(Error::SealTimeout {
                shard,
                waited: timeout,
                request,
            });
        }
        asked = still;
        if !asked.is_empty() {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    out.sort_by(|a, b| a.shard.cmp(&b.shard));
    Ok(out)
}

fn sealed_count(sdir: &Path) -> Result<usize> {
    Ok(manifest::read_shard(sdir).map_err(jerr(sdir))?.sealed.len())
}

fn remove_request(req: &Path) -> Result<()> {
    match std::fs::remove_file(req) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(req)(e)),
    }
}
