//! Crash safety: a child writer process (this test binary re-executed, switched by an
//! environment variable) is killed with SIGKILL at random moments, ~100 times. Every reopen must
//! recover a valid prefix that contains everything the child reported durable, and `verify`
//! must pass after each recovery.

use std::io::BufRead;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use shake::journal::{
    self, FsyncPolicy, Position, Record, RecoveryMode, ShardReader, ShardWriter, WriterOptions,
};

use crate::journal_util::{command, create, write_snapshot};

const CHILD_ENV: &str = "SHAKE_JOURNAL_CRASH_CHILD";

fn opts() -> WriterOptions {
    WriterOptions {
        segment_size: 8 << 10,
        frame_size: 600,
        chunk_size: 1000,
        fsync: FsyncPolicy::Interval(Duration::from_millis(1)),
        ..Default::default()
    }
}

/// The child: appends forever, printing each new durable position. Does nothing when run as a
/// normal test.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut w = ShardWriter::open(&dir, "shard-000", opts()).unwrap();
    if w.epoch() == 0 {
        write_snapshot(&mut w, 100, 8);
    }
    let mut reported = None;
    let mut i = 0u64;
    loop {
        let next = w.last_position().unwrap().offset + 1;
        w.command(next, command(next)).unwrap();
        i += 1;
        if i.is_multiple_of(7) {
            w.flush().unwrap();
        }
        if w.durable_position() != reported {
            reported = w.durable_position();
            let p = reported.unwrap();
            println!("DURABLE {} {} {}", p.epoch, p.offset, p.seq);
        }
    }
}

/// A tiny deterministic generator (no extra dependency, reproducible failures).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn writer_killed_at_random_moments_recovers_every_durable_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    create(t.path());
    let exe = std::env::current_exe().unwrap();
    let mut rng = Lcg(0x5eed);
    let mut max_durable: Option<Position> = None;
    // Commands up to `checked` were verified in an earlier round; each round checks from there.
    let mut checked = Position::ZERO;
    let mut expect = 101;
    let kills = 100;
    for round in 0..kills {
        let mut child = Process::new(&exe)
            .args([
                "journal_crash::crash_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, t.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("DURABLE ") {
                    let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                    last = Some(Position::new(v[0], v[1], v[2]));
                }
            }
            last
        });
        std::thread::sleep(Duration::from_micros(2_000 + rng.next(25_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(p) = reader.join().unwrap() {
            max_durable = max_durable.max(Some(p));
        }
        // Before any recovery, what the kill left is at most a note for verify.
        if round % 10 == 0 {
            let report = journal::verify(t.path());
            assert!(
                report.ok(),
                "round {round}, before recovery: {:#?}",
                report.problems
            );
        }
        // Recover as the next writer would, then check the prefix.
        let w = ShardWriter::open(t.path(), "shard-000", opts())
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        let last = w.last_position();
        drop(w);
        assert!(
            last >= max_durable,
            "round {round}: recovered up to {last:?} but {max_durable:?} was reported durable"
        );
        let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
        for e in r.entries_from(checked) {
            let e = e.unwrap();
            if e.position == checked {
                continue;
            }
            checked = e.position;
            if let Record::Command(c) = &e.record {
                assert_eq!(e.position.offset, expect, "round {round}: gap or reorder");
                assert_eq!(*c, command(expect));
                expect += 1;
            }
        }
        // A full audit is O(journal): every tenth round and at the end.
        if round % 10 == 9 {
            let report = journal::verify(t.path());
            assert!(report.ok(), "round {round}: {:#?}", report.problems);
        }
    }
    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Refuse).unwrap();
    assert!(
        r.segment_paths().len() > 3,
        "the test should have rotated segments"
    );
    assert!(
        max_durable.is_some(),
        "the child never reported a durable position"
    );
}
