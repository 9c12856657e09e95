//! The harness itself: every server of the matrix starts and answers with its version; kill -9
//! and restart work; a cluster forms.

use crate::support::{MATRIX, Server, shake_run};

#[test]
fn every_version_of_the_matrix_starts() {
    for v in MATRIX {
        let s = Server::start(v);
        let version = s.client().info_field("server", "redis_version").unwrap();
        assert!(version.starts_with(v), "asked for {v}, got {version}");
    }
}

#[test]
fn kill9_and_restart_keep_the_port() {
    let mut s = Server::start("7.0");
    s.client().cmd(&["SET", "k", "v"]);
    let pid = s.pid();
    s.kill9();
    assert!(crate::support::Client::connect(s.port).is_err());
    s.restart();
    assert_ne!(pid, s.pid());
    // No persistence in tests: the restarted server is empty.
    assert_eq!(s.client().cmd(&["DBSIZE"]).as_int(), Some(0));
}

#[test]
fn binary_is_built_and_documents_itself() {
    let out = shake_run(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("probe"));
    let out = shake_run(&["--version"]);
    assert!(out.stdout.starts_with("shake "));
    let out = shake_run(&["no-such-command"]);
    assert_eq!(out.code, 2, "usage errors exit 2");
}
