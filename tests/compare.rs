//! `shake compare` against real servers: every kind of difference planted in a destination
//! (standalone and 3-master clusters), the windowed path for a big hash, TTL tolerance, no
//! difference after a correct replay (URL source and journal source through the scratch server,
//! both modes), sampling, and a cross-version source whose payloads must be decoded.

use crate::support::{Cluster, Output, Server, capture_run, populate_every_type, shake_run};
use serde_json::Value;
use std::path::Path;

/// `shake compare --source SRC --target TGT --progress none EXTRA…`.
fn compare(source: &str, target: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "compare",
        "--source",
        source,
        "--target",
        target,
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    shake_run(&args)
}

/// The same, with `--format json`, parsed.
fn compare_json(source: &str, target: &str, extra: &[&str]) -> (i32, Value, Output) {
    let mut args = extra.to_vec();
    args.extend(["--format", "json"]);
    let out = compare(source, target, &args);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "compare output is not JSON ({e}), exit {}:\n{}\n{}",
            out.code, out.stdout, out.stderr
        )
    });
    (out.code, doc, out)
}

/// The `detail` of the report's difference for `key`.
fn detail(doc: &Value, key: &str) -> String {
    doc["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no diff for {key}: {doc}"))["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

fn counts(doc: &Value) -> [u64; 5] {
    ["missing", "extra", "type", "value", "ttl"]
        .map(|b| doc["counts"][b].as_u64().unwrap_or(u64::MAX))
}

/// A writer to one side: a standalone client, or a cluster (commands sent to every master
/// until one accepts the key).
trait Side {
    fn cmd(&mut self, args: &[String]);
}

impl Side for crate::support::Client {
    fn cmd(&mut self, args: &[String]) {
        crate::support::Client::cmd(self, args);
    }
}

struct ClusterWriter<'a>(&'a Cluster);

impl Side for ClusterWriter<'_> {
    fn cmd(&mut self, args: &[String]) {
        for node in self.0.masters() {
            let reply = node
                .client()
                .try_cmd(args)
                .expect("cluster write failed (I/O)");
            match reply.as_error() {
                Some(e) if e.starts_with(b"MOVED") => continue,
                Some(e) => panic!("{:?} failed: {}", args[0], String::from_utf8_lossy(e)),
                None => return,
            }
        }
        panic!("no master accepted {:?}", args.get(1));
    }
}

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A big hash of `fields` fields, written in chunks.
fn big_hash(w: &mut dyn Side, key: &str, fields: usize) {
    for chunk in (0..fields).collect::<Vec<_>>().chunks(1000) {
        let mut args = s(&["HSET", key]);
        for i in chunk {
            args.push(format!("field-{i}"));
            args.push(format!("value-{i}"));
        }
        w.cmd(&args);
    }
}

/// The same data on both sides, then one difference of each kind on the target.
fn plant(src: &mut dyn Side, tgt: &mut dyn Side) {
    let sides: [&mut dyn Side; 2] = [&mut *src, &mut *tgt];
    for w in sides {
        w.cmd(&s(&["SET", "str", "hello"]));
        w.cmd(&s(&["RPUSH", "list", "a", "b", "c"]));
        w.cmd(&s(&["SADD", "set", "x", "y"]));
        w.cmd(&s(&["ZADD", "zset", "1", "a", "2.5", "b"]));
        w.cmd(&s(&["SET", "ttl-far", "v", "PX", "3600000"]));
        w.cmd(&s(&["HSET", "small-hash", "a", "1", "b", "2"]));
        big_hash(w, "big-hash", 50_000);
    }
    // Within the 2 s tolerance: not a difference.
    src.cmd(&s(&["SET", "ttl-near", "v", "PX", "3600000"]));
    tgt.cmd(&s(&["SET", "ttl-near", "v", "PX", "3599500"]));
    // Missing on the target but expiring within the tolerance: not a difference.
    src.cmd(&s(&["SET", "expiring", "v", "PX", "1500"]));
    // The differences.
    src.cmd(&s(&["SET", "only-on-source", "v"]));
    tgt.cmd(&s(&["SET", "only-on-target", "v"]));
    tgt.cmd(&s(&["DEL", "list"]));
    tgt.cmd(&s(&["SET", "list", "now a string"]));
    tgt.cmd(&s(&["HSET", "big-hash", "field-31234", "changed"]));
    tgt.cmd(&s(&["PEXPIRE", "ttl-far", "3000000"]));
}

