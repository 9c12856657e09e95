//! Listpacks (`listpack.c`): hashes, sets and sorted sets of Redis ≥ 7.0, quicklist-2 PACKED
//! nodes, stream nodes.
//!
//! ```text
//! total_bytes u32 LE | num_elements u16 LE (65535 = unknown) | entries… | 0xFF
//! entry = encoding+data | backlen (size of encoding+data, 7-bit groups, 1–5 bytes)
//! ```
//! | first byte | kind | value |
//! |---|---|---|
//! | `0xxxxxxx` | 7-bit uint | `b & 0x7F` |
//! | `10xxxxxx` | 6-bit string | len `b & 0x3F` |
//! | `110xxxxx` b1 | 13-bit int | two's complement of `((b & 0x1F) << 8) \| b1` |
//! | `1110xxxx` b1 | 12-bit string | len `((b & 0x0F) << 8) \| b1` |
//! | `0xF0` + u32 LE | 32-bit string | |
//! | `0xF1`..`0xF4` | int16/24/32/64 LE | |
//!
//! The iterator checks the header against the blob size, every entry's bounds and backlen, the
//! terminator, and the element count, so a corrupt listpack is an error, never a panic.

use bytes::Bytes;

use super::elem::Elem;
use super::error::{MResult, Malformed};

/// Iterates the elements of a listpack blob.
#[derive(Debug, Clone)]
pub struct ListpackIter {
    blob: Bytes,
    pos: usize,
    declared: u16,
    seen: u64,
    done: bool,
}

impl ListpackIter {
    /// Checks the header and starts iterating.
    pub fn new(blob: Bytes) -> MResult<Self> {
        if blob.len() < 7 {
            return Err(Malformed::new(
                0,
                format!("a listpack of at least 7 bytes, got {}", blob.len()),
            ));
        }
        let total = u32::from_le_bytes(blob[..4].try_into().unwrap()) as usize;
        if total != blob.len() {
            return Err(Malformed::new(
                0,
                format!(
                    "listpack total_bytes equal to its size {}, header says {total}",
                    blob.len()
                ),
            ));
        }
        if blob[blob.len() - 1] != 0xFF {
            return Err(Malformed::new(
                blob.len() - 1,
                "the listpack terminator 0xFF",
            ));
        }
        let declared = u16::from_le_bytes([blob[4], blob[5]]);
        Ok(ListpackIter {
            blob,
            pos: 6,
            declared,
            seen: 0,
            done: false,
        })
    }

    /// The element count from the header, unless it says "unknown".
    pub fn declared_len(&self) -> Option<u16> {
        (self.declared != u16::MAX).then_some(self.declared)
    }

    fn entry(&mut self) -> MResult<Option<Elem>> {
        let b = &self.blob;
        let p = self.pos;
        let first = b[p];
        if first == 0xFF {
            if p != b.len() - 1 {
                return Err(Malformed::new(p, "listpack terminator only at the end"));
            }
            if self.declared != u16::MAX && u64::from(self.declared) != self.seen {
                return Err(Malformed::new(
                    p,
                    format!(
                        "{} listpack elements as declared, found {}",
                        self.declared, self.seen
                    ),
                ));
            }
            return Ok(None);
        }
        let need = |n: usize| -> MResult<()> {
            // the terminator must still follow
            if p + n >= b.len() {
                Err(Malformed::new(p, "a listpack entry inside the blob"))
            } else {
                Ok(())
            }
        };
        let int_le = |n: usize| -> i64 {
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&b[p + 1..p + 1 + n]);
            let shift = 64 - 8 * n as u32;
            (i64::from_le_bytes(v) << shift) >> shift
        };
        let (elem, size) = match first {
            0x00..=0x7F => (Elem::Int(i64::from(first)), 1),
            0x80..=0xBF => {
                let len = (first & 0x3F) as usize;
                need(1 + len)?;
                (Elem::Str(b.slice(p + 1..p + 1 + len)), 1 + len)
            }
            0xC0..=0xDF => {
                need(2)?;
                let u = (i64::from(first & 0x1F) << 8) | i64::from(b[p + 1]);
                (Elem::Int(if u >= 4096 { u - 8192 } else { u }), 2)
            }
            0xE0..=0xEF => {
                need(2)?;
                let len = (((first & 0x0F) as usize) << 8) | b[p + 1] as usize;
                need(2 + len)?;
                (Elem::Str(b.slice(p + 2..p + 2 + len)), 2 + len)
            }
            0xF0 => {
                need(5)?;
                let len = u32::from_le_bytes(b[p + 1..p + 5].try_into().unwrap()) as usize;
                need(5usize.saturating_add(len))?;
                (Elem::Str(b.slice(p + 5..p + 5 + len)), 5 + len)
            }
            0xF1 => {
                need(3)?;
                (Elem::Int(int_le(2)), 3)
            }
            0xF2 => {
                need(4)?;
                (Elem::Int(int_le(3)), 4)
            }
            0xF3 => {
                need(5)?;
                (Elem::Int(int_le(4)), 5)
            }
            0xF4 => {
                need(9)?;
                (Elem::Int(int_le(8)), 9)
            }
            _ => {
                return Err(Malformed::new(
                    p,
                    format!("a listpack entry encoding, found 0x{first:02x}"),
                ));
            }
        };
        let bl = backlen_size(size);
        need(size + bl)?;
        if decode_backlen(&b[p + size..p + size + bl]) != Some(size as u64) {
            return Err(Malformed::new(
                p + size,
                format!("a listpack backlen of {size}"),
            ));
        }
        self.pos = p + size + bl;
        self.seen += 1;
        Ok(Some(elem))
    }
}

