//! The documentation runs: every `sh` block of `docs/air-gapped-migration.md` and the README's
//! tour is executed, in order, in one bash session against local servers, so the pages cannot
//! drift from what shake does.
//!
//! A page marks where the test must act in its place with an HTML comment,
//! `<!-- guide-test: start_writes -->` (the application starts writing) or
//! `<!-- guide-test: stop_writes -->` (the application stops); the test turns them into calls
//! of bash functions defined in its prelude.

use crate::support::{Client, Server, digest, free_port, redis_cli, redis_server};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The executable parts of a Markdown page: `sh` blocks and test hooks, in order.
fn script_of(page: &str) -> (String, usize) {
    let mut out = String::new();
    let mut blocks = 0;
    let mut in_block = false;
    for line in page.lines() {
        if in_block {
            if line.trim_start().starts_with("```") {
                in_block = false;
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        } else if line.trim() == "```sh" {
            in_block = true;
            blocks += 1;
            out.push_str(&format!("echo '+++ block {blocks}' >&2\n"));
        } else if let Some(hook) = line
            .trim()
            .strip_prefix("<!-- guide-test:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            out.push_str(hook.trim());
            out.push('\n');
        }
    }
    (out, blocks)
}

/// The directory holding the `shake` binary under test, for PATH.
fn shake_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_shake"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// PATH with the tested `shake`, `redis-cli` and `redis-server` first.
fn path_env() -> String {
    let server_dir = redis_server("7.0").parent().unwrap().to_path_buf();
    let cli_dir = redis_cli().parent().unwrap().to_path_buf();
    format!(
        "{}:{}:{}:{}",
        shake_dir().display(),
        server_dir.display(),
        cli_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `script` with bash, killing it after `limit`; returns (exit code, stdout, stderr).
fn run_bash(script: &str, dir: &Path, env: &[(&str, String)], limit: Duration) -> (i32, String) {
    let file = dir.join("script.sh");
    std::fs::write(&file, script).unwrap();
    let log = dir.join("script.log");
    let mut cmd = Command::new("bash");
    cmd.arg(&file)
        .current_dir(dir)
        .env("PATH", path_env())
        .env_remove("SHAKE_SOURCE_PASSWORD")
        .env_remove("SHAKE_TARGET_PASSWORD")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("script.err")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break -2;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default()
        + "\n--- stderr ---\n"
        + &std::fs::read_to_string(dir.join("script.err")).unwrap_or_default();
    (code, out)
}

fn read_doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_air_gapped_migration_runbook_runs_as_written() {
    let source = Server::start("7.0");
    let target = Server::start("7.0");
    let mut c = source.client();
    crate::support::populate_every_type(&mut c);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    std::fs::create_dir_all(work.join("usb")).unwrap();

    let (body, blocks) = script_of(&read_doc("docs/air-gapped-migration.md"));
    assert!(blocks >= 10, "the runbook lost its sh blocks ({blocks})");
    let prelude = format!(
        r#"set -euo pipefail
cleanup() {{
  touch "$WORK/stop-writes"
  for f in "$JOURNAL.capture.pid" "$FAR_JOURNAL.replay.pid"; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
}}
trap cleanup EXIT
# The application: a writer on the source until stop_writes.
start_writes() {{
  ( i=0
    while [ ! -f "$WORK/stop-writes" ]; do
      i=$((i + 1))
      printf 'INCR live:counter\nHSET live:profile:%d seen %d\nRPUSH live:log e%d\nSET live:tmp:%d x PX 600000\n' \
        $((i % 50)) "$i" "$i" "$i"
    done | redis-cli -p {port} > /dev/null ) &
  WRITER=$!
}}
stop_writes() {{
  touch "$WORK/stop-writes"
  wait "$WRITER" || true
}}
"#,
        port = source.port
    );
    let env = [
        ("WORK", work.display().to_string()),
        ("SOURCE", source.url()),
        ("TARGET", target.url()),
        ("JOURNAL", work.join("journal").display().to_string()),
        ("MEDIA", work.join("usb").display().to_string()),
        (
            "FAR_JOURNAL",
            work.join("far-journal").display().to_string(),
        ),
    ];
    let (code, out) = run_bash(&(prelude + &body), work, &env, Duration::from_secs(300));
    assert_eq!(code, 0, "the runbook failed:\n{out}");
    assert!(
        out.contains("shipment"),
        "ship/receive printed nothing:\n{out}"
    );
    let mut s = Client::connect(source.port).unwrap();
    let mut t = target.client();
    assert_eq!(
        digest(&mut s),
        digest(&mut t),
        "the destination differs from the source after the runbook:\n{out}"
    );
    let counter = t.text(&["GET", "live:counter"]);
    assert!(counter.parse::<u64>().unwrap_or(0) > 0, "writes were made");
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme = read_doc("README.md");
    let start = readme
        .find("## A five-minute tour")
        .expect("the README has a five-minute tour");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 3 + i);
    let (body, blocks) = script_of(&readme[start..end]);
    assert!(blocks >= 1, "the README lost its tour");
    assert!(body.contains("shake demo"), "the tour starts with the demo");
    let (a, b) = (free_port(), free_port());
    // The demo has its own tests (tests/demo.rs); the rest runs here on free ports.
    let body = body
        .lines()
        .filter(|l| l.trim() != "shake demo")
        .collect::<Vec<_>>()
        .join("\n")
        .replace("7001", &a.to_string())
        .replace("7002", &b.to_string());
    assert!(!body.contains("sudo"), "the tour needs no root");
    let prelude = format!(
        "set -euo pipefail\ntrap 'set +e; redis-cli -p {a} shutdown nosave >/dev/null 2>&1; redis-cli -p {b} shutdown nosave >/dev/null 2>&1; true' EXIT\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (code, out) = run_bash(
        &(prelude + &body),
        tmp.path(),
        &[],
        Duration::from_secs(180),
    );
    assert_eq!(code, 0, "the README tour failed:\n{out}");
    assert!(out.contains("exit 0"), "compare found differences:\n{out}");
}
