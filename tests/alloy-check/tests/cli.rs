//! The `alloy-check` binary as `k8s/validate.sh` runs it: exit codes and output.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::Command;

fn alloy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../alloy")
}

fn run(args: &[&std::path::Path]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alloy-check"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_files_exit_zero() {
    let dir = alloy_dir();
    let (code, out, _) = run(&[&dir.join("config.alloy"), &dir.join("kubernetes.alloy")]);
    assert_eq!(code, 0);
    assert!(out.starts_with("alloy-check: OK: "), "{out}");
    assert!(out.contains("otelcol.receiver.otlp.gateway"), "{out}");
}

#[test]
fn a_directory_loads_its_alloy_files_as_one_config() {
    let tmp = std::env::temp_dir().join(format!("alloy-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(alloy_dir().join("config.alloy"), tmp.join("config.alloy")).unwrap();
    std::fs::copy(alloy_dir().join("compose.alloy"), tmp.join("compose.alloy")).unwrap();
    std::fs::write(tmp.join("notes.txt"), "not alloy {").unwrap();
    let (code, out, err) = run(&[&tmp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("prometheus.scrape.gateway"), "{out}");

    // A broken file in the directory fails the whole configuration, with its position.
    std::fs::write(tmp.join("extra.alloy"), "loki.write \"platform\" {\n}\n").unwrap();
    let (code, _, err) = run(&[&tmp]);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("extra.alloy:1:1: component `loki.write` with label \"platform\" is already declared at "), "{err}");
    assert!(err.contains("alloy-check: FAIL: "), "{err}");
}

#[test]
fn usage_and_missing_files_exit_two() {
    assert_eq!(run(&[]).0, 2);
    let (code, _, err) = run(&[std::path::Path::new("/nonexistent/x.alloy")]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.alloy"), "{err}");
}
