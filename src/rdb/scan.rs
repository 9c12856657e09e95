//! A whole RDB → its keys (optionally with whole values) and statistics: the library face of
//! `shake inspect FILE.rdb`.
//!
//! [`Scanner`] wraps [`super::ReadEvents`], yields one [`ScannedKey`] per key and gathers
//! [`Stats`] (per database and kind: keys, keys with expiry, encoded bytes) plus the file's AUX
//! fields and functions as it goes. Values above the reader's chunk threshold are reassembled
//! only when asked (`reassemble_big`); decoding needs the whole value, statistics do not.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::{Bytes, BytesMut};

use super::error::Error;
use super::reader::{Checksum, Event, EventRef, Function, KeyMeta, ReadEvents, ReaderOptions};
use super::version::{Header, Kind};

/// One key of the file.
#[derive(Debug, Clone)]
pub struct ScannedKey {
    /// Key, type, db, expiry, LRU/LFU, offsets.
    pub meta: KeyMeta,
    /// The exact value bytes; `None` for a big value that was not reassembled.
    pub value: Option<Bytes>,
    /// Size of the encoded value in bytes.
    pub value_len: u64,
}

/// Counts for one (db, kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindStats {
    /// Keys.
    pub keys: u64,
    /// Keys with an expiry.
    pub with_expiry: u64,
    /// Encoded value bytes.
    pub value_bytes: u64,
    /// Largest encoded value.
    pub max_value_bytes: u64,
}

/// Statistics of a scanned file.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Header, once read.
    pub header: Option<Header>,
    /// Per database, per kind.
    pub per_db: BTreeMap<u64, BTreeMap<Kind, KindStats>>,
    /// AUX fields in file order (lossy UTF-8).
    pub aux: Vec<(String, String)>,
    /// Function libraries.
    pub functions: u64,
    /// Module AUX records.
    pub module_aux: u64,
    /// Valkey inline commands (opcode 242) met; the key statistics do not include their effect.
    pub inline_commands: u64,
    /// File size consumed (the RDB's exact length once complete).
    pub bytes: u64,
    /// Checksum verdict, once the end was read.
    #[serde(skip)]
    pub checksum: Option<Checksum>,
}

impl Stats {
    /// Total keys.
    pub fn keys(&self) -> u64 {
        self.per_db
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.keys)
            .sum()
    }
}

/// Iterates the keys of an RDB while gathering statistics.
#[derive(Debug)]
pub struct Scanner<R> {
    events: ReadEvents<R>,
    stats: Stats,
    functions: Vec<Function>,
    reassemble_big: bool,
    done: bool,
}

impl<R: Read> Scanner<R> {
    /// Scans `src`. With `reassemble_big`, big values are collected into one buffer (memory up
    /// to the largest value); without, they come with `value: None`.
    pub fn new(src: R, opts: ReaderOptions, reassemble_big: bool) -> Self {
        Scanner {
            events: ReadEvents::new(src, opts),
            stats: Stats::default(),
            functions: Vec::new(),
            reassemble_big,
            done: false,
        }
    }

    /// Statistics so far (complete once the iterator returned `None`).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Function libraries seen so far.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    fn count(&mut self, meta: &KeyMeta, len: u64) {
        let s = self
            .stats
            .per_db
            .entry(meta.db)
            .or_default()
            .entry(meta.object_type.kind())
            .or_default();
        s.keys += 1;
        s.with_expiry += u64::from(meta.expire_ms.is_some());
        s.value_bytes += len;
        s.max_value_bytes = s.max_value_bytes.max(len);
    }

    fn step(&mut self) -> Result<Option<ScannedKey>, Error> {
        let mut big: Option<(KeyMeta, Option<BytesMut>, u64)> = None;
        loop {
            let Some(ev) = self.events.next_event()? else {
                self.stats.bytes = self.events.reader().offset();
                return Ok(None);
            };
            match ev {
                Event::Header(h) => self.stats.header = Some(h),
                Event::Aux { name, value } => self.stats.aux.push((
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )),
                Event::Function(f) => {
                    self.stats.functions += 1;
                    self.functions.push(f);
                }
                Event::ModuleAux(_) => self.stats.module_aux += 1,
                Event::Key(k) => {
                    let len = k.value.len() as u64;
                    self.count(&k.meta, len);
                    return Ok(Some(ScannedKey {
                        meta: k.meta,
                        value: Some(k.value),
                        value_len: len,
                    }));
                }
                Event::BigKeyStart(meta) => {
                    big = Some((meta, self.reassemble_big.then(BytesMut::new), 0));
                }
                Event::BigKeyPiece(p) => {
                    if let Some((_, buf, len)) = big.as_mut() {
                        *len += p.len() as u64;
                        if let Some(b) = buf {
                            b.extend_from_slice(&p);
                        }
                    }
                }
                Event::BigKeyEnd => {
                    if let Some((meta, buf, len)) = big.take() {
                        self.count(&meta, len);
                        return Ok(Some(ScannedKey {
                            meta,
                            value: buf.map(BytesMut::freeze),
                            value_len: len,
                        }));
                    }
                }
                Event::End(sum) => {
                    self.stats.checksum = Some(sum);
                    self.stats.bytes = self.events.reader().offset();
                }
                Event::Update { .. } => self.stats.inline_commands += 1,
                Event::SelectDb { .. }
                | Event::ResizeDb { .. }
                | Event::SlotInfo { .. }
                | Event::SlotImport { .. }
                | Event::EnterpriseHint { .. } => {}
            }
        }
    }
}

