//! The CLI as operators run it: the real binary, stdin, exit codes.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write as _;
use std::process::{Command, Stdio};

fn cli(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otlp-gate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn new_token_hash_and_check_round_trip() {
    let (code, out, _) = cli(&["token", "new", "--id", "ci", "--tenant", "team-a"], b"");
    assert_eq!(code, 0);
    let token = out.lines().nth(1).unwrap().to_owned();
    let (code, digest, _) = cli(&["hash"], format!("{token}\n").as_bytes());
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("sha256: \"{}\"", digest.trim())),
        "entry carries the digest"
    );

    let dir = std::env::temp_dir().join(format!("otlp-gate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.yaml");
    // The entry comes indented for the `tokens:` list of envoy/otlp-gate.yaml (column 10).
    let entry: String = out
        .lines()
        .skip_while(|l| !l.starts_with("          - "))
        .map(|l| format!("{}\n", l.strip_prefix("          ").unwrap()))
        .collect();
    assert!(entry.starts_with("- id: \"ci\"\n  sha256: "), "{entry}");
    std::fs::write(&file, format!("tokens:\n{entry}")).unwrap();
    let (code, out, err) = cli(&["check", file.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK: 1 token(s)"));
    assert!(!out.contains(&token) && !err.contains(&token));

    std::fs::write(&file, "tokens:\n- id: x\n  token: too-short\n").unwrap();
    let (code, _, err) = cli(&["check", file.to_str().unwrap()], b"");
    assert_eq!(code, 1);
    assert!(
        err.contains("tokens[0].token") && !err.contains("too-short"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_and_missing_files() {
    assert_eq!(cli(&["bogus"], b"").0, 2);
    let (code, _, err) = cli(&["check", "/nonexistent/otlp-gate.yaml"], b"");
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"));
    assert_eq!(cli(&["hash"], b"").0, 1);
    let (code, _, err) = cli(&["hash"], b"  \n");
    assert_eq!(code, 1, "whitespace is not a token");
    assert!(err.contains("whitespace"));
    for cmd in [
        &["--help"][..],
        &["token", "new", "--help"],
        &["check", "-h"],
    ] {
        let (code, out, _) = cli(cmd, b"");
        assert_eq!(code, 0, "{cmd:?}");
        assert!(out.starts_with("otlp-gate: operator CLI"), "{cmd:?}");
    }
}

#[test]
fn check_refuses_and_locates_every_problem_in_an_ecds_file() {
    let dir = std::env::temp_dir().join(format!("otlp-gate-cli-ecds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("otlp-gate.yaml");
    let ecds = "resources:\n- '@type': type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: otlp-gate\n  typed_config:\n    '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n    config:\n      configuration:\n        '@type': type.googleapis.com/google.protobuf.StringValue\n        value: '{\"tokens\": [{\"id\": \"a\", \"token\": \"secret-value-xyz\"}, {\"id\": \"a\", \"sha256\": \"00\", \"expires\": \"2027-01-01T00:00:00Z\"}]}'\n";
    std::fs::write(&file, ecds).unwrap();
    let (code, out, err) = cli(&["check", file.to_str().unwrap()], b"");
    assert_eq!(code, 1);
    for want in [
        "resources[0].typed_config.config.configuration: INVALID",
        "tokens[1].sha256",
        "tokens[1].expires: unknown key",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert!(!out.contains("secret-value") && !err.contains("secret-value"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_lifecycle_through_the_binary() {
    let dir = std::env::temp_dir().join(format!("otlp-gate-cli-life-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("otlp-gate.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/otlp-gate.yaml"),
        &file,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    // stdout is the token and nothing else; stderr says what happened, without the token.
    let (code, out, err) = cli(&["token", "add", f, "--id", "ci", "--tenant", "ci"], b"");
    assert_eq!(code, 0, "{err}");
    let token = out.strip_suffix('\n').unwrap();
    assert!(token.starts_with("otlpgate_") && !token.contains(char::is_whitespace));
    assert!(
        err.contains("added token \"ci\"") && !err.contains(token),
        "{err}"
    );
    let (code, digest, _) = cli(&["hash"], out.as_bytes());
    assert_eq!(code, 0);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains(digest.trim())
    );
    // A refused edit: exit 1, check's message, nothing on stdout.
    let (code, out, err) = cli(&["token", "add", f, "--id", "ci", "--tenant", "ci"], b"");
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("duplicate id \"ci\""), "{err}");
    let (code, out, _) = cli(
        &["token", "rotate", f, "--id", "ci", "--new-id", "ci-2"],
        b"",
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("otlpgate_"));
    let (code, out, _) = cli(&["token", "revoke", f, "--id", "ci"], b"");
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = cli(&["token", "list", f], b"");
    assert_eq!(code, 0);
    assert!(
        out.contains("ci-2 ")
            && out
                .lines()
                .any(|l| l.starts_with("ci ") && l.ends_with("disabled")),
        "{out}"
    );
    // Usage errors: exit 2.
    assert_eq!(cli(&["token", "add", f, "--tenant", "x"], b"").0, 2);
    assert_eq!(cli(&["token", "report", f], b"").0, 2);
    assert_eq!(cli(&["token", "frob"], b"").0, 2);
    let (code, out, _) = cli(&["token", "rotate", "--help"], b"");
    assert!(code == 0 && out.contains("--overlap") && !out.contains("check FILE"));
    std::fs::remove_dir_all(&dir).unwrap();
}
