//! The per-token metrics and the refusal details through the compiled module (issue 15): counted
//! in the VM and handed to the host on the tick, so an accepted request keeps its 5 hostcalls;
//! the refusal counters a revoked token can get exist (at 0) from the load; a refused request
//! carries `otlp_gate.<outcome>` as the local reply's details and, for a recognised token, its
//! id in the identity header the access log reads; the configuration gauges (config hash, warn
//! window, token info) describe the loaded file.
#![allow(clippy::unwrap_used)] // test code

use otlp_gate_suite::*;
use proxy_wasm_harness::{Action, LogLevel, Vm, World};

const NOW: &str = "2026-06-01T00:00:00Z";

fn token(id: &str) -> String {
    format!("token-{id}-0123456789abcdefghij")
}

fn config(extra_token: &str) -> String {
    format!(
        r#"{{"warn_before": "3d", "tokens": [
            {{"id": "a", "token": "{}", "tenant": "team.a", "expires_at": "2027-01-01T00:00:00Z"}},
            {{"id": "old", "token": "{}", "tenant": "team-a", "disabled": true}},
            {{"id": "narrow", "token": "{}", "signals": ["traces"]}},
            {{"id": "src", "token": "{}", "tenant": "team-a", "source_cidrs": ["10.0.0.0/8"]}},
            {{"id": "lim", "token": "{}", "tenant": "team-a", "rate": {{"requests_per_second": 1, "burst": 1}}}}
            {extra_token}
        ]}}"#,
        token("a"),
        token("old"),
        token("narrow"),
        token("src"),
        token("lim"),
    )
}

struct Sent {
    status: u32,
    details: String,
    identity: Option<String>,
    hostcalls: u64,
}

/// One OTLP/HTTP export; `content_length` declared or not, `body` chunks after the headers.
fn send(
    vm: &mut Vm,
    tok: &str,
    signal: &str,
    content_length: Option<&str>,
    body: &[&[u8]],
) -> Sent {
    let auth = format!("Bearer {tok}");
    let path = format!("/observability/v1/{signal}");
    vm.reset_hostcalls();
    let mut s = vm.http_stream().unwrap();
    s.set_property("source.address", b"192.0.2.1:5000").unwrap();
    let mut h = vec![
        (":method", "POST"),
        (":path", path.as_str()),
        ("content-type", "application/x-protobuf"),
        ("authorization", auth.as_str()),
    ];
    h.extend(content_length.map(|len| ("content-length", len)));
    let action = s.request_headers(&h, body.is_empty()).unwrap();
    let identity = s.upstream_header("x-otlp-token-id");
    let (status, details) = match s.local_reply() {
        Some(r) => (r.status, r.details.clone()),
        None => {
            assert_eq!(action, Action::Continue);
            for (i, chunk) in body.iter().enumerate() {
                assert_eq!(
                    s.request_body(chunk, i + 1 == body.len()).unwrap(),
                    Action::Continue
                );
            }
            (200, String::new())
        }
    };
    s.complete().unwrap();
    Sent {
        status,
        details,
        identity,
        hostcalls: 0,
    }
    .with_hostcalls(vm)
}

impl Sent {
    fn with_hostcalls(mut self, vm: &mut Vm) -> Sent {
        self.hostcalls = vm.hostcalls();
        self
    }
}

fn setup(cfg: &str) -> (World, Vm) {
    let world = World::new(module());
    world.set_time_unix_seconds(unix_seconds(NOW));
    let mut vm = world.vm().unwrap();
    vm.set_log_level(LogLevel::Info);
    assert!(vm.start(b"").unwrap());
    assert!(
        vm.configure(cfg.as_bytes()).unwrap(),
        "{:?}",
        vm.logs_at_least(LogLevel::Warn)
    );
    (world, vm)
}

fn refused(world: &World, id: &str, outcome: &str) -> Option<i64> {
    world.metric(&format!(
        "otlp_gate_token_refused_total.token_id.{id}.outcome.{outcome}"
    ))
}

