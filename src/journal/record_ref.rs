//! Borrowed records: the same encoding as [`super::record`], with byte strings and strings
//! borrowed from the frame's decompressed bytes instead of copied into owned buffers.
//!
//! Scanners that look at every record (statistics, key listings, filters) and a capture that
//! holds commands in its receive buffer use these to avoid an allocation per argument, which
//! dominates the cost of reading and writing small records. Every type mirrors its owned
//! counterpart field by field, so both encode to the same bytes (a test pins that), and
//! [`EntryRef::to_owned`] converts.

use serde::{Deserialize, Serialize};

use super::Position;
use super::record::{
    AuxField, Command, Entry, FunctionLibrary, KeyRecord, Marker, ModuleAux, Record, SnapshotBegin,
    SnapshotEnd, Transaction, ValueChunk,
};

/// A borrowed [`Entry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef<'a> {
    /// Where the record sits.
    pub position: Position,
    /// The record.
    #[serde(borrow)]
    pub record: RecordRef<'a>,
}

/// A borrowed [`Record`]; variant numbers are the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordRef<'a> {
    /// See [`Record::Marker`].
    Marker(#[serde(borrow)] MarkerRef<'a>),
    /// See [`Record::SnapshotBegin`].
    SnapshotBegin(#[serde(borrow)] SnapshotBeginRef<'a>),
    /// See [`Record::Key`].
    Key(#[serde(borrow)] KeyRecordRef<'a>),
    /// See [`Record::ValueChunk`].
    ValueChunk(#[serde(borrow)] ValueChunkRef<'a>),
    /// See [`Record::FunctionLibrary`].
    FunctionLibrary(#[serde(borrow)] BytesRef<'a>),
    /// See [`Record::ModuleAux`].
    ModuleAux(#[serde(borrow)] ModuleAuxRef<'a>),
    /// See [`Record::SnapshotEnd`].
    SnapshotEnd(SnapshotEnd),
    /// See [`Record::Command`].
    Command(#[serde(borrow)] CommandRef<'a>),
    /// See [`Record::Transaction`].
    Transaction(#[serde(borrow)] TransactionRef<'a>),
}

/// A byte string borrowed from the frame (encoded as length + bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BytesRef<'a>(#[serde(with = "serde_bytes", borrow)] pub &'a [u8]);

impl AsRef<[u8]> for BytesRef<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

/// A borrowed [`Marker`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarkerRef<'a> {
    /// See [`Marker::CaptureStart`].
    CaptureStart {
        /// As in [`Marker::CaptureStart`].
        time_ms: u64,
        /// As in [`Marker::CaptureStart`].
        shake_version: &'a str,
    },
    /// See [`Marker::CaptureStop`].
    CaptureStop {
        /// As in [`Marker::CaptureStop`].
        time_ms: u64,
        /// As in [`Marker::CaptureStop`].
        reason: &'a str,
    },
    /// See [`Marker::EpochStart`].
    EpochStart {
        /// As in [`Marker::EpochStart`].
        epoch: u64,
        /// As in [`Marker::EpochStart`].
        replid: &'a str,
        /// As in [`Marker::EpochStart`].
        #[serde(borrow)]
        replid2: Option<&'a str>,
    },
    /// See [`Marker::ReplId`].
    ReplId {
        /// As in [`Marker::ReplId`].
        replid: &'a str,
        /// As in [`Marker::ReplId`].
        #[serde(borrow)]
        replid2: Option<&'a str>,
    },
    /// See [`Marker::Topology`].
    Topology {
        /// As in [`Marker::Topology`].
        time_ms: u64,
        /// As in [`Marker::Topology`].
        description: &'a str,
    },
}

/// A borrowed [`SnapshotBegin`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBeginRef<'a> {
    /// As [`SnapshotBegin::replid`].
    pub replid: &'a str,
    /// As [`SnapshotBegin::offset`].
    pub offset: u64,
    /// As [`SnapshotBegin::rdb_version`].
    pub rdb_version: u32,
    /// As [`SnapshotBegin::aux`].
    #[serde(borrow)]
    pub aux: Vec<(BytesRef<'a>, BytesRef<'a>)>,
}

/// A borrowed [`KeyRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecordRef<'a> {
    /// As [`KeyRecord::db`].
    pub db: u32,
    /// As [`KeyRecord::key`].
    #[serde(borrow)]
    pub key: BytesRef<'a>,
    /// As [`KeyRecord::type_id`].
    pub type_id: u8,
    /// As [`KeyRecord::expire_ms`].
    pub expire_ms: Option<i64>,
    /// As [`KeyRecord::idle`].
    pub idle: Option<u64>,
    /// As [`KeyRecord::freq`].
    pub freq: Option<u8>,
    /// As [`KeyRecord::value_len`].
    pub value_len: u64,
    /// As [`KeyRecord::chunks`].
    pub chunks: u32,
    /// As [`KeyRecord::value`].
    #[serde(borrow)]
    pub value: BytesRef<'a>,
}

/// A borrowed [`ValueChunk`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChunkRef<'a> {
    /// As [`ValueChunk::index`].
    pub index: u32,
    /// As [`ValueChunk::data`].
    #[serde(borrow)]
    pub data: BytesRef<'a>,
}

/// A borrowed [`ModuleAux`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleAuxRef<'a> {
    /// As [`ModuleAux::module_id`].
    pub module_id: u64,
    /// As [`ModuleAux::when`].
    pub when: u8,
    /// As [`ModuleAux::data`].
    #[serde(borrow)]
    pub data: BytesRef<'a>,
}

/// A borrowed [`Command`]: the arguments point into the frame (or the caller's buffer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRef<'a> {
    /// As [`Command::db`].
    pub db: u32,
    /// As [`Command::time_ms`].
    pub time_ms: u64,
    /// As [`Command::argv`].
    #[serde(borrow)]
    pub argv: Vec<BytesRef<'a>>,
}

/// A borrowed [`Transaction`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRef<'a> {
    /// As [`Transaction::db`].
    pub db: u32,
    /// As [`Transaction::time_ms`].
    pub time_ms: u64,
    /// As [`Transaction::commands`].
    #[serde(borrow)]
    pub commands: Vec<Vec<BytesRef<'a>>>,
}

