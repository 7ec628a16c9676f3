//! The decision for one request, as a function of the configuration, the worker's state for it
//! (which the decision updates), the request headers, a recent clock reading and an `Env`
//! (client address, shared data, the exact clock). The proxy-wasm adapter only reads headers
//! in, applies the result and counts it; natively `Env` is a fake, so all of this is
//! table-tested without wasm.

use std::borrow::Cow;
use std::net::IpAddr;
use std::rc::Rc;

use crate::cidr;
use crate::config::{Config, Token};
use crate::credentials::{self, Presented, Sources};
use crate::headers::same;
use crate::metrics::Outcome;
use crate::rate::{Bucket, Lease};
use crate::refusal::Refusal;
use crate::reply::{self, Reply};
use crate::route::{self, Encoding, Route, Signal};
use crate::shared::{self, SharedStore};
use crate::throttle::{self, Slot};
use crate::time::seconds;
use crate::worker::Worker;

/// What the gate needs from its host besides headers.
pub trait Env: SharedStore {
    /// The direct peer (`source.address`); looked up only when a check needs it.
    fn peer(&mut self) -> Option<IpAddr>;
    /// A shared-data update gave up after repeated CAS conflicts (counted by the adapter).
    fn contended(&mut self) {}
    /// The host clock now, in nanoseconds since the Unix epoch. Each reading is a hostcall,
    /// so `decide` asks only when the recent reading it was given cannot settle a check.
    fn now_ns(&mut self) -> i64;
    /// Whether the request came through the health listener, whose filter chain is named
    /// [`HEALTH_CHAIN`] (asked only for healthz).
    fn health_listener(&mut self) -> bool;
}

/// The name of the filter chain whose healthz answers carry the configuration's generation,
/// hash and token count: the loopback-only listener Envoy's probe listener forwards
/// `/healthz` to (envoy/envoy.yaml). A filter chain name is set by the bootstrap and read from
/// the connection (`xds.filter_chain_name`), so no client can claim it; through the ingress,
/// healthz answers only `{"status":"ok"}`.
pub const HEALTH_CHAIN: &str = "otlp-gate-health";

/// A token's validity boundary (`not_before`, `expires_at`) less than this ahead of the recent
/// clock reading is checked against the exact clock. The adapter refreshes the recent reading
/// on every tick (100 ms), so only a timer late by more than a minute could let a request
/// through after its token expired. A boundary at or before the recent reading has been
/// reached (unless the wall clock is stepped backwards, until the next tick).
pub const CLOCK_MARGIN_S: i64 = 60;

/// The clock as one decision sees it: the recent reading, and the exact one once read.
struct Clock {
    recent_ns: i64,
    exact_ns: Option<i64>,
}

impl Clock {
    fn exact_ns(&mut self, env: &mut dyn Env) -> i64 {
        *self.exact_ns.get_or_insert_with(|| env.now_ns())
    }

    /// Whether the instant `at` (Unix seconds) has been reached.
    fn reached(&mut self, at: i64, env: &mut dyn Env) -> bool {
        let recent = seconds(self.recent_ns);
        if at <= recent {
            true
        } else if at > recent.saturating_add(CLOCK_MARGIN_S) {
            false
        } else {
            seconds(self.exact_ns(env)) >= at
        }
    }
}

/// Header changes for a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward<'c> {
    /// New `:path`, or `None` to keep it (gRPC).
    pub path: Option<Cow<'static, str>>,
    /// Headers the request carries that must not reach the upstream (every value removed):
    /// the credential headers, and client-sent tenant/identity headers not being set.
    remove: [Option<&'c str>; 4],
    /// Headers set from the token (tenant, identity); each replaces every value of its name.
    /// Borrowed from the configuration, in fixed slots: nothing is allocated per request.
    set: [Option<(&'c str, &'c str)>; 2],
}

impl<'c> Forward<'c> {
    /// The headers to remove.
    pub fn removes(&self) -> impl Iterator<Item = &'c str> + '_ {
        self.remove.iter().flatten().copied()
    }