/// Statistics of a whole RDB without keeping any value: the zero-copy path of the reader
/// ([`super::Reader::advance`]), for `inspect --stats` on large files.
pub fn stats(src: impl Read, opts: ReaderOptions) -> Result<Stats, Error> {
    let mut events = ReadEvents::new(src, opts);
    let mut st = Stats::default();
    let count = |st: &mut Stats, db: u64, kind: Kind, expires: bool, len: u64| {
        let s = st.per_db.entry(db).or_default().entry(kind).or_default();
        s.keys += 1;
        s.with_expiry += u64::from(expires);
        s.value_bytes += len;
        s.max_value_bytes = s.max_value_bytes.max(len);
    };
    let mut big: Option<(u64, Kind, bool, u64)> = None;
    while events.advance()? {
        match events.current() {
            Some(EventRef::Key(k)) => count(
                &mut st,
                k.db,
                k.object_type.kind(),
                k.expire_ms.is_some(),
                k.value.len() as u64,
            ),
            Some(EventRef::Owned(ev)) => match ev {
                Event::Header(h) => st.header = Some(*h),
                Event::Aux { name, value } => st.aux.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                )),
                Event::Function(_) => st.functions += 1,
                Event::ModuleAux(_) => st.module_aux += 1,
                Event::Update { .. } => st.inline_commands += 1,
                Event::Key(k) => count(
                    &mut st,
                    k.meta.db,
                    k.meta.object_type.kind(),
                    k.meta.expire_ms.is_some(),
                    k.value.len() as u64,
                ),
                Event::BigKeyStart(m) => {
                    big = Some((m.db, m.object_type.kind(), m.expire_ms.is_some(), 0));
                }
                Event::BigKeyPiece(p) => {
                    if let Some(b) = big.as_mut() {
                        b.3 += p.len() as u64;
                    }
                }
                Event::BigKeyEnd => {
                    if let Some((db, kind, e, len)) = big.take() {
                        count(&mut st, db, kind, e, len);
                    }
                }
                Event::End(sum) => st.checksum = Some(*sum),
                _ => {}
            },
            None => {}
        }
    }
    st.bytes = events.reader().offset();
    Ok(st)
}

impl<R: Read> Iterator for Scanner<R> {
    type Item = Result<ScannedKey, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(k)) => Some(Ok(k)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::{checksum::crc64, length, string, version::opcode};

    #[test]
    fn counts_per_db_and_kind_including_big_values() {
        let mut v = b"REDIS0011".to_vec();
        v.extend_from_slice(&[opcode::SELECTDB, 0]);
        v.push(0);
        string::encode(b"a", &mut v);
        string::encode(b"x", &mut v);
        v.extend_from_slice(&[opcode::SELECTDB, 2]);
        v.push(2);
        string::encode(b"s", &mut v);
        length::encode(1, &mut v);
        string::encode_raw(&[b'y'; 5000], &mut v);
        v.push(opcode::EOF);
        let crc = crc64(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        let opts = ReaderOptions {
            chunk_threshold: 1000,
            ..Default::default()
        };
        let mut s = Scanner::new(&v[..], opts, true);
        let keys: Vec<_> = s.by_ref().map(Result::unwrap).collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[1].value.as_ref().unwrap().len() as u64,
            keys[1].value_len
        );
        let st = s.stats().clone();
        assert_eq!(st.keys(), 2);
        let fast = stats(
            &v[..],
            ReaderOptions {
                chunk_threshold: 1000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fast.per_db, st.per_db);
        assert_eq!(fast.bytes, st.bytes);
        assert_eq!(st.per_db[&2][&Kind::Set].value_bytes, keys[1].value_len);
        assert_eq!(st.bytes, v.len() as u64);
    }
}
