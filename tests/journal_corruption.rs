//! Corruption: bit flips, truncations, deleted and duplicated segments are detected and located
//! by `verify` and by readers, without panics; recovery cuts torn tails and only torn tails.

use std::path::{Path, PathBuf};

use shake::journal::{
    self, Entry, Position, Record, RecoveryMode, ShardReader, ShardWriter, segment,
};

use crate::journal_util::{command, create, small_opts, write_snapshot};

/// A journal with several sealed segments and an open (unsealed) last one.
fn journal(dir: &Path, seal_last: bool) -> Vec<Entry> {
    create(dir);
    let mut w = ShardWriter::open(dir, "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 100, 20);
    for o in 101..400 {
        w.command(o, command(o)).unwrap();
    }
    if seal_last {
        w.close().unwrap();
    } else {
        w.sync().unwrap();
    }
    read(dir, RecoveryMode::Refuse).unwrap()
}

fn read(dir: &Path, mode: RecoveryMode) -> Result<Vec<Entry>, journal::Error> {
    let r = ShardReader::open(dir, "shard-000", mode)?;
    r.entries().collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    segment::list(&dir.join("shard-000"))
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("shard-000")).unwrap();
    for sub in ["", "shard-000"] {
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

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
fn random_bit_flips_are_located_by_verify_and_never_returned_as_data() {
    let base = tempfile::tempdir().unwrap();
    let good = journal(base.path(), false);
    let mut rng = Lcg(7);
    for round in 0..60 {
        let t = tempfile::tempdir().unwrap();
        copy_dir(base.path(), t.path());
        let segs = segments(t.path());
        let victim = &segs[rng.next(segs.len() as u64) as usize];
        let mut b = std::fs::read(victim).unwrap();
        let bit = rng.next(b.len() as u64 * 8);
        b[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(victim, &b).unwrap();

        let report = journal::verify(t.path());
        assert!(
            report.problems.iter().any(|p| p.file == *victim),
            "round {round}: flip of bit {bit} in {} not located: {:#?}",
            victim.display(),
            report.problems
        );
        // A reader either refuses or returns exactly the good data (a flip in a seal frame of a
        // segment read through its index does not touch the data).
        match read(t.path(), RecoveryMode::Refuse) {
            Ok(v) => assert_eq!(v, good, "round {round}: wrong data returned"),
            Err(journal::Error::Corruption { file, .. }) => assert_eq!(file, *victim),
            Err(e) => panic!("round {round}: unexpected error {e}"),
        }
        // Skip mode returns a subsequence of the good data and reports the damage.
        let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Skip).unwrap();
        let got: Vec<Entry> = r.entries().collect::<Result<_, _>>().unwrap();
        let mut it = good.iter();
        assert!(
            got.iter().all(|e| it.any(|g| g == e)),
            "round {round}: skip mode invented data"
        );
        if got != good {
            assert!(
                !r.damage().is_empty(),
                "round {round}: data lost without a damage report"
            );
        }
    }
}

#[test]
fn truncated_sealed_segment_is_reported() {
    let t = tempfile::tempdir().unwrap();
    journal(t.path(), true);
    let victim = segments(t.path())[1].clone();
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let report = journal::verify(t.path());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == victim && p.what.contains("SHA-256"))
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == victim && p.offset.is_some())
    );
    assert!(
        matches!(read(t.path(), RecoveryMode::Refuse), Err(journal::Error::Corruption { file, .. }) if file == victim)
    );
}

#[test]
fn damaged_or_missing_index_is_rebuilt_from_the_segment() {
    let t = tempfile::tempdir().unwrap();
    let good = journal(t.path(), true);
    let segs = segments(t.path());
    let idx0 = journal::index::path_for(&segs[0]);
    let before = std::fs::read(&idx0).unwrap();
    std::fs::write(&idx0, b"garbage").unwrap();
    std::fs::remove_file(journal::index::path_for(&segs[1])).unwrap();
    assert_eq!(read(t.path(), RecoveryMode::Refuse).unwrap(), good);
    assert!(
        journal::verify(t.path()).ok(),
        "the index is not part of the audit"
    );
    journal::index::rebuild(&segs[0]).unwrap();
    assert_eq!(std::fs::read(&idx0).unwrap(), before);
}

#[test]
fn deleted_segment_is_reported() {
    let t = tempfile::tempdir().unwrap();
    journal(t.path(), true);
    let segs = segments(t.path());
    assert!(segs.len() >= 3);
    let victim = segs[1].clone();
    std::fs::remove_file(&victim).unwrap();
    let report = journal::verify(t.path());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == victim && p.what.contains("missing")),
        "{:#?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("a segment is missing")),
        "{:#?}",
        report.problems
    );
    assert!(read(t.path(), RecoveryMode::Refuse).is_err());
    assert!(
        ShardWriter::open(t.path(), "shard-000", small_opts()).is_err(),
        "append refuses a damaged shard"
    );
}

#[test]
fn duplicated_segment_is_reported() {
    let t = tempfile::tempdir().unwrap();
    journal(t.path(), true);
    let segs = segments(t.path());
    let dup = t
        .path()
        .join("shard-000")
        .join(segment::file_name(Position::new(9, 0, 0)));
    std::fs::copy(&segs[1], &dup).unwrap();
    let report = journal::verify(t.path());
    assert!(
        report.problems.iter().any(|p| p.file == dup),
        "{:#?}",
        report.problems
    );
    assert!(
        matches!(read(t.path(), RecoveryMode::Refuse), Err(journal::Error::Corruption { file, .. }) if file == dup)
    );
}

