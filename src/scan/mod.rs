//! Offline scanners over journals: frames are decoded in parallel with rayon (one accumulator
//! per worker, merged at the end — raft-engine's `par_chunks` + `try_reduce` shape), so a
//! journal is audited at the speed of its decompression on every core.
//!
//! Nothing here writes; nothing needs the network or the async runtime.

pub mod export;
pub mod filter;
pub mod glob;
pub mod history;
pub mod keys;
pub mod stats;
pub mod whole;

pub use history::{HistoryItem, history};
pub use stats::{JournalStats, ShardStats, scan_journal};