    /// The headers to set, name and value.
    pub fn sets(&self) -> impl Iterator<Item = (&'c str, &'c str)> + '_ {
        self.set.iter().flatten().copied()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<'c> {
    Forward(Forward<'c>),
    /// Shared with the worker, which keeps the replies it sends (`reply::Canned`).
    Reply(Rc<Reply>),
}

/// How a request ended, for counting and logging (the reply or forward is in `Action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not counted (healthz).
    Uncounted,
    Accepted,
    Refused(Refusal),
    /// Would have been refused, but dry-run mode forwarded it.
    DryRun(Refusal),
}

impl Verdict {
    /// The `outcome` label it is counted under; `None` for requests that are not counted.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Verdict::Uncounted => None,
            Verdict::Accepted => Some(Outcome::Accepted),
            Verdict::Refused(r) => Some(r.outcome()),
            Verdict::DryRun(_) => Some(Outcome::DryRun),
        }
    }

    /// For a dry-run forward, the outcome it would have had.
    pub fn would_be(self) -> Option<Outcome> {
        match self {
            Verdict::DryRun(r) => Some(r.outcome()),
            _ => None,
        }
    }
}

/// What to do with a request and how to count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'c> {
    pub action: Action<'c>,
    pub verdict: Verdict,
    pub signal: Option<Signal>,
    /// Index into `Config::tokens` of the token that was presented and recognised.
    pub token: Option<usize>,
    /// Body bytes already charged to the token's byte budget (its declared `content-length`,
    /// charged when the request was admitted); body chunks beyond them are charged as they pass.
    pub prepaid_bytes: u64,
}

/// Shared-data key of a token's rate bucket.
pub fn rate_key(token_id: &str) -> String {
    format!("otlp_gate.rate.{token_id}")
}

/// Shared-data key of the config generation, shared by every VM (worker) of the plugin.
pub const GENERATION_KEY: &str = "otlp_gate.generation";

/// The generation for a config with content hash `hash`, given the shared record
/// (`u64` LE generation, then the hash it belongs to): unchanged for the same content, +1 for
/// new content. Kept in shared data so all workers — and VMs Envoy creates later — agree.
pub fn next_generation(current: Option<&[u8]>, hash: &str) -> (Vec<u8>, u64) {
    let (generation, stored) = match current {
        Some(b) if b.len() >= 8 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[..8]);
            (u64::from_le_bytes(n), &b[8..])
        }
        _ => (0, &b""[..]),
    };
    let next = if stored == hash.as_bytes() {
        generation.max(1)
    } else {
        generation + 1
    };
    let mut record = next.to_le_bytes().to_vec();
    record.extend_from_slice(hash.as_bytes());
    (record, next)
}

/// Shared-data key of a failed-auth slot.
pub fn slot_key(index: u32) -> String {
    format!("otlp_gate.failed_auth.{index}")
}

