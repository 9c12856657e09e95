//! `shake capture` against real servers: every type and db, snapshot bytes equal to the
//! source's own DUMP, a stream under write load, resume by partial resync, kill -9 of capture,
//! replica links killed, master restarts, `WAIT`, a small output-buffer limit, a cluster, and
//! `--from-rdb`.

use crate::support::{
    Client, Cluster, Load, Server, finish, kill, populate_every_type, shake_run, spawn_shake,
};
use shake::journal::{Entry, Record, RecoveryMode, ShardReader};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

fn entries(dir: &Path, shard: &str) -> Vec<Entry> {
    let r = ShardReader::open(dir, shard, RecoveryMode::Refuse).unwrap();
    r.entries().map(|e| e.unwrap()).collect()
}

/// Snapshot keys of the last complete epoch: (db, key) → (type id, value bytes, expiry).
type Snapshot = HashMap<(u32, Vec<u8>), (u8, Vec<u8>, Option<i64>)>;
type Pending = Option<(u32, Vec<u8>, u8, Vec<u8>, Option<i64>)>;

fn snapshot(entries: &[Entry]) -> Snapshot {
    let last_epoch = entries
        .iter()
        .filter(|e| matches!(e.record, Record::SnapshotEnd(_)))
        .map(|e| e.position.epoch)
        .max()
        .expect("no complete snapshot");
    let mut out = HashMap::new();
    let mut current: Pending = None;
    for e in entries.iter().filter(|e| e.position.epoch == last_epoch) {
        match &e.record {
            Record::Key(k) => {
                if let Some((db, key, t, v, x)) = current.take() {
                    out.insert((db, key), (t, v, x));
                }
                current = Some((k.db, k.key.clone(), k.type_id, k.value.clone(), k.expire_ms));
            }
            Record::ValueChunk(c) => current.as_mut().unwrap().3.extend_from_slice(&c.data),
            _ => {
                if let Some((db, key, t, v, x)) = current.take() {
                    out.insert((db, key), (t, v, x));
                }
            }
        }
    }
    out
}

/// Stream commands (transactions flattened), with their db.
fn commands(entries: &[Entry]) -> Vec<(u32, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for e in entries {
        match &e.record {
            Record::Command(c) => out.push((c.db, c.argv.clone())),
            Record::Transaction(t) => out.extend(t.commands.iter().map(|c| (t.db, c.clone()))),
            _ => {}
        }
    }
    out
}

/// The integer in an encoded string value.
fn string_value(encoded: &[u8]) -> i64 {
    match shake::rdb::decode(
        shake::rdb::ObjectType::String,
        bytes::Bytes::copy_from_slice(encoded),
    )
    .unwrap()
    {
        shake::rdb::Value::String(b) => std::str::from_utf8(&b).unwrap().parse().unwrap(),
        other => panic!("not a string: {other:?}"),
    }
}

