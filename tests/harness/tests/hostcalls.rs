//! The host checked on its own: the purpose-built `hostcheck` module (tests/hostcheck) performs
//! each hostcall and reports what it got back, so a host bug cannot hide behind a filter bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use proxy_wasm_harness::{Action, LogLevel, MetricType, World};
use support::{all, module, one, run, started, text, vm_with};

fn messages(vm: &proxy_wasm_harness::Vm) -> Vec<(LogLevel, String)> {
    vm.logs()
        .iter()
        .map(|l| (l.level, l.message.clone()))
        .collect()
}

#[test]
fn start_and_configure_hand_over_both_configurations() {
    let world = World::new(module());
    let mut vm = world.vm().unwrap();
    assert!(vm.configure(b"x").is_err(), "configure before start");
    assert!(vm.http_stream().is_err(), "a stream before start");
    assert!(vm.start(b"vm-config").unwrap());
    assert!(vm.start(b"vm-config").is_err(), "started twice");
    // The SDK reads configurations with max_size = usize::MAX; a big one must arrive whole.
    let big = format!("tick=250 {}", "x".repeat(70_000));
    assert!(vm.configure(big.as_bytes()).unwrap());
    let logs = messages(&vm);
    assert!(logs.contains(&(LogLevel::Info, "vm_config: vm-config (9 bytes)".into())));
    assert!(logs.contains(&(LogLevel::Info, format!("configured: {big} (70009 bytes)"))));
    assert_eq!(vm.tick_period(), Duration::from_millis(250));

    let mut refused = world.vm().unwrap();
    assert!(
        !refused.start(b"refuse").unwrap(),
        "on_vm_start's false is reported"
    );
    let mut refused = world.vm().unwrap();
    assert!(refused.start(b"").unwrap());
    assert!(!refused.configure(b"refuse").unwrap());
    assert_eq!(
        refused.logs_at_least(LogLevel::Error),
        vec!["configuration refused on purpose"]
    );
}

#[test]
fn streams_end_in_envoys_order_log_done_delete() {
    let (_w, mut vm) = started();
    vm.clear_logs();
    let mut s = vm.http_stream().unwrap();
    let id = s.context_id();
    s.request_headers(&[(":path", "/")], true).unwrap();
    s.response_headers(&[(":status", "200")], true).unwrap();
    s.complete().unwrap();
    let lines: Vec<String> = vm.logs().iter().map(|l| l.message.clone()).collect();
    assert_eq!(
        lines,
        vec![
            format!("on_log {id}"),
            format!("on_done {id}"),
            format!("on_delete {id}")
        ]
    );
    let next = vm.http_stream().unwrap();
    assert!(next.context_id() > id, "context ids are never reused");
}

#[test]
fn header_map_get_replace_add_remove() {
    let (_w, mut vm) = started();
    let (action, up) = run(
        &mut vm,
        "headers",
        &[
            ("x-get", "first"),
            ("X-Get", "second"),
            ("x-replace", "1"),
            ("x-replace", "2"),
            ("x-remove", "r"),
            ("x-remove", "rr"),
            ("x-remove2", "r2"),
        ],
    );
    assert_eq!(action, Action::Continue);
    assert_eq!(one(&up, "x-count"), "11", "pairs as sent");
    assert_eq!(one(&up, "x-got"), "first", "a get returns the first value");
    assert_eq!(
        one(&up, "x-got-case"),
        "first",
        "names are case-insensitive"
    );
    assert_eq!(one(&up, "x-got-missing"), "<absent>", "NOT_FOUND is None");
    assert_eq!(
        all(&up, "x-get"),
        vec!["first", "second"],
        "names are stored lower-case"
    );
    assert_eq!(
        all(&up, "x-replace"),
        vec!["replaced"],
        "replace leaves one value"
    );
    assert_eq!(all(&up, "x-add"), vec!["added"]);
    assert!(all(&up, "x-remove").is_empty(), "remove drops every value");
    assert!(all(&up, "x-remove2").is_empty());
    let names: Vec<&str> = up.iter().map(|(k, _)| k.as_str()).collect();
    let replaced_at = names.iter().position(|n| *n == "x-replace").unwrap();
    assert!(
        replaced_at < names.iter().position(|n| *n == "x-add").unwrap(),
        "a replaced header keeps its place; added ones go last"
    );

    let (_, up) = run(&mut vm, "set-pairs", &[("x-dropped", "1")]);
    assert_eq!(
        up,
        vec![
            (":path".to_owned(), "/replaced".to_owned()),
            ("x-only".to_owned(), "1".to_owned())
        ],
        "set_header_map_pairs replaces the whole map"
    );
}

