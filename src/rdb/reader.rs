//! The streaming RDB reader: bytes in, [`Event`]s out, memory bounded whatever the file size.
//!
//! The caller pushes bytes as they arrive ([`Reader::feed`], or [`Reader::fill_from`] for any
//! `std::io::Read`) and pulls events with [`Reader::next_event`]. "Need more bytes" is
//! `Ok(None)`, an ordinary outcome: a socket delivers an RDB in arbitrary pieces. Nothing is
//! re-read: the walker (`walk.rs`) resumes exactly where the bytes ran out, and the CRC-64
//! is updated as bytes leave the buffer.
//!
//! A key whose encoded value is at most [`ReaderOptions::chunk_threshold`] bytes comes out as
//! one [`Event::Key`] holding the value's exact bytes. A bigger one comes out as
//! [`Event::BigKeyStart`], one or more [`Event::BigKeyPiece`]s whose concatenation is the exact
//! value bytes, and [`Event::BigKeyEnd`], so a 512 MiB string never sits in memory whole.
//!
//! [`Reader::offset`] counts the bytes turned into events. After [`Event::End`] it is the exact
//! length of the RDB, and [`Reader::take_remaining`] hands back whatever followed it in the
//! buffer — in a replication stream, the first bytes of the command stream.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};

use super::checksum::{Crc64, unappend};
use super::cursor::Cursor;
use super::error::{Error, Malformed, printable_key};
use super::string::{self, StrHeader};
use super::version::{Flavor, Header, ObjectType, opcode};
use super::walk::{Body, Task, Walked, Walker, measure_simple, resp_line, value_tasks};

/// Reader settings.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Read versions above the highest known (`--accept-newer-rdb`). Unknown types still stop
    /// the reader with [`Error::UnknownType`].
    pub accept_newer: bool,
    /// Values whose encoded size exceeds this are delivered in pieces (default 8 MiB).
    pub chunk_threshold: usize,
    /// Turn a CRC mismatch into [`Error::Checksum`] (default). When false, the mismatch is only
    /// reported in [`Event::End`].
    pub verify_checksum: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            accept_newer: false,
            chunk_threshold: 8 << 20,
            verify_checksum: true,
        }
    }
}

/// Everything an RDB contains, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The magic and version.
    Header(Header),
    /// An AUX field (`redis-ver`, `repl-id`, `lua`, Valkey `slot-info`, …), decoded.
    Aux {
        /// Field name.
        name: Bytes,
        /// Field value.
        value: Bytes,
    },
    /// Following keys belong to this database.
    SelectDb {
        /// Database number (not necessarily contiguous, may exceed 15).
        db: u64,
    },
    /// Sizing hint for the current database.
    ResizeDb {
        /// Number of keys.
        db_size: u64,
        /// Number of keys with an expiry.
        expires_size: u64,
    },
    /// Redis ≥ 7.4 cluster hint before the keys of a slot.
    SlotInfo {
        /// Slot number.
        slot: u64,
        /// Keys in the slot.
        size: u64,
        /// Keys with expiry in the slot.
        expires: u64,
    },
    /// Valkey 9 in-progress slot import.
    SlotImport {
        /// Job name.
        job: Bytes,
        /// Slot ranges, inclusive.
        ranges: Vec<(u64, u64)>,
    },
    /// A function library.
    Function(Function),
    /// Module auxiliary data.
    ModuleAux(ModuleAux),
    /// A Redis Enterprise hint opcode (107 RAM_LRU, 121 SLOT_NUM), carried for completeness.
    EnterpriseHint {
        /// The opcode.
        opcode: u8,
        /// Its length value.
        value: u64,
    },
    /// Valkey opcode 242 (`RDB_OPCODE_UPDATE`, RDB ≥ 81): a write command the primary inlined
    /// in the RDB stream during a forkless save, to be applied at this point of the load.
    Update {
        /// Database from the last SELECTDB (0 before any).
        db: u64,
        /// The command's arguments (at least one).
        argv: Vec<Bytes>,
    },
    /// A key with its whole value.
    Key(Key),
    /// A key whose value is delivered in pieces; the pieces follow.
    BigKeyStart(KeyMeta),
    /// The next piece of the current big value's exact bytes.
    BigKeyPiece(Bytes),
    /// The current big value is complete.
    BigKeyEnd,
    /// The EOF opcode (and checksum) was read: the RDB is complete.
    End(Checksum),
}

/// A function library record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The library code. For the 7.0-rc record (opcode 246) this is the converted form Redis 7.0
    /// loads: `#!<engine> name=<name>\n<code>`.
    pub code: Bytes,
    /// Set when the record was the 7.0-rc form.
    pub pre_ga: Option<PreGaFunction>,
}

/// Fields of the 7.0-rc function record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreGaFunction {
    /// Function name.
    pub name: Bytes,
    /// Engine (`LUA`).
    pub engine: Bytes,
    /// Optional description.
    pub description: Option<Bytes>,
    /// The original code.
    pub code: Bytes,
}

/// A MODULE_AUX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleAux {
    /// The 64-bit module type id.
    pub module_id: u64,
    /// `1` before the keyspace, `2` after.
    pub when: u64,
    /// The opcode-tagged fields, byte-exact, including the final opcode 0.
    pub fields: Bytes,
}

impl ModuleAux {
    /// The 9-character module type name and encoding version from the id.
    pub fn module_name(&self) -> (String, u16) {
        module_name(self.module_id)
    }
}

/// Decodes a module type id into its 9-character name and 10-bit encoding version
/// (`moduleTypeEncodeId`).
pub fn module_name(id: u64) -> (String, u16) {
    const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let name = (0..9)
        .map(|i| CHARSET[((id >> (64 - 6 * (i + 1))) & 63) as usize] as char)
        .collect();
    (name, (id & 1023) as u16)
}

