//! The thin proxy-wasm glue: read the configuration and request headers, call the pure core,
//! apply its decision, count it. Nothing here decides anything.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

use crate::config::{self, Config};
use crate::gate::{self, Decision, Env, Verdict};
use crate::headers;
use crate::metrics::{self, Outcome, Pending};
use crate::refusal::Refusal;
use crate::reply::Reply;
use crate::route::Signal;
use crate::shared::{Conflict, SharedStore};
use crate::time::seconds;
use crate::worker::Worker;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Expiry warnings are repeated once a day while the plugin runs.
const EXPIRY_WARNING_PERIOD_S: i64 = 86_400;

/// How often the root context wakes up: it refreshes the recent clock reading requests are
/// checked against (see `gate::CLOCK_MARGIN_S`) and flushes counter sums to Envoy. Counters
/// therefore lag by at most this, far below any scrape interval.
const TICK: Duration = Duration::from_millis(100);

thread_local! {
    /// Token ids whose expiry gauge this VM has set: a token removed by a later config gets
    /// its gauge reset to 0 ("no expiry"), so expiry alerts stop firing for it.
    static EXPIRY_GAUGES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Defines a metric (idempotent in Envoy; each VM caches the ids it gets).
fn metric(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(e) => {
            warn_all(vec![format!("cannot define metric {name}: {e:?}")]);
            None
        }
    }
}

/// Defines gauge `name` and sets it (configuration-time gauges; one call site's worth of code).
#[inline(never)]
fn gauge(name: &str, value: u64) {
    if let Some(id) = metric(MetricType::Gauge, name) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Logs each warning (one logging site: each `log` macro call costs the module ~200 bytes).
#[inline(never)]
fn warn_all(warnings: Vec<String>) {
    for w in warnings {
        warn!("{w}");
    }
}

/// Logs an error (one logging site, as `warn_all`).
#[inline(never)]
fn log_error(message: String) {
    error!("{message}");
}

fn bump_by(id: Option<u32>, n: i64) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, n);
    }
}

fn bump(id: Option<u32>) {
    bump_by(id, 1);
}

fn now_ns() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    /// ABI v0.2.1 (the SDK declares the same import; it only offers a copying wrapper).
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;

    /// ABI v0.2.1, as the SDK declares it (its wrapper builds the path per call and panics on
    /// an unexpected status).
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;

    /// ABI v0.2.1, as the SDK declares it; its wrappers rebuild the header block per call and
    /// panic on an unexpected status.
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// The request headers as the host serialized them, in one buffer read in place by
/// [`headers::parse`]: no allocation per header (the SDK's `get_http_request_headers_bytes`
/// makes two per header, the largest cost of a request in wasm). Empty if the host has none.
fn request_header_block() -> Vec<u8> {
    const HTTP_REQUEST_HEADERS: u32 = 0;
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers are valid for writes for the duration of the call.
    let status = unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes at `data` through the SDK's exported
    // `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size`) and hands ownership over;
    // the SDK's own wrapper takes it back the same way.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// A property of the stream, by its path with the segments joined by NUL, as the ABI takes it
/// (`b"source\0address"`); `None` when the host has none or refuses.
fn property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the path is valid for its length; both out-pointers are valid for writes.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return None;
    }
    // SAFETY: as in `request_header_block`: the host hands over `size` bytes it allocated
    // through the SDK's `proxy_on_memory_allocate`.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Label combinations of the by-signal-and-outcome counters.
const SIGNALS: [Option<Signal>; 4] = [
    Some(Signal::Logs),
    Some(Signal::Metrics),
    Some(Signal::Traces),
    None,
];

/// Dense metric indices (for `Pending`): requests by signal and outcome, dry-run forwards by
/// signal and would-be outcome, shared-data conflicts, then per token: accepted requests, body
/// bytes, rate-limited bytes, the last-seen gauge and a refusal counter per refusal outcome.
const BY_OUTCOME: usize = SIGNALS.len() * Outcome::ALL.len();
const REQUESTS: usize = 0;
const DRY_RUN: usize = BY_OUTCOME;
const CONFLICTS: usize = 2 * BY_OUTCOME;
const PER_TOKEN: usize = CONFLICTS + 1;
const TOKEN_REQUESTS: usize = 0;
const TOKEN_BYTES: usize = 1;
const TOKEN_THROTTLED_BYTES: usize = 2;
const TOKEN_LAST_SEEN: usize = 3;
const TOKEN_REFUSED: usize = 4;
const TOKEN_SLOTS: usize = TOKEN_REFUSED + metrics::TOKEN_REFUSALS.len();

