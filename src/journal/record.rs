//! Records: the units of data a journal stores, and their encoding.
//!
//! Record types are independent of the RDB parser: a key's value is the raw encoded object
//! bytes plus the RDB type id, so the journal never needs to understand (or be upgraded for) a
//! new RDB encoding. Each record is stored as an [`Entry`] (its [`Position`] then the
//! [`Record`]) encoded with bincode 2's `standard` configuration (little-endian, variable-length
//! integers) through serde; byte strings are written as length + raw bytes. The exact bytes are
//! tabled in `docs/journal-format.md`.
//!
//! **Compatibility rule:** enum variants and struct fields are only ever *appended*; the
//! variant numbers below are part of the on-disk format.

use serde::{Deserialize, Serialize};

use super::Position;

/// The bincode configuration of the format: standard (little-endian, varint), with a limit so
/// no length field can make the decoder allocate more than a frame can hold.
pub(crate) fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ super::frame::MAX_FRAME_LEN }>,
> {
    bincode::config::standard().with_limit::<{ super::frame::MAX_FRAME_LEN }>()
}

/// A record with its position: what frames hold, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Where the record sits.
    pub position: Position,
    /// The record.
    pub record: Record,
}

/// One unit of captured data. Variant numbers (in declaration order, from 0) are on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// 0: a marker in the history (capture start/stop, epoch start, replid change, topology).
    Marker(Marker),
    /// 1: a snapshot (RDB) starts; all its records share its offset.
    SnapshotBegin(SnapshotBegin),
    /// 2: one key of a snapshot.
    Key(KeyRecord),
    /// 3: a further piece of the value of the preceding [`Record::Key`].
    ValueChunk(ValueChunk),
    /// 4: a function library from the RDB.
    FunctionLibrary(FunctionLibrary),
    /// 5: module auxiliary data from the RDB.
    ModuleAux(ModuleAux),
    /// 6: the snapshot ended.
    SnapshotEnd(SnapshotEnd),
    /// 7: one command from the replication stream.
    Command(Command),
    /// 8: a `MULTI … EXEC` block, kept whole so a reader applies it atomically or not at all.
    Transaction(Transaction),
}

impl Record {
    /// The capture wall-clock time carried by the record, if it has one (commands,
    /// transactions, capture start/stop and topology markers).
    pub fn time_ms(&self) -> Option<u64> {
        match self {
            Record::Command(c) => Some(c.time_ms),
            Record::Transaction(t) => Some(t.time_ms),
            Record::Marker(Marker::CaptureStart { time_ms, .. })
            | Record::Marker(Marker::CaptureStop { time_ms, .. })
            | Record::Marker(Marker::Topology { time_ms, .. }) => Some(*time_ms),
            _ => None,
        }
    }

    /// A short lower-case name of the variant, used in summaries (`"key"`, `"command"` ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::Marker(_) => "marker",
            Record::SnapshotBegin(_) => "snapshot_begin",
            Record::Key(_) => "key",
            Record::ValueChunk(_) => "value_chunk",
            Record::FunctionLibrary(_) => "function_library",
            Record::ModuleAux(_) => "module_aux",
            Record::SnapshotEnd(_) => "snapshot_end",
            Record::Command(_) => "command",
            Record::Transaction(_) => "transaction",
        }
    }
}

