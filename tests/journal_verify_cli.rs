//! `shake verify` on the golden journal and on a damaged copy.

use std::path::Path;

use crate::support::shake_run;

#[test]
fn verify_golden_journal_exits_0_and_damaged_copy_exits_3() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/journal/v1-two-shards");
    let out = shake_run(&["verify", golden.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("OK: no problem found"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("epoch 1"), "{}", out.stdout);

    let t = tempfile::tempdir().unwrap();
    for sub in ["", "shard-000", "shard-001"] {
        std::fs::create_dir_all(t.path().join(sub)).unwrap();
        for e in std::fs::read_dir(golden.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), t.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let seg = t
        .path()
        .join("shard-001/00000001-00000000000000000007-0000000000.seg");
    let mut b = std::fs::read(&seg).unwrap();
    b[150] ^= 1;
    std::fs::write(&seg, b).unwrap();
    let out = shake_run(&["verify", "--format", "json", t.path().to_str().unwrap()]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| {
        p["file"]
            .as_str()
            .unwrap()
            .ends_with("0000000007-0000000000.seg")
            && p["offset"].is_u64()
    }));
}

/// Bug pinned: `verify` checked every frame's checksum but not that a large value's chunks all
/// arrived — a journal whose writer lost a chunk passed. Now the key is named, exit 3.
#[test]
fn verify_names_a_key_whose_value_chunks_are_incomplete() {
    use crate::journal_util::{create, small_opts};
    use shake::journal::{
        KeyRecord, Position, RdbChecksum, Record, ShardInfo, ShardWriter, SnapshotBegin,
        SnapshotEnd, ValueChunk,
    };
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let mut w = ShardWriter::open(t.path(), &ShardInfo::name_for(0), small_opts()).unwrap();
    w.begin_snapshot(
        SnapshotBegin {
            replid: "8de1c4a7a2a4c7f5e2b3a1d0c9f8e7d6c5b4a392".into(),
            offset: 100,
            rdb_version: 11,
            aux: vec![],
        },
        None,
    )
    .unwrap();
    let next = |w: &ShardWriter| {
        let p = w.last_position().unwrap();
        Position {
            seq: p.seq + 1,
            ..p
        }
    };
    let key = |name: &str, value: &[u8], value_len: u64, chunks: u32| KeyRecord {
        db: 0,
        key: name.as_bytes().to_vec(),
        type_id: 0,
        expire_ms: None,
        idle: None,
        freq: None,
        value_len,
        chunks,
        value: value.to_vec(),
    };
    let p = next(&w);
    w.append(p, &Record::Key(key("big:value", b"ab", 6, 2)))
        .unwrap();
    let p = next(&w);
    w.append(
        p,
        &Record::ValueChunk(ValueChunk {
            index: 1,
            data: b"cd".to_vec(),
        }),
    )
    .unwrap();
    // chunk 2 is lost; the next key follows
    let p = next(&w);
    w.append(p, &Record::Key(key("after", b"x", 1, 0))).unwrap();
    w.end_snapshot(SnapshotEnd {
        key_count: 2,
        checksum: RdbChecksum::Verified(1),
    })
    .unwrap();
    w.close().unwrap();

    let out = shake_run(&["verify", t.path().to_str().unwrap()]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("\"big:value\"") && out.stdout.contains("cut off after 1 chunks"),
        "{}",
        out.stdout
    );
}
