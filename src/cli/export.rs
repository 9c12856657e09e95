//! `shake export PATH --format resp|rdb --out FILE|-`.

use super::GlobalArgs;
use crate::exit;
use crate::scan::export;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A RESP command stream for `redis-cli --pipe`: the snapshot as RESTORE … ABSTTL REPLACE,
    /// then the commands.
    Resp,
    /// An RDB file of the newest snapshot (every shard merged).
    Rdb,
    /// One JSON object per key, function and command; binary-safe (base64 where not UTF-8).
    Jsonl,
}

/// Flags of `shake export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The journal directory.
    pub path: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output file, or - for standard output.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `shake export`.
pub async fn run(args: ExportArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<u8> {
        let to_stdout = args.out.as_os_str() == "-";
        let mut sink: Box<dyn Write> = if to_stdout {
            Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout().lock(),
            ))
        } else {
            // Write beside the target and rename at the end: no partial file left unmarked.
            let tmp = args.out.with_extension("partial");
            Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?,
            ))
        };
        let summary = match args.format {
            ExportFormat::Resp => export::export_resp(&args.path, &mut sink),
            ExportFormat::Rdb => export::export_rdb(&args.path, &mut sink),
            ExportFormat::Jsonl => export::export_jsonl(&args.path, &mut sink),
        }
        .with_context(|| format!("exporting {}", args.path.display()))?;
        sink.flush()?;
        drop(sink);
        if !to_stdout {
            let tmp = args.out.with_extension("partial");
            std::fs::rename(&tmp, &args.out).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), args.out.display())
            })?;
        }
        eprintln!(
            "exported {} keys, {} commands, {} function libraries{}{}",
            summary.keys,
            summary.commands,
            summary.functions,
            summary
                .rdb_version
                .map(|v| format!(" (RDB {v})"))
                .unwrap_or_default(),
            if summary.module_aux_skipped > 0 {
                format!(
                    "; {} module AUX record(s) NOT exported (not kept byte-exact in the journal)",
                    summary.module_aux_skipped
                )
            } else {
                String::new()
            }
        );
        Ok(exit::SUCCESS)
    })
    .await?
}