impl Iterator for ListpackIter {
    type Item = MResult<Elem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

fn decode_backlen(bytes: &[u8]) -> Option<u64> {
    // most significant group first; every byte but the first has the high bit set
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        if (i == 0) == (b & 0x80 != 0) {
            return None;
        }
        v = (v << 7) | u64::from(b & 0x7F);
    }
    Some(v)
}

fn encode_backlen(l: usize, out: &mut Vec<u8>) {
    let n = backlen_size(l);
    for i in (0..n).rev() {
        let group = ((l >> (7 * i)) & 0x7F) as u8;
        out.push(if i == n - 1 { group } else { group | 0x80 });
    }
}

/// Builds a listpack from elements, choosing the smallest encodings as Redis does (strings that
/// are canonical integers become integer entries). For tests and round trips.
pub fn encode<'a>(elems: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![0u8; 6];
    let mut count = 0usize;
    for e in elems {
        let start = out.len();
        let as_int = std::str::from_utf8(e)
            .ok()
            .filter(|s| s.len() <= 20)
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|i| i.to_string().as_bytes() == e);
        match as_int {
            Some(i @ 0..=127) => out.push(i as u8),
            Some(i @ -4096..=4095) => {
                let u = (i & 0x1FFF) as u16;
                out.extend_from_slice(&[0xC0 | (u >> 8) as u8, u as u8]);
            }
            Some(i) if i16::try_from(i).is_ok() => {
                out.push(0xF1);
                out.extend_from_slice(&(i as i16).to_le_bytes());
            }
            Some(i) if (-(1 << 23)..(1 << 23)).contains(&i) => {
                out.push(0xF2);
                out.extend_from_slice(&(i as i32).to_le_bytes()[..3]);
            }
            Some(i) if i32::try_from(i).is_ok() => {
                out.push(0xF3);
                out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            Some(i) => {
                out.push(0xF4);
                out.extend_from_slice(&i.to_le_bytes());
            }
            None if e.len() < 64 => {
                out.push(0x80 | e.len() as u8);
                out.extend_from_slice(e);
            }
            None if e.len() < 4096 => {
                out.extend_from_slice(&[0xE0 | (e.len() >> 8) as u8, e.len() as u8]);
                out.extend_from_slice(e);
            }
            None => {
                out.push(0xF0);
                out.extend_from_slice(&(e.len() as u32).to_le_bytes());
                out.extend_from_slice(e);
            }
        }
        let l = out.len() - start;
        encode_backlen(l, &mut out);
        count += 1;
    }
    out.push(0xFF);
    let total = out.len() as u32;
    out[..4].copy_from_slice(&total.to_le_bytes());
    out[4..6].copy_from_slice(&(count.min(65535) as u16).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn worked_example_from_the_design_doc() {
        let lp = hex("0d0000000200816102dfff02ff");
        let v: Vec<Elem> = ListpackIter::new(lp).unwrap().map(Result::unwrap).collect();
        assert_eq!(v, vec![Elem::Str(Bytes::from_static(b"a")), Elem::Int(-1)]);
    }

    #[test]
    fn encoder_round_trips_every_encoding() {
        let long = vec![b'z'; 5000];
        let mid = vec![b'y'; 300];
        let items: Vec<&[u8]> = vec![
            b"0",
            b"127",
            b"128",
            b"-1",
            b"-4096",
            b"4095",
            b"30000",
            b"-30000",
            b"8000000",
            b"-8000000",
            b"2000000000",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"",
            b"abc",
            b"007",
            &mid,
            &long,
        ];
        let lp = encode(items.iter().copied());
        let back: Vec<Bytes> = ListpackIter::new(lp.into())
            .unwrap()
            .map(|e| e.unwrap().into_bytes())
            .collect();
        assert_eq!(back.iter().map(|b| &b[..]).collect::<Vec<_>>(), items);
    }

    #[test]
    fn corrupt_listpacks_are_errors() {
        let good = encode([&b"abc"[..], b"1"]);
        for cut in 0..good.len() {
            let mut bad = good[..cut].to_vec();
            if bad.len() >= 4 {
                let n = bad.len() as u32;
                bad[..4].copy_from_slice(&n.to_le_bytes());
            }
            let r: MResult<Vec<Elem>> = ListpackIter::new(bad.into()).and_then(|it| it.collect());
            assert!(r.is_err(), "cut at {cut}");
        }
        let mut wrong_count = good.clone();
        wrong_count[4] = 3;
        assert!(
            ListpackIter::new(wrong_count.into())
                .unwrap()
                .collect::<MResult<Vec<_>>>()
                .is_err()
        );
    }
}
