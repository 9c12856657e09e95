//! `shake filter DIR --out DIR2`: a complete, valid, verifiable journal holding only what was
//! selected, positions preserved.
//!
//! Rules (also in `docs/cli.md`):
//! - Snapshot keys pass when their key matches (include globs / regex, minus excludes), their
//!   db is selected, and their type is selected.
//! - A command passes when *every* key it names passes (keys come from Redis' own key specs,
//!   [`crate::commands`]); a command naming both selected and unselected keys is dropped and
//!   counted, since keeping it would carry unselected data across. Keyless commands (FLUSHDB,
//!   FUNCTION LOAD, PUBLISH…) pass when their db is selected. A command missing from the key
//!   table cannot be judged and is dropped and counted by name.
//! - A MULTI…EXEC group keeps the commands that pass, still as one atomic group; a group with
//!   none left is dropped whole.
//! - `--map-db FROM:TO` renumbers keys, commands and SELECTs inside groups.
//! - `--until-offset` / `--until-time` stop at that point of the stream.

use super::glob;
use crate::capture::stream::select_db;
use crate::journal::{
    self, Command, JournalManifest, Marker, Record, RecoveryMode, ShardReader, ShardWriter, Source,
    Transaction, WriterOptions,
};
use crate::rdb::{Flavor, ObjectType};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// Include globs (empty: every key, unless `key_regex` is set).
    pub keys: Vec<String>,
    /// Exclude globs.
    pub exclude_keys: Vec<String>,
    /// Include regex.
    pub key_regex: Option<regex::bytes::Regex>,
    /// Databases to keep (empty: all).
    pub dbs: Vec<u32>,
    /// Renumbering of databases.
    pub map_db: HashMap<u32, u32>,
    /// Types to keep for snapshot keys (`string`, `list`, …; empty: all).
    pub types: Vec<String>,
    /// Command names to drop (upper case).
    pub exclude_commands: Vec<String>,
    /// Stop after this replication offset.
    pub until_offset: Option<u64>,
    /// Stop after this capture time (ms since the Unix epoch).
    pub until_time_ms: Option<u64>,
}

impl Criteria {
    /// True when `key` is selected by the key patterns.
    pub fn key_ok(&self, key: &[u8]) -> bool {
        let included = (self.keys.is_empty() && self.key_regex.is_none())
            || self.keys.iter().any(|g| glob::matches(g.as_bytes(), key))
            || self.key_regex.as_ref().is_some_and(|r| r.is_match(key));
        included
            && !self
                .exclude_keys
                .iter()
                .any(|g| glob::matches(g.as_bytes(), key))
    }

    /// True when `db` is selected.
    pub fn db_ok(&self, db: u32) -> bool {
        self.dbs.is_empty() || self.dbs.contains(&db)
    }

    fn map(&self, db: u32) -> u32 {
        self.map_db.get(&db).copied().unwrap_or(db)
    }

    /// A human description, recorded in the output manifest.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.keys.is_empty() {
            parts.push(format!("keys {}", self.keys.join(",")));
        }
        if let Some(r) = &self.key_regex {
            parts.push(format!("key-regex {}", r.as_str()));
        }
        if !self.exclude_keys.is_empty() {
            parts.push(format!("exclude-keys {}", self.exclude_keys.join(",")));
        }
        if !self.dbs.is_empty() {
            parts.push(format!("db {:?}", self.dbs));
        }
        if !self.map_db.is_empty() {
            parts.push(format!("map-db {:?}", self.map_db));
        }
        if !self.types.is_empty() {
            parts.push(format!("type {}", self.types.join(",")));
        }
        if !self.exclude_commands.is_empty() {
            parts.push(format!(
                "exclude-commands {}",
                self.exclude_commands.join(",")
            ));
        }
        if let Some(o) = self.until_offset {
            parts.push(format!("until-offset {o}"));
        }
        if let Some(t) = self.until_time_ms {
            parts.push(format!("until-time-ms {t}"));
        }
        if parts.is_empty() {
            "everything".into()
        } else {
            parts.join("; ")
        }
    }
}

