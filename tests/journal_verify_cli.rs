//! `shake verify` on the golden journal and on a damaged copy.

use std::path::Path;

use crate::support::shake_run;

#[test]
fn verify_golden_journal_exits_0_and_damaged_copy_exits_3() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/journal/v1-two-shards");
    let out = shake_run(&["verify", golden.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("OK: no problem found"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("epoch 1"), "{}", out.stdout);

    let t = tempfile::tempdir().unwrap();
    for sub in ["", "shard-000", "shard-001"] {
        std::fs::create_dir_all(t.path().join(sub)).unwrap();
        for e in std::fs::read_dir(golden.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), t.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let seg = t
        .path()
        .join("shard-001/00000001-00000000000000000007-0000000000.seg");
    let mut b = std::fs::read(&seg).unwrap();
    b[150] ^= 1;
    std::fs::write(&seg, b).unwrap();
    let out = shake_run(&["verify", "--format", "json", t.path().to_str().unwrap()]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| {
        p["file"]
            .as_str()
            .unwrap()
            .ends_with("0000000007-0000000000.seg")
            && p["offset"].is_u64()
    }));
}