#[test]
fn recovery_cuts_a_torn_tail_at_any_length_and_continues() {
    let base = tempfile::tempdir().unwrap();
    let good = journal(base.path(), false);
    let last = segments(base.path()).pop().unwrap();
    let full = std::fs::metadata(&last).unwrap().len();
    let mut rng = Lcg(11);
    for round in 0..40 {
        let t = tempfile::tempdir().unwrap();
        copy_dir(base.path(), t.path());
        let victim = t.path().join("shard-000").join(last.file_name().unwrap());
        let cut = rng.next(full);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&victim)
            .unwrap();
        f.set_len(cut).unwrap();
        if round % 3 == 0 {
            // a crash that leaves zeros (preallocated blocks) past the valid data
            f.set_len(cut + 500).unwrap();
        }
        drop(f);
        let mut w = ShardWriter::open(t.path(), "shard-000", small_opts()).unwrap();
        let got = read(t.path(), RecoveryMode::Refuse).unwrap();
        assert_eq!(got[..], good[..got.len()], "round {round}: not a prefix");
        let next = got.last().unwrap().position.offset + 1;
        w.command(next, command(next)).unwrap();
        w.close().unwrap();
        let report = journal::verify(t.path());
        assert!(
            report.ok(),
            "round {round} (cut at {cut}): {:#?}",
            report.problems
        );
    }
}

#[test]
fn recovery_refuses_damage_followed_by_valid_frames() {
    let t = tempfile::tempdir().unwrap();
    journal(t.path(), false);
    let last = segments(t.path()).pop().unwrap();
    let mut b = std::fs::read(&last).unwrap();
    b[segment::SEGMENT_HEADER_LEN + 100] ^= 0xff; // inside the first frame
    std::fs::write(&last, &b).unwrap();
    let e = ShardWriter::open(t.path(), "shard-000", small_opts())
        .err()
        .expect("refused");
    assert!(
        matches!(e, journal::Error::Corruption { ref file, .. } if *file == last),
        "{e}"
    );
    assert_eq!(std::fs::read(&last).unwrap(), b, "nothing truncated");
}

#[test]
fn skip_mode_reads_around_a_damaged_frame() {
    let t = tempfile::tempdir().unwrap();
    let good = journal(t.path(), true);
    let victim = segments(t.path())[1].clone();
    let mut b = std::fs::read(&victim).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x55;
    std::fs::write(&victim, &b).unwrap();
    let r = ShardReader::open(t.path(), "shard-000", RecoveryMode::Skip).unwrap();
    let got: Vec<Entry> = r.entries().collect::<Result<_, _>>().unwrap();
    assert!(got.len() < good.len());
    let d = r.damage();
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].file, victim);
    assert!(d[0].offset as usize <= i && i < (d[0].offset + d[0].len) as usize);
    assert!(got.iter().any(|e| matches!(e.record, Record::Command(_))));
}

mod no_panic {
    use proptest::prelude::*;
    use shake::journal::frame::{self, Check, FRAME_HEADER_LEN, FrameHeader};
    use shake::journal::{Position, segment};

    fn valid_raw() -> Vec<u8> {
        static RAW: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        RAW.get_or_init(make_raw).clone()
    }

    fn make_raw() -> Vec<u8> {
        // Encoded entries of a real frame (commands, a transaction, a key): taken from a frame
        // the writer produced.
        let t = tempfile::tempdir().unwrap();
        crate::journal_util::create(t.path());
        let mut w =
            shake::journal::ShardWriter::open(t.path(), "shard-000", Default::default()).unwrap();
        crate::journal_util::write_snapshot(&mut w, 10, 3);
        for o in 11..20 {
            w.command(o, crate::journal_util::command(o)).unwrap();
        }
        w.close().unwrap();
        let r =
            shake::journal::ShardReader::open(t.path(), "shard-000", Default::default()).unwrap();
        let f = r.frames()[0];
        let b = std::fs::read(r.segment_paths()[0]).unwrap();
        let s = f.offset as usize + FRAME_HEADER_LEN;
        frame::raw_payload(&f.header, &b[s..s + f.header.stored_len as usize]).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Arbitrary bytes: check, decode and scans return, never panic.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(Check::Complete(h)) = frame::check(&data) {
                let _ = frame::decode_records(&h, &data[FRAME_HEADER_LEN..h.frame_len() as usize]);
            }
            let _ = segment::scan(&data, std::path::Path::new("x.seg"), true, true);
        }

        /// Mutated record bytes behind *valid* checksums (as a buggy or malicious writer would
        /// produce): the record parser errors cleanly, never panics or over-allocates.
        #[test]
        fn mutated_records_behind_valid_checksums(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), count in 0u32..200) {
            let mut raw = valid_raw();
            for (i, b) in edits {
                let at = i.index(raw.len());
                raw[at] = b;
            }
            let mut c = zstd::bulk::Compressor::new(1).unwrap();
            let body = c.compress(&raw).unwrap();
            let h = FrameHeader {
                kind: frame::FrameKind::Records,
                codec: frame::Codec::Zstd,
                first: Position::ZERO,
                last: Position::new(9, 9, 9),
                records: count,
                stored_len: body.len() as u32,
                raw_len: raw.len() as u32,
                payload_crc: crc32c::crc32c(&body),
            };
            let mut f = h.encode().to_vec();
            f.extend_from_slice(&body);
            let Ok(Check::Complete(h)) = frame::check(&f) else { panic!("valid frame") };
            let _ = frame::decode_records(&h, &f[FRAME_HEADER_LEN..]);
        }
    }
}