/// What a key record says besides the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    /// Database from the last SELECTDB (0 before any).
    pub db: u64,
    /// The key, decoded (integer and LZF forms expanded).
    pub key: Bytes,
    /// The object type, resolved with the file's flavor.
    pub object_type: ObjectType,
    /// Absolute expiry in ms since the epoch (second-based expiries converted).
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds, when the writer had an LRU policy.
    pub idle_secs: Option<u64>,
    /// LFU frequency counter, when the writer had an LFU policy.
    pub freq: Option<u8>,
    /// Absolute offset of the type byte.
    pub offset: u64,
    /// Absolute offset of the first value byte.
    pub value_offset: u64,
}

impl KeyMeta {
    /// The raw type byte.
    pub fn type_id(&self) -> u8 {
        self.object_type.id()
    }
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Everything but the value.
    pub meta: KeyMeta,
    /// The value's exact encoded bytes, as in the RDB (and as in a DUMP payload).
    pub value: Bytes,
}

/// The checksum result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    /// The trailer, absent before RDB 5.
    pub stored: Option<u64>,
    /// CRC-64 of every byte from the magic through the EOF opcode.
    pub computed: u64,
}

/// Verdict on a [`Checksum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// Stored and computed agree.
    Verified,
    /// The writer stored 0 (`rdbchecksum no`): not computed, not corrupt.
    Disabled,
    /// RDB < 5 has no trailer.
    Absent,
    /// They differ.
    Mismatch,
}

impl Checksum {
    /// The verdict.
    pub fn status(&self) -> ChecksumStatus {
        match self.stored {
            None => ChecksumStatus::Absent,
            Some(0) => ChecksumStatus::Disabled,
            Some(s) if s == self.computed => ChecksumStatus::Verified,
            Some(_) => ChecksumStatus::Mismatch,
        }
    }
}

/// A key record lent from the reader's buffer by [`Reader::advance`] / [`Reader::current`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    /// Database.
    pub db: u64,
    /// The key (raw keys only: integer/LZF keys come as owned events).
    pub key: &'a [u8],
    /// Object type.
    pub object_type: ObjectType,
    /// Absolute expiry in ms.
    pub expire_ms: Option<i64>,
    /// LRU idle seconds.
    pub idle_secs: Option<u64>,
    /// LFU counter.
    pub freq: Option<u8>,
    /// Absolute offset of the type byte.
    pub offset: u64,
    /// Absolute offset of the value.
    pub value_offset: u64,
    /// The value's exact encoded bytes.
    pub value: &'a [u8],
}

/// An event as lent by [`Reader::current`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventRef<'a> {
    /// A key borrowed from the input buffer.
    Key(KeyRef<'a>),
    /// Any other event (including keys that did not fit the zero-copy path).
    Owned(&'a Event),
}

#[derive(Debug, Clone, Copy)]
struct KeyPlan {
    db: u64,
    object_type: ObjectType,
    expire_ms: Option<i64>,
    idle_secs: Option<u64>,
    freq: Option<u8>,
    offset: u64,
    key_start: usize,
    key_end: usize,
    end: usize,
}

#[derive(Debug)]
enum State {
    Header,
    RecordStart,
    Record {
        op: u8,
    },
    KeyName {
        t: ObjectType,
    },
    Value {
        t: ObjectType,
        offset: u64,
        key: Bytes,
        chunked: bool,
    },
    Trailer,
    Done,
}

#[derive(Debug, Default, Clone, Copy)]
struct Prefix {
    expire_ms: Option<i64>,
    idle_secs: Option<u64>,
    freq: Option<u8>,
}

/// The streaming reader. See the module documentation.
pub struct Reader {
    opts: ReaderOptions,
    buf: BytesMut,
    /// Absolute offset of `buf[0]`.
    consumed: u64,
    /// Bytes of the current record already walked (from `buf[0]`).
    pos: usize,
    state: State,
    walker: Walker,
    header: Option<Header>,
    db: u64,
    prefix: Prefix,
    /// CRC of every byte fed until the EOF opcode was found (see [`unappend`]).
    crc: Crc64,
    /// CRC of the bytes from the magic through the EOF opcode, once known.
    crc_final: Option<u64>,
    pending: VecDeque<Event>,
    /// The key record lent by [`Reader::advance`] (kept apart from `owned` so the hot path
    /// moves a few words, not a whole [`Event`]).
    lent: Option<KeyPlan>,
    /// The owned event prepared by [`Reader::advance`].
    owned: Option<Event>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("offset", &self.consumed)
            .field("buffered", &self.buf.len())
            .field("state", &self.state)
            .finish()
    }
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new(ReaderOptions::default())
    }
}

