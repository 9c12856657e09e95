//! `shake export PATH --format resp|rdb|jsonl --out FILE|- [--until-offset N]`.
//!
//! Without `--until-offset`, everything is streamed from the journal itself. With it (RDB
//! only), the state right after the command at that offset is not in the journal as such —
//! it is the newest snapshot plus the commands up to there — so it is computed exactly by
//! replaying the journal into a scratch `redis-server` (the one `compare` uses, see
//! [`crate::compare::scratch`]) and saved from there.

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
    /// With `--format rdb`: the state right after the command at this replication offset
    /// (snapshot plus commands), computed on a scratch redis-server. For the other formats,
    /// cut the journal first with `shake filter --until-offset`.
    #[arg(long, value_name = "N")]
    pub until_offset: Option<u64>,
    /// The redis-server used for `--until-offset` (a name on PATH or a path). Use the source's
    /// version or newer: the RDB it writes is in its own RDB version.
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub scratch_server: PathBuf,
}

/// Writes the state after `offset` as an RDB file: replay into a scratch server, `SAVE`, copy.
async fn export_rdb_at(args: &ExportArgs, offset: u64) -> anyhow::Result<u8> {
    use crate::compare::scratch::Scratch;
    let scratch = Scratch::start(&args.scratch_server).await?;
    scratch
        .load(&args.path, Some(offset))
        .await
        .with_context(|| format!("rebuilding the state at offset {offset}"))?;
    let mut conn =
        crate::net::Connection::connect(scratch.endpoint(), &crate::net::ConnectOptions::default())
            .await?;
    let keys: u64 = conn
        .info("keyspace")
        .await?
        .iter()
        .filter_map(|(_, v)| {
            v.split(',')
                .find_map(|p| p.strip_prefix("keys="))?
                .parse::<u64>()
                .ok()
        })
        .sum();
    conn.request(&["SAVE"]).await?;
    let dumped = scratch.dir().join("dump.rdb");
    let bytes = std::fs::read(&dumped)
        .with_context(|| format!("reading the scratch server's {}", dumped.display()))?;
    let version = bytes
        .get(5..9)
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("?")
        .to_string();
    if args.out.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
    } else {
        let tmp = args.out.with_extension("partial");
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &args.out).with_context(|| {
            format!("cannot rename {} to {}", tmp.display(), args.out.display())
        })?;
    }
    eprintln!(
        "exported the state at offset {offset}: {keys} keys (RDB {version}, written by the scratch server)"
    );
    Ok(exit::SUCCESS)
}

/// Runs `shake export`.
pub async fn run(args: ExportArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    if let Some(offset) = args.until_offset {
        if args.format != ExportFormat::Rdb {
            anyhow::bail!(
                "--until-offset applies to --format rdb; for a cut command stream, run \
                 `shake filter DIR --out CUT --until-offset {offset}` and export CUT"
            );
        }
        return export_rdb_at(&args, offset).await;
    }
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