fn v(b: BytesRef<'_>) -> Vec<u8> {
    b.0.to_vec()
}

impl RecordRef<'_> {
    /// The capture time carried by the record, as [`Record::time_ms`].
    pub fn time_ms(&self) -> Option<u64> {
        match self {
            RecordRef::Command(c) => Some(c.time_ms),
            RecordRef::Transaction(t) => Some(t.time_ms),
            RecordRef::Marker(MarkerRef::CaptureStart { time_ms, .. })
            | RecordRef::Marker(MarkerRef::CaptureStop { time_ms, .. })
            | RecordRef::Marker(MarkerRef::Topology { time_ms, .. }) => Some(*time_ms),
            _ => None,
        }
    }

    /// The variant name, as [`Record::kind_name`].
    pub fn kind_name(&self) -> &'static str {
        match self {
            RecordRef::Marker(_) => "marker",
            RecordRef::SnapshotBegin(_) => "snapshot_begin",
            RecordRef::Key(_) => "key",
            RecordRef::ValueChunk(_) => "value_chunk",
            RecordRef::FunctionLibrary(_) => "function_library",
            RecordRef::ModuleAux(_) => "module_aux",
            RecordRef::SnapshotEnd(_) => "snapshot_end",
            RecordRef::Command(_) => "command",
            RecordRef::Transaction(_) => "transaction",
        }
    }

    /// The owned record.
    pub fn to_owned(&self) -> Record {
        match self {
            RecordRef::Marker(m) => Record::Marker(match m {
                MarkerRef::CaptureStart {
                    time_ms,
                    shake_version,
                } => Marker::CaptureStart {
                    time_ms: *time_ms,
                    shake_version: shake_version.to_string(),
                },
                MarkerRef::CaptureStop { time_ms, reason } => Marker::CaptureStop {
                    time_ms: *time_ms,
                    reason: reason.to_string(),
                },
                MarkerRef::EpochStart {
                    epoch,
                    replid,
                    replid2,
                } => Marker::EpochStart {
                    epoch: *epoch,
                    replid: replid.to_string(),
                    replid2: replid2.map(str::to_string),
                },
                MarkerRef::ReplId { replid, replid2 } => Marker::ReplId {
                    replid: replid.to_string(),
                    replid2: replid2.map(str::to_string),
                },
                MarkerRef::Topology {
                    time_ms,
                    description,
                } => Marker::Topology {
                    time_ms: *time_ms,
                    description: description.to_string(),
                },
            }),
            RecordRef::SnapshotBegin(b) => Record::SnapshotBegin(SnapshotBegin {
                replid: b.replid.to_string(),
                offset: b.offset,
                rdb_version: b.rdb_version,
                aux: b
                    .aux
                    .iter()
                    .map(|(k, val)| AuxField {
                        key: v(*k),
                        value: v(*val),
                    })
                    .collect(),
            }),
            RecordRef::Key(k) => Record::Key(KeyRecord {
                db: k.db,
                key: v(k.key),
                type_id: k.type_id,
                expire_ms: k.expire_ms,
                idle: k.idle,
                freq: k.freq,
                value_len: k.value_len,
                chunks: k.chunks,
                value: v(k.value),
            }),
            RecordRef::ValueChunk(c) => Record::ValueChunk(ValueChunk {
                index: c.index,
                data: v(c.data),
            }),
            RecordRef::FunctionLibrary(code) => {
                Record::FunctionLibrary(FunctionLibrary { code: v(*code) })
            }
            RecordRef::ModuleAux(m) => Record::ModuleAux(ModuleAux {
                module_id: m.module_id,
                when: m.when,
                data: v(m.data),
            }),
            RecordRef::SnapshotEnd(e) => Record::SnapshotEnd(e.clone()),
            RecordRef::Command(c) => Record::Command(Command {
                db: c.db,
                time_ms: c.time_ms,
                argv: c.argv.iter().map(|a| v(*a)).collect(),
            }),
            RecordRef::Transaction(t) => Record::Transaction(Transaction {
                db: t.db,
                time_ms: t.time_ms,
                commands: t
                    .commands
                    .iter()
                    .map(|argv| argv.iter().map(|a| v(*a)).collect())
                    .collect(),
            }),
        }
    }
}

