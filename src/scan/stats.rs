//! `shake inspect DIR --stats`, `--commands` and `--big-keys`: one parallel pass per shard.

use crate::journal::record_ref::{EntryRef, RecordRef};
use crate::journal::{self, RecoveryMode, ShardReader};
use crate::rdb::{Flavor, ObjectType};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Commands an auditor wants to see flagged: they erase or move data wholesale, or load code.
pub const DANGEROUS: [&str; 9] = [
    "FLUSHALL", "FLUSHDB", "SWAPDB", "MIGRATE", "SCRIPT", "FUNCTION", "EVAL", "EVALSHA", "FCALL",
];

/// Counts for one (db, type) of a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TypeCounts {
    /// Keys.
    pub keys: u64,
    /// Keys with an expiry.
    pub expiring: u64,
    /// Encoded value bytes.
    pub bytes: u64,
}

/// Statistics of one command name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommandCounts {
    /// Occurrences (inside transactions too).
    pub count: u64,
    /// Argument bytes.
    pub bytes: u64,
}

/// A key of the big-keys report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BigKey {
    /// Database.
    pub db: u32,
    /// Key (lossy UTF-8, non-UTF-8 bytes as `\xNN`).
    pub key: String,
    /// Type.
    pub kind: String,
    /// Encoded size in bytes.
    pub bytes: u64,
}

/// A large transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BigTransaction {
    /// Commands in it.
    pub commands: usize,
    /// Its position `epoch:offset`.
    pub position: String,
}

/// Everything one shard's scan found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardStats {
    /// Shard name.
    pub shard: String,
    /// Epochs in the shard manifest.
    pub epochs: usize,
    /// First and last positions (`epoch:offset.seq`).
    pub first: Option<String>,
    /// Last position.
    pub last: Option<String>,
    /// Records per kind.
    pub records: BTreeMap<String, u64>,
    /// The epoch whose snapshot the `snapshot` figures describe (the newest complete one).
    pub snapshot_epoch: Option<u64>,
    /// Snapshot keys per db and type.
    pub snapshot: BTreeMap<u32, BTreeMap<String, TypeCounts>>,
    /// Stream commands per name (upper case).
    pub commands: BTreeMap<String, CommandCounts>,
    /// Stream commands per db.
    pub commands_per_db: BTreeMap<u32, u64>,
    /// Transactions (MULTI…EXEC groups).
    pub transactions: u64,
    /// The largest transactions.
    pub largest_transactions: Vec<BigTransaction>,
    /// Dangerous commands seen, by name.
    pub dangerous: BTreeMap<String, u64>,
    /// Capture time range of stream records, ms since the Unix epoch.
    pub time_range_ms: Option<(u64, u64)>,
    /// Largest snapshot keys by encoded size, per type.
    pub big_keys: BTreeMap<String, Vec<BigKey>>,
}

/// The whole journal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JournalStats {
    /// Source description from the manifest.
    pub source: String,
    /// Per shard.
    pub shards: Vec<ShardStats>,
}

/// Per-worker accumulator: snapshot figures are kept per epoch until the merge picks one.
#[derive(Default)]
struct Acc {
    records: HashMap<&'static str, u64>,
    snapshot: HashMap<u64, HashMap<(u32, &'static str), TypeCounts>>,
    complete_epochs: Vec<u64>,
    commands: HashMap<Vec<u8>, CommandCounts>,
    per_db: HashMap<u32, u64>,
    transactions: u64,
    largest_tx: Vec<BigTransaction>,
    dangerous: HashMap<String, u64>,
    time: Option<(u64, u64)>,
    big: HashMap<u64, HashMap<&'static str, Vec<BigKey>>>,
}

fn kind_name(type_id: u8, flavor: Flavor) -> &'static str {
    ObjectType::from_byte(type_id, flavor)
        .map(|t| t.kind().name())
        .unwrap_or("unknown")
}

fn push_top<T>(v: &mut Vec<T>, item: T, n: usize, key: impl Fn(&T) -> u64) {
    if n == 0 {
        return;
    }
    v.push(item);
    v.sort_by_key(|x| std::cmp::Reverse(key(x)));
    v.truncate(n);
}

