//! The `shake` binary: parse the command line, set up logging, run, map the outcome to the exit
//! codes documented in `docs/cli.md`.

use clap::Parser;
use shake::cli::{self, Cli};
use shake::exit;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: replay frees on its connection tasks the many
/// small argument buffers its journal reader thread allocated, which glibc's malloc handles
/// poorly (a third of replay's CPU time went to it; docs/performance.md, "Replay").
/// Built with `no_thp` (mimalloc keeps transparent huge pages off for the process): replay's
/// argument arena frees its chunks on other threads, mimalloc purges such memory after a few
/// milliseconds, and with huge pages every re-touch had the kernel zero a whole 2 MiB page —
/// 15 % of replay's CPU in profiles; with 4 KiB pages it does not show.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    shake::logging::init(cli.global.log_format, cli.global.verbosity());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let cli::Command::Replay(args) = &cli.command
        && let Some(n) = args.threads
    {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME_ERROR);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // A closed pipe (`shake … | head`) is not a failure.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(exit::SUCCESS);
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit::RUNTIME_ERROR)
        }
    }
}
