//! Errors of the RESP codec. "Need more bytes" is not among them: [`crate::resp::check`]
//! returns `Ok(None)` for that, because it happens on every partial socket read.

/// A protocol violation, with the byte offset (from the start of the frame being checked)
/// where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A type byte that RESP2 and RESP3 do not define.
    #[error("invalid RESP type byte 0x{byte:02x} at byte {offset}")]
    InvalidType {
        /// The byte found.
        byte: u8,
        /// Its offset within the frame.
        offset: usize,
    },
    /// A length or integer field that is not a decimal number.
    #[error("invalid number {text:?} at byte {offset}")]
    InvalidNumber {
        /// The text found (lossy UTF-8, at most 32 bytes).
        text: String,
        /// Offset of the field within the frame.
        offset: usize,
    },
    /// A bulk string or aggregate larger than the configured limit. The limit exists so that a
    /// corrupt length cannot make us wait for (or allocate) gigabytes.
    #[error("{what} of length {len} at byte {offset} exceeds the limit of {limit}")]
    TooLarge {
        /// "bulk string" or "aggregate".
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The configured limit.
        limit: u64,
        /// Offset of the header.
        offset: usize,
    },
    /// Aggregates nested deeper than the limit (guards the parser's recursion).
    #[error("aggregates nested deeper than {limit} at byte {offset}")]
    TooDeep {
        /// The depth limit.
        limit: usize,
        /// Offset of the aggregate that went too deep.
        offset: usize,
    },
    /// A bulk string whose payload is not followed by CRLF.
    #[error("bulk string payload not terminated by CRLF at byte {offset}")]
    MissingCrlf {
        /// Where the CRLF should have been.
        offset: usize,
    },
    /// A line that is not valid for its type (e.g. a boolean other than `t`/`f`).
    #[error("invalid {what} at byte {offset}")]
    Invalid {
        /// What was being read.
        what: &'static str,
        /// Offset within the frame.
        offset: usize,
    },
    /// `parse` was given bytes that do not hold exactly one checked frame (a caller bug, kept
    /// as an error rather than a panic).
    #[error("parse was given {given} bytes but the frame is {needed} bytes")]
    LengthMismatch {
        /// Bytes given.
        given: usize,
        /// Bytes the frame needs (0 when incomplete).
        needed: usize,
    },
}
