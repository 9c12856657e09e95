//! Golden journal fixtures (`fixtures/journal/`): written once by this version of shake,
//! read by every later version. If a change to the code makes `golden_journal_reads` fail, the
//! change broke the on-disk format contract (see `docs/journal-format.md`).
//!
//! `golden_journal_rewrites_identically` re-runs the generator below and compares bytes; it
//! pins the writer's determinism. Regenerate (only for a deliberate, documented format change
//! or a zstd output change) with `SHAKE_BLESS=1 cargo test --test integration journal_golden`.

use std::path::{Path, PathBuf};

use shake::journal::{
    self, AuxField, Command, FsyncPolicy, JournalManifest, KeyRecord, Marker, ModuleAux, Position,
    RdbChecksum, Record, RecoveryMode, ShardInfo, ShardReader, ShardWriter, SnapshotBegin,
    SnapshotEnd, Source, Transaction, WriterOptions, record::assemble_value,
};

const T0: u64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

/// The fixture of format `version`: `v1-two-shards` (written by shake 0.1.0 before positions
/// were delta-coded; read forever, never regenerated) and `v2-two-shards` (what this writer
/// produces, byte for byte).
fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/journal/v{version}-two-shards"))
}

fn opts() -> WriterOptions {
    WriterOptions {
        segment_size: 2048,
        frame_size: 512,
        chunk_size: 700,
        zstd_level: 3,
        fsync: FsyncPolicy::Never,
        segment_max_age: None,
        compress_threads: 2,
    }
}

fn cmd(o: u64, argv: &[&str]) -> Command {
    Command {
        db: (o % 2) as u32,
        time_ms: T0 + o * 10,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
    }
}

