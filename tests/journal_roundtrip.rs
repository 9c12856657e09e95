//! Writing and reading back: rotation, sealing, chunking, seeking, parallel frames, reopen.

use proptest::prelude::*;
use shake::journal::{
    self, Entry, Marker, Position, Record, RecoveryMode, ShardReader, ShardWriter, Transaction,
    WriterOptions, record::assemble_value,
};

use crate::journal_util::{command, create, small_opts, write_snapshot};

fn read_all(dir: &std::path::Path) -> Vec<Entry> {
    let r = ShardReader::open(dir, "shard-000", RecoveryMode::Refuse).unwrap();
    r.entries().collect::<Result<Vec<_>, _>>().unwrap()
}

#[test]
fn snapshot_then_commands_round_trip_across_rotations() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    w.capture_start(1_700_000_000_000).unwrap();
    write_snapshot(&mut w, 1000, 50);
    for o in 1001..1600 {
        w.command(o * 3, command(o)).unwrap();
    }
    w.transaction(
        5000,
        Transaction {
            db: 1,
            time_ms: 1_700_000_001_000,
            commands: vec![
                vec![b"INCR".to_vec(), b"a".to_vec()],
                vec![b"SELECT".to_vec(), b"2".to_vec()],
            ],
        },
    )
    .unwrap();
    let last = w.close().unwrap().unwrap();
    assert_eq!(last, Position::new(1, 5000, 0));

    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    assert!(r.segment_paths().len() > 3, "rotated");
    assert!((0..r.segment_paths().len()).all(|i| r.is_sealed(i)));
    let all: Vec<Entry> = r.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        all[0].record,
        Record::Marker(Marker::CaptureStart {
            time_ms: 1_700_000_000_000,
            shake_version: env!("CARGO_PKG_VERSION").into()
        })
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // chunked key reassembles
    let i = all
        .iter()
        .position(|e| matches!(&e.record, Record::Key(k) if k.key == b"k1"))
        .unwrap();
    let Record::Key(k) = &all[i].record else {
        unreachable!()
    };
    assert_eq!(k.chunks, 3);
    let chunks: Vec<_> = all[i + 1..i + 4]
        .iter()
        .map(|e| match &e.record {
            Record::ValueChunk(c) => c.clone(),
            _ => panic!("chunk expected"),
        })
        .collect();
    let v = assemble_value(k, &chunks).unwrap();
    assert_eq!(
        v,
        (0..3500u64).map(|i| (i * 7 + 1) as u8).collect::<Vec<_>>()
    );
    // commands in order with their offsets
    let cmds: Vec<_> = all
        .iter()
        .filter(|e| matches!(e.record, Record::Command(_)))
        .collect();
    assert_eq!(cmds.len(), 599);
    assert_eq!(cmds[0].position, Position::new(1, 3003, 0));
    assert_eq!(cmds[0].record, Record::Command(command(1001)));

    // seek into the middle
    let from = Position::new(1, 1300 * 3, 0);
    let tail: Vec<Entry> = r.entries_from(from).collect::<Result<_, _>>().unwrap();
    assert_eq!(tail[0].position, from);
    assert_eq!(
        tail.len(),
        all.iter().filter(|e| e.position >= from).count()
    );

    // parallel frames see the same records
    use rayon::prelude::*;
    let mut par: Vec<Entry> = r.par_frames().map(|f| f.unwrap().1).flatten().collect();
    par.sort_by_key(|e| e.position);
    assert_eq!(par, all);

    let report = journal::verify(t.path());
    assert!(report.ok(), "{:#?}", report.problems);
    let s = &report.shards[0];
    assert_eq!(s.records, all.len() as u64);
    assert_eq!(s.epochs.len(), 2); // epoch 0 (capture start marker) and 1
    assert_eq!(s.epochs[1].snapshot_keys, Some(50));
    assert_eq!(s.min_time_ms, Some(1_700_000_000_000));
    serde_json::to_string(&report).unwrap();
}

#[test]
fn reopen_after_clean_close_continues_in_a_new_segment() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 10, 3);
    w.command(20, command(20)).unwrap();
    w.close().unwrap();
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    assert_eq!(w.last_position(), Some(Position::new(1, 20, 0)));
    assert_eq!(w.resume_point().unwrap().offset, 20);
    assert!(
        w.command(20, command(20)).is_err(),
        "not after the last position"
    );
    w.command(30, command(30)).unwrap();
    w.marker(Marker::CaptureStop {
        time_ms: 5,
        reason: "test".into(),
    })
    .unwrap();
    w.close().unwrap();
    let all = read_all(t.path());
    assert_eq!(all.last().unwrap().position, Position::new(1, 30, 1));
    assert!(journal::verify(t.path()).ok());
}

