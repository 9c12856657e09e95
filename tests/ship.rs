//! `shake ship` / `shake receive`: shipments taken while a capture runs under load and received
//! while `replay --follow` applies them; skipped, repeated, corrupted and half-written
//! shipments refused by name with nothing added; ship with nothing new creating nothing;
//! sealing the active segment without a capture; the golden shipment fixture; and a proptest
//! that `shipment.json` / `SHA256SUMS` from media never panic the parser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use shake::journal::{Entry, Position, RecoveryMode, ShardReader, ShardWriter, segment};
use shake::ship::format::{self, Shipment};

use crate::journal_util::{command, create, small_opts, write_snapshot};
use crate::support::{
    LiveCapture, Load, Output, Server, digest, finish, kill, shake_run, spawn_shake,
    wait_caught_up, wait_until,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ship(journal: &Path, media: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["ship", s(journal), "--to", s(media), "--format", "json"];
    args.extend_from_slice(extra);
    shake_run(&args)
}

/// Ships and returns the shipment folder (the ship must write one).
fn ship_one(journal: &Path, media: &Path, extra: &[&str]) -> (PathBuf, serde_json::Value) {
    let out = ship(journal, media, extra);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let path = v["shipment"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("no shipment written: {}", out.stdout))
        .into();
    (path, v)
}

fn receive(from: &Path, journal: &Path) -> Output {
    shake_run(&["receive", s(from), "--journal", s(journal)])
}

fn entries(journal: &Path) -> Vec<Entry> {
    ShardReader::open(journal, "shard-000", RecoveryMode::Refuse)
        .unwrap()
        .entries()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn sealed_entries(journal: &Path) -> Vec<Entry> {
    let r = ShardReader::open(journal, "shard-000", RecoveryMode::Refuse).unwrap();
    let last = r.manifest().sealed.last().map(|x| x.last);
    r.entries()
        .map(|e| e.unwrap())
        .filter(|e| last.is_some_and(|l| e.position <= l))
        .collect()
}

/// Appends commands `from..=to` to shard-000 and seals (a capture session that stopped).
fn append_and_seal(j: &Path, from: u64, to: u64) {
    let mut w = ShardWriter::open(j, "shard-000", small_opts()).unwrap();
    for o in from..=to {
        w.command(o, command(o)).unwrap();
    }
    w.close().unwrap();
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn verify_ok(j: &Path) {
    let out = shake_run(&["verify", s(j)]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

/// The acceptance test: three shipments taken with `--include-active` while a capture
/// runs under write load (and rotates by age), received in order into a fresh far-side journal
/// while `replay --follow` applies them to a fresh target; once the load stops and the last
/// shipment is in, the target equals the source and the received journal verifies.
#[test]
fn shipments_under_load_received_while_replay_follows() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    for i in 0..200 {
        sc.cmd(&["SET", &format!("before:{i}"), &i.to_string()]);
    }
    sc.cmd(&["HSET", "h", "a", "1", "b", "2"]);
    let t = tempfile::tempdir().unwrap();
    let (j, media, far) = (
        t.path().join("j"),
        t.path().join("usb"),
        t.path().join("far"),
    );
    std::fs::create_dir(&media).unwrap();
    let cap = LiveCapture::start(
        &source.url(),
        &j,
        &["--segment-max-age", "700ms"],
        &source,
        1,
    );
    wait_until(30, "the snapshot in the journal", || {
        ShardReader::open(&j, "shard-000", RecoveryMode::Refuse)
            .map(|r| {
                r.entries().any(|e| {
                    matches!(
                        e.map(|e| e.record),
                        Ok(shake::journal::Record::SnapshotEnd(_))
                    )
                })
            })
            .unwrap_or(false)
    });
    let load = Load::start(source.port, Duration::from_millis(1), |c, i| {
        c.cmd(&["INCR", "counter"]);
        c.cmd(&["RPUSH", "list", &i.to_string()]);
        c.cmd(&["SET", &format!("k:{}", i % 300), &i.to_string()]);
        if i % 7 == 0 {
            c.cmd(&["DEL", &format!("before:{}", i % 200)]);
        }
    });

    std::thread::sleep(Duration::from_millis(800));
    let (s1, v1) = ship_one(&j, &media, &["--include-active"]);
    assert_eq!(v1["shipment"]["sequence"], 1);
    let out = receive(&s1, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("received shipment 1"), "{}", out.stdout);

    let target = Server::start("7.0");
    let rep = spawn_shake(&["replay", s(&far), "--target", &target.url(), "--follow"]);

    std::thread::sleep(Duration::from_millis(2500));
    let (s2, v2) = ship_one(&j, &media, &["--include-active"]);
    assert_eq!(v2["shipment"]["sequence"], 2);
    // 2.5 s of load with --segment-max-age 700ms: rotation by age, then the requested seal
    assert!(
        v2["shipment"]["segments"].as_u64().unwrap() >= 3,
        "rotation by age: {v2}"
    );
    assert_eq!(v2["sealed"][0]["by"], "capture", "{v2}");
    let out = receive(&s2, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    std::thread::sleep(Duration::from_millis(500));
    let steps = load.stop();
    assert!(steps > 100, "the load ran: {steps} steps");
    wait_caught_up(&source);
    let (s3, v3) = ship_one(&j, &media, &["--include-active"]);
    assert_eq!(v3["shipment"]["sequence"], 3);
    let out = receive(&s3, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let mut tc = target.client();
    let want = digest(&mut sc);
    wait_until(30, "the target to equal the source", || {
        digest(&mut tc) == want
    });
    assert_eq!(tc.text(&["GET", "counter"]), sc.text(&["GET", "counter"]));
    kill(rep.id(), "TERM");
    let out = finish(rep);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    cap.stop();
    verify_ok(&far);
    // the far journal holds exactly what the source sealed up to shipment 3
    let far_entries = entries(&far);
    let src = entries(&j);
    assert_eq!(far_entries[..], src[..far_entries.len()]);
    // and a media directory holding all three is now "nothing new"
    let out = receive(&media, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("nothing new"), "{}", out.stdout);
    // the end: a passing compare, of the target against the live source and against
    // the received journal (its end state, rebuilt on a scratch server)
    for source_arg in [source.url(), far.display().to_string()] {
        let out = shake_run(&[
            "compare",
            "--source",
            &source_arg,
            "--target",
            &target.url(),
            "--mode",
            "full",
            "--progress",
            "none",
        ]);
        assert_eq!(
            out.code, 0,
            "compare {source_arg}:\n{}\n{}",
            out.stdout, out.stderr
        );
    }
}

/// A source journal with three shipments on `media`, made offline.
fn three_shipments(t: &Path) -> (PathBuf, PathBuf, [PathBuf; 3]) {
    let (j, media) = (t.join("j"), t.join("usb"));
    std::fs::create_dir(&media).unwrap();
    create(&j);
    let mut w = ShardWriter::open(&j, "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 100, 10);
    for o in 101..=200 {
        w.command(o, command(o)).unwrap();
    }
    w.close().unwrap();
    let (a, _) = ship_one(&j, &media, &[]);
    append_and_seal(&j, 201, 300);
    let (b, _) = ship_one(&j, &media, &[]);
    append_and_seal(&j, 301, 400);
    let (c, _) = ship_one(&j, &media, &[]);
    (j, media, [a, b, c])
}

/// What the far journal's state files and manifests hold, to show nothing was added.
fn far_state(far: &Path) -> (Vec<u8>, Vec<u8>, Vec<String>) {
    let mut files: Vec<String> = std::fs::read_dir(far.join("shard-000"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (
        file_bytes(&far.join("received.json")),
        file_bytes(&far.join("shard-000/shard.json")),
        files,
    )
}

/// Receive 1 then 3: refused naming shipment 2, nothing added (the far journal, which a
/// `replay --follow` would read, simply does not have anything past the gap); a repeat given on
/// its own is refused naming it; a corrupted byte is refused naming the file (caught by the
/// checksum list, and by the segment check when the lists were "fixed" to match); a
/// half-written shipment is refused given directly and ignored in a media directory; then the
/// media directory completes the journal, skipping what was received.
#[test]
fn gaps_repeats_corruption_and_partial_shipments_are_refused_by_name() {
    let t = tempfile::tempdir().unwrap();
    let (j, media, [s1, s2, s3]) = three_shipments(t.path());
    let far = t.path().join("far");
    let id = serde_json::from_slice::<serde_json::Value>(&file_bytes(&j.join("journal.json")))
        .unwrap()["journal_id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = receive(&s1, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let after_1 = far_state(&far);
    let last_1 = entries(&far).last().unwrap().position;

    // a gap
    let out = receive(&s3, &far);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("shipment(s) 2 missing") && out.stderr.contains(&id),
        "{}",
        out.stderr
    );
    assert_eq!(far_state(&far), after_1, "nothing of shipment 3 was added");
    assert_eq!(entries(&far).last().unwrap().position, last_1);
    let mut f = shake::journal::Follower::new(&far.join("shard-000"), Position::ZERO);
    let seen = f.poll().unwrap();
    assert_eq!(
        seen.last().unwrap().position,
        last_1,
        "a follower sees nothing past the gap"
    );

    // a repeat, on its own
    let out = receive(&s1, &far);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "shipment 1 of journal {id} was already received on"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(far_state(&far), after_1);

    // a corrupted byte in a segment
    let bad = t.path().join("bad");
    let bad2 = bad.join(s2.file_name().unwrap());
    copy_dir(&s2, &bad2);
    let seg = segment::list(&bad2.join("shard-000")).unwrap()[0].1.clone();
    let mut b = file_bytes(&seg);
    let at = b.len() / 2;
    b[at] ^= 0x40;
    std::fs::write(&seg, &b).unwrap();
    let out = receive(&bad2, &far);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(seg.to_str().unwrap()) && out.stderr.contains("checksum mismatch"),
        "{}",
        out.stderr
    );
    assert_eq!(far_state(&far), after_1);
    // … and with both checksum lists rewritten to match the damage, the segment check
    // (frame checksums) still names the file
    let name = seg.file_name().unwrap().to_str().unwrap();
    let new_sha = format::sha256_hex(&b);
    let sp = bad2.join("shipment.json");
    let mut sh = Shipment::parse(&file_bytes(&sp)).unwrap();
    for x in &mut sh.shards[0].segments {
        if x.file == name {
            x.sha256 = new_sha.clone();
        }
    }
    std::fs::write(&sp, sh.to_bytes()).unwrap();
    let mut sums = format::parse_sums(&file_bytes(&bad2.join("SHA256SUMS"))).unwrap();
    for (p, h) in &mut sums {
        if p.ends_with(name) {
            *h = new_sha.clone();
        }
        if p == "shipment.json" {
            *h = format::sha256_hex(&sh.to_bytes());
        }
    }
    std::fs::write(bad2.join("SHA256SUMS"), format::format_sums(&sums)).unwrap();
    let out = receive(&bad2, &far);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(seg.to_str().unwrap()), "{}", out.stderr);
    assert!(!out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert_eq!(far_state(&far), after_1);

    // a half-written shipment: given directly, and alone in a media directory
    let usb2 = t.path().join("usb2");
    let partial = usb2.join(format::partial_name(&id, 2));
    copy_dir(&s2, &partial);
    std::fs::remove_file(partial.join("SHA256SUMS")).unwrap();
    let out = receive(&partial, &far);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("incomplete shipment"), "{}", out.stderr);
    let out = receive(&usb2, &far);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("incomplete shipment"), "{}", out.stderr);
    assert_eq!(far_state(&far), after_1);

    // the media directory (1, 2, 3 and a stale partial): 1 skipped, 2 and 3 received in order
    copy_dir(&partial, &media.join(format::partial_name(&id, 4)));
    let out = receive(&media, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("skipped") && out.stdout.contains("shipment 1 was received before"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ignored"), "{}", out.stdout);
    let r2 = out.stdout.find("received shipment 2").expect("2 received");
    let r3 = out.stdout.find("received shipment 3").expect("3 received");
    assert!(r2 < r3);
    verify_ok(&far);
    assert_eq!(entries(&far), entries(&j));
    // and the checksum list is what coreutils reads
    let ok = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&s3)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Shipping twice with nothing new creates nothing; a journal made before identities existed
/// gets one on first ship; `--include-active` without a running capture seals the active
/// segment (and ships it); an empty shipment folder never appears.
#[test]
fn nothing_new_creates_nothing_and_include_active_seals_without_a_capture() {
    let t = tempfile::tempdir().unwrap();
    let (j, media, far) = (
        t.path().join("j"),
        t.path().join("usb"),
        t.path().join("far"),
    );
    std::fs::create_dir(&media).unwrap();
    create(&j);
    // an old journal: no identity
    let jp = j.join("journal.json");
    let mut jm: serde_json::Value = serde_json::from_slice(&file_bytes(&jp)).unwrap();
    jm.as_object_mut().unwrap().remove("journal_id");
    std::fs::write(&jp, serde_json::to_vec_pretty(&jm).unwrap()).unwrap();

    let mut w = ShardWriter::open(&j, "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 100, 10);
    for o in 101..=250 {
        w.command(o, command(o)).unwrap();
    }
    w.sync().unwrap();
    drop(w); // a capture that stopped without sealing: the last segment stays active
    let active = segment::list(&j.join("shard-000"))
        .unwrap()
        .last()
        .unwrap()
        .1
        .clone();

    let (s1, v1) = ship_one(&j, &media, &[]);
    assert_eq!(v1["assigned_id"], true, "{v1}");
    let id = v1["journal_id"].as_str().unwrap().to_string();
    assert!(String::from_utf8(file_bytes(&jp)).unwrap().contains(&id));
    assert!(
        !s1.join("shard-000")
            .join(active.file_name().unwrap())
            .exists()
    );

    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(&media)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let shipped = file_bytes(&j.join("shipped.json"));
    for _ in 0..2 {
        let out = shake_run(&["ship", s(&j), "--to", s(&media)]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("nothing new"), "{}", out.stdout);
        assert_eq!(listing(), before, "nothing created");
        assert_eq!(file_bytes(&j.join("shipped.json")), shipped);
    }

    let (s2, v2) = ship_one(&j, &media, &["--include-active"]);
    assert_eq!(v2["sealed"][0]["by"], "ship", "{v2}");
    assert_eq!(v2["sealed"][0]["sealed"], 1, "{v2}");
    assert_eq!(v2["shipment"]["segments"], 1, "{v2}");
    assert!(
        s2.join("shard-000")
            .join(active.file_name().unwrap())
            .exists()
    );
    let out = ship(&j, &media, &["--include-active"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"shipment\": null"), "{}", out.stdout);

    let out = receive(&media, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    verify_ok(&far);
    assert_eq!(entries(&far), entries(&j));
    assert_eq!(entries(&far), sealed_entries(&j));

    // receiving into a capture's own journal would mix histories: refused
    let out = receive(&s2, &j);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("not made by shake receive"),
        "{}",
        out.stderr
    );

    // a media directory that is not there is an error, not a new directory
    let out = ship(&j, &t.path().join("not-mounted"), &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is the media mounted"),
        "{}",
        out.stderr
    );
    assert!(!t.path().join("not-mounted").exists());
}

const FIXTURE_ID: &str = "5ea1ed0f5ea1ed0f5ea1ed0f5ea1ed0f";
const FIXTURE_T: u64 = 1_735_689_700_000;

fn fixture_dir() -> PathBuf {
    crate::support::root().join("fixtures/shipment")
}

/// Ships the golden journal (`fixtures/journal/v1-two-shards`, given a fixed identity) at a
/// fixed time into `media`.
fn write_shipment_fixture(media: &Path) {
    let t = tempfile::tempdir().unwrap();
    let j = t.path().join("j");
    copy_dir(
        &crate::support::root().join("fixtures/journal/v1-two-shards"),
        &j,
    );
    let jp = j.join("journal.json");
    let mut jm: serde_json::Value = serde_json::from_slice(&file_bytes(&jp)).unwrap();
    jm["journal_id"] = FIXTURE_ID.into();
    std::fs::write(&jp, serde_json::to_vec_pretty(&jm).unwrap()).unwrap();
    std::fs::create_dir_all(media).unwrap();
    let opts = shake::ship::ShipOptions {
        now_ms: Some(FIXTURE_T),
        ..Default::default()
    };
    shake::ship::ship(&j, media, &opts).unwrap();
}

/// The golden shipment (format version 1) is read and received by this build, forever. With
/// `SHAKE_BLESS=1` it is regenerated first.
#[test]
fn golden_shipment_reads() {
    let dir = fixture_dir();
    if std::env::var_os("SHAKE_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(dir.join(format::folder_name(FIXTURE_ID, 1)));
        write_shipment_fixture(&dir);
    }
    let folder = dir.join(format::folder_name(FIXTURE_ID, 1));
    let sh = Shipment::parse(&file_bytes(&folder.join("shipment.json"))).unwrap();
    assert_eq!(sh.format_version, 1);
    assert_eq!(sh.journal_id, FIXTURE_ID);
    assert_eq!(sh.sequence, 1);
    assert_eq!(sh.created_unix_ms, FIXTURE_T);
    assert_eq!(sh.previous, None);
    assert_eq!(
        sh.shards
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["shard-000", "shard-001"]
    );
    assert_eq!(
        sh.shards[0].segments.len(),
        2,
        "the open segment is not shipped"
    );
    assert_eq!(sh.shards[1].segments.len(), 1);
    assert!(sh.shards.iter().all(|x| x.follows.is_none()));
    let sums = format::parse_sums(&file_bytes(&folder.join("SHA256SUMS"))).unwrap();
    assert_eq!(sums.len(), 1 + 1 + 2 + 3, "{sums:?}");

    let t = tempfile::tempdir().unwrap();
    let far = t.path().join("far");
    let out = receive(&folder, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    verify_ok(&far);
    // the segments are byte for byte the golden journal's sealed ones
    for shard in ["shard-000", "shard-001"] {
        for seg in &sh.shards[if shard == "shard-000" { 0 } else { 1 }].segments {
            assert_eq!(
                file_bytes(&far.join(shard).join(&seg.file)),
                file_bytes(
                    &crate::support::root()
                        .join("fixtures/journal/v1-two-shards")
                        .join(shard)
                        .join(&seg.file)
                )
            );
        }
    }
    // regenerating gives the same shipment, but for the version of shake that wrote it
    let t2 = tempfile::tempdir().unwrap();
    write_shipment_fixture(t2.path());
    let again = t2.path().join(format::folder_name(FIXTURE_ID, 1));
    let mut sh2 = Shipment::parse(&file_bytes(&again.join("shipment.json"))).unwrap();
    sh2.shake_version = sh.shake_version.clone();
    assert_eq!(sh2, sh);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes from media never panic the parsers.
    #[test]
    fn shipment_parsers_never_panic_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Shipment::parse(&b);
        let _ = format::parse_sums(&b);
    }

    /// Nor do damaged copies of a real `shipment.json` (bytes flipped, truncated), and whatever
    /// they accept still satisfies the rules a receiver relies on.
    #[test]
    fn damaged_shipment_json_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let good = file_bytes(&fixture_dir().join(format::folder_name(FIXTURE_ID, 1)).join("shipment.json"));
        let mut b = good.clone();
        for (i, x) in flips {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        b.truncate(cut.index(b.len() + 1));
        if let Ok(sh) = Shipment::parse(&b) {
            prop_assert!(format::parse_folder_name(&sh.folder_name()).is_some());
            for x in &sh.shards {
                prop_assert!(format::valid_shard_name(&x.name));
            }
        }
    }
}

/// A receive cut off after some segments of a shipment were added (renamed into place and
/// listed in `shard.json`) but before `received.json` recorded it: the journal still verifies,
/// and running receive again completes the shipment, recognising what is already there.
#[test]
fn an_interrupted_receive_is_completed_by_running_it_again() {
    let t = tempfile::tempdir().unwrap();
    let (j, media, _) = three_shipments(t.path());
    let far = t.path().join("far");
    assert_eq!(receive(&media, &far).code, 0);
    append_and_seal(&j, 401, 1400);
    let (s2, _) = ship_one(&j, &media, &[]);
    let sh = Shipment::parse(&file_bytes(&s2.join("shipment.json"))).unwrap();
    assert!(sh.shards[0].segments.len() >= 2, "{sh:?}");
    // what receive does for the first segment, then "power cut"
    let seg = &sh.shards[0].segments[0];
    let sd = far.join("shard-000");
    std::fs::copy(s2.join("shard-000").join(&seg.file), sd.join(&seg.file)).unwrap();
    let shipped: shake::journal::manifest::ShardManifest =
        serde_json::from_slice(&file_bytes(&s2.join("shard-000/shard.json"))).unwrap();
    let mut m = shake::journal::manifest::read_shard(&sd).unwrap();
    m.sealed.push(
        shipped
            .sealed
            .iter()
            .find(|x| x.file == seg.file)
            .unwrap()
            .clone(),
    );
    shake::journal::manifest::write_json_atomic(&sd.join("shard.json"), &m).unwrap();
    verify_ok(&far);

    let out = receive(&s2, &far);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("1 segments were already added by an interrupted receive"),
        "{}",
        out.stdout
    );
    verify_ok(&far);
    let far_entries = entries(&far);
    assert_eq!(far_entries[..], entries(&j)[..far_entries.len()]);
    assert_eq!(
        far_entries.last().unwrap().position,
        sh.shards[0].segments.last().unwrap().last
    );
}
