//! The thin proxy-wasm glue: read the configuration and request headers, call the pure core,
//! apply its decision, count it. Nothing here decides anything.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use hashbrown::HashMap;
use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, GrpcStatusCode, LogLevel, MetricType};

use crate::config::{self, Config};
use crate::gate::{self, Decision};
use crate::metrics::{self, Outcome};
use crate::reply::{GrpcCode, Reply};
use crate::route::Signal;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

thread_local! {
    /// Per-VM (per Envoy worker) generation: +1 whenever a config with a new hash loads.
    static GENERATION: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Counters are defined once per VM; Envoy shares the underlying stat between workers.
fn metric(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(e) => {
            warn!("cannot define metric {name}: {e:?}");
            None
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// What a plugin instance holds once its config is valid; shared with its HTTP contexts.
struct Loaded {
    config: Config,
    generation: u64,
    /// `otlp_gate_requests_total` ids, by signal index then outcome index.
    requests: [[Option<u32>; Outcome::ALL.len()]; 4],
    /// `otlp_gate_token_requests_total` ids, defined on a token's first accepted request.
    token_requests: RefCell<HashMap<usize, Option<u32>>>,
}

#[derive(Default)]
struct Root {
    loaded: Option<Rc<Loaded>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Let Envoy's wasm log level decide whether debug lines are even formatted.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config = match config::parse(&raw) {
            Ok(c) => c,
            Err(errors) => {
                bump(metric(
                    MetricType::Counter,
                    metrics::config_loads_total(false),
                ));
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                error!(
                    "otlp-gate: configuration refused ({} problem(s)); the previous configuration stays in force: {}",
                    list.len(),
                    list.join("; ")
                );
                return false;
            }
        };
        for w in config.warnings() {
            warn!("otlp-gate: {w}");
        }
        let generation = GENERATION.with(|g| {
            let mut g = g.borrow_mut();
            if g.1 != config.sha256_hex {
                g.0 += 1;
                g.1.clone_from(&config.sha256_hex);
            }
            g.0
        });
        let mut requests = [[None; Outcome::ALL.len()]; 4];
        for (si, signal) in [
            Some(Signal::Logs),
            Some(Signal::Metrics),
            Some(Signal::Traces),
            None,
        ]
        .into_iter()
        .enumerate()
        {
            for outcome in Outcome::ALL {
                requests[si][outcome.index()] = metric(
                    MetricType::Counter,
                    &metrics::requests_total(signal, outcome),
                );
            }
        }
        let gauge = |name: &str, value: u64| {
            if let Some(id) = metric(MetricType::Gauge, name) {
                let _ = hostcalls::record_metric(id, value);
            }
        };
        gauge(metrics::TOKENS_LOADED, config.tokens.len() as u64);
        gauge(metrics::CONFIG_GENERATION, generation);
        for t in &config.tokens {
            let expiry = t.expires_at.map_or(0, |e| u64::try_from(e).unwrap_or(0));
            gauge(&metrics::token_expiry(&t.id), expiry);
        }
        bump(metric(
            MetricType::Counter,
            metrics::config_loads_total(true),
        ));
        info!(
            "otlp-gate: configuration loaded: generation {generation}, {} token(s), sha256 {}",
            config.tokens.len(),
            config.sha256_hex
        );
        self.loaded = Some(Rc::new(Loaded {
            config,
            generation,
            requests,
            token_requests: RefCell::new(HashMap::new()),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a valid config there is no HTTP context: Envoy then never forwards unchecked
        // traffic (on_configure returning false already made it refuse the plugin).
        let loaded = self.loaded.clone()?;
        Some(Box::new(Stream { loaded }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    loaded: Rc<Loaded>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let l = &self.loaded;
        let decision = gate::decide(
            &l.config,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
            now,
            l.generation,
        );
        self.count(&decision);
        let token_id = decision
            .token
            .and_then(|i| l.config.tokens.get(i))
            .map_or("-", |t| t.id.as_str());
        let signal = metrics::signal_label(decision.signal);
        match decision.action {
            gate::Action::Forward(fwd) => {
                debug!("otlp-gate: accepted {signal} token={token_id}");
                for name in &fwd.remove {
                    self.set_http_request_header(name, None);
                }
                for (name, value) in &fwd.set {
                    self.set_http_request_header(name, Some(value));
                }
                if let Some(path) = &fwd.path {
                    self.set_http_request_header(":path", Some(path));
                }
                Action::Continue
            }
            gate::Action::Reply(reply) => {
                if decision.outcome.is_some() {
                    debug!(
                        "otlp-gate: rejected {signal} outcome={} token={token_id} reason={}",
                        decision.outcome.map_or("-", Outcome::as_str),
                        decision.reason
                    );
                }
                send(&reply);
                Action::Pause
            }
        }
    }
}

impl Stream {
    fn count(&self, d: &Decision) {
        let Some(outcome) = d.outcome else { return };
        let l = &self.loaded;
        bump(l.requests[metrics::signal_index(d.signal)][outcome.index()]);
        if outcome == Outcome::Accepted
            && let Some(i) = d.token
        {
            let id = *l.token_requests.borrow_mut().entry(i).or_insert_with(|| {
                l.config.tokens.get(i).and_then(|t| {
                    metric(MetricType::Counter, &metrics::token_requests_total(&t.id))
                })
            });
            bump(id);
        }
    }
}

fn send(reply: &Reply) {
    let result = match &reply.grpc {
        Some((code, message)) => {
            let code = match code {
                GrpcCode::InvalidArgument => GrpcStatusCode::InvalidArgument,
                GrpcCode::PermissionDenied => GrpcStatusCode::PermissionDenied,
                GrpcCode::Unimplemented => GrpcStatusCode::Unimplemented,
                GrpcCode::Unauthenticated => GrpcStatusCode::Unauthenticated,
            };
            hostcalls::send_grpc_response(code, Some(message), vec![])
        }
        None => {
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            hostcalls::send_http_response(u32::from(reply.status), headers, Some(&reply.body))
        }
    };
    if let Err(e) = result {
        error!("otlp-gate: cannot send local reply: {e:?}");
    }
}
