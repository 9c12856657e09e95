//! `shake demo`: the whole chain on throwaway servers ends with a passing compare, standalone
//! and cluster; it leaves the journals and removes the servers.

use crate::support::{redis_server, shake_run};

fn demo(extra: &[&str]) -> (tempfile::TempDir, crate::support::Output) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let server = redis_server("7.0");
    let mut args = vec![
        "demo",
        "--dir",
        work.to_str().unwrap(),
        "--redis-server",
        server.to_str().unwrap(),
        "--duration",
        "3s",
        "--keys",
        "3000",
    ];
    args.extend_from_slice(extra);
    let out = shake_run(&args);
    (dir, out)
}

fn assert_passed(dir: &tempfile::TempDir, out: &crate::support::Output) {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("VERDICT: PASS"), "{}", out.stdout);
    for step in ["verify", "inspect", "filter", "replay", "compare"] {
        assert!(
            out.stdout.contains(&format!("$ shake {step} ")),
            "step {step} missing:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("resumes the journal"), "{}", out.stdout);
    let work = dir.path().join("demo");
    assert!(work.join("journal/journal.json").exists(), "journal kept");
    assert!(work.join("journal-live-keys/journal.json").exists());
    assert!(!work.join("servers").exists(), "server files removed");
}

#[test]
fn demo_standalone_ends_with_a_passing_compare() {
    let (dir, out) = demo(&[]);
    assert_passed(&dir, &out);
}

#[test]
fn demo_cluster_ends_with_a_passing_compare() {
    let (dir, out) = demo(&["--cluster"]);
    assert_passed(&dir, &out);
    assert!(out.stdout.contains("3-master clusters"), "{}", out.stdout);
}

#[test]
fn demo_refuses_a_non_empty_dir_and_names_a_missing_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), b"x").unwrap();
    let out = shake_run(&["demo", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("is not empty"), "{}", out.stderr);
    assert!(dir.path().join("precious").exists());

    let empty = tempfile::tempdir().unwrap();
    let out = shake_run(&[
        "demo",
        "--dir",
        empty.path().to_str().unwrap(),
        "--redis-server",
        "/nonexistent/redis-server",
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("/nonexistent/redis-server"),
        "{}",
        out.stderr
    );
}
