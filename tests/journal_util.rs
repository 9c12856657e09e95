//! Helpers shared by the journal tests.

use std::path::Path;

use shake::journal::{
    self, Command, JournalManifest, KeyRecord, RdbChecksum, ShardInfo, ShardWriter, SnapshotBegin,
    SnapshotEnd, Source, WriterOptions,
};

/// Creates a one-shard journal at `dir`.
pub fn create(dir: &Path) {
    journal::create(
        dir,
        &JournalManifest::new(
            1_700_000_000_000,
            Source {
                kind: "standalone".into(),
                description: "127.0.0.1:6379".into(),
            },
            vec![ShardInfo {
                name: ShardInfo::name_for(0),
                slots: vec![],
            }],
        ),
    )
    .unwrap();
}

/// Small segments and frames so tests rotate often.
pub fn small_opts() -> WriterOptions {
    WriterOptions {
        segment_size: 4 << 10,
        frame_size: 1 << 10,
        chunk_size: 1000,
        ..Default::default()
    }
}

/// A deterministic command for offset `o`.
pub fn command(o: u64) -> Command {
    Command {
        db: (o % 3) as u32,
        time_ms: 1_700_000_000_000 + o,
        argv: vec![
            b"SET".to_vec(),
            format!("key:{o}").into_bytes(),
            format!("value-{o}-{}", "x".repeat((o % 50) as usize)).into_bytes(),
        ],
    }
}

/// The start of [`write_snapshot`]: its `SnapshotBegin` and `keys` keys, without the end (a
/// snapshot cut off by a crash when nothing follows).
pub fn write_snapshot_start(w: &mut ShardWriter, offset: u64, keys: u64) {
    w.begin_snapshot(
        SnapshotBegin {
            replid: "8de1c4a7a2a4c7f5e2b3a1d0c9f8e7d6c5b4a392".into(),
            offset,
            rdb_version: 11,
            aux: vec![journal::AuxField {
                key: b"redis-ver".to_vec(),
                value: b"7.2.4".to_vec(),
            }],
        },
        None,
    )
    .unwrap();
    for k in 0..keys {
        let len = if k == 1 { 3500 } else { 20 };
        w.key(KeyRecord {
            db: 0,
            key: format!("k{k}").into_bytes(),
            type_id: 0,
            expire_ms: (k % 2 == 0).then_some(1_800_000_000_000),
            idle: None,
            freq: Some(5),
            value_len: 0,
            chunks: 0,
            value: (0..len).map(|i| (i * 7 + k) as u8).collect(),
        })
        .unwrap();
    }
}

/// A snapshot at `offset` with `keys` keys (key 1 spans chunks), begin to end.
pub fn write_snapshot(w: &mut ShardWriter, offset: u64, keys: u64) {
    write_snapshot_start(w, offset, keys);
    w.end_snapshot(SnapshotEnd {
        key_count: keys,
        checksum: RdbChecksum::Verified(0x1234),
    })
    .unwrap();
}
