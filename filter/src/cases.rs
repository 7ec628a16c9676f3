//! Runs the shared behaviour tables (`tests/cases/*.json`) through the pure core. The same
//! tables run through the compiled module in the wasmtime harness and, in part, real Envoy.

use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;

use crate::config;
use crate::gate::{self, Action, Env};
use crate::metrics;
use crate::reply::{RETRY_INFO_TYPE, RetryInfo, RpcStatus};
use crate::shared::{Conflict, MemStore, SharedStore};
use crate::time::parse_rfc3339;
use crate::worker::Worker;

const BEHAVIOUR: &str = include_str!("../../tests/cases/behaviour.json");
const CONFIG_ERRORS: &str = include_str!("../../tests/cases/config_errors.json");
const DEFAULT_NOW: &str = "2026-06-01T00:00:00Z";
const DEFAULT_SOURCE: &str = "192.0.2.1:40000";

/// The native stand-in for Envoy: shared data in memory, a settable peer address and clock,
/// and a count of exact clock readings (each one a hostcall in Envoy).
#[derive(Default)]
pub(crate) struct TestEnv {
    pub store: MemStore,
    pub peer: Option<std::net::IpAddr>,
    pub now_ns: i64,
    pub clock_reads: u32,
}

impl SharedStore for TestEnv {
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.store.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict> {
        self.store.set(key, value, cas)
    }
}

impl Env for TestEnv {
    fn peer(&mut self) -> Option<std::net::IpAddr> {
        self.peer
    }
    fn now_ns(&mut self) -> i64 {
        self.clock_reads += 1;
        self.now_ns
    }
}

/// Expands `{{token:NAME}}`, `{{basic:USER:NAME}}` and `{{b64:TEXT}}` in a header value.
fn expand(value: &str, tokens: &Value) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unterminated placeholder") + start;
        let inner = &rest[start + 2..end];
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let tok = |name: &str| {
            tokens[name]
                .as_str()
                .expect("unknown token name")
                .to_owned()
        };
        if let Some(name) = inner.strip_prefix("token:") {
            out.push_str(&tok(name));
        } else if let Some(spec) = inner.strip_prefix("basic:") {
            let (user, name) = spec.rsplit_once(':').expect("basic:USER:NAME");
            out.push_str(&b64(&format!("{user}:{}", tok(name))));
        } else if let Some(text) = inner.strip_prefix("b64:") {
            out.push_str(&b64(text));
        } else {
            panic!("unknown placeholder kind");
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn request_headers(req: &Value, tokens: &Value) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), req["method"].as_str().unwrap().into()),
        (":path".into(), req["path"].as_str().unwrap().into()),
    ];
    for h in req["headers"].as_array().unwrap() {
        headers.push((
            h[0].as_str().unwrap().into(),
            expand(h[1].as_str().unwrap(), tokens),
        ));
    }
    headers
}

fn peer_of(req: &Value) -> Option<std::net::IpAddr> {
    crate::cidr::parse_socket_address(req["source"].as_str().unwrap_or(DEFAULT_SOURCE))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn decide<'c>(
    cfg: &'c config::Config,
    worker: &mut Worker,
    headers: &[(String, String)],
    recent_ns: i64,
    env: &mut TestEnv,
) -> gate::Decision<'c> {
    // Through the host's serialized form, as the adapter reads it.
    let block = crate::headers::serialize(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let pairs = crate::headers::parse(&block).expect("serialized headers parse");
    gate::decide(cfg, worker, pairs.iter().copied(), recent_ns, 1, env)
}