/// What a filter run kept and dropped, per shard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilterReport {
    /// Snapshot keys kept / dropped.
    pub keys_kept: u64,
    /// Snapshot keys dropped.
    pub keys_dropped: u64,
    /// Stream commands kept (inside groups too).
    pub commands_kept: u64,
    /// Stream commands dropped by the criteria.
    pub commands_dropped: u64,
    /// Commands dropped because they named selected and unselected keys.
    pub commands_mixed: u64,
    /// Commands dropped because the key table does not know them, by name.
    pub commands_unknown: BTreeMap<String, u64>,
    /// Groups dropped whole.
    pub transactions_dropped: u64,
    /// Records after the cut-off, not copied.
    pub records_after_cutoff: u64,
}

/// A filter failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the source or writing the output failed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// The output directory already exists.
    #[error("{0} already exists: give a new directory for the filtered journal")]
    OutputExists(String),
}

enum Verdict {
    Keep,
    Drop,
    Mixed,
    Unknown(String),
}

fn command_verdict(c: &Criteria, db: u32, argv: &[Vec<u8>]) -> Verdict {
    let name = argv
        .first()
        .map(|n| String::from_utf8_lossy(n).to_uppercase())
        .unwrap_or_default();
    if c.exclude_commands.contains(&name) || !c.db_ok(db) {
        return Verdict::Drop;
    }
    let Some(keys) = crate::commands::keys(argv) else {
        return Verdict::Unknown(name);
    };
    let pass = keys.iter().filter(|k| c.key_ok(k)).count();
    if pass == keys.len() {
        Verdict::Keep
    } else if pass == 0 {
        Verdict::Drop
    } else {
        Verdict::Mixed
    }
}

fn remap_select(c: &Criteria, argv: &mut [Vec<u8>]) {
    if let Some(db) = select_db(argv) {
        argv[1] = c.map(db).to_string().into_bytes();
    }
}

/// Filters the journal in `src` into a new journal in `out`.
pub fn filter(
    src: &Path,
    out: &Path,
    c: &Criteria,
) -> Result<BTreeMap<String, FilterReport>, Error> {
    if out.exists() {
        return Err(Error::OutputExists(out.display().to_string()));
    }
    let manifest = journal::read_journal(src)?;
    let desc = format!(
        "filtered by shake {} from {} ({}: {}); {}",
        env!("CARGO_PKG_VERSION"),
        src.display(),
        manifest.source.kind,
        manifest.source.description,
        c.describe()
    );
    journal::create(
        out,
        &JournalManifest::new(
            crate::units::now_ms(),
            Source {
                kind: manifest.source.kind.clone(),
                description: desc,
            },
            manifest.shards.clone(),
        ),
    )?;
    let mut reports = BTreeMap::new();
    for shard in &manifest.shards {
        reports.insert(shard.name.clone(), filter_shard(src, out, &shard.name, c)?);
    }
    Ok(reports)
}