/// Decides what happens to a request. `headers` are the request headers as Envoy holds them
/// (lower-case names, pseudo-headers included, one entry per value). `recent_ns` is a reading
/// of the host clock taken at most a tick ago: it settles validity windows away from their
/// boundaries and failed-auth windows (seconds); rate buckets and boundaries within
/// [`CLOCK_MARGIN_S`] use `Env::now_ns`.
///
/// The steps, in order: `scan` the headers once; `route_request` by method and path; find the
/// `credential`; run the `token_checks` and the `limits` on a recognised token; count a failed
/// authentication against the client address (`failed_auth`); then `forward` (accepted, or
/// refused under dry-run) or `refuse`. The steps are `#[inline(always)]`: they are parts of
/// this one function, and at opt-level "z" each would otherwise be a call that passes the scan
/// and the clock through memory, on every request.
pub fn decide<'c, 'h, H>(
    cfg: &'c Config,
    worker: &mut Worker,
    headers: H,
    recent_ns: i64,
    generation: u64,
    env: &mut dyn Env,
) -> Decision<'c>
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])> + Clone,
{
    let scan = scan(cfg, headers.clone());
    let (signal, upstream_path) = match route_request(cfg, &scan) {
        Route::Http {
            signal,
            upstream_path,
        } if scan.otlp_http_media => (signal, Some(upstream_path)),
        Route::Http { signal, .. } | Route::UnsupportedMediaType { signal } => {
            let refusal = Refusal::UnsupportedMediaType;
            return refuse(cfg, worker, scan.encoding, refusal, Some(signal), None);
        }
        Route::Grpc { signal } => (signal, None),
        Route::Healthz => return healthz(cfg, generation, env.health_listener()),
        Route::MethodNotAllowed { signal, allow } => {
            let refusal = Refusal::MethodNotAllowed(allow);
            return refuse(cfg, worker, scan.encoding, refusal, signal, None);
        }
        Route::NotFound => {
            return refuse(cfg, worker, scan.encoding, Refusal::NotFound, None, None);
        }
    };

    let mut clock = Clock {
        recent_ns,
        exact_ns: None,
    };
    let (found, checked) = match credential(cfg, worker, &scan) {
        Err(refusal) => (None, Err(refusal)),
        Ok((index, token)) => {
            let checked = token_checks(cfg, token, signal, &mut clock, headers.clone(), env)
                .and_then(|()| limits(worker, index, token, &mut clock, headers.clone(), env));
            (Some((index, token)), checked)
        }
    };
    let index = found.map(|(i, _)| i);
    let token = found.map(|(_, t)| t);
    let refusal = match checked {
        Ok(prepaid_bytes) => {
            return Decision {
                action: forward(cfg, &scan, upstream_path, token),
                verdict: Verdict::Accepted,
                signal: Some(signal),
                token: index,
                prepaid_bytes,
            };
        }
        Err(refusal) => failed_auth(cfg, worker, refusal, recent_ns, headers, env),
    };

    // Dry-run forwards what it would refuse, except to an address in a failed-auth cooldown
    // when only the token is in dry-run mode.
    let throttled = matches!(refusal, Refusal::AuthThrottled { .. });
    if cfg.dry_run || token.is_some_and(|t| t.dry_run && !throttled) {
        return Decision {
            action: forward(cfg, &scan, upstream_path, token),
            verdict: Verdict::DryRun(refusal),
            signal: Some(signal),
            token: index,
            prepaid_bytes: 0,
        };
    }
    refuse(cfg, worker, scan.encoding, refusal, Some(signal), index)
}

/// What one pass over the request headers finds: everything the decision reads from them,
/// except `content-length` and `x-forwarded-for`, which only some checks need (looked up then).
struct Scan<'h> {
    method: &'h [u8],
    path: &'h [u8],
    encoding: Encoding,
    /// The content type is one OTLP/HTTP defines (`route::classify`).
    otlp_http_media: bool,
    credentials: credentials::Found<'h>,
    /// The client sent the tenant or the identity header (which it must not set itself).
    has_tenant: bool,
    has_identity: bool,
}

/// Where the configuration says credentials may come from.
fn sources(cfg: &Config) -> Sources<'_> {
    Sources {
        accept_basic: cfg.accept_basic,
        api_key_header: cfg.api_key_header.as_deref(),
    }
}

/// Step 1: reads every header once.
#[inline(always)]
fn scan<'h, H>(cfg: &Config, headers: H) -> Scan<'h>
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    let sources = sources(cfg);
    let mut method: &[u8] = b"";
    let mut path: &[u8] = b"";
    let mut content_type = None;
    let mut credentials = credentials::Found::default();
    let (mut has_tenant, mut has_identity) = (false, false);
    for (name, value) in headers {
        if let Some(b':') = name.first() {
            // Pseudo-headers: never a credential, tenant or identity (config refuses those).
            match name {
                b":method" => method = value,
                b":path" => path = value,
                _ => {}
            }
            continue;
        }
        if same(name, "content-type") {
            content_type = Some(value);
        }
        if !credentials.see(name, value, sources) {
            has_tenant |= same(name, &cfg.tenant_header);
            has_identity |= same(name, &cfg.identity_header);
        }
    }
    let (encoding, otlp_http_media) = route::classify(content_type);
    Scan {
        method,
        path,
        encoding,
        otlp_http_media,
        credentials,
        has_tenant,
        has_identity,
    }
}