#[test]
fn header_values_are_bytes() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    let value = vec![0xff, 0x00, 0x80, b'a'];
    s.request_headers_bytes(
        &[
            (":path".into(), b"/".to_vec()),
            ("x-hostcheck".into(), b"bytes".to_vec()),
            ("x-bin".into(), value.clone()),
        ],
        true,
    )
    .unwrap();
    assert_eq!(s.upstream_header("x-bin-len").as_deref(), Some("4"));
    let copy = s
        .upstream_headers()
        .iter()
        .find(|(k, _)| k == "x-bin-copy")
        .map(|(_, v)| v.clone());
    assert_eq!(
        copy,
        Some(value),
        "non-UTF-8 and NUL bytes survive both ways"
    );
    s.complete().unwrap();
}

#[test]
fn local_replies_http_and_grpc() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    assert_eq!(
        s.request_headers(&[(":path", "/"), ("x-hostcheck", "reply")], true)
            .unwrap(),
        Action::Pause
    );
    let r = s.local_reply().unwrap().clone();
    assert_eq!(r.status, 418);
    assert_eq!(r.body, b"short and stout");
    assert_eq!(r.grpc_status, None);
    assert_eq!(r.header("X-Reply"), Some("yes"));
    let values: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "x-reply")
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(
        values,
        vec![&b"yes"[..], &b"twice"[..]],
        "repeated reply headers"
    );
    s.complete().unwrap();

    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "reply-empty")], true)
        .unwrap();
    let r = s.local_reply().unwrap();
    assert_eq!((r.status, r.body.len(), r.headers.len()), (204, 0, 0));
    s.complete().unwrap();

    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "grpc")], true)
        .unwrap();
    let r = s.local_reply().unwrap();
    assert_eq!(r.status, 200, "gRPC replies are HTTP 200, trailers-only");
    assert_eq!(r.grpc_status, Some(7));
    assert_eq!(r.grpc_message(), "denied by hostcheck");
    let md = r.headers.iter().find(|(k, _)| k == "x-md").unwrap();
    assert_eq!(md.1, b"\x00\xffbin");
    s.complete().unwrap();

    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "clock")], true)
        .unwrap();
    assert!(
        s.local_reply().is_none(),
        "no reply unless the module sends one"
    );
    s.complete().unwrap();
}

#[test]
fn properties_come_from_headers_the_stream_the_vm_and_the_plugin() {
    let module = module();
    let world = World::new(module).with_names("my-vm", "my-plugin");
    let mut vm = vm_with(&world, "");
    vm.set_property("node.id", b"node-1");
    let mut s = vm.http_stream().unwrap();
    s.set_property("source.address", b"203.0.113.5:4000")
        .unwrap();
    s.request_headers(
        &[
            (":method", "PUT"),
            (":path", "/x/y?z"),
            (":authority", "api.example"),
            ("x-hostcheck", "properties"),
        ],
        true,
    )
    .unwrap();
    let up = text(s.upstream_headers());
    s.complete().unwrap();
    let prop = |p: &str| one(&up, &format!("x-prop-{p}")).to_owned();
    assert_eq!(prop("request.path"), "/x/y?z");
    assert_eq!(prop("request.method"), "PUT");
    assert_eq!(prop("request.host"), "api.example");
    assert_eq!(prop("source.address"), "203.0.113.5:4000");
    assert_eq!(prop("plugin_name"), "my-plugin");
    assert_eq!(prop("plugin_vm_id"), "my-vm");
    assert_eq!(prop("node.id"), "node-1");
    assert_eq!(prop("hostcheck.custom"), "set-by-module", "set then get");
    assert_eq!(prop("no.such.property"), "<absent>", "NOT_FOUND is None");

    // A stream property does not leak into the next stream.
    let (_, up) = run(&mut vm, "properties", &[]);
    assert_eq!(one(&up, "x-prop-source.address"), "<absent>");
    assert_eq!(one(&up, "x-prop-request.method"), "POST");
}

