//! `shake inspect FILE.rdb` on files written by a real server.

use crate::support::{Server, shake_run};
use serde_json::Value;

fn saved_rdb(s: &Server) -> std::path::PathBuf {
    s.client().cmd(&["SAVE"]);
    s.dir.path().join("dump.rdb")
}

#[test]
fn stats_and_jsonl_match_what_was_written() {
    let s = Server::start("7.0");
    let mut c = s.client();
    c.cmd(&["SET", "s", "hello"]);
    c.cmd(&["SET", "t", "v", "PX", "600000"]);
    c.cmd(&["RPUSH", "l", "a", "b"]);
    c.cmd(&["SADD", "set", "x"]);
    c.cmd(&["ZADD", "z", "1.5", "m", "inf", "n"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["XADD", "x", "1-1", "k", "v"]);
    c.cmd(&["SELECT", "2"]);
    c.cmd(&["SET", "other", "db"]);
    let rdb = saved_rdb(&s);
    let path = rdb.to_str().unwrap();
    let out = shake_run(&["inspect", path, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(j["keys"], 8);
    assert_eq!(j["rdb_version"], 10);
    assert_eq!(j["checksum"], "verified");
    assert_eq!(j["per_db"]["0"]["string"]["keys"], 2);
    assert_eq!(j["per_db"]["0"]["string"]["with_expiry"], 1);
    assert_eq!(j["per_db"]["2"]["string"]["keys"], 1);
    for t in ["list", "set", "zset", "hash", "stream"] {
        assert_eq!(j["per_db"]["0"][t]["keys"], 1, "{t}");
    }
    let out = shake_run(&["inspect", path, "--format", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let keys: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(keys.len(), 8);
    let find = |k: &str| keys.iter().find(|v| v["key"] == k).unwrap().clone();
    assert_eq!(find("s")["value"], "hello");
    assert_eq!(find("l")["value"], serde_json::json!(["a", "b"]));
    assert_eq!(find("z")["value"]["m"], 1.5);
    assert_eq!(find("z")["value"]["n"], "inf");
    assert_eq!(find("other")["db"], 2);
    assert!(find("t")["expire_ms"].as_i64().unwrap() > 0);
    let out = shake_run(&["inspect", path]);
    assert!(out.stdout.contains("checksum verified"), "{}", out.stdout);
}

#[test]
fn bad_files_exit_1_with_the_offset() {
    let s = Server::start("7.0");
    s.client().cmd(&["SET", "key", "value"]);
    let rdb = saved_rdb(&s);
    let bytes = std::fs::read(&rdb).unwrap();
    let cut = s.dir.path().join("cut.rdb");
    std::fs::write(&cut, &bytes[..bytes.len() - 12]).unwrap();
    let out = shake_run(&["inspect", cut.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cut.rdb") && out.stderr.contains("offset"),
        "{}",
        out.stderr
    );
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0xff;
    let bad = s.dir.path().join("flipped.rdb");
    std::fs::write(&bad, &flipped).unwrap();
    let out = shake_run(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.to_lowercase().contains("checksum"),
        "{}",
        out.stderr
    );
    let out = shake_run(&["inspect", s.dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot scan the journal"),
        "a directory that is not a journal: {}",
        out.stderr
    );
}