/// Step 2: where the method and path lead (see `route.rs`). A method or path that is not
/// UTF-8 cannot be an OTLP endpoint.
#[inline(always)]
fn route_request(cfg: &Config, scan: &Scan) -> Route {
    let (Ok(method), Ok(path)) = (
        std::str::from_utf8(scan.method),
        std::str::from_utf8(scan.path),
    ) else {
        return Route::NotFound;
    };
    route::route(
        &cfg.path_prefix,
        method,
        path,
        scan.encoding == Encoding::Grpc,
    )
}

/// The answer to `GET {prefix}/healthz` (not counted): in detail on the health listener only.
fn healthz<'c>(cfg: &Config, generation: u64, detail: bool) -> Decision<'c> {
    Decision {
        action: Action::Reply(Rc::new(reply::healthz(
            generation,
            &cfg.sha256_hex,
            cfg.tokens.len(),
            detail,
        ))),
        verdict: Verdict::Uncounted,
        signal: None,
        token: None,
        prepaid_bytes: 0,
    }
}

/// Step 3: the configured token the request presents (its index and entry), or why there is
/// none.
#[inline(always)]
fn credential<'c>(
    cfg: &'c Config,
    worker: &mut Worker,
    scan: &Scan,
) -> Result<(usize, &'c Token), Refusal> {
    match scan.credentials.presented(sources(cfg)) {
        Presented::Missing => Err(Refusal::Missing),
        Presented::Malformed(why) => Err(Refusal::Malformed(why)),
        Presented::Unsupported(why) => Err(Refusal::Unsupported(why)),
        Presented::Token(t) => worker.lookup(cfg, &t).ok_or(Refusal::Unknown),
    }
}

/// Step 4: the checks on a recognised token, in order: disabled, validity window, signal
/// scope, source address. The first failure wins.
#[inline(always)]
fn token_checks<'h, H>(
    cfg: &Config,
    token: &Token,
    signal: Signal,
    clock: &mut Clock,
    headers: H,
    env: &mut dyn Env,
) -> Result<(), Refusal>
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    if token.disabled {
        return Err(Refusal::Disabled);
    }
    if token.not_before.is_some_and(|nb| !clock.reached(nb, env)) {
        return Err(Refusal::NotYetValid);
    }
    if token.expires_at.is_some_and(|exp| clock.reached(exp, env)) {
        return Err(Refusal::Expired);
    }
    if !token.allows(signal) {
        return Err(Refusal::ForbiddenSignal(signal));
    }
    if !token.source_cidrs.is_empty() {
        let allowed = client(cfg, headers, env)
            .is_some_and(|ip| token.source_cidrs.iter().any(|c| c.contains(ip)));
        if !allowed {
            return Err(Refusal::ForbiddenSource);
        }
    }
    Ok(())
}

/// Step 5: the token's rate limit, from the worker's lease or else a round with the shared
/// bucket. An admitted request under a byte limit has its declared length charged: the result
/// is how many bytes (0 otherwise).
#[inline(always)]
fn limits<'h, H>(
    worker: &mut Worker,
    index: usize,
    token: &Token,
    clock: &mut Clock,
    headers: H,
    env: &mut dyn Env,
) -> Result<u64, Refusal>
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    let Some(rate) = &token.rate else {
        return Ok(0);
    };
    let declared = if rate.bytes_per_second.is_some() {
        declared_length(headers).unwrap_or(0)
    } else {
        0
    };
    let admitted = if worker
        .leases
        .take(index, rate, true, declared, clock.recent_ns)
    {
        Some(Ok(()))
    } else {
        draw(worker, index, token, env, clock, true, declared)
    };
    match admitted {
        Some(Ok(())) => Ok(declared),
        Some(Err(retry_after)) => Err(Refusal::RateLimited { retry_after }),
        // Every attempt conflicted: other workers are writing this bucket right now.
        // Serve the request rather than throttle on no information; it is counted.
        None => {
            env.contended();
            Ok(0)
        }
    }
}