#[test]
fn second_snapshot_starts_a_new_epoch_recorded_in_the_manifest() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 10, 2);
    w.command(50, command(50)).unwrap();
    w.replid_changed(51, "new-id".into(), Some("old-id".into()))
        .unwrap();
    write_snapshot(&mut w, 7, 2); // offsets of a new epoch are unrelated
    assert_eq!(w.epoch(), 2);
    w.command(9, command(9)).unwrap();
    let m = w.manifest().clone();
    w.sync().unwrap();
    let rp = w.resume_point().unwrap();
    assert_eq!(
        (rp.epoch, rp.replid.as_str(), rp.offset),
        (2, "8de1c4a7a2a4c7f5e2b3a1d0c9f8e7d6c5b4a392", 9)
    );
    w.close().unwrap();
    assert_eq!(m.epochs.len(), 2);
    assert_eq!(m.epochs[0].replids.len(), 2);
    assert_eq!(m.epochs[1].start_offset, 7);
    let r = journal::verify(t.path());
    assert!(r.ok(), "{:#?}", r.problems);
    assert_eq!(
        r.shards[0]
            .epochs
            .iter()
            .map(|e| e.epoch)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn durable_position_follows_the_fsync_policy() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let opts = WriterOptions {
        fsync: journal::FsyncPolicy::Always,
        ..small_opts()
    };
    let mut w = ShardWriter::open(t.path(), "shard-000", opts).unwrap();
    w.command(5, command(5)).unwrap();
    assert_eq!(w.durable_position(), None, "buffered, not durable");
    w.flush().unwrap();
    assert_eq!(w.durable_position(), Some(Position::new(0, 5, 0)));
    let opts = WriterOptions {
        fsync: journal::FsyncPolicy::Interval(std::time::Duration::from_secs(3600)),
        ..small_opts()
    };
    drop(w);
    let mut w = ShardWriter::open(t.path(), "shard-000", opts).unwrap();
    w.command(6, command(6)).unwrap();
    w.flush().unwrap();
    assert_eq!(
        w.durable_position(),
        Some(Position::new(0, 5, 0)),
        "interval not elapsed"
    );
    assert_eq!(w.sync().unwrap(), Some(Position::new(0, 6, 0)));
}

#[test]
fn age_rotation_seals_a_quiet_segment() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let opts = WriterOptions {
        segment_max_age: Some(std::time::Duration::from_millis(1)),
        ..small_opts()
    };
    let mut w = ShardWriter::open(t.path(), "shard-000", opts).unwrap();
    w.command(5, command(5)).unwrap();
    w.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    w.tick().unwrap();
    assert_eq!(w.manifest().sealed.len(), 1);
    w.command(6, command(6)).unwrap();
    w.close().unwrap();
    assert!(journal::verify(t.path()).ok());
    assert_eq!(read_all(t.path()).len(), 2);
}

#[test]
fn credentials_in_the_source_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let m = journal::JournalManifest::new(
        0,
        journal::Source {
            kind: "standalone".into(),
            description: "redis://u:pw@h:1".into(),
        },
        vec![],
    );
    assert!(journal::create(t.path(), &m).is_err());
}

fn arb_record() -> impl Strategy<Value = Record> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(bytes.clone(), 0..5)
        )
            .prop_map(|(db, time_ms, argv)| Record::Command(journal::Command {
                db,
                time_ms,
                argv
            })),
        (
            any::<u32>(),
            proptest::collection::vec(proptest::collection::vec(bytes.clone(), 0..3), 0..3)
        )
            .prop_map(|(db, commands)| Record::Transaction(Transaction {
                db,
                time_ms: 1,
                commands
            })),
        (any::<u64>(), ".{0,20}")
            .prop_map(|(time_ms, reason)| Record::Marker(Marker::CaptureStop { time_ms, reason })),
        bytes
            .clone()
            .prop_map(|code| Record::FunctionLibrary(journal::FunctionLibrary { code })),
        (any::<u64>(), any::<u8>(), bytes).prop_map(|(module_id, when, data)| Record::ModuleAux(
            journal::ModuleAux {
                module_id,
                when,
                data
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_record_sequences_round_trip(recs in proptest::collection::vec((1u64..1000, arb_record()), 1..120)) {
        let t = tempfile::tempdir().unwrap();
        create(t.path());
        let opts = WriterOptions { segment_size: 4096, frame_size: 700, ..Default::default() };
        let mut w = ShardWriter::open(t.path(), "shard-000", opts).unwrap();
        let mut expect = Vec::new();
        let mut off = 0;
        for (step, r) in recs {
            off += step;
            let p = Position::new(0, off, 0);
            w.append(p, &r).unwrap();
            expect.push(Entry { position: p, record: r });
        }
        w.close().unwrap();
        prop_assert_eq!(read_all(t.path()), expect);
        prop_assert!(journal::verify(t.path()).ok());
    }
}
