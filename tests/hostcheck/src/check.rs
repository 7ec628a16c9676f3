//! The module itself. Scenarios (request header `x-hostcheck`), each reporting what the host
//! returned, mostly as request headers the upstream would see:
//!
//! | scenario | hostcalls | report |
//! |---|---|---|
//! | `headers` | get pairs, get value (any case), replace, add, remove | `x-count`, `x-got`, `x-got-case`, `x-got-missing` |
//! | `set-pairs` | set the whole map | the new map |
//! | `bytes` | get/set a non-UTF-8 value | `x-bin-len`, `x-bin-copy` |
//! | `reply` / `reply-empty` | HTTP local reply (with / without body and headers) | the reply |
//! | `grpc` | gRPC local reply with metadata | the reply |
//! | `properties` | get (and set) properties | `x-prop-<path>` |
//! | `shared` / `shared-retry` | shared data get + CAS set (once / until it succeeds) | `x-before`, `x-cas`, `x-set`, `x-attempts` |
//! | `enqueue` / `dequeue` | resolve a queue by vm id, enqueue / dequeue | `x-queue`, `x-enqueue`, `x-dequeued` |
//! | `http-call` / `http-call-bad` | dispatch an HTTP call; resume on its response | `x-call-*` |
//! | `log` | one line per level, `proxy_get_log_level` | logs, `x-log-level` |
//! | `stdio` | `println!` / `eprintln!` (WASI `fd_write`) | logs |
//! | `clock` | `proxy_get_current_time_nanoseconds`, WASI realtime clock | `x-now`, `x-wasi-now` |
//! | `random` | WASI `random_get` | `x-random` |
//! | `metrics` | increment, record, get | `x-counter`, `x-gauge` |
//! | `body` | read and rewrite the request body (`on_http_request_body`) | the body, `x-body-sizes` log |
//! | `buffer` | pause body chunks until end of stream, then read the whole body | log `buffered <n>` |
//! | `body-middle` | write into the middle of the body (Envoy: BAD_ARGUMENT) | a failed callback |
//! | `panic`, `loop`, `grow`, `exit`, `grpc-call`, `bad-context` | misbehave on purpose | a failed callback |
//!
//! Responses: response headers get `x-hostcheck-response: seen` and `x-upstream-status`;
//! request trailers get `x-trailer-count`; a response body at end of stream becomes
//! `rewritten`. The root context logs `vm_config: …` and `configured: …`, defines metrics
//! `hostcheck_requests` (counter), `hostcheck_gauge` (gauge), `hostcheck_hist` (histogram),
//! registers the queue `hostcheck`, ticks (`tick=MS` in the plugin config), logs each tick and
//! each dequeued queue item. Stream contexts log `on_log <id>`, `on_done <id>` and, when
//! dropped by `proxy_on_delete`, `on_delete <id>`. A plugin or VM config of `refuse` is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, error, info, trace, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, GrpcStatusCode, LogLevel, MetricType, Status};

const QUEUE: &str = "hostcheck";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    /// WASI `random_get`, called directly so the test sees exactly what the host produced.
    #[link_name = "random_get"]
    fn wasi_random_get(buf: i32, len: i32) -> i32;
}

#[derive(Clone, Copy, Default)]
struct Metrics {
    requests: u32,
    gauge: u32,
    hist: u32,
    ticks: u32,
}

#[derive(Default)]
struct Root {
    metrics: Metrics,
    queue: u32,
    ticks: u64,
}