/// Writes the golden journal into `dir` (which must not exist yet or be empty).
fn write_fixture(dir: &Path) {
    let mut m = JournalManifest::new(
        T0,
        Source {
            kind: "cluster".into(),
            description: "10.0.0.1:7000,10.0.0.2:7000".into(),
        },
        vec![
            ShardInfo {
                name: ShardInfo::name_for(0),
                slots: vec![(0, 8191)],
            },
            ShardInfo {
                name: ShardInfo::name_for(1),
                slots: vec![(8192, 16383)],
            },
        ],
    );
    m.shake_version = "0.1.0".into();
    m.journal_id = None; // the v1 fixture predates journal identities (added for `shake ship`)
    journal::create(dir, &m).unwrap();

    // shard-000: two epochs, every record type, several sealed segments, an open last one.
    let mut w = ShardWriter::open(dir, "shard-000", opts()).unwrap();
    w.marker(Marker::CaptureStart {
        time_ms: T0,
        shake_version: "0.1.0".into(),
    })
    .unwrap();
    w.begin_snapshot(
        SnapshotBegin {
            replid: "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2".into(),
            offset: 1000,
            rdb_version: 11,
            aux: vec![
                AuxField {
                    key: b"redis-ver".to_vec(),
                    value: b"7.2.4".to_vec(),
                },
                AuxField {
                    key: b"aof-base".to_vec(),
                    value: b"0".to_vec(),
                },
            ],
        },
        Some("0000000000000000000000000000000000000000".into()),
    )
    .unwrap();
    for k in 0..30u64 {
        w.key(KeyRecord {
            db: (k % 3) as u32,
            key: format!("user:{k}").into_bytes(),
            type_id: if k % 5 == 0 { 18 } else { 0 },
            expire_ms: (k % 4 == 0).then_some(1_800_000_000_000 + k as i64),
            idle: (k % 2 == 0).then_some(k * 3),
            freq: (k % 2 == 1).then_some(k as u8),
            value_len: 0,
            chunks: 0,
            value: if k == 7 {
                (0..2000u32).map(|i| (i % 251) as u8).collect()
            } else {
                format!("value of key {k}").into_bytes()
            },
        })
        .unwrap();
    }
    w.function_library(
        b"#!lua name=mylib\nredis.register_function('f', function() return 1 end)".to_vec(),
    )
    .unwrap();
    w.module_aux(ModuleAux {
        module_id: 0x1234_5678_9abc_def0,
        when: 2,
        data: vec![1, 2, 3, 4],
    })
    .unwrap();
    w.end_snapshot(SnapshotEnd {
        key_count: 30,
        checksum: RdbChecksum::Verified(0xdead_beef_0bad_f00d),
    })
    .unwrap();
    let mut o = 1000;
    for i in 0..40u64 {
        o += 30 + i;
        w.command(
            o,
            cmd(o, &["SET", &format!("user:{i}"), &format!("new value {i}")]),
        )
        .unwrap();
    }
    o += 80;
    w.transaction(
        o,
        Transaction {
            db: 0,
            time_ms: T0 + 5000,
            commands: vec![
                vec![b"INCR".to_vec(), b"counter".to_vec()],
                vec![b"SELECT".to_vec(), b"1".to_vec()],
                vec![b"LPUSH".to_vec(), b"list".to_vec(), vec![0, 1, 255]],
            ],
        },
    )
    .unwrap();
    w.replid_changed(
        o + 1,
        "f0e1d2c3b4a5f0e1d2c3b4a5f0e1d2c3b4a5f0e1".into(),
        Some("a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2".into()),
    )
    .unwrap();
    w.marker(Marker::Topology {
        time_ms: T0 + 6000,
        description: "failover: 10.0.0.3:7000 is now master".into(),
    })
    .unwrap();
    w.begin_snapshot(
        SnapshotBegin {
            replid: "99aa99aa99aa99aa99aa99aa99aa99aa99aa99aa".into(),
            offset: 50,
            rdb_version: 12,
            aux: vec![],
        },
        None,
    )
    .unwrap();
    w.key(KeyRecord {
        db: 0,
        key: b"only".to_vec(),
        type_id: 0,
        expire_ms: None,
        idle: None,
        freq: None,
        value_len: 0,
        chunks: 0,
        value: b"one".to_vec(),
    })
    .unwrap();
    w.end_snapshot(SnapshotEnd {
        key_count: 1,
        checksum: RdbChecksum::Absent,
    })
    .unwrap();
    for i in 0..10u64 {
        w.command(60 + i * 7, cmd(60 + i * 7, &["DEL", &format!("k{i}")]))
            .unwrap();
    }
    w.seal().unwrap();
    w.command(200, cmd(200, &["PING"])).unwrap();
    w.marker(Marker::CaptureStop {
        time_ms: T0 + 9000,
        reason: "fixture".into(),
    })
    .unwrap();
    w.sync().unwrap(); // left open (unsealed): readers must handle an open last segment
    drop(w);

    // shard-001: one epoch, sealed.
    let mut w = ShardWriter::open(dir, "shard-001", opts()).unwrap();
    w.begin_snapshot(
        SnapshotBegin {
            replid: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            offset: 7,
            rdb_version: 11,
            aux: vec![],
        },
        None,
    )
    .unwrap();
    w.end_snapshot(SnapshotEnd {
        key_count: 0,
        checksum: RdbChecksum::Mismatch {
            stored: 1,
            computed: 2,
        },
    })
    .unwrap();
    w.command(21, cmd(21, &["SET", "{b}x", "1"])).unwrap();
    w.close().unwrap();
    for shard in ["shard-000", "shard-001"] {
        // The writers' lock files are not part of the journal's data.
        let _ = std::fs::remove_file(dir.join(shard).join(shake::journal::writer::LOCK_FILE));
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "shard-000", "shard-001"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .filter(|e| e.file_name() != shake::journal::writer::LOCK_FILE)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let rel = Path::new(sub).join(&n);
            out.push((rel.clone(), std::fs::read(dir.join(rel)).unwrap()));
        }
    }
    out
}

