//! Writing and reading back: rotation, sealing, chunking, seeking, parallel frames, reopen.

use proptest::prelude::*;
use shake::journal::{
    self, Entry, Marker, Position, Record, RecoveryMode, ShardReader, ShardWriter, Transaction,
    WriterOptions, record::assemble_value,
};

use crate::journal_util::{command, create, small_opts, write_snapshot, write_snapshot_start};

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

#[test]
fn borrowed_commands_and_borrowed_reads_match_owned_ones() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    for o in 1..300u64 {
        let c = command(o);
        let argv: Vec<&[u8]> = c.argv.iter().map(|a| a.as_slice()).collect();
        w.command_ref(o, c.db, c.time_ms, &argv).unwrap();
    }
    w.close().unwrap();
    let all = read_all(t.path());
    assert_eq!(all.len(), 299);
    for e in &all {
        assert_eq!(e.record, Record::Command(command(e.position.offset)));
    }
    use rayon::prelude::*;
    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    let mut owned: Vec<Entry> = r
        .par_frames_raw()
        .map(|f| {
            let (f, raw) = f.unwrap();
            journal::frame::parse_entries_ref(&f.header, &raw)
                .unwrap()
                .iter()
                .map(|e| e.to_owned())
                .collect::<Vec<_>>()
        })
        .flatten()
        .collect();
    owned.sort_by_key(|e| e.position);
    assert_eq!(owned, all);
}

#[test]
fn a_value_streamed_in_pieces_is_written_like_a_whole_one() {
    let value: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let meta = journal::KeyRecord {
        db: 3,
        key: b"big".to_vec(),
        type_id: 18,
        expire_ms: Some(5),
        idle: None,
        freq: Some(1),
        value_len: 0,
        chunks: 0,
        value: Vec::new(),
    };
    let mut out = Vec::new();
    for pieces in [
        vec![10_000],
        vec![1, 999, 1, 4000, 4999],
        vec![3000, 3000, 3000, 1000],
        vec![],
    ] {
        let t = tempfile::tempdir().unwrap();
        create(t.path());
        let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
        if pieces.is_empty() {
            w.key(journal::KeyRecord {
                value: value.clone(),
                ..meta.clone()
            })
            .unwrap();
        } else {
            let mut kw = w.begin_key(meta.clone(), value.len() as u64).unwrap();
            let mut at = 0;
            for n in pieces {
                kw.write(&value[at..at + n]).unwrap();
                at += n;
            }
            kw.finish().unwrap();
        }
        w.close().unwrap();
        out.push(read_all(t.path()));
    }
    assert!(out.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(out[0].len(), 10); // 1000-byte chunks: the key record and 9 chunks

    // A short or long value is refused and poisons the writer.
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    let mut kw = w.begin_key(meta.clone(), 10).unwrap();
    kw.write(b"12345").unwrap();
    assert!(kw.finish().is_err());
    assert!(w.command(1, command(1)).is_err());
    drop(w);
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    let mut kw = w.begin_key(meta, 3).unwrap();
    assert!(kw.write(b"1234").is_err());
}

/// A crash after `begin_snapshot` published the epoch in shard.json but before its records
/// reached the disk leaves an epoch with no data: the next snapshot takes the next number,
/// resume uses the epoch of the durable data, and verify is clean.
#[test]
fn epoch_published_but_lost_in_a_crash_is_skipped() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 10, 2);
    w.command(11, command(11)).unwrap();
    w.sync().unwrap();
    write_snapshot(&mut w, 500, 1); // epoch 2: manifest written, records only buffered
    drop(w); // crash: buffered records are lost
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    assert_eq!(w.last_position(), Some(Position::new(1, 11, 0)));
    assert_eq!(w.resume_point().unwrap().epoch, 1);
    assert_eq!(w.manifest().epochs.len(), 2);
    write_snapshot(&mut w, 700, 1);
    assert_eq!(w.epoch(), 3);
    // a snapshot cut short by the end of the journal
    w.begin_snapshot(
        journal::SnapshotBegin {
            replid: "r".into(),
            offset: 900,
            rdb_version: 11,
            aux: vec![],
        },
        None,
    )
    .unwrap();
    w.close().unwrap();
    let r = journal::verify(t.path());
    assert!(r.ok(), "{:#?}", r.problems);
    let states: Vec<_> = r.shards[0]
        .epochs
        .iter()
        .map(|e| (e.epoch, e.snapshot.as_str()))
        .collect();
    assert_eq!(
        states,
        [(1, "complete"), (3, "complete"), (4, "incomplete")]
    );
}

#[test]
fn a_second_writer_on_the_same_shard_is_refused() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    let e = ShardWriter::open(t.path(), "shard-000", small_opts())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("already open for writing"), "{e}");
    // readers and followers are not writers
    ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    drop(w);
    ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
}

/// `ShardReader::snapshot_complete` decodes only the last frames of a snapshot: a complete one
/// followed by commands, one followed only by markers, one cut off (keys, no end) in a second
/// epoch, and an epoch with no record are each told apart.
#[test]
fn snapshot_complete_is_found_from_the_last_frames() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 10, 40);
    for o in 11..200 {
        w.command(o, command(o)).unwrap();
    }
    w.replid_changed(201, "new-id".into(), None).unwrap();
    write_snapshot(&mut w, 7, 40);
    w.marker(Marker::CaptureStop {
        time_ms: 1,
        reason: "signal".into(),
    })
    .unwrap();
    w.close().unwrap();
    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    assert!(r.frames().len() > 4, "the test needs several frames");
    assert_eq!(r.snapshot_complete(1, 10).unwrap(), Some(true));
    assert_eq!(r.snapshot_complete(2, 7).unwrap(), Some(true));
    assert_eq!(r.snapshot_complete(3, 7).unwrap(), None);

    // epoch 3: keys and no end (a capture killed inside its snapshot)
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    write_snapshot_start(&mut w, 5, 30);
    w.close().unwrap();
    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    assert_eq!(r.snapshot_complete(3, 5).unwrap(), Some(false));
    assert_eq!(r.snapshot_complete(2, 7).unwrap(), Some(true));
}
