//! The RDB engine: a streaming reader for every RDB version (1–12, Valkey 80/81), decoders for
//! every encoding, DUMP payloads, and a rewrite into plain commands.
//!
//! # Why our own parser
//! No existing crate covers streams with consumer groups, module values, functions, the 7.4
//! hash-field-expiry types and Valkey 9's formats together; and shake needs two things parsers
//! built for inspection do not give: the *exact encoded bytes* of every value (the raw material
//! of RESTORE payloads and of the journal) and *bounded memory* on a socket stream whatever the
//! value size. So this module is pure, synchronous Rust over bytes — no I/O runtime, no CLI.
//!
//! # Layout
//!
//! | file | concept |
//! |------|---------|
//! | [`error`] | the error enum (offset, key, what was expected) and [`Malformed`] for slice codecs |
//! | [`version`] | header (magic + version), object type ids per flavor, opcodes |
//! | [`length`] | the RDB length encoding |
//! | [`string`] | RDB strings (raw, integer, LZF) and the LZF decompressor |
//! | [`checksum`] | CRC-64/Redis |
//! | `walk` | resumable framing: where a record or value ends, without decoding it |
//! | [`reader`] | the push-based streaming reader and its events |
//! | [`cursor`] | bounds-checked reading of a complete slice |
//! | [`elem`] | one element of a compact encoding |
//! | [`listpack`], [`ziplist`], [`intset`], [`zipmap`] | the compact blob encodings |
//! | [`mod@decode`] | encoded value bytes → logical values, as iterators |
//! | [`stream`] | stream values: entries, groups, consumers, PEL |
//! | [`dump`] | DUMP payloads (build, check, relabel) and what a destination accepts |
//! | [`rewrite`] | values → plain commands, with warnings for what cannot be exact |
//! | [`scan`] | a whole file → keys (with values) and statistics: the library face of `inspect` |
//! | [`json`] | decoded values as JSON (inspect, comparisons) |
//!
//! The byte layouts are in `docs/rdb.md` and the design reference
//! (`redis-replication-and-rdb.md` §2–§3).

pub mod checksum;
pub mod cursor;
pub mod decode;
pub mod dump;
pub mod elem;
pub mod error;
pub mod intset;
pub mod json;
pub mod length;
pub mod listpack;
pub mod reader;
pub mod rewrite;
pub mod scan;
pub mod stream;
pub mod string;
pub mod version;
mod walk;
pub mod ziplist;
pub mod zipmap;

pub use decode::{Value, decode};
pub use error::{Error, Malformed};
pub use reader::{
    Checksum, ChecksumStatus, Event, EventRef, Key, KeyMeta, KeyRef, ReadEvents, Reader,
    ReaderOptions,
};
pub use version::{Flavor, Header, Kind, ObjectType};
