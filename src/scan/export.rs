//! `shake export`: a journal as a RESP command stream (`redis-cli --pipe` input) or as an RDB
//! file of its snapshot.
//!
//! - `resp`: per shard, the newest complete snapshot as `RESTORE key <abs-ms> <payload> ABSTTL
//!   REPLACE` (the payload is the key's exact bytes with the snapshot's RDB version, so the
//!   destination must accept that version — a server of the source's version or newer), then
//!   the commands in order, `SELECT` emitted when the database changes and transactions wrapped
//!   in `MULTI`/`EXEC`. Functions become `FUNCTION LOAD REPLACE`.
//! - `rdb`: the newest complete snapshot of every shard as one RDB file (the shards of a cluster
//!   merged, as a standalone server would hold them), written with the snapshot's RDB version:
//!   the AUX fields, functions, then every key with its expiry, LRU/LFU and exact value bytes,
//!   the EOF opcode and the CRC-64. The state after later stream commands is not computed:
//!   that needs a server (`shake replay` to one, then `SAVE`).
//!
//! - `jsonl`: one JSON object per snapshot key, function and stream command, binary-safe: a
//!   byte string is a JSON string when it is valid UTF-8, otherwise `{"base64": "…"}`; each key
//!   carries its decoded value for reading and its DUMP payload (base64) for an exact way back.
//!
//! Module AUX records cannot be written back byte-exact from what the journal keeps; they are
//! counted and reported, never silently left out.

use crate::journal::{self, Position, Record, RecoveryMode, ShardReader};
use crate::rdb::checksum::Crc64;
use std::io::Write;
use std::path::Path;

/// What an export wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExportSummary {
    /// Snapshot keys written.
    pub keys: u64,
    /// Stream commands written (inside transactions too).
    pub commands: u64,
    /// Function libraries written.
    pub functions: u64,
    /// Module AUX records that could not be written (RDB export).
    pub module_aux_skipped: u64,
    /// RDB version of the output (RDB export).
    pub rdb_version: Option<u32>,
}

/// An export failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// Writing the output failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// The journal has nothing to export in this form.
    #[error("{0}")]
    Invalid(String),
}

fn resp(out: &mut impl Write, argv: &[&[u8]]) -> std::io::Result<()> {
    let mut buf = bytes::BytesMut::new();
    crate::resp::encode_command(argv, &mut buf);
    out.write_all(&buf)
}

/// Emits `SELECT want` unless `want` is already the connection's db.
fn select(out: &mut impl Write, db: &mut Option<u32>, want: u32) -> std::io::Result<()> {
    if *db != Some(want) {
        resp(out, &[b"SELECT", want.to_string().as_bytes()])?;
        *db = Some(want);
    }
    Ok(())
}

/// The newest epoch of a shard with a complete snapshot, and where it starts.
fn snapshot_epoch(reader: &ShardReader) -> Option<Position> {
    reader
        .manifest()
        .epochs
        .last()
        .map(|e| Position::new(e.epoch, e.start_offset, 0))
}

