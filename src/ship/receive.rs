//! `receive`: verify shipments and add them to a receiving journal, in sequence.
//!
//! For each shipment, nothing is written before all of this holds:
//!
//! 1. `shipment.json` parses and follows the format ([`Shipment::parse`]);
//! 2. the chain: same journal, next sequence number, `previous` link, every shard's `follows`
//!    ([`super::chain::check`]) — a gap, a repeat or another history is refused here, naming
//!    the shipment(s);
//! 3. `SHA256SUMS` lists `shipment.json`, `journal.json`, every `shard.json` and every segment,
//!    and every file listed has that SHA-256 (segments also the one in `shipment.json`);
//! 4. each segment passes the journal's own checks: header, every frame's checksums and
//!    records, the seal and its counts, first/last positions as listed, and the chain of
//!    segment numbers and previous-last positions continuing the receiving shard.
//!
//! Then, per shard: `shard.json` takes the shipped epochs; each segment is copied to a hidden
//! temporary name in the shard directory (`.<file>.receiving`, which no reader lists), synced,
//! its SHA-256 checked again, renamed to its name, the directory synced, its index written,
//! and only then listed in `shard.json` (atomic replace). At every instant the shard is what a
//! journal can be: sealed segments listed, at most the last one sealed but not listed yet
//! (which `shake verify` notes and `replay --follow` reads as a complete segment). Last,
//! `received.json` records the shipment. A receive interrupted part-way is completed by
//! running it again (see [`super::chain`]).
//!
//! The first shipment creates the journal: shard directories with their `shard.json` first,
//! `journal.json` (the sender's, identity included) last, so a reader never sees a journal
//! without its shards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::chain::{self, Holdings, Verdict};
use super::error::{Error, Result, io, jerr};
use super::format::{
    self, RECEIVED_FILE, ReceivedRecord, ReceivedState, SHIPMENT_FILE, SUMS_FILE, SegmentRef,
    Shipment,
};
use crate::journal::frame::{self, FRAME_HEADER_LEN};
use crate::journal::index::SegmentIndex;
use crate::journal::manifest::{
    self, JOURNAL_MANIFEST, JournalManifest, SHARD_MANIFEST, SealedSegment, ShardManifest,
};
use crate::journal::segment::{self, Tail};

/// How to receive.
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    /// The receive time recorded (ms since the Unix epoch); `None`: now.
    pub now_ms: Option<u64>,
}

/// What `receive` did. A refusal or error part-way leaves the shipments before it received
/// (each is complete on its own) and is reported in [`ReceiveOutcome::failure`].
#[derive(Debug, Default, Serialize)]
pub struct ReceiveOutcome {
    /// The receiving journal.
    pub journal: PathBuf,
    /// The journal identity (once known).
    pub journal_id: Option<String>,
    /// Shipments added, in order.
    pub received: Vec<ReceivedSummary>,
    /// Shipments found on the media that were received before (media directory mode).
    pub skipped: Vec<Skipped>,
    /// Folders on the media that are not shipments of this journal, or not complete.
    pub ignored: Vec<Skipped>,
    /// The shipment refused (or the error that stopped the receive), if any. Nothing of it
    /// was added, and no later shipment was looked at.
    #[serde(serialize_with = "ser_failure")]
    pub failure: Option<(PathBuf, Error)>,
}

fn ser_failure<S: serde::Serializer>(
    f: &Option<(PathBuf, Error)>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct F<'a> {
        shipment: &'a Path,
        refused: bool,
        error: String,
    }
    f.as_ref()
        .map(|(p, e)| F {
            shipment: p,
            refused: e.is_refusal(),
            error: e.to_string(),
        })
        .serialize(s)
}

/// A shipment added.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedSummary {
    /// Its sequence number.
    pub sequence: u64,
    /// Its folder.
    pub path: PathBuf,
    /// Segments added.
    pub segments: u64,
    /// Segment bytes added.
    pub bytes: u64,
    /// Shards that gained segments.
    pub shards: u64,
    /// Segments that an interrupted earlier receive had already added.
    pub already_present: u64,
}

