//! `shake filter DIR --out DIR2 …`: cut a journal down to what may cross.

use super::{GlobalArgs, ReportFormat};
use crate::exit;
use crate::scan::filter::{self, Criteria};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;

/// Flags of `shake filter`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The source journal.
    pub dir: PathBuf,
    /// Where to write the filtered journal (must not exist).
    #[arg(long, value_name = "DIR2")]
    pub out: PathBuf,
    /// Keep keys matching this Redis glob (repeatable; default: every key).
    #[arg(long = "keys", value_name = "GLOB")]
    pub keys: Vec<String>,
    /// Drop keys matching this Redis glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude_keys: Vec<String>,
    /// Keep keys matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub key_regex: Option<String>,
    /// Keep only these databases (repeatable).
    #[arg(long, value_name = "N")]
    pub db: Vec<u32>,
    /// Renumber a database, e.g. 3:0 (repeatable).
    #[arg(long, value_name = "FROM:TO")]
    pub map_db: Vec<String>,
    /// Keep only snapshot keys of these types: string, list, set, zset, hash, stream, module.
    #[arg(long = "type", value_name = "T")]
    pub types: Vec<String>,
    /// Drop these commands from the stream, comma-separated (e.g. FLUSHALL,FLUSHDB).
    #[arg(long, value_name = "CMD,...", value_delimiter = ',')]
    pub exclude_commands: Vec<String>,
    /// Stop after this replication offset.
    #[arg(long, value_name = "N", conflicts_with = "until_time")]
    pub until_offset: Option<u64>,
    /// Stop after this capture time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until_time: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Runs `shake filter`.
pub async fn run(args: FilterArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let mut map_db = std::collections::HashMap::new();
    for m in &args.map_db {
        let Some((a, b)) = m.split_once(':') else {
            bail!("--map-db {m:?}: expected FROM:TO, e.g. 3:0");
        };
        map_db.insert(
            a.trim()
                .parse()
                .with_context(|| format!("--map-db {m:?}"))?,
            b.trim()
                .parse()
                .with_context(|| format!("--map-db {m:?}"))?,
        );
    }
    let types = ["string", "list", "set", "zset", "hash", "stream", "module"];
    for t in &args.types {
        if !types.contains(&t.as_str()) {
            bail!("--type {t:?}: one of {}", types.join(", "));
        }
    }
    let until_time_ms = match &args.until_time {
        Some(t) => Some(
            humantime::parse_rfc3339_weak(t)
                .with_context(|| {
                    format!("--until-time {t:?}: expected RFC 3339, e.g. 2026-11-27T10:00:00Z")
                })?
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as u64,
        ),
        None => None,
    };
    let criteria = Criteria {
        keys: args.keys.clone(),
        exclude_keys: args.exclude_keys.clone(),
        key_regex: args
            .key_regex
            .as_deref()
            .map(regex::bytes::Regex::new)
            .transpose()
            .context("--key-regex")?,
        dbs: args.db.clone(),
        map_db,
        types: args.types.clone(),
        exclude_commands: args
            .exclude_commands
            .iter()
            .map(|c| c.to_uppercase())
            .collect(),
        until_offset: args.until_offset,
        until_time_ms,
    };
    let (src, out) = (args.dir.clone(), args.out.clone());
    let c2 = criteria.clone();
    let reports = tokio::task::spawn_blocking(move || filter::filter(&src, &out, &c2)).await??;
    let verify = crate::journal::verify(&args.out);
    match args.format {
        ReportFormat::Json => {
            let doc = serde_json::json!({
                "source": args.dir.display().to_string(),
                "out": args.out.display().to_string(),
                "criteria": criteria.describe(),
                "shards": reports,
                "verify_ok": verify.ok(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        ReportFormat::Table => {
            println!(
                "filtered {} into {} ({})",
                args.dir.display(),
                args.out.display(),
                criteria.describe()
            );
            for (shard, r) in &reports {
                println!(
                    "  {shard}: keys kept {} dropped {}; commands kept {} dropped {}, mixed-key commands dropped {}, transactions dropped {}, after the cut-off {}",
                    r.keys_kept,
                    r.keys_dropped,
                    r.commands_kept,
                    r.commands_dropped,
                    r.commands_mixed,
                    r.transactions_dropped,
                    r.records_after_cutoff
                );
                if !r.commands_unknown.is_empty() {
                    let u: Vec<String> = r
                        .commands_unknown
                        .iter()
                        .map(|(k, v)| format!("{k} x{v}"))
                        .collect();
                    println!(
                        "  {shard}: commands unknown to the key table, dropped: {}",
                        u.join(", ")
                    );
                }
            }
            println!(
                "verify: {}",
                if verify.ok() {
                    "OK"
                } else {
                    "PROBLEMS (run shake verify)"
                }
            );
        }
    }
    for (shard, r) in &reports {
        if r.commands_mixed > 0 || !r.commands_unknown.is_empty() {
            tracing::warn!(%shard, mixed = r.commands_mixed, unknown = r.commands_unknown.len(), "some commands could not be kept without carrying unselected keys");
        }
    }
    Ok(if verify.ok() {
        exit::SUCCESS
    } else {
        exit::CHECK_FAILED
    })
}