fn filter_shard(src: &Path, out: &Path, shard: &str, c: &Criteria) -> Result<FilterReport, Error> {
    let reader = ShardReader::open(src, shard, RecoveryMode::Refuse)?;
    let spans: HashMap<(u64, String), u64> = reader
        .manifest()
        .epochs
        .iter()
        .flat_map(|e| {
            e.replids
                .iter()
                .map(move |r| ((e.epoch, r.replid.clone()), r.from_offset))
        })
        .collect();
    let mut w = ShardWriter::open(out, shard, WriterOptions::default())?;
    let mut rep = FilterReport::default();
    let mut flavor = Flavor::Redis;
    let mut keeping_key = false;
    let mut epoch_keys = 0u64;
    for entry in reader.entries() {
        let e = entry?;
        let p = e.position;
        let past = c.until_offset.is_some_and(|o| {
            p.offset > o && !matches!(e.record, Record::Key(_) | Record::ValueChunk(_))
        }) || e
            .record
            .time_ms()
            .is_some_and(|t| c.until_time_ms.is_some_and(|u| t > u));
        if past && matches!(e.record, Record::Command(_) | Record::Transaction(_)) {
            rep.records_after_cutoff += 1;
            continue;
        }
        match e.record {
            Record::Marker(Marker::EpochStart { .. }) => {} // begin_snapshot writes it
            Record::Marker(Marker::ReplId { replid, replid2 }) => {
                let from = spans
                    .get(&(p.epoch, replid.clone()))
                    .copied()
                    .unwrap_or(p.offset + 1);
                w.replid_changed(from, replid, replid2)?;
            }
            Record::SnapshotBegin(b) => {
                flavor = if b.rdb_version >= 80 {
                    Flavor::Valkey
                } else {
                    Flavor::Redis
                };
                let replid2 = reader
                    .manifest()
                    .epochs
                    .iter()
                    .find(|ep| ep.epoch == p.epoch)
                    .and_then(|ep| ep.replids.first())
                    .and_then(|r| r.replid2.clone());
                epoch_keys = 0;
                let epoch = w.begin_snapshot(b, replid2)?;
                if epoch != p.epoch {
                    return Err(journal::Error::Invalid(format!(
                        "{shard}: epoch {} of the source became {epoch}; filter keeps epochs as they are",
                        p.epoch
                    ))
                    .into());
                }
            }
            Record::Key(mut k) => {
                let kind = ObjectType::from_byte(k.type_id, flavor)
                    .map(|t| t.kind().name())
                    .unwrap_or("unknown");
                keeping_key = c.key_ok(&k.key)
                    && c.db_ok(k.db)
                    && (c.types.is_empty() || c.types.iter().any(|t| t == kind));
                if keeping_key {
                    k.db = c.map(k.db);
                    w.append(p, &Record::Key(k))?;
                    rep.keys_kept += 1;
                    epoch_keys += 1;
                } else {
                    rep.keys_dropped += 1;
                }
            }
            Record::ValueChunk(ch) => {
                if keeping_key {
                    w.append(p, &Record::ValueChunk(ch))?;
                }
            }
            Record::Command(cmd) => match command_verdict(c, cmd.db, &cmd.argv) {
                Verdict::Keep => {
                    w.append(
                        p,
                        &Record::Command(Command {
                            db: c.map(cmd.db),
                            ..cmd
                        }),
                    )?;
                    rep.commands_kept += 1;
                }
                Verdict::Drop => rep.commands_dropped += 1,
                Verdict::Mixed => rep.commands_mixed += 1,
                Verdict::Unknown(name) => *rep.commands_unknown.entry(name).or_default() += 1,
            },
            Record::Transaction(t) => {
                let mut db = t.db;
                let mut kept = Vec::new();
                for mut argv in t.commands {
                    if argv
                        .first()
                        .is_some_and(|n| n.eq_ignore_ascii_case(b"SELECT"))
                    {
                        db = select_db(&argv).unwrap_or(db);
                        remap_select(c, &mut argv);
                        kept.push(argv);
                        continue;
                    }
                    match command_verdict(c, db, &argv) {
                        Verdict::Keep => {
                            rep.commands_kept += 1;
                            kept.push(argv);
                        }
                        Verdict::Drop => rep.commands_dropped += 1,
                        Verdict::Mixed => rep.commands_mixed += 1,
                        Verdict::Unknown(name) => {
                            *rep.commands_unknown.entry(name).or_default() += 1
                        }
                    }
                }
                let has_data = kept
                    .iter()
                    .any(|a| !a.first().is_some_and(|n| n.eq_ignore_ascii_case(b"SELECT")));
                if has_data {
                    w.append(
                        p,
                        &Record::Transaction(Transaction {
                            db: c.map(t.db),
                            time_ms: t.time_ms,
                            commands: kept,
                        }),
                    )?;
                } else {
                    rep.transactions_dropped += 1;
                }
            }
            Record::SnapshotEnd(mut end) => {
                // The count of what this journal holds; the RDB checksum verdict stays the
                // source's.
                end.key_count = epoch_keys;
                w.append(p, &Record::SnapshotEnd(end))?;
            }
            other => w.append(p, &other)?,
        }
    }
    w.close()?;
    Ok(rep)
}