fn by_outcome(base: usize, signal: Option<Signal>, outcome: Outcome) -> usize {
    base + metrics::signal_index(signal) * Outcome::ALL.len() + outcome.index()
}

fn per_token(token: usize, which: usize) -> usize {
    PER_TOKEN + token * TOKEN_SLOTS + which
}

/// The per-token slot of a refusal, if refusals of that kind are counted per token (in the
/// order of `metrics::TOKEN_REFUSALS`).
fn refused_slot(refusal: Refusal) -> Option<usize> {
    let i = match refusal {
        Refusal::Expired | Refusal::NotYetValid => 0,
        Refusal::Disabled => 1,
        Refusal::ForbiddenSignal(_) => 2,
        Refusal::ForbiddenSource => 3,
        Refusal::RateLimited { .. } => 4,
        _ => return None,
    };
    Some(TOKEN_REFUSED + i)
}

/// The request-path counters: Envoy's ids and the sums not yet handed over.
struct Counters {
    /// Metric id by dense index: `None` = not defined yet (most per-token metrics are defined
    /// at their first flush), `Some(None)` = Envoy refused it. A plain table: no hashing.
    ids: Vec<Option<Option<u32>>>,
    pending: Pending,
}

/// What a plugin instance holds once its config is valid; shared with its HTTP contexts.
struct Loaded {
    config: Config,
    /// What this VM learns while serving `config`; a VM runs one callback at a time, and no
    /// borrow of it outlives a call into the core.
    worker: RefCell<Worker>,
    generation: u64,
    /// The host clock as last read (at load, then every tick).
    recent_ns: Cell<i64>,
    counters: RefCell<Counters>,
}

impl Loaded {
    fn new(config: Config, generation: u64, now_ns: i64) -> Loaded {
        let len = PER_TOKEN + TOKEN_SLOTS * config.tokens.len();
        let loaded = Loaded {
            worker: RefCell::new(Worker::new(&config)),
            config,
            generation,
            recent_ns: Cell::new(now_ns),
            counters: RefCell::new(Counters {
                ids: vec![None; len],
                pending: Pending::new(len),
            }),
        };
        // Every label combination of the fixed counters exists from the start (at 0), so
        // rates and alerts work before the first request of a kind; so do the refusal counters
        // a revoked token can get (expired for a token with a validity window, disabled for a
        // disabled one), so that the first refusal of a revoked token is an increase
        // (OtlpGateRevokedTokenPresented), not a new series. Other per-token series appear with
        // their first count.
        {
            let ids = &mut loaded.counters.borrow_mut().ids;
            for i in 0..PER_TOKEN {
                loaded.id(ids, i);
            }
            for (t, token) in loaded.config.tokens.iter().enumerate() {
                if token.expires_at.is_some() || token.not_before.is_some() {
                    loaded.id(ids, per_token(t, TOKEN_REFUSED));
                }
                if token.disabled {
                    loaded.id(ids, per_token(t, TOKEN_REFUSED + 1));
                }
            }
        }
        loaded
    }

    /// Envoy's id of the counter at dense index `i`, defined on first use.
    fn id(&self, ids: &mut [Option<Option<u32>>], i: usize) -> Option<u32> {
        *ids.get_mut(i)?.get_or_insert_with(|| self.define(i))
    }

    /// Defines the counter at dense index `i` in Envoy.
    fn define(&self, i: usize) -> Option<u32> {
        let labels = |k: usize| {
            let signal = *SIGNALS.get(k / Outcome::ALL.len())?;
            Some((signal, *Outcome::ALL.get(k % Outcome::ALL.len())?))
        };
        let name = if i < DRY_RUN {
            let (signal, outcome) = labels(i - REQUESTS)?;
            metrics::requests_total(signal, outcome)
        } else if i < CONFLICTS {
            let (signal, outcome) = labels(i - DRY_RUN)?;
            metrics::dry_run_total(signal, outcome)
        } else if i == CONFLICTS {
            metrics::SHARED_DATA_CONFLICTS.to_owned()
        } else {
            let k = i - PER_TOKEN;
            let id = &self.config.tokens.get(k / TOKEN_SLOTS)?.id;
            match k % TOKEN_SLOTS {
                TOKEN_REQUESTS => metrics::token_requests_total(id),
                TOKEN_BYTES => metrics::token_bytes_total(id),
                TOKEN_THROTTLED_BYTES => metrics::token_throttled_bytes_total(id),
                TOKEN_LAST_SEEN => {
                    return metric(MetricType::Gauge, &metrics::token_last_seen(id));
                }
                r => metrics::token_refused_total(
                    id,
                    *metrics::TOKEN_REFUSALS.get(r - TOKEN_REFUSED)?,
                ),
            }
        };
        metric(MetricType::Counter, &name)
    }

