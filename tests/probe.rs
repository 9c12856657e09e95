//! `shake probe` against real servers: standalone, every version, cluster, TLS, passwords,
//! ACL users, sentinel, and the warnings.

use crate::support::{Cluster, MATRIX, Sentinel, Server, shake_run};
use serde_json::Value;

fn probe_json(args: &[&str]) -> Value {
    let mut all = vec!["probe", "--format", "json", "--sample", "0s"];
    all.extend_from_slice(args);
    let out = shake_run(&all);
    assert_eq!(out.code, 0, "probe failed: {}", out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", out.stdout))
}

#[test]
fn standalone_table_and_json() {
    let s = Server::start("7.0");
    let mut c = s.client();
    c.cmd(&["SET", "a", "1"]);
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["SET", "b", "2"]);
    let out = shake_run(&["probe", "--source", &s.url(), "--sample", "0s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("redis 7.0.15 (writes RDB 10)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("db0=1 db3=1"), "{}", out.stdout);
    let j = probe_json(&["--source", &s.url()]);
    assert_eq!(j["mode"], "standalone");
    let srv = &j["servers"][0];
    assert_eq!(srv["rdb_version"], 10);
    assert_eq!(srv["role"], "master");
    assert_eq!(srv["repl_backlog_size"], 1 << 20);
    assert_eq!(srv["replica_output_buffer_limit"]["hard"], 256u64 << 20);
    assert_eq!(srv["maxmemory"], 0);
    assert_eq!(srv["psync_permission"]["status"], "allowed");
    assert_eq!(srv["master_replid"].as_str().unwrap().len(), 40);
}

#[test]
fn every_version_of_the_matrix() {
    for (v, rdb) in MATRIX.iter().zip([9, 9, 10, 12]) {
        let s = if *v == "7.4" {
            Server::builder(v).modules().start()
        } else {
            Server::start(v)
        };
        let j = probe_json(&["--source", &s.url()]);
        let srv = &j["servers"][0];
        assert!(
            srv["version"].as_str().unwrap().starts_with(v),
            "{v}: {srv}"
        );
        assert_eq!(srv["rdb_version"], rdb, "{v}");
        let perm = srv["psync_permission"]["status"].as_str().unwrap();
        if *v < "7.0" {
            assert_eq!(perm, "unknown", "{v}: no ACL DRYRUN before 7.0");
        } else {
            assert_eq!(perm, "allowed", "{v}");
        }
        if *v == "7.4" {
            let modules: Vec<&str> = srv["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            for m in ["ReJSON", "bf", "timeseries"] {
                assert!(modules.contains(&m), "7.4 modules {modules:?} lack {m}");
            }
        }
    }
}

#[test]
fn cluster_lists_every_master_with_slots_and_replicas() {
    let cluster = Cluster::start("7.0", 3, 1);
    let j = probe_json(&["--source", &cluster.url()]);
    assert_eq!(j["mode"], "cluster");
    assert_eq!(j["topology"]["described_by"], "CLUSTER SHARDS");
    let shards = j["topology"]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let mut total = 0;
    for s in shards {
        for r in s["slots"].as_array().unwrap() {
            total += r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1;
        }
        assert_eq!(s["replicas"].as_array().unwrap().len(), 1, "{s}");
        assert_eq!(s["master"]["role"], "master");
    }
    assert_eq!(total, 16384);
    assert_eq!(
        j["servers"].as_array().unwrap().len(),
        3,
        "facts for each master"
    );
    // The table names all three masters and their ranges.
    let out = shake_run(&[
        "probe",
        "--source",
        &cluster.nodes[4].url(),
        "--sample",
        "0s",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.matches("  master 127.0.0.1:").count(),
        3,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0-5460"), "{}", out.stdout);
}

#[test]
fn tls_with_client_certificate() {
    let s = Server::builder("7.0").tls().start();
    let t = s.tls.clone().unwrap();
    let (ca, cert, key) = (
        t.ca.display().to_string(),
        t.client_cert.display().to_string(),
        t.client_key.display().to_string(),
    );
    let j = probe_json(&[
        "--source",
        &s.url(),
        "--source-tls-ca",
        &ca,
        "--source-tls-cert",
        &cert,
        "--source-tls-key",
        &key,
    ]);
    assert_eq!(j["servers"][0]["version"], "7.0.15");
    // Insecure mode still needs the client certificate this server demands.
    let j = probe_json(&[
        "--source",
        &s.url(),
        "--source-tls-insecure",
        "--source-tls-cert",
        &cert,
        "--source-tls-key",
        &key,
    ]);
    assert_eq!(j["servers"][0]["rdb_version"], 10);
    // Without the CA, the server certificate is not trusted: a TLS error naming the endpoint.
    let out = shake_run(&[
        "probe",
        "--source",
        &s.url(),
        "--source-tls-cert",
        &cert,
        "--source-tls-key",
        &key,
        "--sample",
        "0s",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("TLS with 127.0.0.1:"), "{}", out.stderr);
    // TLS flags on a plain URL are a mistake worth saying.
    let out = shake_run(&[
        "probe",
        "--source",
        &s.url().replace("rediss", "redis"),
        "--source-tls-ca",
        &ca,
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not rediss://"), "{}", out.stderr);
}

#[test]
fn passwords_right_wrong_missing_and_never_printed() {
    let s = Server::builder("7.0").password("s3cret-pw").start();
    let base = s.url_without_password();
    // Wrong password: exit 1, clear message, no password anywhere.
    let wrong = base.replace("redis://", "redis://:wrong-pw-xyz@");
    let out = shake_run(&["probe", "--source", &wrong, "--sample", "0s"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("wrong-pw-xyz") && !out.stdout.contains("wrong-pw-xyz"),
        "{}",
        out.stderr
    );
    // Missing password: says how to give one.
    let out = shake_run(&["probe", "--source", &base, "--sample", "0s"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("requires a password"), "{}", out.stderr);
    // Right password from the URL, the environment and a file; never echoed.
    let out = shake_run(&["probe", "--source", &s.url(), "--sample", "0s", "-vv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("s3cret-pw") && !out.stderr.contains("s3cret-pw"));
    let out = crate::support::run(
        crate::support::shake()
            .args([
                "probe", "--source", &base, "--sample", "0s", "--format", "json",
            ])
            .env("SHAKE_SOURCE_PASSWORD", "s3cret-pw"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("s3cret-pw"));
    let file = s.dir.path().join("pw");
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let out = shake_run(&[
        "probe",
        "--source",
        &base,
        "--source-password-file",
        file.to_str().unwrap(),
        "--sample",
        "0s",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn acl_user_with_and_without_psync() {
    let s = Server::start("7.0");
    let mut c = s.client();
    c.cmd(&[
        "ACL", "SETUSER", "repl", "on", ">replpw", "~*", "&*", "+@all",
    ]);
    c.cmd(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">readpw",
        "~*",
        "+@read",
        "+ping",
        "+info",
        "+config|get",
        "+acl|whoami",
        "+acl|dryrun",
        "+client",
        "+hello",
    ]);
    let j = probe_json(&[
        "--source",
        &format!("redis://repl:replpw@127.0.0.1:{}", s.port),
    ]);
    assert_eq!(j["servers"][0]["psync_permission"]["status"], "allowed");
    let j = probe_json(&[
        "--source",
        &format!("redis://reader:readpw@127.0.0.1:{}", s.port),
    ]);
    assert_eq!(
        j["servers"][0]["psync_permission"]["status"], "denied",
        "{j}"
    );
    let warnings = j["warnings"].to_string();
    assert!(warnings.contains("capture will fail"), "{warnings}");
    // A wrong password for an ACL user is refused without echoing it.
    let out = shake_run(&[
        "probe",
        "--source",
        &format!("redis://repl:nope-9876@127.0.0.1:{}", s.port),
    ]);
    assert_eq!(out.code, 1);
    assert!(!out.stderr.contains("nope-9876"), "{}", out.stderr);
}

#[test]
fn sentinel_resolves_the_master() {
    let master = Server::start("7.0");
    let sentinel = Sentinel::start(&master);
    let j = probe_json(&["--source", &sentinel.url(), "--sentinel-master", "mymaster"]);
    assert_eq!(j["mode"], "standalone");
    assert_eq!(
        j["servers"][0]["addr"],
        format!("127.0.0.1:{}", master.port)
    );
    // Probing the sentinel itself says what to do.
    let j = probe_json(&["--source", &sentinel.url()]);
    assert_eq!(j["mode"], "sentinel");
    assert!(j["warnings"].to_string().contains("--sentinel-master"));
    let out = shake_run(&[
        "probe",
        "--source",
        &sentinel.url(),
        "--sentinel-master",
        "nosuch",
        "--sample",
        "0s",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
}

#[test]
fn small_backlog_under_write_load_is_warned() {
    let s = Server::builder("7.0")
        .arg("repl-backlog-size", "16kb")
        .start();
    let value = "x".repeat(1000);
    let load = crate::support::Load::start(s.port, std::time::Duration::ZERO, move |c, i| {
        c.cmd(&["SET", &format!("k{}", i % 1000), &value]);
    });
    let out = shake_run(&[
        "probe",
        "--source",
        &s.url(),
        "--sample",
        "1s",
        "--format",
        "json",
    ]);
    load.stop();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        j["servers"][0]["write_rate_bytes_per_sec"]
            .as_f64()
            .unwrap()
            > 10_000.0,
        "{j}"
    );
    assert!(
        j["warnings"].to_string().contains("repl-backlog-size"),
        "{j}"
    );
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let port = crate::support::free_port();
    let out = shake_run(&["probe", "--source", &format!("redis://127.0.0.1:{port}")]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
}

/// A server that answers with bytes that are not RESP (a mock: a real server cannot do this).
#[test]
fn malformed_reply_is_a_protocol_error_naming_the_endpoint() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"?garbage\r\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
    });
    let out = shake_run(&[
        "probe",
        "--source",
        &format!("redis://127.0.0.1:{port}"),
        "--sample",
        "0s",
    ]);
    t.join().unwrap();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("127.0.0.1:{port} sent invalid RESP")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("byte 0"), "{}", out.stderr);
}

/// A server that accepts but never answers: the connect timeout fires and says so.
#[test]
fn silent_server_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(conn);
    });
    let out = shake_run(&[
        "probe",
        "--source",
        &format!("redis://127.0.0.1:{port}"),
        "--connect-timeout",
        "1s",
    ]);
    t.join().unwrap();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("did not answer connect and login within 1.0s"),
        "{}",
        out.stderr
    );
}
