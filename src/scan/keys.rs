//! `shake inspect DIR --keys GLOB [--key-regex RE] [--type T] [--db N]`: the keys of a
//! journal's newest snapshot that match, with type, db, size, element count and expiry
//! (`--format jsonl` adds the decoded value), streamed in journal order so memory stays bounded.

use super::filter::Criteria;
use crate::journal::{self, Position, Record, RecoveryMode, ShardReader};
use crate::rdb::{Flavor, ObjectType, Value};
use serde::Serialize;
use std::path::Path;

/// One listed key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Shard.
    pub shard: String,
    /// Database.
    pub db: u32,
    /// Key (`\xNN` for non-UTF-8 bytes).
    pub key: String,
    /// Type.
    pub kind: String,
    /// Encoding.
    pub encoding: String,
    /// Encoded size in bytes.
    pub size: u64,
    /// Elements (list, set, zset, hash, stream entries); string length for strings.
    pub elements: Option<u64>,
    /// Absolute expiry, ms since the Unix epoch.
    pub expire_ms: Option<i64>,
    /// The decoded value, when asked for.
    pub value: Option<serde_json::Value>,
}

fn element_count(t: ObjectType, value: &[u8]) -> Option<u64> {
    Some(
        match crate::rdb::decode(t, bytes::Bytes::copy_from_slice(value)).ok()? {
            Value::String(s) => s.len() as u64,
            Value::List(e) | Value::Set(e) => e.count() as u64,
            Value::Zset(z) => z.count() as u64,
            Value::Hash(h) => h.count() as u64,
            Value::Stream(s) => s.length,
            Value::Module(_) => return None,
        },
    )
}

/// Calls `emit` for every selected key of each shard's newest snapshot. Returns how many keys
/// were listed.
pub fn list_keys(
    dir: &Path,
    sel: &Criteria,
    with_values: bool,
    mut emit: impl FnMut(KeyInfo) -> std::io::Result<()>,
) -> Result<u64, journal::Error> {
    let manifest = journal::read_journal(dir)?;
    let mut n = 0;
    for shard in &manifest.shards {
        let reader = ShardReader::open(dir, &shard.name, RecoveryMode::Refuse)?;
        let Some(epoch) = reader.manifest().epochs.last() else {
            continue;
        };
        let from = Position::new(epoch.epoch, epoch.start_offset, 0);
        let mut flavor = Flavor::Redis;
        for entry in super::whole::whole_keys(reader.entries_from(from)) {
            let e = entry?;
            if e.position.epoch != epoch.epoch {
                break;
            }
            match e.record {
                Record::SnapshotBegin(b) => {
                    flavor = if b.rdb_version >= 80 {
                        Flavor::Valkey
                    } else {
                        Flavor::Redis
                    }
                }
                Record::Key(k) => {
                    let t = ObjectType::from_byte(k.type_id, flavor);
                    let kind = t.map(|t| t.kind().name()).unwrap_or("unknown");
                    if !(sel.key_ok(&k.key)
                        && sel.db_ok(k.db)
                        && (sel.types.is_empty() || sel.types.iter().any(|x| x == kind)))
                    {
                        continue;
                    }
                    let value = match (t, with_values) {
                        (Some(t), true) => {
                            crate::rdb::json::to_json(t, bytes::Bytes::copy_from_slice(&k.value))
                                .ok()
                                .map(|j| j.value)
                        }
                        _ => None,
                    };
                    emit(KeyInfo {
                        shard: shard.name.clone(),
                        db: k.db,
                        key: crate::rdb::json::text(&k.key),
                        kind: kind.to_string(),
                        encoding: t.map(|t| t.encoding()).unwrap_or("unknown").to_string(),
                        size: k.value_len.max(k.value.len() as u64),
                        elements: t.and_then(|t| element_count(t, &k.value)),
                        expire_ms: k.expire_ms,
                        value,
                    })
                    .map_err(|e| journal::Error::Invalid(format!("writing the listing: {e}")))?;
                    n += 1;
                }
                Record::SnapshotEnd(_) | Record::Command(_) | Record::Transaction(_) => break,
                _ => {}
            }
        }
    }
    Ok(n)
}
