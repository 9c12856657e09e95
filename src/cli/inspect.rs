//! `shake inspect PATH`: offline audit of an RDB file (statistics, or every key with its decoded
//! value) or of a journal directory (statistics per shard, stream commands, big keys), the
//! journal scanned frame by frame in parallel.

use super::GlobalArgs;
use crate::exit;
use crate::probe::human;
use crate::rdb::{self, ReaderOptions, scan::Scanner};
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// `--format` of inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    /// A readable table (statistics).
    Table,
    /// One JSON document (statistics).
    Json,
    /// One JSON object per key, with its decoded value.
    Jsonl,
}

/// Flags of `shake inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The RDB file or journal directory to inspect.
    pub path: PathBuf,
    /// Journal: also list the stream's command statistics (counts, bytes, per db, dangerous
    /// commands flagged).
    #[arg(long)]
    pub commands: bool,
    /// Journal: the N largest snapshot keys by encoded size, per type.
    #[arg(long, value_name = "N")]
    pub big_keys: Option<usize>,
    /// Journal: the life of this key — its snapshot value, then every command that touched it,
    /// with position and capture time.
    #[arg(long, value_name = "KEY")]
    pub history: Option<String>,
    /// With --history or a key listing: only this database.
    #[arg(long, value_name = "N")]
    pub db: Option<u32>,
    /// Journal: list the newest snapshot's keys matching this Redis glob (repeatable), with
    /// type, db, size, element count and expiry; `--format jsonl` adds decoded values.
    #[arg(long = "keys", value_name = "GLOB")]
    pub keys: Vec<String>,
    /// Journal: list keys matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub key_regex: Option<String>,
    /// Journal: list keys of these types (string, list, set, zset, hash, stream, module).
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    /// Worker threads for journal scans (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print statistics: keys, expiring keys and encoded bytes per database and type (the
    /// default unless --format jsonl).
    #[arg(long)]
    pub stats: bool,
    /// Output format: table or json for statistics, jsonl for every key.
    #[arg(long, value_enum, default_value_t = InspectFormat::Table)]
    pub format: InspectFormat,
    /// Read RDB versions newer than this build knows.
    #[arg(long)]
    pub accept_newer_rdb: bool,
}

/// Runs `shake inspect`.
pub async fn run(args: InspectArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    tokio::task::spawn_blocking(move || inspect(&args)).await?
}