/// Checks the planted differences in a compare report.
fn assert_planted(code: i32, doc: &Value, out: &Output) {
    assert_eq!(code, 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(counts(doc), [1, 1, 1, 1, 1], "{}", out.stdout);
    let diffs = doc["diffs"].as_array().unwrap();
    let find = |bucket: &str| {
        diffs
            .iter()
            .find(|d| d["bucket"] == bucket)
            .unwrap_or_else(|| panic!("no {bucket} diff in {}", out.stdout))
    };
    assert_eq!(find("missing")["key"], "\"only-on-source\"");
    assert_eq!(find("extra")["key"], "\"only-on-target\"");
    assert_eq!(find("type")["key"], "\"list\"");
    assert_eq!(find("type")["detail"], "list vs string");
    assert_eq!(find("ttl")["key"], "\"ttl-far\"");
    let value = find("value");
    assert_eq!(value["key"], "\"big-hash\"");
    assert!(
        value["detail"]
            .as_str()
            .unwrap()
            .contains("field \"field-31234\": \"value-31234\" vs \"changed\""),
        "{}",
        out.stdout
    );
    // The 50 000-field hash went the windowed path (threshold 256 KiB).
    assert!(
        doc["value_checks"]["windowed"].as_u64().unwrap() >= 1,
        "{}",
        out.stdout
    );
    assert_eq!(doc["mode"], "full");
    assert_eq!(doc["extras_checked"], true);
    assert!(doc["keys_compared"].as_u64().unwrap() >= 8);
    assert!(doc["duration_ms"].is_u64());
    for d in diffs {
        assert!(
            d["key"] != "\"ttl-near\"" && d["key"] != "\"expiring\"",
            "{d}"
        );
    }
    assert_eq!(doc["skipped"]["expiring"], 1, "{}", out.stdout);
}

/// Standalone: each kind of difference, in its bucket, with per-key detail; the table names
/// them too; quick mode sees all but the value difference. Replay markers on the target (a
/// replay running beside) are counted apart, not as extras.
#[test]
fn standalone_finds_each_kind_of_difference() {
    let (a, b) = (Server::start("7.0"), Server::start("7.0"));
    plant(&mut a.client(), &mut b.client());
    let mut bc = b.client();
    bc.cmd(&["SET", "shake-replay:1:shard-000", "1:5.0"]);
    bc.cmd(&["HSET", "shake-replay:{0}:1:shard-000", "2", "1:5.0 4"]);
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &["--chunk-threshold", "256KiB"]);
    assert_planted(code, &doc, &out);
    assert_eq!(doc["replay_markers"], 2, "{}", out.stdout);

    let out = compare(&a.url(), &b.url(), &["--chunk-threshold", "256KiB"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stdout.contains("differences 5"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("replay markers on the target (not data, left out): 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("db 0 \"big-hash\"  field \"field-31234\""),
        "{}",
        out.stdout
    );

    let (code, doc, out) = compare_json(&a.url(), &b.url(), &["--mode", "quick"]);
    assert_eq!(code, 3);
    assert_eq!(counts(&doc), [1, 1, 1, 0, 1], "{}", out.stdout);
    assert_eq!(doc["mode"], "quick");
}

/// Two 3-master clusters: the same differences, found by one task per master with reads
/// routed by slot.
#[test]
fn cluster_finds_each_kind_of_difference() {
    let (a, b) = (Cluster::start("7.0", 3, 0), Cluster::start("7.0", 3, 0));
    plant(&mut ClusterWriter(&a), &mut ClusterWriter(&b));
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &["--chunk-threshold", "256KiB"]);
    assert_planted(code, &doc, &out);
}

/// A populated source captured, replayed onto a fresh target: no difference, with the live
/// source and with the journal (scratch server), in both modes.
#[test]
fn none_after_replay_url_and_journal_sources() {
    let src = Server::start("7.0");
    let mut c = src.client();
    populate_every_type(&mut c);
    big_hash(&mut c, "big-hash", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = capture_run(&src.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "capture: {}", out.stderr);
    let tgt = Server::start("7.0");
    replay(&j, &tgt.url());

    for mode in ["quick", "full"] {
        let (code, doc, out) = compare_json(
            &src.url(),
            &tgt.url(),
            &["--mode", mode, "--chunk-threshold", "256KiB"],
        );
        assert_eq!(code, 0, "url {mode}: {}\n{}", out.stdout, out.stderr);
        assert_eq!(doc["differences"], 0);
        assert!(
            doc["keys_compared"].as_u64().unwrap() >= 15,
            "{}",
            out.stdout
        );
        let (code, doc, out) = compare_json(
            j.to_str().unwrap(),
            &tgt.url(),
            &["--mode", mode, "--chunk-threshold", "256KiB"],
        );
        assert_eq!(code, 0, "journal {mode}: {}\n{}", out.stdout, out.stderr);
        assert_eq!(doc["differences"], 0);
        assert!(doc["source"].as_str().unwrap().starts_with("journal "));
        if mode == "full" {
            let v = &doc["value_checks"];
            assert!(v["windowed"].as_u64().unwrap() >= 1, "{}", out.stdout);
            assert!(v["dump_bytes"].as_u64().unwrap() >= 1, "{}", out.stdout);
        }
    }

    // The journal says more than the target holds: a key deleted on the target is missing.
    let mut t = tgt.client();
    t.cmd(&["SELECT", "5"]);
    t.cmd(&["DEL", "in-db-5"]);
    let (code, doc, out) = compare_json(j.to_str().unwrap(), &tgt.url(), &["--mode", "quick"]);
    assert_eq!(code, 3, "{}", out.stderr);
    assert_eq!(counts(&doc), [1, 0, 0, 0, 0], "{}", out.stdout);
    assert_eq!(doc["diffs"][0]["db"], 5);

    // No scratch server binary: a clear error, exit 1.
    let out = compare(
        j.to_str().unwrap(),
        &tgt.url(),
        &["--scratch-server", "/nonexistent/redis-server"],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--scratch-server"), "{}", out.stderr);
}

fn replay(j: &Path, target: &str) {
    let out = shake_run(&[
        "replay",
        j.to_str().unwrap(),
        "--target",
        target,
        "--progress",
        "none",
        "--no-checkpoint",
    ]);
    assert_eq!(out.code, 0, "replay: {}\n{}", out.stdout, out.stderr);
}

/// `--sample N`: N keys drawn, the size reported, extras not checked (and said so).
#[test]
fn sample_reports_its_size() {
    let (a, b) = (Server::start("7.0"), Server::start("7.0"));
    for w in [&mut a.client(), &mut b.client()] {
        for chunk in (0..3000).collect::<Vec<_>>().chunks(500) {
            let mut args = vec!["MSET".to_string()];
            for i in chunk {
                args.push(format!("k{i}"));
                args.push(format!("v{i}"));
            }
            w.cmd(&args);
        }
    }
    b.client().cmd(&["SET", "extra", "not looked for"]);
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &["--sample", "100"]);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(doc["sample"]["requested"], 100);
    assert_eq!(doc["sample"]["size"], 100);
    assert_eq!(doc["keys_compared"], 100);
    assert_eq!(doc["extras_checked"], false);
    let out = compare(&a.url(), &b.url(), &["--sample", "100"]);
    assert!(
        out.stdout.contains("random sample of 100"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("extras NOT checked"), "{}", out.stdout);

    // A glob restricts the sample (reservoir over SCAN MATCH); a target missing everything.
    let c = Server::start("7.0");
    let (code, doc, out) = compare_json(&a.url(), &c.url(), &["--sample", "20", "--keys", "k1*"]);
    assert_eq!(code, 3, "{}", out.stderr);
    assert_eq!(doc["sample"]["size"], 20);
    assert_eq!(counts(&doc)[0], 20);
    for d in doc["diffs"].as_array().unwrap() {
        assert!(d["key"].as_str().unwrap().starts_with("\"k1"), "{d}");
    }
}

/// A 6.2 source replayed onto 7.0: RDB versions (and encodings) differ, so values are compared
/// decoded, and none differs.
#[test]
fn cross_version_compares_decoded_values() {
    let src = Server::start("6.2");
    populate_every_type(&mut src.client());
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = capture_run(&src.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "capture: {}", out.stderr);
    let tgt = Server::start("7.0");
    replay(&j, &tgt.url());
    let (code, doc, out) = compare_json(&src.url(), &tgt.url(), &[]);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    let v = &doc["value_checks"];
    assert!(v["decoded"].as_u64().unwrap() >= 10, "{}", out.stdout);
    assert_eq!(v["dump_bytes"], 0, "{}", out.stdout);
}

/// Big keys of every type, above a low `--chunk-threshold`: compared window by window; equal
/// ones are equal, and a difference planted deep inside each is found and located.
#[test]
fn windowed_path_covers_every_type() {
    let (a, b) = (Server::start("7.0"), Server::start("7.0"));
    for c in [&mut a.client(), &mut b.client()] {
        let n = 3000;
        let mut list = s(&["RPUSH", "big-list"]);
        let mut set = s(&["SADD", "big-set"]);
        let mut zset = s(&["ZADD", "big-zset"]);
        for i in 0..n {
            list.push(format!("item-{i}"));
            set.push(format!("member-{i}"));
            zset.push(format!("{i}.5"));
            zset.push(format!("member-{i}"));
        }
        c.cmd(&list);
        c.cmd(&set);
        c.cmd(&zset);
        for i in 1..=n {
            c.cmd(&[
                "XADD",
                "big-stream",
                &format!("{i}-1"),
                "field",
                &format!("v{i}"),
            ]);
        }
        c.cmd(&["SET", "big-string", &"s".repeat(200_000)]);
    }
    let flags = ["--chunk-threshold", "1KiB", "--window", "100"];
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &flags);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(doc["value_checks"]["windowed"], 5, "{}", out.stdout);

    let mut t = b.client();
    t.cmd(&["LSET", "big-list", "2500", "changed"]);
    t.cmd(&["SREM", "big-set", "member-2222"]);
    t.cmd(&["SADD", "big-set", "intruder"]);
    t.cmd(&["ZADD", "big-zset", "7", "member-1777"]);
    t.cmd(&["XDEL", "big-stream", "2900-1"]);
    t.cmd(&["XADD", "big-stream", "3001-1", "field", "new"]);
    t.cmd(&["SETRANGE", "big-string", "150000", "X"]);
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &flags);
    assert_eq!(code, 3, "{}", out.stderr);
    assert_eq!(counts(&doc), [0, 0, 0, 5, 0], "{}", out.stdout);
    assert_eq!(
        detail(&doc, "big-list"),
        "index 2500: \"item-2500\" vs \"changed\""
    );
    assert_eq!(
        detail(&doc, "big-set"),
        "member \"member-2222\" only on source"
    );
    assert_eq!(
        detail(&doc, "big-zset"),
        "member \"member-1777\": score 1777.5 vs 7"
    );
    assert_eq!(detail(&doc, "big-stream"), "entry 2900-1 vs 2901-1");
    assert_eq!(detail(&doc, "big-string"), "byte 150000 differs");
}

/// The windowed path also compares a stream's consumer groups (pending counts, consumers,
/// pending entries) and a hash's field expiries: equal ones pass, a planted difference in each
/// is found and named.
#[test]
fn windowed_path_compares_stream_groups_and_field_ttls() {
    let (a, b) = (Server::start("7.4"), Server::start("7.4"));
    for c in [&mut a.client(), &mut b.client()] {
        let mut hash = s(&["HSET", "big-hash"]);
        for i in 0..3000 {
            c.cmd(&["XADD", "big-stream", &format!("{}-1", i + 1), "f", "v"]);
            hash.push(format!("field-{i}"));
            hash.push(format!("value-{i}"));
        }
        c.cmd(&hash);
        c.cmd(&s(&[
            "HPEXPIREAT",
            "big-hash",
            "4102444800000",
            "FIELDS",
            "2",
            "field-10",
            "field-2500",
        ]));
        c.cmd(&s(&["XGROUP", "CREATE", "big-stream", "g1", "0"]));
        c.cmd(&s(&["XGROUP", "CREATE", "big-stream", "g2", "$"]));
        c.cmd(&s(&[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "500",
            "STREAMS",
            "big-stream",
            ">",
        ]));
        c.cmd(&s(&[
            "XREADGROUP",
            "GROUP",
            "g1",
            "bob",
            "COUNT",
            "300",
            "STREAMS",
            "big-stream",
            ">",
        ]));
        c.cmd(&s(&["XACK", "big-stream", "g1", "7-1", "8-1"]));
    }
    let flags = ["--chunk-threshold", "1KiB", "--window", "100"];
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &flags);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(doc["value_checks"]["windowed"], 2, "{}", out.stdout);

    let mut t = b.client();
    t.cmd(&s(&["XACK", "big-stream", "g1", "650-1"]));
    t.cmd(&s(&[
        "HPEXPIREAT",
        "big-hash",
        "4102448400000",
        "FIELDS",
        "1",
        "field-2500",
    ]));
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &flags);
    assert_eq!(code, 3, "{}", out.stderr);
    assert_eq!(counts(&doc), [0, 0, 0, 2, 0], "{}", out.stdout);
    assert_eq!(
        detail(&doc, "big-stream"),
        "group \"g1\" pending: 798 vs 797"
    );
    assert_eq!(
        detail(&doc, "big-hash"),
        "field \"field-2500\": expires at 4102444800000 ms vs expires at 4102448400000 ms"
    );

    // the same pending count and entries, one of them owned by another consumer
    let mut t = b.client();
    t.cmd(&s(&[
        "XCLAIM",
        "big-stream",
        "g1",
        "bob",
        "0",
        "650-1",
        "FORCE",
        "JUSTID",
    ]));
    t.cmd(&s(&[
        "HPEXPIREAT",
        "big-hash",
        "4102444800000",
        "FIELDS",
        "1",
        "field-2500",
    ]));
    let (code, _, out) = compare_json(&a.url(), &b.url(), &flags);
    assert_eq!(code, 0, "back to equal: {}", out.stdout);
    t.cmd(&s(&[
        "XCLAIM",
        "big-stream",
        "g1",
        "alice",
        "0",
        "600-1",
        "JUSTID",
    ]));
    let (code, doc, out) = compare_json(&a.url(), &b.url(), &flags);
    assert_eq!(code, 3, "{}", out.stderr);
    assert_eq!(counts(&doc), [0, 0, 0, 1, 0], "{}", out.stdout);
    assert_eq!(
        detail(&doc, "big-stream"),
        "group \"g1\": consumer \"alice\": pending 498 vs 499"
    );
}

