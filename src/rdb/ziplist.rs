//! Ziplists (`ziplist.c`): lists, hashes and sorted sets written by Redis ≤ 6.2 and quicklist-1
//! nodes. Redis 7 converts them on load and never writes them, but every old RDB has them.
//!
//! ```text
//! zlbytes u32 LE | zltail u32 LE | zllen u16 LE (65535 = unknown) | entries… | 0xFF
//! entry = prevlen (1 byte < 254, else 0xFE + u32 LE) | encoding | data
//! ```
//! | encoding | value |
//! |---|---|
//! | `00pppppp` | string, 6-bit length |
//! | `01pppppp` b | string, 14-bit length, big-endian |
//! | `10000000` + u32 BE | string, 32-bit length |
//! | `0xC0` / `0xD0` / `0xE0` | int16 / int32 / int64 LE |
//! | `0xF0` | int24 LE (RDB ≥ 6) |
//! | `0xFE` | int8 |
//! | `0xF1`..`0xFD` | immediate 0..12 (low nibble − 1) |

use bytes::Bytes;

use super::elem::Elem;
use super::error::{MResult, Malformed};

/// Iterates the elements of a ziplist blob, checking sizes, bounds, prevlen chain and count.
#[derive(Debug, Clone)]
pub struct ZiplistIter {
    blob: Bytes,
    pos: usize,
    prev_size: usize,
    declared: u16,
    seen: u64,
    done: bool,
}

impl ZiplistIter {
    /// Checks the header and starts iterating.
    pub fn new(blob: Bytes) -> MResult<Self> {
        if blob.len() < 11 {
            return Err(Malformed::new(
                0,
                format!("a ziplist of at least 11 bytes, got {}", blob.len()),
            ));
        }
        let zlbytes = u32::from_le_bytes(blob[..4].try_into().unwrap()) as usize;
        if zlbytes != blob.len() {
            return Err(Malformed::new(
                0,
                format!(
                    "ziplist zlbytes equal to its size {}, header says {zlbytes}",
                    blob.len()
                ),
            ));
        }
        let tail = u32::from_le_bytes(blob[4..8].try_into().unwrap()) as usize;
        if tail >= blob.len() {
            return Err(Malformed::new(4, "a ziplist tail offset inside the blob"));
        }
        if blob[blob.len() - 1] != 0xFF {
            return Err(Malformed::new(
                blob.len() - 1,
                "the ziplist terminator 0xFF",
            ));
        }
        let declared = u16::from_le_bytes([blob[8], blob[9]]);
        Ok(ZiplistIter {
            blob,
            pos: 10,
            prev_size: 0,
            declared,
            seen: 0,
            done: false,
        })
    }

    fn entry(&mut self) -> MResult<Option<Elem>> {
        let b = &self.blob;
        let p = self.pos;
        if b[p] == 0xFF {
            if p != b.len() - 1 {
                return Err(Malformed::new(p, "ziplist terminator only at the end"));
            }
            if self.declared != u16::MAX && u64::from(self.declared) != self.seen {
                return Err(Malformed::new(
                    p,
                    format!(
                        "{} ziplist entries as declared, found {}",
                        self.declared, self.seen
                    ),
                ));
            }
            return Ok(None);
        }
        let bad = |what: &'static str| Malformed::new(p, what);
        // entry must end before the terminator
        let within = |end: usize| {
            if end < b.len() {
                Ok(())
            } else {
                Err(bad("a ziplist entry inside the blob"))
            }
        };
        let (prevlen, pl) = if b[p] < 254 {
            (b[p] as usize, 1)
        } else {
            within(p + 5)?;
            (
                u32::from_le_bytes(b[p + 1..p + 5].try_into().unwrap()) as usize,
                5,
            )
        };
        if prevlen != self.prev_size {
            return Err(Malformed::new(
                p,
                format!(
                    "ziplist prevlen {} (size of the previous entry), found {prevlen}",
                    self.prev_size
                ),
            ));
        }
        let e = p + pl;
        within(e)?;
        let enc = b[e];
        let int = |n: usize| -> MResult<i64> {
            within(e + n)?;
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&b[e + 1..e + 1 + n]);
            let shift = 64 - 8 * n as u32;
            Ok((i64::from_le_bytes(v) << shift) >> shift)
        };
        let (elem, hdr, data) = match enc >> 6 {
            0 => (None, 1, (enc & 0x3F) as usize),
            1 => {
                within(e + 1)?;
                (None, 2, (((enc & 0x3F) as usize) << 8) | b[e + 1] as usize)
            }
            2 => {
                if enc != 0x80 {
                    return Err(bad("a ziplist string encoding 0x80 for 32-bit lengths"));
                }
                within(e + 4)?;
                (
                    None,
                    5,
                    u32::from_be_bytes(b[e + 1..e + 5].try_into().unwrap()) as usize,
                )
            }
            _ => match enc {
                0xC0 => (Some(int(2)?), 1, 2),
                0xD0 => (Some(int(4)?), 1, 4),
                0xE0 => (Some(int(8)?), 1, 8),
                0xF0 => (Some(int(3)?), 1, 3),
                0xFE => (Some(int(1)?), 1, 1),
                0xF1..=0xFD => (Some(i64::from(enc & 0x0F) - 1), 1, 0),
                _ => {
                    return Err(Malformed::new(
                        e,
                        format!("a ziplist entry encoding, found 0x{enc:02x}"),
                    ));
                }
            },
        };
        let end = (e + hdr)
            .checked_add(data)
            .ok_or_else(|| bad("a ziplist entry size"))?;
        within(end)?;
        let elem = match elem {
            Some(i) => Elem::Int(i),
            None => Elem::Str(b.slice(e + hdr..end)),
        };
        self.prev_size = end - p;
        self.pos = end;
        self.seen += 1;
        Ok(Some(elem))
    }
}