fn define(kind: MetricType, name: &str) -> u32 {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => id,
        Err(e) => {
            error!("define_metric({name}) failed: {e:?}");
            0
        }
    }
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        info!("root on_done");
        true
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, size: usize) -> bool {
        let cfg = self.get_vm_configuration().unwrap_or_default();
        info!(
            "vm_config: {} ({size} bytes)",
            String::from_utf8_lossy(&cfg)
        );
        cfg != b"refuse"
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&cfg).into_owned();
        info!("configured: {text} ({size} bytes)");
        if text == "refuse" {
            error!("configuration refused on purpose");
            return false;
        }
        self.metrics = Metrics {
            requests: define(MetricType::Counter, "hostcheck_requests"),
            gauge: define(MetricType::Gauge, "hostcheck_gauge"),
            hist: define(MetricType::Histogram, "hostcheck_hist"),
            ticks: define(MetricType::Counter, "hostcheck_ticks"),
        };
        self.queue = self.register_shared_queue(QUEUE);
        info!("queue {QUEUE} registered as {}", self.queue);
        for word in text.split_whitespace() {
            if let Some(ms) = word.strip_prefix("tick=").and_then(|v| v.parse().ok()) {
                self.set_tick_period(Duration::from_millis(ms));
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let _ = hostcalls::increment_metric(self.metrics.ticks, 1);
        info!("tick {} at {}", self.ticks, nanos(self.get_current_time()));
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        loop {
            match self.dequeue_shared_queue(queue_id) {
                Ok(Some(item)) => {
                    info!("queue_ready {queue_id}: {}", String::from_utf8_lossy(&item))
                }
                Ok(None) => break,
                Err(e) => {
                    error!("dequeue {queue_id}: {e:?}");
                    break;
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            metrics: self.metrics,
            scenario: String::new(),
            body_sizes: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    metrics: Metrics,
    scenario: String,
    body_sizes: Vec<usize>,
}

impl Stream {
    fn report(&self, name: &str, value: &str) {
        self.set_http_request_header(name, Some(value));
    }

    fn header_or(&self, name: &str, default: &str) -> String {
        self.get_http_request_header(name)
            .unwrap_or_else(|| default.to_owned())
    }

    fn headers(&mut self) -> Action {
        let pairs = self.get_http_request_headers_bytes();
        self.report("x-count", &pairs.len().to_string());
        let got = self.header_or("x-get", "<absent>");
        self.report("x-got", &got);
        let got_case = self.header_or("X-Get", "<absent>");
        self.report("x-got-case", &got_case);
        let missing = self.header_or("x-never-sent", "<absent>");
        self.report("x-got-missing", &missing);
        self.set_http_request_header("x-replace", Some("replaced"));
        self.add_http_request_header("x-add", "added");
        self.set_http_request_header("x-remove", None);
        self.remove_http_request_header("x-remove2");
        Action::Continue
    }

    fn properties(&mut self) -> Action {
        self.set_property(vec!["hostcheck", "custom"], Some(b"set-by-module"));
        for path in [
            "request.path",
            "request.method",
            "request.host",
            "source.address",
            "plugin_name",
            "plugin_vm_id",
            "plugin_root_id",
            "node.id",
            "hostcheck.custom",
            "no.such.property",
        ] {
            let value = self.get_property(path.split('.').collect());
            let shown = value.unwrap_or_else(|| b"<absent>".to_vec());
            self.set_http_request_header_bytes(&format!("x-prop-{path}"), Some(&shown));
        }
        Action::Continue
    }

    fn shared(&mut self, retry: bool) -> Action {
        let key = self.header_or("x-key", "hostcheck.key");
        let value = self.header_or("x-value", "v");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (before, cas) = self.get_shared_data(&key);
            if attempts == 1 {
                let before = before.map_or("<absent>".to_owned(), |b| {
                    String::from_utf8_lossy(&b).into_owned()
                });
                self.report("x-before", &before);
                self.report("x-cas", &cas.map_or("<none>".to_owned(), |c| c.to_string()));
            }
            let result = self.set_shared_data(&key, Some(value.as_bytes()), cas);
            let shown = match result {
                Ok(()) => "ok",
                Err(Status::CasMismatch) => "cas_mismatch",
                Err(_) => "other",
            };
            self.report("x-set", shown);
            if result.is_ok() || !retry || attempts >= 10 {
                break;
            }
        }
        self.report("x-attempts", &attempts.to_string());
        Action::Continue
    }

    fn queue(&mut self, enqueue: bool) -> Action {
        let vm = self.header_or("x-vm", "vm");
        let Some(id) = self.resolve_shared_queue(&vm, QUEUE) else {
            self.report("x-queue", "<absent>");
            return Action::Continue;
        };
        self.report("x-queue", &id.to_string());
        if enqueue {
            let value = self.header_or("x-value", "item");
            let shown = match self.enqueue_shared_queue(id, Some(value.as_bytes())) {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            self.report("x-enqueue", &shown);
        } else {
            let shown = match self.dequeue_shared_queue(id) {
                Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                Ok(None) => "<empty>".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            self.report("x-dequeued", &shown);
        }
        Action::Continue
    }

    fn http_call(&mut self, valid: bool) -> Action {
        let mut headers = vec![(":method", "POST"), (":authority", "auth.local")];
        if valid {
            headers.push((":path", "/check"));
        }
        match self.dispatch_http_call(
            "auth_cluster",
            headers,
            Some(b"ping"),
            vec![("x-trailer", "t")],
            Duration::from_millis(1500),
        ) {
            Ok(token) => {
                self.report("x-call-token", &token.to_string());
                Action::Pause
            }
            Err(e) => {
                self.report("x-call-error", &format!("{e:?}"));
                Action::Continue
            }
        }
    }

    fn log_levels(&mut self) -> Action {
        trace!("level trace");
        debug!("level debug");
        info!("level info");
        warn!("level warn");
        error!("level error");
        let _ = hostcalls::log(LogLevel::Critical, "level critical");
        let level = match hostcalls::get_log_level() {
            Ok(l) => (l as u32).to_string(),
            Err(e) => format!("{e:?}"),
        };
        self.report("x-log-level", &level);
        Action::Continue
    }

    fn clock(&mut self) -> Action {
        let host = nanos(self.get_current_time());
        let wasi = nanos(SystemTime::now());
        self.report("x-now", &host.to_string());
        self.report("x-wasi-now", &wasi.to_string());
        Action::Continue
    }

    fn random(&mut self) -> Action {
        let mut buf = [0u8; 16];
        // SAFETY: the host writes exactly `len` bytes into this live, writable buffer.
        let errno = unsafe { wasi_random_get(buf.as_mut_ptr() as i32, buf.len() as i32) };
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        self.report("x-random", &hex);
        self.report("x-random-errno", &errno.to_string());
        Action::Continue
    }

    fn metrics(&mut self) -> Action {
        let delta = self
            .get_http_request_header("x-delta")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let gauge = self
            .get_http_request_header("x-gauge")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let m = self.metrics;
        let _ = hostcalls::increment_metric(m.requests, delta);
        let _ = hostcalls::record_metric(m.gauge, gauge);
        let _ = hostcalls::record_metric(m.hist, 7);
        let counter = hostcalls::get_metric(m.requests).map_or(-1, |v| v as i64);
        let gauge = hostcalls::get_metric(m.gauge).map_or(-1, |v| v as i64);
        self.report("x-counter", &counter.to_string());
        self.report("x-gauge", &gauge.to_string());
        Action::Continue
    }

    #[allow(
        clippy::panic,
        reason = "the scenario checks how the host reports a guest panic"
    )]
    fn misbehave(&mut self, how: &str) -> Action {
        match how {
            "panic" => panic!("hostcheck panic on purpose"),
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let big = vec![1u8; 1 << 30];
                info!("allocated {}", std::hint::black_box(&big).len());
            }
            "exit" => std::process::exit(3),
            "grpc-call" => {
                let r = self.dispatch_grpc_call(
                    "grpc_cluster",
                    "svc",
                    "Method",
                    vec![],
                    None,
                    Duration::from_secs(1),
                );
                info!("grpc call returned {r:?}");
            }
            "bad-context" => {
                let r = hostcalls::set_effective_context(4242);
                info!("set_effective_context(4242) returned {r:?}");
            }
            _ => {}
        }
        Action::Continue
    }
}

impl Context for Stream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "<absent>".into());
        let body_bytes = self
            .get_http_call_response_body(0, body)
            .unwrap_or_default();
        let trailer = self
            .get_http_call_response_trailer("x-done")
            .unwrap_or_else(|| "<absent>".into());
        self.report("x-call-status", &status);
        self.report("x-call-body", &String::from_utf8_lossy(&body_bytes));
        self.report("x-call-trailer", &trailer);
        self.report(
            "x-call-sizes",
            &format!("{token} {headers} {body} {trailers}"),
        );
        self.resume_http_request();
    }

    fn on_done(&mut self) -> bool {
        info!("on_done {}", self.id);
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.scenario = self.header_or("x-hostcheck", "");
        match self.scenario.clone().as_str() {
            "headers" => self.headers(),
            "set-pairs" => {
                self.set_http_request_headers(vec![(":path", "/replaced"), ("x-only", "1")]);
                Action::Continue
            }
            "bytes" => {
                let v = self
                    .get_http_request_header_bytes("x-bin")
                    .unwrap_or_default();
                self.report("x-bin-len", &v.len().to_string());
                self.set_http_request_header_bytes("x-bin-copy", Some(&v));
                Action::Continue
            }
            "reply" => {
                self.send_http_response(
                    418,
                    vec![("x-reply", "yes"), ("x-reply", "twice")],
                    Some(b"short and stout"),
                );
                Action::Pause
            }
            "reply-empty" => {
                self.send_http_response(204, vec![], None);
                Action::Pause
            }
            "grpc" => {
                self.send_grpc_response(
                    GrpcStatusCode::PermissionDenied,
                    Some("denied by hostcheck"),
                    vec![("x-md", b"\x00\xffbin")],
                );
                Action::Pause
            }
            "properties" => self.properties(),
            "shared" => self.shared(false),
            "shared-retry" => self.shared(true),
            "enqueue" => self.queue(true),
            "dequeue" => self.queue(false),
            "http-call" => self.http_call(true),
            "http-call-bad" => self.http_call(false),
            "log" => self.log_levels(),
            "stdio" => {
                println!("to stdout");
                eprintln!("to stderr");
                Action::Continue
            }
            "clock" => self.clock(),
            "random" => self.random(),
            "metrics" => self.metrics(),
            other => self.misbehave(other),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_sizes.push(body_size);
        match self.scenario.as_str() {
            "body" => {
                let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                let upper = body.to_ascii_uppercase();
                self.set_http_request_body(0, body_size, &upper);
                if end_of_stream {
                    self.set_http_request_body(usize::MAX, 0, b"!");
                }
                Action::Continue
            }
            "body-middle" => {
                // Envoy answers BAD_ARGUMENT (and the SDK panics): only 0 or append are allowed.
                self.set_http_request_body(1, 1, b"X");
                Action::Continue
            }
            "buffer" if !end_of_stream => Action::Pause,
            "buffer" => {
                let body = self
                    .get_http_request_body(0, usize::MAX)
                    .unwrap_or_default();
                info!(
                    "buffered {} bytes: {} (sizes {:?})",
                    body.len(),
                    String::from_utf8_lossy(&body),
                    self.body_sizes
                );
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        let seen = self.get_http_request_trailers().len();
        self.add_http_request_trailer("x-trailer-count", &format!("{num_trailers}/{seen}"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let status = self
            .get_http_response_header(":status")
            .unwrap_or_else(|| "<absent>".into());
        self.add_http_response_header("x-hostcheck-response", "seen");
        self.set_http_response_header("x-upstream-status", Some(&status));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.set_http_response_body(0, body_size, b"rewritten");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        info!("on_log {}", self.id);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        info!("on_delete {}", self.id);
    }
}
