//! Shared pieces of the otlp-gate microbenchmarks (`benches/gate.rs`): deterministic tokens,
//! plugin configurations of any size, the request shapes Envoy hands a filter, and one full
//! stream lifecycle driven through the compiled `.wasm` in the wasmtime harness.
//!
//! Everything here returns errors instead of panicking, so a broken module or a request that
//! is not answered the way a benchmark assumes stops the run with a message, never with a
//! fast wrong number.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use proxy_wasm_harness::{Action, LogLevel, Module, Vm, World};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// OTLP bodies in the Envoy benchmark are 512 bytes; the micro requests carry the same size.
pub const BODY_LEN: usize = 512;

/// The HTTP path every benchmark request posts to, and what otlp-gate rewrites it to.
pub const OTLP_PATH: &str = "/observability/v1/traces";
pub const UPSTREAM_PATH: &str = "/v1/traces";
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Where the address of the simulated client comes from (`source.address` in Envoy).
pub const CLIENT_ADDRESS: &[u8] = b"192.0.2.10:40000";

/// Fuel per callback: enough for `on_configure` with 100,000 tokens (it only guards the
/// benchmark against a runaway module).
pub const LOAD_FUEL: u64 = 1 << 40;

/// The repository root (this crate lives in `tests/bench`).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.join("../..")
        .canonicalize()
        .unwrap_or(dir.join("../.."))
}

/// A module built by `.ci/build-wasm.sh`, e.g. `otlp_gate` or `minimal_filter`.
pub fn wasm_path(name: &str) -> PathBuf {
    workspace_root().join(format!("target/wasm32-wasip1/release/{name}.wasm"))
}

/// Where `just bench` collects results (`OTLP_GATE_BENCH_OUT`, default `target/bench`).
pub fn out_dir() -> PathBuf {
    std::env::var_os("OTLP_GATE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/bench"))
}

pub fn load_module(name: &str) -> Result<Module> {
    load(name, Module::from_bytes)
}

/// The module without fuel metering: what the timed benchmarks run (metering adds a counter
/// update to every block and would inflate every figure).
pub fn load_module_unmetered(name: &str) -> Result<Module> {
    load(name, Module::from_bytes_unmetered)
}

fn load(name: &str, compile: fn(&[u8]) -> Result<Module>) -> Result<Module> {
    let path = wasm_path(name);
    std::fs::read(&path)
        .map_err(anyhow::Error::from)
        .and_then(|b| compile(&b))
        .with_context(|| {
            format!(
                "cannot load {} (build it with `bash .ci/build-wasm.sh {}`)",
                path.display(),
                name.replace('_', "-")
            )
        })
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A deterministic 43-character token (the length of 256 random bits in base64url).
pub fn token(label: &str) -> String {
    let mut t = sha256_hex(format!("otlp-gate-bench:{label}").as_bytes());
    t.truncate(43);
    t
}

/// The credentials the request paths present.
pub mod tokens {
    pub const ACCEPT: &str = "accepted";
    pub const RATED: &str = "rated";
    pub const EXPIRED: &str = "expired";
    pub const LOGS_ONLY: &str = "logs-only";
    pub const UNKNOWN: &str = "never-configured";
}

/// A plugin configuration with `n` tokens (n ≥ 4): the four special tokens the request paths
/// use, sitting in the middle, and `n - 4` ordinary ones. `failed_auth` is the top-level
/// `failed_auth` object (or `Value::Null` for the defaults).
pub fn gate_config(n: usize, failed_auth: Value) -> String {
    let special = [
        json!({"id": tokens::ACCEPT, "sha256": sha256_hex(token(tokens::ACCEPT).as_bytes()), "tenant": "team-a"}),
        json!({"id": tokens::RATED, "sha256": sha256_hex(token(tokens::RATED).as_bytes()), "tenant": "team-r",
               "rate": {"requests_per_second": 1_000_000, "bytes_per_second": 1_000_000_000, "burst": 1_000_000}}),
        json!({"id": tokens::EXPIRED, "sha256": sha256_hex(token(tokens::EXPIRED).as_bytes()), "tenant": "team-e",
               "expires_at": "2020-01-01T00:00:00Z"}),
        json!({"id": tokens::LOGS_ONLY, "sha256": sha256_hex(token(tokens::LOGS_ONLY).as_bytes()), "tenant": "team-l",
               "signals": ["logs"]}),
    ];
    let ordinary = n.saturating_sub(special.len());
    let mut list: Vec<Value> = (0..ordinary)
        .map(|i| {
            json!({"id": format!("t{i:06}"), "sha256": sha256_hex(token(&format!("t{i}")).as_bytes()),
                   "tenant": format!("tenant-{}", i % 50)})
        })
        .collect();
    let mid = list.len() / 2;
    list.splice(mid..mid, special);
    let mut cfg = json!({ "tokens": list });
    if !failed_auth.is_null()
        && let Some(obj) = cfg.as_object_mut()
    {
        obj.insert("failed_auth".into(), failed_auth);
    }
    cfg.to_string()
}

/// The request paths the microbenchmarks time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// A valid token, HTTP/protobuf: forwarded with the path rewritten.
    Accept,
    /// A valid token with a per-token rate limit that never trips (limits enabled).
    AcceptRated,
    /// A valid token over OTLP/gRPC: forwarded unchanged.
    Grpc,
    /// No credentials: 401.
    Missing,
    /// A well-formed token that is not configured, the same one every time (a client with a
    /// stale or revoked token): 401.
    Unknown,
    /// A different unknown token on every request (someone guessing): 401.
    UnknownFresh,
    /// A configured token past its `expires_at`: 401.
    Expired,
    /// A token whose `signals` exclude traces: 403.
    OutOfScope,
    /// An unknown token from an address over `failed_auth.max_failures`: 429.
    Throttled,
}

