//! The RDB engine's error type.
//!
//! A real enum rather than a boxed error because callers branch on it: a checksum mismatch, a
//! version that is too new and a truncated transfer lead to different operator advice. Every
//! variant that comes from the bytes carries the absolute byte offset where reading stopped and,
//! when the failure is inside a key record, the key; the message says what was expected there.
//!
//! The low-level codecs (lengths, strings, listpacks…) work on slices and know neither the file
//! offset nor the key, so they return a [`Malformed`] with a slice-relative position; the reader
//! and decoder turn it into an [`Error`] with [`Malformed::at`].

use std::borrow::Cow;
use std::fmt;

/// Everything that can go wrong while reading, decoding or rewriting RDB data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The first 9 bytes are neither `REDIS` + 4 digits nor `VALKEY` + 3 digits.
    #[error(
        "not an RDB file: expected magic \"REDISnnnn\" or \"VALKEYnnn\" at offset 0, found {found:?}"
    )]
    BadMagic {
        /// The bytes found, escaped for printing.
        found: String,
    },
    /// The header names an RDB version this build does not know.
    #[error(
        "RDB version {version} ({magic} magic) is not supported: this build knows {known}; \
         a newer writer may use types it cannot read (use --accept-newer-rdb to try anyway)"
    )]
    UnsupportedVersion {
        /// The version number from the header.
        version: u16,
        /// `REDIS` or `VALKEY`.
        magic: &'static str,
        /// The range this build reads, for the message.
        known: &'static str,
    },
    /// The bytes do not match the format at `offset`.
    #[error(
        "corrupt RDB at offset {offset}{}: expected {expected}",
        KeySuffix(key)
    )]
    Corrupt {
        /// Absolute byte offset (from the first byte of the magic, or of the value for
        /// [`crate::rdb::decode()`] errors on standalone values) where the problem was seen.
        offset: u64,
        /// The key whose record was being read, when known (escaped for printing).
        key: Option<String>,
        /// What the format required at that point.
        expected: Cow<'static, str>,
    },
    /// A byte in type position that this build cannot read. Values are not length-prefixed as a
    /// whole, so an unknown type cannot be skipped: reading must stop.
    #[error(
        "unknown or unsupported RDB object type {byte} at offset {offset} (RDB version {version}{}): {why}",
        KeySuffix(key)
    )]
    UnknownType {
        /// Absolute offset of the type byte.
        offset: u64,
        /// The type byte.
        byte: u8,
        /// Header version, for the message.
        version: u16,
        /// The key, when the type byte came from a key record whose key was already read.
        key: Option<String>,
        /// Why it cannot be read.
        why: &'static str,
    },
    /// A byte in opcode position that is neither an opcode nor an object type.
    #[error(
        "unknown RDB opcode {byte} (0x{byte:02x}) at offset {offset} (RDB version {version}); cannot skip it"
    )]
    UnknownOpcode {
        /// Absolute offset of the opcode byte.
        offset: u64,
        /// The opcode.
        byte: u8,
        /// Header version.
        version: u16,
    },
    /// The CRC-64 trailer does not match the bytes read.
    #[error(
        "RDB checksum mismatch at offset {offset}: file says {stored:#018x}, computed {computed:#018x} (the data was altered or truncated in transit)"
    )]
    Checksum {
        /// Offset of the 8-byte trailer.
        offset: u64,
        /// The trailer's value.
        stored: u64,
        /// CRC-64 of every byte before the trailer.
        computed: u64,
    },
    /// The input ended before the RDB did.
    #[error(
        "RDB truncated at offset {offset}{}: input ended while expecting {expected}",
        KeySuffix(key)
    )]
    Truncated {
        /// Number of bytes received.
        offset: u64,
        /// The key being read, when inside a key record.
        key: Option<String>,
        /// What was being read.
        expected: Cow<'static, str>,
    },
    /// Reading from the underlying source failed.
    #[error("reading RDB input: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The absolute byte offset the error refers to, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::BadMagic { .. } | Error::UnsupportedVersion { .. } => Some(0),
            Error::Corrupt { offset, .. }
            | Error::UnknownType { offset, .. }
            | Error::UnknownOpcode { offset, .. }
            | Error::Checksum { offset, .. }
            | Error::Truncated { offset, .. } => Some(*offset),
            Error::Io(_) => None,
        }
    }
}

struct KeySuffix<'a>(&'a Option<String>);

impl fmt::Display for KeySuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(k) => write!(f, " in key {k}"),
            None => Ok(()),
        }
    }
}

/// Escapes arbitrary key bytes for an error message: printable ASCII as is, the rest as `\xNN`,
/// quoted, and cut after 200 bytes so a 512 MiB key cannot flood a log.
pub fn printable_key(key: &[u8]) -> String {
    printable_bytes(key, 200)
}

/// Escapes arbitrary bytes for a message or report: printable ASCII as is, `"` and `\` escaped,
/// the rest as `\xNN`, quoted, cut after `limit` bytes with the full length noted. One
/// function for keys and values everywhere shake names them (errors, `verify`, `compare`).
pub fn printable_bytes(bytes: &[u8], limit: usize) -> String {
    let mut s = String::with_capacity(bytes.len().min(limit) + 2);
    s.push('"');
    for &b in bytes.iter().take(limit) {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > limit {
        s.push_str(&format!("…({} bytes)", bytes.len()));
    }
    s.push('"');
    s
}

/// A format violation found by a slice-level codec, positioned relative to the slice it was
/// given. Turned into an [`Error`] by whoever knows the absolute offset and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Position inside the slice handed to the codec.
    pub pos: usize,
    /// What the format required there.
    pub expected: Cow<'static, str>,
}

impl Malformed {
    /// A violation at `pos`.
    pub fn new(pos: usize, expected: impl Into<Cow<'static, str>>) -> Self {
        Malformed {
            pos,
            expected: expected.into(),
        }
    }

    /// Shifts the position by `by` bytes, for a codec nested inside another.
    pub fn shift(mut self, by: usize) -> Self {
        self.pos += by;
        self
    }

    /// Converts to an [`Error::Corrupt`] whose slice started at absolute offset `base`.
    pub fn at(self, base: u64, key: Option<&[u8]>) -> Error {
        Error::Corrupt {
            offset: base + self.pos as u64,
            key: key.map(printable_key),
            expected: self.expected,
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: expected {}", self.pos, self.expected)
    }
}

/// Result of a slice-level codec.
pub type MResult<T> = Result<T, Malformed>;
