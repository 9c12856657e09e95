//! Process exit codes, documented in `docs/cli.md`.
//!
//! Scripts and runbooks branch on these numbers, so they are part of the public interface and
//! never change meaning.

/// Everything went as asked.
pub const SUCCESS: u8 = 0;
/// A runtime error: a server refused us, a file could not be read, a network failure outlasted
/// the retries. The message on stderr names the endpoint, file or key.
pub const RUNTIME_ERROR: u8 = 1;
/// The command line was wrong (unknown flag, bad value). clap prints the usage.
pub const USAGE_ERROR: u8 = 2;
/// A data check (`verify`, `compare`) ran to its end and found problems, each reported.
pub const CHECK_FAILED: u8 = 3;
/// Interrupted by SIGINT/SIGTERM, after a clean stop (journals sealed, checkpoints written).
pub const INTERRUPTED: u8 = 130;