/// Step 5 for a refused request, the failed-auth limit: a failed authentication (not a valid
/// token used beyond its rights) counts against the client address; past the limit the
/// refusal becomes 429 for the cooldown.
#[inline(always)]
fn failed_auth<'h, H>(
    cfg: &Config,
    worker: &mut Worker,
    refusal: Refusal,
    recent_ns: i64,
    headers: H,
    env: &mut dyn Env,
) -> Refusal
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    if !refusal.failed_auth() {
        return refusal;
    }
    let Some(policy) = &cfg.failed_auth else {
        return refusal;
    };
    let Some(ip) = client(cfg, headers, env) else {
        return refusal;
    };
    // Failure windows and cooldowns are whole seconds: a reading a tick old will do.
    let now = seconds(recent_ns);
    let blocked = match worker.cooling.blocked(ip, now) {
        Some(left) => Some(Some(left)),
        None => {
            let key = slot_key(throttle::slot_index(ip, policy.table_size));
            let blocked = shared::update(env, &key, |cur| {
                let (slot, blocked) = Slot::fail(cur.and_then(Slot::decode), ip, now, policy);
                (slot.encode(), blocked)
            });
            // Learned from shared data: this worker answers the rest of the cooldown alone.
            if let Some(Some(left)) = blocked {
                let until = now.saturating_add(i64::try_from(left).unwrap_or(i64::MAX));
                worker.cooling.remember(ip, until);
            }
            blocked
        }
    };
    match blocked {
        Some(Some(retry_after)) => Refusal::AuthThrottled { retry_after },
        Some(None) => refusal,
        None => {
            env.contended();
            refusal
        }
    }
}

/// Step 6: the header changes that forward the request. Forwarding sets the tenant and
/// identity from the token (a set replaces every value the client sent) and removes the
/// credential and any client-sent tenant/identity header that is not being set. Only headers
/// the request carries are removed: each edit is a hostcall.
#[inline(always)]
fn forward<'c>(
    cfg: &'c Config,
    scan: &Scan,
    path: Option<Cow<'static, str>>,
    token: Option<&'c Token>,
) -> Action<'c> {
    let tenant = token.and_then(|t| t.tenant.as_deref());
    // The four names are distinct (the configuration refuses overlaps), so a header that is
    // set is replaced in place and needs no removal, and no removal touches a set one.
    let set = [
        tenant.map(|v| (cfg.tenant_header.as_str(), v)),
        token.map(|t| (cfg.identity_header.as_str(), t.id.as_str())),
    ];
    let remove = [
        scan.credentials
            .has_authorization()
            .then_some("authorization"),
        cfg.api_key_header
            .as_deref()
            .filter(|_| scan.credentials.has_api_key()),
        (scan.has_tenant && tenant.is_none()).then_some(cfg.tenant_header.as_str()),
        (scan.has_identity && token.is_none()).then_some(cfg.identity_header.as_str()),
    ];
    Action::Forward(Forward { path, remove, set })
}

/// A refusal answered with its reply, in the client's encoding (kept by the worker once built).
#[inline(always)]
fn refuse<'c>(
    cfg: &Config,
    worker: &mut Worker,
    encoding: Encoding,
    refusal: Refusal,
    signal: Option<Signal>,
    token: Option<usize>,
) -> Decision<'c> {
    Decision {
        action: Action::Reply(worker.canned.get(refusal, encoding, &cfg.realm)),
        verdict: Verdict::Refused(refusal),
        signal,
        token,
        prepaid_bytes: 0,
    }
}

/// The request header names the gate owns, which it therefore also removes from a request's
/// trailers (HTTP/2 and gRPC requests may end with trailers, which Envoy forwards): the
/// credential headers, the tenant and the identity header. Otherwise a client could send a
/// tenant of its choosing, or a credential, past the gate in a trailer. (Removing a name the
/// trailers do not carry changes nothing: no need to read them first.)
pub fn owned_names(cfg: &Config) -> [Option<&str>; 4] {
    [
        Some("authorization"),
        cfg.api_key_header.as_deref(),
        Some(cfg.tenant_header.as_str()),
        Some(cfg.identity_header.as_str()),
    ]
}