#[test]
fn golden_journal_rewrites_identically() {
    if std::env::var_os("SHAKE_BLESS").is_some() {
        let d = fixture_dir(shake::journal::FORMAT_VERSION);
        let _ = std::fs::remove_dir_all(&d);
        write_fixture(&d);
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("j");
    write_fixture(&dir);
    let (new, old) = (
        files(&dir),
        files(&fixture_dir(shake::journal::FORMAT_VERSION)),
    );
    assert_eq!(
        new.iter().map(|f| &f.0).collect::<Vec<_>>(),
        old.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in new.iter().zip(&old) {
        assert!(a == b, "{} differs from the golden fixture", name.display());
    }
}

#[test]
fn golden_journal_reads() {
    for version in 1..=shake::journal::FORMAT_VERSION {
        golden_journal_of_version_reads(version);
    }
}

fn golden_journal_of_version_reads(version: u32) {
    let dir = fixture_dir(version);
    let report = journal::verify(&dir);
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(report.format_version, Some(version));
    assert_eq!(report.shards.len(), 2);
    let s0 = &report.shards[0];
    assert_eq!(s0.name, "shard-000");
    assert_eq!(
        s0.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(s0.epochs[1].snapshot_keys, Some(30));
    assert_eq!(s0.first, Some(Position::new(0, 0, 0)));
    assert_eq!(s0.last, Some(Position::new(2, 200, 1)));
    assert_eq!(s0.min_time_ms, Some(T0));
    assert_eq!(s0.max_time_ms, Some(T0 + 29_800)); // the last command of epoch 1
    assert!(s0.segments >= 3 && s0.sealed_segments == s0.segments - 1);

    let r = ShardReader::open(&dir, "shard-000", RecoveryMode::Refuse).unwrap();
    let all: Vec<_> = r.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len() as u64, s0.records);
    assert_eq!(
        all[0].record,
        Record::Marker(Marker::CaptureStart {
            time_ms: T0,
            shake_version: "0.1.0".into()
        })
    );
    assert!(matches!(
        &all[1].record,
        Record::Marker(Marker::EpochStart {
            epoch: 1,
            replid2: Some(_),
            ..
        })
    ));
    let Record::SnapshotBegin(b) = &all[2].record else {
        panic!("{:?}", all[2])
    };
    assert_eq!((b.offset, b.rdb_version, b.aux.len()), (1000, 11, 2));
    assert_eq!(all[2].position, Position::new(1, 1000, 1));
    let i = all
        .iter()
        .position(|e| matches!(&e.record, Record::Key(k) if k.key == b"user:7"))
        .unwrap();
    let Record::Key(k) = &all[i].record else {
        unreachable!()
    };
    assert_eq!((k.db, k.chunks, k.value_len), (1, 2, 2000));
    let chunks: Vec<_> = all[i + 1..=i + 2]
        .iter()
        .map(|e| match &e.record {
            Record::ValueChunk(c) => c.clone(),
            r => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(
        assemble_value(k, &chunks).unwrap(),
        (0..2000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    let Record::Key(k0) = &all[3].record else {
        panic!()
    };
    assert_eq!(
        (
            k0.key.as_slice(),
            k0.type_id,
            k0.expire_ms,
            k0.idle,
            k0.value.as_slice()
        ),
        (
            &b"user:0"[..],
            18,
            Some(1_800_000_000_000),
            Some(0),
            &b"value of key 0"[..]
        )
    );
    let tx = all
        .iter()
        .find_map(|e| match &e.record {
            Record::Transaction(t) => Some(t),
            _ => None,
        })
        .unwrap();
    assert_eq!(tx.commands[2][2], vec![0, 1, 255]);
    let cmds: Vec<_> = all
        .iter()
        .filter(|e| matches!(e.record, Record::Command(_)))
        .collect();
    assert_eq!(cmds.len(), 51);
    assert_eq!(
        cmds[0].record,
        Record::Command(cmd(1030, &["SET", "user:0", "new value 0"]))
    );
    let m = r.manifest();
    assert_eq!(m.epochs[0].replids.len(), 2);

    let r1 = ShardReader::open(&dir, "shard-001", RecoveryMode::Refuse).unwrap();
    let all1: Vec<_> = r1.entries().collect::<Result<_, _>>().unwrap();
    assert!(matches!(
        all1[2].record,
        Record::SnapshotEnd(SnapshotEnd {
            checksum: RdbChecksum::Mismatch {
                stored: 1,
                computed: 2
            },
            ..
        })
    ));
    assert_eq!(all1.last().unwrap().position, Position::new(1, 21, 0));

    // The follower reads the same, open last segment included.
    let mut f = journal::Follower::new(&dir.join("shard-000"), Position::ZERO);
    assert_eq!(f.poll().unwrap(), all);
}

/// A format 1 journal continued by today's writer (a capture resumed after an upgrade): its
/// open segment gets delta-coded frames after the absolute ones, and everything reads and
/// verifies.
#[test]
fn a_version_1_journal_continued_by_the_version_2_writer_reads_whole() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("j");
    for (rel, bytes) in files(&fixture_dir(1)) {
        let to = dir.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    let before: Vec<_> = ShardReader::open(&dir, "shard-000", RecoveryMode::Refuse)
        .unwrap()
        .entries()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut w = ShardWriter::open(&dir, "shard-000", opts()).unwrap();
    for o in 1..=20u64 {
        w.command(200 + o * 7, cmd(o, &["INCR", "upgraded"]))
            .unwrap();
    }
    w.close().unwrap();
    let report = journal::verify(&dir);
    assert!(report.ok(), "{:#?}", report.problems);
    let after: Vec<_> = ShardReader::open(&dir, "shard-000", RecoveryMode::Refuse)
        .unwrap()
        .entries()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(after.len(), before.len() + 20);
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(after.last().unwrap().position, Position::new(2, 340, 0));
}