/// A folder not received, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The folder.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

/// Receives what `source` holds into the journal at `journal`. `source` is either one
/// shipment folder (a repeat is then refused) or a media directory holding shipments (those
/// of this journal are taken in sequence order; ones received before are skipped with a note;
/// `.partial` folders are ignored with a note). Returns `Err` only when nothing could be
/// looked at; a refusal after some shipments were added is in [`ReceiveOutcome::failure`].
pub fn receive(source: &Path, journal: &Path, opts: &ReceiveOptions) -> Result<ReceiveOutcome> {
    let mut out = ReceiveOutcome {
        journal: journal.to_path_buf(),
        ..Default::default()
    };
    let dir_name = source
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if format::is_partial_name(dir_name) {
        return Err(Error::Incomplete {
            path: source.to_path_buf(),
        });
    }
    if !source.is_dir() {
        return Err(Error::NoShipment {
            path: source.to_path_buf(),
            what: "not a directory".into(),
        });
    }
    let single = source.join(SHIPMENT_FILE).exists();
    let mut candidates: Vec<(PathBuf, Shipment, String)> = Vec::new();
    if single {
        let (s, sha) = read_shipment(source)?;
        candidates.push((source.to_path_buf(), s, sha));
    } else {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(source)
            .map_err(io(source))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if format::is_partial_name(name) {
                out.ignored.push(Skipped {
                    path: p.clone(),
                    why: Error::Incomplete { path: p.clone() }.to_string(),
                });
                continue;
            }
            if format::parse_folder_name(name).is_none() {
                continue; // not ours at all: say nothing
            }
            if !p.join(SHIPMENT_FILE).exists() {
                out.ignored.push(Skipped {
                    path: p.clone(),
                    why: format!(
                        "{} has no {SHIPMENT_FILE}: not a complete shipment",
                        p.display()
                    ),
                });
                continue;
            }
            match read_shipment(&p) {
                Ok((s, sha)) => candidates.push((p, s, sha)),
                Err(e) => {
                    out.failure = Some((p, e));
                    return Ok(out);
                }
            }
        }
    }
    let existing = read_journal_id(journal)?;
    if !single {
        let ids: std::collections::BTreeSet<&str> =
            candidates.iter().map(|c| c.1.journal_id.as_str()).collect();
        let want = match (&existing, ids.len()) {
            (Some(id), _) => id.clone(),
            (None, 1) => ids.first().expect("one").to_string(),
            (None, 0) => String::new(),
            (None, _) => {
                return Err(Error::NoShipment {
                    path: source.to_path_buf(),
                    what: format!(
                        "holds shipments of several journals ({}) and {} is not a journal yet: \
                         receive one shipment folder to choose",
                        ids.into_iter().collect::<Vec<_>>().join(", "),
                        journal.display()
                    ),
                });
            }
        };
        candidates.retain(|(p, s, _)| {
            let ours = s.journal_id == want;
            if !ours {
                out.ignored.push(Skipped {
                    path: p.clone(),
                    why: format!("a shipment of journal {}, not {want}", s.journal_id),
                });
            }
            ours
        });
        if candidates.is_empty() {
            return Err(Error::NoShipment {
                path: source.to_path_buf(),
                what: format!(
                    "no complete shipment{} found{}",
                    if want.is_empty() {
                        String::new()
                    } else {
                        format!(" of journal {want}")
                    },
                    if out.ignored.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            out.ignored
                                .iter()
                                .map(|s| s.why.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    }
                ),
            });
        }
        candidates.sort_by_key(|c| c.1.sequence);
    }
    out.journal_id = existing.or_else(|| candidates.first().map(|c| c.1.journal_id.clone()));
    for (path, shipment, sha) in candidates {
        match receive_one(&path, &shipment, &sha, journal, opts) {
            Ok(summary) => out.received.push(summary),
            Err(Error::AlreadyReceived { .. }) if !single => out.skipped.push(Skipped {
                path: path.clone(),
                why: format!("shipment {} was received before", shipment.sequence),
            }),
            Err(e) => {
                out.failure = Some((path, e));
                break;
            }
        }
    }
    Ok(out)
}

