//! The [`Frame`] value: one RESP2 or RESP3 protocol element.

use bytes::Bytes;

/// One RESP element. Strings are `Bytes` slices of the buffer they were read from: Redis keys
/// and values are binary, never assume UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK` — a simple string.
    Simple(Bytes),
    /// `-ERR …` — an error reply (also RESP3 blob errors `!`).
    Error(Bytes),
    /// `:42` — a signed 64-bit integer.
    Integer(i64),
    /// `$3\r\nfoo` — a binary-safe bulk string (also RESP3 verbatim `=`, without its format).
    Bulk(Bytes),
    /// `$-1`, `*-1` or RESP3 `_` — the null reply.
    Null,
    /// `*N` — an array (also RESP3 sets `~` and pushes `>`).
    Array(Vec<Frame>),
    /// RESP3 `%N` — a map, as key/value pairs in wire order.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `,1.5` — a double (`inf`, `-inf`, `nan` included).
    Double(f64),
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `(123…` — a big number, kept as its decimal text.
    BigNumber(Bytes),
}

impl Frame {
    /// Builds a bulk string frame from anything byte-like.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// The bytes of a simple or bulk string (or a big number), if this is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) | Frame::BigNumber(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a simple or bulk string, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The integer value, accepting a decimal string too (servers differ on which they send).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Frame::Integer(i) => Some(*i),
            other => other.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Looks a field up by name in a map — a RESP3 map, or a RESP2 array of alternating names and
    /// values (how `HELLO 2`, `CLUSTER SHARDS` and friends answer in RESP2).
    pub fn field(&self, name: &str) -> Option<&Frame> {
        match self {
            Frame::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_bytes() == Some(name.as_bytes()))
                .map(|(_, v)| v),
            Frame::Array(items) => items
                .chunks_exact(2)
                .find(|kv| kv[0].as_bytes() == Some(name.as_bytes()))
                .map(|kv| &kv[1]),
            _ => None,
        }
    }

    /// The message of an error reply.
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Frame::Error(msg) => Some(msg),
            _ => None,
        }
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}
