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

/// Where an export goes: standard output, a special file written in place (a device such as
/// `/dev/null`, a FIFO: staging beside it and renaming would replace the device), or a regular
/// file written as `FILE.partial` and renamed when complete, so no partial file is left
/// unmarked.
enum Output {
    Stdout,
    Special(PathBuf),
    File { tmp: PathBuf, dest: PathBuf },
}

impl Output {
    fn of(out: &std::path::Path) -> Output {
        if out.as_os_str() == "-" {
            return Output::Stdout;
        }
        match std::fs::metadata(out) {
            Ok(m) if !m.is_file() && !m.is_dir() => Output::Special(out.to_path_buf()),
            _ => Output::File {
                tmp: out.with_extension("partial"),
                dest: out.to_path_buf(),
            },
        }
    }

    fn open(&self) -> anyhow::Result<Box<dyn Write>> {
        let file = |p: &PathBuf| -> anyhow::Result<Box<dyn Write>> {
            Ok(Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            )))
        };
        match self {
            Output::Stdout => Ok(Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout().lock(),
            ))),
            Output::Special(p) => file(p),
            Output::File { tmp, .. } => file(tmp),
        }
    }

    /// Publishes a complete export (the rename of a staged file).
    fn commit(&self) -> anyhow::Result<()> {
        if let Output::File { tmp, dest } = self {
            std::fs::rename(tmp, dest).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), dest.display())
            })?;
        }
        Ok(())
    }
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
    let output = Output::of(&args.out);
    let mut sink = output.open()?;
    sink.write_all(&bytes)?;
    sink.flush()?;
    drop(sink);
    output.commit()?;
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
        let output = Output::of(&args.out);
        let mut sink = output.open()?;
        let summary = match args.format {
            ExportFormat::Resp => export::export_resp(&args.path, &mut sink),
            ExportFormat::Rdb => export::export_rdb(&args.path, &mut sink),
            ExportFormat::Jsonl => export::export_jsonl(&args.path, &mut sink),
        }
        .with_context(|| format!("exporting {}", args.path.display()))?;
        sink.flush()?;
        drop(sink);
        output.commit()?;
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
