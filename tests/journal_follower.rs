//! The follower tails a shard while another writer appends, and while segment files are being
//! copied in slowly (a partial file is a tail to wait on, not an error).

use std::io::Write;
use std::time::{Duration, Instant};

use shake::journal::{Entry, Follower, Position, RecoveryMode, ShardReader, ShardWriter, segment};

use crate::journal_util::{command, create, small_opts, write_snapshot};

#[test]
fn follower_sees_frames_appended_by_a_concurrent_writer() {
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let dir = t.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        let mut w = ShardWriter::open(&dir, "shard-000", small_opts()).unwrap();
        write_snapshot(&mut w, 100, 5);
        for o in 101..=600u64 {
            w.command(o, command(o)).unwrap();
            if o % 20 == 0 {
                w.flush().unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        w.close().unwrap();
    });
    let mut f = Follower::new(&t.path().join("shard-000"), Position::ZERO);
    let mut got: Vec<Entry> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.last().map(|e| e.position) != Some(Position::new(1, 600, 0)) {
        assert!(
            Instant::now() < deadline,
            "follower stalled at {:?}",
            f.position()
        );
        got.extend(f.poll().unwrap());
        std::thread::sleep(Duration::from_micros(200));
    }
    writer.join().unwrap();
    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    let all: Vec<Entry> = r.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, all);
    assert!(
        r.segment_paths().len() > 2,
        "the follower crossed segment boundaries"
    );
}

#[test]
fn follower_waits_on_segments_copied_in_slowly() {
    let src = tempfile::tempdir().unwrap();
    create(src.path());
    let mut w = ShardWriter::open(src.path(), "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 100, 10);
    for o in 101..=300u64 {
        w.command(o, command(o)).unwrap();
    }
    w.close().unwrap();
    let all: Vec<Entry> = ShardReader::open(src.path(), "shard-000", RecoveryMode::Refuse)
        .unwrap()
        .entries()
        .collect::<Result<_, _>>()
        .unwrap();

    let dst = tempfile::tempdir().unwrap();
    let from = Position::new(1, 150, 0);
    let mut f = Follower::new(dst.path(), from);
    let mut got = f.poll().unwrap();
    assert!(got.is_empty());
    for (_, path) in segment::list(&src.path().join("shard-000")).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        let mut out = std::fs::File::create(dst.path().join(path.file_name().unwrap())).unwrap();
        for chunk in bytes.chunks(333) {
            out.write_all(chunk).unwrap();
            out.flush().unwrap();
            got.extend(f.poll().unwrap());
        }
    }
    got.extend(f.poll().unwrap());
    let expect: Vec<Entry> = all.into_iter().filter(|e| e.position >= from).collect();
    assert_eq!(got, expect);
}
