#![allow(clippy::unwrap_used)] // test code
//! Every case of tests/cases/behaviour.json and config_errors.json, through the compiled module.
//! Failure messages name the case and the field, never a header value (tokens).

use otlp_gate_suite::*;
use proxy_wasm_harness::{Action, LogLevel, World};
use serde_json::Value;

fn check_status(name: &str, status: &Status, want: &Value) {
    assert_eq!(
        i64::from(status.code),
        want["code"].as_i64().unwrap(),
        "{name}: body code"
    );
    if let Some(m) = want["message_contains"].as_str() {
        assert!(status.message.contains(m), "{name}: body message");
    }
    if let Some(d) = want.get("retry_delay") {
        assert_eq!(status.retry_delay(), d.as_i64(), "{name}: RetryInfo delay");
    }
}

#[test]
fn behaviour_table_through_the_module() {
    let doc: Value = serde_json::from_str(BEHAVIOUR).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    for case in cases {
        // Twice: with the filter's recent clock reading exact, and nearly a margin old (its
        // last tick long ago); the decision must not change.
        for lag_s in [0, STALE_CLOCK_S] {
            let label = format!(
                "{} (last tick {lag_s} s ago)",
                case["name"].as_str().unwrap()
            );
            let name = label.as_str();
            let config = doc["configs"][case["config"].as_str().unwrap()].to_string();
            let (world, mut vm) = configured(&config);
            let now = unix_seconds(case["now"].as_str().unwrap_or(DEFAULT_NOW));
            world.set_time_unix_seconds(now - lag_s);
            tick(&mut vm);
            world.set_time_unix_seconds(now);
            let req = &case["request"];
            let run = |vm: &mut proxy_wasm_harness::Vm, req: &Value| {
                let headers = request_headers(req, &doc["tokens"]);
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut s = vm.http_stream().unwrap();
                let source = req["source"].as_str().unwrap_or(DEFAULT_SOURCE);
                s.set_property("source.address", source.as_bytes()).unwrap();
                if req["listener"] == "health" {
                    s.set_property("xds.filter_chain_name", b"otlp-gate-health")
                        .unwrap();
                }
                let action = s
                    .request_headers(&pairs, false)
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                let up: Vec<(String, String)> = s
                    .upstream_headers()
                    .iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                let reply = s.local_reply().cloned();
                // Request trailers after a forwarded request's headers (HTTP/2, gRPC).
                let mut trailers_up = Vec::new();
                if let (Action::Continue, Some(list)) = (action, req["trailers"].as_array()) {
                    let trailers: Vec<(String, String)> = list
                        .iter()
                        .map(|t| {
                            let v = expand(t[1].as_str().unwrap(), &doc["tokens"]);
                            (t[0].as_str().unwrap().to_owned(), v)
                        })
                        .collect();
                    let pairs: Vec<(&str, &str)> = trailers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    s.request_trailers(&pairs)
                        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                    trailers_up = s
                        .upstream_trailers()
                        .iter()
                        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                        .collect();
                }
                s.complete().unwrap_or_else(|e| panic!("{name}: {e:#}"));
                (action, up, reply, trailers_up)
            };
            if let Some(prior) = case.get("prior") {
                let preq = prior.get("request").unwrap_or(req);
                for _ in 0..prior["count"].as_u64().unwrap() {
                    run(&mut vm, preq);
                }
            }
            let exp = &case["expect"];
            tick_keeping_the_clock(&world, &mut vm, now - lag_s);
            let before: Vec<(String, i64)> = world
                .metrics()
                .into_iter()
                .map(|(n, _, v)| (n, v))
                .collect();
            let (action, up, reply, trailers_up) = run(&mut vm, req);
            tick_keeping_the_clock(&world, &mut vm, now - lag_s);
            let delta = |metric: &str| {
                world.metric(metric).unwrap_or(0)
                    - before
                        .iter()
                        .find(|(n, _)| n == metric)
                        .map_or(0, |(_, v)| *v)
            };
            let signal = exp["signal"].as_str().unwrap();
            match exp["outcome"].as_str() {
                Some(outcome) => assert_eq!(
                    delta(&format!(
                        "otlp_gate_requests_total.signal.{signal}.outcome.{outcome}"
                    )),
                    1,
                    "{name}: requests_total{{signal={signal},outcome={outcome}}}"
                ),
                None => assert!(
                    world
                        .metrics()
                        .iter()
                        .all(|(n, _, v)| !n.starts_with("otlp_gate_requests_total") || *v == 0),
                    "{name}: healthz must not be counted"
                ),
            }
            if let Some(would_be) = exp["would_be"].as_str() {
                assert_eq!(
                    delta(&format!(
                        "otlp_gate_dry_run_total.signal.{signal}.outcome.{would_be}"
                    )),
                    1,
                    "{name}: dry_run_total"
                );
            }
            let values = |name_: &str| {
                up.iter()
                    .filter(|(k, _)| k == name_)
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
            };
            match (exp.get("forward"), exp.get("reply")) {
                (Some(want), None) => {
                    assert_eq!(action, Action::Continue, "{name}: action");
                    assert!(reply.is_none(), "{name}: unexpected local reply");
                    assert_eq!(
                        values(":path"),
                        vec![want["path"].as_str().unwrap()],
                        "{name}: upstream path"
                    );
                    for (h, v) in want["headers"].as_object().unwrap() {
                        assert_eq!(values(h), vec![v.as_str().unwrap()], "{name}: upstream {h}");
                    }
                    for h in want["absent"].as_array().unwrap() {
                        assert!(
                            values(h.as_str().unwrap()).is_empty(),
                            "{name}: {h} reached upstream"
                        );
                    }
                    if req["trailers"].is_array() {
                        let trailer = |n: &str| {
                            trailers_up
                                .iter()
                                .filter(|(k, _)| k == n)
                                .map(|(_, v)| v.as_str())
                                .collect::<Vec<_>>()
                        };
                        for (h, v) in want["trailers"].as_object().unwrap() {
                            assert_eq!(
                                trailer(h),
                                vec![v.as_str().unwrap()],
                                "{name}: trailer {h}"
                            );
                        }
                        for h in want["trailers_absent"].as_array().unwrap() {
                            assert!(
                                trailer(h.as_str().unwrap()).is_empty(),
                                "{name}: trailer {h} reached upstream"
                            );
                        }
                    }
                    if let Some(id) = exp["token_id"]
                        .as_str()
                        .filter(|_| exp["outcome"] == "accepted")
                    {
                        assert_eq!(
                            delta(&format!("otlp_gate_token_requests_total.token_id.{id}")),
                            1,
                            "{name}: token counter"
                        );
                    }
                }
                (None, Some(want)) => {
                    assert_eq!(action, Action::Pause, "{name}: action");
                    let r = reply.unwrap_or_else(|| panic!("{name}: no local reply"));
                    assert_eq!(
                        u64::from(r.status),
                        want["status"].as_u64().unwrap(),
                        "{name}: status"
                    );
                    if let Some(code) = want.get("grpc_status") {
                        assert_eq!(
                            r.grpc_status.map(u64::from),
                            code.as_u64(),
                            "{name}: grpc status"
                        );
                        assert!(
                            r.grpc_message()
                                .contains(want["grpc_message_contains"].as_str().unwrap()),
                            "{name}: grpc-message"
                        );
                        if want.get("retry_delay").is_some() {
                            let bin = r
                                .header("grpc-status-details-bin")
                                .unwrap_or_else(|| panic!("{name}: no grpc-status-details-bin"));
                            let st = Status::from_grpc_details(bin.as_bytes())
                                .unwrap_or_else(|| panic!("{name}: bad status details"));
                            check_status(
                                name,
                                &st,
                                &serde_json::json!({"code": code, "retry_delay": want["retry_delay"]}),
                            );
                        }
                        continue;
                    }
                    assert_eq!(r.grpc_status, None, "{name}: unexpected gRPC status");
                    for (h, v) in want["headers"].as_object().unwrap() {
                        assert_eq!(
                            r.header(h),
                            Some(v.as_str().unwrap()),
                            "{name}: reply header {h}"
                        );
                    }
                    let body = &want["body"];
                    match body["encoding"].as_str().unwrap() {
                        "healthz-bare" => {
                            assert_eq!(r.body, br#"{"status":"ok"}"#, "{name}");
                        }
                        "healthz" => {
                            let v: Value = serde_json::from_slice(&r.body).unwrap();
                            assert_eq!(v["status"], "ok", "{name}");
                            assert_eq!(v["tokens"], body["tokens"], "{name}");
                            assert_eq!(v["generation"], 1, "{name}");
                            assert_eq!(
                                v["config_sha256"].as_str().map(str::len),
                                Some(64),
                                "{name}"
                            );
                        }
                        "protobuf" => {
                            let st = <Status as prost::Message>::decode(r.body.as_slice())
                                .unwrap_or_else(|_| {
                                    panic!("{name}: body is not a protobuf Status")
                                });
                            check_status(name, &st, body);
                        }
                        _ => {
                            let st = Status::from_json(&r.body)
                                .unwrap_or_else(|| panic!("{name}: body is not a JSON Status"));
                            check_status(name, &st, body);
                        }
                    }
                }
                _ => panic!("{name}: a case needs exactly one of forward/reply"),
            }
            // No token value ever reaches the logs.
            for line in vm.logs() {
                for (_, t) in doc["tokens"].as_object().unwrap() {
                    assert!(
                        !line.message.contains(t.as_str().unwrap()),
                        "{name}: a token was logged"
                    );
                }
            }
        }
    }
}

/// A tick (the filter flushes its counters) at `at`, the clock then put back where it was.
fn tick_keeping_the_clock(world: &World, vm: &mut proxy_wasm_harness::Vm, at: u64) {
    let now = world.now_unix_nanos();
    world.set_time_unix_seconds(at);
    tick(vm);
    world.set_time_unix_nanos(now);
}

#[test]
fn config_errors_are_refused_at_on_configure() {
    let cases: Value = serde_json::from_str(CONFIG_ERRORS).unwrap();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let raw = match &case["config"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let world = World::new(module());
        let mut vm = world.vm().unwrap();
        assert!(vm.start(b"").unwrap());
        assert!(!vm.configure(raw.as_bytes()).unwrap(), "{name}: accepted");
        let errors = vm.logs_at_least(LogLevel::Error).join("\n");
        for frag in case["error_contains"].as_array().unwrap() {
            assert!(
                errors.contains(frag.as_str().unwrap()),
                "{name}: {frag} not in the error log"
            );
        }
        assert_eq!(
            world.metric("otlp_gate_config_loads_total.result.rejected"),
            Some(1),
            "{name}"
        );
        // Envoy never opens streams on a refused plugin; if a host did, the module traps
        // (fail closed) instead of forwarding unchecked traffic.
        let err = vm
            .http_stream()
            .err()
            .unwrap_or_else(|| panic!("{name}: stream opened without a config"));
        assert!(
            format!("{err:#}").contains("create_http_context returned None"),
            "{name}: {err:#}"
        );
    }
}
