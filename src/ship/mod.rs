//! Shipping a journal across an air gap in batches: `shake ship` on the connected side,
//! `shake receive` on the far side.
//!
//! # Why
//!
//! An air-gapped transfer is a sequence of removable media carried by hand. Each carries a
//! *shipment*: the sealed segments not shipped before, the manifests, and a checksum list. The
//! far side grows its own copy of the journal shipment by shipment, and `replay --follow` on it
//! applies each as it lands. Media get lost, carried twice, plugged in out of order or pulled
//! out mid-copy; every one of those must be detected and named, and nothing may be applied
//! past a gap. So shipments form a hash chain — each names the SHA-256 of the one before and,
//! per shard, the segment it continues — and the receiver checks the chain by content, not
//! only by number, before it adds anything. The format is tabled in `docs/shipping.md` and
//! pinned by `fixtures/shipment/`.
//!
//! # Layout
//!
//! | file | what it holds |
//! |------|---------------|
//! | `error.rs`   | [`Error`]: variants name the file, shard, shipment and journal; [`Error::is_refusal`] |
//! | `format.rs`  | `shipment.json` ([`Shipment`], parsed without trusting the media), `SHA256SUMS`, folder names, `shipped.json` / `received.json` |
//! | `chain.rs`   | [`chain::check`]: is this shipment the next one for this journal (pure logic) |
//! | `seal.rs`    | [`seal::seal_active`]: seal active segments, ourselves or by asking a running capture |
//! | `send.rs`    | [`ship()`]: write a shipment folder atomically, then record it |
//! | `receive.rs` | [`receive()`]: verify shipments and add them to the receiving journal in order |
//!
//! Like [`crate::journal`], this module is plain synchronous Rust: no CLI, no progress output,
//! no async runtime.

pub mod chain;
pub mod error;
pub mod format;
pub mod receive;
pub mod seal;
pub mod send;

pub use error::{Error, Result};
pub use format::{ReceivedState, Shipment, ShippedState};
pub use receive::{ReceiveOptions, ReceiveOutcome, receive};
pub use send::{ShipOptions, ShipOutcome, ship};

/// RFC 3339 (UTC, milliseconds) of a time in ms since the Unix epoch, for messages.
pub(crate) fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
