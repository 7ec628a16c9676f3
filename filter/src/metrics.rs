//! Stat names. proxy-wasm metrics have no labels, so labels are encoded in the name as
//! `.label.value` pairs; the `stats_tags` regexes in envoy/envoy.yaml turn them back into
//! Prometheus labels. Envoy prefixes every wasm-defined stat with `wasmcustom.`.

use crate::route::Signal;

/// Why a request ended the way it did: the `outcome` label of `otlp_gate_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    Missing,
    Malformed,
    Unknown,
    Expired,
    Disabled,
    ForbiddenSignal,
    NotFound,
    MethodNotAllowed,
    /// A content type OTLP does not define for the endpoint (415).
    UnsupportedMediaType,
    /// The token is over its rate limit (429).
    RateLimited,
    /// The client address is in a failed-auth cooldown (429).
    AuthThrottled,
    /// The token is not allowed from this client address (403).
    ForbiddenSource,
    /// Would have been rejected, but dry-run mode forwarded it.
    DryRun,
}

impl Outcome {
    pub const ALL: [Outcome; 14] = [
        Outcome::Accepted,
        Outcome::Missing,
        Outcome::Malformed,
        Outcome::Unknown,
        Outcome::Expired,
        Outcome::Disabled,
        Outcome::ForbiddenSignal,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::UnsupportedMediaType,
        Outcome::RateLimited,
        Outcome::AuthThrottled,
        Outcome::ForbiddenSource,
        Outcome::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Missing => "missing",
            Outcome::Malformed => "malformed",
            Outcome::Unknown => "unknown",
            Outcome::Expired => "expired",
            Outcome::Disabled => "disabled",
            Outcome::ForbiddenSignal => "forbidden_signal",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::RateLimited => "rate_limited",
            Outcome::AuthThrottled => "auth_throttled",
            Outcome::ForbiddenSource => "forbidden_source",
            Outcome::DryRun => "dry_run",
        }
    }

    /// Dense index for a fixed-size table of metric ids.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The `signal` label: one of the three signals, or `none` for paths that are not OTLP.
pub fn signal_label(signal: Option<Signal>) -> &'static str {
    signal.map_or("none", Signal::as_str)
}

/// Dense index of a signal label (0..4) for a fixed-size table of metric ids.
pub fn signal_index(signal: Option<Signal>) -> usize {
    signal.map_or(3, |s| s as usize)
}

/// `<base>.signal.<signal>.outcome.<outcome>`: one formatting site for both (module size).
#[inline(never)]
fn by_signal_and_outcome(base: &str, signal: Option<Signal>, outcome: Outcome) -> String {
    format!(
        "{base}.signal.{}.outcome.{}",
        signal_label(signal),
        outcome.as_str()
    )
}

/// `otlp_gate_requests_total{signal,outcome}`.
pub fn requests_total(signal: Option<Signal>, outcome: Outcome) -> String {
    by_signal_and_outcome("otlp_gate_requests_total", signal, outcome)
}

/// A per-token stat name: `<base>.token_id.<id>`, then `<label><value>` for a second label
/// (`.outcome.`, `.tenant.`) or nothing. One formatting site for all of them (module size).
#[inline(never)]
fn token_metric(base: &str, token_id: &str, label: &str, value: &str) -> String {
    format!("{base}.token_id.{token_id}{label}{value}")
}

/// `otlp_gate_token_requests_total{token_id}`: accepted requests per token.
pub fn token_requests_total(token_id: &str) -> String {
    token_metric("otlp_gate_token_requests_total", token_id, "", "")
}

/// `otlp_gate_token_expiry_timestamp_seconds{token_id}`: 0 when the token never expires.
pub fn token_expiry(token_id: &str) -> String {
    token_metric("otlp_gate_token_expiry_timestamp_seconds", token_id, "", "")
}

/// `otlp_gate_config_loads_total{result}` with `ok` or `rejected`.
pub fn config_loads_total(ok: bool) -> &'static str {
    if ok {
        "otlp_gate_config_loads_total.result.ok"
    } else {
        "otlp_gate_config_loads_total.result.rejected"
    }
}