/// The declared body length (`content-length`), if it is a plain decimal number (Envoy
/// refuses others, and strips the whitespace around header values). Looked up under a byte
/// limit, and by the adapter for a recognised token's body bytes; read digit by digit (the
/// standard parser costs several hundred wasm instructions more).
pub fn declared_length<'h>(headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>) -> Option<u64> {
    let (_, value) = headers
        .into_iter()
        .find(|(n, _)| same(n, "content-length"))?;
    decimal(value)
}

/// A plain decimal number (no sign, no spaces) of at most 19 digits, which always fits in a
/// `u64`: no overflow checks (on wasm32 a checked 64-bit multiply is a 128-bit helper call).
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// One round with a token's shared bucket (see [`Bucket::draw`]): the worker's lease goes
/// back, and the next one is kept. `None` when every CAS attempt conflicted (the lease is kept);
/// a token without a rate has no bucket, and nothing to refuse.
fn draw(
    worker: &mut Worker,
    index: usize,
    token: &Token,
    env: &mut dyn Env,
    clock: &mut Clock,
    request: bool,
    bytes: u64,
) -> Option<Result<(), u64>> {
    let Some(rate) = &token.rate else {
        return Some(Ok(()));
    };
    let now_ns = clock.exact_ns(env);
    let returned = worker.leases.get(index);
    let result = shared::update(env, &rate_key(&token.id), |cur| {
        let mut b = cur
            .and_then(Bucket::decode)
            .unwrap_or_else(|| Bucket::full(rate, now_ns));
        let r = b.draw(rate, now_ns, returned, request, bytes);
        (b.encode(), r)
    })?;
    let lease = match result {
        Ok(lease) => Lease {
            taken_ns: clock.recent_ns,
            ..lease
        },
        // The returned lease is in the bucket now.
        Err(_) => Lease::default(),
    };
    worker.leases.set(index, lease);
    Some(result.map(drop))
}

/// The client address: the peer, or the address a trusted proxy forwarded for.
fn client<'h, H>(cfg: &Config, headers: H, env: &mut dyn Env) -> Option<IpAddr>
where
    H: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    let peer = env.peer();
    if cfg.trusted_proxies.is_empty() {
        return peer;
    }
    let xff = headers
        .into_iter()
        .filter(|(n, _)| same(n, "x-forwarded-for"))
        .map(|(_, v)| v);
    cidr::client_address(peer, xff, &cfg.trusted_proxies)
}

