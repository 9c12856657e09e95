//! `shake filter` on journals captured from a real server.

use crate::support::{Server, shake_run};
use serde_json::Value;
use shake::journal::{Record, RecoveryMode, ShardReader};
use std::time::Duration;

#[test]
fn filtered_journal_holds_exactly_the_selection() {
    let s = Server::start("7.0");
    let mut c = s.client();
    for i in 0..20 {
        c.cmd(&["SET", &format!("user:{i}"), "u"]);
        c.cmd(&["SET", &format!("session:{i}"), "s"]);
    }
    c.cmd(&["HSET", "user:h", "f", "v"]);
    c.cmd(&["SELECT", "2"]);
    c.cmd(&["SET", "user:db2", "x"]);
    c.cmd(&["SELECT", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = crate::support::LiveCapture::start(&s.url(), &j, &[], &s, 1);
    c.cmd(&["INCR", "user:n"]);
    c.cmd(&["INCR", "session:n"]);
    c.cmd(&["RENAME", "user:1", "session:moved"]); // mixed: dropped and counted
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "user:n"]);
    c.cmd(&["INCR", "session:n"]);
    c.cmd(&["EXEC"]);
    // (a one-command MULTI is propagated without MULTI/EXEC since 7.0: use two)
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "session:n"]);
    c.cmd(&["INCR", "session:m"]);
    c.cmd(&["EXEC"]);
    c.cmd(&["FLUSHALL"]);
    std::thread::sleep(Duration::from_millis(1500));
    child.stop();

    let out_dir = dir.path().join("f");
    let out = shake_run(&[
        "filter",
        j.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--keys",
        "user:*",
        "--db",
        "0",
        "--exclude-commands",
        "FLUSHALL",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rep: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rep["verify_ok"], true);
    let shard = &rep["shards"]["shard-000"];
    assert_eq!(shard["keys_kept"], 21, "{rep}");
    assert_eq!(shard["commands_mixed"], 1, "{rep}");
    assert_eq!(shard["transactions_dropped"], 1);
    let r = ShardReader::open(&out_dir, "shard-000", RecoveryMode::Refuse).unwrap();
    let mut incr_in_tx = 0;
    for e in r.entries() {
        let e = e.unwrap();
        match &e.record {
            Record::Key(k) => assert!(
                k.key.starts_with(b"user:") && k.db == 0,
                "{:?}",
                String::from_utf8_lossy(&k.key)
            ),
            Record::Command(cmd) => {
                assert!(cmd.argv[1].starts_with(b"user:"), "{:?}", cmd.argv);
                assert!(!cmd.argv[0].eq_ignore_ascii_case(b"FLUSHALL"));
            }
            Record::Transaction(t) => {
                assert_eq!(
                    t.commands.len(),
                    1,
                    "only the selected command stays in the group"
                );
                incr_in_tx += 1;
            }
            Record::SnapshotEnd(end) => assert_eq!(end.key_count, 21),
            _ => {}
        }
    }
    assert_eq!(incr_in_tx, 1);
    assert_eq!(shake_run(&["verify", out_dir.to_str().unwrap()]).code, 0);
    let manifest = shake::journal::read_journal(&out_dir).unwrap();
    assert!(
        manifest.source.description.contains("filtered")
            && manifest.source.description.contains("user:*")
    );

    // --map-db and --until-offset.
    let mapped = dir.path().join("m");
    let out = shake_run(&[
        "filter",
        j.to_str().unwrap(),
        "--out",
        mapped.to_str().unwrap(),
        "--db",
        "2",
        "--map-db",
        "2:0",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = ShardReader::open(&mapped, "shard-000", RecoveryMode::Refuse).unwrap();
    let keys: Vec<(u32, Vec<u8>)> = r
        .entries()
        .filter_map(|e| match e.unwrap().record {
            Record::Key(k) => Some((k.db, k.key)),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec![(0, b"user:db2".to_vec())]);
    let cut = dir.path().join("c");
    let out = shake_run(&[
        "filter",
        j.to_str().unwrap(),
        "--out",
        cut.to_str().unwrap(),
        "--until-offset",
        "0",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = ShardReader::open(&cut, "shard-000", RecoveryMode::Refuse).unwrap();
    assert!(r.entries().all(|e| !matches!(
        e.unwrap().record,
        Record::Command(_) | Record::Transaction(_)
    )));
    // An existing output is refused.
    let out = shake_run(&[
        "filter",
        j.to_str().unwrap(),
        "--out",
        cut.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}

/// The filtered journal replayed into a fresh server holds exactly the selected keys, with the
/// values the source has.
#[test]
fn filtered_journal_replays_to_exactly_the_selected_keys() {
    let s = Server::start("7.0");
    let mut c = s.client();
    for i in 0..30 {
        c.cmd(&["SET", &format!("keep:{i}"), &i.to_string()]);
        c.cmd(&["SET", &format!("drop:{i}"), "x"]);
    }
    c.cmd(&["RPUSH", "keep:list", "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&s.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let f = dir.path().join("f");
    assert_eq!(
        shake_run(&[
            "filter",
            j.to_str().unwrap(),
            "--out",
            f.to_str().unwrap(),
            "--keys",
            "keep:*"
        ])
        .code,
        0
    );
    let dest = Server::start("7.0");
    let out = shake_run(&[
        "replay",
        f.to_str().unwrap(),
        "--target",
        &dest.url(),
        "--progress",
        "none",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Same digest as the source once the unselected keys are gone from it.
    for i in 0..30 {
        c.cmd(&["DEL", &format!("drop:{i}")]);
    }
    let d = dest.client().cmd(&["DEBUG", "DIGEST"]);
    assert_eq!(c.cmd(&["DEBUG", "DIGEST"]), d);
    assert_eq!(dest.client().cmd(&["DBSIZE"]).as_int(), Some(31));
}
