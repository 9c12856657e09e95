//! From RDB bytes to journal records: the snapshot half of a capture, shared by the live
//! replica (bytes arriving from a master) and `capture --from-rdb` (bytes from a file).
//!
//! Bytes are pushed in as they come; the RDB reader turns them into events; each key becomes a
//! journal key record carrying the value's exact encoded bytes. A value the reader delivers in
//! pieces (a big key) is spilled to a temporary file as it arrives and written to the journal
//! as a key record plus value chunks once complete, so memory stays bounded whatever the value
//! size. Nothing is dropped silently: AUX fields that come after the first key (Redis 4.0–6.2's
//! `lua` scripts, Valkey's `slot-info`) cannot join the snapshot's begin record and are logged
//! by name, and unexpected opcodes are counted in the summary.

use crate::journal::{
    self, AuxField, KeyRecord, RdbChecksum, ShardWriter, SnapshotBegin, SnapshotEnd,
};
use crate::rdb::{self, ChecksumStatus, Event, Reader, ReaderOptions};
use std::io::{Read, Seek, SeekFrom, Write};

/// A snapshot ingest failure: where in the RDB, and what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RDB is malformed (the reader's error names the byte offset and key).
    #[error("RDB snapshot: {0}")]
    Rdb(#[from] rdb::Error),
    /// Writing the journal failed.
    #[error("journal: {0}")]
    Journal(#[from] journal::Error),
    /// The spill file for a big value could not be used.
    #[error("spill file for big key {key:?}: {source}")]
    Spill {
        /// The key (lossy UTF-8).
        key: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading the RDB input failed.
    #[error("reading the RDB at byte {offset}: {source}")]
    Read {
        /// Bytes consumed before the failure.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The RDB carries a Valkey inline command (opcode 242, forkless save), which the journal's
    /// snapshot cannot hold: refused rather than dropped.
    #[error(
        "RDB snapshot holds a Valkey inline command ({command}, opcode 242 of a forkless save) before byte {offset}; the journal cannot hold commands inside a snapshot"
    )]
    InlineCommand {
        /// The command name (lossy UTF-8).
        command: String,
        /// Bytes of the RDB consumed so far.
        offset: u64,
    },
    /// A database number beyond what the journal stores (u32).
    #[error("database {db} at RDB byte {offset} is out of range")]
    BadDb {
        /// The database number.
        db: u64,
        /// Byte offset in the RDB.
        offset: u64,
    },
}

/// What a finished snapshot held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// RDB version.
    pub rdb_version: u16,
    /// Keys written.
    pub keys: u64,
    /// Function libraries written.
    pub functions: u64,
    /// Module AUX records written.
    pub module_aux: u64,
    /// RDB bytes consumed.
    pub bytes: u64,
    /// AUX fields that arrived after the snapshot had begun (named in the log).
    pub late_aux: Vec<String>,
    /// The RDB checksum verdict.
    pub checksum: Option<RdbChecksum>,
}

struct BigKey {
    meta: rdb::KeyMeta,
    spill: std::fs::File,
    len: u64,
}

/// Turns pushed RDB bytes into journal records.
pub struct SnapshotIngest {
    reader: Reader,
    replid: String,
    offset: u64,
    replid2: Option<String>,
    begun: bool,
    aux: Vec<AuxField>,
    big: Option<BigKey>,
    chunk_size: usize,
    summary: Summary,
}

impl SnapshotIngest {
    /// Prepares to ingest the snapshot of `replid` at `offset` (an RDB file: a replid of 40
    /// zeros and offset 0, or its `repl-id`/`repl-offset` AUX fields when present).
    pub fn new(
        replid: String,
        offset: u64,
        replid2: Option<String>,
        options: ReaderOptions,
        chunk_size: usize,
    ) -> Self {
        SnapshotIngest {
            reader: Reader::new(options),
            replid,
            offset,
            replid2,
            begun: false,
            aux: Vec::new(),
            big: None,
            chunk_size: chunk_size.max(1024),
            summary: Summary::default(),
        }
    }

    /// True once the RDB's end (EOF opcode and checksum) has been read.
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Pushes bytes and writes every record they complete.
    pub fn feed(&mut self, writer: &mut ShardWriter, bytes: &[u8]) -> Result<(), Error> {
        self.reader.feed(bytes);
        self.drain(writer)
    }

    /// Reads from `src` until the RDB ends (for files). `progress` is told the bytes consumed.
    pub fn feed_from(
        &mut self,
        writer: &mut ShardWriter,
        src: &mut impl Read,
        mut progress: impl FnMut(u64),
    ) -> Result<(), Error> {
        let mut buf = vec![0u8; 1 << 20];
        while !self.reader.is_done() {
            let n = src.read(&mut buf).map_err(|source| Error::Read {
                offset: self.reader.offset(),
                source,
            })?;
            if n == 0 {
                break;
            }
            self.feed(writer, &buf[..n])?;
            progress(n as u64);
        }
        Ok(())
    }

    fn begin(&mut self, writer: &mut ShardWriter) -> Result<(), Error> {
        if self.begun {
            return Ok(());
        }
        self.begun = true;
        let begin = SnapshotBegin {
            replid: self.replid.clone(),
            offset: self.offset,
            rdb_version: self.summary.rdb_version as u32,
            aux: std::mem::take(&mut self.aux),
        };
        writer.begin_snapshot(begin, self.replid2.clone())?;
        Ok(())
    }

