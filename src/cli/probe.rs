//! `shake probe --source URL [--format json]`.

use super::{GlobalArgs, ReportFormat, SourceArgs};
use crate::exit;
use crate::probe::{self, Permission, ProbeOptions, Report, human};
use clap::Args;
use std::fmt::Write as _;
use std::time::Duration;

/// Flags of `shake probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The server to probe, and how to reach it.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The --source is a Sentinel: probe the current master of this name.
    #[arg(long, value_name = "NAME")]
    pub sentinel_master: Option<String>,
    /// How long to watch the replication offset to estimate the write rate (0s: skip).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::units::parse_duration)]
    pub sample: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Runs the probe and prints the report. Exit 0 even with warnings: they are advice; a server
/// that cannot be reached or logged in to is an error (exit 1).
pub async fn run(args: ProbeArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let (endpoint, connect) = args.source.resolve()?;
    let options = ProbeOptions {
        connect,
        sample: args.sample,
        sentinel_master: args.sentinel_master.clone(),
    };
    let report = probe::probe(&endpoint, &options).await?;
    let out = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Table => render(&report),
    };
    print!("{out}");
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    Ok(exit::SUCCESS)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The human-readable report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "endpoint   {}", r.endpoint);
    let _ = writeln!(
        s,
        "mode       {}",
        serde_json::to_value(r.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    if let Some(by) = &r.topology.described_by {
        let _ = writeln!(
            s,
            "topology   {} shard(s), from {by}",
            r.topology.shards.len()
        );
        for (i, shard) in r.topology.shards.iter().enumerate() {
            let ranges: Vec<String> = shard
                .slots
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "  shard {i}  master {} ({} slots: {})  id {}",
                shard.master.addr(),
                shard.slot_count(),
                ranges.join(","),
                shard.master.id.as_deref().unwrap_or("-")
            );
            for rep in &shard.replicas {
                let _ = writeln!(
                    s,
                    "           replica {} ({})  id {}",
                    rep.addr(),
                    rep.health,
                    rep.id.as_deref().unwrap_or("-")
                );
            }
        }
    }
    for f in &r.servers {
        let _ = writeln!(s, "\nserver {}", f.addr);
        let _ = writeln!(
            s,
            "  version              {} {} (writes RDB {})",
            f.flavor,
            f.version,
            opt(&f.rdb_version)
        );
        let _ = writeln!(s, "  role                 {}", f.role);
        let _ = writeln!(
            s,
            "  replication          replid {} offset {}",
            opt(&f.master_replid),
            opt(&f.master_repl_offset)
        );
        let _ = writeln!(
            s,
            "  repl-backlog-size    {}",
            f.repl_backlog_size
                .map(human)
                .unwrap_or_else(|| "unknown".into())
        );
        let cobl = f
            .replica_output_buffer_limit
            .map(|l| {
                format!(
                    "hard {} soft {} for {}s",
                    human(l.hard),
                    human(l.soft),
                    l.soft_seconds
                )
            })
            .unwrap_or_else(|| "unknown".into());
        let _ = writeln!(s, "  output-buffer limit  replica {cobl}");
        let _ = writeln!(
            s,
            "  maxmemory            {}",
            f.maxmemory
                .map(|m| if m == 0 { "none".into() } else { human(m) })
                .unwrap_or_else(|| "unknown".into())
        );
        let _ = writeln!(
            s,
            "  proto-max-bulk-len   {}",
            f.proto_max_bulk_len
                .map(human)
                .unwrap_or_else(|| "unknown".into())
        );
        let _ = writeln!(
            s,
            "  diskless sync        {} (delay {}s)",
            f.repl_diskless_sync
                .map(|d| if d { "yes" } else { "no" })
                .unwrap_or("unknown"),
            opt(&f.repl_diskless_sync_delay)
        );
        let _ = writeln!(
            s,
            "  dataset              {}",
            f.dataset_bytes
                .map(human)
                .unwrap_or_else(|| "unknown".into())
        );
        let keys: Vec<String> = f.keys.iter().map(|(db, n)| format!("{db}={n}")).collect();
        let _ = writeln!(
            s,
            "  keys                 {}",
            if keys.is_empty() {
                "none".into()
            } else {
                keys.join(" ")
            }
        );
        let _ = writeln!(
            s,
            "  write rate           {}",
            f.write_rate_bytes_per_sec
                .map(|r| format!("{}/s", human(r as u64)))
                .unwrap_or_else(|| "not sampled".into())
        );
        if !f.modules.is_empty() {
            let _ = writeln!(s, "  modules              {}", f.modules.join(", "));
        }
        let perm = match &f.psync_permission {
            Permission::Allowed => "allowed".to_string(),
            Permission::Denied(why) => format!("DENIED: {why}"),
            Permission::Unknown(why) => format!("unknown: {why}"),
        };
        let _ = writeln!(s, "  PSYNC permission     {perm}");
    }
    if r.warnings.is_empty() {
        let _ = writeln!(s, "\nno warnings: a capture should work");
    } else {
        let _ = writeln!(s, "\nwarnings:");
        for w in &r.warnings {
            let _ = writeln!(s, "  - {w}");
        }
    }
    s
}
