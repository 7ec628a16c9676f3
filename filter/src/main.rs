//! `otlp-gate`: the operator CLI. It validates configurations with exactly the code the filter
//! runs, and creates tokens so that only their digests ever reach a config file. The token
//! commands (`tokencmd`) edit token files in place; this file dispatches and runs `check`.

mod httpget;
mod report;
mod tokencmd;
mod tokenfile;

use std::io::Read as _;
use std::process::ExitCode;

use otlp_gate::config::{self, Config};
use otlp_gate::time::format_rfc3339;
use serde_json::Value;

use tokencmd::{ADD_HELP, LIST_HELP, NEW_HELP, REVOKE_HELP, ROTATE_HELP};
const HASH_HELP: &str = r#"  otlp-gate hash
      Read one token from stdin (one trailing newline is trimmed, so `echo "$T" |` is
      right) and print its sha256, the value for a token entry's `sha256`.
"#;
const CHECK_HELP: &str = r"  otlp-gate check FILE
      Validate a plugin config: plain JSON, or the Envoy ECDS resource file (YAML or JSON)
      that wraps it. Prints every problem with its location; exit status 1 if any.
      Otherwise prints a summary: token count, tenants, soonest expiry, warnings, and the
      config_sha256 that GET {path_prefix}/healthz will report once it is loaded.
";

