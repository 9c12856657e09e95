//! RDB length encoding (`rdbSaveLen` / `rdbLoadLenByRef`).
//!
//! | first byte   | form            | value                              |
//! |--------------|-----------------|------------------------------------|
//! | `00xxxxxx`   | 6-bit           | `b & 0x3F`                         |
//! | `01xxxxxx` b | 14-bit          | `((b & 0x3F) << 8) \| b1`, big-endian |
//! | `0x80` + 4   | 32-bit          | u32 big-endian                     |
//! | `0x81` + 8   | 64-bit          | u64 big-endian (RDB ≥ 8)           |
//! | `11xxxxxx`   | special string  | not a length: `b & 0x3F` selects the string encoding |
//! | `0x82..0xBF` | invalid         |                                    |
//!
//! `u64::MAX` is a legitimate value (a stream group's `entries_read` of −1), never an error.

use super::error::{MResult, Malformed};

/// What a length field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenOrEnc {
    /// A plain length or integer.
    Len(u64),
    /// The `11xxxxxx` form: a special string encoding number (0–3 valid).
    Encoded(u8),
}

/// Reads a length field at the start of `buf`. `Ok(None)` means more bytes are needed.
#[inline(always)]
pub fn parse(buf: &[u8]) -> MResult<Option<(LenOrEnc, usize)>> {
    let Some(&b) = buf.first() else {
        return Ok(None);
    };
    match b >> 6 {
        0 => Ok(Some((LenOrEnc::Len(u64::from(b & 0x3F)), 1))),
        1 => match buf.get(1) {
            Some(&b1) => Ok(Some((
                LenOrEnc::Len((u64::from(b & 0x3F) << 8) | u64::from(b1)),
                2,
            ))),
            None => Ok(None),
        },
        3 => Ok(Some((LenOrEnc::Encoded(b & 0x3F), 1))),
        _ => match b {
            0x80 => match buf.get(1..5) {
                Some(s) => Ok(Some((
                    LenOrEnc::Len(u64::from(u32::from_be_bytes(s.try_into().unwrap()))),
                    5,
                ))),
                None => Ok(None),
            },
            0x81 => match buf.get(1..9) {
                Some(s) => Ok(Some((
                    LenOrEnc::Len(u64::from_be_bytes(s.try_into().unwrap())),
                    9,
                ))),
                None => Ok(None),
            },
            _ => Err(Malformed::new(
                0,
                format!("a length (byte 0x{b:02x} is not a length encoding)"),
            )),
        },
    }
}

/// Reads a plain length (the special string form is an error here).
#[inline(always)]
pub fn parse_len(buf: &[u8]) -> MResult<Option<(u64, usize)>> {
    match parse(buf)? {
        None => Ok(None),
        Some((LenOrEnc::Len(n), used)) => Ok(Some((n, used))),
        Some((LenOrEnc::Encoded(e), _)) => Err(Malformed::new(
            0,
            format!("a length, found string encoding marker 0x{:02x}", 0xC0 | e),
        )),
    }
}

/// Appends `n` in the smallest form, as Redis writes it.
pub fn encode(n: u64, out: &mut Vec<u8>) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_form() {
        for n in [
            0,
            1,
            63,
            64,
            300,
            16383,
            16384,
            70000,
            u64::from(u32::MAX),
            1 << 40,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            encode(n, &mut out);
            assert_eq!(parse_len(&out).unwrap(), Some((n, out.len())), "n={n}");
            // every strict prefix asks for more bytes instead of failing
            for cut in 0..out.len() {
                assert_eq!(parse_len(&out[..cut]).unwrap(), None);
            }
        }
    }

    #[test]
    fn accepts_non_minimal_forms_and_rejects_invalid() {
        assert_eq!(parse_len(&[0x80, 0, 0, 0, 5]).unwrap(), Some((5, 5)));
        assert!(parse(&[0x82]).is_err());
        assert!(parse(&[0xBF]).is_err());
        assert_eq!(parse(&[0xC3]).unwrap(), Some((LenOrEnc::Encoded(3), 1)));
        assert!(parse_len(&[0xC0]).is_err());
    }
}