impl EntryRef<'_> {
    /// The owned entry.
    pub fn to_owned(&self) -> Entry {
        Entry {
            position: self.position,
            record: self.record.to_owned(),
        }
    }
}

/// Decodes one borrowed entry from the start of `buf`, returning it and the bytes it used.
///
/// Commands and keys, the records that make up nearly all of a journal, are decoded by a
/// hand-written reader of the same bincode layout (faster than going through serde); every
/// other record, and anything the fast reader does not accept, goes through serde, so the two
/// can only differ in speed. A test compares them on valid, truncated and mutated input.
#[cfg(test)]
pub(crate) fn decode_entry_ref(buf: &[u8]) -> Result<(EntryRef<'_>, usize), String> {
    if let Some(r) = fast::decode(buf, Vec::new()) {
        return Ok(r);
    }
    decode_entry_ref_serde(buf)
}

/// [`decode_entry_ref`] into `entry`, returning the bytes used: a caller parsing many records
/// keeps one entry, whose command argument vector is then reused instead of allocated per
/// command, and which is written in place rather than moved (an entry is over 100 bytes; the
/// copies of it cost more than decoding it). On error `entry` holds the previous record or
/// its remains (a command with no arguments); on success, the decoded entry.
#[inline(always)]
pub(crate) fn decode_entry_ref_into<'a>(
    buf: &'a [u8],
    entry: &mut EntryRef<'a>,
) -> Result<usize, String> {
    let argv = match &mut entry.record {
        RecordRef::Command(c) => {
            let mut v = std::mem::take(&mut c.argv);
            v.clear();
            v
        }
        _ => Vec::new(),
    };
    if let Some((position, record, used)) = fast::parse(buf, argv) {
        entry.position = position;
        entry.record = record;
        return Ok(used);
    }
    let (e, used) = decode_entry_ref_serde(buf)?;
    *entry = e;
    Ok(used)
}

/// The serde path of [`decode_entry_ref`]: rare records, kept out of line.
#[inline(never)]
pub(crate) fn decode_entry_ref_serde(buf: &[u8]) -> Result<(EntryRef<'_>, usize), String> {
    bincode::serde::borrow_decode_from_slice::<EntryRef<'_>, _>(
        buf,
        super::record::bincode_config(),
    )
    .map_err(|e| e.to_string())
}

