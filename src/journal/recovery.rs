//! Opening a shard for append after a crash.
//!
//! Only the last segment of a shard can be damaged by a crash of the writer: every earlier one
//! was sealed and synced before the next was created. Recovery therefore:
//!
//! 1. checks that every segment listed in `shard.json` is present, in order;
//! 2. removes a last segment shorter than its header (a crash while creating it);
//! 3. scans the last unlisted segment frame by frame (checksums verified) and
//!    * if it ends with a seal (crash after sealing, before the manifest update), publishes it;
//!    * if it ends inside a frame or in bytes that are not a frame, truncates it to the end of
//!      the last valid frame, logging exactly what was cut — **unless** a valid frame follows
//!      the damage, which is not what a crash does: then it refuses, rather than throw valid
//!      data away (see [`super::RecoveryMode`] for readers);
//!    * if no valid frame remains, removes it (the next record creates a fresh segment);
//! 4. syncs what it changed and continues appending after the last valid frame.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::error::io;
use super::frame::{self, FRAME_HEADER_LEN};
use super::index::SegmentIndex;
use super::manifest::{self, SealedSegment};
use super::segment::{self, SEGMENT_HEADER_LEN, SealFooter, Tail};
use super::writer::{Active, ShardWriter, WriterOptions, hex};
use super::{Error, Result};

pub(crate) fn open_for_append(dir: &Path, opts: WriterOptions) -> Result<ShardWriter> {
    let mut man = manifest::read_shard(dir)?;
    let files = segment::list(dir)?;
    let n = man.sealed.len();
    for (i, s) in man.sealed.iter().enumerate() {
        let found = files.get(i).and_then(|(_, p)| p.file_name()?.to_str());
        if found != Some(s.file.as_str()) {
            return Err(Error::Manifest {
                file: dir.join(manifest::SHARD_MANIFEST),
                what: format!(
                    "sealed segment {} (number {}) is missing or out of order (found {:?})",
                    s.file, s.number, found
                ),
            });
        }
    }
    if files.len() > n + 1 {
        return Err(Error::Manifest {
            file: dir.join(manifest::SHARD_MANIFEST),
            what: format!(
                "{} segments are not listed as sealed; at most the last one may be open",
                files.len() - n
            ),
        });
    }
    let mut prev_last = man.sealed.last().map(|s| s.last);
    let mut next_number = man.sealed.last().map_or(0, |s| s.number + 1);
    let mut active = None;
    if let Some((_, path)) = files.get(n) {
        let buf = std::fs::read(path).map_err(io(path))?;
        let torn_header = buf.len() < SEGMENT_HEADER_LEN
            || (segment::SegmentHeader::decode(&buf, path).is_err()
                && segment::find_next_frame(&buf, 0, true).is_none());
        if torn_header {
            tracing::warn!(
                file = %path.display(),
                bytes = buf.len(),
                "removing a segment whose header is torn and that holds no valid frame \
                 (crash while creating it)"
            );
            std::fs::remove_file(path).map_err(io(path))?;
            manifest::sync_dir(dir)?;
        } else {
            let scan = segment::scan(&buf, path, false, true)?;
            if scan.header.number != next_number {
                return Err(Error::Corruption {
                    file: path.clone(),
                    offset: 16,
                    what: format!(
                        "segment number {} where {next_number} was expected",
                        scan.header.number
                    ),
                });
            }
            let cut = match &scan.tail {
                Tail::Clean => None,
                Tail::Incomplete { offset, have } => {
                    Some((*offset, format!("torn frame ({have} bytes present)")))
                }
                Tail::Corrupt { offset, what } => {
                    if let Some(next) = segment::find_next_frame(&buf, *offset as usize + 1, true) {
                        return Err(Error::Corruption {
                            file: path.clone(),
                            offset: *offset,
                            what: format!(
                                "{what}; a valid frame follows at byte {next}, so this is not a \
                                 torn tail: refusing to truncate (inspect with `shake verify`)"
                            ),
                        });
                    }
                    Some((*offset, what.clone()))
                }
            };
            if let Some((offset, what)) = cut {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    cut_bytes = buf.len() as u64 - offset,
                    last_position = ?scan.last(),
                    reason = %what,
                    "truncating torn tail of segment"
                );
                let f = File::options().write(true).open(path).map_err(io(path))?;
                f.set_len(offset).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
            }
            let valid = &buf[..scan.valid_len as usize];
            if let Some((_, footer)) = scan.seal {
                // Sealed but not yet published: finish what the crash interrupted.
                let last = scan.last().unwrap_or(scan.header.first);
                SegmentIndex::from_scan(&scan, valid.len() as u64).write(path)?;
                man.sealed.push(SealedSegment {
                    file: segment::file_name(scan.header.first),
                    number: scan.header.number,
                    first: scan.header.first,
                    last,
                    frames: footer.frames,
                    records: footer.records,
                    bytes: valid.len() as u64,
                    sha256: hex(&Sha256::digest(valid)),
                });
                manifest::write_json_atomic(&dir.join(manifest::SHARD_MANIFEST), &man)?;
                tracing::info!(file = %path.display(), "published a segment sealed before a crash");
                prev_last = Some(last);
                next_number += 1;
            } else if scan.frames.is_empty() {
                tracing::warn!(file = %path.display(), "removing a segment with no valid frame");
                std::fs::remove_file(path).map_err(io(path))?;
                manifest::sync_dir(dir)?;
            } else {
                let mut footer = SealFooter::default();
                for f in &scan.frames {
                    let start = f.offset as usize;
                    let end = start + f.header.frame_len() as usize;
                    let entries =
                        frame::decode_records(&f.header, &buf[start + FRAME_HEADER_LEN..end])
                            .map_err(|e| Error::Corruption {
                                file: path.clone(),
                                offset: f.offset,
                                what: e.to_string(),
                            })?;
                    footer.frames += 1;
                    footer.records += u64::from(f.header.records);
                    footer.raw_bytes += u64::from(f.header.raw_len);
                    footer.stored_bytes += f.header.frame_len();
                    for t in entries.iter().filter_map(|e| e.record.time_ms()) {
                        footer.min_time_ms = if footer.min_time_ms == 0 {
                            t
                        } else {
                            footer.min_time_ms.min(t)
                        };
                        footer.max_time_ms = footer.max_time_ms.max(t);
                    }
                }
                let file = File::options().append(true).open(path).map_err(io(path))?;
                file.sync_all().map_err(io(path))?;
                let mut sha = Sha256::new();
                sha.update(valid);
                active = Some(Active {
                    file,
                    path: path.clone(),
                    header: scan.header,
                    len: valid.len() as u64,
                    sha,
                    footer,
                    created: Instant::now(),
                    index: scan
                        .frames
                        .iter()
                        .map(|f| (f.header.first, f.offset))
                        .collect(),
                    last: scan.last().expect("frames is not empty"),
                });
                next_number += 1;
            }
        }
    }
    ShardWriter::from_parts(dir.to_path_buf(), opts, man, active, next_number, prev_last)
}
