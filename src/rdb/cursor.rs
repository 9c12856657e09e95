//! A bounds-checked cursor over a complete slice, for parsing records and values once the
//! walker has proved they are whole. Running out of bytes is a [`Malformed`] here, never a panic.

use std::borrow::Cow;

use super::error::{MResult, Malformed};
use super::{length, string};

/// Reads RDB primitives from a slice, tracking the position for error messages.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Current position.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn ended(&self, what: &'static str) -> Malformed {
        Malformed::new(self.buf.len(), format!("{what}, input ended"))
    }

    /// Reads `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> MResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.ended(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> MResult<u8> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads an 8-byte little-endian signed integer (times, TTLs).
    pub fn i64_le(&mut self, what: &'static str) -> MResult<i64> {
        Ok(i64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    /// Reads an 8-byte big-endian unsigned integer (stream IDs).
    pub fn u64_be(&mut self, what: &'static str) -> MResult<u64> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    /// Reads an RDB length.
    pub fn len(&mut self, what: &'static str) -> MResult<u64> {
        match length::parse_len(&self.buf[self.pos..]).map_err(|e| e.shift(self.pos))? {
            Some((n, used)) => {
                self.pos += used;
                Ok(n)
            }
            None => Err(self.ended(what)),
        }
    }

    /// Reads and decodes an RDB string (integer and LZF forms expanded).
    pub fn string(&mut self) -> MResult<Cow<'a, [u8]>> {
        let start = self.pos;
        let (s, used) = string::read(&self.buf[start..]).map_err(|e| e.shift(start))?;
        self.pos += used;
        Ok(s)
    }
}