    /// Counts `n` on counter `i`; Envoy sees it at the next flush.
    fn count(&self, i: usize, n: i64) {
        self.counters.borrow_mut().pending.add(i, n);
    }

    /// Hands the pending sums and gauge values to Envoy (one hostcall per metric touched since
    /// the last).
    fn flush(&self) {
        let mut counters = self.counters.borrow_mut();
        let Counters { ids, pending } = &mut *counters;
        pending.drain(|i, n| {
            let id = self.id(ids, i);
            if i >= PER_TOKEN && (i - PER_TOKEN) % TOKEN_SLOTS == TOKEN_LAST_SEEN {
                if let Some(id) = id {
                    let _ = hostcalls::record_metric(id, n as u64);
                }
            } else {
                bump_by(id, n);
            }
        });
    }
}

impl Drop for Loaded {
    /// The last holder of a configuration lets go: a root context that loaded a newer one or
    /// that Envoy deleted (`proxy_on_done`, `proxy_on_delete`: the plugin was replaced or
    /// removed), or a stream that outlived both. Nothing counted is lost. (Flushing here rather
    /// than in `on_done` as well: overriding it costs 2.5 KB of SDK trait glue.)
    fn drop(&mut self) {
        self.flush();
    }
}

#[derive(Default)]
struct Root {
    loaded: Option<Rc<Loaded>>,
    /// When the next round of expiry warnings is due (Unix seconds).
    next_warning_s: i64,
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
                let mut list = String::new();
                for (i, e) in errors.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    list.push_str(sep);
                    list.push_str(&e.to_string());
                }
                log_error(format!(
                    "configuration refused ({} problem(s)); the previous configuration, if any, stays in force: {list}",
                    errors.len()
                ));
                return false;
            }
        };
        if let Err(e) = hostcalls::set_tick_period(TICK) {
            // Without ticks the recent clock reading would go stale: refuse the configuration
            // (whatever was loaded before stays in force).
            log_error(format!(
                "the host refused a tick period ({e:?}); configuration not loaded"
            ));
            return false;
        }
        warn_all(config.warnings());
        let now = now_ns();
        warn_all(config.expiry_warnings(seconds(now)));
        self.next_warning_s = seconds(now).saturating_add(EXPIRY_WARNING_PERIOD_S);
        let generation =
            crate::shared::update(&mut Host { loaded: None }, gate::GENERATION_KEY, |cur| {
                gate::next_generation(cur, &config.sha256_hex)
            })
            .unwrap_or_else(|| {
                // Every CAS attempt conflicted: report what the other workers stored.
                let (cur, _) = Host { loaded: None }.get(gate::GENERATION_KEY);
                gate::next_generation(cur.as_deref(), &config.sha256_hex).1
            });
        gauge(metrics::TOKENS_LOADED, config.tokens.len() as u64);
        gauge(metrics::CONFIG_GENERATION, generation);
        gauge(metrics::DRY_RUN_ENABLED, u64::from(config.dry_run));
        gauge(metrics::CONFIG_HASH, config.hash48);
        gauge(metrics::WARN_BEFORE, config.warn_before_secs.max(0) as u64);
        for t in &config.tokens {
            let expiry = t.expires_at.map_or(0, |e| u64::try_from(e).unwrap_or(0));
            gauge(&metrics::token_expiry(&t.id), expiry);
            // The file's hash, not 1: a series left by a removed token (or an old tenant) keeps
            // an old hash, and the dashboard joins on the pod's current one.
            gauge(
                &metrics::token_info(&t.id, t.tenant.as_deref()),
                config.hash48,
            );
        }
        EXPIRY_GAUGES.with(|ids| {
            let mut ids = ids.borrow_mut();
            for gone in ids.iter().filter(|id| !config.has_id(id)) {
                gauge(&metrics::token_expiry(gone), 0);
            }
            *ids = config.tokens.iter().map(|t| t.id.clone()).collect();
        });
        bump(metric(
            MetricType::Counter,
            metrics::config_loads_total(true),
        ));
        info!(
            "configuration loaded: generation {generation}, {} token(s), sha256 {}",
            config.tokens.len(),
            config.sha256_hex
        );
        // The previous configuration's sums go out now (or when its last stream ends).
        if let Some(old) = self.loaded.take() {
            old.flush();
        }
        self.loaded = Some(Rc::new(Loaded::new(config, generation, now)));
        true
    }

    fn on_tick(&mut self) {
        let Some(l) = &self.loaded else { return };
        let now = now_ns();
        l.recent_ns.set(now);
        l.flush();
        if seconds(now) >= self.next_warning_s {
            warn_all(l.config.expiry_warnings(seconds(now)));
            self.next_warning_s = seconds(now).saturating_add(EXPIRY_WARNING_PERIOD_S);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a valid config there is no HTTP context. Envoy never asks (on_configure
        // returned false, so it refused the plugin); a host that did would see the SDK trap —
        // fail closed, never forward unchecked traffic.
        let loaded = self.loaded.clone()?;
        Some(Box::new(Stream {
            loaded,
            charge: None,
            prepaid_bytes: 0,
            count_bytes: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// proxy-wasm shared data and properties, as the core's `Env`.
struct Host<'a> {
    /// Absent while a configuration is being loaded.
    loaded: Option<&'a Loaded>,
}

impl SharedStore for Host<'_> {
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(Conflict),
            Err(e) => {
                warn_all(vec![format!("shared data write failed: {e:?}")]);
                Err(Conflict)
            }
        }
    }
}

impl Env for Host<'_> {
    fn peer(&mut self) -> Option<IpAddr> {
        let raw = property(b"source\0address")?;
        crate::cidr::parse_socket_address(std::str::from_utf8(&raw).ok()?)
    }

    fn contended(&mut self) {
        if let Some(l) = self.loaded {
            l.count(CONFLICTS, 1);
        }
    }

    fn now_ns(&mut self) -> i64 {
        now_ns()
    }

    fn health_listener(&mut self) -> bool {
        property(b"xds\0filter_chain_name")
            .is_some_and(|name| name == gate::HEALTH_CHAIN.as_bytes())
    }
}

struct Stream {
    loaded: Rc<Loaded>,
    /// The token whose byte budget body chunks are charged to.
    charge: Option<usize>,
    /// Body bytes still covered by what was charged at admission (the declared length).
    prepaid_bytes: u64,
    /// The accepted token whose body bytes are counted as they pass (no declared length).
    count_bytes: Option<usize>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let block = request_header_block();
        // A buffer the host garbled reads as no headers: no credential, refused, never forwarded.
        let headers = headers::parse(&block).unwrap_or_else(|| {
            log_error("the host sent a malformed request header map".into());
            Vec::new()
        });
        let l = Rc::clone(&self.loaded);
        let decision = gate::decide(
            &l.config,
            &mut l.worker.borrow_mut(),
            headers.iter().copied(),
            l.recent_ns.get(),
            l.generation,
            &mut Host { loaded: Some(&l) },
        );
        // The declared body length, looked up only for a recognised token (its body bytes, or
        // what it declared when rate-limited).
        let declared = decision
            .token
            .and_then(|_| gate::declared_length(headers.iter().copied()));
        count(&l, &decision, declared);
        let token_id = decision
            .token
            .and_then(|i| l.config.tokens.get(i))
            .map_or("-", |t| t.id.as_str());
        let signal = metrics::signal_label(decision.signal);
        // One line per decision (one formatting site): dry-run forwards at info, the rest at
        // debug (not even formatted unless Envoy's wasm log level asks for it).
        let (level, what, refusal) = match decision.verdict {
            Verdict::DryRun(r) => (log::Level::Info, "dry-run forwarded", Some(r)),
            Verdict::Refused(r) => (log::Level::Debug, "rejected", Some(r)),
            _ => (log::Level::Debug, "accepted", None),
        };
        if !matches!(decision.verdict, Verdict::Uncounted) {
            log::log!(
                level,
                "{what} {signal} outcome={} token={token_id} reason={}",
                refusal.map_or("accepted", |r| r.outcome().as_str()),
                refusal.map_or("-", Refusal::reason)
            );
        }
        match decision.action {
            gate::Action::Forward(fwd) => {
                for name in fwd.removes() {
                    self.set_http_request_header(name, None);
                }
                for (name, value) in fwd.sets() {
                    self.set_http_request_header(name, Some(value));
                }
                if let Some(path) = &fwd.path {
                    self.set_http_request_header(":path", Some(path));
                }
                self.prepaid_bytes = decision.prepaid_bytes;
                self.charge = decision.token.filter(|&i| {
                    l.config
                        .tokens
                        .get(i)
                        .is_some_and(|t| t.rate.is_some_and(|r| r.bytes_per_second.is_some()))
                });
                if declared.is_none() && matches!(decision.verdict, Verdict::Accepted) {
                    self.count_bytes = decision.token;
                }
                Action::Continue
            }
            gate::Action::Reply(reply) => {
                // A refusal of a recognised token: the access log names it
                // (`%REQ(x-otlp-token-id)%`); the request goes nowhere else.
                if decision.token.is_some() {
                    self.set_http_request_header(&l.config.identity_header, Some(token_id));
                }
                send(&reply);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        let bytes = body_size as u64;
        if let Some(token) = self.charge {
            let l = Rc::clone(&self.loaded);
            let prepaid = bytes.min(self.prepaid_bytes);
            self.prepaid_bytes -= prepaid;
            if !gate::charge_body(
                &l.config,
                &mut l.worker.borrow_mut(),
                token,
                bytes - prepaid,
                l.recent_ns.get(),
                &mut Host { loaded: Some(&l) },
            ) {
                l.count(CONFLICTS, 1);
            }
        }
        if let Some(token) = self.count_bytes {
            self.loaded
                .count(per_token(token, TOKEN_BYTES), body_size as i64);
        }
        Action::Continue
    }

    /// Request trailers (HTTP/2, gRPC) may not carry what the gate owns: the credential, the
    /// tenant and the identity are removed from them as from the headers (one edit per name,
    /// only on requests that end with trailers).
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        for name in gate::owned_names(&self.loaded.config).into_iter().flatten() {
            self.set_http_request_trailer(name, None);
        }
        Action::Continue
    }
}

/// Counts a decision in the VM (the tick hands the sums to Envoy): by signal and outcome, and
/// per recognised token its accepted requests, body bytes, last-seen second and refusals.
fn count(l: &Loaded, d: &Decision, declared: Option<u64>) {
    let Some(outcome) = d.verdict.outcome() else {
        return;
    };
    let mut c = l.counters.borrow_mut();
    let pending = &mut c.pending;
    pending.add(by_outcome(REQUESTS, d.signal, outcome), 1);
    if let Some(would_be) = d.verdict.would_be() {
        pending.add(by_outcome(DRY_RUN, d.signal, would_be), 1);
    }
    let Some(token) = d.token else { return };
    // (A length past i64::MAX would wrap negative and be ignored; Envoy refuses such bodies.)
    let declared_n = declared.unwrap_or(0) as i64;
    match d.verdict {
        Verdict::Accepted => {
            pending.add(per_token(token, TOKEN_REQUESTS), 1);
            pending.add(per_token(token, TOKEN_BYTES), declared_n);
            pending.set(
                per_token(token, TOKEN_LAST_SEEN),
                seconds(l.recent_ns.get()),
            );
        }
        Verdict::Refused(r) => {
            if let Some(slot) = refused_slot(r) {
                pending.add(per_token(token, slot), 1);
            }
        }
        _ => {}
    }
    // What a rate-limited client declared (the body is never read).
    if let Verdict::Refused(Refusal::RateLimited { .. })
    | Verdict::DryRun(Refusal::RateLimited { .. }) = d.verdict
    {
        pending.add(per_token(token, TOKEN_THROTTLED_BYTES), declared_n);
    }
}

/// Sends a local reply through the raw ABI call, with the header block the reply carries
/// already serialized: nothing is built per request, and a refusal by the host is logged (the
/// SDK's wrapper would panic, which traps the VM in Envoy). Its details are what Envoy's access
/// log shows as `%RESPONSE_CODE_DETAILS%` (`otlp_gate.<outcome>`, see `refusal.rs`).
fn send(reply: &Reply) {
    let (status, body, grpc_status) = match &reply.grpc {
        // Envoy sends a gRPC reply as HTTP 200 with `grpc-status` and the message.
        Some((code, message)) => (200, message.as_bytes(), *code as i32),
        None => (u32::from(reply.status), reply.body.as_slice(), -1),
    };
    // SAFETY: every pointer is valid for its length for the duration of the call; the host
    // copies what it needs before returning.
    let result = unsafe {
        proxy_send_local_response(
            status,
            reply.details.as_ptr(),
            reply.details.len(),
            body.as_ptr(),
            body.len(),
            reply.wire_headers.as_ptr(),
            reply.wire_headers.len(),
            grpc_status,
        )
    };
    if result != 0 {
        log_error(format!(
            "the host refused the local reply (status {result})"
        ));
    }
}
