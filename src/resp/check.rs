//! The *check* half: validate one frame without allocating and report its exact wire length.

use super::Error;

/// Bounds that keep a corrupt or hostile peer from making us wait for, or allocate, absurd
/// amounts. The defaults follow Redis' own: bulk strings up to 512 MiB (`proto-max-bulk-len`)
/// — raise `max_bulk` when the source raised its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted, in bytes.
    pub max_bulk: u64,
    /// Largest element count of one aggregate.
    pub max_elements: u64,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 << 20,
            max_elements: 1 << 32,
            max_depth: 64,
        }
    }
}

/// Checks whether `buf` starts with a whole frame, with the default [`Limits`].
///
/// `Ok(None)`: not yet, read more. `Ok(Some(len))`: a whole frame of `len` bytes.
pub fn check(buf: &[u8]) -> Result<Option<usize>, Error> {
    check_with(buf, &Limits::default())
}

/// [`check`] with explicit limits.
pub fn check_with(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    let mut pos = 0;
    match check_at(buf, &mut pos, limits, 0)? {
        Some(()) => Ok(Some(pos)),
        None => Ok(None),
    }
}

/// Finds the CRLF-terminated line starting at `start`; returns the line (without CRLF) and the
/// offset just after the CRLF.
pub(super) fn line(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(start..)?;
    let mut from = 0;
    loop {
        let i = memchr::memchr(b'\r', &rest[from..])? + from;
        match rest.get(i + 1) {
            None => return None,
            Some(b'\n') => return Some((&rest[..i], start + i + 2)),
            Some(_) => from = i + 1,
        }
    }
}

/// Parses a decimal signed integer the way Redis writes them (optional `-`, digits).
pub(super) fn number(text: &[u8], offset: usize) -> Result<i64, Error> {
    let bad = || Error::InvalidNumber {
        text: String::from_utf8_lossy(&text[..text.len().min(32)]).into_owned(),
        offset,
    };
    let (neg, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(bad());
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        value = value
            .checked_mul(10)
            .and_then(|v| {
                if neg {
                    v.checked_sub((d - b'0') as i64)
                } else {
                    v.checked_add((d - b'0') as i64)
                }
            })
            .ok_or_else(bad)?;
    }
    Ok(value)
}

fn check_at(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<()>, Error> {
    let start = *pos;
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, start + 1) else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' | b'(' => {
            *pos = next;
            Ok(Some(()))
        }
        b':' => {
            number(text, start + 1)?;
            *pos = next;
            Ok(Some(()))
        }
        b',' => {
            parse_double(text).ok_or(Error::Invalid {
                what: "double",
                offset: start,
            })?;
            *pos = next;
            Ok(Some(()))
        }
        b'#' => {
            if text != b"t" && text != b"f" {
                return Err(Error::Invalid {
                    what: "boolean",
                    offset: start,
                });
            }
            *pos = next;
            Ok(Some(()))
        }
        b'_' => {
            if !text.is_empty() {
                return Err(Error::Invalid {
                    what: "null",
                    offset: start,
                });
            }
            *pos = next;
            Ok(Some(()))
        }
        b'$' | b'!' | b'=' => {
            let len = number(text, start + 1)?;
            if len == -1 && kind == b'$' {
                *pos = next;
                return Ok(Some(()));
            }
            if len < 0 {
                return Err(Error::Invalid {
                    what: "bulk length",
                    offset: start,
                });
            }
            let len = len as u64;
            if len > limits.max_bulk {
                return Err(Error::TooLarge {
                    what: "bulk string",
                    len,
                    limit: limits.max_bulk,
                    offset: start,
                });
            }
            let end = next as u64 + len;
            if (buf.len() as u64) < end + 2 {
                return Ok(None);
            }
            let end = end as usize;
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Error::MissingCrlf { offset: end });
            }
            if kind == b'=' && len < 4 {
                return Err(Error::Invalid {
                    what: "verbatim string",
                    offset: start,
                });
            }
            *pos = end + 2;
            Ok(Some(()))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number(text, start + 1)?;
            if count == -1 && kind == b'*' {
                *pos = next;
                return Ok(Some(()));
            }
            if count < 0 {
                return Err(Error::Invalid {
                    what: "aggregate length",
                    offset: start,
                });
            }
            let count = count as u64;
            if count > limits.max_elements {
                return Err(Error::TooLarge {
                    what: "aggregate",
                    len: count,
                    limit: limits.max_elements,
                    offset: start,
                });
            }
            if depth >= limits.max_depth {
                return Err(Error::TooDeep {
                    limit: limits.max_depth,
                    offset: start,
                });
            }
            let elements = if kind == b'%' || kind == b'|' {
                count * 2
            } else {
                count
            };
            *pos = next;
            for _ in 0..elements {
                if check_at(buf, pos, limits, depth + 1)?.is_none() {
                    return Ok(None);
                }
            }
            if kind == b'|' {
                // An attribute annotates the reply that follows it: both form one frame.
                return check_at(buf, pos, limits, depth);
            }
            Ok(Some(()))
        }
        other => Err(Error::InvalidType {
            byte: other,
            offset: start,
        }),
    }
}

/// Parses a RESP3 double: decimal, `inf`, `-inf`, `nan`.
pub(super) fn parse_double(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" => Some(f64::NAN),
        _ if s.is_empty()
            || s.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}