impl Acc {
    fn command(&mut self, db: u32, argv: &[journal::record_ref::BytesRef<'_>]) {
        let raw = argv.first().map(|n| n.0).unwrap_or_default();
        let bytes: u64 = argv.iter().map(|a| a.0.len() as u64).sum();
        // Counted by upper-case name without allocating for the usual, already upper-case one.
        let upper;
        let name: &[u8] = if raw.iter().any(u8::is_ascii_lowercase) {
            upper = raw.to_ascii_uppercase();
            &upper
        } else {
            raw
        };
        if let Some(d) = DANGEROUS.iter().find(|d| d.as_bytes() == name) {
            *self.dangerous.entry(d.to_string()).or_default() += 1;
        }
        let c = match self.commands.get_mut(name) {
            Some(c) => c,
            None => self.commands.entry(name.to_vec()).or_default(),
        };
        c.count += 1;
        c.bytes += bytes;
        *self.per_db.entry(db).or_default() += 1;
    }

    fn time(&mut self, t: u64) {
        self.time = Some(match self.time {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
    }

    fn entry(&mut self, e: &EntryRef<'_>, big_n: usize) {
        *self.records.entry(e.record.kind_name()).or_default() += 1;
        let epoch = e.position.epoch;
        match &e.record {
            RecordRef::SnapshotEnd(_) => self.complete_epochs.push(epoch),
            RecordRef::Key(k) => {
                // The flavor is known once the merge sees SnapshotBegin; type ids below 22
                // mean the same in both, which covers every kind but the newest hashes.
                let kind = kind_name(k.type_id, Flavor::Redis);
                let c = self
                    .snapshot
                    .entry(epoch)
                    .or_default()
                    .entry((k.db, kind))
                    .or_default();
                let len = k.value_len.max(k.value.0.len() as u64);
                c.keys += 1;
                c.expiring += u64::from(k.expire_ms.is_some());
                c.bytes += len;
                if big_n == 0 {
                    return;
                }
                let big = self.big.entry(epoch).or_default().entry(kind).or_default();
                if big.len() < big_n || big.last().is_some_and(|b| b.bytes < len) {
                    push_top(
                        big,
                        BigKey {
                            db: k.db,
                            key: crate::rdb::json::text(k.key.0),
                            kind: kind.to_string(),
                            bytes: len,
                        },
                        big_n,
                        |b| b.bytes,
                    );
                }
            }
            RecordRef::Command(c) => {
                self.command(c.db, &c.argv);
                self.time(c.time_ms);
            }
            RecordRef::Transaction(t) => {
                self.transactions += 1;
                let mut db = t.db;
                for argv in &t.commands {
                    if let Some(n) = crate::capture::stream::select_db(argv) {
                        db = n;
                    }
                    self.command(db, argv);
                }
                self.time(t.time_ms);
                push_top(
                    &mut self.largest_tx,
                    BigTransaction {
                        commands: t.commands.len(),
                        position: format!("{}:{}", e.position.epoch, e.position.offset),
                    },
                    5,
                    |t| t.commands as u64,
                );
            }
            _ => {}
        }
    }

    fn merge(mut self, other: Acc, big_n: usize) -> Acc {
        for (k, v) in other.records {
            *self.records.entry(k).or_default() += v;
        }
        for (epoch, m) in other.snapshot {
            let mine = self.snapshot.entry(epoch).or_default();
            for (k, v) in m {
                let c = mine.entry(k).or_default();
                c.keys += v.keys;
                c.expiring += v.expiring;
                c.bytes += v.bytes;
            }
        }
        self.complete_epochs.extend(other.complete_epochs);
        for (k, v) in other.commands {
            let c = self.commands.entry(k).or_default();
            c.count += v.count;
            c.bytes += v.bytes;
        }
        for (k, v) in other.per_db {
            *self.per_db.entry(k).or_default() += v;
        }
        self.transactions += other.transactions;
        for t in other.largest_tx {
            push_top(&mut self.largest_tx, t, 5, |t| t.commands as u64);
        }
        for (k, v) in other.dangerous {
            *self.dangerous.entry(k).or_default() += v;
        }
        if let Some((a, b)) = other.time {
            self.time(a);
            self.time(b);
        }
        for (epoch, kinds) in other.big {
            let mine = self.big.entry(epoch).or_default();
            for (kind, keys) in kinds {
                let list = mine.entry(kind).or_default();
                for k in keys {
                    push_top(list, k, big_n, |b| b.bytes);
                }
            }
        }
        self
    }
}

fn pos(p: journal::Position) -> String {
    format!("{}:{}.{}", p.epoch, p.offset, p.seq)
}

/// Scans one shard with rayon.
pub fn scan_shard(journal_dir: &Path, shard: &str, big_n: usize) -> journal::Result<ShardStats> {
    let reader = ShardReader::open(journal_dir, shard, RecoveryMode::Refuse)?;
    // Borrowed records straight from each decompressed frame: no allocation per argument.
    let acc = reader
        .par_frames_raw()
        .try_fold(Acc::default, |mut acc, item| {
            let (frame, raw) = item?;
            let entries = journal::frame::parse_entries_ref(&frame.header, &raw).map_err(|e| {
                journal::Error::Corruption {
                    file: reader.segment_paths()[frame.segment].to_path_buf(),
                    offset: frame.offset,
                    what: e.to_string(),
                }
            })?;
            for e in &entries {
                acc.entry(e, big_n);
            }
            Ok::<_, journal::Error>(acc)
        })
        .try_reduce(Acc::default, |a, b| Ok(a.merge(b, big_n)))?;
    let snapshot_epoch = acc.complete_epochs.iter().copied().max();
    let mut out = ShardStats {
        shard: shard.to_string(),
        epochs: reader.manifest().epochs.len(),
        first: reader.first().map(pos),
        last: reader.last().map(pos),
        records: acc
            .records
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        snapshot_epoch,
        commands: acc
            .commands
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect(),
        commands_per_db: acc.per_db.into_iter().collect(),
        transactions: acc.transactions,
        largest_transactions: acc.largest_tx,
        dangerous: acc.dangerous.into_iter().collect(),
        time_range_ms: acc.time,
        ..ShardStats::default()
    };
    if let Some(epoch) = snapshot_epoch {
        for ((db, kind), c) in acc.snapshot.get(&epoch).cloned().unwrap_or_default() {
            out.snapshot
                .entry(db)
                .or_default()
                .insert(kind.to_string(), c);
        }
        if let Some(big) = acc.big.get(&epoch) {
            out.big_keys = big
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
        }
    }
    Ok(out)
}

/// Scans every shard of the journal in `dir`.
pub fn scan_journal(dir: &Path, big_n: usize) -> journal::Result<JournalStats> {
    let manifest = journal::read_journal(dir)?;
    let mut shards = Vec::new();
    for s in &manifest.shards {
        shards.push(scan_shard(dir, &s.name, big_n)?);
    }
    Ok(JournalStats {
        source: format!("{}: {}", manifest.source.kind, manifest.source.description),
        shards,
    })
}
