//! `shake replay` against real servers: journals captured from a live source with every type,
//! several dbs and a command stream, replayed onto fresh servers of the same, an older and a
//! newer version and onto a cluster; `DEBUG DIGEST` compared. Conflict policies, replaying
//! twice, absolute TTLs, expired keys, `--until-offset`/`--until-time`, kill -9 of replay and of
//! the target then resume with non-idempotent commands, follow mode with capture running under
//! writes, module keys without the module, MOVED/ASK, cluster ↔ standalone.

use crate::support::{
    Client, Cluster, LiveCapture, Server, digest, finish, kill, populate_every_type, shake,
    shake_run, spawn_shake, wait_caught_up, wait_snapshot_in_journal, wait_until,
};
use shake::journal::{Record, RecoveryMode, ShardReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keys (`db:key`) whose `DEBUG DIGEST-VALUE` differs between two servers, or that one lacks.
fn differing_keys(a: &mut Client, b: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    for db in ["0", "3", "5"] {
        a.cmd(&["SELECT", db]);
        b.cmd(&["SELECT", db]);
        let mut keys: Vec<String> = Vec::new();
        for c in [&mut *a, &mut *b] {
            for k in c.cmd(&["KEYS", "*"]).as_array().unwrap() {
                keys.push(k.as_str().unwrap().to_string());
            }
        }
        keys.sort();
        keys.dedup();
        for k in keys {
            let da = format!("{:?}", a.cmd(&["DEBUG", "DIGEST-VALUE", &k]));
            let db_ = format!("{:?}", b.cmd(&["DEBUG", "DIGEST-VALUE", &k]));
            if da != db_ {
                out.push(format!("{db}:{k}"));
            }
        }
    }
    a.cmd(&["SELECT", "0"]);
    b.cmd(&["SELECT", "0"]);
    out
}

/// Non-idempotent stream traffic: INCR, RPUSH, relative expiries, a MULTI with SELECT inside.
fn stream_writes(c: &mut Client, rounds: usize) {
    for i in 0..rounds {
        c.cmd(&["INCR", "counter"]);
        c.cmd(&["RPUSH", "list", &i.to_string()]);
        c.cmd(&["SELECT", "3"]);
        c.cmd(&["INCR", "counter3"]);
        c.cmd(&["SELECT", "0"]);
    }
    c.cmd(&["EXPIRE", "str", "5000"]);
    c.cmd(&["SETEX", "setex", "5000", "v"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "counter"]);
    c.cmd(&["SELECT", "5"]);
    c.cmd(&["RPUSH", "l", "z"]);
    c.cmd(&["EXEC"]);
    c.cmd(&["DEL", "int"]);
}

/// Captures `source` (snapshot, then `writes` while the capture runs) into `<dir>/j`.
fn capture(source: &Server, dir: &Path, writes: impl FnOnce(&mut Client)) -> PathBuf {
    let j = dir.join("j");
    let cap = LiveCapture::start(&source.url(), &j, &[], source, 1);
    wait_caught_up(source);
    wait_snapshot_in_journal(&j);
    writes(&mut source.client());
    wait_caught_up(source);
    cap.stop();
    j
}

fn replay(j: &Path, target: &str, extra: &[&str]) -> crate::support::Output {
    let mut args = vec![
        "replay",
        j.to_str().unwrap(),
        "--target",
        target,
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    shake_run(&args)
}

/// Starts `shake replay J --target URL EXTRA…` and kills it with SIGKILL after the given
/// milliseconds, once per entry of `runs`.
fn kill9_replays(j: &Path, url: &str, runs: &[(&[&str], u64)]) {
    for (extra, ms) in runs {
        let mut args = vec!["replay", j.to_str().unwrap(), "--target", url];
        args.extend_from_slice(extra);
        let child = spawn_shake(&args);
        std::thread::sleep(Duration::from_millis(*ms));
        kill(child.id(), "KILL");
        let _ = finish(child);
    }
}

fn pexpiretime(c: &mut Client, key: &str) -> i64 {
    c.cmd(&["PEXPIRETIME", key]).as_int().unwrap()
}

/// Same version: digest equal, TTLs absolute (equal to the millisecond even after a delay),
/// relative expiries in the stream made absolute, and replaying twice (a fresh run, no
/// checkpoint) gives the same digest — no duplicated list elements (RedisShake #921/#996).
#[test]
fn every_type_and_db_digest_equal_ttls_absolute_and_replay_twice_identical() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    populate_every_type(&mut sc);
    sc.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return 1 end)",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| stream_writes(c, 50));
    std::thread::sleep(Duration::from_millis(1200)); // a relative TTL would now drift
    let target = Server::start("7.0");
    let out = replay(&j, &target.url(), &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("failed: 0"), "{}", out.stdout);
    let mut tc = target.client();
    assert_eq!(digest(&mut sc), digest(&mut tc));
    for k in ["ttl", "str", "setex"] {
        assert_eq!(
            pexpiretime(&mut sc, k),
            pexpiretime(&mut tc, k),
            "expiry of {k}"
        );
    }
    assert!(
        out.stdout.contains("function libraries 1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        format!("{:?}", tc.cmd(&["FUNCTION", "LIST", "WITHCODE"])),
        format!("{:?}", sc.cmd(&["FUNCTION", "LIST", "WITHCODE"]))
    );
    // the checkpoint sits next to the journal, not in it; the marker key is gone
    assert!(dir.path().join("j.replay-state").is_dir());
    assert!(
        !std::fs::read_dir(&j).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("replay"))
    );
    // a second run with the same checkpoint has nothing left to do
    let again = replay(&j, &target.url(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("commands sent 0"), "{}", again.stdout);
    assert_eq!(digest(&mut sc), digest(&mut tc));
    // Full re-runs (no checkpoint) of a snapshot over a target that already holds the data:
    // RESTORE … REPLACE and the rewrite path's DEL-first give identical digests (RedisShake
    // #921/#996: lists duplicated on re-runs).
    let dir2 = tempfile::tempdir().unwrap();
    let j2 = dir2.path().join("j");
    let out = crate::support::capture_run(&source.url(), &j2, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for restore in ["auto", "never", "auto"] {
        let again = replay(
            &j2,
            &target.url(),
            &["--no-checkpoint", "--restore", restore],
        );
        assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
        assert_eq!(digest(&mut sc), digest(&mut tc), "--restore {restore}");
        if restore == "auto" {
            // RESTOREs go without REPLACE while the target held few keys: each refused one
            // went again with it, and is counted
            assert!(
                !again.stdout.contains("replaced (found existing) 0,"),
                "{}",
                again.stdout
            );
        }
    }
}

/// 7.0 journal onto 6.2 (RESTORE refuses v10 payloads and listpack types: rewrite path), and a
/// 6.2 journal onto 7.0 (RESTORE unchanged). Compared per key with the logical content.
#[test]
fn onto_an_older_server_by_rewrite_and_onto_a_newer_by_restore() {
    for (from, to) in [("7.0", "6.2"), ("6.2", "7.0")] {
        let source = Server::start(from);
        let mut sc = source.client();
        populate_every_type(&mut sc);
        let dir = tempfile::tempdir().unwrap();
        let j = capture(&source, dir.path(), |c| stream_writes(c, 10));
        let target = Server::start(to);
        let out = replay(&j, &target.url(), &[]);
        assert_eq!(out.code, 0, "{from}→{to}: {}\n{}", out.stdout, out.stderr);
        if to == "6.2" {
            assert!(!out.stdout.contains("rewritten 0"), "{}", out.stdout);
        } else {
            assert!(out.stdout.contains("rewritten 0"), "{}", out.stdout);
        }
        let mut tc = target.client();
        assert_eq!(digest(&mut sc), digest(&mut tc), "{from}→{to}");
    }
}

/// Standalone with dbs 0, 3, 5 onto a 3-master cluster: refused without --map-db (the error
/// names the db and the flag), complete with it; a MULTI spanning slots is applied.
#[test]
fn standalone_to_cluster_with_map_db() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    populate_every_type(&mut sc);
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| stream_writes(c, 20));
    let cluster = Cluster::start("7.0", 3, 0);
    let out = replay(&j, &cluster.url(), &["--no-checkpoint"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("--map-db 3:0") || out.stdout.contains("--map-db 5:0"),
        "{}",
        out.stdout
    );
    let out = replay(&j, &cluster.url(), &["--map-db", "3:0", "--map-db", "5:0"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let total: i64 = cluster
        .masters()
        .iter()
        .map(|m| m.client().cmd(&["DBSIZE"]).as_int().unwrap())
        .sum();
    // db 0 keys + in-db-3, in-db-5, counter3 and "l" (shared by dbs 3 and 5)
    let mut expected = 0;
    for db in ["0", "3", "5"] {
        sc.cmd(&["SELECT", db]);
        expected += sc.cmd(&["DBSIZE"]).as_int().unwrap();
    }
    sc.cmd(&["SELECT", "0"]);
    assert_eq!(total, expected - 1, "l of db 3 and db 5 merge into one key");
    let get = |k: &str| {
        let m = cluster
            .masters()
            .into_iter()
            .find(|m| m.client().try_cmd(&["EXISTS", k]).unwrap().as_int() == Some(1))
            .unwrap_or_else(|| panic!("{k} missing"));
        m.client().cmd(&["GET", k]).as_str().unwrap().to_string()
    };
    assert_eq!(get("counter"), sc.text(&["GET", "counter"]));
    assert_eq!(get("in-db-5"), "yes");
}

/// `--on-conflict skip` keeps the target's key on both paths; `error` stops naming the key.
#[test]
fn conflict_policies() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    sc.cmd(&["SET", "str", "source"]);
    sc.cmd(&["RPUSH", "list", "a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |_| {});
    for restore in ["auto", "never"] {
        let target = Server::start("7.0");
        let mut tc = target.client();
        tc.cmd(&["SET", "str", "mine"]);
        tc.cmd(&["RPUSH", "list", "x"]);
        let out = replay(
            &j,
            &target.url(),
            &[
                "--no-checkpoint",
                "--on-conflict",
                "skip",
                "--restore",
                restore,
            ],
        );
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("skipped (existing) 2"),
            "{}",
            out.stdout
        );
        assert_eq!(tc.text(&["GET", "str"]), "mine");
        assert_eq!(tc.cmd(&["LLEN", "list"]).as_int(), Some(1));
        let out = replay(
            &j,
            &target.url(),
            &[
                "--no-checkpoint",
                "--on-conflict",
                "error",
                "--restore",
                restore,
            ],
        );
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert!(out.stdout.contains("already exists"), "{}", out.stdout);
        let out = replay(
            &j,
            &target.url(),
            &["--no-checkpoint", "--restore", restore],
        );
        assert_eq!(out.code, 0);
        assert_eq!(tc.text(&["GET", "str"]), "source");
        assert_eq!(tc.cmd(&["LLEN", "list"]).as_int(), Some(2));
    }
}

/// Keys whose absolute expiry passed before the replay are not written, and counted; a dry
/// run writes nothing.
#[test]
fn expired_keys_are_not_written_and_dry_run_writes_nothing() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    sc.cmd(&["SET", "short", "v", "PX", "1500"]);
    sc.cmd(&["SET", "keep", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |_| {});
    let target = Server::start("7.0");
    let out = replay(&j, &target.url(), &["--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("DRY RUN"), "{}", out.stdout);
    assert_eq!(target.client().cmd(&["DBSIZE"]).as_int(), Some(0));
    std::thread::sleep(Duration::from_millis(1600));
    let out = replay(&j, &target.url(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("expired (not written) 1"),
        "{}",
        out.stdout
    );
    assert_eq!(target.client().cmd(&["DBSIZE"]).as_int(), Some(1));
}

/// `--until-offset N` stops right after the command at offset N, `--until-time T` after the
/// last command captured at or before T: the target holds the counter as it was then.
#[test]
fn until_offset_stops_at_that_point() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| {
        // two groups a second apart (capture time stamps may be shared within a frame)
        for i in 0..20 {
            c.cmd(&["INCR", "n"]);
            if i == 9 {
                std::thread::sleep(Duration::from_millis(1200));
            }
        }
    });
    let offsets = crate::support::command_offsets(&j, b"INCR");
    let r = ShardReader::open(&j, "shard-000", RecoveryMode::Refuse).unwrap();
    assert_eq!(offsets.len(), 20);
    let target = Server::start("7.0");
    let out = replay(
        &j,
        &target.url(),
        &["--no-checkpoint", "--until-offset", &offsets[6].to_string()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(target.client().text(&["GET", "n"]), "7");
    // --until-time: no command captured after the 10th INCR's capture time
    let times: Vec<u64> = r
        .entries()
        .map(|e| e.unwrap())
        .filter_map(|e| match &e.record {
            Record::Command(c) if c.argv[0].eq_ignore_ascii_case(b"INCR") => Some(c.time_ms),
            _ => None,
        })
        .collect();
    let at = std::time::UNIX_EPOCH + Duration::from_millis(times[9]);
    let text = humantime::format_rfc3339_millis(at).to_string();
    let target = Server::start("7.0");
    let out = replay(
        &j,
        &target.url(),
        &["--no-checkpoint", "--until-time", &text],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = times.iter().filter(|t| **t <= times[9]).count();
    assert!(want < 20, "the INCRs are spread in time: {times:?}");
    assert_eq!(target.client().text(&["GET", "n"]), want.to_string());
}

/// kill -9 of replay in the middle of a stream of INCR/RPUSH, then resume from the checkpoint
/// (and the target's marker): every INCR applied exactly once, digest equal.
#[test]
fn kill9_of_replay_mid_stream_then_resume_applies_nothing_twice() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| stream_writes(c, 3000));
    let target = Server::start("7.0");
    let url = target.url();
    let slow: &[&str] = &["--pipeline", "64", "--max-ops", "1000"];
    kill9_replays(&j, &url, &[(slow, 400), (slow, 650), (slow, 900)]);
    let mut sc = source.client();
    let mut tc = target.client();
    let partial: i64 = tc.text(&["GET", "counter"]).parse().unwrap_or(0);
    let total: i64 = sc.text(&["GET", "counter"]).parse().unwrap();
    assert!(
        partial < total,
        "the kills must land mid-stream ({partial} of {total})"
    );
    let out = replay(&j, &url, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(tc.text(&["GET", "counter"]), sc.text(&["GET", "counter"]));
    assert_eq!(tc.cmd(&["LLEN", "list"]), sc.cmd(&["LLEN", "list"]));
    assert_eq!(digest(&mut sc), digest(&mut tc));
}

/// Capture and replay --follow run together while a writer works; once writes stop the target
/// catches up with an equal digest; SIGTERM ends replay with exit 0 and a checkpoint.
#[test]
fn follow_mode_with_capture_running() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    sc.cmd(&["SET", "before", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let jt = j.to_str().unwrap().to_string();
    let cap = spawn_shake(&[
        "capture",
        "--source",
        &source.url(),
        "--journal",
        &jt,
        "--fsync",
        "always",
    ]);
    wait_caught_up(&source);
    wait_until(30, "the snapshot in the journal", || {
        ShardReader::open(&j, "shard-000", RecoveryMode::Refuse)
            .map(|r| {
                r.entries()
                    .any(|e| matches!(e.map(|e| e.record), Ok(Record::SnapshotEnd(_))))
            })
            .unwrap_or(false)
    });
    let target = Server::start("7.0");
    let metrics = format!("127.0.0.1:{}", crate::support::free_port());
    let rep = spawn_shake(&[
        "replay",
        &jt,
        "--target",
        &target.url(),
        "--follow",
        "--metrics-addr",
        &metrics,
    ]);
    let start = std::time::Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(2) {
        sc.cmd(&["INCR", "counter"]);
        sc.cmd(&["RPUSH", "list", &i.to_string()]);
        i += 1;
    }
    let mut tc = target.client();
    let want = sc.text(&["GET", "counter"]);
    let stopped = std::time::Instant::now();
    wait_until(30, "replay to catch up", || {
        tc.cmd(&["GET", "counter"]).as_str() == Some(want.as_str())
    });
    // end-to-end lag: source write → capture → journal (fsync always) → follower → target
    eprintln!(
        "follow mode: {i} writes in 2 s; target caught up {} ms after the last write",
        stopped.elapsed().as_millis()
    );
    // the marker key is dropped once the checkpoint holds the position
    wait_until(10, "equal digests", || digest(&mut sc) == digest(&mut tc));
    // --metrics-addr: the Prometheus page shows the shard's progress and the counters
    wait_until(10, "metrics of the shard", || {
        use std::io::{Read, Write};
        let Ok(mut sock) = std::net::TcpStream::connect(&metrics) else {
            return false;
        };
        let _ = sock.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut page = String::new();
        let _ = sock.read_to_string(&mut page);
        page.contains("shake_replay_lag_bytes{shard=\"shard-000\"} ")
            && !page.contains("shake_replay_acked_offset{shard=\"shard-000\"} 0\n")
            && !page.contains("shake_replay_commands_total 0\n")
    });
    kill(rep.id(), "TERM");
    let out = finish(rep);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    kill(cap.id(), "TERM");
    let _ = finish(cap);
    assert!(dir.path().join("j.replay-state").is_dir());
}

/// The target is killed (-9) and restarted mid-stream (with an fsync-always AOF, so what it
/// acknowledged survives): replay retries with backoff, resumes using the marker, reports the
/// reconnections, and ends with an equal digest and exact counters. Regression: with two
/// batches in flight, a batch written after the reconnection overtook the resend of the one
/// whose connection broke (the counter was right, the list order and the digest were not).
#[test]
fn target_restart_mid_stream_is_retried_and_resumed_exactly() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| stream_writes(c, 3000));
    let mut target = Server::builder("7.0")
        .arg("appendonly", "yes")
        .arg("appendfsync", "always")
        .start();
    let url = target.url();
    let out = replay_through_a_crash(&j, &url, &[], || {
        target.kill9();
        std::thread::sleep(Duration::from_millis(800));
        target.restart();
    });
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("reconnects 0"), "{}", out.stdout);
    let mut sc = source.client();
    let mut tc = target.client();
    assert_eq!(tc.text(&["GET", "counter"]), sc.text(&["GET", "counter"]));
    assert_eq!(digest(&mut sc), digest(&mut tc));
}

/// A 7.4 journal with module values (Redis Stack) onto a 7.0 server without modules: other keys
/// are relabelled and restored; each module key gives a per-key error naming it (RedisShake
/// #413/#924: unknown module types aborted the run), the run goes on, and exits 1.
#[test]
fn module_keys_without_the_module_are_reported_per_key_and_not_fatal() {
    let source = Server::builder("7.4").modules().start();
    let mut sc = source.client();
    sc.cmd(&["JSON.SET", "doc", "$", r#"{"a":1}"#]);
    sc.cmd(&["HSET", "plain-hash", "f", "v"]);
    sc.cmd(&["SET", "plain", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&source.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let target = Server::start("7.0");
    let out = replay(&j, &target.url(), &["--no-checkpoint"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAILED: 1"), "{}", out.stdout);
    assert!(
        out.stderr.contains("doc"),
        "the key is named: {}",
        out.stderr
    );
    let mut tc = target.client();
    assert_eq!(tc.text(&["GET", "plain"]), "v");
    assert_eq!(tc.text(&["HGET", "plain-hash", "f"]), "v");
    assert_eq!(tc.cmd(&["EXISTS", "doc"]).as_int(), Some(0));
}

/// The writer follows MOVED (a slot map that says node 0 owns everything is corrected command
/// by command, and the keys land on their real owners) and ASK (a slot migrating from its owner
/// to another node: `ASKING` then the command on the importing node).
#[test]
fn writer_follows_moved_and_ask_on_a_real_cluster() {
    use shake::journal::Position;
    use shake::net::topology::{Mode, Node, Role, Shard, Topology};
    use shake::replay::checkpoint::Phase;
    use shake::replay::op::{Cmd, Op, Route, Unit};
    use shake::replay::router::SlotMap;
    use shake::replay::writer::Writer;
    use shake::replay::{ReplayOptions, Stats};
    use std::sync::Arc;

    let cluster = Cluster::start("7.0", 3, 0);
    let n0 = &cluster.nodes[0];
    let stale = Topology {
        mode: Mode::Cluster,
        shards: vec![Shard {
            slots: vec![(0, 16383)],
            master: Node {
                id: None,
                host: "127.0.0.1".into(),
                port: n0.port,
                role: Role::Master,
                health: "online".into(),
            },
            replicas: vec![],
        }],
        described_by: None,
    };
    // ASK: migrate the slot of "asked" from its owner to another master, keys not moved yet
    let (_, _, other) = start_migrating(&cluster, "asked");

    let opts = ReplayOptions::new(
        "/unused".into(),
        shake::net::Endpoint::parse(&n0.url()).unwrap(),
    );
    let stats = Arc::new(Stats::default());
    let mut w = Writer::new(
        "shard-000",
        &opts.target,
        &opts.connect,
        SlotMap::new(&stale, "unused"),
        false,
        stats.clone(),
        None,
    );
    let keys: Vec<String> = (0..200)
        .map(|i| format!("k{i}"))
        .chain(["asked".into()])
        .collect();
    let ops: Vec<Op> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Op {
            position: Position::new(1, i as u64 + 1, 0),
            phase: Phase::Stream,
            db: 0,
            end_db: 0,
            key: Some(bytes::Bytes::from(k.clone())),
            unit: Unit::Commands(vec![Cmd::new(
                vec![
                    bytes::Bytes::from_static(b"SET"),
                    bytes::Bytes::from(k.clone()),
                    bytes::Bytes::from_static(b"v"),
                ],
                Route::Slot(shake::net::slot::key_slot(k.as_bytes())),
            )]),
            guard: None,
            folded: Vec::new(),
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(w.execute(&ops))
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let s = stats.summary();
    assert_eq!(s.failed, 0, "{:?}", s.failures);
    assert!(s.redirects > 100, "MOVED followed: {}", s.redirects);
    let total: i64 = cluster
        .nodes
        .iter()
        .map(|n| n.client().cmd(&["DBSIZE"]).as_int().unwrap())
        .sum();
    assert_eq!(total, 201);
    let mut oc = other.client();
    oc.cmd(&["ASKING"]);
    assert_eq!(
        oc.text(&["GET", "asked"]),
        "v",
        "ASK followed to the importing node"
    );

    // Slot transactions with markers (a checkpointed replay): MOVED sends a slot's
    // transaction again to the right node; a resend after a broken connection leaves out the
    // slots whose marker shows them applied.
    let marker = shake::replay::partition::Marker {
        key: Vec::new(),
        lane: 2,
        lanes: 4,
        family: Vec::new(),
        journal_id: 9,
        shard: "shard-000".into(),
    };
    let stats = Arc::new(Stats::default());
    let mut w = Writer::new(
        "shard-000",
        &opts.target,
        &opts.connect,
        SlotMap::new(&stale, "unused"),
        false,
        stats.clone(),
        Some(marker.clone()),
    );
    let ops: Vec<Op> = (0..100)
        .map(|i| {
            let k = format!("counter:{}", i % 30);
            Op {
                position: Position::new(1, 1000 + i, 0),
                phase: Phase::Stream,
                db: 0,
                end_db: 0,
                key: Some(bytes::Bytes::from(k.clone())),
                unit: Unit::Commands(vec![Cmd::new(
                    vec![
                        bytes::Bytes::from_static(b"INCR"),
                        bytes::Bytes::from(k.clone()),
                    ],
                    Route::Slot(shake::net::slot::key_slot(k.as_bytes())),
                )]),
                guard: None,
                folded: Vec::new(),
            }
        })
        .collect();
    rt.block_on(w.execute(&ops))
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let s = stats.summary();
    assert_eq!(s.failed, 0, "{:?}", s.failures);
    assert!(s.redirects > 10, "MOVED followed: {}", s.redirects);
    let counter_total = |c: &Cluster| -> i64 {
        (0..30)
            .map(|i| {
                let k = format!("counter:{i}");
                let holder = c
                    .nodes
                    .iter()
                    .find(|n| n.client().try_cmd(&["EXISTS", &k]).unwrap().as_int() == Some(1))
                    .unwrap();
                holder.client().text(&["GET", &k]).parse::<i64>().unwrap()
            })
            .sum()
    };
    assert_eq!(counter_total(&cluster), 100);
    // each slot's marker records its last op, in that slot's hash, field = lane
    let last = ops
        .iter()
        .rfind(|o| o.key.as_deref() == Some(b"counter:7".as_slice()))
        .unwrap();
    let slot = shake::net::slot::key_slot(b"counter:7");
    let key = String::from_utf8(marker.slot_key(slot)).unwrap();
    let holder = cluster
        .nodes
        .iter()
        .find(|n| n.client().try_cmd(&["EXISTS", &key]).unwrap().as_int() == Some(1))
        .expect("slot marker written");
    assert_eq!(
        holder.client().text(&["HGET", &key, "2"]),
        format!("{} 4", last.position)
    );
    // everything applied: a resend sends nothing again
    rt.block_on(w.resend(&ops))
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    assert_eq!(counter_total(&cluster), 100, "nothing applied twice");
    // and the lane deletes the markers it wrote
    rt.block_on(w.clear_marker())
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    assert_eq!(cluster_markers(&cluster), 0);
}

/// A 3-master cluster's journal (three shards) replayed in parallel onto a standalone server
/// and onto another 3-master cluster (its slots dealt to other node ports): every key, with an
/// equal per-key digest.
#[test]
fn cluster_to_standalone_and_cluster_to_cluster() {
    let source = Cluster::start("7.0", 3, 0);
    let mut keys: Vec<(String, String)> = Vec::new(); // (key, DEBUG DIGEST-VALUE)
    for node in &source.nodes {
        let mut nc = node.client();
        let mut written = 0;
        let mut i = 0;
        while written < 40 {
            let key = format!("key:{i}");
            i += 1;
            if nc.try_cmd(&["RPUSH", &key, "a", &key]).unwrap().is_error() {
                continue;
            }
            nc.cmd(&["SADD", &format!("{{{key}}}:set"), "x", "y"]);
            written += 1;
        }
    }
    for node in &source.nodes {
        let mut nc = node.client();
        for k in nc.cmd(&["KEYS", "*"]).as_array().unwrap() {
            let k = k.as_str().unwrap().to_string();
            let d = nc.cmd(&["DEBUG", "DIGEST-VALUE", &k]);
            let d = d.as_array().unwrap()[0].as_str().unwrap().to_string();
            keys.push((k, d));
        }
    }
    assert_eq!(keys.len(), 240);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&source.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let standalone = Server::start("7.0");
    let out = replay(&j, &standalone.url(), &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let mut tc = standalone.client();
    assert_eq!(tc.cmd(&["DBSIZE"]).as_int(), Some(240));
    for (k, d) in &keys {
        let got = tc.cmd(&["DEBUG", "DIGEST-VALUE", k]);
        assert_eq!(got.as_array().unwrap()[0].as_str().unwrap(), d, "{k}");
    }

    let target = Cluster::start("7.0", 3, 0);
    let out = replay(&j, &target.url(), &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let mut found = 0;
    for node in &target.nodes {
        let mut nc = node.client();
        for k in nc.cmd(&["KEYS", "*"]).as_array().unwrap() {
            let k = k.as_str().unwrap().to_string();
            let d = nc.cmd(&["DEBUG", "DIGEST-VALUE", &k]);
            let want = &keys
                .iter()
                .find(|(key, _)| *key == k)
                .expect("only source keys")
                .1;
            assert_eq!(d.as_array().unwrap()[0].as_str().unwrap(), want, "{k}");
            found += 1;
        }
    }
    assert_eq!(found, 240);
}

/// The rest of the matrix: 6.0 → 6.0 and 7.4 → 7.4 (digest equal), and 7.4 → 7.0, where a hash
/// with field TTLs (type 25) must be rewritten and its field TTLs dropped: written, and reported
/// per key as not exact (never silently).
#[test]
fn matrix_same_version_and_7_4_onto_7_0_reports_what_is_not_exact() {
    for (from, to) in [("6.0", "6.0"), ("7.4", "7.4"), ("7.4", "7.0")] {
        let source = Server::start(from);
        let mut sc = source.client();
        populate_every_type(&mut sc);
        if from == "7.4" {
            sc.cmd(&["HSET", "fh", "f1", "v1", "f2", "v2"]);
            sc.cmd(&["HPEXPIRE", "fh", "3600000", "FIELDS", "1", "f1"]);
        }
        let dir = tempfile::tempdir().unwrap();
        let j = capture(&source, dir.path(), |c| stream_writes(c, 5));
        let target = Server::start(to);
        let out = replay(&j, &target.url(), &[]);
        assert_eq!(out.code, 0, "{from}→{to}: {}\n{}", out.stdout, out.stderr);
        let mut tc = target.client();
        if from == to {
            assert_eq!(digest(&mut sc), digest(&mut tc), "{from}→{to}");
        } else {
            // the hash's field TTL and the stream's consumer times (type 21 is rewritten too)
            assert!(!out.stdout.contains("not exact 0"), "{}", out.stdout);
            assert!(out.stderr.contains("FieldTtlDropped"), "{}", out.stderr);
            // zset: 7.0 and 7.4 print (and digest) scores differently — the same `ZADD z 0.1 m`
            // gives `0.10000000000000001` and `0.1` and different digests, verified — so it is
            // compared as parsed doubles.
            let scores = |c: &mut Client| -> Vec<(String, f64)> {
                let f = c.cmd(&["ZRANGE", "zset", "0", "-1", "WITHSCORES"]);
                f.as_array()
                    .unwrap()
                    .chunks(2)
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_string(),
                            p[1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect()
            };
            assert_eq!(scores(&mut tc), scores(&mut sc));
            for args in [vec!["HGETALL", "fh"], vec!["XRANGE", "stream", "-", "+"]] {
                assert_eq!(
                    format!("{:?}", tc.cmd(&args)),
                    format!("{:?}", sc.cmd(&args)),
                    "{args:?}"
                );
            }
            for c in [&mut sc, &mut tc] {
                c.cmd(&["DEL", "fh", "stream", "zset"]);
            }
            assert_eq!(
                differing_keys(&mut sc, &mut tc),
                Vec::<String>::new(),
                "{from}→{to} apart from fh, stream and zset"
            );
        }
    }
}

/// A password-protected target through `SHAKE_TARGET_PASSWORD`: replay works, and the password
/// appears nowhere in the output or the checkpoint.
#[test]
fn target_password_from_the_environment_never_printed() {
    let source = Server::start("7.0");
    source.client().cmd(&["SET", "k", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| {
        c.cmd(&["INCR", "n"]);
    });
    let target = Server::builder("7.0").password("s3cret-pw").start();
    let out = crate::support::run(
        shake()
            .args([
                "replay",
                j.to_str().unwrap(),
                "--target",
                &target.url_without_password(),
            ])
            .args(["--progress", "none", "-v"])
            .env("SHAKE_TARGET_PASSWORD", "s3cret-pw"),
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("s3cret-pw") && !out.stderr.contains("s3cret-pw"));
    let state = dir.path().join("j.replay-state");
    for f in std::fs::read_dir(state).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains("s3cret-pw"), "{text}");
    }
    let mut tc = target.client();
    tc.cmd(&["AUTH", "s3cret-pw"]);
    assert_eq!(tc.text(&["GET", "k"]), "v");
    assert_eq!(tc.text(&["GET", "n"]), "1");
}

/// kill -9 of replay in the middle of the snapshot, on both paths, then resume: keys after the
/// checkpoint are sent again (RESTORE … REPLACE / DEL first), so no list gets duplicated
/// elements and the digest is equal.
#[test]
fn kill9_during_the_snapshot_then_resume_on_both_paths() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    for i in 0..3000 {
        sc.cmd(&["RPUSH", &format!("list:{i}"), "a", "b", "c"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&source.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for restore in ["auto", "never"] {
        let target = Server::start("7.0");
        let url = target.url();
        let child = spawn_shake(&[
            "replay",
            j.to_str().unwrap(),
            "--target",
            &url,
            "--restore",
            restore,
            "--pipeline",
            "32",
            "--max-ops",
            "800",
            "--checkpoint",
            dir.path().join(format!("{restore}.json")).to_str().unwrap(),
        ]);
        std::thread::sleep(Duration::from_millis(1800));
        kill(child.id(), "KILL");
        let _ = finish(child);
        let mut tc = target.client();
        let partial = tc.cmd(&["DBSIZE"]).as_int().unwrap();
        assert!(
            partial > 0 && partial < 3000,
            "killed mid-snapshot ({partial} keys)"
        );
        let out = replay(
            &j,
            &url,
            &[
                "--restore",
                restore,
                "--checkpoint",
                dir.path().join(format!("{restore}.json")).to_str().unwrap(),
            ],
        );
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(
            !out.stdout.contains("snapshot keys 3000 "),
            "resumed, not restarted: {}",
            out.stdout
        );
        assert_eq!(digest(&mut sc), digest(&mut tc), "--restore {restore}");
    }
}

/// Stream traffic spread over many keys, so that `--connections N` puts it on every lane, with
/// what must be a barrier interleaved: multi-key commands across lanes, transactions, a
/// script, `FLUSHDB`, `SWAPDB` and `SELECT`s.
fn many_key_writes(c: &mut Client, rounds: usize) {
    for i in 0..rounds {
        let k = i % 37;
        c.cmd(&["INCR", &format!("counter:{k}")]);
        c.cmd(&["RPUSH", &format!("list:{}", i % 23), &i.to_string()]);
        c.cmd(&["SET", &format!("str:{i}"), &format!("v{i}")]);
        if i % 50 == 7 {
            c.cmd(&[
                "MSET",
                &format!("m:{i}"),
                "1",
                &format!("counter:{k}"),
                "100",
            ]);
            c.cmd(&["DEL", &format!("str:{}", i / 2), &format!("list:{}", i % 5)]);
        }
        if i % 97 == 11 {
            c.cmd(&["MULTI"]);
            c.cmd(&["INCR", &format!("counter:{k}")]);
            c.cmd(&["LPUSH", &format!("list:{}", (i + 3) % 23), "tx"]);
            c.cmd(&["EXEC"]);
            c.cmd(&[
                "EVAL",
                "redis.call('INCRBY', KEYS[1], 5) return redis.call('RPUSH', KEYS[2], 'e')",
                "2",
                &format!("counter:{}", (k + 1) % 37),
                &format!("list:{}", (i + 7) % 23),
            ]);
        }
        if i % 211 == 100 {
            c.cmd(&["SELECT", "3"]);
            c.cmd(&["INCR", &format!("counter:{k}")]);
            c.cmd(&["FLUSHDB"]);
            c.cmd(&["SET", "after-flush", &i.to_string()]);
            c.cmd(&["SELECT", "0"]);
        }
        if i == rounds / 2 {
            c.cmd(&["SELECT", "5"]);
            c.cmd(&["SET", "in5", "x"]);
            c.cmd(&["SELECT", "0"]);
            c.cmd(&["SWAPDB", "3", "5"]);
        }
    }
}

/// Every db's digest of a server (`DEBUG DIGEST` covers all dbs).
fn assert_same_data(sc: &mut Client, tc: &mut Client) {
    for db in ["0", "3", "5"] {
        sc.cmd(&["SELECT", db]);
        tc.cmd(&["SELECT", db]);
        assert_eq!(sc.cmd(&["DBSIZE"]), tc.cmd(&["DBSIZE"]), "db {db}");
    }
    sc.cmd(&["SELECT", "0"]);
    tc.cmd(&["SELECT", "0"]);
    assert_eq!(digest(sc), digest(tc), "{:?}", differing_keys(sc, tc));
}

/// `--connections 4` (and 1, and 7) on a stream whose commands touch many keys with barriers
/// interleaved: the target ends equal to the source, in bulk without checkpoint and in the
/// default mode (atomic marker batches per connection), and no marker key is left behind.
#[test]
fn several_connections_keep_order_per_key_and_barriers() {
    let source = Server::start("7.0");
    populate_every_type(&mut source.client());
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| many_key_writes(c, 1500));
    let mut sc = source.client();
    for (conns, extra) in [
        ("4", &["--no-checkpoint"][..]),
        ("4", &[][..]),
        ("1", &[][..]),
        ("7", &["--pipeline", "16"][..]),
    ] {
        let target = Server::start("7.0");
        let mut args = vec!["--connections", conns];
        args.extend_from_slice(extra);
        let out = replay(&j, &target.url(), &args);
        assert_eq!(
            out.code, 0,
            "{conns} {extra:?}\n{}\n{}",
            out.stdout, out.stderr
        );
        let mut tc = target.client();
        assert_same_data(&mut sc, &mut tc);
        assert!(
            tc.cmd(&["KEYS", "shake-replay:*"])
                .as_array()
                .unwrap()
                .is_empty(),
            "markers left behind"
        );
    }
}

/// kill -9 of a replay with several connections, three times mid-stream, then a resume: the
/// per-connection markers make every INCR/RPUSH land exactly once. The last resume asks for
/// another connection count: the interrupted run's is adopted, so its markers still apply.
#[test]
fn kill9_with_several_connections_then_resume_applies_nothing_twice() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| many_key_writes(c, 2500));
    let target = Server::start("7.0");
    let url = target.url();
    let slow: &[&str] = &[
        "--connections",
        "4",
        "--pipeline",
        "32",
        "--max-ops",
        "1000",
    ];
    kill9_replays(&j, &url, &[(slow, 500), (slow, 800), (slow, 1100)]);
    let mut sc = source.client();
    let mut tc = target.client();
    assert!(
        !tc.cmd(&["KEYS", "shake-replay:*"])
            .as_array()
            .unwrap()
            .is_empty(),
        "the kills must land mid-stream (markers present)"
    );
    let out = replay(&j, &url, &["--connections", "2", "-v"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("resuming with as many"),
        "the interrupted run's connection count is adopted: {}",
        out.stderr
    );
    for k in 0..37 {
        let key = format!("counter:{k}");
        assert_eq!(tc.cmd(&["GET", &key]), sc.cmd(&["GET", &key]), "{key}");
    }
    for l in 0..23 {
        let key = format!("list:{l}");
        assert_eq!(tc.cmd(&["LLEN", &key]), sc.cmd(&["LLEN", &key]), "{key}");
    }
    assert_same_data(&mut sc, &mut tc);
    assert!(
        tc.cmd(&["KEYS", "shake-replay:*"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A cluster target with several connections per node: the stream of many keys (multi-key
/// commands split per slot or sent as barriers, transactions, a script on one slot) ends with
/// every key equal to the source's.
#[test]
fn several_connections_onto_a_cluster() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| cluster_writes(c, 1500, None));
    let cluster = Cluster::start("7.0", 3, 0);
    let out = replay(
        &j,
        &cluster.url(),
        &["--connections", "4", "--pipeline", "64"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_cluster_holds_source(&mut source.client(), &cluster);
    // a second run resumes from the checkpoint: nothing left to send
    let out = replay(&j, &cluster.url(), &["--connections", "4"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_cluster_holds_source(&mut source.client(), &cluster);
}

/// Stream traffic for a cluster target: counters (INCR) and lists (RPUSH) on many keys,
/// strings, multi-key commands across slots (split per slot) and within one slot, a MULTI block
/// and a script on one slot; a FLUSHALL after round `flush_at`.
fn cluster_writes(c: &mut Client, rounds: usize, flush_at: Option<usize>) {
    for i in 0..rounds {
        let k = i % 37;
        c.cmd(&["INCR", &format!("counter:{k}")]);
        c.cmd(&["RPUSH", &format!("list:{}", i % 23), &i.to_string()]);
        c.cmd(&["SET", &format!("str:{i}"), &format!("v{i}")]);
        if i % 40 == 7 {
            let (m, kk) = (format!("m:{i}"), format!("counter:{k}"));
            c.cmd(&["MSET", &m, "1", &kk, "100"]);
            c.cmd(&["DEL", &format!("str:{}", i / 2), &format!("list:{}", i % 5)]);
            c.cmd(&["MSET", "{t}a", &i.to_string(), "{t}b", "x"]);
        }
        if i % 97 == 11 {
            c.cmd(&["MULTI"]);
            c.cmd(&["INCR", "{t}n"]);
            c.cmd(&["RPUSH", "{t}l", &i.to_string()]);
            c.cmd(&["EXEC"]);
            let script =
                "redis.call('INCRBY', KEYS[1], 5) return redis.call('RPUSH', KEYS[2], 'e')";
            c.cmd(&["EVAL", script, "2", "{t}e", "{t}l"]);
        }
        if flush_at == Some(i) {
            c.cmd(&["FLUSHALL"]);
        }
    }
}

/// Every key of the source's db 0 is on the cluster with the same value, and nothing else is
/// (no replay marker left behind).
fn assert_cluster_holds_source(sc: &mut Client, cluster: &Cluster) {
    let keys = sc.cmd(&["KEYS", "*"]);
    let keys = keys.as_array().unwrap();
    let mut total = 0;
    for m in cluster.masters() {
        total += m.client().cmd(&["DBSIZE"]).as_int().unwrap();
    }
    if total != keys.len() as i64 {
        let want: std::collections::HashSet<&str> =
            keys.iter().map(|k| k.as_str().unwrap()).collect();
        let mut extra = Vec::new();
        for m in cluster.masters() {
            let have = m.client().cmd(&["KEYS", "*"]);
            for k in have.as_array().unwrap() {
                let k = k.as_str().unwrap();
                if !want.contains(k) {
                    extra.push(k.to_string());
                }
            }
        }
        panic!(
            "{total} keys on the cluster, {} at the source; not at the source: {extra:?}",
            keys.len()
        );
    }
    for k in keys {
        let k = k.as_str().unwrap();
        let want = sc.cmd(&["DEBUG", "DIGEST-VALUE", k]);
        let holder = cluster
            .masters()
            .into_iter()
            .find(|m| m.client().try_cmd(&["EXISTS", k]).unwrap().as_int() == Some(1))
            .unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(
            holder.client().cmd(&["DEBUG", "DIGEST-VALUE", k]),
            want,
            "{k}"
        );
    }
}

/// The replay markers on a cluster's masters.
fn cluster_markers(cluster: &Cluster) -> usize {
    cluster
        .masters()
        .iter()
        .map(|m| {
            m.client()
                .cmd(&["KEYS", "shake-replay:*"])
                .as_array()
                .unwrap()
                .len()
        })
        .sum()
}

/// Starts migrating the slot of `key` from its owner to another master of `cluster`
/// (`SETSLOT … IMPORTING` / `MIGRATING`, no key moved): the slot, its owner and the other node.
fn start_migrating<'a>(cluster: &'a Cluster, key: &str) -> (String, &'a Server, &'a Server) {
    let slot = shake::net::slot::key_slot(key.as_bytes()).to_string();
    let owner = cluster
        .nodes
        .iter()
        .find(|n| {
            !matches!(
                n.client().try_cmd(&["GET", key]).unwrap(),
                shake::resp::Frame::Error(_)
            )
        })
        .unwrap();
    let other = cluster.nodes.iter().find(|n| n.port != owner.port).unwrap();
    let id = |n: &Server| n.client().text(&["CLUSTER", "MYID"]);
    other
        .client()
        .cmd(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(owner)]);
    owner
        .client()
        .cmd(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(other)]);
    (slot, owner, other)
}

/// Every key and string value held by the masters of `nodes` (a cluster's), sorted.
fn cluster_strings(nodes: &[&Server]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for n in nodes {
        let mut c = n.client();
        for k in c.cmd(&["KEYS", "*"]).as_array().unwrap() {
            let k = k.as_str().unwrap().to_string();
            if k.starts_with("shake-replay:") {
                continue;
            }
            all.push((k.clone(), c.text(&["GET", &k])));
        }
    }
    all.sort();
    all
}

/// Starts capturing `source` (a cluster) into `j` of a new temporary folder, returned with the
/// capture once it is attached to every master and the snapshot is in the journal.
fn capture_every_master(source: &Cluster) -> (tempfile::TempDir, LiveCapture) {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let masters = source.masters();
    let cap = LiveCapture::start(&source.url(), &j, &[], masters[0], 1);
    for m in &masters {
        wait_until(30, "capture attached to every master", || {
            m.client()
                .text(&["INFO", "replication"])
                .contains("slave0:")
        });
        wait_caught_up(m);
    }
    wait_snapshot_in_journal(&j);
    (dir, cap)
}

/// A `FLUSHALL` sent to one master of a source cluster (as clients do, master by master) is
/// in that shard's stream only: replayed, it deletes the keys of that shard's slots and nothing
/// else — not what the other shards replayed before or after it (sent as it is, it emptied
/// the whole target). Onto a cluster and onto a standalone target, the target ends equal.
#[test]
fn a_flush_of_one_source_shard_deletes_only_its_slots() {
    let source = Cluster::start("7.0", 3, 0);
    let (dir, cap) = capture_every_master(&source);
    let j = dir.path().join("j");
    let masters = source.masters();
    // keys each master owns, written on it
    let write = |n: &Server, prefix: &str, count: usize| {
        let mut c = n.client();
        let (mut written, mut i) = (0, 0);
        while written < count {
            let k = format!("{prefix}:{i}");
            i += 1;
            if !c.try_cmd(&["SET", &k, &k]).unwrap().is_error() {
                written += 1;
            }
        }
    };
    for m in &masters {
        write(m, "pre", 40);
    }
    // the flushed shard has much more to replay before its flush than the others
    write(masters[0], "bulk", 3000);
    masters[0].client().cmd(&["FLUSHALL"]);
    for m in &masters {
        write(m, "post", 40);
    }
    for m in &masters {
        wait_caught_up(m);
    }
    cap.stop();
    let want = cluster_strings(&masters);
    assert_eq!(want.len(), 40 * 2 + 40 * 3);

    let target = Cluster::start("7.0", 3, 0);
    let out = replay(&j, &target.url(), &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(cluster_strings(&target.masters()), want);
    assert!(
        out.stderr.contains("one source master was flushed"),
        "{}",
        out.stderr
    );

    let standalone = Server::start("7.0");
    let out = replay(&j, &standalone.url(), &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(cluster_strings(&[&standalone]), want);
}

/// A key `<prefix>:<i>` in a slot the master `n` serves and that is not the first of a range
/// of a 3-master cluster (a journal shard follows the master of its first slot).
fn owned_by(n: &Server, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| {
            let slot = shake::net::slot::key_slot(k.as_bytes());
            ![0, 5461, 10923].contains(&slot)
                && !n.client().try_cmd(&["GET", k]).unwrap().is_error()
        })
        .unwrap()
}

/// Gives the slot of `key` (and `key`, when it exists) from the master `from` to `to` of
/// `cluster`, as `redis-cli --cluster reshard` does.
fn move_slot(cluster: &Cluster, key: &str, from: &Server, to: &Server) {
    let slot = shake::net::slot::key_slot(key.as_bytes()).to_string();
    let id = |n: &Server| n.client().text(&["CLUSTER", "MYID"]);
    let (from_id, to_id) = (id(from), id(to));
    to.client()
        .cmd(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    from.client()
        .cmd(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    let port = to.port.to_string();
    from.client()
        .cmd(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key]);
    for n in &cluster.nodes {
        n.client()
            .cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
}

/// Regression: a flush of one source shard deleted the keys of the slots that shard served
/// when the journal was created. After a slot had moved from that master to another, the
/// keys written there since (journaled by the other master's shard) were deleted on the
/// target too — lost without a word — and the keys of a slot that had moved in were kept.
/// The shard's slots now follow the topology markers capture writes: the target ends equal
/// to the source. (The slots move empty: a key moved with its slot is journaled in two
/// shards, see docs/replay.md.)
#[test]
fn a_flush_after_slots_moved_deletes_the_slots_the_master_then_served() {
    let source = Cluster::start("7.0", 3, 0);
    let (dir, cap) = capture_every_master(&source);
    let j = dir.path().join("j");
    let masters = source.masters();
    // a slot of masters[0] and one of masters[1], named by a key in each
    let out = owned_by(masters[0], "out");
    let inn = owned_by(masters[1], "in");
    let moving = [&out, &inn].map(|k| shake::net::slot::key_slot(k.as_bytes()));
    let write = |i: usize, m: &Server, count: usize| {
        let mut c = m.client();
        let mut written = 0;
        for n in 0.. {
            let k = format!("pre{i}:{n}");
            if moving.contains(&shake::net::slot::key_slot(k.as_bytes())) {
                continue; // the moving slots stay empty
            }
            if !c.try_cmd(&["SET", &k, &k]).unwrap().is_error() {
                written += 1;
                if written == count {
                    break;
                }
            }
        }
    };
    for (i, m) in masters.iter().enumerate() {
        write(i, m, 20);
    }
    move_slot(&source, &out, masters[0], masters[1]);
    move_slot(&source, &inn, masters[1], masters[0]);
    masters[1].client().cmd(&["SET", &out, "kept"]);
    masters[0].client().cmd(&["SET", &inn, "flushed"]);
    // capture reads the layout every 5 s and journals the change in every shard
    std::thread::sleep(Duration::from_secs(7));
    // the flushed shard has much more to replay before its flush than the others
    write(0, masters[0], 3000);
    for m in &masters {
        wait_caught_up(m);
    }
    std::thread::sleep(Duration::from_millis(200));
    let before_flush = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(200));
    masters[0].client().cmd(&["FLUSHALL"]);
    for m in &masters {
        wait_caught_up(m);
    }
    cap.stop();
    let want = cluster_strings(&masters);
    assert!(want.contains(&(out.clone(), "kept".into())), "{want:?}");
    assert_eq!(want.len(), 1 + 20 * 2, "{want:?}");

    let standalone = Server::start("7.0");
    let replayed = replay(&j, &standalone.url(), &[]);
    assert_eq!(replayed.code, 0, "{}\n{}", replayed.stdout, replayed.stderr);
    assert_eq!(cluster_strings(&[&standalone]), want);
    assert!(
        replayed.stderr.contains("the source's layout changed"),
        "{}",
        replayed.stderr
    );

    // resumed from a checkpoint between the layout's change and the flush: the resumed run
    // follows the markers it passes over before its checkpoint
    let resumed = Server::start("7.0");
    let first = replay(&j, &resumed.url(), &["--until-time", &before_flush]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(cluster_strings(&[&resumed]).contains(&(inn.clone(), "flushed".into())));
    let rest = replay(&j, &resumed.url(), &[]);
    assert_eq!(rest.code, 0, "{}\n{}", rest.stdout, rest.stderr);
    assert!(
        !rest.stdout.contains("commands sent 0"),
        "{}\n{}",
        rest.stdout,
        rest.stderr
    );
    assert_eq!(cluster_strings(&[&resumed]), want);
}

/// The layout change is recorded in an epoch that is not replayed: the flushed master was
/// restarted empty after the resharding (a full resync: its shard replays only its new epoch),
/// then flushed. The flush still deletes the slots it served then (the markers of earlier
/// epochs are read when a flush needs them).
#[test]
fn a_flush_after_a_full_resync_uses_the_layout_recorded_in_an_earlier_epoch() {
    let mut source = Cluster::start("7.0", 3, 0);
    let (dir, cap) = capture_every_master(&source);
    let j = dir.path().join("j");
    let slot_of = |k: &str| shake::net::slot::key_slot(k.as_bytes());
    let (out, inn) = {
        let masters = source.masters();
        let out = owned_by(masters[0], "out");
        let inn = owned_by(masters[1], "in");
        move_slot(&source, &out, masters[0], masters[1]);
        move_slot(&source, &inn, masters[1], masters[0]);
        masters[1].client().cmd(&["SET", &out, "kept"]);
        (out, inn)
    };
    // capture reads the layout every 5 s and journals the change in every shard
    std::thread::sleep(Duration::from_secs(7));
    source.nodes[0].restart();
    let masters = source.masters();
    wait_until(60, "the restarted master serves its slots again", || {
        masters[0]
            .client()
            .try_cmd(&["SET", &inn, "flushed"])
            .is_ok_and(|r| !r.is_error())
    });
    wait_until(60, "capture attached to the restarted master again", || {
        masters[0]
            .client()
            .text(&["INFO", "replication"])
            .contains("slave0:")
    });
    // the flushed shard has more to replay before its flush than the others
    let mut c = masters[0].client();
    let mut written = 0;
    for n in 0.. {
        let k = format!("bulk:{n}");
        if slot_of(&k) != slot_of(&inn) && !c.try_cmd(&["SET", &k, &k]).unwrap().is_error() {
            written += 1;
            if written == 3000 {
                break;
            }
        }
    }
    c.cmd(&["FLUSHALL"]);
    for m in &masters {
        wait_caught_up(m);
    }
    cap.stop();
    let want = cluster_strings(&masters);
    assert!(want.contains(&(out.clone(), "kept".into())), "{want:?}");
    assert!(!want.iter().any(|(k, _)| *k == inn), "{want:?}");

    let standalone = Server::start("7.0");
    let replayed = replay(&j, &standalone.url(), &[]);
    assert_eq!(replayed.code, 0, "{}\n{}", replayed.stdout, replayed.stderr);
    assert_eq!(cluster_strings(&[&standalone]), want);
}

/// A key moved with its slot between source masters while capture ran is in two shards'
/// streams (the old master's `DEL`, the new one's `RESTORE-ASKING` and the writes after),
/// which replay applies without order between them: the target could end with an older
/// value or without the key. Not yet ordered (docs/replay.md, "Not done yet"), so never
/// silent: the key is named in a warning and the summary counts it.
#[test]
fn a_key_moved_between_source_masters_is_named_in_a_warning() {
    let source = Cluster::start("7.0", 3, 0);
    let (dir, cap) = capture_every_master(&source);
    let j = dir.path().join("j");
    let masters = source.masters();
    let key = (0..)
        .map(|i| format!("moving:{i}"))
        .find(|k| {
            !masters[0]
                .client()
                .try_cmd(&["SET", k, "before"])
                .unwrap()
                .is_error()
        })
        .unwrap();
    move_slot(&source, &key, masters[0], masters[1]);
    masters[1].client().cmd(&["SET", &key, "after"]);
    for m in &masters {
        wait_caught_up(m);
    }
    cap.stop();
    let standalone = Server::start("7.0");
    let out = replay(&j, &standalone.url(), &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("moved between source masters") && out.stderr.contains(&key),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("WARNING: 1 key(s) moved between source masters"),
        "{}",
        out.stdout
    );
}

/// Replays `j` onto `cluster` (`--max-retries 2` and `extra`) while the slot of `key` is being
/// migrated: held 6 s, then given to the other node. The replay must wait it out (exit 0,
/// saying the slot is being migrated); its output and the slot's new owner are returned.
fn replay_through_a_migration<'a>(
    j: &Path,
    cluster: &'a Cluster,
    key: &str,
    extra: &[&str],
) -> (crate::support::Output, &'a Server) {
    let (slot, _, other) = start_migrating(cluster, key);
    let other_id = other.client().text(&["CLUSTER", "MYID"]);
    let url = cluster.url();
    let mut args = vec!["replay", j.to_str().unwrap(), "--target", &url];
    args.extend(["--max-retries", "2"]);
    args.extend(extra);
    let child = spawn_shake(&args);
    std::thread::sleep(Duration::from_secs(6));
    for n in &cluster.nodes {
        n.client()
            .cmd(&["CLUSTER", "SETSLOT", &slot, "NODE", &other_id]);
    }
    let out = finish(child);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains(&format!("slot {slot} is being migrated")),
        "{}",
        out.stderr
    );
    (out, other)
}

/// A slot being migrated on the target holds its slot transactions back (`ASK` for the whole
/// transaction, `TRYAGAIN`) for longer than the retry rounds allow (`--max-retries 2`: four
/// rounds, about 1.5 s): replay sees the migration in `CLUSTER NODES`, says so, and waits for
/// it to end instead of stopping; then every INCR lands once on the new owner.
#[test]
fn a_long_slot_migration_on_the_target_is_waited_out() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| {
        c.cmd(&["SET", "k", "0"]);
        for _ in 0..5 {
            c.cmd(&["INCR", "k"]);
        }
    });
    let cluster = Cluster::start("7.0", 3, 0);
    let (_, other) = replay_through_a_migration(&j, &cluster, "k", &[]);
    assert_eq!(other.client().text(&["GET", "k"]), "5");
}

/// Starts a replay of `j` onto `cluster` slow enough (`--max-ops 2000`, 4 connections of 32
/// commands) for a failover to land mid-stream, and gives it 1.5 s to get going.
fn slow_replay_started(j: &Path, cluster: &Cluster) -> std::process::Child {
    let child = spawn_shake(&[
        "replay",
        j.to_str().unwrap(),
        "--target",
        &cluster.url(),
        "--connections",
        "4",
        "--pipeline",
        "32",
        "--max-ops",
        "2000",
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    child
}

/// A failover on the target cluster while replay writes (`CLUSTER FAILOVER` on each master's
/// replica in turn, the old masters becoming replicas): the slot transactions refused or
/// redirected by the demoted masters follow `MOVED` to the promoted ones, and every INCR and
/// RPUSH of the stream lands exactly once (the target ends equal to the source).
#[test]
fn a_failover_on_the_target_cluster_is_followed() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| cluster_writes(c, 2500, None));
    let cluster = Cluster::start("7.0", 3, 1);
    let child = slow_replay_started(&j, &cluster);
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port).collect();
    for port in masters {
        let replica = cluster.replica_of(port);
        replica.client().cmd(&["CLUSTER", "FAILOVER"]);
        wait_until(30, "the replica to become master", || {
            replica
                .client()
                .info_field("replication", "role")
                .as_deref()
                == Some("master")
        });
    }
    let out = finish(child);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("failed: 0"), "{}", out.stdout);
    let redirects: u64 = out
        .stdout
        .split("redirects ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        redirects > 0,
        "the failovers must land mid-stream: {}",
        out.stdout
    );
    for n in &cluster.nodes {
        wait_until(30, "the cluster to settle", || {
            n.client()
                .text(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
        });
    }
    assert_cluster_holds_source(&mut source.client(), &cluster);
}

/// A replica of the target cluster down when replay starts (the topology still counts it):
/// the first `WAIT` for it times out, that is warned about, and its master's writes are not
/// waited for again — the replay goes on and the target ends equal.
#[test]
fn a_replica_down_on_the_target_is_warned_about_and_not_waited_for() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| cluster_writes(c, 500, None));
    let mut cluster = Cluster::start("7.0", 3, 1);
    let down = cluster
        .nodes
        .iter()
        .position(|n| n.client().info_field("replication", "role").as_deref() == Some("slave"))
        .unwrap();
    let master_port: u16 = cluster.nodes[down]
        .client()
        .info_field("replication", "master_port")
        .unwrap()
        .parse()
        .unwrap();
    cluster.nodes[down].kill9();
    let out = replay(&j, &cluster.url(), &["--connections", "2"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let warned = out.stderr.matches("no longer waited for").count();
    assert!(
        (1..=2).contains(&warned),
        "one warning per lane at most, got {warned}: {}",
        out.stderr
    );
    // its master got one WAIT per lane, not one per round
    let master = cluster
        .nodes
        .iter()
        .find(|n| n.port == master_port)
        .unwrap();
    let stats = master.client().text(&["INFO", "commandstats"]);
    let waits: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        (1..=2).contains(&waits),
        "WAITs sent to the lagging master: {waits}"
    );
    cluster.rejoin_as_replica(down);
    assert_cluster_holds_source(&mut source.client(), &cluster);
}

/// A master of the target cluster killed (-9) while replay writes: its replica takes over
/// (automatic failover), replay reconnects, reads the slot markers on the promoted replica and
/// resends what it lacks. Rounds count as acknowledged only once the replicas have them
/// (`WAIT`), so nothing acknowledged dies with the master: the target ends equal to the source,
/// every INCR/RPUSH once.
#[test]
fn a_master_killed_mid_replay_is_failed_over_and_nothing_is_lost() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| cluster_writes(c, 2500, None));
    let mut cluster = Cluster::start("7.0", 3, 1);
    let child = slow_replay_started(&j, &cluster);
    let victim = cluster
        .nodes
        .iter()
        .position(|n| {
            n.port != cluster.nodes[0].port
                && n.client().info_field("replication", "role").as_deref() == Some("master")
        })
        .unwrap();
    cluster.nodes[victim].kill9();
    let out = finish(child);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("failed: 0"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("reconnects 0"),
        "the kill must land mid-stream: {}",
        out.stdout
    );
    cluster.rejoin_as_replica(victim); // back as a replica of the promoted one
    assert_cluster_holds_source(&mut source.client(), &cluster);
}

/// kill -9 of a replay onto a 3-master cluster with several connections, three times
/// mid-stream, then a resume: the per-slot markers make every INCR/RPUSH land exactly once —
/// also across multi-key commands split per slot, transactions and scripts on one slot, and a
/// FLUSHALL — and no marker stays in the data.
#[test]
fn kill9_onto_a_cluster_then_resume_applies_nothing_twice() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| cluster_writes(c, 2500, Some(200)));
    let cluster = Cluster::start("7.0", 3, 0);
    let url = cluster.url();
    let slow: &[&str] = &["--connections", "4", "--pipeline", "32", "--max-ops", "800"];
    kill9_replays(&j, &url, &[(slow, 700), (slow, 1000), (slow, 1300)]);
    assert!(
        cluster_markers(&cluster) > 0,
        "the kills must land mid-stream (markers present)"
    );
    let out = replay(&j, &url, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("failed: 0"), "{}", out.stdout);
    assert_cluster_holds_source(&mut source.client(), &cluster);
    assert_eq!(cluster_markers(&cluster), 0, "markers left behind");
}

/// Stream traffic made of runs of plain SETs (folded into MSETs by replay) around the commands
/// that must break a run: a SET with options, another db, a type change, a DEL, non-idempotent
/// INCR/RPUSH recording where each run ended.
fn set_runs(c: &mut Client, runs: usize) {
    for r in 0..runs {
        for i in 0..40 {
            // keys repeat inside a run (the last value must win) and across runs
            c.cmd(&[
                "SET",
                &format!("s:{}", (r * 7 + i) % 300),
                &format!("{r}-{i}"),
            ]);
        }
        c.cmd(&["INCR", "runs"]);
        c.cmd(&["RPUSH", "log", &r.to_string()]);
        match r % 5 {
            0 => {
                c.cmd(&["SET", &format!("s:{}", r % 300), "ttl", "EX", "5000"]);
            }
            1 => {
                c.cmd(&["SELECT", "2"]);
                c.cmd(&["SET", "in2", &r.to_string()]);
                c.cmd(&["SET", "in2b", &r.to_string()]);
                c.cmd(&["SELECT", "0"]);
            }
            2 => {
                // a key that is a list for a while, then a string again
                c.cmd(&["DEL", "morph"]);
                c.cmd(&["RPUSH", "morph", "a", "b"]);
                c.cmd(&["SET", "morph", &r.to_string()]);
            }
            3 => {
                c.cmd(&["DEL", &format!("s:{}", (r * 7) % 300)]);
            }
            _ => {
                c.cmd(&["SET", "kept", "x", "KEEPTTL"]);
            }
        }
    }
}

/// Folding SETs into MSETs (the default) and not folding (`--no-fold`) give the same target,
/// on one and several connections, in bulk and in the default atomic-batch mode; snapshot
/// strings without TTL (small, int-encoded, empty, a HyperLogLog) go by SET, those with a TTL
/// or above 64 KiB by RESTORE, and the summary says how many went each way.
#[test]
fn folded_sets_give_the_same_target_as_unfolded_ones() {
    let source = Server::start("7.0");
    let mut sc = source.client();
    populate_every_type(&mut sc);
    for i in 0..500 {
        sc.cmd(&["SET", &format!("plain:{i}"), &format!("value-{i}")]);
    }
    sc.cmd(&["SET", "int", "123456"]);
    sc.cmd(&["SET", "empty", ""]);
    sc.cmd(&["PFADD", "hll", "a", "b", "c"]);
    sc.cmd(&["SET", "withttl", "v", "EX", "5000"]);
    sc.cmd(&["SET", "big", &"x".repeat(70 << 10)]);
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| set_runs(c, 120));
    for extra in [
        &["--connections", "1", "--no-checkpoint", "--threads", "1"][..],
        &["--connections", "4"][..],
        &["--connections", "3", "--no-fold", "--no-checkpoint"][..],
    ] {
        let target = Server::start("7.0");
        let out = replay(&j, &target.url(), extra);
        assert_eq!(out.code, 0, "{extra:?}\n{}\n{}", out.stdout, out.stderr);
        let by_set = out
            .stdout
            .split("strings by SET ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no 'strings by SET' in {}", out.stdout));
        if extra.contains(&"--no-fold") {
            assert_eq!(by_set, 0, "{}", out.stdout);
        } else {
            assert!(by_set >= 503, "{}", out.stdout);
        }
        let mut tc = target.client();
        assert_same_data(&mut sc, &mut tc);
        assert_eq!(
            tc.cmd(&["LRANGE", "log", "0", "-1"]),
            sc.cmd(&["LRANGE", "log", "0", "-1"])
        );
        assert_eq!(
            pexpiretime(&mut tc, "withttl"),
            pexpiretime(&mut sc, "withttl")
        );
        assert_eq!(tc.cmd(&["PFCOUNT", "hll"]).as_int(), Some(3));
        assert_eq!(tc.cmd(&["STRLEN", "big"]).as_int(), Some(70 << 10));
    }
}

/// kill -9 of a replay while it sends folded SETs, three times, then a resume: the runs
/// recorded by INCR/RPUSH land exactly once and every string holds the source's last value.
#[test]
fn kill9_while_sending_folded_sets_then_resume_applies_nothing_twice() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| set_runs(c, 400));
    let target = Server::start("7.0");
    let url = target.url();
    let one: &[&str] = &[
        "--connections",
        "1",
        "--pipeline",
        "16",
        "--max-ops",
        "2000",
    ];
    let four: &[&str] = &[
        "--connections",
        "4",
        "--pipeline",
        "16",
        "--max-ops",
        "2000",
    ];
    kill9_replays(&j, &url, &[(one, 500), (four, 800), (four, 1100)]);
    let mut sc = source.client();
    let mut tc = target.client();
    let partial: i64 = tc.text(&["GET", "runs"]).parse().unwrap_or(0);
    assert!(
        partial < 400,
        "the kills must land mid-stream ({partial} of 400 runs)"
    );
    let out = replay(&j, &url, &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(tc.text(&["GET", "runs"]), "400");
    assert_eq!(
        tc.cmd(&["LRANGE", "log", "0", "-1"]),
        sc.cmd(&["LRANGE", "log", "0", "-1"])
    );
    assert_same_data(&mut sc, &mut tc);
}

/// An MSET carrying folded SETs is refused (here: one of its keys is outside the replay user's
/// ACL key patterns): every SET it carried is reported as failed with its own key and
/// position, none silently; with `--no-fold` only the refused key fails.
#[test]
fn a_refused_mset_is_reported_against_every_folded_set() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| {
        for i in 0..5 {
            c.cmd(&["SET", &format!("ok:{i}"), "v"]);
        }
        c.cmd(&["SET", "secret:1", "v"]);
        for i in 5..10 {
            c.cmd(&["SET", &format!("ok:{i}"), "v"]);
        }
    });
    for (extra, failed, applied) in [(&[][..], 11, 0), (&["--no-fold"][..], 1, 10)] {
        let target = Server::start("7.0");
        let mut tc = target.client();
        tc.cmd(&[
            "ACL",
            "SETUSER",
            "replayer",
            "on",
            ">pw",
            "~ok:*",
            "~shake-replay:*",
            "+@all",
        ]);
        let url = target.url().replace("redis://", "redis://replayer:pw@");
        let mut args = vec!["--connections", "1", "--no-checkpoint"];
        args.extend_from_slice(extra);
        let out = replay(&j, &url, &args);
        assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(&format!("FAILED: {failed} ")),
            "{extra:?}: {}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stderr.contains("secret:1"), "{}", out.stderr);
        if failed > 1 {
            for i in 0..10 {
                assert!(
                    out.stderr.contains(&format!("ok:{i}")),
                    "ok:{i} not named: {}",
                    out.stderr
                );
            }
            assert!(out.stderr.contains("none applied"), "{}", out.stderr);
        }
        let n = tc.cmd(&["DBSIZE"]).as_int().unwrap();
        assert_eq!(n, applied, "{extra:?}");
    }
}

/// Large snapshot values made for the streaming test: a hash (with a TTL), a list, a set and a
/// string of random bytes, each a few MB as encoded, so several 512 KiB journal chunks.
fn populate_large_values(c: &mut Client) {
    let fill = |c: &mut Client, body: &str, key: &str, n: u32| {
        let script = format!("for i=1,{n} do {body} end");
        c.cmd(&["EVAL", &script, "1", key]);
    };
    fill(
        c,
        "redis.call('HSET', KEYS[1], 'field:'..i, 'value-'..i..'-'..(i*7919))",
        "big:hash",
        60000,
    );
    fill(
        c,
        "redis.call('RPUSH', KEYS[1], 'e'..(i*7919))",
        "big:list",
        300000,
    );
    fill(
        c,
        "redis.call('SADD', KEYS[1], 'member-'..(i*7919))",
        "big:set",
        100000,
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let random: String = (0..(3 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    c.cmd(&["SET", "big:str", &random]);
    c.cmd(&["PEXPIRE", "big:hash", "3600000"]);
    for i in 0..50 {
        c.cmd(&["SET", &format!("small:{i}"), "v"]);
    }
}

/// A source holding [`populate_large_values`], and its journal (in the returned folder).
fn large_values_journal() -> (Server, tempfile::TempDir, PathBuf) {
    let source = Server::start("7.0");
    populate_large_values(&mut source.client());
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |_| {});
    (source, dir, j)
}

/// Snapshot values larger than `--stream-values-above` go to the target as one RESTORE whose
/// payload is streamed from the journal chunk by chunk, never held whole: the target ends
/// equal (expiry too) on a standalone target, again under `--on-conflict skip` (every key
/// kept, none written twice), and on a 3-master cluster.
#[test]
fn large_values_are_streamed_into_restore() {
    let (source, _dir, j) = large_values_journal();
    let mut sc = source.client();
    let target = Server::start("7.0");
    large_values_land_whole(
        &j,
        &mut sc,
        &target,
        &["--stream-values-above", "1MiB"],
        "streamed 4,",
    );
}

/// Replays the journal of [`populate_large_values`] with `args` onto `target` (the summary says
/// `counted`; the target ends equal, expiry too, with no replay key left), again under
/// `--on-conflict skip` (every key kept), then onto a fresh 3-master cluster.
fn large_values_land_whole(
    j: &Path,
    sc: &mut Client,
    target: &Server,
    args: &[&str],
    counted: &str,
) {
    let out = replay(j, &target.url(), args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(counted), "{}", out.stdout);
    assert!(out.stdout.contains("failed: 0"), "{}", out.stdout);
    let mut tc = target.client();
    assert_eq!(digest(sc), digest(&mut tc));
    assert_eq!(
        pexpiretime(sc, "big:hash"),
        pexpiretime(&mut tc, "big:hash")
    );
    assert_eq!(
        tc.cmd(&["KEYS", "shake-replay:*"]),
        shake::resp::Frame::Array(vec![])
    );
    let mut skip = vec!["--no-checkpoint", "--on-conflict", "skip"];
    skip.extend(args);
    let out = replay(j, &target.url(), &skip);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("skipped (existing) 54"),
        "{}",
        out.stdout
    );
    assert_eq!(digest(sc), digest(&mut tc));

    let cluster = Cluster::start("7.0", 3, 0);
    let out = replay(j, &cluster.url(), args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(counted), "{}", out.stdout);
    assert_cluster_holds_source(sc, &cluster);
}

/// Large values that go by commands (`--restore never`, or above a target's
/// `proto-max-bulk-len`) are spilled to disk and rebuilt under a temporary name, then renamed:
/// the target ends equal (expiry too) on a standalone target, again under `--on-conflict skip`,
/// on a target whose `proto-max-bulk-len` is below the values (chosen by `--restore auto`), and
/// on a 3-master cluster; no temporary key is left.
#[test]
fn large_values_that_go_by_commands_are_rebuilt_from_disk() {
    let (source, _dir, j) = large_values_journal();
    let mut sc = source.client();
    let never = ["--restore", "never", "--stream-values-above", "1MiB"];
    let target = Server::start("7.0");
    // a dry run counts them as they would go, without holding them either
    for (mode, counted) in [("never", "of which rebuilt 4,"), ("auto", "streamed 4,")] {
        let args = [
            "--dry-run",
            "--restore",
            mode,
            "--stream-values-above",
            "1MiB",
        ];
        let out = replay(&j, &target.url(), &args);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(counted), "{mode}: {}", out.stdout);
    }
    assert_eq!(target.client().cmd(&["DBSIZE"]).as_int(), Some(0));
    large_values_land_whole(&j, &mut sc, &target, &never, "of which rebuilt 4,");

    // the payloads are above this target's limit: auto picks the commands for them alone; the
    // 3 MB string cannot exist there at all (APPEND refuses it), which is said, naming the key
    let small = Server::builder("7.0")
        .arg("proto-max-bulk-len", "1mb")
        .start();
    let out = replay(&j, &small.url(), &never[2..]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("of which rebuilt 3,"), "{}", out.stdout);
    assert!(out.stdout.contains("FAILED: 1 "), "{}", out.stdout);
    assert!(
        out.stderr.contains("big:str")
            && out
                .stderr
                .contains("longer than the target's proto-max-bulk-len"),
        "{}",
        out.stderr
    );
    let mut small = small.client();
    for key in ["big:hash", "big:list", "big:set"] {
        let value = |c: &mut Client| c.cmd(&["DEBUG", "DIGEST-VALUE", key]);
        assert_eq!(value(&mut small), value(&mut sc), "{key}");
    }
    assert_eq!(small.cmd(&["EXISTS", "big:str"]).as_int(), Some(0));
}

/// A large value rebuilt while its slot is being migrated on the target: its `RENAME` into
/// place (two keys of a half-moved slot) is refused with `TRYAGAIN` for as long as the
/// migration lasts — here 6 s against `--max-retries 2` — and replay waits it out instead of
/// stopping; the key lands whole on the slot's new owner.
#[test]
fn a_rebuild_waits_out_a_slot_migration() {
    let (source, _dir, j) = large_values_journal();
    let mut sc = source.client();
    let cluster = Cluster::start("7.0", 3, 0);
    let args = ["--restore", "never", "--stream-values-above", "1MiB"];
    let (out, _) = replay_through_a_migration(&j, &cluster, "big:hash", &args);
    assert!(out.stdout.contains("of which rebuilt 4,"), "{}", out.stdout);
    assert_cluster_holds_source(&mut sc, &cluster);
}

/// A replay killed (-9) while it rebuilds large values never leaves a key half built: each
/// large key on the target is absent or whole (the build goes under a temporary name, renamed
/// in one step); resumed, the target ends equal and the temporary key is gone.
#[test]
fn kill9_during_a_rebuild_leaves_no_half_built_key() {
    let (source, _dir, j) = large_values_journal();
    let mut sc = source.client();
    let target = Server::start("7.0");
    let url = target.url();
    let slow: &[&str] = &[
        "--restore",
        "never",
        "--stream-values-above",
        "1MiB",
        "--max-bytes",
        "2MiB",
    ];
    kill9_replays(&j, &url, &[(slow, 1500), (slow, 2500)]);
    let mut tc = target.client();
    let size = |c: &mut Client, key: &str| -> Option<i64> {
        let len = match c.text(&["TYPE", key]).as_str() {
            "hash" => "HLEN",
            "list" => "LLEN",
            "set" => "SCARD",
            "string" => "STRLEN",
            _ => return None,
        };
        c.cmd(&[len, key]).as_int()
    };
    let mut whole = 0;
    for key in ["big:hash", "big:list", "big:set", "big:str"] {
        if let Some(there) = size(&mut tc, key) {
            assert_eq!(Some(there), size(&mut sc, key), "{key} is half built");
            whole += 1;
        }
    }
    assert!(
        whole < 4,
        "the kills must land before the last rebuild ends"
    );
    let out = replay(&j, &url, &slow[..4]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(digest(&mut sc), digest(&mut tc));
    assert_eq!(
        tc.cmd(&["KEYS", "shake-replay:*"]),
        shake::resp::Frame::Array(vec![])
    );
}

/// The target is killed (-9) and restarted while large values are to be streamed (held back
/// by `--max-bytes`): each key is sent again from its journal record once the target is back,
/// with backoff, and the target ends equal.
#[test]
fn a_large_value_is_streamed_again_after_the_target_comes_back() {
    let (source, _dir, j) = large_values_journal();
    let mut sc = source.client();
    let mut target = Server::builder("7.0")
        .arg("appendonly", "yes")
        .arg("appendfsync", "always")
        .start();
    let url = target.url();
    let child = spawn_shake(&[
        "replay",
        j.to_str().unwrap(),
        "--target",
        &url,
        "--stream-values-above",
        "1MiB",
        "--max-bytes",
        "2MiB",
    ]);
    // down once replay has started: the large values wait for byte tokens, then find it down
    wait_until(30, "replay to connect", || {
        target
            .client()
            .text(&["CLIENT", "LIST"])
            .contains("name=shake-replay")
    });
    target.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    target.restart();
    let out = finish(child);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("streamed 4,"), "{}", out.stdout);
    assert!(
        out.stderr.contains("streaming a large value to"),
        "{}",
        out.stderr
    );
    assert_eq!(digest(&mut sc), digest(&mut target.client()));
}

/// A journal damaged in the middle of its command stream (one byte of a frame's payload
/// flipped): replay stops with an error naming the segment file and the frame's offset, and
/// the target holds exactly the commands of the frames before it — nothing of the damaged
/// frame, nothing after it. Pins the frame-at-a-time reading of replay's arena reader
/// (`replay::feed`), which must not hand on part of a damaged frame.
#[test]
fn a_damaged_frame_stops_replay_naming_it_and_nothing_of_it_is_applied() {
    use crate::journal_util::{create, small_opts, write_snapshot};
    use shake::journal::{Command, ShardWriter, frame::FRAME_HEADER_LEN};
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    create(&j);
    let mut w = ShardWriter::open(&j, "shard-000", small_opts()).unwrap();
    write_snapshot(&mut w, 100, 0);
    for o in 101..700u64 {
        let argv = vec![b"RPUSH".to_vec(), b"l".to_vec(), o.to_string().into_bytes()];
        w.command(
            o,
            Command {
                db: 0,
                time_ms: 1_700_000_000_000 + o,
                argv,
            },
        )
        .unwrap();
    }
    w.close().unwrap();
    let r = ShardReader::open(&j, "shard-000", RecoveryMode::Refuse).unwrap();
    let f = *r
        .frames()
        .iter()
        .find(|f| f.header.first.offset >= 400)
        .expect("a frame in the middle");
    let file = r.segment_path(f.segment).unwrap().to_path_buf();
    drop(r);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[f.offset as usize + FRAME_HEADER_LEN + 3] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let target = Server::start("7.0");
    let out = replay(&j, &target.url(), &["--connections", "4"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        out.stderr.contains(&name) && out.stderr.contains(&format!("byte {}", f.offset)),
        "names the segment and the frame's offset: {}",
        out.stderr
    );
    let got: Vec<u64> = target
        .client()
        .cmd(&["LRANGE", "l", "0", "-1"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    let want: Vec<u64> = (101..f.header.first.offset).collect();
    assert_eq!(
        got, want,
        "the commands before the damaged frame, in order, once"
    );
}

/// Replays `j` onto `url` slowly (`extra` added), runs `crash` 1.5 s in, and returns the
/// finished replay's output.
fn replay_through_a_crash(
    j: &Path,
    url: &str,
    extra: &[&str],
    crash: impl FnOnce(),
) -> crate::support::Output {
    let mut args = vec![
        "replay",
        j.to_str().unwrap(),
        "--target",
        url,
        "--pipeline",
        "64",
        "--max-ops",
        "2000",
    ];
    args.extend_from_slice(extra);
    let child = spawn_shake(&args);
    std::thread::sleep(Duration::from_millis(1500));
    crash();
    finish(child)
}

/// Regression (silent loss): a target killed mid-stream and restarted *without* its data no
/// longer holds writes it had acknowledged, which replay counted as applied and does not send
/// again. Replay used to carry on and exit 0 with the target missing them; it now asks the
/// target, after reconnecting, whether each lane's marker still holds what was acknowledged,
/// and reports every marker that does not as a failure of kind `lost` (exit 1) — standalone
/// (lane markers) and cluster (slot markers, a master restarted empty without a replica to
/// fail over to).
#[test]
fn a_target_restarted_without_its_data_is_reported_as_lost_writes() {
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    let j = capture(&source, dir.path(), |c| stream_writes(c, 3000));
    let restart_empty = |s: &mut Server| {
        s.kill9();
        std::thread::sleep(Duration::from_millis(500));
        s.restart();
    };
    let lost = "the target lost writes it had acknowledged";

    // standalone, no persistence: the restart comes back empty
    let mut target = Server::start("7.0");
    let url = target.url();
    let out = replay_through_a_crash(&j, &url, &[], || restart_empty(&mut target));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(lost), "{}", out.stderr);
    assert!(out.stdout.contains("lost"), "{}", out.stdout);

    // a cluster without replicas: the master holding the counter (written to all along)
    // restarted empty
    let mut cluster = Cluster::start("7.0", 3, 0);
    let url = cluster.url();
    let mut victim = 0;
    let out = replay_through_a_crash(&j, &url, &["--map-db", "3:0", "--map-db", "5:0"], || {
        victim = cluster
            .masters()
            .iter()
            .find(|m| m.client().try_cmd(&["EXISTS", "counter"]).unwrap().as_int() == Some(1))
            .expect("a master holds the counter")
            .port;
        let node = cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap();
        restart_empty(node);
    });
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let node = format!("127.0.0.1:{victim}");
    assert!(
        out.stderr.contains(lost) && out.stderr.contains(&node),
        "names {node}: {}",
        out.stderr
    );
}

/// The lost-writes check also runs when replay ends, not only after a reconnection: a master
/// restarted empty that no lane writes to again (its slots' keys were written early in the
/// stream only) never breaks a connection, and was missed before the markers were deleted.
#[test]
fn writes_lost_by_a_node_not_written_to_again_are_reported_at_the_end() {
    use shake::net::slot::slot_tag;
    let source = Server::start("7.0");
    let dir = tempfile::tempdir().unwrap();
    // slots 100, 8000 and 15000: one per master of an evenly split 3-master cluster
    let (early, b, c) = (
        format!("{{{}}}:early", slot_tag(100)),
        format!("{{{}}}:n", slot_tag(8000)),
        format!("{{{}}}:n", slot_tag(15000)),
    );
    let j = capture(&source, dir.path(), |cl| {
        for _ in 0..200 {
            cl.cmd(&["INCR", &early]);
        }
        for _ in 0..4000 {
            cl.cmd(&["INCR", &b]);
            cl.cmd(&["INCR", &c]);
        }
    });
    let mut cluster = Cluster::start("7.0", 3, 0);
    let url = cluster.url();
    let mut victim = 0;
    let out = replay_through_a_crash(&j, &url, &[], || {
        victim = cluster
            .masters()
            .iter()
            .find(|m| m.client().try_cmd(&["EXISTS", &early]).unwrap().as_int() == Some(1))
            .expect("a master holds the early key")
            .port;
        let node = cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap();
        node.kill9();
        std::thread::sleep(Duration::from_millis(300));
        node.restart();
    });
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("the target lost writes it had acknowledged")
            && out.stderr.contains(&format!("127.0.0.1:{victim}")),
        "{}",
        out.stderr
    );
}
