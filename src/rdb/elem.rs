//! One element of a compact encoding (listpack, ziplist, intset, zipmap): a byte string or an
//! integer, as the encodings store them.

use bytes::Bytes;

/// An element as stored: strings and integers are distinct encodings, the logical value of an
/// integer is its decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    /// A byte string (shares the blob's memory).
    Str(Bytes),
    /// An integer entry.
    Int(i64),
}

impl Elem {
    /// The logical value: integers become their decimal text, as Redis returns them.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Elem::Str(b) => b,
            Elem::Int(i) => Bytes::from(i.to_string()),
        }
    }

    /// The integer, for elements that must be one (TTLs, stream fields); strings holding a
    /// canonical integer are accepted too.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Elem::Int(i) => Some(*i),
            Elem::Str(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        }
    }
}