#[test]
fn shared_data_is_shared_by_workers_with_compare_and_swap() {
    let world = World::new(module());
    let mut a = vm_with(&world, "");
    let mut b = vm_with(&world, "");

    let (_, up) = run(&mut a, "shared", &[("x-key", "k"), ("x-value", "from-a")]);
    assert_eq!(one(&up, "x-before"), "<absent>");
    assert_eq!(one(&up, "x-cas"), "<none>");
    assert_eq!(one(&up, "x-set"), "ok");
    let (_, up) = run(&mut b, "shared", &[("x-key", "k"), ("x-value", "from-b")]);
    assert_eq!(
        one(&up, "x-before"),
        "from-a",
        "worker b sees worker a's write"
    );
    let cas: u32 = one(&up, "x-cas").parse().unwrap();
    assert_eq!(one(&up, "x-set"), "ok");
    let (value, new_cas) = world.shared_data("k").unwrap();
    assert_eq!(value, b"from-b");
    assert_ne!(new_cas, cas, "every write changes the CAS value");
    assert_eq!(world.shared_data_keys(), vec!["k".to_owned()]);

    // Another worker writes between this read and its CAS write.
    world.interfere("k", 1);
    let (_, up) = run(&mut a, "shared", &[("x-key", "k"), ("x-value", "lost")]);
    assert_eq!(one(&up, "x-set"), "cas_mismatch");
    assert_eq!(world.cas_conflicts(), 1);
    assert_eq!(world.shared_data("k").unwrap().0, b"from-b");

    // A module that retries gets through once the interference stops.
    world.interfere("k", 3);
    let (_, up) = run(
        &mut b,
        "shared-retry",
        &[("x-key", "k"), ("x-value", "won")],
    );
    assert_eq!((one(&up, "x-set"), one(&up, "x-attempts")), ("ok", "4"));
    assert_eq!(world.cas_conflicts(), 4);
    assert_eq!(world.shared_data("k").unwrap().0, b"won");

    // Tests can seed shared data; a fresh world starts empty.
    world.set_shared_data("seeded", b"v");
    let (_, up) = run(&mut a, "shared", &[("x-key", "seeded")]);
    assert_eq!(one(&up, "x-before"), "v");
    assert!(World::new(module()).shared_data_keys().is_empty());
}

#[test]
fn shared_queues_per_vm_id() {
    let world = World::new(module());
    let mut owner = vm_with(&world, "");
    let mut other = vm_with(&world, "");
    let (_, up) = run(&mut other, "enqueue", &[("x-vm", "vm"), ("x-value", "one")]);
    let id: u32 = one(&up, "x-queue").parse().unwrap();
    assert_eq!(one(&up, "x-enqueue"), "ok");
    run(&mut other, "enqueue", &[("x-value", "two")]);
    assert_eq!(world.queue_len("vm", "hostcheck"), Some(2));
    let (_, up) = run(&mut other, "dequeue", &[]);
    assert_eq!(one(&up, "x-dequeued"), "one", "first in, first out");
    owner.clear_logs();
    owner.queue_ready(id).unwrap();
    assert_eq!(
        owner.logs_at_least(LogLevel::Info),
        vec![format!("queue_ready {id}: two").as_str()]
    );
    let (_, up) = run(&mut other, "dequeue", &[]);
    assert_eq!(one(&up, "x-dequeued"), "<empty>", "EMPTY is None");
    let (_, up) = run(&mut other, "enqueue", &[("x-vm", "another-vm")]);
    assert_eq!(one(&up, "x-queue"), "<absent>", "queues are per vm_id");
    assert_eq!(world.queue_len("another-vm", "hostcheck"), None);
}

