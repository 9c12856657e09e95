//! `shake completions SHELL`: a shell completion script generated from the clap definitions.
//!
//! Generated rather than hand-written so that completions can never drift from the flags the
//! binary accepts: a flag added to a subcommand completes the moment it exists.

use super::{Cli, GlobalArgs};
use crate::exit;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write as _;

/// Flags of `shake completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for: bash, zsh, fish, elvish or powershell. Install e.g. with
    /// `shake completions bash > /etc/bash_completion.d/shake`.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// Writes the completion script for the chosen shell to standard output.
pub async fn run(args: CompletionsArgs, _global: &GlobalArgs) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "shake", &mut buf);
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()?;
    Ok(exit::SUCCESS)
}