impl Reader {
    /// A reader expecting the magic next.
    pub fn new(opts: ReaderOptions) -> Self {
        Reader {
            opts,
            buf: BytesMut::new(),
            consumed: 0,
            pos: 0,
            state: State::Header,
            walker: Walker::default(),
            header: None,
            db: 0,
            prefix: Prefix::default(),
            crc: Crc64::new(),
            crc_final: None,
            pending: VecDeque::new(),
            lent: None,
            owned: None,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.release();
        if self.crc_final.is_none() {
            self.crc.update(data);
        }
        self.buf.extend_from_slice(data);
    }

    /// Reads up to `max` bytes from `src` straight into the buffer. Returns the count (0 at end
    /// of input).
    pub fn fill_from(&mut self, src: &mut impl Read, max: usize) -> std::io::Result<usize> {
        self.release();
        let old = self.buf.len();
        self.buf.resize(old + max, 0);
        let r = loop {
            match src.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        if self.crc_final.is_none() {
            self.crc.update(&self.buf[old..]);
        }
        r
    }

    /// Bytes turned into events so far; after [`Event::End`], the RDB's exact length.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// The header, once read.
    pub fn header(&self) -> Option<Header> {
        self.header
    }

    /// Whether [`Event::End`] was produced.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done) && self.pending.is_empty()
    }

    /// Bytes buffered but not yet consumed (after the end: what followed the RDB).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the buffered bytes that follow the RDB (the start of a replication command
    /// stream). Only meaningful once [`Reader::is_done`].
    pub fn take_remaining(&mut self) -> Bytes {
        self.release();
        self.buf.split().freeze()
    }

    /// Call when the input has ended: an error unless the RDB was complete.
    pub fn finish(&self) -> Result<(), Error> {
        if self.is_done() {
            return Ok(());
        }
        let (key, expected): (Option<&[u8]>, Cow<'static, str>) = match &self.state {
            State::Header => (None, "the 9-byte magic and version".into()),
            State::RecordStart => (
                None,
                "an opcode or a key record (no EOF opcode seen)".into(),
            ),
            State::Record { op } => (
                None,
                format!("the rest of a record with opcode {op}").into(),
            ),
            State::KeyName { t } => (None, format!("the key of a {:?} record", t).into()),
            State::Value { t, key, .. } => (Some(key), format!("the rest of a {t:?} value").into()),
            State::Trailer => (None, "the 8-byte checksum trailer".into()),
            State::Done => (None, "nothing".into()),
        };
        Err(Error::Truncated {
            offset: self.consumed + self.pos as u64,
            key: key.map(printable_key),
            expected,
        })
    }

    fn consume(&mut self, n: usize) -> Bytes {
        let b = self.buf.split_to(n).freeze();
        self.consumed += n as u64;
        self.pos = 0;
        b
    }

    fn version(&self) -> u16 {
        self.header.map_or(0, |h| h.version)
    }

    /// The next event, `Ok(None)` when more bytes are needed (or after the end).
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        self.release();
        self.owned = None;
        if let Some(e) = self.pending.pop_front() {
            return Ok(Some(e));
        }
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Header => {
                    if self.buf.len() < Header::LEN {
                        return Ok(None);
                    }
                    let h =
                        Header::parse(self.buf[..9].try_into().unwrap(), self.opts.accept_newer)?;
                    self.consume(9);
                    self.header = Some(h);
                    self.state = State::RecordStart;
                    return Ok(Some(Event::Header(h)));
                }
                State::RecordStart => {
                    let Some(&op) = self.buf.first() else {
                        return Ok(None);
                    };
                    if op < opcode::UPDATE
                        && let Some(e) = self.whole_key(op)
                    {
                        return Ok(Some(e));
                    }
                    if let Some(e) = self.start_record(op)? {
                        return Ok(Some(e));
                    }
                }
                State::Record { op } => {
                    if self.walk()? == Walked::NeedMore {
                        return Ok(None);
                    }
                    let base = self.consumed;
                    let rec = self.consume(self.pos_after_walk());
                    self.state = State::RecordStart;
                    let ev = self.parse_record(op, &rec).map_err(|e| e.at(base, None))?;
                    if let Some(ev) = ev {
                        return Ok(Some(ev));
                    }
                }
                State::KeyName { t } => {
                    if self.walk()? == Walked::NeedMore {
                        return Ok(None);
                    }
                    let key_end = self.pos;
                    let offset = self.consumed;
                    let (key, _) = string::read(&self.buf[1..key_end])
                        .map_err(|e| e.shift(1).at(self.consumed, None))?;
                    let raw_at = match key {
                        Cow::Borrowed(k) => Some(key_end - k.len()),
                        Cow::Owned(_) => None,
                    };
                    let owned = raw_at.is_none().then(|| Bytes::copy_from_slice(&key));
                    // Split the record head off now so that a raw key shares its memory.
                    let head = self.consume(key_end);
                    let key = owned.unwrap_or_else(|| head.slice(raw_at.unwrap_or(0)..));
                    let tasks = value_tasks(t).expect("checked in start_record");
                    self.walker.start(tasks);
                    self.state = State::Value {
                        t,
                        offset,
                        key,
                        chunked: false,
                    };
                }
                State::Value { chunked, .. } => {
                    // The record head (type byte and key) is already consumed: `pos` counts
                    // value bytes only.
                    let done = self.walk()? == Walked::Done;
                    let walked = self.pos;
                    let threshold = self.opts.chunk_threshold;
                    if !chunked && !done && walked <= threshold {
                        return Ok(None);
                    }
                    if chunked && !done && walked < threshold.clamp(1, 1 << 20) {
                        return Ok(None);
                    }
                    let State::Value { t, offset, key, .. } =
                        std::mem::replace(&mut self.state, State::RecordStart)
                    else {
                        unreachable!()
                    };
                    if !chunked {
                        let prefix = std::mem::take(&mut self.prefix);
                        let big = !(done && walked <= threshold);
                        let meta = KeyMeta {
                            db: self.db,
                            key: if big { key.clone() } else { key },
                            object_type: t,
                            expire_ms: prefix.expire_ms,
                            idle_secs: prefix.idle_secs,
                            freq: prefix.freq,
                            offset,
                            value_offset: self.consumed,
                        };
                        if !big {
                            let value = self.consume(self.pos);
                            return Ok(Some(Event::Key(Key { meta, value })));
                        }
                        // Too big for one buffer: announce it, then hand out pieces.
                        if done {
                            let piece = self.consume(self.pos);
                            self.pending.push_back(Event::BigKeyPiece(piece));
                            self.pending.push_back(Event::BigKeyEnd);
                        } else {
                            let key = meta.key.clone();
                            self.state = State::Value {
                                t,
                                offset,
                                key,
                                chunked: true,
                            };
                        }
                        return Ok(Some(Event::BigKeyStart(meta)));
                    }
                    if done {
                        self.pending.push_back(Event::BigKeyEnd);
                        if self.pos > 0 {
                            let piece = self.consume(self.pos);
                            return Ok(Some(Event::BigKeyPiece(piece)));
                        }
                        return Ok(self.pending.pop_front());
                    }
                    self.state = State::Value {
                        t,
                        offset,
                        key,
                        chunked: true,
                    };
                    let piece = self.consume(self.pos);
                    return Ok(Some(Event::BigKeyPiece(piece)));
                }
                State::Trailer => {
                    if self.buf.len() < 8 {
                        return Ok(None);
                    }
                    let stored = u64::from_le_bytes(self.buf[..8].try_into().unwrap());
                    let computed = self.crc_final.unwrap_or_default();
                    let offset = self.consumed;
                    let sum = Checksum {
                        stored: Some(stored),
                        computed,
                    };
                    if self.opts.verify_checksum && sum.status() == ChecksumStatus::Mismatch {
                        return Err(Error::Checksum {
                            offset,
                            stored,
                            computed,
                        });
                    }
                    let _ = self.buf.split_to(8);
                    self.consumed += 8;
                    self.state = State::Done;
                    return Ok(Some(Event::End(sum)));
                }
            }
        }
    }

    fn pos_after_walk(&self) -> usize {
        self.pos
    }

    fn walk(&mut self) -> Result<Walked, Error> {
        let mut pos = self.pos;
        let r = self.walker.walk(&self.buf, &mut pos);
        self.pos = pos;
        r.map_err(|e| {
            let key = match &self.state {
                State::Value { key, .. } => Some(&key[..]),
                _ => None,
            };
            e.at(self.consumed, key)
        })
    }

    /// Fast path for the common case: a key record with a raw key that is entirely in the
    /// buffer and not big. Frames it in one pass and consumes it with a single split. Anything
    /// else (incomplete, big, integer/LZF key, unknown type, malformed) returns `None` and
    /// goes through the general state machine, which also produces the errors.
    fn whole_key(&mut self, op: u8) -> Option<Event> {
        let plan = self.plan_whole_key(op)?;
        let rec = self.consume(plan.end);
        Some(Event::Key(Key {
            meta: KeyMeta {
                db: plan.db,
                key: rec.slice(plan.key_start..plan.key_end),
                object_type: plan.object_type,
                expire_ms: plan.expire_ms,
                idle_secs: plan.idle_secs,
                freq: plan.freq,
                offset: plan.offset,
                value_offset: plan.offset + plan.key_end as u64,
            },
            value: rec.slice(plan.key_end..),
        }))
    }

    /// Frames a whole key record at the start of the buffer without consuming it (see
    /// [`Reader::whole_key`]); takes the pending expiry/IDLE/FREQ when it succeeds.
    fn plan_whole_key(&mut self, op: u8) -> Option<KeyPlan> {
        let t = ObjectType::from_byte(op, self.header?.flavor)?;
        let tasks = value_tasks(t)?;
        let (StrHeader::Raw { len }, h) = string::parse_header(&self.buf[1..]).ok()?? else {
            return None;
        };
        let key_start = 1 + h;
        let key_end = key_start.checked_add(usize::try_from(len).ok()?)?;
        if key_end > self.buf.len() {
            return None;
        }
        let end = match measure_simple(tasks, &self.buf, key_end) {
            Some(end) => end,
            None => {
                self.walker.start(tasks);
                let mut pos = key_end;
                match self.walker.walk(&self.buf, &mut pos) {
                    Ok(Walked::Done) => pos,
                    _ => return None,
                }
            }
        };
        if end - key_end > self.opts.chunk_threshold {
            return None;
        }
        let prefix = std::mem::take(&mut self.prefix);
        Some(KeyPlan {
            db: self.db,
            object_type: t,
            expire_ms: prefix.expire_ms,
            idle_secs: prefix.idle_secs,
            freq: prefix.freq,
            offset: self.consumed,
            key_start,
            key_end,
            end,
        })
    }

    /// Releases the record lent by the last [`Reader::advance`] (an O(1) pointer move).
    fn release(&mut self) {
        if let Some(plan) = self.lent.take() {
            self.buf.advance(plan.end);
            self.consumed += plan.end as u64;
        }
    }

    /// Prepares the next event for [`Reader::current`], `Ok(false)` when more bytes are needed
    /// (or after the end).
    ///
    /// This is the zero-copy face of the reader: a whole key record with a raw key is lent
    /// straight from the input buffer (no reference counting, no copy) until the next call;
    /// every other event is the owned [`Event`]. Use it when the caller copies what it keeps
    /// anyway (a journal writer, a scanner); [`Reader::next_event`] when events must outlive
    /// the call.
    pub fn advance(&mut self) -> Result<bool, Error> {
        self.release();
        self.owned = None;
        if self.pending.is_empty()
            && matches!(self.state, State::RecordStart)
            && let Some(&op) = self.buf.first()
            && op < opcode::UPDATE
            && let Some(plan) = self.plan_whole_key(op)
        {
            self.lent = Some(plan);
            return Ok(true);
        }
        self.owned = self.next_event()?;
        Ok(self.owned.is_some())
    }

    /// The event prepared by the last successful [`Reader::advance`].
    pub fn current(&self) -> Option<EventRef<'_>> {
        match (&self.lent, &self.owned) {
            (None, None) => None,
            (None, Some(e)) => Some(EventRef::Owned(e)),
            (Some(p), _) => Some(EventRef::Key(KeyRef {
                db: p.db,
                key: &self.buf[p.key_start..p.key_end],
                object_type: p.object_type,
                expire_ms: p.expire_ms,
                idle_secs: p.idle_secs,
                freq: p.freq,
                offset: p.offset,
                value_offset: p.offset + p.key_end as u64,
                value: &self.buf[p.key_end..p.end],
            })),
        }
    }

    /// Sets up the record starting with `op`; returns an event for one-byte records.
    fn start_record(&mut self, op: u8) -> Result<Option<Event>, Error> {
        use Task::*;
        let tasks: &'static [Task] = match op {
            opcode::EOF => {
                // The CRC ran over every byte fed; take back what follows the EOF opcode.
                self.crc_final = Some(unappend(self.crc.value(), &self.buf[1..]));
                self.consume(1);
                if self.header.is_some_and(|h| h.has_checksum()) {
                    self.state = State::Trailer;
                    return Ok(None);
                }
                self.state = State::Done;
                return Ok(Some(Event::End(Checksum {
                    stored: None,
                    computed: self.crc_final.unwrap_or_default(),
                })));
            }
            opcode::AUX => &[Str, Str],
            opcode::SELECTDB | opcode::IDLE | opcode::ENT_RAM_LRU | opcode::ENT_SLOT_NUM => &[Len],
            opcode::RESIZEDB => &[Len, Len],
            opcode::EXPIRETIME => &[Fixed(4)],
            opcode::EXPIRETIME_MS => &[Fixed(8)],
            opcode::FREQ => &[Fixed(1)],
            opcode::MODULE_AUX => &[Len, Len, Len, ModuleOps],
            opcode::FUNCTION_PRE_GA => &[Str, Str, OptStr, Str],
            opcode::FUNCTION2 => &[Str],
            opcode::SLOT_INFO => &[Len, Len, Len],
            opcode::SLOT_IMPORT => &[Str, Count(Body::Len2)],
            opcode::UPDATE if self.header.is_some_and(|h| h.flavor == Flavor::Valkey) => {
                &[RespArray]
            }
            _ => {
                let version = self.version();
                let flavor = self.header.expect("header read").flavor;
                let Some(t) = ObjectType::from_byte(op, flavor) else {
                    if op >= opcode::UPDATE {
                        return Err(Error::UnknownOpcode {
                            offset: self.consumed,
                            byte: op,
                            version,
                        });
                    }
                    return Err(Error::UnknownType {
                        offset: self.consumed,
                        byte: op,
                        version,
                        key: None,
                        why: "no such type in this flavor/version (newer writer?)",
                    });
                };
                if value_tasks(t).is_none() {
                    return Err(Error::UnknownType {
                        offset: self.consumed,
                        byte: op,
                        version,
                        key: None,
                        why: match t {
                            ObjectType::ModulePreGa => {
                                "pre-GA module values (Redis 4.0 RC) cannot be skipped without the module"
                            }
                            _ => {
                                "Valkey PATH_HASH values (type 23, RDB 81) are not read: their layout was not available to check"
                            }
                        },
                    });
                }
                self.walker.start(&[Str]);
                self.pos = 1;
                self.state = State::KeyName { t };
                return Ok(None);
            }
        };
        self.walker.start(tasks);
        self.pos = 1;
        self.state = State::Record { op };
        Ok(None)
    }

    /// Parses a complete non-key record (`rec[0]` is the opcode).
    fn parse_record(&mut self, op: u8, rec: &Bytes) -> Result<Option<Event>, Malformed> {
        let mut c = Cursor::new(rec);
        c.u8("opcode")?;
        let owned = |s: Cow<'_, [u8]>| Bytes::copy_from_slice(&s);
        Ok(Some(match op {
            opcode::AUX => {
                let name = owned(c.string()?);
                let value = owned(c.string()?);
                Event::Aux { name, value }
            }
            opcode::SELECTDB => {
                self.db = c.len("db number")?;
                Event::SelectDb { db: self.db }
            }
            opcode::RESIZEDB => Event::ResizeDb {
                db_size: c.len("db size")?,
                expires_size: c.len("expires size")?,
            },
            opcode::EXPIRETIME => {
                let s = i32::from_le_bytes(c.take(4, "expire seconds")?.try_into().unwrap());
                self.prefix.expire_ms = Some(i64::from(s) * 1000);
                return Ok(None);
            }
            opcode::EXPIRETIME_MS => {
                self.prefix.expire_ms = Some(c.i64_le("expire ms")?);
                return Ok(None);
            }
            opcode::FREQ => {
                self.prefix.freq = Some(c.u8("freq")?);
                return Ok(None);
            }
            opcode::IDLE => {
                self.prefix.idle_secs = Some(c.len("idle")?);
                return Ok(None);
            }
            opcode::MODULE_AUX => {
                let module_id = c.len("module id")?;
                let when_op = c.len("when opcode")?;
                if when_op != 2 {
                    return Err(Malformed::new(c.pos(), "module aux 'when' opcode 2 (UINT)"));
                }
                let when = c.len("when")?;
                Event::ModuleAux(ModuleAux {
                    module_id,
                    when,
                    fields: rec.slice(c.pos()..),
                })
            }
            opcode::FUNCTION_PRE_GA => {
                let name = owned(c.string()?);
                let engine = owned(c.string()?);
                let description = if c.len("has description")? != 0 {
                    Some(owned(c.string()?))
                } else {
                    None
                };
                let body = owned(c.string()?);
                let mut code = Vec::with_capacity(body.len() + name.len() + engine.len() + 10);
                code.extend_from_slice(b"#!");
                code.extend_from_slice(&engine);
                code.extend_from_slice(b" name=");
                code.extend_from_slice(&name);
                code.push(b'\n');
                code.extend_from_slice(&body);
                Event::Function(Function {
                    code: code.into(),
                    pre_ga: Some(PreGaFunction {
                        name,
                        engine,
                        description,
                        code: body,
                    }),
                })
            }
            opcode::FUNCTION2 => Event::Function(Function {
                code: owned(c.string()?),
                pre_ga: None,
            }),
            opcode::SLOT_INFO => Event::SlotInfo {
                slot: c.len("slot")?,
                size: c.len("slot size")?,
                expires: c.len("slot expires size")?,
            },
            opcode::SLOT_IMPORT => {
                let job = owned(c.string()?);
                let n = c.len("range count")?;
                let mut ranges = Vec::with_capacity((n as usize).min(c.remaining() / 2));
                for _ in 0..n {
                    ranges.push((c.len("range start")?, c.len("range end")?));
                }
                Event::SlotImport { job, ranges }
            }
            opcode::UPDATE => {
                // Framing was checked by the walker: `*<n>\r\n` then n × `$<len>\r\n…\r\n`.
                let mut at = 1;
                let bad = |at: usize| Malformed::new(at, "an inline RESP command");
                let (n, used) = resp_line(&rec[at..], b'*')?.ok_or_else(|| bad(at))?;
                at += used;
                let mut argv = Vec::with_capacity((n as usize).min(rec.len() / 5));
                for _ in 0..n {
                    let (len, used) = resp_line(&rec[at..], b'$')
                        .map_err(|e| e.shift(at))?
                        .ok_or_else(|| bad(at))?;
                    at += used;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|l| at.checked_add(l))
                        .filter(|&e| e + 2 <= rec.len())
                        .ok_or_else(|| bad(at))?;
                    argv.push(rec.slice(at..end));
                    at = end + 2;
                }
                Event::Update { db: self.db, argv }
            }
            opcode::ENT_RAM_LRU | opcode::ENT_SLOT_NUM => Event::EnterpriseHint {
                opcode: op,
                value: c.len("hint")?,
            },
            _ => unreachable!("start_record only walks known opcodes"),
        }))
    }
}

