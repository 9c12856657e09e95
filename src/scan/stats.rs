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

/// A fast hash for short byte strings (command names) and small integers: the default SipHash
/// costs more than everything else done per command. Not DoS-resistant, which a scan of one's
/// own journal does not need: a damaged or hostile journal only makes the scan slower.
#[derive(Default, Clone, Copy)]
struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
        self.0 = h;
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes its bucket from the low bits and its tag
        // from the top seven.
        self.0 ^ (self.0 >> 29)
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<NameHasher>>;

/// Databases counted in an array (indexed by number) rather than a map.
const SMALL_DBS: usize = 64;

/// Per-worker accumulator: snapshot figures are kept per epoch until the merge picks one.
///
/// Everything touched per record is an array index or a lookup with a cheap hash: a scan
/// looks at millions of records, and the default hasher over command names and per-kind
/// string keys used to cost as much as parsing the records.
#[derive(Default)]
struct Acc {
    /// Records per [`RecordRef`] variant, in [`KIND_NAMES`] order.
    records: [u64; KIND_NAMES.len()],
    /// Snapshot keys per `(epoch, db, type id)`; type ids become kind names at the end.
    snapshot: FastMap<(u64, u32, u8), TypeCounts>,
    complete_epochs: Vec<u64>,
    /// Per command name as stored (upper-cased only when it holds a lower-case letter).
    commands: FastMap<Vec<u8>, CommandCounts>,
    /// Commands per db below [`SMALL_DBS`] (empty until the first command).
    per_small_db: Vec<u64>,
    per_db: FastMap<u32, u64>,
    transactions: u64,
    largest_tx: Vec<BigTransaction>,
    time: Option<(u64, u64)>,
    big: HashMap<u64, HashMap<&'static str, Vec<BigKey>>>,
}

/// [`RecordRef::kind_name`] of each variant, indexed by [`kind_index`].
const KIND_NAMES: [&str; 9] = [
    "marker",
    "snapshot_begin",
    "key",
    "value_chunk",
    "function_library",
    "module_aux",
    "snapshot_end",
    "command",
    "transaction",
];

fn kind_index(r: &RecordRef<'_>) -> usize {
    match r {
        RecordRef::Marker(_) => 0,
        RecordRef::SnapshotBegin(_) => 1,
        RecordRef::Key(_) => 2,
        RecordRef::ValueChunk(_) => 3,
        RecordRef::FunctionLibrary(_) => 4,
        RecordRef::ModuleAux(_) => 5,
        RecordRef::SnapshotEnd(_) => 6,
        RecordRef::Command(_) => 7,
        RecordRef::Transaction(_) => 8,
    }
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
        let c = match self.commands.get_mut(name) {
            Some(c) => c,
            None => self.commands.entry(name.to_vec()).or_default(),
        };
        c.count += 1;
        c.bytes += bytes;
        self.add_db(db, 1);
    }

    fn add_db(&mut self, db: u32, n: u64) {
        match self.per_small_db.get_mut(db as usize) {
            Some(m) => *m += n,
            None if (db as usize) < SMALL_DBS => {
                self.per_small_db.resize(SMALL_DBS, 0);
                self.per_small_db[db as usize] += n;
            }
            None => *self.per_db.entry(db).or_default() += n,
        }
    }

    fn time(&mut self, t: u64) {
        self.time = Some(match self.time {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
    }

    fn entry(&mut self, e: &EntryRef<'_>, big_n: usize) {
        self.records[kind_index(&e.record)] += 1;
        let epoch = e.position.epoch;
        match &e.record {
            RecordRef::SnapshotEnd(_) => self.complete_epochs.push(epoch),
            RecordRef::Key(k) => {
                let c = self.snapshot.entry((epoch, k.db, k.type_id)).or_default();
                let len = k.value_len.max(k.value.0.len() as u64);
                c.keys += 1;
                c.expiring += u64::from(k.expire_ms.is_some());
                c.bytes += len;
                if big_n == 0 {
                    return;
                }
                // The flavor is known once the merge sees SnapshotBegin; type ids below 22
                // mean the same in both, which covers every kind but the newest hashes.
                let kind = kind_name(k.type_id, Flavor::Redis);
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

    /// Commands per db, whichever way they were counted.
    fn per_db(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.per_small_db
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(db, n)| (db as u32, *n))
            .chain(self.per_db.iter().map(|(db, n)| (*db, *n)))
    }

    fn merge(mut self, other: Acc, big_n: usize) -> Acc {
        for (db, n) in other.per_db() {
            self.add_db(db, n);
        }
        for (mine, theirs) in self.records.iter_mut().zip(other.records) {
            *mine += theirs;
        }
        for (k, v) in other.snapshot {
            let c = self.snapshot.entry(k).or_default();
            c.keys += v.keys;
            c.expiring += v.expiring;
            c.bytes += v.bytes;
        }
        self.complete_epochs.extend(other.complete_epochs);
        for (k, v) in other.commands {
            let c = self.commands.entry(k).or_default();
            c.count += v.count;
            c.bytes += v.bytes;
        }
        self.transactions += other.transactions;
        for t in other.largest_tx {
            push_top(&mut self.largest_tx, t, 5, |t| t.commands as u64);
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
    // Borrowed records straight from each decompressed frame, looked at in place: no
    // allocation per argument, per command or per frame's list of entries.
    let acc = reader
        .par_frames_raw()
        .try_fold(Acc::default, |mut acc, item| {
            let (frame, raw) = item?;
            journal::frame::for_each_entry_ref(&frame.header, &raw, |e| acc.entry(e, big_n))
                .map_err(|e| journal::Error::Corruption {
                    file: reader.segment_paths()[frame.segment].to_path_buf(),
                    offset: frame.offset,
                    what: e.to_string(),
                })?;
            Ok::<_, journal::Error>(acc)
        })
        .try_reduce(Acc::default, |a, b| Ok(a.merge(b, big_n)))?;
    let snapshot_epoch = acc.complete_epochs.iter().copied().max();
    // Dangerous commands are counted under their upper-case name like every other.
    let dangerous = DANGEROUS
        .iter()
        .filter_map(|d| {
            let n = acc.commands.get(d.as_bytes())?.count;
            Some((d.to_string(), n))
        })
        .collect();
    let mut out = ShardStats {
        shard: shard.to_string(),
        epochs: reader.manifest().epochs.len(),
        first: reader.first().map(pos),
        last: reader.last().map(pos),
        records: KIND_NAMES
            .iter()
            .zip(acc.records)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        snapshot_epoch,
        commands_per_db: acc.per_db().collect(),
        commands: acc
            .commands
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect(),
        transactions: acc.transactions,
        largest_transactions: acc.largest_tx,
        dangerous,
        time_range_ms: acc.time,
        ..ShardStats::default()
    };
    if let Some(epoch) = snapshot_epoch {
        for (&(_, db, type_id), c) in acc.snapshot.iter().filter(|((e, _, _), _)| *e == epoch) {
            let kind = kind_name(type_id, Flavor::Redis);
            let t = out
                .snapshot
                .entry(db)
                .or_default()
                .entry(kind.to_string())
                .or_default();
            t.keys += c.keys;
            t.expiring += c.expiring;
            t.bytes += c.bytes;
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