#[test]
fn metrics_are_defined_by_name_and_shared_by_workers() {
    let world = World::new(module());
    let mut a = vm_with(&world, "");
    let mut b = vm_with(&world, "");
    let (_, up) = run(&mut a, "metrics", &[("x-delta", "5"), ("x-gauge", "42")]);
    assert_eq!((one(&up, "x-counter"), one(&up, "x-gauge")), ("5", "42"));
    let (_, up) = run(&mut b, "metrics", &[("x-delta", "2"), ("x-gauge", "7")]);
    assert_eq!(one(&up, "x-counter"), "7", "one counter for every worker");
    assert_eq!(world.metric("hostcheck_requests"), Some(7));
    assert_eq!(
        world.metric("hostcheck_gauge"),
        Some(7),
        "a gauge holds the last value"
    );
    assert_eq!(world.metric("hostcheck_hist"), Some(7));
    assert_eq!(
        world.metric("wasmcustom.hostcheck_requests"),
        None,
        "names as defined"
    );
    assert_eq!(world.metric("never_defined"), None);
    let kinds: Vec<(String, MetricType)> = world
        .metrics()
        .into_iter()
        .map(|(n, t, _)| (n, t))
        .collect();
    assert!(kinds.contains(&("hostcheck_requests".into(), MetricType::Counter)));
    assert!(kinds.contains(&("hostcheck_gauge".into(), MetricType::Gauge)));
    assert!(kinds.contains(&("hostcheck_hist".into(), MetricType::Histogram)));
    assert_eq!(
        kinds.len(),
        4,
        "defining the same name again (second VM) reuses it"
    );
}

#[test]
fn shutdown_runs_the_root_teardown_and_then_refuses_root_calls() {
    let world = World::new(module());
    let mut vm = vm_with(&world, "");
    vm.clear_logs();
    assert!(
        vm.shutdown().unwrap(),
        "hostcheck's root on_done returns true"
    );
    assert_eq!(vm.logs_at_least(LogLevel::Info), vec!["root on_done"]);
    let err = vm.tick().unwrap_err().to_string();
    assert!(err.contains("shut down"), "{err}");
    assert!(
        vm.http_stream().is_err(),
        "no stream without a root context"
    );
    assert!(
        vm.shutdown().is_err(),
        "a second shutdown has no root to tear down"
    );
}

#[test]
fn ticks_use_the_test_clock() {
    let world = World::new(module());
    let mut vm = vm_with(&world, "tick=1500");
    assert_eq!(vm.tick_period(), Duration::from_millis(1500));
    world.set_time_unix_seconds(1_800_000_000);
    vm.clear_logs();
    vm.tick().unwrap();
    world.advance(Duration::from_millis(1500));
    vm.tick().unwrap();
    assert_eq!(
        vm.logs_at_least(LogLevel::Info),
        vec![
            "tick 1 at 1800000000000000000",
            "tick 2 at 1800000001500000000"
        ]
    );
    assert_eq!(world.metric("hostcheck_ticks"), Some(2));
    assert_eq!(world.now_unix_nanos(), 1_800_000_001_500_000_000);
    let other = vm_with(&world, "");
    assert_eq!(other.tick_period(), Duration::ZERO, "no tick unless asked");
}

#[test]
fn clock_and_randomness_are_the_tests() {
    let world = World::new(module());
    let mut vm = vm_with(&world, "");
    world.set_time_unix_nanos(1_750_000_000_123_456_789);
    let (_, up) = run(&mut vm, "clock", &[]);
    assert_eq!(one(&up, "x-now"), "1750000000123456789");
    assert_eq!(
        one(&up, "x-wasi-now"),
        "1750000000123456789",
        "WASI clock_time_get is the same clock"
    );

    let random = |seed: u64| {
        let world = World::new(module());
        world.seed_random(seed);
        let mut vm = vm_with(&world, "");
        let (_, up) = run(&mut vm, "random", &[]);
        assert_eq!(one(&up, "x-random-errno"), "0");
        let first = one(&up, "x-random").to_owned();
        let (_, up) = run(&mut vm, "random", &[]);
        (first, one(&up, "x-random").to_owned())
    };
    let (a1, a2) = random(7);
    assert_eq!(a1.len(), 32);
    assert_ne!(a1, "0".repeat(32));
    assert_ne!(a1, a2, "successive draws differ");
    assert_eq!(random(7), (a1.clone(), a2), "same seed, same bytes");
    assert_ne!(random(8).0, a1, "another seed, other bytes");
}

