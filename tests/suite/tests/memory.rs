//! 1,000,000 requests through one VM leave the module's linear memory flat: nothing per request
//! is retained (allocations are freed, metric ids are cached, no per-request state leaks).
#![allow(clippy::unwrap_used)] // test code

use otlp_gate_suite::*;
use proxy_wasm_harness::{Action, Vm};

const REQUESTS: usize = 1_000_000;
const WARMUP: usize = 20_000;
const TOKEN: &str = "memory-Mq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5";

/// One request of four kinds in turn: accepted (with a body), unknown token, missing gRPC
/// credential, not found — each from its own client address; a tick every 1,000 requests
/// (the filter flushes its counters on ticks).
fn one(vm: &mut Vm, i: usize) {
    if i.is_multiple_of(1000) {
        tick(vm);
    }
    let good = format!("Bearer {TOKEN}");
    let headers: &[(&str, &str)] = match i % 4 {
        0 => &[
            (":method", "POST"),
            (":path", "/observability/v1/traces"),
            ("content-type", "application/x-protobuf"),
            ("authorization", &good),
        ],
        1 => &[
            (":method", "POST"),
            (":path", "/observability/v1/logs"),
            ("content-type", "application/json"),
            ("authorization", "Bearer wrong-token-value-xyz"),
        ],
        2 => &[
            (":method", "POST"),
            (
                ":path",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ),
            ("content-type", "application/grpc"),
        ],
        _ => &[(":method", "GET"), (":path", "/elsewhere")],
    };
    let mut s = vm.http_stream().unwrap();
    let source = format!("10.{}.{}.{}:1", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    s.set_property("source.address", source.as_bytes()).unwrap();
    if s.request_headers(headers, false).unwrap() == Action::Continue {
        s.request_body(&[0u8; 64], true).unwrap();
    }
    s.complete().unwrap();
}

#[test]
fn one_million_requests_keep_memory_flat() {
    let cfg = format!(
        r#"{{"default_rate": {{"requests_per_second": 1000000000, "bytes_per_second": 1000000000000}},
            "tokens": [{{"id": "m", "token": "{TOKEN}", "tenant": "t"}}]}}"#
    );
    let (world, mut vm) = configured(&cfg);
    for i in 0..WARMUP {
        one(&mut vm, i);
    }
    let after_warmup = vm.memory_size();
    for i in WARMUP..REQUESTS {
        one(&mut vm, i);
    }
    tick(&mut vm);
    let end = vm.memory_size();
    println!(
        "linear memory: {after_warmup} bytes after {WARMUP} requests, {end} bytes after {REQUESTS}"
    );
    assert_eq!(end, after_warmup, "linear memory grew");
    assert_eq!(
        world.metric("otlp_gate_requests_total.signal.traces.outcome.accepted"),
        Some((REQUESTS / 4) as i64)
    );
}