/// Checks a decoded Status against `{"code", "message_contains", "retry_delay"}`.
fn check_status(name: &str, status: &RpcStatus, want: &Value) {
    assert_eq!(
        i64::from(status.code),
        want["code"].as_i64().unwrap(),
        "{name}: body code"
    );
    assert!(
        status
            .message
            .contains(want["message_contains"].as_str().unwrap()),
        "{name}: body message"
    );
    if let Some(delay) = want.get("retry_delay") {
        let d = status
            .details
            .iter()
            .find(|d| d.type_url == RETRY_INFO_TYPE)
            .expect("RetryInfo detail");
        let info = RetryInfo::decode(d.value.as_slice()).unwrap();
        assert_eq!(
            info.retry_delay.map(|d| d.seconds),
            delay.as_i64(),
            "{name}: retry delay"
        );
    }
}

#[test]
fn behaviour_tables() {
    let doc: Value = serde_json::from_str(BEHAVIOUR).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 60, "the behaviour table shrank");
    let mut names = std::collections::HashSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        assert!(names.insert(name), "duplicate case name {name}");
        // The same decision whether the recent clock reading is exact or nearly a margin old
        // (validity boundaries within the margin take the exact clock).
        for lag_s in [0, gate::CLOCK_MARGIN_S - 1] {
            check_case(&doc, case, lag_s);
        }
    }
}

