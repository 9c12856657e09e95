//! RDB strings: raw, integer-encoded (`0xC0`–`0xC2`) and LZF-compressed (`0xC3`), and the LZF
//! decompressor.
//!
//! Every string in an RDB — keys, values, AUX fields, member names, consumer names — may use any
//! of the forms, so there is one reader for all of them.
//!
//! LZF is written here rather than taken from a crate: it is 40 lines, and we need what the
//! crates do not promise together — output bounded by the declared size *before* allocating, a
//! position on every error, and no `unsafe`.

use std::borrow::Cow;

use super::error::{MResult, Malformed};
use super::length::{self, LenOrEnc};

/// The header of an RDB string, enough to know how many bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrHeader {
    /// `len` raw bytes follow.
    Raw {
        /// Number of bytes.
        len: u64,
    },
    /// An integer stored in 1, 2 or 4 LE bytes (already read: nothing follows).
    Int(i64),
    /// `clen` compressed bytes follow, which expand to `ulen` bytes.
    Lzf {
        /// Compressed size.
        clen: u64,
        /// Uncompressed size.
        ulen: u64,
    },
}

impl StrHeader {
    /// Number of payload bytes after the header.
    pub fn payload_len(self) -> u64 {
        match self {
            StrHeader::Raw { len } => len,
            StrHeader::Int(_) => 0,
            StrHeader::Lzf { clen, .. } => clen,
        }
    }
}

/// Reads a string header at the start of `buf`; `Ok(None)` when more bytes are needed.
/// Returns the header and its size in bytes (for integers, the whole string).
#[inline(always)]
pub fn parse_header(buf: &[u8]) -> MResult<Option<(StrHeader, usize)>> {
    let Some((first, used)) = length::parse(buf)? else {
        return Ok(None);
    };
    match first {
        LenOrEnc::Len(len) => Ok(Some((StrHeader::Raw { len }, used))),
        LenOrEnc::Encoded(0) => Ok(buf.get(1).map(|&b| (StrHeader::Int(i64::from(b as i8)), 2))),
        LenOrEnc::Encoded(1) => Ok(buf.get(1..3).map(|s| {
            (
                StrHeader::Int(i64::from(i16::from_le_bytes([s[0], s[1]]))),
                3,
            )
        })),
        LenOrEnc::Encoded(2) => Ok(buf.get(1..5).map(|s| {
            (
                StrHeader::Int(i64::from(i32::from_le_bytes(s.try_into().unwrap()))),
                5,
            )
        })),
        LenOrEnc::Encoded(3) => {
            let Some((clen, a)) = length::parse_len(&buf[1..]).map_err(|e| e.shift(1))? else {
                return Ok(None);
            };
            let Some((ulen, b)) = length::parse_len(&buf[1 + a..]).map_err(|e| e.shift(1 + a))?
            else {
                return Ok(None);
            };
            if clen == 0 {
                return Err(Malformed::new(1, "a non-zero LZF compressed length"));
            }
            Ok(Some((StrHeader::Lzf { clen, ulen }, 1 + a + b)))
        }
        LenOrEnc::Encoded(e) => Err(Malformed::new(
            0,
            format!(
                "a string (0x{:02x} is not a string encoding: expected 0xC0..0xC3)",
                0xC0 | e
            ),
        )),
    }
}

/// Reads and decodes a whole string from a complete slice. Returns the value and the number of
/// bytes the encoded string occupied. Truncation is an error here.
pub fn read(buf: &[u8]) -> MResult<(Cow<'_, [u8]>, usize)> {
    let (h, used) = parse_header(buf)?
        .ok_or_else(|| Malformed::new(buf.len(), "the rest of a string header, input ended"))?;
    match h {
        StrHeader::Int(i) => Ok((Cow::Owned(i.to_string().into_bytes()), used)),
        StrHeader::Raw { len } => {
            let end = end_of(buf, used, len)?;
            Ok((Cow::Borrowed(&buf[used..end]), end))
        }
        StrHeader::Lzf { clen, ulen } => {
            let end = end_of(buf, used, clen)?;
            let out = lzf_decompress(&buf[used..end], ulen).map_err(|e| e.shift(used))?;
            Ok((Cow::Owned(out), end))
        }
    }
}