/// Pulls events from any `std::io::Read` (a file, a socket), reading 256 KiB at a time.
///
/// As an iterator it yields `Result<Event>` and stops after [`Event::End`] or the first error;
/// input that ends early is an [`Error::Truncated`].
#[derive(Debug)]
pub struct ReadEvents<R> {
    src: R,
    reader: Reader,
    failed: bool,
}

impl<R: Read> ReadEvents<R> {
    /// Wraps `src`.
    pub fn new(src: R, opts: ReaderOptions) -> Self {
        ReadEvents {
            src,
            reader: Reader::new(opts),
            failed: false,
        }
    }

    /// The underlying reader (offset, header, leftover bytes).
    pub fn reader(&mut self) -> &mut Reader {
        &mut self.reader
    }

    /// Prepares the next event for [`ReadEvents::current`] (the zero-copy path, see
    /// [`Reader::advance`]); `Ok(false)` after the end.
    pub fn advance(&mut self) -> Result<bool, Error> {
        loop {
            if self.reader.advance()? {
                return Ok(true);
            }
            if self.reader.is_done() {
                return Ok(false);
            }
            if self.reader.fill_from(&mut self.src, 256 << 10)? == 0 {
                self.reader.finish()?;
                return Ok(false);
            }
        }
    }

    /// The event prepared by the last successful [`ReadEvents::advance`].
    pub fn current(&self) -> Option<EventRef<'_>> {
        self.reader.current()
    }

    /// The next event, `Ok(None)` after the end.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if let Some(e) = self.reader.next_event()? {
                return Ok(Some(e));
            }
            if self.reader.is_done() {
                return Ok(None);
            }
            if self.reader.fill_from(&mut self.src, 256 << 10)? == 0 {
                self.reader.finish()?;
                return Ok(None);
            }
        }
    }
}