impl Iterator for ZiplistIter {
    type Item = MResult<Elem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.entry().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// Builds a ziplist (strings stored as strings, canonical integers as int16/int32/int64). For
/// tests.
pub fn encode<'a>(elems: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![0u8; 10];
    let (mut prev, mut count, mut tail) = (0usize, 0usize, 10usize);
    for e in elems {
        let start = out.len();
        tail = start;
        if prev < 254 {
            out.push(prev as u8);
        } else {
            out.push(0xFE);
            out.extend_from_slice(&(prev as u32).to_le_bytes());
        }
        let int = std::str::from_utf8(e)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|i| i.to_string().as_bytes() == e);
        match int {
            Some(i) if (0..=12).contains(&i) => out.push(0xF1 + i as u8),
            Some(i) if i16::try_from(i).is_ok() => {
                out.push(0xC0);
                out.extend_from_slice(&(i as i16).to_le_bytes());
            }
            Some(i) if i32::try_from(i).is_ok() => {
                out.push(0xD0);
                out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            Some(i) => {
                out.push(0xE0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            None if e.len() < 64 => {
                out.push(e.len() as u8);
                out.extend_from_slice(e);
            }
            None if e.len() < 16384 => {
                out.extend_from_slice(&[0x40 | (e.len() >> 8) as u8, e.len() as u8]);
                out.extend_from_slice(e);
            }
            None => {
                out.push(0x80);
                out.extend_from_slice(&(e.len() as u32).to_be_bytes());
                out.extend_from_slice(e);
            }
        }
        prev = out.len() - start;
        count += 1;
    }
    out.push(0xFF);
    let n = out.len() as u32;
    out[..4].copy_from_slice(&n.to_le_bytes());
    out[4..8].copy_from_slice(&(tail as u32).to_le_bytes());
    out[8..10].copy_from_slice(&(count.min(65535) as u16).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let long = vec![b'q'; 20000];
        let mid = vec![b'r'; 300];
        let items: Vec<&[u8]> = vec![
            b"0",
            b"12",
            b"13",
            b"-5",
            b"40000",
            b"-3000000000",
            b"x",
            b"",
            &mid,
            &long,
            b"end",
        ];
        let zl = encode(items.iter().copied());
        let back: Vec<Bytes> = ZiplistIter::new(zl.clone().into())
            .unwrap()
            .map(|e| e.unwrap().into_bytes())
            .collect();
        assert_eq!(back.iter().map(|b| &b[..]).collect::<Vec<_>>(), items);
        for cut in 11..zl.len() {
            let mut bad = zl[..cut].to_vec();
            let n = bad.len() as u32;
            bad[..4].copy_from_slice(&n.to_le_bytes());
            let r: MResult<Vec<_>> = ZiplistIter::new(bad.into()).and_then(|i| i.collect());
            assert!(r.is_err(), "cut {cut}");
        }
    }

    #[test]
    fn int24_and_immediates() {
        let zl = vec![
            18, 0, 0, 0, 15, 0, 0, 0, 2, 0, 0, 0xF0, 0xFE, 0xFF, 0xFF, 5, 0xF3, 0xFF,
        ];
        let r: Vec<Elem> = ZiplistIter::new(zl.into())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(r, vec![Elem::Int(-2), Elem::Int(2)]);
    }
}
