//! The replica session against real masters: both transfer forms, the command stream with
//! byte-exact offsets, ACKs that `WAIT` counts, partial resync, and every server version.

use crate::support::{Server, redis_cli};
use bytes::Bytes;
use shake::capture::replica::{Event, ReplicaSession, Resume, SessionOptions};
use shake::net::{ConnectOptions, Connection, Endpoint};
use std::time::Duration;

async fn session(server: &Server, resume: &Resume) -> (ReplicaSession, Event) {
    let ep = Endpoint::parse(&server.url()).unwrap();
    let conn = Connection::connect(&ep, &ConnectOptions::default())
        .await
        .unwrap();
    ReplicaSession::start(conn, resume, SessionOptions::default())
        .await
        .unwrap()
}

/// Receives the whole snapshot; returns its bytes and the announced size.
async fn snapshot(s: &mut ReplicaSession) -> (Vec<u8>, Option<u64>) {
    let Event::RdbBegin { size } = s.next().await.unwrap() else {
        panic!("expected RdbBegin")
    };
    let mut rdb = Vec::new();
    loop {
        match s.next().await.unwrap() {
            Event::RdbData(b) => rdb.extend_from_slice(&b),
            Event::RdbEnd { size: n } => {
                assert_eq!(n as usize, rdb.len());
                return (rdb, size);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn check_rdb(bytes: &[u8], dir: &std::path::Path) {
    let path = dir.join("received.rdb");
    std::fs::write(&path, bytes).unwrap();
    let checker = redis_cli().with_file_name("redis-check-rdb");
    let out = std::process::Command::new(&checker)
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb: {text}"
    );
}

async fn next_command(s: &mut ReplicaSession) -> (Vec<Bytes>, u64) {
    let event = tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("no command in 20s")
        .unwrap();
    match event {
        Event::Command { argv, offset, .. } => (argv, offset),
        other => panic!("unexpected {other:?}"),
    }
}

/// The `slave0:` line of `master`'s `INFO replication`.
fn c_info(master: &Server) -> String {
    let info = master.client().text(&["INFO", "replication"]);
    info.lines()
        .find(|l| l.starts_with("slave0:"))
        .unwrap_or_default()
        .to_string()
}

/// Reads commands until one named `name` arrives; returns it and the offset after it.
async fn until(s: &mut ReplicaSession, name: &str) -> (Vec<Bytes>, u64) {
    loop {
        let (argv, off) = next_command(s).await;
        if argv[0].eq_ignore_ascii_case(name.as_bytes()) {
            return (argv, off);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskless_full_sync_stream_offsets_and_wait() {
    let master = Server::start("7.0");
    // a first sync (redis-cli --rdb) creates the backlog, so the writes below move the offset
    // and our FULLRESYNC offset is above 0 (the durable-ACK assertion needs it)
    let rdb = master.dir.path().join("first-sync.rdb");
    let first = std::process::Command::new(redis_cli())
        .args([
            "-p",
            &master.port.to_string(),
            "--rdb",
            rdb.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    let mut c = master.client();
    for i in 0..1000 {
        c.cmd(&["SET", &format!("k{i}"), &"v".repeat(i % 50)]);
    }
    let (mut s, ev) = session(&master, &Resume::Full).await;
    let Event::FullResync { replid, offset } = ev else {
        panic!("expected FullResync, got {ev:?}")
    };
    assert_eq!(replid.len(), 40);
    let (rdb, size) = snapshot(&mut s).await;
    assert_eq!(size, None, "7.0 syncs diskless by default");
    check_rdb(&rdb, master.dir.path());
    assert_eq!(s.offset(), offset);
    // Regression: the ACK that starts the stream claimed the snapshot's offset before the
    // caller had made the snapshot durable (a test then saw the capture caught up while its
    // journal held no complete snapshot). Until `set_durable`, the master sees offset 0.
    assert!(
        offset > 0,
        "the FULLRESYNC offset must differ from 0 for this to mean anything"
    );
    let slave = || c_info(&master);
    crate::support::wait_until(10, "the master to see the replica online", || {
        slave().contains("state=online")
    });
    assert!(slave().contains("state=online,offset=0,"), "{}", slave());

    c.cmd(&["SELECT", "3"]);
    c.cmd(&["SET", "marker", "1"]);
    let (_, _) = until(&mut s, "SELECT").await;
    let (argv, off) = next_command(&mut s).await;
    assert_eq!(
        argv,
        vec![Bytes::from("SET"), Bytes::from("marker"), Bytes::from("1")]
    );
    let master_offset: u64 = c
        .info_field("replication", "master_repl_offset")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        off, master_offset,
        "our offset equals the master's, byte for byte"
    );

    // WAIT counts us only once we report the offset durable.
    s.set_durable(off);
    let waiter = std::thread::spawn(move || {
        let mut c = crate::support::Client::connect(master.port).unwrap();
        let n = c.cmd(&["WAIT", "1", "5000"]).as_int();
        (n, master)
    });
    // Keep reading: the GETACK arrives on the stream and is answered.
    let _ = tokio::time::timeout(Duration::from_secs(3), until(&mut s, "REPLCONF")).await;
    let _ = tokio::time::timeout(Duration::from_millis(1500), s.next()).await;
    let (n, _master) = tokio::task::spawn_blocking(move || waiter.join().unwrap())
        .await
        .unwrap();
    assert_eq!(n, Some(1), "WAIT 1 succeeded against our ACKs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_based_full_sync_then_partial_resync() {
    let master = Server::builder("7.0")
        .arg("repl-diskless-sync", "no")
        .start();
    let mut c = master.client();
    c.cmd(&["RPUSH", "list", "a", "b", "c"]);
    let (mut s, ev) = session(&master, &Resume::Full).await;
    let Event::FullResync { replid, .. } = ev else {
        panic!("{ev:?}")
    };
    let (rdb, size) = snapshot(&mut s).await;
    assert_eq!(
        size,
        Some(rdb.len() as u64),
        "disk-based transfer announces its size"
    );
    check_rdb(&rdb, master.dir.path());
    c.cmd(&["INCR", "counter"]);
    let (_, held) = until(&mut s, "INCR").await;
    drop(s);

    // Written while we are away; a partial resync must deliver exactly these.
    c.cmd(&["INCR", "counter"]);
    c.cmd(&["RPUSH", "list", "d"]);
    let (mut s, ev) = session(
        &master,
        &Resume::From {
            replid: replid.clone(),
            offset: held,
        },
    )
    .await;
    assert_eq!(
        ev,
        Event::Continue {
            replid: replid.clone(),
            offset: held
        }
    );
    let (argv, _) = until(&mut s, "INCR").await;
    assert_eq!(argv[1], Bytes::from("counter"));
    let (argv, off) = until(&mut s, "RPUSH").await;
    assert_eq!(argv[2], Bytes::from("d"));
    let master_offset: u64 = c
        .info_field("replication", "master_repl_offset")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(off, master_offset);

    // An offset outside the backlog gets a full sync instead.
    let (_s, ev) = session(
        &master,
        &Resume::From {
            replid: "0".repeat(40),
            offset: 1,
        },
    )
    .await;
    assert!(matches!(ev, Event::FullResync { .. }), "{ev:?}");
}

/// Regression: newlines sent while waiting for the snapshot reset the master's
/// `repl-diskless-sync-delay` idle clock, so its BGSAVE never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_keepalive_before_snapshot_postponed_diskless_bgsave_forever() {
    let master = Server::builder("7.0")
        .arg("repl-diskless-sync-delay", "3")
        .start();
    master.client().cmd(&["SET", "a", "1"]);
    let t = std::time::Instant::now();
    let (mut s, ev) = session(&master, &Resume::Full).await;
    assert!(matches!(ev, Event::FullResync { .. }));
    let (rdb, _) = snapshot(&mut s).await;
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "the master waited its delay"
    );
    check_rdb(&rdb, master.dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_the_matrix_syncs() {
    for v in crate::support::MATRIX {
        let master = Server::start(v);
        let mut c = master.client();
        c.cmd(&["HSET", "h", "f", "v"]);
        let (mut s, ev) = session(&master, &Resume::Full).await;
        assert!(matches!(ev, Event::FullResync { .. }), "{v}: {ev:?}");
        let (rdb, _) = snapshot(&mut s).await;
        assert!(rdb.starts_with(b"REDIS00"), "{v}");
        if v <= "7.0" {
            // Debian's redis-check-rdb (7.0) reads RDB up to 10.
            check_rdb(&rdb, master.dir.path());
        }
        c.cmd(&["SET", "after", "snapshot"]);
        let (argv, off) = until(&mut s, "SET").await;
        assert_eq!(argv[1], Bytes::from("after"), "{v}");
        let master_offset: u64 = c
            .info_field("replication", "master_repl_offset")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(off, master_offset, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_link_is_an_error_not_a_hang() {
    let master = Server::start("7.0");
    let (mut s, _) = session(&master, &Resume::Full).await;
    let _ = snapshot(&mut s).await;
    let mut c = master.client();
    c.cmd(&["CLIENT", "KILL", "TYPE", "replica"]);
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("hung")
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", master.port)),
        "{err}"
    );
}