fn healthz_sha(vm: &mut Vm) -> String {
    healthz(vm)["config_sha256"].as_str().unwrap().to_owned()
}

#[test]
fn refusal_counters_a_revoked_token_can_get_exist_from_the_load() {
    let (world, _vm) = setup(&config(""));
    // a has a validity window, old is disabled: their first refusal is an increase from 0.
    assert_eq!(refused(&world, "a", "expired"), Some(0));
    assert_eq!(refused(&world, "old", "disabled"), Some(0));
    // Outcomes a token's settings do not allow have no series; the others appear when counted.
    assert_eq!(refused(&world, "a", "disabled"), None);
    assert_eq!(refused(&world, "narrow", "forbidden_signal"), None);
    assert_eq!(refused(&world, "narrow", "expired"), None);
}

#[test]
fn accepted_requests_count_requests_bytes_and_last_seen_on_the_tick() {
    let (world, mut vm) = setup(&config(""));
    send(&mut vm, &token("a"), "traces", Some("0"), &[]); // warm-up: the token is remembered
    tick(&mut vm);
    let base = world
        .metric("otlp_gate_token_requests_total.token_id.a")
        .unwrap();
    let bytes = |w: &World| {
        w.metric("otlp_gate_token_bytes_total.token_id.a")
            .unwrap_or(0)
    };
    let b0 = bytes(&world);

    // Declared length: counted on admission, the body is not counted again.
    let sent = send(&mut vm, &token("a"), "traces", Some("123"), &[&[0u8; 123]]);
    assert_eq!(
        (sent.status, sent.hostcalls),
        (200, 5),
        "an accepted request keeps its 5 hostcalls"
    );
    // No length declared (a chunked body): its bytes are counted as they pass.
    world.advance(std::time::Duration::from_secs(7));
    tick(&mut vm);
    let sent = send(
        &mut vm,
        &token("a"),
        "logs",
        None,
        &[&[1u8; 100], &[2u8; 50]],
    );
    assert_eq!(sent.status, 200);
    assert_eq!(
        world
            .metric("otlp_gate_token_requests_total.token_id.a")
            .unwrap(),
        base + 1,
        "the second request is still in the VM until the tick"
    );
    tick(&mut vm);
    assert_eq!(
        world
            .metric("otlp_gate_token_requests_total.token_id.a")
            .unwrap(),
        base + 2
    );
    assert_eq!(bytes(&world) - b0, 123 + 150);
    assert_eq!(
        world.metric("otlp_gate_token_last_seen_timestamp_seconds.token_id.a"),
        Some(unix_seconds(NOW) as i64 + 7),
        "the tick's clock reading of the last accepted request"
    );
    // Nothing new: nothing is handed over again.
    vm.reset_hostcalls();
    tick(&mut vm);
    assert!(
        vm.hostcalls() <= 2,
        "an idle tick reads the clock only: {}",
        vm.hostcalls()
    );
}

