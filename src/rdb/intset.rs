//! Intsets (`intset.c`): small sets of integers.
//!
//! `encoding u32 LE ∈ {2, 4, 8}` | `length u32 LE` | `length` LE signed integers of that width,
//! strictly ascending. The size must be exactly `8 + length × encoding`; Redis rejects empty
//! intsets but this reader yields nothing for them (the caller decides, like Redis's "empty
//! key" skip).

use bytes::Bytes;

use super::error::{MResult, Malformed};

/// Iterates the integers of an intset blob.
#[derive(Debug, Clone)]
pub struct IntsetIter {
    blob: Bytes,
    width: usize,
    i: usize,
    n: usize,
    prev: Option<i64>,
}

impl IntsetIter {
    /// Checks the header and size.
    pub fn new(blob: Bytes) -> MResult<Self> {
        if blob.len() < 8 {
            return Err(Malformed::new(0, "an intset header of 8 bytes"));
        }
        let width = u32::from_le_bytes(blob[..4].try_into().unwrap()) as usize;
        if !matches!(width, 2 | 4 | 8) {
            return Err(Malformed::new(
                0,
                format!("an intset encoding of 2, 4 or 8, found {width}"),
            ));
        }
        let n = u32::from_le_bytes(blob[4..8].try_into().unwrap()) as usize;
        if (blob.len() - 8) as u64 != n as u64 * width as u64 {
            return Err(Malformed::new(
                4,
                format!(
                    "an intset of {n} × {width} bytes, blob has {}",
                    blob.len() - 8
                ),
            ));
        }
        Ok(IntsetIter {
            blob,
            width,
            i: 0,
            n,
            prev: None,
        })
    }
}

impl Iterator for IntsetIter {
    type Item = MResult<i64>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.i >= self.n {
            return None;
        }
        let p = 8 + self.i * self.width;
        let s = &self.blob[p..p + self.width];
        let v = match self.width {
            2 => i64::from(i16::from_le_bytes([s[0], s[1]])),
            4 => i64::from(i32::from_le_bytes(s.try_into().unwrap())),
            _ => i64::from_le_bytes(s.try_into().unwrap()),
        };
        self.i += 1;
        if self.prev.is_some_and(|prev| prev >= v) {
            self.i = self.n;
            return Some(Err(Malformed::new(
                p,
                "intset members in strictly ascending order",
            )));
        }
        self.prev = Some(v);
        Some(Ok(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_vector_from_appendix_b() {
        // SADD tv:set 1 2 -3 → intset enc 2, len 3: -3, 1, 2
        let blob = Bytes::from_static(&[2, 0, 0, 0, 3, 0, 0, 0, 0xfd, 0xff, 1, 0, 2, 0]);
        let v: Vec<i64> = IntsetIter::new(blob).unwrap().map(Result::unwrap).collect();
        assert_eq!(v, [-3, 1, 2]);
        assert!(IntsetIter::new(Bytes::from_static(&[2, 0, 0, 0, 3, 0, 0, 0, 0])).is_err());
        let unsorted = Bytes::from_static(&[2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 1, 0]);
        assert!(
            IntsetIter::new(unsorted)
                .unwrap()
                .collect::<MResult<Vec<_>>>()
                .is_err()
        );
    }
}