#[test]
fn logs_keep_levels_and_stdio_becomes_logs() {
    let (_w, mut vm) = started();
    vm.clear_logs();
    let (_, up) = run(&mut vm, "log", &[]);
    assert_eq!(one(&up, "x-log-level"), "0", "default level: trace");
    let logs = messages(&vm);
    let expected = [
        (LogLevel::Trace, "level trace"),
        (LogLevel::Debug, "level debug"),
        (LogLevel::Info, "level info"),
        (LogLevel::Warn, "level warn"),
        (LogLevel::Error, "level error"),
        (LogLevel::Critical, "level critical"),
    ];
    let got: Vec<(LogLevel, &str)> = logs
        .iter()
        .filter(|(_, m)| m.starts_with("level "))
        .map(|(l, m)| (*l, m.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        vm.logs_at_least(LogLevel::Warn),
        vec!["level warn", "level error", "level critical"]
    );

    vm.set_log_level(LogLevel::Warn);
    let (_, up) = run(&mut vm, "log", &[]);
    assert_eq!(
        one(&up, "x-log-level"),
        "3",
        "proxy_get_log_level reports the setting"
    );

    vm.clear_logs();
    run(&mut vm, "stdio", &[]);
    let logs = messages(&vm);
    assert!(
        logs.contains(&(LogLevel::Info, "to stdout".into())),
        "fd 1 → info"
    );
    assert!(
        logs.contains(&(LogLevel::Error, "to stderr".into())),
        "fd 2 → error"
    );
}

#[test]
fn http_calls_are_answered_by_the_test_and_resume_the_stream() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    let id = s.context_id();
    assert_eq!(
        s.request_headers(&[(":path", "/"), ("x-hostcheck", "http-call")], true)
            .unwrap(),
        Action::Pause
    );
    let token: u32 = s.upstream_header("x-call-token").unwrap().parse().unwrap();
    let calls = s.vm().http_calls().to_vec();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!((c.token, c.context_id), (token, id));
    assert_eq!(c.upstream, "auth_cluster");
    assert_eq!(c.body, b"ping");
    assert_eq!(c.timeout_ms, 1500);
    assert!(c.headers.contains(&(":path".into(), b"/check".to_vec())));
    assert_eq!(c.trailers, vec![("x-trailer".into(), b"t".to_vec())]);
    assert!(
        s.vm()
            .respond_http_call(token + 100, &[], b"", &[])
            .is_err(),
        "an unknown token is an error"
    );
    s.vm()
        .respond_http_call(
            token,
            &[(":status", "200"), ("x-a", "1")],
            b"pong",
            &[("x-done", "yes")],
        )
        .unwrap();
    assert_eq!(s.upstream_header("x-call-status").as_deref(), Some("200"));
    assert_eq!(s.upstream_header("x-call-body").as_deref(), Some("pong"));
    assert_eq!(s.upstream_header("x-call-trailer").as_deref(), Some("yes"));
    assert_eq!(
        s.upstream_header("x-call-sizes"),
        Some(format!("{token} 2 4 1"))
    );
    assert_eq!(s.continued(), &[0], "resumed the request (stream type 0)");
    assert!(s.vm().http_calls().is_empty());
    s.complete().unwrap();

    // Envoy refuses a call without :path with BAD_ARGUMENT, which the SDK returns as an error.
    let (action, up) = run(&mut vm, "http-call-bad", &[]);
    assert_eq!(action, Action::Continue);
    assert_eq!(one(&up, "x-call-error"), "BadArgument");
    assert!(vm.http_calls().is_empty());

    // A stream that ends first takes its pending call with it.
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "http-call")], true)
        .unwrap();
    s.complete().unwrap();
    assert!(vm.http_calls().is_empty());
}

#[test]
fn bodies_are_read_rewritten_and_buffered_like_envoy() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "body")], false)
        .unwrap();
    assert_eq!(s.request_body(b"abc", false).unwrap(), Action::Continue);
    assert_eq!(s.upstream_body(), b"ABC", "replaced from 0");
    assert_eq!(s.request_body(b"def", true).unwrap(), Action::Continue);
    assert_eq!(
        s.upstream_body(),
        b"DEF!",
        "a chunk after Continue stands alone; appended"
    );
    s.complete().unwrap();

    vm.clear_logs();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "buffer")], false)
        .unwrap();
    assert_eq!(s.request_body(b"ab", false).unwrap(), Action::Pause);
    assert_eq!(s.request_body(b"cd", false).unwrap(), Action::Pause);
    assert_eq!(s.request_body(b"e", true).unwrap(), Action::Continue);
    assert_eq!(s.upstream_body(), b"abcde");
    s.complete().unwrap();
    assert!(
        vm.logs()
            .iter()
            .any(|l| l.message == "buffered 5 bytes: abcde (sizes [2, 4, 5])"),
        "after Pause the body accumulates and the callback sees the cumulative size: {:?}",
        messages(&vm)
    );
}