/// Reads and validates a folder's `shipment.json`; returns it and its SHA-256.
fn read_shipment(dir: &Path) -> Result<(Shipment, String)> {
    let path = dir.join(SHIPMENT_FILE);
    let bytes = format::read_bounded(&path)?;
    let s = Shipment::parse(&bytes).map_err(|what| Error::Format {
        file: path.clone(),
        what,
    })?;
    Ok((s, format::sha256_hex(&bytes)))
}

/// The receiving journal's identity, `None` when it has no `journal.json` yet.
fn read_journal_id(journal: &Path) -> Result<Option<String>> {
    if !journal.join(JOURNAL_MANIFEST).exists() {
        return Ok(None);
    }
    let jm = crate::journal::read_journal(journal).map_err(jerr(journal))?;
    match jm.journal_id {
        Some(id) => Ok(Some(id)),
        None => Err(Error::State {
            file: journal.join(JOURNAL_MANIFEST),
            what: "this journal has no identity, so it was not made by shake receive: \
                   receive into a new directory"
                .into(),
        }),
    }
}

/// A segment verified and ready to add.
struct Ready {
    shard: String,
    file: String,
    sha256: String,
    bytes: u64,
    index: SegmentIndex,
    entry: SealedSegment,
}

fn receive_one(
    dir: &Path,
    s: &Shipment,
    sha: &str,
    journal: &Path,
    opts: &ReceiveOptions,
) -> Result<ReceivedSummary> {
    // 2. the chain, against what the journal holds now
    let journal_id = read_journal_id(journal)?;
    let rpath = journal.join(RECEIVED_FILE);
    let received: ReceivedState = if journal_id.is_some() {
        if !rpath.exists() {
            // A capture's own journal (or a copy of one): adding to it would mix histories.
            return Err(Error::State {
                file: rpath,
                what: "missing: this journal was not made by shake receive; receive into a new \
                       directory"
                    .into(),
            });
        }
        format::read_state(&rpath)?
    } else {
        ReceivedState::default()
    };
    let mut shard_manifests: BTreeMap<String, ShardManifest> = BTreeMap::new();
    if journal_id.is_some() {
        let jm = crate::journal::read_journal(journal).map_err(jerr(journal))?;
        for sh in &jm.shards {
            let m = manifest::read_shard(&journal.join(&sh.name)).map_err(jerr(journal))?;
            shard_manifests.insert(sh.name.clone(), m);
        }
    }
    let holdings = Holdings {
        journal_id: journal_id.as_deref(),
        received: &received.shipments,
        shards: shard_manifests
            .iter()
            .map(|(k, m)| {
                (
                    k.clone(),
                    m.sealed
                        .iter()
                        .map(|x| SegmentRef {
                            file: x.file.clone(),
                            sha256: x.sha256.clone(),
                        })
                        .collect(),
                )
            })
            .collect(),
    };
    let present = match chain::check(s, sha, &holdings)? {
        Verdict::AlreadyReceived(r) => {
            return Err(Error::AlreadyReceived {
                journal: s.journal_id.clone(),
                sequence: s.sequence,
                received_at: super::rfc3339(r.received_unix_ms),
            });
        }
        Verdict::Next { present } => present,
    };

    // 3. the checksum list
    let sums_path = dir.join(SUMS_FILE);
    let sums =
        format::parse_sums(&format::read_bounded(&sums_path)?).map_err(|what| Error::Format {
            file: sums_path.clone(),
            what,
        })?;
    let sums: BTreeMap<String, String> = sums.into_iter().collect();
    let mut needed: Vec<(String, Option<String>)> = vec![
        (SHIPMENT_FILE.into(), Some(sha.to_string())),
        (JOURNAL_MANIFEST.into(), None),
    ];
    for sh in &s.shards {
        needed.push((format!("{}/{SHARD_MANIFEST}", sh.name), None));
        for seg in &sh.segments {
            needed.push((
                format!("{}/{}", sh.name, seg.file),
                Some(seg.sha256.clone()),
            ));
        }
    }
    for (rel, want) in &needed {
        let listed = sums.get(rel).ok_or_else(|| Error::Missing {
            file: dir.join(rel),
            why: format!("not listed in {SUMS_FILE}"),
        })?;
        if let Some(w) = want
            && w != listed
        {
            return Err(Error::Checksum {
                file: dir.join(rel),
                what: format!("{SUMS_FILE} says {listed}, {SHIPMENT_FILE} says {w}"),
            });
        }
    }
    // Every file listed, hashed in parallel (segments dominate).
    sums.par_iter().try_for_each(|(rel, want)| -> Result<()> {
        let path = dir.join(rel);
        let (got, _) = match format::hash_file(&path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Missing {
                    file: path,
                    why: format!("listed in {SUMS_FILE}"),
                });
            }
            r => r?,
        };
        if &got != want {
            return Err(Error::Checksum {
                file: path,
                what: format!("SHA-256 is {got}, {SUMS_FILE} says {want}"),
            });
        }
        Ok(())
    })?;

    // The shipped manifests.
    let jpath = dir.join(JOURNAL_MANIFEST);
    let jbytes = format::read_bounded(&jpath)?;
    let jm: JournalManifest = serde_json::from_slice(&jbytes).map_err(|e| Error::Format {
        file: jpath.clone(),
        what: e.to_string(),
    })?;
    let names: Vec<&str> = jm.shards.iter().map(|x| x.name.as_str()).collect();
    let theirs: Vec<&str> = s.shards.iter().map(|x| x.name.as_str()).collect();
    if jm.journal_id.as_deref() != Some(s.journal_id.as_str())
        || jm.format != manifest::FORMAT_NAME
        || jm.format_version > crate::journal::FORMAT_VERSION
        || names != theirs
    {
        return Err(Error::Format {
            file: jpath,
            what: format!(
                "does not describe journal {} with shards {theirs:?} in a format this shake reads",
                s.journal_id
            ),
        });
    }
    let mut shipped_manifests = BTreeMap::new();
    for sh in &s.shards {
        let p = dir.join(&sh.name).join(SHARD_MANIFEST);
        let m: ShardManifest =
            serde_json::from_slice(&format::read_bounded(&p)?).map_err(|e| Error::Format {
                file: p.clone(),
                what: e.to_string(),
            })?;
        if m.shard != sh.name || m.format_version > crate::journal::FORMAT_VERSION {
            return Err(Error::Format {
                file: p,
                what: format!(
                    "is not shard {}'s manifest in a format this shake reads",
                    sh.name
                ),
            });
        }
        shipped_manifests.insert(sh.name.clone(), m);
    }

    // 4. the segments, by the journal's own rules
    let mut ready: Vec<Ready> = Vec::new();
    for sh in &s.shards {
        let skip = present.get(&sh.name).copied().unwrap_or(0);
        let held = shard_manifests
            .get(&sh.name)
            .map(|m| &m.sealed[..])
            .unwrap_or(&[]);
        // The first new segment continues the shard's last one: `follows`, or the last of the
        // `skip` segments an interrupted receive already added.
        let mut prev: Option<(u64, crate::journal::Position)> =
            held.last().map(|x| (x.number, x.last));
        let listed = &shipped_manifests[&sh.name].sealed;
        for seg in &sh.segments[skip..] {
            let path = dir.join(&sh.name).join(&seg.file);
            let bad = |what: String| Error::Segment {
                file: path.clone(),
                what,
            };
            let entry = listed
                .iter()
                .find(|x| x.file == seg.file)
                .filter(|x| {
                    x.sha256 == seg.sha256
                        && x.bytes == seg.bytes
                        && x.number == seg.number
                        && x.first == seg.first
                        && x.last == seg.last
                })
                .ok_or_else(|| {
                    bad(format!(
                        "not listed as sealed, with these values, in the shipped {}/{SHARD_MANIFEST}",
                        sh.name
                    ))
                })?
                .clone();
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            if bytes.len() as u64 != seg.bytes {
                return Err(Error::Checksum {
                    file: path,
                    what: format!("{} bytes, {SHIPMENT_FILE} says {}", bytes.len(), seg.bytes),
                });
            }
            let scan = segment::scan(&bytes, &path, false, true).map_err(|e| bad(e.to_string()))?;
            match &scan.tail {
                Tail::Clean => {}
                Tail::Incomplete { offset, have } => {
                    return Err(bad(format!(
                        "byte {offset}: ends inside a frame ({have} bytes of it)"
                    )));
                }
                Tail::Corrupt { offset, what } => {
                    return Err(bad(format!("byte {offset}: {what}")));
                }
            }
            let Some((seal_at, footer)) = scan.seal else {
                return Err(bad("not sealed (no seal frame)".into()));
            };
            let h = scan.header;
            if h.number != seg.number || h.first != seg.first || scan.last() != Some(seg.last) {
                return Err(bad(format!(
                    "holds segment number {} from {} to {:?}, {SHIPMENT_FILE} says number {} from \
                     {} to {}",
                    h.number,
                    h.first,
                    scan.last(),
                    seg.number,
                    seg.first,
                    seg.last
                )));
            }
            let records: u64 = scan
                .frames
                .iter()
                .map(|f| u64::from(f.header.records))
                .sum();
            if footer.frames != scan.frames.len() as u64
                || footer.records != records
                || entry.frames != footer.frames
                || entry.records != footer.records
            {
                return Err(bad(format!(
                    "byte {seal_at}: seal counts {} frames / {} records, the segment holds {} / \
                     {records}",
                    footer.frames,
                    footer.records,
                    scan.frames.len()
                )));
            }
            let (want_number, want_prev) = match prev {
                None => (0, None),
                Some((n, last)) => (n + 1, Some(last)),
            };
            if h.number != want_number || h.prev_last != want_prev {
                return Err(bad(format!(
                    "segment number {} after {:?} does not continue shard {} of the receiving \
                     journal (expected number {want_number} after {want_prev:?})",
                    h.number, h.prev_last, sh.name
                )));
            }
            // Every record decodes (the audit `shake verify` does; in parallel).
            scan.frames.par_iter().try_for_each(|f| {
                let start = f.offset as usize;
                let end = start + f.header.frame_len() as usize;
                frame::raw_payload(&f.header, &bytes[start + FRAME_HEADER_LEN..end])
                    .and_then(|raw| frame::for_each_entry_ref(&f.header, &raw, |_| {}).map(|_| ()))
                    .map_err(|e| bad(format!("byte {}: {e}", f.offset)))
            })?;
            prev = Some((h.number, seg.last));
            ready.push(Ready {
                shard: sh.name.clone(),
                file: seg.file.clone(),
                sha256: seg.sha256.clone(),
                bytes: seg.bytes,
                index: SegmentIndex::from_scan(&scan, bytes.len() as u64),
                entry,
            });
        }
    }

    // Apply.
    if journal_id.is_none() {
        create_journal(journal, &jm, &shipped_manifests)?;
        for sh in &s.shards {
            shard_manifests.insert(
                sh.name.clone(),
                ShardManifest {
                    format_version: crate::journal::FORMAT_VERSION,
                    shard: sh.name.clone(),
                    epochs: shipped_manifests[&sh.name].epochs.clone(),
                    sealed: Vec::new(),
                },
            );
        }
    }
    for sh in &s.shards {
        let sdir = journal.join(&sh.name);
        let m = shard_manifests
            .get_mut(&sh.name)
            .expect("checked by the chain");
        let epochs = &shipped_manifests[&sh.name].epochs;
        if m.epochs != *epochs {
            // Epochs first: the manifest never lacks an epoch that has data.
            m.epochs = epochs.clone();
            manifest::write_json_atomic(&sdir.join(SHARD_MANIFEST), &*m).map_err(jerr(journal))?;
        }
        for r in ready.iter().filter(|r| r.shard == sh.name) {
            let dest = sdir.join(&r.file);
            let tmp = sdir.join(format!(".{}.receiving", r.file));
            let _ = std::fs::remove_file(&tmp);
            let from = dir.join(&sh.name).join(&r.file);
            let (got, len) = format::copy_synced(&from, &tmp)?;
            if got != r.sha256 || len != r.bytes {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::Checksum {
                    file: from,
                    what: format!(
                        "changed while being received: SHA-256 {got} ({len} bytes), verified as \
                         {} ({} bytes)",
                        r.sha256, r.bytes
                    ),
                });
            }
            std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
            format::sync_dir(&sdir)?;
            r.index.write(&dest).map_err(jerr(journal))?;
            m.sealed.push(r.entry.clone());
            manifest::write_json_atomic(&sdir.join(SHARD_MANIFEST), &*m).map_err(jerr(journal))?;
        }
    }
    let mut state = received;
    if state.shipments.is_empty() {
        state.format_version = format::FORMAT_VERSION;
        state.journal_id = s.journal_id.clone();
    }
    state.shipments.push(ReceivedRecord {
        sequence: s.sequence,
        name: s.folder_name(),
        sha256: sha.to_string(),
        created_unix_ms: s.created_unix_ms,
        received_unix_ms: opts.now_ms.unwrap_or_else(crate::units::now_ms),
        segments: s.segment_count() as u64,
        bytes: s.segment_bytes(),
    });
    manifest::write_json_atomic(&journal.join(RECEIVED_FILE), &state).map_err(jerr(journal))?;
    Ok(ReceivedSummary {
        sequence: s.sequence,
        path: dir.to_path_buf(),
        segments: ready.len() as u64,
        bytes: ready.iter().map(|r| r.bytes).sum(),
        shards: s.shards.iter().filter(|x| !x.segments.is_empty()).count() as u64,
        already_present: present.values().sum::<usize>() as u64,
    })
}

