//! The journal's entries as the replay reader takes them: a stream command's arguments, and a
//! whole snapshot key's name and value, are copied out of the decompressed frame into a shared
//! [`Arena`] and handed on as [`Bytes`] slices of it (the arena's module docs say why); every
//! other record is decoded into the journal's owned [`Record`].

use std::collections::VecDeque;

use bytes::Bytes;

use crate::journal::frame;
use crate::journal::reader::FrameRef;
use crate::journal::record_ref::{EntryRef, RecordRef};
use crate::journal::{Entry, KeyRecord, Position, Record, ShardReader};

use super::arena::Arena;
use super::stream::Command;

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
    /// A snapshot key whose value is whole in its record (no chunks follow).
    Key(Key),
    /// Any other record (never [`Record::Command`] when read through a [`Feed`]).
    Other(Record),
}

/// A snapshot key whose value is whole in its record, name and value in the arena.
#[derive(Debug)]
pub(super) struct Key {
    /// The record without its name and value (those fields are empty).
    pub meta: KeyRecord,
    /// The key's name.
    pub key: Bytes,
    /// Its value, encoded as in the RDB.
    pub value: Bytes,
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
        RecordRef::Key(k) if k.chunks == 0 => Rec::Key(Key {
            meta: KeyRecord {
                db: k.db,
                key: Vec::new(),
                type_id: k.type_id,
                expire_ms: k.expire_ms,
                idle: k.idle,
                freq: k.freq,
                value_len: k.value_len,
                chunks: 0,
                value: Vec::new(),
            },
            key: arena.copy(k.key.0),
            value: arena.copy(k.value.0),
        }),
        _ => Rec::Other(e.to_owned().record),
    };
    Item {
        position: e.position,
        rec,
    }
}