/// The fast reader of [`decode_entry_ref`]: bincode 2 `standard` layout, by hand, for the
/// `Command` and `Key` variants. Returns `None` for anything else or anything it cannot read
/// (the serde path then decides, and reports the error).
mod fast {
    use super::{BytesRef, CommandRef, KeyRecordRef, RecordRef};
    use crate::journal::Position;

    struct Cur<'a> {
        b: &'a [u8],
        at: usize,
    }

    impl<'a> Cur<'a> {
        #[inline(always)]
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let end = self.at.checked_add(n)?;
            let s = self.b.get(self.at..end)?;
            self.at = end;
            Some(s)
        }
        #[inline(always)]
        fn u8(&mut self) -> Option<u8> {
            self.take(1).map(|s| s[0])
        }
        #[inline(always)]
        fn u64(&mut self) -> Option<u64> {
            Some(match self.u8()? {
                t @ 0..=250 => u64::from(t),
                251 => u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
                252 => u64::from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
                253 => u64::from_le_bytes(self.take(8)?.try_into().ok()?),
                _ => return None,
            })
        }
        #[inline(always)]
        fn u32(&mut self) -> Option<u32> {
            Some(match self.u8()? {
                t @ 0..=250 => u32::from(t),
                251 => u32::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
                252 => u32::from_le_bytes(self.take(4)?.try_into().ok()?),
                _ => return None,
            })
        }
        #[inline(always)]
        fn i64(&mut self) -> Option<i64> {
            let n = self.u64()?;
            Some(((n >> 1) as i64) ^ -((n & 1) as i64))
        }
        #[inline(always)]
        fn opt(&mut self) -> Option<bool> {
            match self.u8()? {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            }
        }
        #[inline(always)]
        fn bytes(&mut self) -> Option<BytesRef<'a>> {
            let n = usize::try_from(self.u64()?).ok()?;
            self.take(n).map(BytesRef)
        }
    }

    /// The entry at the start of `b` (a command's arguments go into `argv`, cleared).
    #[cfg(test)]
    pub(super) fn decode<'a>(
        b: &'a [u8],
        argv: Vec<BytesRef<'a>>,
    ) -> Option<(super::EntryRef<'a>, usize)> {
        let (position, record, used) = parse(b, argv)?;
        Some((super::EntryRef { position, record }, used))
    }

    /// [`decode`] as parts, so that a caller can write them where they belong.
    #[inline(always)]
    pub(super) fn parse<'a>(
        b: &'a [u8],
        mut argv: Vec<BytesRef<'a>>,
    ) -> Option<(Position, RecordRef<'a>, usize)> {
        let mut c = Cur { b, at: 0 };
        let position = Position::new(c.u64()?, c.u64()?, c.u64()?);
        let record = match c.u32()? {
            2 => {
                let db = c.u32()?;
                let key = c.bytes()?;
                let type_id = c.u8()?;
                let expire_ms = if c.opt()? { Some(c.i64()?) } else { None };
                let idle = if c.opt()? { Some(c.u64()?) } else { None };
                let freq = if c.opt()? { Some(c.u8()?) } else { None };
                let value_len = c.u64()?;
                let chunks = c.u32()?;
                let value = c.bytes()?;
                RecordRef::Key(KeyRecordRef {
                    db,
                    key,
                    type_id,
                    expire_ms,
                    idle,
                    freq,
                    value_len,
                    chunks,
                    value,
                })
            }
            7 => {
                let db = c.u32()?;
                let time_ms = c.u64()?;
                let n = usize::try_from(c.u64()?).ok()?;
                // Every argument takes at least one byte: the count cannot make us reserve
                // more than the input holds.
                argv.clear();
                argv.reserve(n.min(b.len() - c.at));
                for _ in 0..n {
                    argv.push(c.bytes()?);
                }
                RecordRef::Command(CommandRef { db, time_ms, argv })
            }
            _ => return None,
        };
        Some((position, record, c.at))
    }
}

#[cfg(test)]
/// Appends the encoding of a borrowed record at `position` to `out` (same bytes as the owned
/// record).
pub(crate) fn encode_entry_ref(position: Position, record: &RecordRef<'_>, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct E<'a, 'b> {
        position: Position,
        record: &'b RecordRef<'a>,
    }
    bincode::serde::encode_into_std_write(E { position, record }, out, bincode::config::standard())
        .expect("encoding into a Vec does not fail");
}

