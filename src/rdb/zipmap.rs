//! Zipmaps (`zipmap.c`): small hashes of RDB 2–3 (Redis 2.4 and early 2.6 development builds).
//!
//! ```text
//! zmlen 1 byte (count if < 254) | { len key | len free value free-bytes }… | 0xFF
//! len: 1 byte 0..253, or 0xFE + u32 LE; 0xFF ends the map
//! ```

use bytes::Bytes;

use super::error::{MResult, Malformed};

/// Iterates `(field, value)` pairs of a zipmap blob.
#[derive(Debug, Clone)]
pub struct ZipmapIter {
    blob: Bytes,
    pos: usize,
    done: bool,
}

impl ZipmapIter {
    /// Starts iterating.
    pub fn new(blob: Bytes) -> MResult<Self> {
        if blob.len() < 2 {
            return Err(Malformed::new(0, "a zipmap of at least 2 bytes"));
        }
        Ok(ZipmapIter {
            blob,
            pos: 1,
            done: false,
        })
    }

    fn len(&mut self) -> MResult<Option<usize>> {
        let p = self.pos;
        match self.blob.get(p) {
            None => Err(Malformed::new(p, "a zipmap length or the 0xFF end")),
            Some(0xFF) => Ok(None),
            Some(0xFE) => {
                let s = self
                    .blob
                    .get(p + 1..p + 5)
                    .ok_or_else(|| Malformed::new(p, "a 5-byte zipmap length"))?;
                self.pos += 5;
                Ok(Some(u32::from_le_bytes(s.try_into().unwrap()) as usize))
            }
            Some(&n) => {
                self.pos += 1;
                Ok(Some(n as usize))
            }
        }
    }

    fn take(&mut self, n: usize) -> MResult<Bytes> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.blob.len());
        let end = end.ok_or_else(|| Malformed::new(self.pos, "zipmap data inside the blob"))?;
        let s = self.blob.slice(self.pos..end);
        self.pos = end;
        Ok(s)
    }

    fn pair(&mut self) -> MResult<Option<(Bytes, Bytes)>> {
        let Some(klen) = self.len()? else {
            if self.pos != self.blob.len() - 1 {
                return Err(Malformed::new(
                    self.pos,
                    "the zipmap end marker at the end of the blob",
                ));
            }
            return Ok(None);
        };
        let key = self.take(klen)?;
        let vlen = self
            .len()?
            .ok_or_else(|| Malformed::new(self.pos, "a zipmap value length"))?;
        let free = self.take(1)?[0] as usize;
        let value = self.take(vlen)?;
        self.take(free)?;
        Ok(Some((key, value)))
    }
}

impl Iterator for ZipmapIter {
    type Item = MResult<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.pair().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_pairs_with_free_bytes() {
        let zm = Bytes::from_static(&[2, 2, b'f', b'1', 2, 1, b'v', b'1', 0, 1, b'a', 0, 0, 0xFF]);
        let v: Vec<_> = ZipmapIter::new(zm).unwrap().map(Result::unwrap).collect();
        assert_eq!(
            v,
            vec![
                (Bytes::from_static(b"f1"), Bytes::from_static(b"v1")),
                (Bytes::from_static(b"a"), Bytes::new())
            ]
        );
        assert!(
            ZipmapIter::new(Bytes::from_static(&[1, 5, b'a']))
                .unwrap()
                .next()
                .unwrap()
                .is_err()
        );
    }
}