/// Writes the journal in `dir` as RESP commands.
pub fn export_resp(dir: &Path, out: &mut impl Write) -> Result<ExportSummary, Error> {
    let manifest = journal::read_journal(dir)?;
    let mut sum = ExportSummary::default();
    for shard in &manifest.shards {
        let reader = ShardReader::open(dir, &shard.name, RecoveryMode::Refuse)?;
        let Some(from) = snapshot_epoch(&reader) else {
            continue;
        };
        let mut db: Option<u32> = None;
        let mut rdb_version = 0u16;
        for entry in super::whole::whole_keys(reader.entries_from(from)) {
            let e = entry?;
            match e.record {
                Record::SnapshotBegin(b) => rdb_version = b.rdb_version as u16,
                Record::Key(k) => {
                    select(out, &mut db, k.db)?;
                    let payload = crate::rdb::dump::build(k.type_id, &k.value, rdb_version);
                    let ttl = k.expire_ms.unwrap_or(0).max(0).to_string();
                    let mut args: Vec<&[u8]> = vec![b"RESTORE", &k.key, ttl.as_bytes(), &payload];
                    if k.expire_ms.is_some() {
                        args.push(b"ABSTTL");
                    }
                    args.push(b"REPLACE");
                    resp(out, &args)?;
                    sum.keys += 1;
                }
                Record::FunctionLibrary(f) => {
                    resp(out, &[b"FUNCTION", b"LOAD", b"REPLACE", &f.code])?;
                    sum.functions += 1;
                }
                Record::Command(c) => {
                    select(out, &mut db, c.db)?;
                    let args: Vec<&[u8]> = c.argv.iter().map(|a| a.as_slice()).collect();
                    resp(out, &args)?;
                    sum.commands += 1;
                }
                Record::Transaction(t) => {
                    select(out, &mut db, t.db)?;
                    resp(out, &[b"MULTI"])?;
                    for c in &t.commands {
                        let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
                        resp(out, &args)?;
                        sum.commands += 1;
                    }
                    resp(out, &[b"EXEC"])?;
                    // A SELECT inside the group stays in force after it.
                    db = Some(crate::capture::stream::db_after(t.db, &t.commands));
                }
                _ => {}
            }
        }
    }
    out.flush()?;
    Ok(sum)
}

