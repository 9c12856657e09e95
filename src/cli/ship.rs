//! `shake ship DIR --to MEDIA_DIR [--include-active]`: copy the sealed segments not shipped
//! before into a new shipment folder on removable media (see [`crate::ship`] and
//! `docs/shipping.md`).
//!
//! Exit 0 when a shipment was written or nothing was new (then nothing is created), 1 on an
//! error (the message names the file or shard).

use super::{GlobalArgs, ReportFormat};
use crate::exit;
use crate::ship::{self, ShipOptions, ShipOutcome};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `shake ship`.
#[derive(Debug, Args)]
pub struct ShipArgs {
    /// The journal directory to ship from (the one holding `journal.json`).
    #[arg(value_name = "DIR")]
    pub journal: PathBuf,
    /// The media directory (mounted removable media) to write the shipment folder into. It must
    /// exist: a missing directory usually means the media is not mounted.
    #[arg(long = "to", value_name = "MEDIA_DIR")]
    pub to: PathBuf,
    /// Seal the active segment of every shard first, so the newest data goes too. With a
    /// capture running, it is asked to seal (and must do so within --seal-timeout).
    #[arg(long)]
    pub include_active: bool,
    /// How long --include-active waits for a running capture to seal.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::units::parse_duration)]
    pub seal_timeout: Duration,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Runs `shake ship` on a blocking thread (it copies files and syncs them).
pub async fn run(args: ShipArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let opts = ShipOptions {
        include_active: args.include_active,
        seal_timeout: args.seal_timeout,
        now_ms: None,
    };
    let (journal, to) = (args.journal.clone(), args.to.clone());
    let outcome = tokio::task::spawn_blocking(move || ship::ship(&journal, &to, &opts))
        .await?
        .map_err(|e| anyhow::anyhow!(e))
        .map_err(|e| e.context(format!("shipping {}", args.journal.display())))?;
    let out = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&outcome)? + "\n",
        ReportFormat::Table => render(&outcome),
    };
    print!("{out}");
    Ok(exit::SUCCESS)
}

/// The human-readable summary.
pub fn render(o: &ShipOutcome) -> String {
    let mut s = String::new();
    if o.assigned_id {
        let _ = writeln!(
            s,
            "journal {} had no identity; assigned {} (recorded in journal.json)",
            o.journal.display(),
            o.journal_id
        );
    }
    for x in &o.sealed {
        if x.sealed > 0 {
            let by = match x.by {
                ship::seal::SealedBy::Ship => "sealed",
                ship::seal::SealedBy::Capture => "sealed by the running capture",
            };
            let _ = writeln!(s, "{}: active segment {by}", x.shard);
        }
    }
    match &o.shipment {
        None => {
            let _ = writeln!(
                s,
                "nothing new to ship from {} (journal {}): no sealed segment since the last \
                 shipment; nothing was created{}",
                o.journal.display(),
                o.journal_id,
                if o.sealed.is_empty() {
                    " (--include-active seals the active segments)"
                } else {
                    ""
                }
            );
        }
        Some(sh) => {
            let _ = writeln!(
                s,
                "shipment {} of journal {}: {} segments, {} bytes, {} of {} shards",
                sh.sequence,
                o.journal_id,
                sh.segments,
                sh.bytes,
                sh.shards.iter().filter(|x| x.segments > 0).count(),
                sh.shards.len()
            );
            for x in sh.shards.iter().filter(|x| x.segments > 0) {
                let _ = writeln!(
                    s,
                    "  {}: {} segments, {} bytes",
                    x.name, x.segments, x.bytes
                );
            }
            let _ = writeln!(s, "written to {}", sh.path.display());
        }
    }
    s
}