/// Markers: facts about the capture rather than data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Marker {
    /// 0: a capture process started writing this shard.
    CaptureStart {
        /// Wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// The shake version that wrote what follows.
        #[serde(deserialize_with = "bytes_de::string")]
        shake_version: String,
    },
    /// 1: a capture process stopped cleanly.
    CaptureStop {
        /// Wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// Why (signal, end of RDB file, error text).
        #[serde(deserialize_with = "bytes_de::string")]
        reason: String,
    },
    /// 2: a new epoch starts (full resync): the records that follow belong to this replid.
    EpochStart {
        /// The new epoch number.
        epoch: u64,
        /// The master's replication id for this epoch.
        #[serde(deserialize_with = "bytes_de::string")]
        replid: String,
        /// The master's previous replication id, if it reported one.
        #[serde(deserialize_with = "bytes_de::opt_string")]
        replid2: Option<String>,
    },
    /// 3: within an epoch the master's replid changed (failover, restart) and a partial resync
    /// continued the stream under the new id.
    ReplId {
        /// The new replication id.
        #[serde(deserialize_with = "bytes_de::string")]
        replid: String,
        /// The previous one (the id we were following).
        #[serde(deserialize_with = "bytes_de::opt_string")]
        replid2: Option<String>,
    },
    /// 4: the shard's topology changed (failover to another node, slot migration).
    Topology {
        /// Wall-clock time, ms since the Unix epoch.
        time_ms: u64,
        /// Human-readable description (never credentials).
        #[serde(deserialize_with = "bytes_de::string")]
        description: String,
    },
}

/// Start of a snapshot (the RDB of a full resync).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBegin {
    /// The replid from `+FULLRESYNC <replid> <offset>` (or the RDB's `repl-id` aux field).
    #[serde(deserialize_with = "bytes_de::string")]
    pub replid: String,
    /// The replication offset the snapshot represents.
    pub offset: u64,
    /// RDB format version from the file header.
    pub rdb_version: u32,
    /// The RDB's AUX fields, raw, in file order.
    pub aux: Vec<AuxField>,
}

/// One RDB AUX field (`redis-ver`, `repl-id`, `aof-base`...), raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxField {
    /// Field name.
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub key: Vec<u8>,
    /// Field value as stored.
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub value: Vec<u8>,
}

/// One key of a snapshot. If the value was too large for one frame, `value` holds its first
/// part and `chunks` [`ValueChunk`] records follow immediately, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Database number.
    pub db: u32,
    /// Key name.
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub key: Vec<u8>,
    /// RDB object type id (`RDB_TYPE_*`), e.g. 0 string, 18 quicklist-2.
    pub type_id: u8,
    /// Absolute expiry, ms since the Unix epoch.
    pub expire_ms: Option<i64>,
    /// LRU idle time in seconds, if the RDB carried it.
    pub idle: Option<u64>,
    /// LFU frequency, if the RDB carried it.
    pub freq: Option<u8>,
    /// Total length of the encoded value across this record and its chunks.
    pub value_len: u64,
    /// How many [`ValueChunk`] records follow (0 when `value` is whole).
    pub chunks: u32,
    /// The encoded object bytes as in the RDB (or their first part).
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub value: Vec<u8>,
}

/// A continuation of a key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChunk {
    /// 1 for the first continuation, counting up to the key's `chunks`.
    pub index: u32,
    /// The bytes.
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub data: Vec<u8>,
}

/// A function library (`RDB_OPCODE_FUNCTION2` payload), raw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLibrary {
    /// The library source as stored in the RDB.
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub code: Vec<u8>,
}

/// Module auxiliary data (`RDB_OPCODE_MODULE_AUX`), raw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleAux {
    /// The 64-bit module type id.
    pub module_id: u64,
    /// When the module saved it (before/after the keyspace).
    pub when: u8,
    /// The serialized payload.
    #[serde(
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "bytes_de::bytes"
    )]
    pub data: Vec<u8>,
}

/// End of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEnd {
    /// Number of keys the snapshot held.
    pub key_count: u64,
    /// What became of the RDB's trailing CRC-64.
    pub checksum: RdbChecksum,
}

/// The outcome of the RDB's own CRC-64 check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RdbChecksum {
    /// 0: the RDB had no checksum (written with `rdbchecksum no`, or version < 5).
    Absent,
    /// 1: it matched; the value is the checksum.
    Verified(u64),
    /// 2: it did not match.
    Mismatch {
        /// The checksum in the file.
        stored: u64,
        /// The checksum of the bytes read.
        computed: u64,
    },
}