impl Path {
    pub const ALL: [Path; 9] = [
        Path::Accept,
        Path::AcceptRated,
        Path::Grpc,
        Path::Missing,
        Path::Unknown,
        Path::UnknownFresh,
        Path::Expired,
        Path::OutOfScope,
        Path::Throttled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::Accept => "accept",
            Path::AcceptRated => "accept_rate_limited",
            Path::Grpc => "grpc_accept",
            Path::Missing => "missing",
            Path::Unknown => "unknown",
            Path::UnknownFresh => "unknown_fresh",
            Path::Expired => "expired",
            Path::OutOfScope => "out_of_scope",
            Path::Throttled => "throttled",
        }
    }

    /// What the filter must answer: `None` = forwarded, `Some(status)` = local reply.
    pub fn expected(self) -> Option<u32> {
        match self {
            Path::Accept | Path::AcceptRated | Path::Grpc => None,
            Path::Missing | Path::Unknown | Path::UnknownFresh | Path::Expired => Some(401),
            Path::OutOfScope => Some(403),
            Path::Throttled => Some(429),
        }
    }

    /// The request headers as Envoy hands them to the first HTTP filter.
    pub fn headers(self) -> Vec<(String, Vec<u8>)> {
        let credential = match self {
            Path::Accept | Path::Grpc => Some(tokens::ACCEPT),
            Path::AcceptRated => Some(tokens::RATED),
            Path::Missing => None,
            Path::Unknown | Path::UnknownFresh | Path::Throttled => Some(tokens::UNKNOWN),
            Path::Expired => Some(tokens::EXPIRED),
            Path::OutOfScope => Some(tokens::LOGS_ONLY),
        };
        let grpc = self == Path::Grpc;
        let body_len = if grpc { BODY_LEN + 5 } else { BODY_LEN };
        let mut h: Vec<(String, String)> = vec![
            (":authority".into(), "otlp.example.com".into()),
            (
                ":path".into(),
                if grpc { GRPC_PATH } else { OTLP_PATH }.into(),
            ),
            (":method".into(), "POST".into()),
            (":scheme".into(), "http".into()),
            (
                "content-type".into(),
                if grpc {
                    "application/grpc"
                } else {
                    "application/x-protobuf"
                }
                .into(),
            ),
            ("content-length".into(), body_len.to_string()),
            (
                "user-agent".into(),
                "OTel-OTLP-Exporter-Python/1.45.0".into(),
            ),
            ("x-forwarded-proto".into(), "http".into()),
            (
                "x-request-id".into(),
                "5a4e7c1e-1f0b-4c8e-9d4e-3f2a1b0c9d8e".into(),
            ),
        ];
        if grpc {
            h.push(("te".into(), "trailers".into()));
        }
        if let Some(label) = credential {
            h.push(("authorization".into(), format!("Bearer {}", token(label))));
        }
        h.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
    }

    /// The request body (gRPC bodies carry the 5-byte message prefix).
    pub fn body(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BODY_LEN + 5);
        if self == Path::Grpc {
            b.push(0);
            b.extend_from_slice(&(BODY_LEN as u32).to_be_bytes());
        }
        b.extend((0..BODY_LEN).map(|i| (i % 251) as u8));
        b
    }
}

