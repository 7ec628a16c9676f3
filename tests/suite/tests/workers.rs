//! Several VMs of one plugin (Envoy workers) sharing shared data, as issue 7 needs them: one
//! rate budget per token across workers, CAS conflicts, failed-auth memory bounds, body byte
//! charging, ticks and expiry warnings, generations, and the Struct-encoded config Envoy sends.
#![allow(clippy::unwrap_used)] // test code

use otlp_gate_suite::*;
use proxy_wasm_harness::{Action, LogLevel, Stream, Vm, World};

const TOKEN: &str = "worker-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5";
const OTHER: &str = "other-Oq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5Gs";

fn config(extra: &str) -> String {
    format!(
        r#"{{{extra} "tokens": [
            {{"id": "w", "token": "{TOKEN}", "tenant": "team-w", "rate": {{"requests_per_second": 1, "burst": 4}}}},
            {{"id": "b", "token": "{OTHER}", "tenant": "team-b", "rate": {{"bytes_per_second": 1000}}}}
        ]}}"#
    )
}

fn workers(world: &World, n: usize, cfg: &str) -> Vec<Vm> {
    (0..n)
        .map(|_| {
            let mut vm = world.vm().unwrap();
            assert!(vm.start(b"").unwrap());
            assert!(vm.configure(cfg.as_bytes()).unwrap());
            vm
        })
        .collect()
}

/// Ticks every worker: each hands its counter sums to the shared stats.
fn flush(vms: &mut [Vm]) {
    for vm in vms {
        tick(vm);
    }
}

/// Opens a stream from `source` and sends a trace export's request headers (with a
/// `content-length` when given); returns the stream and the filter's answer.
fn export<'v>(
    vm: &'v mut Vm,
    token: &str,
    source: &str,
    content_length: Option<&str>,
    end_of_stream: bool,
) -> (Stream<'v>, Action) {
    let auth = format!("Bearer {token}");
    let mut s = vm.http_stream().unwrap();
    s.set_property("source.address", source.as_bytes()).unwrap();
    let mut h = vec![
        (":method", "POST"),
        (":path", "/observability/v1/traces"),
        ("content-type", "application/x-protobuf"),
        ("authorization", auth.as_str()),
    ];
    h.extend(content_length.map(|len| ("content-length", len)));
    let action = s.request_headers(&h, end_of_stream).unwrap();
    (s, action)
}

/// Sends one export; returns the HTTP status (200 when forwarded).
fn send(vm: &mut Vm, token: &str, source: &str, body: Option<&[u8]>) -> u32 {
    let (mut s, action) = export(vm, token, source, None, body.is_none());
    let status = match s.local_reply() {
        Some(r) => r.status,
        None => {
            assert_eq!(action, Action::Continue);
            if let Some(b) = body {
                assert_eq!(s.request_body(b, true).unwrap(), Action::Continue);
            }
            200
        }
    };
    s.complete().unwrap();
    status
}

#[test]
fn one_budget_across_workers() {
    let world = World::new(module());
    let mut vms = workers(&world, 3, &config(""));
    let statuses: Vec<u32> = (0..6)
        .map(|i| send(&mut vms[i % 3], TOKEN, "192.0.2.1:1", None))
        .collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 200, 429, 429],
        "burst 4 shared by three workers"
    );
    flush(&mut vms);
    assert_eq!(
        world.metric("otlp_gate_token_refused_total.token_id.w.outcome.rate_limited"),
        Some(2)
    );
    world.advance(std::time::Duration::from_secs(2));
    assert_eq!(
        send(&mut vms[2], TOKEN, "192.0.2.1:1", None),
        200,
        "refilled at 1/s"
    );
    assert_eq!(send(&mut vms[0], TOKEN, "192.0.2.1:1", None), 200);
    assert_eq!(send(&mut vms[1], TOKEN, "192.0.2.1:1", None), 429);
}