/// The whole usage text, or one command's part of it.
fn usage(part: Option<&str>) -> String {
    let body = match part {
        Some(p) => p.to_owned(),
        None => format!(
            "{NEW_HELP}{ADD_HELP}{ROTATE_HELP}{REVOKE_HELP}{LIST_HELP}{}{HASH_HELP}{CHECK_HELP}",
            report::HELP
        ),
    };
    format!(
        "otlp-gate: operator CLI for the otlp-gate Envoy filter\n\nUSAGE:\n{body}\n\
         Exit status: 0 ok, 1 invalid input, 2 usage error.\n"
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(msg)) => {
            eprint!("otlp-gate: {msg}\n\n{}", usage(None));
            ExitCode::from(2)
        }
        Err(Failure::Invalid(msg)) => {
            eprint!("{msg}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, PartialEq)]
enum Failure {
    Usage(String),
    Invalid(String),
}

fn run(args: &[&str]) -> Result<String, Failure> {
    if args.iter().any(|a| matches!(*a, "-h" | "--help")) {
        return Ok(usage(match args.first().copied() {
            Some("token") => Some(match args.get(1).copied() {
                Some("add") => ADD_HELP,
                Some("rotate") => ROTATE_HELP,
                Some("revoke") => REVOKE_HELP,
                Some("list") => LIST_HELP,
                Some("report") => report::HELP,
                _ => NEW_HELP,
            }),
            Some("hash") => Some(HASH_HELP),
            Some("check") => Some(CHECK_HELP),
            _ => None,
        }));
    }
    match args {
        [] | ["help", ..] => Ok(usage(None)),
        ["token", cmd, rest @ ..] => match tokencmd::run(cmd, rest, tokencmd::now()) {
            Some(done) => done.map(|d| {
                eprint!("{}", d.stderr);
                d.stdout
            }),
            None => Err(Failure::Usage(format!(
                "unknown token command {cmd:?} (new, add, rotate, revoke, list, report)"
            ))),
        },
        ["token"] => Err(Failure::Usage(
            "token needs a command (new, add, rotate, revoke, list, report)".into(),
        )),
        ["hash"] => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .map_err(|e| Failure::Invalid(format!("cannot read stdin: {e}\n")))?;
            hash(&input).map(|h| format!("{h}\n"))
        }
        ["check", file] => {
            let text = std::fs::read(file)
                .map_err(|e| Failure::Invalid(format!("{file}: cannot read: {e}\n")))?;
            check(file, &text)
        }
        [cmd, ..] => Err(Failure::Usage(format!(
            "unknown command or arguments for {cmd:?}"
        ))),
    }
}

fn hash(input: &[u8]) -> Result<String, Failure> {
    let token = input
        .strip_suffix(b"\n")
        .map_or(input, |t| t.strip_suffix(b"\r").unwrap_or(t));
    if token.is_empty() {
        return Err(Failure::Invalid("hash: no token on stdin\n".into()));
    }
    if !otlp_gate::credentials::is_b64token(token) {
        return Err(Failure::Invalid(
            "hash: the token contains characters a client cannot send in `Authorization: Bearer` \
             (allowed: letters, digits, -._~+/ then optional =); was extra whitespace pasted?\n"
                .into(),
        ));
    }
    Ok(config::hex(&config::digest(token)))
}

/// One plugin configuration found in a file, with where it was found.
struct Found {
    location: String,
    raw: Vec<u8>,
}

fn check(file: &str, text: &[u8]) -> Result<String, Failure> {
    let found = extract_configs(file, text)?;
    let mut out = String::new();
    let mut failed = String::new();
    for f in found {
        match config::parse(&f.raw) {
            Ok(cfg) => out.push_str(&summary(&f.location, &cfg)),
            Err(errors) => {
                failed.push_str(&format!(
                    "{}: INVALID ({} problem(s))\n",
                    f.location,
                    errors.len()
                ));
                for e in errors {
                    failed.push_str(&format!("  {e}\n"));
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(out)
    } else {
        Err(Failure::Invalid(failed))
    }
}

/// Finds the plugin configuration(s): a plain config object, or ECDS `resources[]` whose
/// `typed_config.config.configuration` is a `Struct` (`value:` object) or `StringValue`.
fn extract_configs(file: &str, text: &[u8]) -> Result<Vec<Found>, Failure> {
    let doc: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_slice(text)
            .map_err(|e| Failure::Invalid(format!("{file}: neither JSON nor YAML: {e}\n")))?,
    };
    if doc.get("tokens").is_some() || doc.get("resources").is_none() {
        return Ok(vec![Found {
            location: file.into(),
            raw: serde_json::to_vec(&doc).unwrap_or_default(),
        }]);
    }
    let resources = doc["resources"]
        .as_array()
        .ok_or_else(|| Failure::Invalid(format!("{file}: resources: must be a list\n")))?;
    let mut found = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        let loc = format!("{file}: resources[{i}].typed_config.config.configuration");
        let wasm = &r["typed_config"];
        if wasm["@type"] != "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm" {
            return Err(Failure::Invalid(format!(
                "{file}: resources[{i}].typed_config: @type must be type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n"
            )));
        }
        let conf = &wasm["config"]["configuration"];
        let raw = match (conf["@type"].as_str(), &conf["value"]) {
            (Some("type.googleapis.com/google.protobuf.Struct"), v @ Value::Object(_)) => {
                serde_json::to_vec(v).unwrap_or_default()
            }
            (Some("type.googleapis.com/google.protobuf.StringValue"), Value::String(s)) => {
                s.clone().into_bytes()
            }
            _ => {
                return Err(Failure::Invalid(format!(
                    "{loc}: must be a google.protobuf.Struct with a `value:` object (or a StringValue with a JSON string)\n"
                )));
            }
        };
        found.push(Found { location: loc, raw });
    }
    if found.is_empty() {
        return Err(Failure::Invalid(format!("{file}: resources: is empty\n")));
    }
    Ok(found)
}

fn summary(location: &str, cfg: &Config) -> String {
    let mut tenants: Vec<&str> = cfg
        .tokens
        .iter()
        .filter_map(|t| t.tenant.as_deref())
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    let untenanted = cfg.tokens.iter().filter(|t| t.tenant.is_none()).count();
    let disabled = cfg.tokens.iter().filter(|t| t.disabled).count();
    let mut out = format!(
        "{location}: OK: {} token(s), {} disabled, tenants: {}{}\n",
        cfg.tokens.len(),
        disabled,
        if tenants.is_empty() {
            "none".to_owned()
        } else {
            tenants.join(", ")
        },
        if untenanted > 0 {
            format!(" ({untenanted} token(s) without a tenant: no tenant header is sent)")
        } else {
            String::new()
        },
    );
    if let Some(t) = cfg
        .tokens
        .iter()
        .filter(|t| t.expires_at.is_some())
        .min_by_key(|t| t.expires_at)
    {
        out.push_str(&format!(
            "  soonest expiry: {} at {}\n",
            t.id,
            format_rfc3339(t.expires_at.unwrap_or_default())
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for w in cfg.warnings().into_iter().chain(cfg.expiry_warnings(now)) {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out.push_str(&format!(
        "  config sha256 (healthz reports it once this config is loaded): {}\n",
        cfg.sha256_hex
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokencmd::TOKEN_PREFIX;

    #[test]
    fn usage_errors() {
        assert!(matches!(run(&["frobnicate"]), Err(Failure::Usage(_))));
        assert!(matches!(run(&["token", "old"]), Err(Failure::Usage(_))));
        assert!(matches!(run(&["token", "new"]), Err(Failure::Usage(m)) if m.contains("--id")));
        assert!(
            matches!(run(&["token", "new", "--id"]), Err(Failure::Usage(m)) if m.contains("needs a value"))
        );
        assert!(matches!(
            run(&["token", "new", "--id", "a", "--colour", "red"]),
            Err(Failure::Usage(_))
        ));
        let all = run(&["--help"]).unwrap();
        assert!(all.contains("token new") && all.contains("hash") && all.contains("check FILE"));
        assert_eq!(run(&[]).unwrap(), all);
        for (args, want, not) in [
            (
                &["token", "new", "--help"][..],
                "--not-before",
                "check FILE",
            ),
            (
                &["token", "new", "--id", "x", "-h"][..],
                "--json",
                "check FILE",
            ),
            (&["hash", "--help"][..], "trailing newline", "token new"),
            (&["check", "--help"][..], "ECDS", "token new"),
        ] {
            let out = run(args).unwrap();
            assert!(out.contains(want) && !out.contains(not), "{args:?}: {out}");
        }
    }

    #[test]
    fn token_new_prints_a_valid_entry_without_reusing_tokens() {
        let a = run(&[
            "token",
            "new",
            "--id",
            "team-a",
            "--tenant",
            "team-a",
            "--signals",
            "logs,traces",
            "--json",
        ])
        .unwrap();
        let b = run(&["token", "new", "--id", "team-a", "--json"]).unwrap();
        let token_a = a.lines().nth(1).unwrap();
        let token_b = b.lines().nth(1).unwrap();
        assert_ne!(token_a, token_b);
        assert!(token_a.starts_with(TOKEN_PREFIX) && token_a.len() == TOKEN_PREFIX.len() + 43);
        let entry: Value = serde_json::from_str(a.lines().last().unwrap()).unwrap();
        assert_eq!(
            entry["sha256"],
            config::hex(&config::digest(token_a.as_bytes()))
        );
        assert_eq!(entry["signals"], json!(["logs", "traces"]));
        assert!(!a.lines().last().unwrap().contains(token_a));
    }

    #[test]
    fn token_new_refuses_bad_entries() {
        let e = run(&[
            "token",
            "new",
            "--id",
            "a b",
            "--tenant",
            "x|y",
            "--signals",
            "spans",
            "--expires",
            "soon",
        ])
        .unwrap_err();
        let Failure::Invalid(msg) = e else { panic!() };
        for frag in ["id:", "tenant:", "signals[0]:", "expires_at:"] {
            assert!(msg.contains(frag), "{frag} in {msg}");
        }
    }

    #[test]
    fn hash_trims_one_newline() {
        let want = config::hex(&config::digest(b"abc-token"));
        assert_eq!(hash(b"abc-token\n").unwrap(), want);
        assert_eq!(hash(b"abc-token\r\n").unwrap(), want);
        assert_eq!(hash(b"abc-token").unwrap(), want);
        assert!(hash(b"abc-token\n\n").is_err());
        assert!(hash(b"\n").is_err());
        assert!(hash(b"").is_err());
        let Failure::Invalid(msg) = hash(b"secret with space").unwrap_err() else {
            panic!()
        };
        assert!(!msg.contains("secret"));
    }

    #[test]
    fn check_reads_plain_and_ecds() {
        let plain = br#"{"tokens":[{"id":"a","token":"abcdefghijklmnop","tenant":"t"}]}"#;
        assert!(check("c.json", plain).unwrap().contains("OK: 1 token(s)"));
        let ecds = "version_info: '1'\nresources:\n- '@type': type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: otlp-gate\n  typed_config:\n    '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n    config:\n      configuration:\n        '@type': type.googleapis.com/google.protobuf.Struct\n        value:\n          tokens:\n          - id: a\n            sha256: 0000000000000000000000000000000000000000000000000000000000000001\n            tenant: team-a\n            expires_at: 2027-01-01T00:00:00Z\n";
        let out = check("f.yaml", ecds.as_bytes()).unwrap();
        assert!(
            out.contains("resources[0].typed_config.config.configuration: OK"),
            "{out}"
        );
        assert!(
            out.contains("soonest expiry: a at 2027-01-01T00:00:00Z"),
            "{out}"
        );
        let bad = ecds.replace("team-a", "team|a").replace(
            "0000000000000000000000000000000000000000000000000000000000000001",
            "xyz",
        );
        let Failure::Invalid(msg) = check("f.yaml", bad.as_bytes()).unwrap_err() else {
            panic!()
        };
        assert!(
            msg.contains("tokens[0].sha256") && msg.contains("tokens[0].tenant"),
            "{msg}"
        );
        let expired = ecds.replace("2027-01-01T00:00:00Z", "2020-01-01T00:00:00Z");
        let out = check("f.yaml", expired.as_bytes()).unwrap();
        assert!(
            out.contains("warning: token \"a\" expired at 2020-01-01T00:00:00Z"),
            "{out}"
        );
        let string_value = ecds.replace("google.protobuf.Struct", "google.protobuf.StringValue");
        assert!(check("f.yaml", string_value.as_bytes()).is_err());
        assert!(check("f.yaml", b"resources: 5").is_err());
        assert!(check("f.yaml", b": : :\n  - [").is_err());
    }
}