fn rdb_len(out: &mut Vec<u8>, n: u64) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn rdb_string(out: &mut Vec<u8>, s: &[u8]) {
    rdb_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Writes the newest complete snapshot of every shard as one RDB file.
pub fn export_rdb(dir: &Path, out: &mut impl Write) -> Result<ExportSummary, Error> {
    let manifest = journal::read_journal(dir)?;
    let mut sum = ExportSummary::default();
    let mut crc = Crc64::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut emit = |buf: &mut Vec<u8>, out: &mut dyn Write, force: bool| -> std::io::Result<()> {
        if force || buf.len() >= 1 << 20 {
            crc.update(buf);
            out.write_all(buf)?;
            buf.clear();
        }
        Ok(())
    };
    let mut header_written = false;
    let mut current_db: Option<u32> = None;
    for shard in &manifest.shards {
        let reader = ShardReader::open(dir, &shard.name, RecoveryMode::Refuse)?;
        let Some(from) = snapshot_epoch(&reader) else {
            continue;
        };
        let write_key = |k: journal::KeyRecord, buf: &mut Vec<u8>, current_db: &mut Option<u32>| {
            if *current_db != Some(k.db) {
                buf.push(0xFE);
                rdb_len(buf, k.db as u64);
                *current_db = Some(k.db);
            }
            if let Some(ms) = k.expire_ms {
                buf.push(0xFC);
                buf.extend_from_slice(&ms.to_le_bytes());
            }
            if let Some(idle) = k.idle {
                buf.push(0xF8);
                rdb_len(buf, idle);
            }
            if let Some(freq) = k.freq {
                buf.push(0xF9);
                buf.push(freq);
            }
            buf.push(k.type_id);
            rdb_string(buf, &k.key);
            buf.extend_from_slice(&k.value);
        };
        for entry in reader.entries_from(from) {
            let e = entry?;
            if let Record::ValueChunk(c) = &e.record {
                buf.extend_from_slice(&c.data);
                emit(&mut buf, out, false)?;
                continue;
            }
            match e.record {
                Record::SnapshotBegin(b) => {
                    if !header_written {
                        let magic = if b.rdb_version >= 80 {
                            format!("VALKEY{:03}", b.rdb_version)
                        } else {
                            format!("REDIS{:04}", b.rdb_version)
                        };
                        buf.extend_from_slice(magic.as_bytes());
                        for a in &b.aux {
                            buf.push(0xFA);
                            rdb_string(&mut buf, &a.key);
                            rdb_string(&mut buf, &a.value);
                        }
                        header_written = true;
                        sum.rdb_version = Some(b.rdb_version);
                    } else if sum.rdb_version != Some(b.rdb_version) {
                        return Err(Error::Invalid(format!(
                            "{}: shards hold snapshots of different RDB versions ({:?} and {}); export them separately with filter",
                            shard.name, sum.rdb_version, b.rdb_version
                        )));
                    }
                }
                Record::FunctionLibrary(f) => {
                    buf.push(0xF5);
                    rdb_string(&mut buf, &f.code);
                    sum.functions += 1;
                }
                Record::ModuleAux(_) => sum.module_aux_skipped += 1,
                Record::Key(k) => {
                    // Chunks, if any, follow immediately and are appended raw.
                    write_key(k, &mut buf, &mut current_db);
                    sum.keys += 1;
                }
                Record::SnapshotEnd(_) => break,
                _ => {}
            }
            emit(&mut buf, out, false)?;
        }
    }
    if !header_written {
        return Err(Error::Invalid(format!(
            "{}: no snapshot to export",
            dir.display()
        )));
    }
    buf.push(0xFF);
    emit(&mut buf, out, true)?;
    out.write_all(&crc.value().to_le_bytes())?;
    out.flush()?;
    Ok(sum)
}

/// A byte string as JSON, binary-safe: a string when valid UTF-8, else `{"base64": …}`.
pub fn bytes_json(b: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

/// Writes the journal in `dir` as JSON lines.
pub fn export_jsonl(dir: &Path, out: &mut impl Write) -> Result<ExportSummary, Error> {
    use base64::Engine as _;
    let manifest = journal::read_journal(dir)?;
    let mut sum = ExportSummary::default();
    for shard in &manifest.shards {
        let reader = ShardReader::open(dir, &shard.name, RecoveryMode::Refuse)?;
        let Some(from) = snapshot_epoch(&reader) else {
            continue;
        };
        let mut rdb_version = 0u16;
        let mut flavor = crate::rdb::Flavor::Redis;
        let line = |out: &mut dyn Write, v: serde_json::Value| -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")
        };
        for entry in super::whole::whole_keys(reader.entries_from(from)) {
            let e = entry?;
            let pos = format!(
                "{}:{}.{}",
                e.position.epoch, e.position.offset, e.position.seq
            );
            match e.record {
                Record::SnapshotBegin(b) => {
                    rdb_version = b.rdb_version as u16;
                    flavor = if b.rdb_version >= 80 {
                        crate::rdb::Flavor::Valkey
                    } else {
                        crate::rdb::Flavor::Redis
                    };
                }
                Record::Key(k) => {
                    let t = crate::rdb::ObjectType::from_byte(k.type_id, flavor);
                    let payload = crate::rdb::dump::build(k.type_id, &k.value, rdb_version);
                    let decoded = t.and_then(|t| {
                        crate::rdb::json::to_json(t, bytes::Bytes::from(k.value)).ok()
                    });
                    line(
                        out,
                        serde_json::json!({
                            "record": "key",
                            "shard": shard.name,
                            "position": pos,
                            "db": k.db,
                            "key": bytes_json(&k.key),
                            "type": t.map(|t| t.kind().name()).unwrap_or("unknown"),
                            "expire_ms": k.expire_ms,
                            "value": decoded.map(|d| d.value),
                            "dump_payload_base64": base64::engine::general_purpose::STANDARD.encode(&payload),
                        }),
                    )?;
                    sum.keys += 1;
                }
                Record::FunctionLibrary(f) => {
                    line(
                        out,
                        serde_json::json!({"record": "function", "shard": shard.name, "position": pos, "code": bytes_json(&f.code)}),
                    )?;
                    sum.functions += 1;
                }
                Record::Command(c) => {
                    let argv: Vec<_> = c.argv.iter().map(|a| bytes_json(a)).collect();
                    line(
                        out,
                        serde_json::json!({"record": "command", "shard": shard.name, "position": pos, "time_ms": c.time_ms, "db": c.db, "argv": argv}),
                    )?;
                    sum.commands += 1;
                }
                Record::Transaction(t) => {
                    let cmds: Vec<Vec<_>> = t
                        .commands
                        .iter()
                        .map(|c| c.iter().map(|a| bytes_json(a)).collect())
                        .collect();
                    sum.commands += cmds.len() as u64;
                    line(
                        out,
                        serde_json::json!({"record": "transaction", "shard": shard.name, "position": pos, "time_ms": t.time_ms, "db": t.db, "commands": cmds}),
                    )?;
                }
                _ => {}
            }
        }
    }
    out.flush()?;
    Ok(sum)
}