/// One behaviour case through `gate::decide`, the recent clock reading `lag_s` seconds old.
fn check_case(doc: &Value, case: &Value, lag_s: i64) {
    let label = format!(
        "{} (recent clock {lag_s} s old)",
        case["name"].as_str().unwrap()
    );
    let name = label.as_str();
    let cfg_json = &doc["configs"][case["config"].as_str().unwrap()];
    let cfg = config::parse(cfg_json.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{name}: config refused: {e:?}"));
    let now = parse_rfc3339(case["now"].as_str().unwrap_or(DEFAULT_NOW)).unwrap() * 1_000_000_000;
    let recent = now - lag_s * 1_000_000_000;
    let req = &case["request"];
    let headers = request_headers(req, &doc["tokens"]);
    let mut env = TestEnv {
        now_ns: now,
        ..TestEnv::default()
    };
    let mut worker = Worker::new(&cfg);
    // Earlier requests at the same instant (rate limits, failed-auth counting).
    if let Some(prior) = case.get("prior") {
        let preq = prior.get("request").unwrap_or(req);
        let ph = request_headers(preq, &doc["tokens"]);
        env.peer = peer_of(preq);
        for _ in 0..prior["count"].as_u64().unwrap() {
            decide(&cfg, &mut worker, &ph, recent, &mut env);
        }
    }
    env.peer = peer_of(req);
    let d = decide(&cfg, &mut worker, &headers, recent, &mut env);
    let exp = &case["expect"];

    assert_eq!(
        d.verdict.outcome().map(|o| o.as_str()),
        exp["outcome"].as_str(),
        "{name}: outcome"
    );
    assert_eq!(
        d.verdict.would_be().map(|o| o.as_str()),
        exp["would_be"].as_str(),
        "{name}: would-be outcome"
    );
    assert_eq!(
        metrics::signal_label(d.signal),
        exp["signal"].as_str().unwrap(),
        "{name}: signal"
    );
    if let Some(id) = exp["token_id"].as_str() {
        assert_eq!(
            d.token.map(|i| cfg.tokens[i].id.as_str()),
            Some(id),
            "{name}: token id"
        );
    }
    match (&d.action, exp.get("forward"), exp.get("reply")) {
        (Action::Forward(f), Some(want), None) => {
            // Apply the decision the way the adapter does, then look at what upstream sees.
            let mut up = headers.clone();
            for n in f.removes() {
                assert!(
                    headers.iter().any(|(h, _)| h == n),
                    "{name}: removes {n}, which the request does not carry"
                );
            }
            up.retain(|(n, _)| !f.removes().any(|r| r == n));
            // A set replaces every value of its name (Envoy's setCopy).
            for (n, v) in f.sets() {
                up.retain(|(h, _)| h != n);
                up.push((n.to_string(), v.to_string()));
            }
            if let Some(p) = &f.path {
                up.retain(|(n, _)| n != ":path");
                up.push((":path".into(), p.to_string()));
            }
            assert_eq!(
                header(&up, ":path"),
                vec![want["path"].as_str().unwrap()],
                "{name}: path"
            );
            for (hn, hv) in want["headers"].as_object().unwrap() {
                assert_eq!(
                    header(&up, hn),
                    vec![hv.as_str().unwrap()],
                    "{name}: upstream {hn}"
                );
            }
            for hn in want["absent"].as_array().unwrap() {
                assert!(
                    header(&up, hn.as_str().unwrap()).is_empty(),
                    "{name}: {hn} reached upstream"
                );
            }
        }
        (Action::Reply(r), None, Some(want)) => {
            assert_eq!(
                u64::from(r.status),
                want["status"].as_u64().unwrap(),
                "{name}: status"
            );
            if let Some(code) = want.get("grpc_status") {
                let (c, msg) = r
                    .grpc
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name}: not a gRPC reply"));
                assert_eq!(*c as u64, code.as_u64().unwrap(), "{name}: grpc status");
                assert!(
                    msg.contains(want["grpc_message_contains"].as_str().unwrap()),
                    "{name}: grpc message"
                );
                if let Some(delay) = want.get("retry_delay") {
                    let bin = header(&r.headers, "grpc-status-details-bin");
                    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(bin[0])
                        .unwrap();
                    let status = RpcStatus::decode(raw.as_slice()).unwrap();
                    let want = serde_json::json!({"code": code, "message_contains": "", "retry_delay": delay});
                    check_status(name, &status, &want);
                }
                return;
            }
            assert!(r.grpc.is_none(), "{name}: unexpected gRPC reply");
            for (hn, hv) in want["headers"].as_object().unwrap() {
                assert_eq!(
                    header(&r.headers, hn),
                    vec![hv.as_str().unwrap()],
                    "{name}: reply {hn}"
                );
            }
            let body = &want["body"];
            match body["encoding"].as_str().unwrap() {
                "healthz" => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(v["status"], "ok", "{name}");
                    assert_eq!(v["tokens"], body["tokens"], "{name}");
                    assert_eq!(v["config_sha256"], cfg.sha256_hex.as_str(), "{name}");
                    assert_eq!(v["generation"], 1, "{name}");
                }
                "protobuf" => {
                    check_status(name, &RpcStatus::decode(r.body.as_slice()).unwrap(), body)
                }
                _ => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    let mut status = RpcStatus {
                        code: v["code"].as_i64().unwrap() as i32,
                        message: v["message"].as_str().unwrap().into(),
                        details: vec![],
                    };
                    if let Some(d) = v["details"].as_array().and_then(|d| d.first()) {
                        assert_eq!(d["@type"], RETRY_INFO_TYPE, "{name}");
                        let secs: i64 = d["retryDelay"]
                            .as_str()
                            .unwrap()
                            .trim_end_matches('s')
                            .parse()
                            .unwrap();
                        status.details.push(crate::reply::Any {
                            type_url: RETRY_INFO_TYPE.into(),
                            value: RetryInfo {
                                retry_delay: Some(crate::reply::Duration {
                                    seconds: secs,
                                    nanos: 0,
                                }),
                            }
                            .encode_to_vec(),
                        });
                    }
                    check_status(name, &status, body);
                }
            }
        }
        _ => panic!(
            "{name}: expected {}, got the other action",
            if exp.get("forward").is_some() {
                "forward"
            } else {
                "reply"
            }
        ),
    }
}

#[test]
fn config_error_tables() {
    let cases: Value = serde_json::from_str(CONFIG_ERRORS).unwrap();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let raw = match &case["config"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let errors = config::parse(raw.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        let joined = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        for frag in case["error_contains"].as_array().unwrap() {
            let frag = frag.as_str().unwrap();
            assert!(joined.contains(frag), "{name}: {frag:?} not in {joined:?}");
        }
    }
}