/// Appends the encoding of a borrowed record alone (same bytes as the owned record); see
/// [`super::record::encode_record`].
pub(crate) fn encode_record_ref(record: &RecordRef<'_>, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(record, out, bincode::config::standard())
        .expect("encoding into a Vec does not fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{RdbChecksum, encode_entry};

    fn samples() -> Vec<Record> {
        vec![
            Record::Marker(Marker::CaptureStart {
                time_ms: 1,
                shake_version: "0.1.0".into(),
            }),
            Record::Marker(Marker::CaptureStop {
                time_ms: 2,
                reason: "r".into(),
            }),
            Record::Marker(Marker::EpochStart {
                epoch: 3,
                replid: "a".into(),
                replid2: Some("b".into()),
            }),
            Record::Marker(Marker::ReplId {
                replid: "c".into(),
                replid2: None,
            }),
            Record::Marker(Marker::Topology {
                time_ms: 4,
                description: "d".into(),
            }),
            Record::SnapshotBegin(SnapshotBegin {
                replid: "x".into(),
                offset: 9,
                rdb_version: 11,
                aux: vec![AuxField {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }],
            }),
            Record::Key(KeyRecord {
                db: 1,
                key: b"key".to_vec(),
                type_id: 18,
                expire_ms: Some(-5),
                idle: Some(7),
                freq: None,
                value_len: 3,
                chunks: 0,
                value: vec![0, 1, 2],
            }),
            Record::ValueChunk(ValueChunk {
                index: 1,
                data: vec![9; 300],
            }),
            Record::FunctionLibrary(FunctionLibrary {
                code: b"#!lua".to_vec(),
            }),
            Record::ModuleAux(ModuleAux {
                module_id: u64::MAX,
                when: 2,
                data: vec![1],
            }),
            Record::SnapshotEnd(SnapshotEnd {
                key_count: 5,
                checksum: RdbChecksum::Mismatch {
                    stored: 1,
                    computed: 2,
                },
            }),
            Record::Command(Command {
                db: 2,
                time_ms: 1 << 40,
                argv: vec![b"SET".to_vec(), vec![], vec![255; 1000]],
            }),
            Record::Transaction(Transaction {
                db: 0,
                time_ms: 5,
                commands: vec![vec![b"INCR".to_vec(), b"n".to_vec()], vec![]],
            }),
        ]
    }

    /// The fast reader and the serde path agree on every input: valid entries, truncations,
    /// and random byte edits.
    #[test]
    fn fast_reader_agrees_with_serde() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut fast_hits = 0;
        for (i, r) in samples().into_iter().enumerate() {
            let mut good = Vec::new();
            encode_entry(Position::new(i as u64, 1 << (i * 4), 3), &r, &mut good);
            let mut inputs = vec![good.clone()];
            for cut in 0..good.len() {
                inputs.push(good[..cut].to_vec());
            }
            for _ in 0..400 {
                let mut m = good.clone();
                for _ in 0..1 + rnd(3) {
                    let at = rnd(m.len());
                    m[at] = [0, 1, 2, 250, 251, 252, 253, 254, 255, rnd(256) as u8][rnd(10)];
                }
                inputs.push(m);
            }
            for input in inputs {
                if let Some(f) = fast::decode(&input, Vec::new()) {
                    fast_hits += 1;
                    assert_eq!(
                        Ok(f),
                        decode_entry_ref_serde(&input),
                        "sample {i}: {input:?}"
                    );
                }
            }
        }
        assert!(
            fast_hits > 500,
            "the fast reader was exercised ({fast_hits})"
        );
    }

    #[test]
    fn borrowed_and_owned_records_share_their_bytes() {
        for (i, r) in samples().into_iter().enumerate() {
            let p = Position::new(1, 100 + i as u64, i as u64);
            let mut owned = Vec::new();
            encode_entry(p, &r, &mut owned);
            let (e, used) = decode_entry_ref(&owned).unwrap();
            assert_eq!(used, owned.len());
            assert_eq!(
                e.to_owned(),
                Entry {
                    position: p,
                    record: r.clone()
                },
                "sample {i}"
            );
            assert_eq!(e.record.kind_name(), r.kind_name());
            assert_eq!(e.record.time_ms(), r.time_ms());
            let mut again = Vec::new();
            encode_entry_ref(p, &e.record, &mut again);
            assert_eq!(again, owned, "sample {i}");
        }
    }
}