impl<R: Read> Iterator for ReadEvents<R> {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_event() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{checksum::crc64, length, string};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const EMPTY_RDB_11: &str = "524544495330303131fa0972656469732d76657205372e322e30fa0a72656469732d62697473c040\
        fa056374696d65c26d08bc65fa08757365642d6d656dc2b0c41000fa08616f662d62617365c000ff\
        f06e3bfec0ff5aa2";

    fn all_events(bytes: &[u8], opts: ReaderOptions, step: usize) -> Result<Vec<Event>, Error> {
        let mut r = Reader::new(opts);
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            r.feed(chunk);
            while let Some(e) = r.next_event()? {
                out.push(e);
            }
        }
        r.finish()?;
        Ok(out)
    }

    /// Builds a small RDB 11 with a string, an expiring hash and a big string.
    fn sample(big: usize) -> Vec<u8> {
        let mut v = b"REDIS0011".to_vec();
        v.push(opcode::AUX);
        string::encode(b"redis-ver", &mut v);
        string::encode(b"7.2.0", &mut v);
        v.extend_from_slice(&[opcode::SELECTDB, 3, opcode::RESIZEDB, 3, 1]);
        v.push(0);
        string::encode(b"k1", &mut v);
        string::encode(b"12345", &mut v);
        v.push(opcode::EXPIRETIME_MS);
        v.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        v.push(4);
        string::encode(b"h", &mut v);
        length::encode(1, &mut v);
        string::encode(b"f", &mut v);
        string::encode(b"v", &mut v);
        v.push(0);
        string::encode(b"big", &mut v);
        string::encode_raw(&vec![b'x'; big], &mut v);
        v.push(opcode::EOF);
        let crc = crc64(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    #[test]
    fn empty_rdb_vector_from_the_design_doc() {
        let bytes = hex(EMPTY_RDB_11);
        let ev = all_events(&bytes, ReaderOptions::default(), 1000).unwrap();
        assert_eq!(ev.len(), 7);
        assert_eq!(
            ev[1],
            Event::Aux {
                name: "redis-ver".into(),
                value: "7.2.0".into()
            }
        );
        assert_eq!(
            ev[2],
            Event::Aux {
                name: "redis-bits".into(),
                value: "64".into()
            }
        );
        let Event::End(sum) = ev[6] else { panic!() };
        assert_eq!(sum.status(), ChecksumStatus::Verified);
        assert_eq!(sum.computed, 0xa25affc0fe3b6ef0);
    }

    #[test]
    fn same_events_whatever_the_chunking() {
        let bytes = sample(1000);
        let whole = all_events(&bytes, ReaderOptions::default(), bytes.len()).unwrap();
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(
                all_events(&bytes, ReaderOptions::default(), step).unwrap(),
                whole
            );
        }
        let Event::Key(k) = &whole[5] else {
            panic!("{:?}", whole[4])
        };
        assert_eq!(
            (k.meta.db, &k.meta.key[..], k.meta.expire_ms),
            (3, &b"h"[..], Some(1_700_000_000_000))
        );
        assert_eq!(&k.value[..], &[1, 1, b'f', 1, b'v']);
        let Event::Key(k1) = &whole[4] else { panic!() };
        assert_eq!(
            (&k1.value[..], k1.meta.expire_ms),
            (&[0xC1, 0x39, 0x30][..], None)
        );
    }

    #[test]
    fn lent_events_equal_owned_events() {
        let bytes = sample(3000);
        let opts = ReaderOptions {
            chunk_threshold: 1024,
            ..Default::default()
        };
        for step in [1, 7, 100, bytes.len()] {
            // piece boundaries follow the input chunks: compare at the same step
            let owned = all_events(&bytes, opts.clone(), step).unwrap();
            let mut r = Reader::new(opts.clone());
            let mut lent = Vec::new();
            for chunk in bytes.chunks(step) {
                r.feed(chunk);
                while r.advance().unwrap() {
                    lent.push(match r.current().unwrap() {
                        EventRef::Owned(e) => e.clone(),
                        EventRef::Key(k) => Event::Key(Key {
                            meta: KeyMeta {
                                db: k.db,
                                key: Bytes::copy_from_slice(k.key),
                                object_type: k.object_type,
                                expire_ms: k.expire_ms,
                                idle_secs: k.idle_secs,
                                freq: k.freq,
                                offset: k.offset,
                                value_offset: k.value_offset,
                            },
                            value: Bytes::copy_from_slice(k.value),
                        }),
                    });
                }
            }
            r.finish().unwrap();
            assert_eq!(lent, owned, "step {step}");
            assert_eq!(r.offset(), bytes.len() as u64);
        }
    }

    #[test]
    fn big_values_come_in_pieces_with_exact_bytes() {
        let bytes = sample(100_000);
        let opts = ReaderOptions {
            chunk_threshold: 4096,
            ..Default::default()
        };
        for step in [1000, 65536, bytes.len()] {
            let ev = all_events(&bytes, opts.clone(), step).unwrap();
            let start = ev
                .iter()
                .position(|e| matches!(e, Event::BigKeyStart(_)))
                .unwrap();
            let Event::BigKeyStart(meta) = &ev[start] else {
                panic!()
            };
            assert_eq!(&meta.key[..], b"big");
            let mut value = Vec::new();
            let mut i = start + 1;
            while let Event::BigKeyPiece(p) = &ev[i] {
                assert!(!p.is_empty());
                value.extend_from_slice(p);
                i += 1;
            }
            assert_eq!(ev[i], Event::BigKeyEnd);
            let mut expect = Vec::new();
            string::encode_raw(&vec![b'x'; 100_000], &mut expect);
            assert_eq!(value, expect);
            assert!(matches!(ev[i + 1], Event::End(_)));
        }
    }

    #[test]
    fn memory_stays_bounded_for_a_value_far_above_the_threshold() {
        // 24 MiB string, 1 MiB threshold, fed 64 KiB at a time: the buffer never holds more
        // than about one threshold plus one input chunk.
        let bytes = sample(24 << 20);
        let opts = ReaderOptions {
            chunk_threshold: 1 << 20,
            ..Default::default()
        };
        let mut r = Reader::new(opts);
        let (mut max, mut pieces, mut total) = (0, 0, 0);
        for chunk in bytes.chunks(64 << 10) {
            r.feed(chunk);
            max = max.max(r.buffered());
            while let Some(e) = r.next_event().unwrap() {
                if let Event::BigKeyPiece(p) = e {
                    assert!(p.len() <= (1 << 20) + (64 << 10));
                    pieces += 1;
                    total += p.len();
                }
            }
        }
        r.finish().unwrap();
        assert!(max <= (1 << 20) + 2 * (64 << 10), "buffer grew to {max}");
        assert!(pieces >= 24);
        assert_eq!(total, (24 << 20) + 5, "length header + payload");
    }

    #[test]
    fn reports_the_end_inside_a_stream_and_keeps_what_follows() {
        let mut bytes = sample(10);
        let len = bytes.len() as u64;
        bytes.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let mut r = Reader::default();
        r.feed(&bytes);
        while r.next_event().unwrap().is_some() {}
        assert!(r.is_done());
        assert_eq!(r.offset(), len);
        assert_eq!(&r.take_remaining()[..], b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn errors_carry_offset_and_key() {
        let mut bytes = sample(10);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert!(matches!(
            all_events(&bytes, ReaderOptions::default(), 5),
            Err(Error::Checksum { .. })
        ));
        let opts = ReaderOptions {
            verify_checksum: false,
            ..Default::default()
        };
        let ev = all_events(&bytes, opts, 5).unwrap();
        let Some(Event::End(sum)) = ev.last() else {
            panic!()
        };
        assert_eq!(sum.status(), ChecksumStatus::Mismatch);

        let bytes = sample(10);
        let err = all_events(&bytes[..bytes.len() - 20], ReaderOptions::default(), 5).unwrap_err();
        let Error::Truncated { key, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(key.as_deref(), Some("\"big\""));

        let mut bad = b"REDIS0011".to_vec();
        bad.extend_from_slice(&[0x30]);
        let err = all_events(&bad, ReaderOptions::default(), 5).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnknownType {
                    offset: 9,
                    byte: 0x30,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("offset 9"));
    }

    #[test]
    fn type_22_follows_the_magic_and_newer_types_stop_with_a_clear_error() {
        let record = |magic: &[u8], ty: u8| {
            let mut v = magic.to_vec();
            v.push(ty);
            string::encode(b"k", &mut v);
            length::encode(1, &mut v);
            string::encode(b"f", &mut v);
            string::encode(b"v", &mut v);
            v.extend_from_slice(&(-1i64).to_le_bytes()); // Valkey HASH_2 layout
            v
        };
        // Valkey: HASH_2 = field, value, 8-byte expiry
        let mut r = Reader::default();
        r.feed(&record(b"VALKEY080", 22));
        let ev: Vec<Event> = std::iter::from_fn(|| r.next_event().unwrap()).collect();
        let Event::Key(k) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(k.meta.object_type, ObjectType::ValkeyHash2);

        // Redis 7.4-rc: the same byte is HASH_METADATA_PRE_GA = ttl, field, value
        let mut v = b"REDIS0012".to_vec();
        v.push(22);
        string::encode(b"k", &mut v);
        length::encode(1, &mut v);
        length::encode(0, &mut v);
        string::encode(b"f", &mut v);
        string::encode(b"v", &mut v);
        let mut r = Reader::default();
        r.feed(&v);
        let ev: Vec<Event> = std::iter::from_fn(|| r.next_event().unwrap()).collect();
        let Event::Key(k) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(k.meta.object_type, ObjectType::HashMetadataPreGa);

        // RDB 13 with accept_newer: type 26 (stream v4) is refused with its offset and version
        let mut r = Reader::new(ReaderOptions {
            accept_newer: true,
            ..Default::default()
        });
        r.feed(&record(b"REDIS0013", 26));
        assert!(matches!(r.next_event().unwrap(), Some(Event::Header(_))));
        let err = r.next_event().unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnknownType {
                    offset: 9,
                    byte: 26,
                    version: 13,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// Opcode 242 as Valkey's forkless save writes it (`writeReplicationData`): the opcode,
    /// then the command as a RESP multi-bulk. Built by hand following that layout; no server
    /// available here writes it.
    fn valkey_081_with_update() -> Vec<u8> {
        let mut v = b"VALKEY081".to_vec();
        v.extend_from_slice(&[opcode::SELECTDB, 2]);
        v.push(0);
        string::encode(b"k", &mut v);
        string::encode(b"v", &mut v);
        v.push(opcode::UPDATE);
        v.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$12\r\nbin\r\n\x00\xffvalue\r\n");
        v.push(opcode::UPDATE);
        v.extend_from_slice(b"*2\r\n$3\r\nDEL\r\n$0\r\n\r\n");
        v.push(opcode::EOF);
        let crc = crc64(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    #[test]
    fn valkey_update_opcode_is_an_inline_command_in_any_split() {
        let bytes = valkey_081_with_update();
        for step in [1, 2, 3, 7, bytes.len()] {
            let ev = all_events(&bytes, ReaderOptions::default(), step).unwrap();
            let updates: Vec<_> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::Update { db, argv } => Some((*db, argv.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(
                updates,
                vec![
                    (
                        2,
                        vec![
                            Bytes::from_static(b"SET"),
                            Bytes::from_static(b"k"),
                            Bytes::from_static(b"bin\r\n\x00\xffvalue")
                        ]
                    ),
                    (2, vec![Bytes::from_static(b"DEL"), Bytes::new()]),
                ],
                "step {step}"
            );
            let Some(Event::End(sum)) = ev.last() else {
                panic!()
            };
            assert_eq!(sum.status(), ChecksumStatus::Verified);
        }
    }

    #[test]
    fn update_opcode_is_refused_under_the_redis_magic_and_when_malformed() {
        let mut bytes = valkey_081_with_update();
        bytes[..9].copy_from_slice(b"REDIS0011");
        let err = all_events(&bytes, ReaderOptions::default(), 1000).unwrap_err();
        assert!(
            matches!(err, Error::UnknownOpcode { byte: 242, .. }),
            "{err}"
        );
        let good = valkey_081_with_update();
        let at = good.iter().position(|&b| b == opcode::UPDATE).unwrap();
        for (i, bad) in [b'+', b'0'].into_iter().enumerate() {
            let mut v = good.clone();
            v[at + 1 + i * 4] = bad; // the '*' of the header, then the first bulk's length
            let err = all_events(&v, ReaderOptions::default(), 5).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(err.offset().unwrap() >= at as u64, "{err}");
        }
        // truncated inside the command: "need more bytes", then Truncated at the end
        let mut r = Reader::default();
        r.feed(&good[..at + 10]);
        while r.next_event().unwrap().is_some() {}
        assert!(matches!(r.finish(), Err(Error::Truncated { .. })));
    }

    #[test]
    fn module_names_decode() {
        // "test__rdb" encoding version 0 id, as moduleTypeEncodeId builds it
        const CS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = 0u64;
        for ch in b"ReJSON-RL" {
            id = (id << 6) | CS.iter().position(|c| c == ch).unwrap() as u64;
        }
        id = (id << 10) | 3;
        assert_eq!(module_name(id), ("ReJSON-RL".to_string(), 3));
    }
}