#[test]
fn cas_conflicts_are_retried_and_never_lose_a_request_count() {
    let world = World::new(module());
    let mut vms = workers(&world, 2, &config(""));
    // The first request creates the bucket (an absent key is written without a CAS check).
    assert_eq!(send(&mut vms[1], TOKEN, "192.0.2.1:1", None), 200);
    // Another worker writes the bucket right after each of the next 3 reads: 3 failed writes,
    // then the 4th attempt succeeds and the request is admitted exactly once.
    world.interfere("otlp_gate.rate.w", 3);
    assert_eq!(send(&mut vms[0], TOKEN, "192.0.2.1:1", None), 200);
    assert_eq!(world.cas_conflicts(), 3);
    flush(&mut vms);
    assert_eq!(
        world
            .metric("otlp_gate_shared_data_conflicts_total")
            .unwrap_or(0),
        0
    );
    // A bucket contended on every one of its 8 attempts: served (never blocked on no information)
    // and counted.
    world.interfere("otlp_gate.rate.w", 8);
    assert_eq!(send(&mut vms[1], TOKEN, "192.0.2.1:1", None), 200);
    flush(&mut vms);
    assert_eq!(
        world.metric("otlp_gate_shared_data_conflicts_total"),
        Some(1)
    );
    // The budget still holds: 4 burst - 2 admitted (the contended one was not charged).
    let ok = (0..5)
        .filter(|i| send(&mut vms[i % 2], TOKEN, "192.0.2.1:1", None) == 200)
        .count();
    assert_eq!(ok, 2);
}

#[test]
fn body_bytes_are_charged_as_they_pass() {
    let world = World::new(module());
    let mut vms = workers(&world, 2, &config(""));
    assert_eq!(
        send(&mut vms[0], OTHER, "192.0.2.1:1", Some(&[0u8; 600])),
        200
    );
    assert_eq!(
        send(&mut vms[1], OTHER, "192.0.2.1:1", Some(&[0u8; 2600])),
        200,
        "400 bytes left: admitted, goes into debt"
    );
    assert_eq!(
        send(&mut vms[0], OTHER, "192.0.2.1:1", None),
        429,
        "2200 bytes owed"
    );
    flush(&mut vms);
    assert_eq!(
        world.metric("otlp_gate_token_bytes_total.token_id.b"),
        Some(3200)
    );
    world.advance(std::time::Duration::from_secs(3));
    assert_eq!(
        send(&mut vms[1], OTHER, "192.0.2.1:1", None),
        200,
        "debt repaid at 1000 B/s"
    );
}