fn end_of(buf: &[u8], start: usize, len: u64) -> MResult<usize> {
    let avail = (buf.len() - start) as u64;
    if len > avail {
        return Err(Malformed::new(
            buf.len(),
            format!("{len} bytes of string data, only {avail} present"),
        ));
    }
    Ok(start + len as usize)
}

/// Largest expansion LZF can achieve: a 3-byte back-reference produces at most 264 bytes.
const LZF_MAX_RATIO: u64 = 89;

/// Decompresses LZF data that must expand to exactly `ulen` bytes.
///
/// The output is allocated once, and only after checking that `ulen` is achievable from
/// `input.len()` bytes, so a corrupt length cannot trigger a huge allocation.
pub fn lzf_decompress(input: &[u8], ulen: u64) -> MResult<Vec<u8>> {
    if ulen > (input.len() as u64).saturating_mul(LZF_MAX_RATIO) {
        return Err(Malformed::new(
            0,
            format!(
                "an LZF size reachable from {} compressed bytes, not {ulen}",
                input.len()
            ),
        ));
    }
    let ulen = ulen as usize;
    let mut out: Vec<u8> = Vec::with_capacity(ulen);
    let mut i = 0;
    while i < input.len() {
        let c = input[i] as usize;
        i += 1;
        if c < 32 {
            let n = c + 1;
            if i + n > input.len() {
                return Err(Malformed::new(i, "LZF literal bytes, input ended"));
            }
            if out.len() + n > ulen {
                return Err(Malformed::new(
                    i,
                    format!("LZF output of {ulen} bytes, literal overruns it"),
                ));
            }
            out.extend_from_slice(&input[i..i + n]);
            i += n;
        } else {
            let mut len = c >> 5;
            if len == 7 {
                let Some(&b) = input.get(i) else {
                    return Err(Malformed::new(i, "LZF back-reference length, input ended"));
                };
                len += b as usize;
                i += 1;
            }
            let Some(&b) = input.get(i) else {
                return Err(Malformed::new(i, "LZF back-reference offset, input ended"));
            };
            i += 1;
            let off = ((c & 0x1F) << 8) + b as usize + 1;
            let n = len + 2;
            if off > out.len() {
                return Err(Malformed::new(i, "an LZF back-reference inside the output"));
            }
            if out.len() + n > ulen {
                return Err(Malformed::new(
                    i,
                    format!("LZF output of {ulen} bytes, back-reference overruns it"),
                ));
            }
            let start = out.len() - off;
            if off >= n {
                out.extend_from_within(start..start + n);
            } else {
                // Overlapping copy: the bytes from `start` repeat with period `off`, so the
                // region can be doubled each step instead of copied byte by byte.
                let end = out.len() + n;
                while out.len() < end {
                    let take = (out.len() - start).min(end - out.len());
                    out.extend_from_within(start..start + take);
                }
            }
        }
    }
    if out.len() != ulen {
        return Err(Malformed::new(
            input.len(),
            format!("LZF data expanding to {ulen} bytes, got {}", out.len()),
        ));
    }
    Ok(out)
}

/// Appends `s` as a raw RDB string (length + bytes).
pub fn encode_raw(s: &[u8], out: &mut Vec<u8>) {
    length::encode(s.len() as u64, out);
    out.extend_from_slice(s);
}

/// Appends `s` the way Redis would without compression: integer-encoded when it is a canonical
/// decimal integer in i32 range, raw otherwise.
pub fn encode(s: &[u8], out: &mut Vec<u8>) {
    if s.len() <= 11
        && let Some(i) = std::str::from_utf8(s)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        && i.to_string().as_bytes() == s
    {
        if let Ok(v) = i8::try_from(i) {
            out.extend_from_slice(&[0xC0, v as u8]);
            return;
        } else if let Ok(v) = i16::try_from(i) {
            out.push(0xC1);
            out.extend_from_slice(&v.to_le_bytes());
            return;
        } else if let Ok(v) = i32::try_from(i) {
            out.push(0xC2);
            out.extend_from_slice(&v.to_le_bytes());
            return;
        }
    }
    encode_raw(s, out);
}

