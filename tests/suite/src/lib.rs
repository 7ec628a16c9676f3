#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point
//! Shared helpers for the suites that drive the compiled `otlp_gate.wasm` through the
//! proxy-wasm harness: loading the module once, the case tables, and decoding replies with
//! definitions independent of the filter's own.

use std::sync::OnceLock;

use base64::Engine as _;
use proxy_wasm_harness::{Module, Vm, World};
use serde_json::Value;

pub const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/wasm32-wasip1/release/otlp_gate.wasm"
);
pub const BEHAVIOUR: &str = include_str!("../../cases/behaviour.json");
pub const CONFIG_ERRORS: &str = include_str!("../../cases/config_errors.json");
pub const DEFAULT_NOW: &str = "2026-06-01T00:00:00Z";
pub const DEFAULT_SOURCE: &str = "192.0.2.1:40000";

/// The module, compiled once per test binary.
pub fn module() -> &'static Module {
    static M: OnceLock<Module> = OnceLock::new();
    M.get_or_init(|| {
        Module::from_file(WASM)
            .unwrap_or_else(|e| panic!("{e:#}\n-> build the filter first: `just build`"))
    })
}

/// A world with one started VM configured with `config` (JSON text).
pub fn configured(config: &str) -> (World, Vm) {
    let world = World::new(module());
    let mut vm = world.vm().expect("instantiate");
    assert!(vm.start(b"").expect("start"), "on_vm_start refused");
    assert!(
        vm.configure(config.as_bytes()).expect("configure"),
        "config refused: {:?}",
        vm.logs_at_least(proxy_wasm_harness::LogLevel::Warn)
    );
    (world, vm)
}

/// The detailed healthz page (`GET /observability/healthz` on the loopback health listener's
/// filter chain, the only place it shows generation, hash and token count), as JSON.
pub fn healthz(vm: &mut Vm) -> Value {
    let mut s = vm.http_stream().expect("stream");
    s.set_property("xds.filter_chain_name", b"otlp-gate-health")
        .expect("set filter chain name");
    s.request_headers(
        &[(":method", "GET"), (":path", "/observability/healthz")],
        true,
    )
    .expect("healthz");
    let body = serde_json::from_slice(&s.local_reply().expect("healthz is a local reply").body)
        .expect("healthz body is JSON");
    s.complete().expect("complete");
    body
}

/// Fires the root context's tick, as Envoy's timer does every tick period: otlp-gate then
/// hands its counter sums to the host's stats and refreshes its recent clock reading. Tests
/// call it before reading metrics and after moving the clock.
pub fn tick(vm: &mut Vm) {
    vm.tick().expect("tick");
}

/// How old otlp-gate's recent clock reading may be and still never change a decision
/// (`gate::CLOCK_MARGIN_S` is 60: boundaries closer than that take the exact clock).
pub const STALE_CLOCK_S: u64 = 59;

/// `google.rpc.Status`, decoded independently of the filter's definitions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<AnyMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyMsg {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<DurationMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DurationMsg {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl Status {
    /// Seconds of the RetryInfo detail, if any.
    pub fn retry_delay(&self) -> Option<i64> {
        let d = self.details.iter().find(|d| d.type_url == RETRY_INFO)?;
        <RetryInfo as prost::Message>::decode(d.value.as_slice())
            .ok()?
            .retry_delay
            .map(|d| d.seconds)
    }

    /// Decodes the proto3 JSON form (`{"code","message","details":[{"@type","retryDelay"}]}`).
    pub fn from_json(body: &[u8]) -> Option<Status> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let mut details = Vec::new();
        for d in v["details"].as_array().into_iter().flatten() {
            let secs: i64 = d["retryDelay"].as_str()?.strip_suffix('s')?.parse().ok()?;
            let info = RetryInfo {
                retry_delay: Some(DurationMsg {
                    seconds: secs,
                    nanos: 0,
                }),
            };
            details.push(AnyMsg {
                type_url: d["@type"].as_str()?.into(),
                value: prost::Message::encode_to_vec(&info),
            });
        }
        Some(Status {
            code: i32::try_from(v["code"].as_i64()?).ok()?,
            message: v["message"].as_str()?.into(),
            details,
        })
    }

    /// Decodes a base64 `grpc-status-details-bin` value.
    pub fn from_grpc_details(b64: &[u8]) -> Option<Status> {
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(b64))
            .ok()?;
        <Status as prost::Message>::decode(raw.as_slice()).ok()
    }
}

/// Expands `{{token:NAME}}`, `{{basic:USER:NAME}}` and `{{b64:TEXT}}` placeholders.
pub fn expand(value: &str, tokens: &Value) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let tok = |name: &str| {
        tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("unknown token name {name}"))
            .to_owned()
    };
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unterminated placeholder") + start;
        let inner = &rest[start + 2..end];
        if let Some(name) = inner.strip_prefix("token:") {
            out.push_str(&tok(name));
        } else if let Some(spec) = inner.strip_prefix("basic:") {
            let (user, name) = spec.rsplit_once(':').expect("basic:USER:NAME");
            out.push_str(&b64(&format!("{user}:{}", tok(name))));
        } else if let Some(text) = inner.strip_prefix("b64:") {
            out.push_str(&b64(text));
        } else {
            panic!("unknown placeholder kind in a case table");
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` to Unix seconds (test tables only use this form).
pub fn unix_seconds(ts: &str) -> u64 {
    let n = |a: usize, b: usize| ts[a..b].parse::<i64>().expect("timestamp digits");
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19))
        .expect("after 1970")
}

/// Request headers of a case: pseudo-headers first, placeholders expanded.
pub fn request_headers(req: &Value, tokens: &Value) -> Vec<(String, String)> {
    let mut h = vec![
        (
            ":method".to_owned(),
            req["method"].as_str().expect("method").to_owned(),
        ),
        (
            ":path".to_owned(),
            req["path"].as_str().expect("path").to_owned(),
        ),
    ];
    for pair in req["headers"].as_array().expect("headers") {
        h.push((
            pair[0].as_str().expect("name").to_owned(),
            expand(pair[1].as_str().expect("value"), tokens),
        ));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_matches_known_dates() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix_seconds("2026-06-01T00:00:00Z"), 1_780_272_000);
        assert_eq!(unix_seconds("2024-02-29T12:00:00Z"), 1_709_208_000);
    }
}
