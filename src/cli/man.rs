//! `shake man [--out DIR]`: manual pages generated from the clap definitions.
//!
//! Like the completions, the pages come from the same definitions the parser uses, so the manual
//! lists exactly the flags the binary accepts, with the same help text. Without `--out`, the
//! page of `shake` itself goes to standard output (`shake man | man -l -`); with `--out DIR`,
//! `shake.1` and one `shake-SUBCOMMAND.1` per subcommand are written there (for packaging into
//! `/usr/share/man/man1`).

use super::{Cli, GlobalArgs};
use crate::exit;
use anyhow::Context as _;
use clap::{Args, CommandFactory};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Flags of `shake man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `shake.1` and `shake-SUBCOMMAND.1` into this directory instead of printing the
    /// main page to standard output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Renders one page to bytes.
fn render(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    Ok(buf)
}

/// Writes every page into `dir`, returning the file names written.
fn write_all(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    let mut pages = vec![("shake.1".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("shake-{}", sub.get_name());
        // The page's title is the full command name a reader types.
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("shake {}", sub.get_name()));
        pages.push((format!("{name}.1"), page));
    }
    for (file, page) in pages {
        let path = dir.join(&file);
        let bytes = render(page)?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(file);
    }
    Ok(written)
}

/// Prints the main page, or writes every page into `--out`.
pub async fn run(args: ManArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    match args.out {
        None => {
            let bytes = render(Cli::command())?;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
        Some(dir) => {
            for file in write_all(&dir)? {
                println!("{}", dir.join(file).display());
            }
        }
    }
    Ok(exit::SUCCESS)
}