/// Appends `s` as an LZF string using literal runs only (valid LZF any decoder accepts; used by
/// tests to exercise the compressed path). An empty string is written raw: LZF cannot hold it.
pub fn encode_lzf_literal(s: &[u8], out: &mut Vec<u8>) {
    if s.is_empty() {
        return encode_raw(s, out);
    }
    let mut comp = Vec::with_capacity(s.len() + s.len() / 32 + 1);
    for chunk in s.chunks(32) {
        comp.push((chunk.len() - 1) as u8);
        comp.extend_from_slice(chunk);
    }
    out.push(0xC3);
    length::encode(comp.len() as u64, out);
    length::encode(s.len() as u64, out);
    out.extend_from_slice(&comp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_forms() {
        assert_eq!(
            read(&[0xC0, 0x40]).unwrap(),
            (Cow::Owned(b"64".to_vec()), 2)
        );
        assert_eq!(read(&[0xC0, 0xFF]).unwrap().0.as_ref(), b"-1");
        assert_eq!(read(&[0xC1, 0x39, 0x30]).unwrap().0.as_ref(), b"12345");
        assert_eq!(
            read(&[0xC2, 0, 0, 0, 0x80]).unwrap().0.as_ref(),
            b"-2147483648"
        );
        for s in [
            "0",
            "-1",
            "127",
            "128",
            "-32768",
            "40000",
            "2147483647",
            "-2147483649",
            "007",
            "x",
        ] {
            let mut out = Vec::new();
            encode(s.as_bytes(), &mut out);
            assert_eq!(
                read(&out).unwrap(),
                (Cow::Owned(s.as_bytes().to_vec()), out.len())
            );
        }
    }

    #[test]
    fn lzf_back_references() {
        // "aaaaaaaaaa": literal 'a' then back-ref len 9 (c = (7<<5) | 0, extra 0 -> 9) off 1
        let comp = [0x00, b'a', 0xE0, 0x00, 0x00];
        assert_eq!(lzf_decompress(&comp, 10).unwrap(), b"aaaaaaaaaa");
        assert!(
            lzf_decompress(&comp, 9).is_err(),
            "overrun of the declared size"
        );
        assert!(lzf_decompress(&comp, 11).is_err(), "short output");
        assert!(
            lzf_decompress(&[0x20, 0x00], 3).is_err(),
            "back-reference before start"
        );
        assert!(
            lzf_decompress(&[0x05, b'a'], 6).is_err(),
            "literal past input"
        );
        assert!(
            lzf_decompress(&[0x00, b'a'], 1 << 40).is_err(),
            "impossible ratio, no allocation"
        );
    }

    #[test]
    fn lzf_overlapping_back_reference_repeats_the_pattern() {
        // "ab", then a back-reference of 20 bytes at distance 2
        let comp = [0x01, b'a', b'b', 0xE0, 11, 0x01];
        assert_eq!(lzf_decompress(&comp, 22).unwrap(), b"ab".repeat(11));
        // distance 3, length 10: "abc" + "abcabcabca"
        let comp = [0x02, b'a', b'b', b'c', 0xE0, 1, 0x02];
        assert_eq!(lzf_decompress(&comp, 13).unwrap(), b"abcabcabcabca");
    }

    #[test]
    fn lzf_literal_encoder_round_trips() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        encode_lzf_literal(&data, &mut out);
        assert_eq!(read(&out).unwrap(), (Cow::Owned(data), out.len()));
    }

    #[test]
    fn partial_headers_ask_for_more() {
        assert_eq!(parse_header(&[0xC3, 0x05]).unwrap(), None);
        assert_eq!(parse_header(&[0xC1, 0x05]).unwrap(), None);
        assert!(parse_header(&[0xC4]).is_err());
        assert!(read(&[0x05, b'a']).is_err());
    }
}
