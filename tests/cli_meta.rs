//! The generated interface documents: shell completions and manual pages come from the same clap
//! definitions as the parser, so every subcommand and flag appears in them.

use crate::support::shake_run;

/// Subcommands every generated document must mention.
const SUBCOMMANDS: [&str; 10] = [
    "probe", "capture", "verify", "inspect", "filter", "export", "replay", "ship", "receive",
    "demo",
];

#[test]
fn completions_cover_every_subcommand_in_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = shake_run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for sub in SUBCOMMANDS {
            assert!(out.stdout.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(
            out.stdout.contains("--target"),
            "{shell} completion lacks flags"
        );
    }
}

#[test]
fn completions_refuse_an_unknown_shell_with_a_usage_error() {
    let out = shake_run(&["completions", "tcsh"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("tcsh"), "{}", out.stderr);
}

#[test]
fn man_prints_the_main_page_and_writes_one_page_per_subcommand() {
    let out = shake_run(&["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with(".ie") || out.stdout.contains(".TH shake 1"));
    assert!(out.stdout.contains(".TH shake 1"), "{}", &out.stdout[..200]);

    let dir = tempfile::tempdir().unwrap();
    let out = shake_run(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for sub in SUBCOMMANDS {
        let page = std::fs::read_to_string(dir.path().join(format!("shake-{sub}.1")))
            .unwrap_or_else(|e| panic!("shake-{sub}.1: {e}"));
        assert!(
            page.contains(&format!(".TH shake-{sub} 1")),
            "{sub}: {page}"
        );
        assert!(page.contains("shake ") && page.contains(sub));
    }
    let replay = std::fs::read_to_string(dir.path().join("shake-replay.1")).unwrap();
    assert!(replay.contains("follow"), "replay page lacks --follow");
}
