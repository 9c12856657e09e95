//! `shake inspect DIR` on journals captured from a real server with known contents.

use crate::support::{Server, shake_run};
use serde_json::Value;
use std::time::Duration;

#[test]
fn stats_commands_and_big_keys_match_the_source() {
    let s = Server::start("7.0");
    let mut c = s.client();
    for i in 0..50 {
        c.cmd(&["SET", &format!("s{i}"), "v"]);
    }
    c.cmd(&["SET", "huge", &"x".repeat(100_000)]);
    c.cmd(&["SET", "ttl", "v", "EX", "1000"]);
    c.cmd(&["RPUSH", "list", "a", "b"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["SADD", "set3", "m"]);
    c.cmd(&["SELECT", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = crate::support::LiveCapture::start(&s.url(), &j, &[], &s, 1);
    for _ in 0..7 {
        c.cmd(&["INCR", "n"]);
    }
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "n"]);
    c.cmd(&["SET", "a", "b"]);
    c.cmd(&["EXEC"]);
    c.cmd(&["FLUSHDB"]);
    std::thread::sleep(Duration::from_millis(1500));
    child.stop();
    let out = shake_run(&[
        "inspect",
        j.to_str().unwrap(),
        "--format",
        "json",
        "--big-keys",
        "2",
        "--threads",
        "2",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let shard = &v["shards"][0];
    assert_eq!(shard["snapshot"]["0"]["string"]["keys"], 52);
    assert_eq!(shard["snapshot"]["0"]["string"]["expiring"], 1);
    assert_eq!(shard["snapshot"]["0"]["list"]["keys"], 1);
    assert_eq!(shard["snapshot"]["3"]["set"]["keys"], 1);
    assert_eq!(shard["commands"]["INCR"]["count"], 8);
    assert_eq!(shard["transactions"], 1);
    assert_eq!(shard["dangerous"]["FLUSHDB"], 1);
    assert_eq!(shard["big_keys"]["string"][0]["key"], "huge");
    assert_eq!(shard["largest_transactions"][0]["commands"], 2);
    // Key listings of the newest snapshot.
    let out = shake_run(&[
        "inspect",
        j.to_str().unwrap(),
        "--keys",
        "s1*",
        "--format",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 11, "s1 and s10..s19: {}", out.stdout);
    assert!(
        listed
            .iter()
            .all(|k| k["value"] == "v" && k["kind"] == "string")
    );
    let out = shake_run(&["inspect", j.to_str().unwrap(), "--type", "list"]);
    assert!(
        out.stdout.contains("1 key(s)") && out.stdout.contains(" list"),
        "{}",
        out.stdout
    );
    let out = shake_run(&[
        "inspect",
        j.to_str().unwrap(),
        "--db",
        "3",
        "--format",
        "jsonl",
    ]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        (
            v["key"].as_str(),
            v["kind"].as_str(),
            v["elements"].as_u64()
        ),
        (Some("set3"), Some("set"), Some(1))
    );
    // The key's life: 7 INCRs, then one inside MULTI…EXEC, then FLUSHDB (which names no key).
    let out = shake_run(&[
        "inspect",
        j.to_str().unwrap(),
        "--history",
        "n",
        "--format",
        "jsonl",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let items: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 8, "{}", out.stdout);
    assert!(
        items[..7]
            .iter()
            .all(|i| i["event"] == "command" && i["argv"][0] == "INCR")
    );
    assert_eq!(items[7]["event"], "transaction");
    let positions: Vec<&str> = items
        .iter()
        .map(|i| i["position"].as_str().unwrap())
        .collect();
    let mut sorted = positions.clone();
    sorted.sort_by_key(|p| p.split(['.', ':']).nth(1).unwrap().parse::<u64>().unwrap());
    assert_eq!(positions, sorted, "in journal order");
    let out = shake_run(&["inspect", j.to_str().unwrap(), "--history", "huge"]);
    assert!(
        out.stdout.contains("snapshot") && out.stdout.contains("\"type\":\"string\""),
        "{}",
        out.stdout
    );
    let table = shake_run(&["inspect", j.to_str().unwrap(), "--commands"]);
    assert_eq!(table.code, 0);
    assert!(
        table
            .stdout
            .contains("DANGEROUS commands in the stream: FLUSHDB x1"),
        "{}",
        table.stdout
    );
}