/// `otlp_gate_dry_run_total{signal,outcome}`: what dry-run forwarded, by would-be outcome.
pub fn dry_run_total(signal: Option<Signal>, outcome: Outcome) -> String {
    by_signal_and_outcome("otlp_gate_dry_run_total", signal, outcome)
}

/// The outcomes a recognised token is refused with, counted per token: the `outcome` label of
/// `otlp_gate_token_refused_total` (an address cooling down is counted by address, not token).
/// The adapter relies on the order of the first two (expired, disabled).
pub const TOKEN_REFUSALS: [Outcome; 5] = [
    Outcome::Expired,
    Outcome::Disabled,
    Outcome::ForbiddenSignal,
    Outcome::ForbiddenSource,
    Outcome::RateLimited,
];

/// `otlp_gate_token_refused_total{token_id,outcome}`: refusals of a recognised token.
pub fn token_refused_total(token_id: &str, outcome: Outcome) -> String {
    token_metric(
        "otlp_gate_token_refused_total",
        token_id,
        ".outcome.",
        outcome.as_str(),
    )
}

/// `otlp_gate_token_throttled_bytes_total{token_id}`: declared body bytes of the token's
/// `rate_limited` refusals.
pub fn token_throttled_bytes_total(token_id: &str) -> String {
    token_metric("otlp_gate_token_throttled_bytes_total", token_id, "", "")
}

/// `otlp_gate_token_bytes_total{token_id}`: body bytes of the token's accepted requests (the
/// declared `content-length` on admission, else the bytes as they pass).
pub fn token_bytes_total(token_id: &str) -> String {
    token_metric("otlp_gate_token_bytes_total", token_id, "", "")
}

/// `otlp_gate_token_last_seen_timestamp_seconds{token_id}`: the last accepted request (Unix
/// seconds, as of the filter's tick).
pub fn token_last_seen(token_id: &str) -> String {
    token_metric(
        "otlp_gate_token_last_seen_timestamp_seconds",
        token_id,
        "",
        "",
    )
}

/// `otlp_gate_token_info{token_id,tenant}` for every loaded token, valued the `otlp_gate_config_hash`
/// of the file that loaded it (a removed token's series keeps an older one). The tenant is the
/// name's last label: the tag regex takes the rest of the name, dots included.
pub fn token_info(token_id: &str, tenant: Option<&str>) -> String {
    let (label, value) = tenant.map_or(("", ""), |t| (".tenant.", t));
    token_metric("otlp_gate_token_info", token_id, label, value)
}

/// Shared-data updates that gave up after repeated CAS conflicts (request served unthrottled).
pub const SHARED_DATA_CONFLICTS: &str = "otlp_gate_shared_data_conflicts_total";
/// 1 while the top-level mode is dry_run: alert on it.
pub const DRY_RUN_ENABLED: &str = "otlp_gate_dry_run_enabled";
pub const TOKENS_LOADED: &str = "otlp_gate_tokens_loaded";
pub const CONFIG_GENERATION: &str = "otlp_gate_config_generation";
/// The first 48 bits of the config's `config_sha256` (`Config::hash48`): equal on every pod
/// serving the same token file, unlike the generation.
pub const CONFIG_HASH: &str = "otlp_gate_config_hash";
/// The configuration's `warn_before`, in seconds (the dashboard's expiring-tokens panel).
pub const WARN_BEFORE: &str = "otlp_gate_warn_before_seconds";

/// Counter increments held in wasm memory until the next flush. Each `proxy_increment_metric`
/// is a hostcall (Envoy CPU per call: tests/bench/README.md), and an accepted request bumps two
/// counters; the adapter hands the sums to the host on every tick (100 ms) instead, so a
/// busy worker makes a handful of hostcalls per tick rather than two per request.
/// Counters are dense indices; only the ones touched since the last flush are visited.
#[derive(Debug, Default)]
pub struct Pending {
    sums: Vec<i64>,
    touched: Vec<usize>,
}