#[test]
fn trailers_and_the_response_path() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/")], false).unwrap();
    s.request_body(b"x", false).unwrap();
    assert_eq!(
        s.request_trailers(&[("grpc-timeout", "1S"), ("x-t", "2")])
            .unwrap(),
        Action::Continue
    );
    assert!(
        s.upstream_trailers()
            .contains(&("x-trailer-count".into(), b"2/2".to_vec()))
    );
    assert_eq!(
        s.response_headers(&[(":status", "503")], false).unwrap(),
        Action::Continue
    );
    let down = text(s.downstream_headers());
    assert_eq!(one(&down, "x-hostcheck-response"), "seen");
    assert_eq!(one(&down, "x-upstream-status"), "503");
    assert_eq!(
        s.response_body(b"original", false).unwrap(),
        Action::Continue
    );
    assert_eq!(s.downstream_body(), b"original");
    s.response_body(b"end", true).unwrap();
    assert_eq!(s.downstream_body(), b"rewritten");
    assert_eq!(
        s.response_trailers(&[("grpc-status", "0")]).unwrap(),
        Action::Continue
    );
    assert_eq!(s.downstream_trailers().len(), 1);
    s.complete().unwrap();
}

#[test]
fn hostcalls_are_counted_per_callback() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    s.vm().reset_hostcalls();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "clock")], true)
        .unwrap();
    // get x-hostcheck, proxy_get_current_time, WASI clock_time_get, two header replaces
    assert_eq!(s.vm().hostcalls(), 5);
    s.vm().reset_hostcalls();
    s.complete().unwrap();
    // on_log, on_done and on_delete each log one line
    assert_eq!(vm.hostcalls(), 3);
}

#[test]
fn fuel_consumed_measures_work_deterministically() {
    let (_w, mut vm) = started();
    let measure = |vm: &mut proxy_wasm_harness::Vm| {
        vm.reset_fuel_consumed();
        run(vm, "clock", &[]);
        vm.fuel_consumed()
    };
    let first = measure(&mut vm); // includes one-time setup (allocator, tables)
    let second = measure(&mut vm);
    let third = measure(&mut vm);
    assert!(second > 0 && first >= second, "{first} then {second}");
    assert_eq!(second, third, "the same work costs the same fuel");
    vm.reset_fuel_consumed();
    assert_eq!(vm.fuel_consumed(), 0);

    // Unmetered: the same scenario runs, and no fuel is counted.
    let bytes = std::fs::read(support::HOSTCHECK).unwrap();
    let unmetered = proxy_wasm_harness::Module::from_bytes_unmetered(&bytes).unwrap();
    let world = World::new(&unmetered);
    let mut vm = vm_with(&world, "");
    let (action, headers) = run(&mut vm, "clock", &[]);
    assert_eq!(action, Action::Continue);
    assert!(!headers.is_empty());
    assert_eq!(vm.fuel_consumed(), 0);
}

#[test]
fn workers_interleave_under_test_control() {
    let world = World::new(module());
    let mut a = vm_with(&world, "");
    let mut b = vm_with(&world, "");
    // Two streams open at once on two workers; the test decides who goes first.
    let mut sa = a.http_stream().unwrap();
    let mut sb = b.http_stream().unwrap();
    sb.request_headers(
        &[
            (":path", "/"),
            ("x-hostcheck", "shared"),
            ("x-key", "order"),
            ("x-value", "b"),
        ],
        true,
    )
    .unwrap();
    sa.request_headers(
        &[
            (":path", "/"),
            ("x-hostcheck", "shared"),
            ("x-key", "order"),
            ("x-value", "a"),
        ],
        true,
    )
    .unwrap();
    assert_eq!(sa.upstream_header("x-before").as_deref(), Some("b"));
    sa.complete().unwrap();
    sb.complete().unwrap();
    assert_eq!(world.shared_data("order").unwrap().0, b"a");
}

#[test]
fn memory_size_is_visible() {
    let (_w, mut vm) = started();
    let before = vm.memory_size();
    assert!(before >= 64 * 1024 && before % 65536 == 0, "{before}");
    for _ in 0..100 {
        run(&mut vm, "headers", &[]);
    }
    assert_eq!(
        vm.memory_size(),
        before,
        "a small module's memory stays put"
    );
}