/// Creates the receiving journal from the first shipment: shard directories and their
/// manifests (epochs, no segment yet) first, an empty `received.json`, `journal.json` last. `dir` must be absent, empty,
/// or hold only what an interrupted creation left (those shard directories, no segment).
fn create_journal(
    dir: &Path,
    jm: &JournalManifest,
    shards: &BTreeMap<String, ShardManifest>,
) -> Result<()> {
    if dir.exists() {
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let leftover = name == RECEIVED_FILE
                || shards.contains_key(&name)
                    && segment::list(&e.path()).is_ok_and(|l| l.is_empty());
            if !leftover {
                return Err(Error::State {
                    file: dir.to_path_buf(),
                    what: format!(
                        "is not empty ({name}) and holds no journal.json: receive into a new \
                         or empty directory"
                    ),
                });
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, m) in shards {
        let sdir = dir.join(name);
        std::fs::create_dir_all(&sdir).map_err(io(&sdir))?;
        let fresh = ShardManifest {
            format_version: crate::journal::FORMAT_VERSION,
            shard: name.clone(),
            epochs: m.epochs.clone(),
            sealed: Vec::new(),
        };
        manifest::write_json_atomic(&sdir.join(SHARD_MANIFEST), &fresh).map_err(jerr(dir))?;
    }
    // An empty record before journal.json: every journal made by receive has one, which is
    // how receive tells it from a capture's journal.
    let state = ReceivedState {
        format_version: format::FORMAT_VERSION,
        journal_id: jm.journal_id.clone().unwrap_or_default(),
        shipments: Vec::new(),
    };
    manifest::write_json_atomic(&dir.join(RECEIVED_FILE), &state).map_err(jerr(dir))?;
    format::sync_dir(dir)?;
    manifest::write_json_atomic(&dir.join(JOURNAL_MANIFEST), jm).map_err(jerr(dir))
}