    fn db(meta: &rdb::KeyMeta) -> Result<u32, Error> {
        u32::try_from(meta.db).map_err(|_| Error::BadDb {
            db: meta.db,
            offset: meta.offset,
        })
    }

    fn drain(&mut self, writer: &mut ShardWriter) -> Result<(), Error> {
        while let Some(event) = self.reader.next_event()? {
            match event {
                Event::Header(h) => self.summary.rdb_version = h.version,
                Event::Aux { name, value } => {
                    if self.begun {
                        let n = String::from_utf8_lossy(&name).into_owned();
                        tracing::warn!(aux = %n, "RDB AUX field after the first key is not kept in the journal");
                        self.summary.late_aux.push(n);
                    } else {
                        self.aux.push(AuxField {
                            key: name.to_vec(),
                            value: value.to_vec(),
                        });
                    }
                }
                Event::SelectDb { .. }
                | Event::ResizeDb { .. }
                | Event::SlotInfo { .. }
                | Event::EnterpriseHint { .. } => {}
                Event::Update { argv, .. } => {
                    return Err(Error::InlineCommand {
                        command: String::from_utf8_lossy(&argv[0]).into_owned(),
                        offset: self.reader.offset(),
                    });
                }
                Event::SlotImport { job, .. } => {
                    tracing::warn!(job = %String::from_utf8_lossy(&job), "RDB records an in-progress Valkey slot import (not journaled)");
                }
                Event::Function(f) => {
                    self.begin(writer)?;
                    writer.function_library(f.code.to_vec())?;
                    self.summary.functions += 1;
                }
                Event::ModuleAux(m) => {
                    self.begin(writer)?;
                    writer.module_aux(journal::ModuleAux {
                        module_id: m.module_id,
                        when: m.when as u8,
                        data: m.fields.to_vec(),
                    })?;
                    self.summary.module_aux += 1;
                }
                Event::Key(k) => {
                    self.begin(writer)?;
                    writer.key(KeyRecord {
                        db: Self::db(&k.meta)?,
                        key: k.meta.key.to_vec(),
                        type_id: k.meta.type_id(),
                        expire_ms: k.meta.expire_ms,
                        idle: k.meta.idle_secs,
                        freq: k.meta.freq,
                        value_len: 0,
                        chunks: 0,
                        value: k.value.to_vec(),
                    })?;
                    self.summary.keys += 1;
                }
                Event::BigKeyStart(meta) => {
                    self.begin(writer)?;
                    let spill = tempfile::tempfile().map_err(|e| spill_err(&meta, e))?;
                    self.big = Some(BigKey {
                        meta,
                        spill,
                        len: 0,
                    });
                }
                Event::BigKeyPiece(piece) => {
                    if let Some(big) = &mut self.big {
                        big.spill
                            .write_all(&piece)
                            .map_err(|e| spill_err(&big.meta, e))?;
                        big.len += piece.len() as u64;
                    }
                }
                Event::BigKeyEnd => {
                    if let Some(big) = self.big.take() {
                        self.write_big(writer, big)?;
                        self.summary.keys += 1;
                    }
                }
                Event::End(sum) => {
                    self.begin(writer)?;
                    let checksum = match sum.status() {
                        ChecksumStatus::Verified => RdbChecksum::Verified(sum.computed),
                        ChecksumStatus::Disabled | ChecksumStatus::Absent => RdbChecksum::Absent,
                        ChecksumStatus::Mismatch => RdbChecksum::Mismatch {
                            stored: sum.stored.unwrap_or(0),
                            computed: sum.computed,
                        },
                    };
                    writer.end_snapshot(SnapshotEnd {
                        key_count: self.summary.keys,
                        checksum,
                    })?;
                    self.summary.checksum = Some(checksum);
                }
            }
        }
        self.summary.bytes = self.reader.offset();
        Ok(())
    }

    /// Writes a spilled big value through the journal's streaming key writer, reading it back
    /// one chunk at a time (the RDB does not announce a value's length, so it is spilled first).
    fn write_big(&self, writer: &mut ShardWriter, mut big: BigKey) -> Result<(), Error> {
        let meta = &big.meta;
        big.spill
            .seek(SeekFrom::Start(0))
            .map_err(|e| spill_err(meta, e))?;
        let record = KeyRecord {
            db: Self::db(meta)?,
            key: meta.key.to_vec(),
            type_id: meta.type_id(),
            expire_ms: meta.expire_ms,
            idle: meta.idle_secs,
            freq: meta.freq,
            value_len: 0,
            chunks: 0,
            value: Vec::new(),
        };
        let mut kw = writer.begin_key(record, big.len)?;
        let mut buf = vec![0u8; self.chunk_size.min(big.len as usize).max(1)];
        let mut left = big.len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            big.spill
                .read_exact(&mut buf[..n])
                .map_err(|e| spill_err(meta, e))?;
            kw.write(&buf[..n])?;
            left -= n as u64;
        }
        kw.finish()?;
        Ok(())
    }

    /// Checks that the RDB was complete and returns what it held.
    pub fn finish(self) -> Result<Summary, Error> {
        self.reader.finish()?;
        Ok(self.summary)
    }

    /// Bytes fed after the RDB's end (the start of a command stream, when fed from a socket).
    pub fn take_remaining(&mut self) -> bytes::Bytes {
        self.reader.take_remaining()
    }
}

fn spill_err(meta: &rdb::KeyMeta, source: std::io::Error) -> Error {
    Error::Spill {
        key: String::from_utf8_lossy(&meta.key).into_owned(),
        source,
    }
}
