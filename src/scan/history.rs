//! `shake inspect DIR --history KEY`: a key's life through the journal — its snapshot value(s),
//! then every command that touched it, with position and capture time — so an auditor can
//! answer "who changed this and when". Keys of commands come from Redis' own key specs
//! ([`crate::commands`]); a command the table does not know is listed when any argument equals
//! the key, and marked as such.

use crate::journal::{self, Record, RecoveryMode, ShardReader};
use crate::rdb::{Flavor, ObjectType};
use serde::Serialize;
use std::path::Path;

/// One event of a key's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    /// Shard.
    pub shard: String,
    /// Position `epoch:offset.seq`.
    pub position: String,
    /// Capture time (ms since the Unix epoch) of stream events.
    pub time_ms: Option<u64>,
    /// Database.
    pub db: u32,
    /// `snapshot`, `command`, or `transaction` (a command inside MULTI…EXEC).
    pub event: String,
    /// The command, arguments rendered as text (`\xNN` for other bytes).
    pub argv: Vec<String>,
    /// For snapshot events: type, expiry and decoded value.
    pub value: Option<serde_json::Value>,
    /// True when the command is not in the key-spec table and was matched on any argument.
    pub keys_guessed: bool,
}

fn text(argv: &[Vec<u8>]) -> Vec<String> {
    argv.iter().map(|a| crate::rdb::json::text(a)).collect()
}

/// Whether `argv` touches `key`; the flag says the answer was a guess.
fn touches(argv: &[Vec<u8>], key: &[u8]) -> Option<bool> {
    match crate::commands::keys(argv) {
        Some(keys) => keys.contains(&key).then_some(false),
        None => argv[1..].iter().any(|a| a == key).then_some(true),
    }
}

/// The history of `key` (in database `db`, or any) across every shard of the journal.
pub fn history(dir: &Path, key: &[u8], db: Option<u32>) -> journal::Result<Vec<HistoryItem>> {
    let manifest = journal::read_journal(dir)?;
    let mut out = Vec::new();
    for shard in &manifest.shards {
        let reader = ShardReader::open(dir, &shard.name, RecoveryMode::Refuse)?;
        let mut flavor = Flavor::Redis;
        for entry in super::whole::whole_keys(reader.entries()) {
            let e = entry?;
            let pos = format!(
                "{}:{}.{}",
                e.position.epoch, e.position.offset, e.position.seq
            );
            let db_ok = |d: u32| db.is_none_or(|want| want == d);
            match e.record {
                Record::SnapshotBegin(b) => {
                    flavor = if b.rdb_version >= 80 {
                        Flavor::Valkey
                    } else {
                        Flavor::Redis
                    };
                }
                Record::Key(k) if k.key == key && db_ok(k.db) => {
                    let t = ObjectType::from_byte(k.type_id, flavor);
                    let decoded = t.and_then(|t| {
                        crate::rdb::json::to_json(t, bytes::Bytes::from(k.value)).ok()
                    });
                    out.push(HistoryItem {
                        shard: shard.name.clone(),
                        position: pos,
                        time_ms: None,
                        db: k.db,
                        event: "snapshot".into(),
                        argv: vec![],
                        value: Some(serde_json::json!({
                            "type": t.map(|t| t.kind().name()).unwrap_or("unknown"),
                            "encoding": t.map(|t| t.encoding()).unwrap_or("unknown"),
                            "expire_ms": k.expire_ms,
                            "value": decoded.map(|d| d.value),
                        })),
                        keys_guessed: false,
                    });
                }
                Record::Command(c) if db_ok(c.db) => {
                    if let Some(guessed) = touches(&c.argv, key) {
                        out.push(HistoryItem {
                            shard: shard.name.clone(),
                            position: pos,
                            time_ms: Some(c.time_ms),
                            db: c.db,
                            event: "command".into(),
                            argv: text(&c.argv),
                            value: None,
                            keys_guessed: guessed,
                        });
                    }
                }
                Record::Transaction(t) => {
                    let mut cur = t.db;
                    for argv in &t.commands {
                        if let Some(n) = crate::capture::stream::select_db(argv) {
                            cur = n;
                            continue;
                        }
                        if db_ok(cur)
                            && let Some(guessed) = touches(argv, key)
                        {
                            out.push(HistoryItem {
                                shard: shard.name.clone(),
                                position: pos.clone(),
                                time_ms: Some(t.time_ms),
                                db: cur,
                                event: "transaction".into(),
                                argv: text(argv),
                                value: None,
                                keys_guessed: guessed,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