/// A prepared request: headers and body built once, replayed per iteration.
#[derive(Clone)]
pub struct Request {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The last bytes of the credential change on every run (see `Path::UnknownFresh`).
    pub fresh_credential: bool,
}

impl Request {
    pub fn new(path: Path) -> Request {
        Request {
            headers: path.headers(),
            body: path.body(),
            fresh_credential: path == Path::UnknownFresh,
        }
    }
}

/// What one stream lifecycle produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The local reply's status, or `None` when the request was forwarded.
    pub status: Option<u32>,
    /// The `:path` the upstream would see when forwarded.
    pub upstream_path: Option<String>,
}

/// One filter instance (one Envoy worker's VM) with a configuration loaded.
pub struct Scenario {
    pub world: World,
    pub vm: Vm,
    /// How far the host clock moves per request (failed-auth windows and rate buckets see
    /// time pass, as they would under real traffic).
    pub tick: std::time::Duration,
    /// Runs so far, which makes a fresh credential (8 hex digits) for each.
    runs: u64,
}

impl Scenario {
    /// Starts a VM at Envoy's default wasm log level (info) and configures it; a refused
    /// configuration is an error carrying the module's log.
    pub fn new(module: &Module, config: &[u8]) -> Result<Scenario> {
        let world = World::new(module);
        let mut vm = world.vm()?;
        vm.set_log_level(LogLevel::Info);
        // Loading 100,000 tokens is far beyond the harness's per-callback fuel default.
        vm.set_fuel_per_call(LOAD_FUEL);
        vm.set_property("source.address", CLIENT_ADDRESS);
        if !vm.start(b"")? {
            bail!("proxy_on_vm_start returned false");
        }
        if !vm.configure(config)? {
            bail!(
                "the module refused the configuration: {}",
                vm.logs_at_least(LogLevel::Warn).join("; ")
            );
        }
        vm.clear_logs();
        Ok(Scenario {
            world,
            vm,
            tick: std::time::Duration::from_millis(1),
            runs: 0,
        })
    }

    /// One request as Envoy runs it: context create, request headers, then (if forwarded)
    /// the body in one chunk, then log/done/delete. The clock moves by `tick` per request.
    pub fn run(&mut self, req: &Request) -> Result<Answer> {
        if !self.tick.is_zero() {
            self.world.advance(self.tick);
        }
        self.runs += 1;
        let fresh;
        let headers = if req.fresh_credential {
            let mut h = req.headers.clone();
            let tail = format!("{:08x}", self.runs);
            if let Some((_, v)) = h.iter_mut().find(|(n, _)| n == "authorization")
                && let Some(at) = v.len().checked_sub(tail.len())
            {
                v.truncate(at);
                v.extend_from_slice(tail.as_bytes());
            }
            fresh = h;
            &fresh
        } else {
            &req.headers
        };
        let mut s = self.vm.http_stream()?;
        let action = s.request_headers_bytes(headers, false)?;
        let status = s.local_reply().map(|r| r.status);
        let upstream_path = if status.is_none() {
            if action != Action::Continue {
                bail!("request headers paused without a local reply");
            }
            s.request_body(&req.body, true)?;
            s.upstream_header(":path")
        } else {
            None
        };
        s.complete()?;
        Ok(Answer {
            status,
            upstream_path,
        })
    }