#[test]
fn failed_auth_memory_is_bounded_under_a_flood_of_addresses() {
    let world = World::new(module());
    let cfg = config(r#""failed_auth": {"max_failures": 2, "table_size": 64},"#);
    let mut vms = workers(&world, 2, &cfg);
    for i in 0..5000u32 {
        let source = format!("10.{}.{}.{}:1", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        // Addresses that hash to the same busy slot share a counter, so some get 429 early;
        // nothing without a valid token is ever forwarded.
        let status = send(
            &mut vms[(i % 2) as usize],
            "bogus-token-value-00000",
            &source,
            None,
        );
        assert!(status == 401 || status == 429, "status {status}");
    }
    let slots = world
        .shared_data_keys()
        .iter()
        .filter(|k| k.starts_with("otlp_gate.failed_auth."))
        .count();
    assert!(slots <= 64, "{slots} shared-data keys for 5000 addresses");
    // The NAT case: an address in cooldown still gets its valid requests served.
    for _ in 0..3 {
        send(
            &mut vms[0],
            "bogus-token-value-00000",
            "198.51.100.1:1",
            None,
        );
    }
    assert_eq!(
        send(
            &mut vms[1],
            "bogus-token-value-00000",
            "198.51.100.1:1",
            None
        ),
        429
    );
    assert_eq!(send(&mut vms[1], TOKEN, "198.51.100.1:1", None), 200);
    flush(&mut vms);
    assert_eq!(
        world.metric("otlp_gate_requests_total.signal.traces.outcome.accepted"),
        Some(1)
    );
}

/// A worker that saw an address cooling down answers its further failures without reading
/// shared data (headers, `source.address`, the reply: 3 hostcalls), until the cooldown ends;
/// another worker learns it from shared data once. Valid tokens are served throughout.
#[test]
fn a_worker_remembers_addresses_cooling_down() {
    let world = World::new(module());
    let cfg = config(r#""failed_auth": {"max_failures": 2, "cooldown": "60s"},"#);
    let mut vms = workers(&world, 2, &cfg);
    for vm in vms.iter_mut() {
        // Envoy's default wasm log level (read at configure): debug lines are not even formatted.
        vm.set_log_level(LogLevel::Info);
        assert!(vm.configure(cfg.as_bytes()).unwrap());
    }
    let bogus = "bogus-token-value-00000";
    let calls = |vm: &mut Vm, token: &str| {
        vm.reset_hostcalls();
        let status = send(vm, token, "198.51.100.7:1", None);
        (status, vm.hostcalls())
    };
    // Two failures are answered 401 (each read and write the shared slot), the third starts the
    // cooldown (the slot is written once more).
    assert_eq!(calls(&mut vms[0], bogus), (401, 5));
    assert_eq!(calls(&mut vms[0], bogus), (401, 5));
    assert_eq!(calls(&mut vms[0], bogus), (429, 5));
    assert_eq!(calls(&mut vms[0], bogus), (429, 3), "remembered");
    assert_eq!(calls(&mut vms[1], bogus), (429, 4), "read from shared data");
    assert_eq!(calls(&mut vms[1], bogus), (429, 3));
    assert_eq!(calls(&mut vms[1], TOKEN).0, 200, "a valid token is served");
    // The cooldown ends at its time on every worker.
    world.advance(std::time::Duration::from_secs(61));
    flush(&mut vms);
    assert_eq!(calls(&mut vms[0], bogus), (401, 5));
    assert_eq!(calls(&mut vms[1], bogus), (401, 5));
}

#[test]
fn ticks_repeat_expiry_warnings() {
    let world = World::new(module());
    world.set_time_unix_seconds(unix_seconds("2026-12-25T00:00:00Z"));
    let cfg = format!(
        r#"{{"tokens": [{{"id": "soon", "token": "{TOKEN}", "expires_at": "2027-01-01T00:00:00Z"}}]}}"#
    );
    let mut vm = workers(&world, 1, &cfg).remove(0);
    let warned = |vm: &Vm| {
        vm.logs_at_least(LogLevel::Warn)
            .iter()
            .filter(|l| l.contains("\"soon\" expires at 2027-01-01T00:00:00Z"))
            .count()
    };
    assert_eq!(warned(&vm), 1, "warned at load");
    assert_eq!(vm.tick_period(), std::time::Duration::from_millis(100));
    for _ in 0..10 {
        world.advance(std::time::Duration::from_millis(100));
        tick(&mut vm);
    }
    assert_eq!(warned(&vm), 1, "ticks within the day do not repeat it");
    world.advance(std::time::Duration::from_secs(86_399));
    tick(&mut vm);
    assert_eq!(warned(&vm), 2, "and again a day after load");
    tick(&mut vm);
    assert_eq!(warned(&vm), 2, "once per day");
    world.set_time_unix_seconds(unix_seconds("2027-01-02T00:00:00Z"));
    vm.tick().unwrap();
    assert!(
        vm.logs_at_least(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("\"soon\" expired at"))
    );
    assert_eq!(
        world.metric("otlp_gate_token_expiry_timestamp_seconds.token_id.soon"),
        Some(1_798_761_600)
    );
}

#[test]
fn generations_gauges_and_dry_run_warning() {
    let world = World::new(module());
    let mut vm = workers(&world, 1, &config("")).remove(0);
    assert_eq!(world.metric("otlp_gate_config_generation"), Some(1));
    assert_eq!(world.metric("otlp_gate_tokens_loaded"), Some(2));
    assert!(vm.configure(config("").as_bytes()).unwrap());
    assert_eq!(
        world.metric("otlp_gate_config_generation"),
        Some(1),
        "same content, same generation"
    );
    assert!(
        vm.configure(config(r#""mode": "dry_run","#).as_bytes())
            .unwrap()
    );
    assert_eq!(world.metric("otlp_gate_config_generation"), Some(2));
    assert_eq!(world.metric("otlp_gate_dry_run_enabled"), Some(1));
    assert!(
        vm.logs_at_least(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("NOTHING IS ENFORCED"))
    );
    // A VM Envoy creates later (new worker, or a VM recreated on update) continues the count.
    let mut late = workers(&world, 1, &config(r#""mode": "dry_run","#)).remove(0);
    assert_eq!(world.metric("otlp_gate_config_generation"), Some(2));
    assert!(
        late.configure(config(r#""warn_before": "1d","#).as_bytes())
            .unwrap()
    );
    assert_eq!(world.metric("otlp_gate_config_generation"), Some(3));
    assert!(!vm.configure(b"{\"tokens\": 5}").unwrap());
    assert_eq!(
        world.metric("otlp_gate_config_loads_total.result.rejected"),
        Some(1)
    );
    assert_eq!(
        world.metric("otlp_gate_config_loads_total.result.ok"),
        Some(5)
    );
    // The previous plugin instance (a new root context in Envoy) is untouched by the refusal.
    assert_eq!(
        send(&mut vm, "unknown-token-abcdefghij", "192.0.2.1:1", None),
        200,
        "dry-run forwards"
    );
}

#[test]
fn expiry_gauge_of_a_removed_token_drops_to_zero() {
    let world = World::new(module());
    let cfg =
        |extra: &str| format!(r#"{{"tokens": [{{"id": "keep", "token": "{TOKEN}"}}{extra}]}}"#);
    let gone =
        format!(r#", {{"id": "gone", "token": "{OTHER}", "expires_at": "2027-01-01T00:00:00Z"}}"#);
    let mut vm = workers(&world, 1, &cfg(&gone)).remove(0);
    assert_eq!(
        world.metric("otlp_gate_token_expiry_timestamp_seconds.token_id.gone"),
        Some(1_798_761_600)
    );
    assert!(vm.configure(cfg("").as_bytes()).unwrap());
    assert_eq!(
        world.metric("otlp_gate_token_expiry_timestamp_seconds.token_id.gone"),
        Some(0)
    );
    assert_eq!(world.metric("otlp_gate_tokens_loaded"), Some(1));
}

/// Counters are summed in the VM and handed to Envoy's stats on each tick (100 ms): none is
/// lost when a reload replaces the configuration, when a stream outlives its configuration,
/// or when the plugin is torn down.
#[test]
fn counters_reach_the_stats_on_the_next_tick_and_survive_reloads_and_teardown() {
    let world = World::new(module());
    let mut vm = workers(&world, 1, &config("")).remove(0);
    let accepted = |w: &World| {
        w.metric("otlp_gate_requests_total.signal.traces.outcome.accepted")
            .unwrap_or(0)
    };
    for _ in 0..3 {
        assert_eq!(send(&mut vm, TOKEN, "192.0.2.1:1", None), 200);
    }
    assert_eq!(accepted(&world), 0, "summed in the VM until the next tick");
    tick(&mut vm);
    assert_eq!(accepted(&world), 3);
    assert_eq!(
        world.metric("otlp_gate_token_requests_total.token_id.w"),
        Some(3)
    );
    tick(&mut vm);
    assert_eq!(accepted(&world), 3, "a sum is handed over once");

    // A reload hands the old configuration's sums over at once.
    send(&mut vm, TOKEN, "192.0.2.1:1", None);
    assert!(
        vm.configure(config(r#""warn_before": "1d","#).as_bytes())
            .unwrap()
    );
    assert_eq!(accepted(&world), 4);

    // A stream that began under the old configuration is charged and counted under it when it
    // ends, after its configuration was replaced.
    let (mut s, action) = export(&mut vm, OTHER, "192.0.2.1:1", None, false);
    assert_eq!(action, Action::Continue);
    s.vm().configure(config("").as_bytes()).unwrap();
    assert_eq!(s.request_body(&[0u8; 700], true).unwrap(), Action::Continue);
    s.complete().unwrap();
    assert_eq!(
        world.metric("otlp_gate_token_bytes_total.token_id.b"),
        Some(700),
        "counted when the last holder of the old configuration let go"
    );
    assert_eq!(accepted(&world), 5);

    // Teardown hands over whatever the last tick did not.
    world.advance(std::time::Duration::from_secs(2));
    assert_eq!(send(&mut vm, TOKEN, "192.0.2.1:1", None), 200, "refilled");
    assert!(vm.shutdown().unwrap());
    assert_eq!(accepted(&world), 6);
}

/// What an accepted request costs in hostcalls, for a token without a rate limit and with an
/// expiry far away (the runbook's typical token): one read of the request headers and the four
/// header edits. No clock reading (the tick's reading settles the expiry check) and no counter
/// hostcall (sums go out on the tick).
#[test]
fn an_accepted_request_makes_only_the_header_hostcalls() {
    let world = World::new(module());
    world.set_time_unix_seconds(unix_seconds("2026-06-01T00:00:00Z"));
    let cfg = format!(
        r#"{{"tokens": [{{"id": "t", "token": "{TOKEN}", "tenant": "team-t", "expires_at": "2027-01-01T00:00:00Z"}}]}}"#
    );
    let mut vm = workers(&world, 1, &cfg).remove(0);
    // Envoy's default wasm log level: debug lines are not even formatted.
    vm.set_log_level(LogLevel::Info);
    assert!(vm.configure(cfg.as_bytes()).unwrap());
    send(&mut vm, TOKEN, "192.0.2.1:1", None);
    vm.reset_hostcalls();
    assert_eq!(send(&mut vm, TOKEN, "192.0.2.1:1", None), 200);
    assert_eq!(vm.hostcalls(), 5);
    // Within a minute of its expiry the exact clock is read.
    world.set_time_unix_seconds(unix_seconds("2026-12-31T23:59:30Z"));
    tick(&mut vm);
    vm.reset_hostcalls();
    assert_eq!(send(&mut vm, TOKEN, "192.0.2.1:1", None), 200);
    assert_eq!(vm.hostcalls(), 6);
    world.set_time_unix_seconds(unix_seconds("2027-01-01T00:00:00Z"));
    assert_eq!(
        send(&mut vm, TOKEN, "192.0.2.1:1", None),
        401,
        "expired, before any tick"
    );
}

/// Sends one export with a declared `content-length` and its body; returns the HTTP status.
fn send_sized(vm: &mut Vm, token: &str, body: &[u8]) -> u32 {
    let len = body.len().to_string();
    let (mut s, _) = export(vm, token, "192.0.2.1:1", Some(&len), false);
    if let Some(r) = s.local_reply() {
        return r.status;
    }
    assert_eq!(s.request_body(body, true).unwrap(), Action::Continue);
    200
}

/// A rate-limited token costs its requests no hostcall beyond an unlimited one's while the
/// worker's lease of its budget lasts: the declared length is charged with the admission (from
/// the lease), so neither the request nor its body reads the clock or shared data. The first
/// request, and the first after the lease is spent, make the round with shared data.
#[test]
fn a_leased_rate_budget_makes_no_hostcalls_until_it_is_spent() {
    let world = World::new(module());
    // 10 requests and 10,000 bytes leased per round (10 ms of the rate).
    let cfg = format!(
        r#"{{"tokens": [{{"id": "t", "token": "{TOKEN}", "tenant": "team-t",
            "rate": {{"requests_per_second": 1000, "bytes_per_second": 1000000, "burst": 1000}}}}]}}"#
    );
    let mut vm = workers(&world, 1, &cfg).remove(0);
    vm.set_log_level(LogLevel::Info);
    assert!(vm.configure(cfg.as_bytes()).unwrap());
    let body = [7u8; 512];
    let mut calls = Vec::new();
    for _ in 0..12 {
        vm.reset_hostcalls();
        assert_eq!(send_sized(&mut vm, TOKEN, &body), 200);
        calls.push(vm.hostcalls());
    }
    // Clock, shared-data get and set on the first request and the twelfth (ten leased between).
    assert_eq!(calls, [8, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 8]);
    // Bytes are counted as they pass, whoever paid for them.
    tick(&mut vm);
    assert_eq!(
        world.metric("otlp_gate_token_bytes_total.token_id.t"),
        Some(12 * 512)
    );
    // A body longer than declared pays the rest in a round of its own.
    let (mut s, action) = export(&mut vm, TOKEN, "192.0.2.1:1", Some("10"), false);
    assert_eq!(action, Action::Continue);
    let before = s.vm().hostcalls();
    assert_eq!(
        s.request_body(&[0u8; 20_000], true).unwrap(),
        Action::Continue
    );
    assert_eq!(s.vm().hostcalls() - before, 3, "clock, get, set");
}

/// Workers leasing from one budget never admit more than it holds, however their requests
/// interleave: at one instant, exactly the burst gets through across both.
#[test]
fn leasing_workers_share_one_budget() {
    let world = World::new(module());
    // 10 requests leased per round; a burst of 100.
    let cfg = format!(
        r#"{{"tokens": [{{"id": "t", "token": "{TOKEN}", "tenant": "team-t",
            "rate": {{"requests_per_second": 1000, "burst": 100}}}}]}}"#
    );
    let mut vms = workers(&world, 2, &cfg);
    for pattern in [1usize, 3, 7] {
        world.advance(std::time::Duration::from_secs(5));
        flush(&mut vms);
        let ok = (0..300)
            .filter(|i| send(&mut vms[(i / pattern) % 2], TOKEN, "192.0.2.1:1", None) == 200)
            .count();
        assert_eq!(ok, 100, "pattern {pattern}");
    }
}

/// A token the VM has already accepted (and so remembers, skipping SHA-256) is refused as soon
/// as a reload revokes or disables it, and one it remembers as refused is accepted as soon as a
/// reload adds it: both memos belong to the configuration they were built from.
#[test]
fn a_remembered_token_stops_working_when_a_reload_revokes_or_disables_it() {
    let world = World::new(module());
    let both = format!(
        r#"{{"failed_auth": {{"enabled": false}}, "tokens": [{{"id": "keep", "token": "{TOKEN}"}}, {{"id": "gone", "token": "{OTHER}"}}]}}"#
    );
    let mut vm = workers(&world, 1, &both).remove(0);
    for _ in 0..3 {
        assert_eq!(send(&mut vm, OTHER, "10.0.0.1:1234", None), 200);
    }
    let revoked = format!(
        r#"{{"failed_auth": {{"enabled": false}}, "tokens": [{{"id": "keep", "token": "{TOKEN}"}}]}}"#
    );
    assert!(vm.configure(revoked.as_bytes()).unwrap());
    for _ in 0..3 {
        // Refused, then remembered as refused: still refused, without hashing.
        assert_eq!(send(&mut vm, OTHER, "10.0.0.1:1234", None), 401);
    }
    assert_eq!(send(&mut vm, TOKEN, "10.0.0.1:1234", None), 200);
    let disabled = format!(
        r#"{{"failed_auth": {{"enabled": false}}, "tokens": [{{"id": "keep", "token": "{TOKEN}", "disabled": true}}]}}"#
    );
    assert!(vm.configure(disabled.as_bytes()).unwrap());
    assert_eq!(send(&mut vm, TOKEN, "10.0.0.1:1234", None), 401);
    // A token remembered as refused works as soon as a reload adds it back.
    assert!(vm.configure(both.as_bytes()).unwrap());
    assert_eq!(send(&mut vm, OTHER, "10.0.0.1:1234", None), 200);
    // And a token that only differs in its last byte from a remembered one is not let in.
    assert_eq!(send(&mut vm, TOKEN, "10.0.0.1:1234", None), 200);
    let mut near = TOKEN.to_string();
    near.pop();
    near.push('g');
    assert_eq!(send(&mut vm, &near, "10.0.0.1:1234", None), 401);
}

/// Envoy 1.40 hands a `google.protobuf.Struct` configuration over as serialized protobuf.
#[test]
fn struct_encoded_config_is_read_and_hashed_like_json() {
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn field(tag: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(tag << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn value(v: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        match v {
            serde_json::Value::String(s) => field(3, s.as_bytes(), &mut out),
            serde_json::Value::Bool(b) => out.extend_from_slice(&[4 << 3, u8::from(*b)]),
            serde_json::Value::Number(n) => {
                out.push(2 << 3 | 1);
                out.extend_from_slice(&n.as_f64().unwrap().to_le_bytes());
            }
            serde_json::Value::Object(_) => field(5, &structure(v), &mut out),
            serde_json::Value::Array(a) => {
                let mut list = Vec::new();
                for item in a {
                    field(1, &value(item), &mut list);
                }
                field(6, &list, &mut out);
            }
            serde_json::Value::Null => out.extend_from_slice(&[1 << 3, 0]),
        }
        out
    }
    fn structure(v: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, val) in v.as_object().unwrap() {
            let mut entry = Vec::new();
            field(1, k.as_bytes(), &mut entry);
            field(2, &value(val), &mut entry);
            field(1, &entry, &mut out);
        }
        out
    }
    let json: serde_json::Value = serde_json::from_str(&config("")).unwrap();
    let page = |bytes: &[u8]| {
        let world = World::new(module());
        let mut vm = world.vm().unwrap();
        assert!(vm.start(b"").unwrap());
        assert!(
            vm.configure(bytes).unwrap(),
            "{:?}",
            vm.logs_at_least(LogLevel::Error)
        );
        let body = healthz(&mut vm);
        assert_eq!(send_after(&mut vm), 200);
        body
    };
    fn send_after(vm: &mut Vm) -> u32 {
        send(vm, TOKEN, "192.0.2.1:1", None)
    }
    let from_struct = page(&structure(&json));
    let from_json = page(config("").as_bytes());
    assert_eq!(from_struct["config_sha256"], from_json["config_sha256"]);
    assert_eq!(from_struct["tokens"], 2);
}