fn inspect(args: &InspectArgs) -> anyhow::Result<u8> {
    if args.path.is_dir() {
        return inspect_journal(args);
    }
    if args.commands
        || args.big_keys.is_some()
        || args.history.is_some()
        || !args.keys.is_empty()
        || args.key_regex.is_some()
        || !args.types.is_empty()
    {
        bail!(
            "--commands, --big-keys, --history, --keys, --key-regex and --type apply to journal directories"
        );
    }
    let file = std::fs::File::open(&args.path)
        .with_context(|| format!("cannot open {}", args.path.display()))?;
    let opts = ReaderOptions {
        accept_newer: args.accept_newer_rdb,
        ..ReaderOptions::default()
    };
    let keys_wanted = args.format == InspectFormat::Jsonl && !args.stats;
    let mut scanner = Scanner::new(
        std::io::BufReader::with_capacity(1 << 20, file),
        opts,
        keys_wanted,
    );
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let path = args.path.display().to_string();
    for item in scanner.by_ref() {
        let key = item.with_context(|| format!("{path}: invalid RDB"))?;
        if !keys_wanted {
            continue;
        }
        let meta = &key.meta;
        let mut obj = json!({
            "db": meta.db,
            "key": rdb::json::text(&meta.key),
            "type": meta.object_type.kind().name(),
            "encoding": meta.object_type.encoding(),
            "expire_ms": meta.expire_ms,
            "size": key.value_len,
        });
        if let Some(value) = key.value {
            let v = rdb::json::to_json(meta.object_type, value).map_err(|e| {
                anyhow::anyhow!(
                    "{path}: key {:?} at byte {}: {e}",
                    rdb::json::text(&meta.key),
                    meta.offset
                )
            })?;
            obj["value"] = v.value;
            if let Some(f) = v.field_expire_ms {
                obj["field_expire_ms"] = serde_json::Value::Object(f);
            }
        }
        serde_json::to_writer(&mut out, &obj)?;
        out.write_all(b"\n")?;
    }
    let inline = scanner.stats().inline_commands;
    if inline > 0 {
        tracing::warn!(
            inline_commands = inline,
            "the RDB holds Valkey inline commands (opcode 242, forkless save): keys are listed as stored, without the commands' effect"
        );
    }
    if keys_wanted {
        out.flush()?;
        return Ok(exit::SUCCESS);
    }
    let stats = scanner.stats();
    let checksum = stats
        .checksum
        .map(|c| format!("{:?}", c.status()).to_lowercase());
    match args.format {
        InspectFormat::Json | InspectFormat::Jsonl => {
            let per_db: serde_json::Map<String, serde_json::Value> = stats
                .per_db
                .iter()
                .map(|(db, kinds)| {
                    let m: serde_json::Map<String, serde_json::Value> = kinds
                        .iter()
                        .map(|(k, s)| (k.name().to_string(), json!(s)))
                        .collect();
                    (db.to_string(), serde_json::Value::Object(m))
                })
                .collect();
            let doc = json!({
                "file": path,
                "rdb_version": stats.header.map(|h| h.version),
                "flavor": stats.header.map(|h| format!("{:?}", h.flavor).to_lowercase()),
                "bytes": stats.bytes,
                "keys": stats.keys(),
                "per_db": per_db,
                "aux": stats.aux.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "functions": stats.functions,
                "module_aux": stats.module_aux,
                "checksum": checksum,
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            out.write_all(b"\n")?;
        }
        InspectFormat::Table => {
            let h = stats.header;
            writeln!(out, "file       {path}")?;
            writeln!(
                out,
                "format     {} RDB {} ({} bytes), checksum {}",
                h.map(|h| format!("{:?}", h.flavor).to_lowercase())
                    .unwrap_or_default(),
                h.map(|h| h.version).unwrap_or(0),
                stats.bytes,
                checksum.unwrap_or_else(|| "unknown".into())
            )?;
            writeln!(
                out,
                "keys       {}  functions {}  module aux {}",
                stats.keys(),
                stats.functions,
                stats.module_aux
            )?;
            writeln!(
                out,
                "\n{:>4}  {:<8} {:>12} {:>12} {:>12} {:>12}",
                "db", "type", "keys", "expiring", "bytes", "largest"
            )?;
            for (db, kinds) in &stats.per_db {
                for (kind, s) in kinds {
                    writeln!(
                        out,
                        "{db:>4}  {:<8} {:>12} {:>12} {:>12} {:>12}",
                        kind.name(),
                        s.keys,
                        s.with_expiry,
                        human(s.value_bytes),
                        human(s.max_value_bytes)
                    )?;
                }
            }
            if !stats.aux.is_empty() {
                writeln!(out, "\naux")?;
                for (k, v) in &stats.aux {
                    writeln!(out, "  {k} = {v}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(exit::SUCCESS)
}

fn inspect_journal(args: &InspectArgs) -> anyhow::Result<u8> {
    if let Some(key) = &args.history {
        let items = crate::scan::history(&args.path, key.as_bytes(), args.db)
            .with_context(|| format!("{}: cannot read the journal", args.path.display()))?;
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        for item in &items {
            if args.format == InspectFormat::Table {
                let when = item
                    .time_ms
                    .map(|t| {
                        humantime::format_rfc3339_millis(
                            std::time::UNIX_EPOCH + std::time::Duration::from_millis(t),
                        )
                        .to_string()
                    })
                    .unwrap_or_else(|| "snapshot".into());
                let what = match &item.value {
                    Some(v) => v.to_string(),
                    None => item.argv.join(" "),
                };
                let guess = if item.keys_guessed {
                    "  (command not in the key table: matched on an argument)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{} {:<24} db{} {:<11} {what}{guess}",
                    item.shard, when, item.db, item.event
                )?;
            } else {
                serde_json::to_writer(&mut out, item)?;
                out.write_all(b"\n")?;
            }
        }
        if items.is_empty() {
            writeln!(out, "no record of key {key:?} in {}", args.path.display())?;
        }
        out.flush()?;
        return Ok(exit::SUCCESS);
    }
    if !args.keys.is_empty()
        || args.key_regex.is_some()
        || !args.types.is_empty()
        || args.db.is_some()
    {
        return list_journal_keys(args);
    }
    if args.format == InspectFormat::Jsonl {
        bail!(
            "--format jsonl of a journal applies to --history and to key listings (--keys, --key-regex, --type, --db)"
        );
    }
    let dir = args.path.clone();
    let big_n = args.big_keys.unwrap_or(0);
    let scan = || crate::scan::scan_journal(&dir, big_n);
    let stats = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()?
            .install(scan),
        None => scan(),
    }
    .with_context(|| format!("{}: cannot scan the journal", args.path.display()))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.format == InspectFormat::Json {
        serde_json::to_writer_pretty(&mut out, &stats)?;
        out.write_all(b"\n")?;
        out.flush()?;
        return Ok(exit::SUCCESS);
    }
    writeln!(out, "journal    {}", args.path.display())?;
    writeln!(out, "source     {}", stats.source)?;
    for s in &stats.shards {
        writeln!(
            out,
            "\n{}: {} epoch(s), positions {} .. {}",
            s.shard,
            s.epochs,
            s.first.as_deref().unwrap_or("-"),
            s.last.as_deref().unwrap_or("-")
        )?;
        let recs: Vec<String> = s.records.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(out, "  records   {}", recs.join(", "))?;
        if let Some((a, b)) = s.time_range_ms {
            let minutes = ((b - a) as f64 / 60_000.0).max(1.0 / 60.0);
            let count: u64 = s.commands.values().map(|c| c.count).sum();
            writeln!(
                out,
                "  stream    {} .. {}, {count} commands ({:.0}/min), {} transactions",
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(a)
                ),
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(b)
                ),
                count as f64 / minutes,
                s.transactions
            )?;
        }
        match s.snapshot_epoch {
            Some(e) => {
                writeln!(out, "  snapshot of epoch {e}:")?;
                writeln!(
                    out,
                    "  {:>4}  {:<8} {:>12} {:>12} {:>12}",
                    "db", "type", "keys", "expiring", "bytes"
                )?;
                for (db, kinds) in &s.snapshot {
                    for (kind, c) in kinds {
                        writeln!(
                            out,
                            "  {db:>4}  {kind:<8} {:>12} {:>12} {:>12}",
                            c.keys,
                            c.expiring,
                            human(c.bytes)
                        )?;
                    }
                }
            }
            None => writeln!(out, "  no complete snapshot")?,
        }
        if !s.dangerous.is_empty() {
            let d: Vec<String> = s
                .dangerous
                .iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect();
            writeln!(out, "  DANGEROUS commands in the stream: {}", d.join(", "))?;
        }
        if args.commands {
            writeln!(out, "  {:<24} {:>12} {:>12}", "command", "count", "bytes")?;
            let mut cmds: Vec<_> = s.commands.iter().collect();
            cmds.sort_by_key(|(_, c)| std::cmp::Reverse(c.count));
            for (name, c) in cmds {
                writeln!(out, "  {name:<24} {:>12} {:>12}", c.count, human(c.bytes))?;
            }
            let dbs: Vec<String> = s
                .commands_per_db
                .iter()
                .map(|(db, n)| format!("db{db}={n}"))
                .collect();
            writeln!(out, "  per db    {}", dbs.join(" "))?;
            for t in &s.largest_transactions {
                writeln!(
                    out,
                    "  transaction of {} commands at {}",
                    t.commands, t.position
                )?;
            }
        }
        if big_n > 0 {
            for (kind, keys) in &s.big_keys {
                writeln!(out, "  largest {kind} keys:")?;
                for k in keys {
                    writeln!(out, "    {:>12}  db{} {}", human(k.bytes), k.db, k.key)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(exit::SUCCESS)
}

fn list_journal_keys(args: &InspectArgs) -> anyhow::Result<u8> {
    let sel = crate::scan::filter::Criteria {
        keys: args.keys.clone(),
        key_regex: args
            .key_regex
            .as_deref()
            .map(regex::bytes::Regex::new)
            .transpose()
            .context("--key-regex")?,
        dbs: args.db.into_iter().collect(),
        types: args.types.clone(),
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let jsonl = args.format == InspectFormat::Jsonl;
    if !jsonl {
        writeln!(
            out,
            "{:>4}  {:<8} {:<12} {:>10} {:>10}  {:<24} key",
            "db", "type", "encoding", "bytes", "elements", "expires"
        )?;
    }
    let n = crate::scan::keys::list_keys(&args.path, &sel, jsonl, |k| {
        if jsonl {
            serde_json::to_writer(&mut out, &k)?;
            return out.write_all(b"\n");
        }
        let expires = k
            .expire_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| {
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                )
                .to_string()
            })
            .unwrap_or_else(|| "-".into());
        let elements = k
            .elements
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:>4}  {:<8} {:<12} {:>10} {:>10}  {:<24} {}",
            k.db, k.kind, k.encoding, k.size, elements, expires, k.key
        )
    })
    .with_context(|| format!("{}: cannot read the journal", args.path.display()))?;
    if !jsonl {
        writeln!(out, "{n} key(s)")?;
    }
    out.flush()?;
    Ok(exit::SUCCESS)
}
