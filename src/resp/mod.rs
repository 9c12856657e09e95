//! RESP — the Redis serialization protocol — as frames over bytes, with no I/O of its own.
//!
//! # Why our own codec
//! The `redis-protocol` crate is a good general codec, but capture needs three things it does
//! not give together: (1) the exact number of wire bytes each frame used, because the replica
//! must add precisely that to its replication offset (a master's `REPLCONF ACK` accounting is
//! byte-exact); (2) a *check* pass that validates a frame without allocating, so a partial frame
//! at the end of a socket read costs nothing; (3) a hand-off to raw mode in the middle of a
//! buffer, since the RDB bulk of a full sync is `$<len>\r\n` followed by bytes with no trailing
//! CRLF (or a `$EOF:` mark), which no frame codec models. Measured by `examples/resp_bench.rs`
//! on 1 M `SET` commands, this codec decodes at 0.89–0.99× the speed of `redis-protocol` 6.0
//! (`docs/performance.md`): close enough that those three needs decide.
//!
//! # Shape
//! Following mini-redis' `Frame::check`/`Frame::parse`: [`check`] walks one frame and returns
//! `Ok(None)` when more bytes are needed (a normal outcome, not an error), `Ok(Some(len))` when a
//! whole frame of `len` bytes is present; [`parse`] then builds the [`Frame`] from exactly those
//! bytes, sharing the buffer (`Bytes`) rather than copying bulk strings. [`decode`] does both on
//! a `BytesMut` and advances it. [`encode_command`] and [`encode_frame`] write commands and frames.

mod check;
mod encode;
mod error;
mod frame;
mod parse;

pub use check::{Limits, check, check_with};
pub use encode::{
    array_header, array_header_len, bulk, bulk_header, bulk_header_len, bulk_len, encode_command,
    encode_frame,
};
pub use error::Error;
pub use frame::Frame;
pub use parse::parse;

use bytes::BytesMut;

/// Decodes one frame from the front of `buf`, if a whole one is there.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again),
/// `Ok(Some((frame, wire_len)))` otherwise, with `buf` advanced by `wire_len` bytes — the exact
/// count a replica adds to its replication offset.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<(Frame, usize)>, Error> {
    match check_with(buf, limits)? {
        None => Ok(None),
        Some(len) => {
            let bytes = buf.split_to(len).freeze();
            let frame = parse::parse_checked(&bytes)?;
            Ok(Some((frame, len)))
        }
    }
}

#[cfg(test)]
mod tests;