/// Charges body bytes to a token's byte budget as they pass (never buffering the body): from
/// the worker's lease when it covers them, else in a round with the shared bucket (reading
/// the exact clock). Returns false when the shared-data update gave up after CAS conflicts.
pub fn charge_body(
    cfg: &Config,
    worker: &mut Worker,
    token: usize,
    bytes: u64,
    recent_ns: i64,
    env: &mut dyn Env,
) -> bool {
    let Some(t) = cfg.tokens.get(token) else {
        return true;
    };
    let Some(rate) = t.rate.filter(|r| r.bytes_per_second.is_some()) else {
        return true;
    };
    if bytes == 0 || worker.leases.take(token, &rate, false, bytes, recent_ns) {
        return true;
    }
    let mut clock = Clock {
        recent_ns,
        exact_ns: None,
    };
    draw(worker, token, t, env, &mut clock, false, bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::TestEnv;

    const S: i64 = 1_000_000_000;
    /// 2027-01-01T00:00:00Z and 2026-01-01T00:00:00Z.
    const EXPIRES: i64 = 1_798_761_600;
    const NOT_BEFORE: i64 = 1_767_225_600;

    fn clock_config() -> Config {
        let json = r#"{"tokens": [
            {"id": "windowed", "token": "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
             "not_before": "2026-01-01T00:00:00Z", "expires_at": "2027-01-01T00:00:00Z"},
            {"id": "open", "token": "open-Oq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5Gs"},
            {"id": "limited", "token": "limited-Lq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
             "rate": {"requests_per_second": 5, "burst": 5}}
        ]}"#;
        crate::config::parse(json.as_bytes()).unwrap()
    }

    /// Outcome and exact-clock readings of one OTLP/HTTP trace export with `token`.
    fn run(token: &str, recent_s: i64, exact_s: i64) -> (Outcome, u32) {
        let cfg = clock_config();
        let auth = format!("Bearer {token}");
        let headers = [
            (":method", &b"POST"[..]),
            (":path", b"/observability/v1/traces"),
            ("content-type", b"application/x-protobuf"),
            ("authorization", auth.as_bytes()),
        ];
        let mut env = TestEnv {
            now_ns: exact_s * S,
            ..TestEnv::default()
        };
        let pairs = headers.iter().map(|(n, v)| (n.as_bytes(), *v));
        let d = decide(
            &cfg,
            &mut Worker::new(&cfg),
            pairs,
            recent_s * S,
            1,
            &mut env,
        );
        (d.verdict.outcome().unwrap(), env.clock_reads)
    }

    #[test]
    fn declared_length_is_a_plain_decimal() {
        let len = |v: &'static str| declared_length([(&b"content-length"[..], v.as_bytes())]);
        assert_eq!(len("0"), Some(0));
        assert_eq!(len("1234567"), Some(1_234_567));
        assert_eq!(len("9999999999999999999"), Some(9_999_999_999_999_999_999));
        for bad in ["", "-1", "+5", "1e3", "12a", "18446744073709551615", " 5"] {
            assert_eq!(len(bad), None, "{bad:?}");
        }
        assert_eq!(declared_length([(&b"content-type"[..], &b"5"[..])]), None);
    }

    #[test]
    fn the_exact_clock_is_read_only_near_a_validity_boundary_or_for_a_rate() {
        use Outcome::{Accepted, Expired};
        let m = CLOCK_MARGIN_S;
        // (token, recent reading, exact clock, outcome, exact readings)
        let table = [
            (
                "open-Oq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5Gs",
                EXPIRES,
                EXPIRES,
                Accepted,
                0,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                EXPIRES - m - 1,
                EXPIRES - m,
                Accepted,
                0,
            ),
            // A boundary within the margin ahead of the recent reading: the exact clock decides.
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                EXPIRES - m,
                EXPIRES - 1,
                Accepted,
                1,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                EXPIRES - 1,
                EXPIRES,
                Expired,
                1,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                EXPIRES - 30,
                EXPIRES + 5,
                Expired,
                1,
            ),
            // At or past a boundary by the recent reading: reached, no reading needed.
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                EXPIRES,
                EXPIRES + 1,
                Expired,
                0,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                NOT_BEFORE,
                NOT_BEFORE,
                Accepted,
                0,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                NOT_BEFORE - m - 1,
                NOT_BEFORE - m,
                Expired,
                0,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                NOT_BEFORE - 10,
                NOT_BEFORE - 1,
                Expired,
                1,
            ),
            (
                "windowed-Wq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                NOT_BEFORE - 10,
                NOT_BEFORE,
                Accepted,
                1,
            ),
            // Rate buckets always use the exact clock, read once per decision.
            (
                "limited-Lq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5",
                EXPIRES,
                EXPIRES,
                Accepted,
                1,
            ),
        ];
        for (i, (token, recent, exact, outcome, reads)) in table.into_iter().enumerate() {
            assert_eq!(run(token, recent, exact), (outcome, reads), "row {i}");
        }
    }

    #[test]
    fn generations_count_distinct_contents() {
        let (r1, g1) = next_generation(None, "aaa");
        assert_eq!(g1, 1);
        let (r2, g2) = next_generation(Some(&r1), "aaa");
        assert_eq!(
            (g2, &r2),
            (1, &r1),
            "same content, same generation (another worker)"
        );
        let (r3, g3) = next_generation(Some(&r2), "bbb");
        assert_eq!(g3, 2);
        let (_, g4) = next_generation(Some(&r3), "aaa");
        assert_eq!(g4, 3, "going back to earlier content is a new generation");
        assert_eq!(
            next_generation(Some(b"xx"), "aaa").1,
            1,
            "a damaged record starts over"
        );
    }
}
