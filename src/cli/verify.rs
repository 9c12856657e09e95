//! `shake verify DIR [--format json]`: audit a journal offline.
//!
//! Checks every frame checksum, every sealed segment's SHA-256 against the shard manifest and
//! the continuity of positions (see [`crate::journal::verify()`]). Exit 0 when sound, 3 when a
//! problem was found (each printed with its file and byte offset), 1 when the check itself could
//! not run.

use super::{GlobalArgs, ReportFormat};
use crate::exit;
use crate::journal::{self, Report};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Flags of `shake verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The journal directory (the one holding `journal.json`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Runs the audit on a blocking thread (it reads and decompresses everything, using rayon) and
/// prints the report.
pub async fn run(args: VerifyArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let dir = args.dir.clone();
    let report = tokio::task::spawn_blocking(move || journal::verify(&dir)).await?;
    let out = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Table => render(&report),
    };
    print!("{out}");
    Ok(if report.ok() {
        exit::SUCCESS
    } else {
        exit::CHECK_FAILED
    })
}

fn time(ms: Option<u64>) -> String {
    ms.map(|ms| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string()
    })
    .unwrap_or_else(|| "-".into())
}

fn pos(p: Option<journal::Position>) -> String {
    p.map_or_else(|| "-".into(), |p| p.to_string())
}

/// The human-readable report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "journal    {}", r.journal.display());
    if let (Some(v), Some(sv)) = (r.format_version, &r.shake_version) {
        let _ = writeln!(s, "format     version {v}, created by shake {sv}");
    }
    if let Some(src) = &r.source {
        let _ = writeln!(s, "source     {src}");
    }
    for sh in &r.shards {
        let _ = writeln!(
            s,
            "\n{}: {} segments ({} sealed), {} frames, {} records, {} bytes ({} raw)",
            sh.name, sh.segments, sh.sealed_segments, sh.frames, sh.records, sh.bytes, sh.raw_bytes
        );
        let _ = writeln!(
            s,
            "  positions {} .. {}   capture time {} .. {}",
            pos(sh.first),
            pos(sh.last),
            time(sh.min_time_ms),
            time(sh.max_time_ms)
        );
        for e in &sh.epochs {
            let _ = writeln!(
                s,
                "  epoch {:<4} {} .. {}  {} records{}  replid {}",
                e.epoch,
                pos(e.first),
                pos(e.last),
                e.records,
                e.snapshot_keys
                    .map(|k| format!(", snapshot of {k} keys"))
                    .unwrap_or_default(),
                if e.replids.is_empty() {
                    "-".into()
                } else {
                    e.replids.join(" → ")
                }
            );
        }
        let kinds: Vec<String> = sh
            .records_by_kind
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "  records   {}", kinds.join(", "));
    }
    if r.problems.is_empty() {
        let _ = writeln!(s, "\nOK: no problem found");
    } else {
        let _ = writeln!(s, "\n{} problem(s):", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    s
}
