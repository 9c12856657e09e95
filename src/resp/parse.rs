//! The *parse* half: build a [`Frame`] from bytes that [`super::check`] accepted.

use super::check::{Limits, check_with, line, number, parse_double};
use super::{Error, Frame};
use bytes::Bytes;

/// Parses the one frame that `bytes` holds exactly.
///
/// `bytes` must be a whole frame as measured by [`super::check`]; anything else is an error
/// (never a panic). Bulk strings share `bytes`' storage.
pub fn parse(bytes: &Bytes) -> Result<Frame, Error> {
    let limits = Limits {
        max_bulk: u64::MAX,
        max_elements: u64::MAX,
        max_depth: Limits::default().max_depth.max(1024),
    };
    let needed = check_with(bytes, &limits)?;
    if needed != Some(bytes.len()) {
        return Err(Error::LengthMismatch {
            given: bytes.len(),
            needed: needed.unwrap_or(0),
        });
    }
    parse_checked(bytes)
}

/// Parses a frame that [`super::check`] has just measured at exactly `bytes.len()`: the walk is
/// not repeated. Only [`super::decode`] calls it, right after its own check.
pub(super) fn parse_checked(bytes: &Bytes) -> Result<Frame, Error> {
    let mut pos = 0;
    parse_at(bytes, &mut pos)
}

/// Parses at `pos`, which `check` guaranteed to be well formed; errors are still returned
/// rather than assumed away.
fn parse_at(bytes: &Bytes, pos: &mut usize) -> Result<Frame, Error> {
    let start = *pos;
    let kind = bytes[start];
    let invalid = |what| Error::Invalid {
        what,
        offset: start,
    };
    let (text, next) = line(bytes, start + 1).ok_or(invalid("line"))?;
    let text_range = start + 1..start + 1 + text.len();
    *pos = next;
    Ok(match kind {
        b'+' => Frame::Simple(bytes.slice(text_range)),
        b'-' => Frame::Error(bytes.slice(text_range)),
        b'(' => Frame::BigNumber(bytes.slice(text_range)),
        b':' => Frame::Integer(number(text, start + 1)?),
        b',' => Frame::Double(parse_double(text).ok_or(invalid("double"))?),
        b'#' => Frame::Boolean(text == b"t"),
        b'_' => Frame::Null,
        b'$' | b'!' | b'=' => {
            let len = number(text, start + 1)?;
            if len < 0 {
                return Ok(Frame::Null);
            }
            let body = next..next + len as usize;
            *pos = body.end + 2;
            match kind {
                b'$' => Frame::Bulk(bytes.slice(body)),
                b'!' => Frame::Error(bytes.slice(body)),
                // Verbatim: "txt:" prefix, then the text.
                _ => Frame::Bulk(bytes.slice(body.start + 4..body.end)),
            }
        }
        b'*' | b'~' | b'>' => {
            let count = number(text, start + 1)?;
            if count < 0 {
                return Ok(Frame::Null);
            }
            // Capacity is bounded by what can exist in the buffer: each element is >= 3 bytes.
            let cap = (count as usize).min(bytes.len() / 3);
            let mut items = Vec::with_capacity(cap);
            for _ in 0..count {
                items.push(parse_at(bytes, pos)?);
            }
            Frame::Array(items)
        }
        b'%' => {
            let count = number(text, start + 1)?;
            let cap = (count.max(0) as usize).min(bytes.len() / 6);
            let mut pairs = Vec::with_capacity(cap);
            for _ in 0..count {
                let k = parse_at(bytes, pos)?;
                let v = parse_at(bytes, pos)?;
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        }
        b'|' => {
            // Attributes carry metadata we do not use: skip them, return the annotated reply.
            let count = number(text, start + 1)?;
            for _ in 0..count * 2 {
                parse_at(bytes, pos)?;
            }
            parse_at(bytes, pos)?
        }
        other => {
            return Err(Error::InvalidType {
                byte: other,
                offset: start,
            });
        }
    })
}
