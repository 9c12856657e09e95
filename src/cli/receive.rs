//! `shake receive MEDIA_DIR --journal DIR`: verify shipments and add them to a journal on the
//! far side (see [`crate::ship`] and `docs/shipping.md`).
//!
//! MEDIA_DIR is one shipment folder, or a directory holding several (taken in sequence order,
//! those received before skipped with a note). Exit 0 when everything offered was received (or
//! had been), 3 when a shipment was refused (a gap, a repeat given on its own, another
//! journal, a checksum or segment failure, an incomplete folder: nothing of it is added), 1 on
//! any other error.

use super::{GlobalArgs, ReportFormat};
use crate::exit;
use crate::ship::{self, ReceiveOptions, ReceiveOutcome};
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Flags of `shake receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// A shipment folder (`<journal id>-shipment-NNNNNN`), or the media directory holding
    /// shipments.
    #[arg(value_name = "MEDIA_DIR")]
    pub media: PathBuf,
    /// The receiving journal; created by the first shipment if it does not exist.
    #[arg(long, value_name = "DIR")]
    pub journal: PathBuf,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Runs `shake receive` on a blocking thread (it hashes, decodes and copies files).
pub async fn run(args: ReceiveArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let (media, journal) = (args.media.clone(), args.journal.clone());
    let result = tokio::task::spawn_blocking(move || {
        ship::receive(&media, &journal, &ReceiveOptions::default())
    })
    .await?;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            // Nothing could be looked at: same exit codes, same JSON shape.
            let refused = e.is_refusal();
            let o = ReceiveOutcome {
                journal: args.journal.clone(),
                failure: Some((args.media.clone(), e)),
                ..Default::default()
            };
            print_outcome(&o, args.format)?;
            return Ok(if refused {
                exit::CHECK_FAILED
            } else {
                exit::RUNTIME_ERROR
            });
        }
    };
    print_outcome(&outcome, args.format)?;
    Ok(match &outcome.failure {
        None => exit::SUCCESS,
        Some((_, e)) if e.is_refusal() => exit::CHECK_FAILED,
        Some(_) => exit::RUNTIME_ERROR,
    })
}

fn print_outcome(o: &ReceiveOutcome, format: ReportFormat) -> anyhow::Result<()> {
    let out = match format {
        ReportFormat::Json => serde_json::to_string_pretty(o)? + "\n",
        ReportFormat::Table => render(o),
    };
    print!("{out}");
    if let Some((path, e)) = &o.failure {
        eprintln!(
            "error: {} {}: {e}",
            if e.is_refusal() {
                "refused"
            } else {
                "failed at"
            },
            path.display()
        );
    }
    Ok(())
}

/// The human-readable summary (the failure goes to stderr).
pub fn render(o: &ReceiveOutcome) -> String {
    let mut s = String::new();
    for x in &o.ignored {
        let _ = writeln!(s, "ignored {}: {}", x.path.display(), x.why);
    }
    for x in &o.skipped {
        let _ = writeln!(s, "skipped {}: {}", x.path.display(), x.why);
    }
    for r in &o.received {
        let _ = writeln!(
            s,
            "received shipment {}: {} segments, {} bytes, {} shards{} ({})",
            r.sequence,
            r.segments,
            r.bytes,
            r.shards,
            if r.already_present > 0 {
                format!(
                    "; {} segments were already added by an interrupted receive",
                    r.already_present
                )
            } else {
                String::new()
            },
            r.path.display()
        );
    }
    let id = o.journal_id.as_deref().unwrap_or("-");
    match (&o.failure, o.received.is_empty()) {
        (None, true) => {
            let _ = writeln!(
                s,
                "nothing new for journal {} ({})",
                o.journal.display(),
                id
            );
        }
        (None, false) => {
            let _ = writeln!(s, "journal {} ({id}) is up to date", o.journal.display());
        }
        (Some(_), _) => {
            let _ = writeln!(
                s,
                "stopped: {} shipment(s) received into {} before the failure below",
                o.received.len(),
                o.journal.display()
            );
        }
    }
    s
}