/// Every snapshot key's bytes equal the source's own `DUMP` of it (minus the 10-byte footer):
/// the journal holds the exact encoded objects, in every encoding and database.
#[test]
fn snapshot_holds_exact_objects_of_every_type_and_db() {
    let s = Server::start("7.0");
    let mut c = s.client();
    populate_every_type(&mut c);
    // Above the RDB reader's 8 MiB threshold: delivered in pieces, spilled, written as chunks.
    c.cmd(&["SET", "giant", &"g".repeat(9 << 20)]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&s.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let snap = snapshot(&entries(&j, "shard-000"));
    let mut expected = 0;
    for db in [0u32, 3, 5] {
        c.cmd(&["SELECT", &db.to_string()]);
        let keys = c.cmd(&["KEYS", "*"]);
        for k in keys.as_array().unwrap() {
            let key = k.as_bytes().unwrap().to_vec();
            let dump = c.cmd(&[&b"DUMP"[..], &key]);
            let dump = dump.as_bytes().unwrap();
            let (type_id, value, _) = snap
                .get(&(db, key.clone()))
                .unwrap_or_else(|| panic!("key {key:?} of db {db} missing"));
            assert_eq!(*type_id, dump[0], "type of {key:?}");
            assert_eq!(
                &value[..],
                &dump[1..dump.len() - 10],
                "value bytes of {}",
                String::from_utf8_lossy(&key)
            );
            expected += 1;
        }
    }
    assert_eq!(snap.len(), expected, "no extra keys");
    let (_, _, ttl) = &snap[&(0, b"ttl".to_vec())];
    assert!(ttl.unwrap() > 0, "absolute expiry kept");
    let dest = Server::start("7.0");
    let out = shake_run(&[
        "replay",
        j.to_str().unwrap(),
        "--target",
        &dest.url(),
        "--progress",
        "none",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        dest.client().cmd(&["DEBUG", "DIGEST"]),
        s.client().cmd(&["DEBUG", "DIGEST"])
    );
    let out = shake_run(&["verify", j.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

// Background writers ignore error replies: the tests compare the journal with the server's
// final state, which counts only the writes that succeeded.

/// Writes run during two capture sessions and the gap between them; the second session
/// resumes by partial resync, and the journal holds every INCR exactly once.
#[test]
fn stream_under_load_resumes_without_gap_or_duplicate() {
    let s = Server::start("7.0");
    let load = Load::start(s.port, Duration::from_micros(200), |c, _| {
        let _ = c.try_cmd(&["INCR", "counter"]);
        let _ = c.try_cmd(&["RPUSH", "log", "x"]);
    });
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let js = j.to_str().unwrap();
    for _ in 0..2 {
        let out = crate::support::capture_run(&s.url(), Path::new(js), &["--duration", "1500ms"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        std::thread::sleep(Duration::from_millis(300));
    }
    load.stop();
    let out = crate::support::capture_run(&s.url(), Path::new(js), &["--duration", "1s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("full syncs 0"),
        "resumed by partial resync: {}",
        out.stdout
    );
    let all = entries(&j, "shard-000");
    let snap = snapshot(&all);
    let counter_at_snapshot: i64 = snap
        .get(&(0, b"counter".to_vec()))
        .map(|(_, v, _)| string_value(v))
        .unwrap_or(0);
    let incrs = commands(&all)
        .iter()
        .filter(|(_, a)| a[0].eq_ignore_ascii_case(b"INCR"))
        .count() as i64;
    let final_value: i64 = s.client().cmd(&["GET", "counter"]).as_int().unwrap();
    assert_eq!(
        counter_at_snapshot + incrs,
        final_value,
        "every INCR after the snapshot journaled exactly once"
    );
    // Replaying the journal gives exactly the source's data.
    let dest = Server::start("7.0");
    let out = shake_run(&["replay", js, "--target", &dest.url(), "--progress", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        dest.client().cmd(&["DEBUG", "DIGEST"]),
        s.client().cmd(&["DEBUG", "DIGEST"]),
        "replayed journal equals the source"
    );
    let out = shake_run(&["verify", js]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

/// Snapshot bytes equal the source's `DUMP` on every server of the matrix, module keys of
/// Redis Stack 7.4 (JSON, Bloom, TimeSeries) and hash-field expiry included.
#[test]
fn every_version_of_the_matrix_with_modules() {
    for v in crate::support::MATRIX {
        let s = if v == "7.4" {
            Server::builder(v).modules().start()
        } else {
            Server::start(v)
        };
        let mut c = s.client();
        c.cmd(&["SET", "s", "v"]);
        c.cmd(&["RPUSH", "l", "1", "2"]);
        c.cmd(&["HSET", "h", "a", "1"]);
        c.cmd(&["ZADD", "z", "2.5", "m"]);
        c.cmd(&["XADD", "x", "1-1", "f", "v"]);
        if v == "7.4" {
            c.cmd(&["JSON.SET", "json", "$", r#"{"a":[1,2,{"b":null}]}"#]);
            c.cmd(&["BF.ADD", "bloom", "item"]);
            c.cmd(&["TS.ADD", "ts", "1000", "1.5"]);
            c.cmd(&["HSET", "hfe", "f1", "v1", "f2", "v2"]);
            c.cmd(&["HPEXPIRE", "hfe", "3600000", "FIELDS", "1", "f1"]);
        }
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j");
        let out = crate::support::capture_run(&s.url(), &j, &["--snapshot-only"]);
        assert_eq!(out.code, 0, "{v}: {}", out.stderr);
        let snap = snapshot(&entries(&j, "shard-000"));
        let keys = c.cmd(&["KEYS", "*"]);
        let keys = keys.as_array().unwrap();
        assert_eq!(snap.len(), keys.len(), "{v}");
        for k in keys {
            let key = k.as_bytes().unwrap().to_vec();
            let dump = c.cmd(&[&b"DUMP"[..], &key]);
            let dump = dump.as_bytes().unwrap();
            let (t, value, _) = &snap[&(0, key.clone())];
            assert_eq!(
                (*t, &value[..]),
                (dump[0], &dump[1..dump.len() - 10]),
                "{v}: {}",
                String::from_utf8_lossy(&key)
            );
        }
    }
}

/// kill -9 of capture at several moments (during the snapshot and during the stream), each
/// followed by a restart: the journal stays verifiable and, in the end, holds every INCR
/// exactly once after the last snapshot.
#[test]
fn kill9_of_capture_during_snapshot_and_stream() {
    let s = Server::start("7.0");
    s.client()
        .cmd(&["DEBUG", "POPULATE", "200000", "key", "100"]);
    let load = Load::start(s.port, Duration::from_micros(300), |c, _| {
        let _ = c.try_cmd(&["INCR", "counter"]);
    });
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let js = j.to_str().unwrap();
    // Kill points: early (inside the snapshot of ~20 MB) and later (inside the stream).
    for (i, after_ms) in [40u64, 150, 900, 1300, 700].into_iter().enumerate() {
        let child = spawn_shake(&["capture", "--source", &s.url(), "--journal", js]);
        // Count from the journal's creation: a kill before it exists tests nothing.
        crate::support::wait_until(20, "the journal to exist", || {
            j.join("journal.json").exists()
        });
        std::thread::sleep(Duration::from_millis(after_ms));
        kill(child.id(), "KILL");
        let out = finish(child);
        assert_eq!(out.code, -1, "run {i} was killed");
        let v = shake_run(&["verify", js]);
        assert_eq!(v.code, 0, "after kill {i}: {}", v.stdout);
    }
    load.stop();
    let out = crate::support::capture_run(&s.url(), Path::new(js), &["--duration", "8s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = entries(&j, "shard-000");
    let snap = snapshot(&all);
    let last_epoch = all
        .iter()
        .filter(|e| matches!(e.record, Record::SnapshotEnd(_)))
        .map(|e| e.position.epoch)
        .max()
        .unwrap();
    let after: Vec<Entry> = all
        .into_iter()
        .filter(|e| e.position.epoch == last_epoch)
        .collect();
    let incrs = commands(&after)
        .iter()
        .filter(|(_, a)| a[0].eq_ignore_ascii_case(b"INCR"))
        .count() as i64;
    let at_snapshot = snap
        .get(&(0, b"counter".to_vec()))
        .map(|(_, v, _)| string_value(v))
        .unwrap_or(0);
    let final_value = s.client().cmd(&["GET", "counter"]).as_int().unwrap();
    assert_eq!(
        at_snapshot + incrs,
        final_value,
        "no INCR lost or duplicated across kills"
    );
    assert_eq!(snap.len(), 200_001);
    let dest = Server::start("7.0");
    let out = shake_run(&["replay", js, "--target", &dest.url(), "--progress", "none"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        dest.client().cmd(&["DEBUG", "DIGEST"]),
        s.client().cmd(&["DEBUG", "DIGEST"]),
        "the journal survives five kills and replays to exactly the source"
    );
}

/// A killed replica link, and a master restarted from its RDB, are followed by a partial
/// resync (the restarted master continues under a new replid that keeps the old as replid2).
#[test]
fn replica_link_killed_and_master_restarted() {
    let mut s = Server::start("7.0");
    let mut c = s.client();
    c.cmd(&["SET", "a", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = crate::support::LiveCapture::start(&s.url(), &j, &[], &s, 1);
    c.cmd(&["INCR", "n"]);
    c.cmd(&["CLIENT", "KILL", "TYPE", "replica"]);
    c.cmd(&["INCR", "n"]);
    crate::support::wait_until(20, "capture re-attached", || {
        c.info_field("replication", "connected_slaves").as_deref() == Some("1")
    });
    c.cmd(&["INCR", "n"]);
    // Restart the master from an RDB that carries its replication id and offset.
    c.cmd(&["SAVE"]);
    s.restart();
    let mut c = s.client();
    c.cmd(&["INCR", "n"]);
    crate::support::wait_until(30, "capture attached to the restarted master", || {
        c.info_field("replication", "connected_slaves").as_deref() == Some("1")
    });
    c.cmd(&["INCR", "n"]);
    std::thread::sleep(Duration::from_millis(1500));
    let out = child.stop();
    assert!(
        out.stdout.contains("full syncs 1"),
        "only the first sync was full: {}",
        out.stdout
    );
    let all = entries(&j, "shard-000");
    let incrs = commands(&all)
        .iter()
        .filter(|(_, a)| a[0].eq_ignore_ascii_case(b"INCR"))
        .count();
    assert_eq!(incrs, 5, "every INCR once");
    assert!(
        all.iter().any(|e| matches!(
            &e.record,
            Record::Marker(shake::journal::Marker::ReplId { .. })
        )),
        "the replid change is recorded"
    );
    assert_eq!(shake_run(&["verify", j.to_str().unwrap()]).code, 0);
}

/// `WAIT 1` on the source succeeds against capture's acknowledgements.
#[test]
fn wait_on_the_source_counts_capture() {
    let s = Server::start("7.0");
    let mut c = s.client();
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = crate::support::LiveCapture::start(&s.url(), &j, &[], &s, 1);
    c.cmd(&["SET", "k", "v"]);
    assert_eq!(c.cmd(&["WAIT", "1", "10000"]).as_int(), Some(1));
    child.stop();
}

/// A master whose replica output-buffer limit (4 MiB) is far smaller than its dataset (~70 MB),
/// under steady writes: capture completes the full sync at the first try, because it reads the
/// socket as fast as data arrives and leaves parsing and compression to other threads.
#[test]
fn small_output_buffer_limit_full_sync_completes() {
    let s = Server::builder("7.0")
        .arg("client-output-buffer-limit", "replica 4mb 2mb 5")
        .start();
    let mut c = s.client();
    c.cmd(&["DEBUG", "POPULATE", "300000", "key", "200"]);
    let v = "w".repeat(1000);
    let load = Load::start(s.port, Duration::from_micros(500), move |c, i| {
        let _ = c.try_cmd(&["SET", &format!("w{}", i % 5000), &v]);
    });
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&s.url(), &j, &["--snapshot-only", "--max-retries", "2"]);
    load.stop();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("full syncs 1"), "{}", out.stdout);
    let snap = snapshot(&entries(&j, "shard-000"));
    assert!(snap.len() >= 300_000);
}

/// A 3-master cluster: one shard per master, each with its master's keys.
#[test]
fn cluster_one_shard_per_master() {
    let cluster = Cluster::start("7.0", 3, 0);
    let mut c = cluster.nodes[0].client();
    // Write through each master (the test client does not follow MOVED).
    for node in &cluster.nodes {
        let mut nc = node.client();
        let mut written = 0;
        let mut i = 0;
        while written < 50 {
            let key = format!("key:{i}");
            i += 1;
            if nc.try_cmd(&["SET", &key, "v"]).unwrap().is_error() {
                continue;
            }
            written += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&cluster.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let manifest = shake::journal::read_journal(&j).unwrap();
    assert_eq!(manifest.shards.len(), 3);
    let mut total = 0;
    for shard in &manifest.shards {
        let snap = snapshot(&entries(&j, &shard.name));
        for (_, key) in snap.keys() {
            let slot = shake::net::slot::key_slot(key);
            assert!(
                shard.slots.iter().any(|(a, b)| *a <= slot && slot <= *b),
                "{} holds a key of slot {slot}",
                shard.name
            );
        }
        total += snap.len();
    }
    assert_eq!(total, 150);
    let _ = c.cmd(&["PING"]);
    assert_eq!(shake_run(&["verify", j.to_str().unwrap()]).code, 0);
}

/// `--from-rdb`: a file written by a real server becomes a one-shard journal; a corrupt file
/// exits 1 naming the byte offset.
#[test]
fn from_rdb_file_and_corrupt_file() {
    let s = Server::start("7.0");
    let mut c = s.client();
    populate_every_type(&mut c);
    c.cmd(&["SAVE"]);
    let rdb = s.dir.path().join("dump.rdb");
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = shake_run(&[
        "capture",
        "--from-rdb",
        rdb.to_str().unwrap(),
        "--journal",
        j.to_str().unwrap(),
        "--progress",
        "none",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let snap = snapshot(&entries(&j, "shard-000"));
    assert_eq!(snap.len(), 16);
    assert_eq!(shake_run(&["verify", j.to_str().unwrap()]).code, 0);
    // Truncated in the middle of the big value.
    let bytes = std::fs::read(&rdb).unwrap();
    let cut = dir.path().join("cut.rdb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let j2 = dir.path().join("j2");
    let out = shake_run(&[
        "capture",
        "--from-rdb",
        cut.to_str().unwrap(),
        "--journal",
        j2.to_str().unwrap(),
        "--progress",
        "none",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cut.rdb"), "{}", out.stderr);
    assert!(
        out.stderr.contains("byte") || out.stderr.contains("offset"),
        "{}",
        out.stderr
    );
}

/// Capture through a Sentinel.
#[test]
fn sentinel_master() {
    let s = Server::start("7.0");
    s.client().cmd(&["SET", "via", "sentinel"]);
    let sentinel = crate::support::Sentinel::start(&s);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = shake_run(&[
        "capture",
        "--source",
        &sentinel.url(),
        "--sentinel-master",
        "mymaster",
        "--journal",
        j.to_str().unwrap(),
        "--snapshot-only",
        "--progress",
        "none",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(snapshot(&entries(&j, "shard-000")).contains_key(&(0, b"via".to_vec())));
}

/// `--metrics-addr` serves per-shard offsets and the lag behind the master.
#[test]
fn metrics_endpoint_reports_offsets_and_lag() {
    use std::io::{Read, Write};
    let s = Server::start("7.0");
    let mut c = s.client();
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let mport = crate::support::free_port();
    let addr = format!("127.0.0.1:{mport}");
    let child = spawn_shake(&[
        "capture",
        "--source",
        &s.url(),
        "--journal",
        j.to_str().unwrap(),
        "--metrics-addr",
        &addr,
    ]);
    crate::support::wait_until(20, "capture attached", || {
        c.info_field("replication", "connected_slaves").as_deref() == Some("1")
    });
    c.cmd(&["SET", "k", "v"]);
    let mut page = String::new();
    crate::support::wait_until(20, "metrics with a lag figure", || {
        let Ok(mut sock) = std::net::TcpStream::connect(&addr) else {
            return false;
        };
        let _ = sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        page.clear();
        let _ = sock.read_to_string(&mut page);
        page.contains("shake_capture_lag_bytes{shard=\"shard-000\"}")
    });
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(
        page.contains("shake_capture_durable_offset{shard=\"shard-000\"}"),
        "{page}"
    );
    assert!(
        page.contains("shake_capture_full_syncs_total{shard=\"shard-000\"} 1"),
        "{page}"
    );
    kill(child.id(), "TERM");
    assert_eq!(finish(child).code, 0);
}

/// `CLUSTER FAILOVER` on a replica: capture keeps the shard's journal continuous without a
/// new full sync, and every write of the shard is journaled once.
#[test]
fn cluster_failover_is_followed_without_full_sync() {
    let cluster = Cluster::start("7.0", 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = spawn_shake(&[
        "capture",
        "--source",
        &cluster.url(),
        "--journal",
        j.to_str().unwrap(),
    ]);
    let masters = cluster.masters();
    for m in &masters {
        crate::support::wait_until(30, "capture attached to every master", || {
            m.client()
                .info_field("replication", "connected_slaves")
                .as_deref()
                == Some("2")
        });
    }
    // The master that owns our key, and its replica.
    let key = "{failover}counter";
    let owner = masters
        .iter()
        .find(|m| !m.client().try_cmd(&["GET", key]).unwrap().is_error())
        .unwrap();
    for _ in 0..5 {
        owner.client().cmd(&["INCR", key]);
    }
    let replica = cluster.replica_of(owner.port);
    replica.client().cmd(&["CLUSTER", "FAILOVER"]);
    crate::support::wait_until(30, "the replica to become master", || {
        replica
            .client()
            .info_field("replication", "role")
            .as_deref()
            == Some("master")
    });
    for _ in 0..5 {
        replica.client().cmd(&["INCR", key]);
    }
    assert_eq!(replica.client().cmd(&["GET", key]).as_int(), Some(10));
    // The layout watcher (every 5 s) records the failover as a topology marker.
    std::thread::sleep(Duration::from_secs(7));
    kill(child.id(), "TERM");
    let out = finish(child);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.matches("full syncs 1").count(),
        3,
        "one full sync per shard only: {}",
        out.stdout
    );
    let manifest = shake::journal::read_journal(&j).unwrap();
    let mut incrs = 0;
    for shard in &manifest.shards {
        incrs += commands(&entries(&j, &shard.name))
            .iter()
            .filter(|(_, a)| a[0].eq_ignore_ascii_case(b"INCR") && a[1] == key.as_bytes())
            .count();
    }
    assert_eq!(incrs, 10, "every INCR journaled once across the failover");
    let marked = manifest.shards.iter().any(|s| {
        entries(&j, &s.name).iter().any(|e| {
            matches!(&e.record, Record::Marker(shake::journal::Marker::Topology { description, .. }) if description.contains(&replica.port.to_string()))
        })
    });
    assert!(marked, "the new master appears in a topology marker");
    assert_eq!(shake_run(&["verify", j.to_str().unwrap()]).code, 0);
}

/// `--shards` captures only the named shards; `--from-replicas` attaches to replicas.
#[test]
fn cluster_shards_selection_and_from_replicas() {
    let cluster = Cluster::start("7.0", 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(
        &cluster.url(),
        &j,
        &[
            "--snapshot-only",
            "--shards",
            "shard-001",
            "--from-replicas",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.matches("shard-0").count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("shard-001"), "{}", out.stdout);
    // The server named in the summary is a replica.
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let addr = words[words.iter().position(|w| *w == "shard-001").unwrap() + 1].to_string();
    let node = cluster
        .nodes
        .iter()
        .find(|n| addr.ends_with(&format!(":{}", n.port)))
        .unwrap();
    assert_eq!(
        node.client().info_field("replication", "role").as_deref(),
        Some("slave"),
        "{}",
        out.stdout
    );
    // The other shards were not captured.
    assert!(
        ShardReader::open(&j, "shard-000", RecoveryMode::Refuse)
            .unwrap()
            .last()
            .is_none()
    );
}

/// A Sentinel failover: capture follows the promoted replica (partial resync through
/// replid2) and journals every write once.
#[test]
fn sentinel_failover_is_followed() {
    let master = Server::start("7.0");
    let replica = Server::start("7.0");
    replica
        .client()
        .cmd(&["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
    crate::support::wait_until(20, "replica in sync", || {
        replica
            .client()
            .info_field("replication", "master_link_status")
            .as_deref()
            == Some("up")
    });
    let sentinel = crate::support::Sentinel::start(&master);
    let replica_port = replica.port.to_string();
    crate::support::wait_until(30, "sentinel to see the replica", || {
        let mut c = Client::connect(sentinel.port).unwrap();
        let f = c.cmd(&["SENTINEL", "REPLICAS", "mymaster"]);
        f.as_array().is_some_and(|a| {
            a.iter().any(|r| {
                r.field("port").and_then(|p| p.as_str()) == Some(replica_port.as_str())
                    && r.field("flags").and_then(|p| p.as_str()) == Some("slave")
            })
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = spawn_shake(&[
        "capture",
        "--source",
        &sentinel.url(),
        "--sentinel-master",
        "mymaster",
        "--journal",
        j.to_str().unwrap(),
    ]);
    crate::support::wait_until(20, "capture attached", || {
        master
            .client()
            .info_field("replication", "connected_slaves")
            .as_deref()
            == Some("2")
    });
    // Both the real replica and capture hold every write before the failover (WAIT counts
    // acknowledgements of this connection's own writes, so the same connection must ask).
    let mut mc = master.client();
    for _ in 0..3 {
        mc.cmd(&["INCR", "n"]);
    }
    assert_eq!(mc.cmd(&["WAIT", "2", "5000"]).as_int(), Some(2));
    assert_eq!(replica.client().cmd(&["GET", "n"]).as_int(), Some(3));
    let mut s = Client::connect(sentinel.port).unwrap();
    s.cmd(&["SENTINEL", "FAILOVER", "mymaster"]);
    crate::support::wait_until(30, "the replica to be promoted", || {
        replica
            .client()
            .info_field("replication", "role")
            .as_deref()
            == Some("master")
    });
    crate::support::wait_until(30, "capture attached to the new master", || {
        replica
            .client()
            .info_field("replication", "connected_slaves")
            .as_deref()
            .is_some_and(|n| n != "0")
            && master.client().info_field("replication", "role").as_deref() == Some("slave")
    });
    for _ in 0..3 {
        replica.client().cmd(&["INCR", "n"]);
    }
    std::thread::sleep(Duration::from_secs(2));
    kill(child.id(), "TERM");
    let out = finish(child);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("full syncs 1"),
        "{}{}\nnew master's log:\n{}\nsentinel log:\n{}",
        out.stdout,
        out.stderr,
        std::fs::read_to_string(replica.log_path()).unwrap_or_default(),
        std::fs::read_to_string(sentinel.dir().join("sentinel.log")).unwrap_or_default()
    );
    let incrs = commands(&entries(&j, "shard-000"))
        .iter()
        .filter(|(_, a)| a[0].eq_ignore_ascii_case(b"INCR"))
        .count();
    assert_eq!(incrs, 6, "every INCR once across the failover");
}

/// A slot migration during capture: the moved key's removal (MIGRATE's DEL) is journaled in
/// the source master's shard, its arrival (RESTORE-ASKING) in the destination's, and the new
/// layout is recorded as a topology marker.
#[test]
fn slot_migration_keeps_the_moving_key() {
    let cluster = Cluster::start("7.0", 3, 0);
    let key = "{migrate}k";
    let owner = cluster
        .nodes
        .iter()
        .find(|n| !n.client().try_cmd(&["GET", key]).unwrap().is_error())
        .unwrap();
    let target = cluster.nodes.iter().find(|n| n.port != owner.port).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let child = spawn_shake(&[
        "capture",
        "--source",
        &cluster.url(),
        "--journal",
        j.to_str().unwrap(),
    ]);
    for n in &cluster.nodes {
        crate::support::wait_until(30, "capture attached to every master", || {
            n.client()
                .info_field("replication", "connected_slaves")
                .as_deref()
                == Some("1")
        });
    }
    let mut o = owner.client();
    let mut t = target.client();
    o.cmd(&["SET", key, "moving"]);
    let slot = o
        .cmd(&["CLUSTER", "KEYSLOT", key])
        .as_int()
        .unwrap()
        .to_string();
    let oid = o.text(&["CLUSTER", "MYID"]);
    let tid = t.text(&["CLUSTER", "MYID"]);
    t.cmd(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &oid]);
    o.cmd(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &tid]);
    o.cmd(&[
        "MIGRATE",
        "127.0.0.1",
        &target.port.to_string(),
        "",
        "0",
        "5000",
        "KEYS",
        key,
    ]);
    for n in &cluster.nodes {
        n.client().cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &tid]);
    }
    t.cmd(&["SET", key, "moved"]);
    std::thread::sleep(Duration::from_secs(7));
    kill(child.id(), "TERM");
    assert_eq!(finish(child).code, 0);
    let manifest = shake::journal::read_journal(&j).unwrap();
    let mut del_seen = false;
    let mut restore_seen = false;
    let mut set_after = false;
    let mut marker = false;
    for s in &manifest.shards {
        let all = entries(&j, &s.name);
        marker |= all.iter().any(|e| {
            matches!(
                &e.record,
                Record::Marker(shake::journal::Marker::Topology { .. })
            )
        });
        for (_, argv) in commands(&all) {
            let name = String::from_utf8_lossy(&argv[0]).to_uppercase();
            let on_key = argv.get(1).is_some_and(|a| a == key.as_bytes());
            del_seen |= name == "DEL" && on_key;
            restore_seen |= name.starts_with("RESTORE") && on_key;
            set_after |= name == "SET" && on_key && argv[2] == b"moved";
        }
    }
    assert!(
        del_seen,
        "the source master's DEL of the moved key is journaled"
    );
    assert!(
        restore_seen,
        "the destination master's RESTORE of the moved key is journaled"
    );
    assert!(set_after, "writes after the move are journaled");
    assert!(marker, "the new layout is recorded");
}