impl Pending {
    /// Room for counters `0..len`.
    pub fn new(len: usize) -> Pending {
        Pending {
            sums: vec![0; len],
            touched: Vec::new(),
        }
    }

    /// Adds `n` (≥ 0) to counter `index`; an index out of range is ignored.
    pub fn add(&mut self, index: usize, n: i64) {
        let Some(sum) = self.sums.get_mut(index) else {
            return;
        };
        if n <= 0 {
            return;
        }
        if *sum == 0 {
            self.touched.push(index);
        }
        *sum = sum.saturating_add(n);
    }

    /// Sets gauge `index` to `value` (> 0) for the next flush; the last value set wins.
    pub fn set(&mut self, index: usize, value: i64) {
        let Some(slot) = self.sums.get_mut(index) else {
            return;
        };
        if value <= 0 {
            return;
        }
        if *slot == 0 {
            self.touched.push(index);
        }
        *slot = value;
    }

    /// Hands every non-zero sum (or gauge value) to `flush` (index, value) and starts again from
    /// zero.
    pub fn drain(&mut self, mut flush: impl FnMut(usize, i64)) {
        for &i in &self.touched {
            if let Some(sum) = self.sums.get_mut(i) {
                flush(i, std::mem::take(sum));
            }
        }
        self.touched.clear();
    }

    /// Whether nothing is waiting to be flushed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sums_are_flushed_once_and_then_start_over() {
        let mut p = Pending::new(4);
        assert!(p.is_empty());
        p.add(2, 1);
        p.add(0, 5);
        p.add(2, 3);
        p.add(1, 0); // nothing to count: not visited
        p.add(9, 1); // out of range: ignored, never a panic
        p.add(3, -4); // counters only grow
        let mut got = Vec::new();
        p.drain(|i, n| got.push((i, n)));
        assert_eq!(
            got,
            vec![(2, 4), (0, 5)],
            "each touched counter once, in order"
        );
        assert!(p.is_empty());
        let mut again = Vec::new();
        p.drain(|i, n| again.push((i, n)));
        assert!(again.is_empty(), "a flushed sum is not sent twice");
        p.add(2, i64::MAX);
        p.add(2, 7);
        p.drain(|i, n| again.push((i, n)));
        assert_eq!(
            again,
            vec![(2, i64::MAX)],
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn names_encode_labels() {
        assert_eq!(
            requests_total(Some(Signal::Traces), Outcome::Accepted),
            "otlp_gate_requests_total.signal.traces.outcome.accepted"
        );
        assert_eq!(
            requests_total(None, Outcome::NotFound),
            "otlp_gate_requests_total.signal.none.outcome.not_found"
        );
        assert_eq!(
            token_requests_total("team-a"),
            "otlp_gate_token_requests_total.token_id.team-a"
        );
        let mut seen = std::collections::HashSet::new();
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
            assert!(seen.insert(o.as_str()));
        }
        assert_eq!(signal_index(None), 3);
        assert_eq!(signal_index(Some(Signal::Logs)), 0);
        assert_eq!(
            token_refused_total("old", Outcome::Disabled),
            "otlp_gate_token_refused_total.token_id.old.outcome.disabled"
        );
        assert_eq!(
            token_info("a", Some("team.a")),
            "otlp_gate_token_info.token_id.a.tenant.team.a"
        );
        assert_eq!(token_info("a", None), "otlp_gate_token_info.token_id.a");
        assert_eq!(
            token_last_seen("a"),
            "otlp_gate_token_last_seen_timestamp_seconds.token_id.a"
        );
    }

    #[test]
    fn gauges_keep_the_last_value_set() {
        let mut p = Pending::new(3);
        p.set(1, 100);
        p.set(1, 102);
        p.set(2, 0); // nothing to report
        p.add(0, 1);
        let mut got = Vec::new();
        p.drain(|i, n| got.push((i, n)));
        assert_eq!(got, vec![(1, 102), (0, 1)]);
    }
}