    /// Runs `req` and checks the answer against what `path` must get.
    pub fn check(&mut self, path: Path, req: &Request) -> Result<()> {
        let a = self.run(req)?;
        if a.status != path.expected() {
            bail!(
                "{}: expected {:?}, the filter answered {:?}",
                path.name(),
                path.expected(),
                a.status
            );
        }
        let want_path = match path {
            Path::Accept | Path::AcceptRated => Some(UPSTREAM_PATH),
            Path::Grpc => Some(GRPC_PATH),
            _ => None,
        };
        if a.upstream_path.as_deref() != want_path {
            bail!(
                "{}: upstream path {:?}, expected {:?}",
                path.name(),
                a.upstream_path,
                want_path
            );
        }
        Ok(())
    }

    /// Hostcalls made by one request of this kind.
    pub fn hostcalls_per_request(&mut self, req: &Request) -> Result<u64> {
        self.vm.reset_hostcalls();
        self.run(req)?;
        Ok(self.vm.hostcalls())
    }

    /// Fuel (≈ wasm instructions) one request of this kind consumes once warm (the module
    /// must be metered): deterministic, so it shows what a change saves on a noisy machine.
    pub fn fuel_per_request(&mut self, req: &Request) -> Result<u64> {
        for _ in 0..3 {
            self.run(req)?;
        }
        self.vm.reset_fuel_consumed();
        self.run(req)?;
        Ok(self.vm.fuel_consumed())
    }
}

/// Failed-auth policy for the reject paths: on (so each failure is counted in shared data, as
/// deployed) but with a limit high enough that repeated benchmark requests stay 401.
pub fn counting_failed_auth() -> Value {
    json!({"max_failures": 1_000_000})
}

/// The configuration, scenario and request for one path with `n` tokens, checked once.
pub fn prepare(module: &Module, path: Path, n: usize) -> Result<(Scenario, Request)> {
    let failed_auth = if path == Path::Throttled {
        Value::Null // the defaults: 30 failures, then 429
    } else {
        counting_failed_auth()
    };
    let mut sc = Scenario::new(module, gate_config(n, failed_auth).as_bytes())?;
    let req = Request::new(path);
    if path == Path::Throttled {
        // Frozen clock: once blocked, the address stays blocked for the whole measurement.
        sc.tick = std::time::Duration::ZERO;
        for _ in 0..40 {
            sc.run(&req)?;
        }
    }
    sc.check(path, &req)?;
    Ok((sc, req))
}

/// The minimal filter's configuration (`tests/minimal-filter`) accepting [`tokens::ACCEPT`].
pub fn minimal_config() -> String {
    json!({"header": "authorization", "value": format!("Bearer {}", token(tokens::ACCEPT))})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_have_the_requested_size_and_unique_digests() {
        for n in [4, 10, 1000] {
            let v: Value = serde_json::from_str(&gate_config(n, Value::Null)).unwrap();
            let list = v["tokens"].as_array().unwrap();
            assert_eq!(list.len(), n);
            let mut digests: Vec<&str> =
                list.iter().map(|t| t["sha256"].as_str().unwrap()).collect();
            digests.sort_unstable();
            digests.dedup();
            assert_eq!(digests.len(), n);
        }
    }

    #[test]
    fn tokens_are_43_chars_and_distinct() {
        assert_eq!(token("a").len(), 43);
        assert_ne!(token("a"), token("b"));
    }

    #[test]
    fn grpc_bodies_are_framed() {
        let b = Path::Grpc.body();
        assert_eq!(b.len(), BODY_LEN + 5);
        assert_eq!(&b[..5], &[0, 0, 0, 2, 0]);
        assert_eq!(Path::Accept.body().len(), BODY_LEN);
    }
}
