//! The follower tails a shard while another writer appends, and while segment files are being
//! copied in slowly (a partial file is a tail to wait on, not an error).

use std::io::Write;
use std::time::{Duration, Instant};

use shake::journal::{Entry, Follower, Position, RecoveryMode, ShardReader, ShardWriter, segment};

use crate::journal_util::{command, create, small_opts, write_snapshot};

/// A sealed one-shard journal of `n` commands in small segments; returns the shard directory
/// and its first segment.
fn sealed_commands(t: &tempfile::TempDir, n: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    create(t.path());
    let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
    for o in 1..=n {
        w.command(o, command(o)).unwrap();
    }
    w.close().unwrap();
    let shard = t.path().join("shard-000");
    let first = segment::list(&shard).unwrap()[0].1.clone();
    (shard, first)
}

/// Polls up to three times, returning the first error (or the last result).
fn poll_until_error(f: &mut Follower) -> shake::journal::Result<Vec<Entry>> {
    let mut result = Ok(Vec::new());
    for _ in 0..3 {
        result = f.poll();
        if result.is_err() {
            break;
        }
    }
    result
}

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

#[test]
fn follower_waits_on_a_preallocated_file_filled_in_place() {
    use std::os::unix::fs::FileExt;
    let src = tempfile::tempdir().unwrap();
    create(src.path());
    let mut w = ShardWriter::open(src.path(), "shard-000", small_opts()).unwrap();
    for o in 1..=200u64 {
        w.command(o, command(o)).unwrap();
    }
    w.close().unwrap();
    let all: Vec<Entry> = ShardReader::open(src.path(), "shard-000", RecoveryMode::Refuse)
        .unwrap()
        .entries()
        .collect::<Result<_, _>>()
        .unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut f = Follower::new(dst.path(), Position::ZERO);
    let mut got = Vec::new();
    for (_, path) in segment::list(&src.path().join("shard-000")).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        let out = std::fs::File::create(dst.path().join(path.file_name().unwrap())).unwrap();
        out.set_len(bytes.len() as u64).unwrap(); // zeros, as `fallocate`-ing copy tools leave
        got.extend(f.poll().unwrap());
        for (i, chunk) in bytes.chunks(500).enumerate() {
            out.write_all_at(chunk, (i * 500) as u64).unwrap();
            got.extend(f.poll().unwrap());
        }
    }
    got.extend(f.poll().unwrap());
    assert_eq!(got, all);
}

#[test]
fn follower_reports_damage_followed_by_written_bytes() {
    let t = tempfile::tempdir().unwrap();
    let (shard, first) = sealed_commands(&t, 200);
    let mut b = std::fs::read(&first).unwrap();
    b[300] ^= 0x10;
    std::fs::write(&first, &b).unwrap();
    let mut f = Follower::new(&shard, Position::ZERO);
    match poll_until_error(&mut f) {
        Err(shake::journal::Error::Corruption { file, .. }) => assert_eq!(file, first),
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Bug pinned: a segment whose last frames were damaged and followed by zeros kept the follower
/// waiting forever ("a preallocated file being filled"), even when the segment could never
/// grow. Listed as sealed in shard.json and already at its listed length: damage, reported.
#[test]
fn follower_reports_a_damaged_end_of_a_segment_listed_as_sealed() {
    let t = tempfile::tempdir().unwrap();
    let (shard, first) = sealed_commands(&t, 200);
    let mut b = std::fs::read(&first).unwrap();
    let half = b.len() / 2;
    b[half..].iter_mut().for_each(|x| *x = 0);
    std::fs::write(&first, &b).unwrap();
    let mut f = Follower::new(&shard, Position::ZERO);
    match poll_until_error(&mut f) {
        Err(shake::journal::Error::Corruption { file, what, .. }) => {
            assert_eq!(file, first);
            assert!(what.contains("lists this segment as sealed"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// The same damage in a segment not (yet) listed, but followed by a later segment: reported
/// once the file has not changed for the stall limit; before that, waited on.
#[test]
fn follower_reports_a_stalled_segment_followed_by_a_later_one() {
    let t = tempfile::tempdir().unwrap();
    let (shard, first) = sealed_commands(&t, 300);
    assert!(
        segment::list(&shard).unwrap().len() >= 2,
        "several segments"
    );
    let mut b = std::fs::read(&first).unwrap();
    let half = b.len() / 2;
    b[half..].iter_mut().for_each(|x| *x = 0);
    std::fs::write(&first, &b).unwrap();
    // as if shard.json had not been copied over yet
    std::fs::remove_file(shard.join("shard.json")).unwrap();
    let mut f = Follower::new(&shard, Position::ZERO)
        .with_stall_limit(std::time::Duration::from_millis(300));
    let got = f
        .poll()
        .expect("first poll delivers the readable frames and waits");
    assert!(!got.is_empty());
    assert!(f.poll().unwrap().is_empty(), "still waiting");
    std::thread::sleep(std::time::Duration::from_millis(400));
    match f.poll() {
        Err(shake::journal::Error::Corruption { file, what, .. }) => {
            assert_eq!(file, first);
            assert!(what.contains("later segment"), "{what}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}
