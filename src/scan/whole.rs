//! Journal entries with every key's value made whole: a key record followed by its value
//! chunks comes out as one key record holding the full value (`chunks` = 0), so readers that
//! want values (history, key listings, exports) need no reassembly state of their own. Holds at
//! most one value at a time; uses [`journal::record::assemble_value`] for the checks.

use crate::journal::{self, Entry, Record, ValueChunk};
use std::iter::Peekable;

/// The adapter; see the module docs.
pub struct WholeKeys<I: Iterator<Item = journal::Result<Entry>>> {
    inner: Peekable<I>,
}

/// Wraps an entry iterator ([`journal::ShardReader::entries`] or `entries_from`).
pub fn whole_keys<I: Iterator<Item = journal::Result<Entry>>>(entries: I) -> WholeKeys<I> {
    WholeKeys {
        inner: entries.peekable(),
    }
}

impl<I: Iterator<Item = journal::Result<Entry>>> Iterator for WholeKeys<I> {
    type Item = journal::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut e = match self.inner.next()? {
            Ok(e) => e,
            Err(err) => return Some(Err(err)),
        };
        let Record::Key(k) = &mut e.record else {
            return Some(Ok(e));
        };
        if k.chunks == 0 {
            return Some(Ok(e));
        }
        let mut chunks: Vec<ValueChunk> = Vec::with_capacity(k.chunks as usize);
        let is_chunk = |x: &journal::Result<Entry>| {
            matches!(
                x,
                Ok(Entry {
                    record: Record::ValueChunk(_),
                    ..
                })
            )
        };
        while chunks.len() < k.chunks as usize {
            match self.inner.next_if(is_chunk) {
                Some(Ok(Entry {
                    record: Record::ValueChunk(c),
                    ..
                })) => chunks.push(c),
                _ => break,
            }
        }
        match journal::record::assemble_value(k, &chunks) {
            Ok(v) => {
                k.value = v;
                k.chunks = 0;
                Some(Ok(e))
            }
            Err(why) => Some(Err(journal::Error::Invalid(format!(
                "key {:?} at {}:{}.{}: {why}",
                String::from_utf8_lossy(&k.key),
                e.position.epoch,
                e.position.offset,
                e.position.seq
            )))),
        }
    }
}