#[test]
fn refusals_of_a_recognised_token_are_counted_by_outcome_and_name_it_in_the_access_log() {
    let (world, mut vm) = setup(&config(""));
    let cases = [
        ("old", "traces", 401, "otlp_gate.disabled", "disabled"),
        (
            "narrow",
            "logs",
            403,
            "otlp_gate.forbidden_signal",
            "forbidden_signal",
        ),
        (
            "src",
            "traces",
            403,
            "otlp_gate.forbidden_source",
            "forbidden_source",
        ),
    ];
    for (id, signal, status, details, outcome) in cases {
        let sent = send(&mut vm, &token(id), signal, Some("10"), &[]);
        assert_eq!(
            (sent.status, sent.details.as_str()),
            (status, details),
            "{id}"
        );
        assert_eq!(
            sent.identity.as_deref(),
            Some(id),
            "{id}: the access log's token_id"
        );
        tick(&mut vm);
        assert_eq!(refused(&world, id, outcome), Some(1), "{id}");
    }
    // Rate limited: counted per token with the bytes it declared.
    assert_eq!(
        send(&mut vm, &token("lim"), "traces", Some("40"), &[]).status,
        200
    );
    let sent = send(&mut vm, &token("lim"), "traces", Some("40"), &[]);
    assert_eq!(
        (sent.status, sent.details.as_str()),
        (429, "otlp_gate.rate_limited")
    );
    assert_eq!(sent.identity.as_deref(), Some("lim"));
    tick(&mut vm);
    assert_eq!(refused(&world, "lim", "rate_limited"), Some(1));
    assert_eq!(
        world.metric("otlp_gate_token_throttled_bytes_total.token_id.lim"),
        Some(40)
    );
    // Unrecognised: the details say why, no token is named, and the client's own identity header
    // (which Envoy's header filter removes in production) is never echoed as a recognised id.
    let sent = send(
        &mut vm,
        "not-a-configured-token-0123456789",
        "traces",
        None,
        &[],
    );
    assert_eq!(
        (sent.status, sent.details.as_str(), sent.identity),
        (401, "otlp_gate.unknown", None)
    );
    // Expired, from the exact second (the validity window's counter existed at 0).
    world.set_time_unix_seconds(unix_seconds("2027-01-01T00:00:00Z"));
    tick(&mut vm);
    let sent = send(&mut vm, &token("a"), "traces", None, &[]);
    assert_eq!(
        (sent.status, sent.details.as_str()),
        (401, "otlp_gate.expired")
    );
    tick(&mut vm);
    assert_eq!(refused(&world, "a", "expired"), Some(1));
    // Accepted requests are not refusals.
    assert_eq!(refused(&world, "lim", "expired"), None);
}

#[test]
fn configuration_gauges_describe_the_loaded_file() {
    let (world, mut vm) = setup(&config(""));
    let sha = healthz_sha(&mut vm);
    let hash = i64::from_str_radix(&sha[..12], 16).unwrap();
    assert_eq!(
        world.metric("otlp_gate_config_hash"),
        Some(hash),
        "the first 48 bits of config_sha256"
    );
    assert_eq!(
        world.metric("otlp_gate_warn_before_seconds"),
        Some(3 * 86_400)
    );
    // The tenant is the last label, dots included; a token without one has no tenant label.
    assert_eq!(
        world.metric("otlp_gate_token_info.token_id.a.tenant.team.a"),
        Some(hash)
    );
    assert_eq!(
        world.metric("otlp_gate_token_info.token_id.narrow"),
        Some(hash)
    );

    // A new file: the loaded tokens' info carries its hash; a removed token's keeps the old one,
    // and its expiry goes to 0 as before.
    let extra = format!(
        r#", {{"id": "new", "token": "{}", "tenant": "team-n"}}"#,
        token("new")
    );
    let cfg = config(&extra).replace(
        &format!(r#"{{"id": "a", "token": "{}", "tenant": "team.a", "expires_at": "2027-01-01T00:00:00Z"}},"#, token("a")),
        "",
    );
    assert!(vm.configure(cfg.as_bytes()).unwrap());
    let sha2 = healthz_sha(&mut vm);
    let hash2 = i64::from_str_radix(&sha2[..12], 16).unwrap();
    assert_ne!(hash, hash2);
    assert_eq!(world.metric("otlp_gate_config_hash"), Some(hash2));
    assert_eq!(
        world.metric("otlp_gate_token_info.token_id.new.tenant.team-n"),
        Some(hash2)
    );
    assert_eq!(
        world.metric("otlp_gate_token_info.token_id.old.tenant.team-a"),
        Some(hash2)
    );
    assert_eq!(
        world.metric("otlp_gate_token_info.token_id.a.tenant.team.a"),
        Some(hash),
        "stale"
    );
    assert_eq!(
        world.metric("otlp_gate_token_expiry_timestamp_seconds.token_id.a"),
        Some(0)
    );
}
