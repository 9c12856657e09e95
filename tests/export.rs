//! `shake export` on journals captured from real servers: the RESP stream piped with
//! `redis-cli --pipe`, and the RDB file loaded by `redis-server` and checked by
//! `redis-check-rdb`, both give the source's `DEBUG DIGEST`.

use crate::support::{LiveCapture, Server, digest, populate_every_type, redis_cli, shake_run};
use std::process::{Command, Stdio};

#[test]
fn resp_export_piped_gives_the_source_digest() {
    let s = Server::start("7.0");
    let mut c = s.client();
    populate_every_type(&mut c);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let cap = LiveCapture::start(&s.url(), &j, &[], &s, 1);
    for i in 0..20 {
        c.cmd(&["INCR", "n"]);
        c.cmd(&["RPUSH", "list", &i.to_string()]);
    }
    c.cmd(&["MULTI"]);
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["INCR", "in3"]);
    c.cmd(&["EXEC"]);
    c.cmd(&[
        "SET",
        "after-multi",
        "in db 0? no: the connection is still in db 0",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    cap.stop();
    let out_file = dir.path().join("dump.resp");
    let out = shake_run(&[
        "export",
        j.to_str().unwrap(),
        "--format",
        "resp",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dest = Server::start("7.0");
    let piped = Command::new(redis_cli())
        .args(["-p", &dest.port.to_string(), "--pipe"])
        .stdin(Stdio::from(std::fs::File::open(&out_file).unwrap()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&piped.stdout);
    assert!(
        piped.status.success() && text.contains("errors: 0"),
        "{text}"
    );
    assert_eq!(digest(&mut dest.client()), digest(&mut c));
}

#[test]
fn rdb_export_loads_in_redis_server() {
    let s = Server::start("7.0");
    let mut c = s.client();
    populate_every_type(&mut c);
    c.cmd(&["SET", "giant", &"g".repeat(9 << 20)]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&s.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dest = Server::start("7.0");
    let rdb = dest.dir.path().join("dump.rdb");
    let out = shake_run(&[
        "export",
        j.to_str().unwrap(),
        "--format",
        "rdb",
        "--out",
        rdb.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let check = Command::new(redis_cli().with_file_name("redis-check-rdb"))
        .arg(&rdb)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("RDB looks OK"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // Restart the destination on the exported file.
    let mut dest = dest;
    dest.restart();
    assert_eq!(digest(&mut dest.client()), digest(&mut c));
}

/// JSON lines are binary-safe: a non-UTF-8 key comes back exactly, and every key's DUMP
/// payload restores it on a fresh server.
#[test]
fn jsonl_export_is_binary_safe_and_restorable() {
    use base64::Engine as _;
    let s = Server::start("7.0");
    let mut c = s.client();
    c.cmd(&[&b"SET"[..], b"bin\xff\x00key", b"v\xfe"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["SET", "t", "v", "PX", "600000"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let cap = LiveCapture::start(&s.url(), &j, &[], &s, 1);
    c.cmd(&[&b"APPEND"[..], b"bin\xff\x00key", b"\x01"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    cap.stop();
    let out = shake_run(&[
        "export",
        j.to_str().unwrap(),
        "--format",
        "jsonl",
        "--out",
        "-",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let b64 = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => base64::engine::general_purpose::STANDARD
            .decode(other["base64"].as_str().unwrap())
            .unwrap(),
    };
    let keys: Vec<&serde_json::Value> = lines.iter().filter(|l| l["record"] == "key").collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().any(|k| b64(&k["key"]) == b"bin\xff\x00key"));
    let cmd = lines.iter().find(|l| l["record"] == "command").unwrap();
    assert_eq!(b64(&cmd["argv"][2]), b"\x01");
    let dest = Server::start("7.0");
    let mut d = dest.client();
    for k in keys {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(k["dump_payload_base64"].as_str().unwrap())
            .unwrap();
        let key = b64(&k["key"]);
        d.cmd(&[&b"RESTORE"[..], &key, b"0", &payload]);
    }
    assert_eq!(d.cmd(&["HGET", "h", "f"]).as_str(), Some("v"));
    assert_eq!(
        d.cmd(&[&b"GET"[..], b"bin\xff\x00key"]).as_bytes(),
        Some(&b"v\xfe"[..])
    );
}

/// `--format rdb --until-offset N`: the state right after the command at N (snapshot plus
/// commands), which a server started on the file holds exactly.
#[test]
fn rdb_export_at_a_chosen_offset_holds_that_state() {
    let s = Server::start("7.0");
    let mut c = s.client();
    populate_every_type(&mut c);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let cap = crate::support::LiveCapture::start(&s.url(), &j, &[], &s, 1);
    for _ in 0..10 {
        c.cmd(&["INCR", "n"]);
    }
    crate::support::wait_caught_up(&s);
    cap.stop();
    let offsets = crate::support::command_offsets(&j, b"INCR");
    assert_eq!(offsets.len(), 10);

    let dest = Server::start("7.0");
    let rdb = dest.dir.path().join("dump.rdb");
    let out = shake_run(&[
        "export",
        j.to_str().unwrap(),
        "--format",
        "rdb",
        "--until-offset",
        &offsets[3].to_string(),
        "--out",
        rdb.to_str().unwrap(),
        "--scratch-server",
        crate::support::redis_server("7.0").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("exported the state at offset"),
        "{}",
        out.stderr
    );
    let mut dest = dest;
    dest.restart();
    let mut d = dest.client();
    assert_eq!(d.text(&["GET", "n"]), "4");
    // Everything else is the populated data: the source minus the six later INCRs.
    c.cmd(&["SET", "n", "4"]);
    assert_eq!(digest(&mut d), digest(&mut c));

    // The other formats point at filter.
    let out = shake_run(&[
        "export",
        j.to_str().unwrap(),
        "--format",
        "resp",
        "--until-offset",
        "1",
        "--out",
        "-",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("shake filter"), "{}", out.stderr);
}

/// Bug pinned: an export to a special file (`--out /dev/null` in a benchmark) was written to
/// `/dev/null.partial` and renamed over the device, replacing it with a regular file. Special
/// files are now written in place; this uses a FIFO rather than the machine's /dev/null.
#[test]
fn export_to_a_special_file_writes_into_it_and_leaves_it_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let s = Server::start("7.0");
    s.client().cmd(&["SET", "k", "v"]);
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j");
    let out = crate::support::capture_run(&s.url(), &j, &["--snapshot-only"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    let out = shake_run(&[
        "export",
        j.to_str().unwrap(),
        "--format",
        "resp",
        "--out",
        fifo.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = reader.join().unwrap();
    assert!(
        String::from_utf8_lossy(&got).contains("RESTORE"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(!dir.path().join("pipe.partial").exists());
}