/// One command of the replication stream. Its offset is the record's position's offset (the
/// replication offset after the command).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The database the command applies to (SELECTs are folded into this field).
    pub db: u32,
    /// Wall-clock capture time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Command name and arguments, as received.
    #[serde(with = "argv_serde")]
    pub argv: Vec<Vec<u8>>,
}

/// A `MULTI … EXEC` block. `db` is the database selected at `MULTI`; `SELECT`s inside the block
/// are kept as commands in `commands`, since they take effect at `EXEC`. `MULTI` and `EXEC`
/// themselves are not stored. The position's offset is the offset after `EXEC`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The database selected when the block started.
    pub db: u32,
    /// Wall-clock capture time (of `EXEC`), ms since the Unix epoch.
    pub time_ms: u64,
    /// The queued commands, in order.
    #[serde(with = "commands_serde")]
    pub commands: Vec<Vec<Vec<u8>>>,
}

/// `Vec<Vec<u8>>` as a sequence of byte strings (not of sequences of u8, which serde would do
/// element by element).
mod argv_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::Bytes;

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| Bytes::new(a)))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v: Vec<super::bytes_de::Owned> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|b| b.0).collect())
    }
}

/// `Vec<Vec<Vec<u8>>>` with the same byte-string treatment as [`argv_serde`].
mod commands_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::Bytes;

    pub fn serialize<S: Serializer>(v: &[Vec<Vec<u8>>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|argv| argv.iter().map(|a| Bytes::new(a)).collect::<Vec<_>>()),
        )
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<Vec<u8>>>, D::Error> {
        let v: Vec<Vec<super::bytes_de::Owned>> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .map(|argv| argv.into_iter().map(|b| b.0).collect())
            .collect())
    }
}

/// Deserializers that take byte and string fields as *borrowed* slices of the input (bounds
/// checked against the bytes actually present) and copy them, instead of bincode's owned path,
/// which allocates whatever length the field claims before reading it.
mod bytes_de {
    use serde::Deserializer;
    use serde::de::{Error, SeqAccess, Visitor};
    use std::fmt;

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(BytesVisitor)
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let b = d.deserialize_bytes(BytesVisitor)?;
        String::from_utf8(b).map_err(D::Error::custom)
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        struct OptVisitor;
        impl<'de> Visitor<'de> for OptVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an optional string")
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                string(d).map(Some)
            }
        }
        d.deserialize_option(OptVisitor)
    }

    /// A byte string element of a sequence (argv).
    pub struct Owned(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            bytes(d).map(Owned)
        }
    }
}

#[cfg(test)]
/// Appends the encoding of `entry` to `out`.
pub(crate) fn encode_entry(entry_pos: Position, record: &Record, out: &mut Vec<u8>) {
    // Encoding into a Vec cannot fail except on the size limit, which the caller bounds.
    #[derive(Serialize)]
    struct EntryRef<'a> {
        position: Position,
        record: &'a Record,
    }
    bincode::serde::encode_into_std_write(
        EntryRef {
            position: entry_pos,
            record,
        },
        out,
        bincode::config::standard(),
    )
    .expect("encoding into a Vec does not fail");
}

/// Appends the encoding of `record` alone: an entry is a position then a record, and the
/// writer stores the position itself (delta-coded, see [`super::frame::PositionDelta`]).
pub(crate) fn encode_record(record: &Record, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(record, out, bincode::config::standard())
        .expect("encoding into a Vec does not fail");
}

/// Appends the encoding of a position (three varints, as inside an entry).
pub(crate) fn encode_position(position: Position, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(position, out, bincode::config::standard())
        .expect("encoding into a Vec does not fail");
}

/// The most bytes [`encode_position`] writes (three varints of at most 9 bytes).
pub(crate) const MAX_POSITION_LEN: usize = 27;