/// A cluster journal replayed into the one standalone scratch server (every shard's keys),
/// compared with a standalone target the journal was replayed onto: no difference.
#[test]
fn cluster_journal_through_scratch_server() {
    let src = Cluster::start("7.0", 3, 0);
    let mut w = ClusterWriter(&src);
    for i in 0..300 {
        w.cmd(&s(&["SET", &format!("key-{i}"), &format!("value-{i}")]));
    }
    big_hash(&mut w, "big-hash", 5000);
    w.cmd(&s(&["SET", "with-ttl", "v", "PX", "3600000"]));
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = capture_run(&src.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "capture: {}", out.stderr);
    let tgt = Server::start("7.0");
    replay(&j, &tgt.url());
    let (code, doc, out) = compare_json(j.to_str().unwrap(), &tgt.url(), &[]);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(doc["keys_compared"], 302, "{}", out.stdout);
    // And against the live cluster itself, every master scanned in parallel.
    let (code, doc, out) = compare_json(&src.url(), &tgt.url(), &["--mode", "quick"]);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(doc["keys_compared"], 302, "{}", out.stdout);
}

/// `--until-offset N` with a journal source: the state right after the command at N.
#[test]
fn journal_until_offset_is_that_state() {
    let src = Server::start("7.0");
    src.client().cmd(&["SET", "before", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let cap = crate::support::LiveCapture::start(&src.url(), &j, &[], &src, 1);
    for _ in 0..10 {
        src.client().cmd(&["INCR", "n"]);
    }
    crate::support::wait_caught_up(&src);
    cap.stop();
    let offsets = crate::support::command_offsets(&j, b"INCR");
    assert_eq!(offsets.len(), 10);
    let tgt = Server::start("7.0");
    tgt.client().cmd(&["MSET", "before", "1", "n", "4"]);
    let at = offsets[3].to_string();
    let (code, doc, out) = compare_json(j.to_str().unwrap(), &tgt.url(), &["--until-offset", &at]);
    assert_eq!(code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(doc["keys_compared"], 2);
    let (code, doc, out) = compare_json(j.to_str().unwrap(), &tgt.url(), &[]);
    assert_eq!(code, 3, "{}", out.stderr);
    assert_eq!(counts(&doc), [0, 0, 0, 1, 0], "{}", out.stdout);
    assert_eq!(doc["diffs"][0]["key"], "\"n\"");
    // --until-offset means nothing for a URL source.
    let out = compare(&src.url(), &tgt.url(), &["--until-offset", &at]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("journal source"), "{}", out.stderr);
}

/// Passwords in URLs never reach output or errors.
#[test]
fn credentials_never_printed() {
    let a = Server::builder("7.0").password("src-s3cret").start();
    let b = Server::builder("7.0").password("tgt-s3cret").start();
    a.client().cmd(&["SET", "k", "v"]);
    let out = compare(&a.url(), &b.url(), &["--format", "json"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let out2 = compare(&a.url(), &b.url(), &[]);
    let wrong = b.url().replace("tgt-s3cret", "wrong-s3cret");
    let out3 = compare(&a.url(), &wrong, &[]);
    assert_eq!(out3.code, 1);
    for o in [&out, &out2, &out3] {
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(!all.contains("s3cret"), "{all}");
    }
    assert!(out3.stderr.contains("target"), "{}", out3.stderr);
}
