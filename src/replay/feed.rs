//! The journal's entries as the replay reader takes them: a stream command's arguments are
//! copied out of the decompressed frame into a shared arena and handed on as [`Bytes`] slices
//! of it; every other record is decoded into the journal's owned [`Record`].
//!
//! Why: replaying 2 M `SET`s, about a third of replay's CPU went to allocating each argument
//! on the journal reader's thread, freeing it on a writer's thread (a cross-thread free, the
//! allocator's slow path) and copying it, cache-cold, from wherever it had landed into the
//! connection's buffer (docs/performance.md). Arena slices cost one allocation per [`CHUNK`]
//! and an atomic count per argument, and lie next to each other in memory.
//!
//! # Memory
//! A chunk lives until the last argument sliced from it is dropped, that is until its command
//! is acknowledged. Chunks hold only the arguments of commands (not the frame's other bytes),
//! which the replay's in-flight budget already counts, give or take a chunk per lane; an
//! argument above [`OWN_ABOVE`] gets an allocation of its own, so a big value never keeps a
//! chunk alive, nor a chunk a big value.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::journal::frame;
use crate::journal::reader::FrameRef;
use crate::journal::record_ref::{EntryRef, RecordRef};
use crate::journal::{Entry, Position, Record, ShardReader};

use super::stream::Command;

/// Bytes per arena chunk.
const CHUNK: usize = 64 << 10;
/// Arguments longer than this are allocated on their own (see the module docs).
const OWN_ABOVE: usize = 4 << 10;

/// One journal entry as replay reads it.
#[derive(Debug)]
pub(super) struct Item {
    /// Where the record sits.
    pub position: Position,
    /// The record.
    pub rec: Rec,
}

/// A record: stream commands in replay's form, the rest as the journal decodes them.
#[derive(Debug)]
pub(super) enum Rec {
    /// A stream command, arguments in the arena.
    Command(Command),
    /// Any other record (never [`Record::Command`] when read through a [`Feed`]).
    Other(Record),
}

impl From<Entry> for Item {
    /// An owned entry (from the follower) as an item; a command's arguments keep their own
    /// allocations.
    fn from(e: Entry) -> Item {
        let rec = match e.record {
            Record::Command(c) => Rec::Command(c.into()),
            r => Rec::Other(r),
        };
        Item {
            position: e.position,
            rec,
        }
    }
}

/// Copies small byte strings into shared chunks (see the module docs).
#[derive(Default)]
struct Arena {
    chunk: BytesMut,
}

impl Arena {
    fn copy(&mut self, a: &[u8]) -> Bytes {
        if a.len() > OWN_ABOVE {
            return Bytes::copy_from_slice(a);
        }
        if self.chunk.capacity() < a.len() {
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        self.chunk.extend_from_slice(a);
        self.chunk.split().freeze()
    }
}

/// The entries of a shard from a position on, in order; the first damaged frame ends the
/// iteration with its error (naming file and offset), none of its records having been
/// yielded.
pub(super) struct Feed<'a> {
    reader: &'a ShardReader,
    frames: std::slice::Iter<'a, FrameRef>,
    from: Position,
    items: VecDeque<Item>,
    /// The current frame, decompressed (reused).
    scratch: Vec<u8>,
    arena: Arena,
    failed: bool,
}

impl<'a> Feed<'a> {
    /// The entries of `reader` at or after `from`.
    pub fn new(reader: &'a ShardReader, from: Position) -> Feed<'a> {
        Feed {
            reader,
            frames: reader.frames()[reader.frame_index_for(from)..].iter(),
            from,
            items: VecDeque::new(),
            scratch: Vec::new(),
            arena: Arena::default(),
            failed: false,
        }
    }
}

impl Iterator for Feed<'_> {
    type Item = crate::journal::Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(i) = self.items.pop_front() {
                if i.position >= self.from {
                    return Some(Ok(i));
                }
                continue;
            }
            if self.failed {
                return None;
            }
            let f = self.frames.next()?;
            if let Err(e) = self.reader.decode_raw_into(f, &mut self.scratch) {
                self.failed = true;
                return Some(Err(e));
            }
            let (items, arena) = (&mut self.items, &mut self.arena);
            if let Err(e) = frame::for_each_entry_ref(&f.header, &self.scratch, |e| {
                items.push_back(item(e, arena));
            }) {
                // nothing of a damaged frame is acted on
                self.items.clear();
                self.failed = true;
                return Some(Err(self.reader.frame_error(f, e)));
            }
        }
    }
}

fn item(e: &EntryRef<'_>, arena: &mut Arena) -> Item {
    let rec = match &e.record {
        RecordRef::Command(c) => Rec::Command(Command {
            db: c.db,
            time_ms: c.time_ms,
            argv: c.argv.iter().map(|a| arena.copy(a.0)).collect(),
        }),
        _ => Rec::Other(e.to_owned().record),
    };
    Item {
        position: e.position,
        rec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_slices_share_chunks_and_big_arguments_get_their_own() {
        let mut a = Arena::default();
        let x = a.copy(b"key:1");
        let y = a.copy(b"value");
        assert_eq!((&x[..], &y[..]), (&b"key:1"[..], &b"value"[..]));
        // adjacent in one chunk
        assert_eq!(x.as_ptr().wrapping_add(x.len()), y.as_ptr());
        let big = vec![7u8; OWN_ABOVE + 1];
        let b = a.copy(&big);
        assert_eq!(&b[..], &big[..]);
        let z = a.copy(b"z");
        assert_eq!(y.as_ptr().wrapping_add(y.len()), z.as_ptr());
        // a full chunk is replaced, the old one lives on in its slices
        let mut last = z.clone();
        for _ in 0..(CHUNK / OWN_ABOVE + 2) {
            last = a.copy(&big[..OWN_ABOVE]);
        }
        assert_eq!(&last[..], &big[..OWN_ABOVE]);
        assert_eq!((&x[..], &z[..]), (&b"key:1"[..], &b"z"[..]));
        assert!(a.copy(b"").is_empty());
    }
}