/// Decodes one entry from the start of `buf`, returning it and the bytes it used (the
/// borrowed reader, then copied: readers go through [`super::frame::for_each_entry_ref`]).
#[cfg(test)]
pub(crate) fn decode_entry(buf: &[u8]) -> Result<(Entry, usize), String> {
    super::record_ref::decode_entry_ref(buf).map(|(e, used)| (e.to_owned(), used))
}

/// Reassembles a key's full value from its [`KeyRecord`] and the [`ValueChunk`]s that followed
/// it, checking indexes and total length. For readers that want whole values.
pub fn assemble_value(key: &KeyRecord, chunks: &[ValueChunk]) -> Result<Vec<u8>, String> {
    if chunks.len() != key.chunks as usize {
        return Err(format!(
            "key expects {} chunks, got {}",
            key.chunks,
            chunks.len()
        ));
    }
    let cap = usize::try_from(key.value_len)
        .unwrap_or(usize::MAX)
        .min(1 << 30);
    let mut v = Vec::with_capacity(cap);
    v.extend_from_slice(&key.value);
    for (i, c) in chunks.iter().enumerate() {
        if c.index as usize != i + 1 {
            return Err(format!("chunk {} has index {}", i + 1, c.index));
        }
        v.extend_from_slice(&c.data);
    }
    if v.len() as u64 != key.value_len {
        return Err(format!(
            "value is {} bytes, key says {}",
            v.len(),
            key.value_len
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        let r = Record::Transaction(Transaction {
            db: 2,
            time_ms: 1_700_000_000_000,
            commands: vec![vec![b"SET".to_vec(), b"k".to_vec(), vec![0, 255]]],
        });
        let mut buf = Vec::new();
        encode_entry(Position::new(1, 500, 0), &r, &mut buf);
        let (e, used) = decode_entry(&buf).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(e.record, r);
        assert_eq!(e.position, Position::new(1, 500, 0));
    }

    #[test]
    fn command_bytes_are_length_prefixed_raw() {
        // variant 7, db 0, time 1, argv: 1 element, "ab"
        let mut buf = Vec::new();
        let r = Record::Command(Command {
            db: 0,
            time_ms: 1,
            argv: vec![b"ab".to_vec()],
        });
        encode_entry(Position::new(1, 2, 3), &r, &mut buf);
        assert_eq!(buf, [1, 2, 3, 7, 0, 1, 1, 2, b'a', b'b']);
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // position 0,0,0; variant 2 (key); db 0; key length u64::MAX
        let buf = [0, 0, 0, 2, 0, 253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(decode_entry(&buf).is_err());
    }

    #[test]
    fn length_prefix_beyond_the_data_is_an_error_before_any_allocation() {
        // position 0,0,0; variant 2 (key); db 0; key length 900 MiB (under the limit), 3 bytes.
        let mut buf = vec![0, 0, 0, 2, 0, 252];
        buf.extend_from_slice(&(900u32 << 20).to_le_bytes());
        buf.extend_from_slice(b"abc");
        assert!(decode_entry(&buf).is_err());
        // same for a string (replid of an epoch-start marker: variant 0, marker 2, epoch 1)
        let mut buf = vec![0, 0, 0, 0, 2, 1, 252];
        buf.extend_from_slice(&(900u32 << 20).to_le_bytes());
        assert!(decode_entry(&buf).is_err());
    }

    #[test]
    fn assemble_checks_chunks() {
        let k = KeyRecord {
            db: 0,
            key: b"k".to_vec(),
            type_id: 0,
            expire_ms: None,
            idle: None,
            freq: None,
            value_len: 5,
            chunks: 2,
            value: b"ab".to_vec(),
        };
        let c = [
            ValueChunk {
                index: 1,
                data: b"cd".to_vec(),
            },
            ValueChunk {
                index: 2,
                data: b"e".to_vec(),
            },
        ];
        assert_eq!(assemble_value(&k, &c).unwrap(), b"abcde");
        assert!(assemble_value(&k, &c[..1]).is_err());
    }
}
