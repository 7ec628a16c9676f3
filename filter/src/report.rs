//! `otlp-gate token report`: a token file joined with gateways' `/stats/prometheus` (CLI only).
//!
//! Per token: accepted requests, refusals by outcome and body bytes summed over the gateways
//! (one `--stats` per pod), and the latest last-seen time. A figure a gateway does not expose
//! is never taken as zero: the cell shows `n/a`, or `>=N` when only some gateways have it, and
//! the report says which gateway lacks which metric. A gateway's per-token refusals of an
//! outcome are zero only when it exposes them or when its `otlp_gate_requests_total` (defined
//! for every outcome at load) counted none of that outcome at all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use otlp_gate::config;
use otlp_gate::time::format_rfc3339;
use serde_json::{Value, json};

use crate::Failure;
use crate::tokencmd::{Done, signals, state, table};

pub const HELP: &str = r"  otlp-gate token report FILE --stats URL [--stats URL…] [--unused-days 30] [--json]
      Join FILE's tokens with each gateway pod's /stats/prometheus (an http:// URL, by
      default path /stats/prometheus, or a saved file): accepted requests, refusals by
      outcome, body bytes (summed over pods) and last seen (latest). Flags tokens with no
      use counted, unused for --unused-days, still presented while expired or disabled,
      and not loaded by a gateway. Figures a gateway does not expose show as n/a (or >=N).
";

/// The refusal outcomes counted per token (`otlp_gate_token_refused_total{outcome}`).
pub const REFUSED: [&str; 5] = [
    "expired",
    "disabled",
    "forbidden_signal",
    "forbidden_source",
    "rate_limited",
];

const ACCEPTED: &str = "otlp_gate_token_requests_total";
const REFUSED_TOTAL: &str = "otlp_gate_token_refused_total";
const BYTES: &str = "otlp_gate_token_bytes_total";
const LAST_SEEN: &str = "otlp_gate_token_last_seen_timestamp_seconds";
const THROTTLED: &str = "otlp_gate_token_throttled_total";
const EXPIRY: &str = "otlp_gate_token_expiry_timestamp_seconds";
const REQUESTS: &str = "otlp_gate_requests_total";
const LOADED: &str = "otlp_gate_tokens_loaded";
const GENERATION: &str = "otlp_gate_config_generation";

/// One sample line of the Prometheus text format.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text exposition format (as Envoy's `/stats/prometheus` writes it,
/// `name{} value` included). Every non-comment line must be a sample.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(sample(line).ok_or_else(|| format!("line {}: not a Prometheus sample", n + 1))?);
    }
    Ok(out)
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start();
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = r.split_once('=')?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            let quoted = after.trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut end = None;
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key.to_owned(), value));
            r = quoted.get(end? + 1..)?.trim_start();
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return None;
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut parts = rest.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// What one gateway's page says, per token.
#[derive(Default)]
struct Gateway {
    source: String,
    uptime: Option<f64>,
    loaded: Option<f64>,
    /// +1 for every load of a token file with new content since Envoy started.
    generation: Option<f64>,
    accepted: BTreeMap<String, f64>,
    refused: BTreeMap<(String, String), f64>,
    /// Outcomes for which the page has per-token refusal series.
    refused_outcomes: BTreeSet<String>,
    /// `otlp_gate_requests_total` summed over signals, per outcome.
    by_outcome: BTreeMap<String, f64>,
    throttled: BTreeMap<String, f64>,
    bytes: BTreeMap<String, f64>,
    last_seen: BTreeMap<String, f64>,
    /// Tokens with an expiry gauge: set at load for every token of the loaded file.
    expiry: BTreeSet<String>,
}

impl Gateway {
    fn from_samples(source: &str, samples: &[Sample]) -> Result<Self, String> {
        let mut g = Gateway {
            source: source.to_owned(),
            ..Gateway::default()
        };
        let mut gate = false;
        for s in samples {
            let id = s.label("token_id").map(str::to_owned);
            gate |= s.name.starts_with("otlp_gate_");
            let add = |m: &mut BTreeMap<String, f64>, id: Option<String>| {
                if let Some(id) = id {
                    *m.entry(id).or_default() += s.value;
                }
            };
            match s.name.as_str() {
                "envoy_server_uptime" => g.uptime = Some(s.value),
                LOADED => g.loaded = Some(s.value),
                GENERATION => g.generation = Some(s.value),
                ACCEPTED => add(&mut g.accepted, id),
                BYTES => add(&mut g.bytes, id),
                THROTTLED => add(&mut g.throttled, id),
                LAST_SEEN => {
                    if let Some(id) = id {
                        let e = g.last_seen.entry(id).or_default();
                        *e = e.max(s.value);
                    }
                }
                EXPIRY => {
                    if let Some(id) = id {
                        g.expiry.insert(id);
                    }
                }
                REFUSED_TOTAL => {
                    if let (Some(id), Some(o)) = (id, s.label("outcome")) {
                        g.refused_outcomes.insert(o.to_owned());
                        *g.refused.entry((id, o.to_owned())).or_default() += s.value;
                    }
                }
                REQUESTS => {
                    if let Some(o) = s.label("outcome") {
                        *g.by_outcome.entry(o.to_owned()).or_default() += s.value;
                    }
                }
                _ => {}
            }
        }
        if !gate {
            return Err(format!(
                "{source}: has no otlp-gate metrics (is it a gateway pod's /stats/prometheus, with the otlp-gate filter loaded?)"
            ));
        }
        Ok(g)
    }

    fn accepted(&self, id: &str) -> f64 {
        self.accepted.get(id).copied().unwrap_or(0.0)
    }

    /// Refusals of `id` with `outcome`, when this page can tell.
    fn refused(&self, id: &str, outcome: &str) -> Option<f64> {
        let get = |m: &BTreeMap<_, f64>, k| m.get(k).copied().unwrap_or(0.0);
        if self.refused_outcomes.contains(outcome) {
            return Some(get(&self.refused, &(id.to_owned(), outcome.to_owned())));
        }
        if self.by_outcome.get(outcome) == Some(&0.0) {
            return Some(0.0);
        }
        if outcome == "rate_limited" && !self.throttled.is_empty() {
            return Some(self.throttled.get(id).copied().unwrap_or(0.0));
        }
        None
    }

    fn bytes(&self, id: &str) -> Option<f64> {
        match self.bytes.get(id) {
            Some(b) => Some(*b),
            None if self.accepted(id) == 0.0 => Some(0.0),
            None => None,
        }
    }

    /// Some(None): never seen here; None: this page cannot tell.
    fn last_seen(&self, id: &str) -> Option<Option<f64>> {
        match self.last_seen.get(id) {
            Some(t) if *t > 0.0 => Some(Some(*t)),
            _ if self.accepted(id) == 0.0 => Some(None),
            Some(_) => Some(None),
            None => None,
        }
    }

    /// Whether this gateway has the token loaded (None when its page cannot tell).
    fn has_loaded(&self, id: &str) -> Option<bool> {
        (!self.expiry.is_empty()).then(|| self.expiry.contains(id))
    }
}

/// A sum over gateways, and the gateways that could not contribute.
#[derive(Default)]
struct Sum {
    value: f64,
    known: bool,
    missing: Vec<usize>,
}

impl Sum {
    fn add(&mut self, g: usize, v: Option<f64>) {
        match v {
            Some(v) => {
                self.value += v;
                self.known = true;
            }
            None => self.missing.push(g),
        }
    }

    fn cell(&self) -> String {
        match (self.known, self.missing.is_empty()) {
            (_, true) => fmt_num(self.value),
            (true, false) if self.value > 0.0 => format!(">={}", fmt_num(self.value)),
            (_, false) => "n/a".into(),
        }
    }

    fn json(&self) -> Value {
        if self.known || self.missing.is_empty() {
            otlp_gate::structpb::number(self.value)
        } else {
            Value::Null
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

fn read_source(source: &str) -> Result<String, String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        crate::httpget::get(source, Duration::from_secs(10))
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("{source}: cannot read: {e}"))
    }
}

pub fn run(args: &[&str], now: i64) -> Result<Done, Failure> {
    let mut file = None;
    let mut sources = Vec::new();
    let mut json_out = false;
    let mut unused_days: i64 = 30;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut value = || {
            it.next()
                .copied()
                .ok_or_else(|| Failure::Usage(format!("{a} needs a value")))
        };
        match a {
            "--stats" => sources.push(value()?),
            "--json" => json_out = true,
            "--unused-days" => {
                let v = value()?;
                unused_days = v.parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                    Failure::Usage(format!("--unused-days {v:?}: a whole number of days"))
                })?;
            }
            _ if a.starts_with("--") => {
                return Err(Failure::Usage(format!(
                    "unknown option {a} for `token report`"
                )));
            }
            _ if file.is_none() => file = Some(a),
            _ => return Err(Failure::Usage(format!("unexpected argument {a:?}"))),
        }
    }
    let file = file.ok_or_else(|| Failure::Usage("`token report` needs a FILE".into()))?;
    if sources.is_empty() {
        return Err(Failure::Usage(
            "`token report` needs --stats URL (one per gateway pod)".into(),
        ));
    }
    let bytes =
        std::fs::read(file).map_err(|e| Failure::Invalid(format!("{file}: cannot read: {e}\n")))?;
    crate::check(file, &bytes)?;
    let mut pages = Vec::new();
    for s in &sources {
        let text = read_source(s).map_err(|e| Failure::Invalid(format!("{e}\n")))?;
        let samples =
            parse_prometheus(&text).map_err(|e| Failure::Invalid(format!("{s}: {e}\n")))?;
        pages.push(
            Gateway::from_samples(s, &samples).map_err(|e| Failure::Invalid(format!("{e}\n")))?,
        );
    }
    let mut tokens = Vec::new();
    for f in crate::extract_configs(file, &bytes)? {
        let cfg = config::parse(&f.raw)
            .map_err(|_| Failure::Invalid(format!("{}: invalid\n", f.location)))?;
        for t in cfg.tokens {
            let st = state(&t, now, cfg.warn_before_secs);
            tokens.push((t, st));
        }
    }
    Ok(render(file, &pages, &tokens, now, unused_days, json_out))
}

fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn render(
    file: &str,
    pages: &[Gateway],
    tokens: &[(config::Token, &'static str)],
    now: i64,
    unused_days: i64,
    as_json: bool,
) -> Done {
    let nowf = now as f64;
    let mut rows = vec![
        [
            "ID",
            "TENANT",
            "STATE",
            "ACCEPTED",
            "REFUSED",
            "BYTES",
            "LAST SEEN",
            "NOTES",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let mut out_tokens = Vec::new();
    // (column, gateway) pairs where a figure was missing, for the notes below the table.
    let mut gaps: BTreeSet<(&str, usize)> = BTreeSet::new();
    for (t, st) in tokens {
        let id = t.id.as_str();
        let mut accepted = Sum::default();
        let mut bytes = Sum::default();
        let mut refused: Vec<(&str, Sum)> = REFUSED.iter().map(|o| (*o, Sum::default())).collect();
        let mut last: Option<f64> = None;
        let mut last_missing = Vec::new();
        let mut not_loaded = 0;
        for (g, page) in pages.iter().enumerate() {
            accepted.add(g, Some(page.accepted(id)));
            bytes.add(g, page.bytes(id));
            for (o, sum) in &mut refused {
                sum.add(g, page.refused(id, o));
            }
            match page.last_seen(id) {
                Some(Some(ts)) => last = Some(last.map_or(ts, |l: f64| l.max(ts))),
                Some(None) => {}
                None => last_missing.push(g),
            }
            if page.has_loaded(id) == Some(false) {
                not_loaded += 1;
            }
        }
        let mut refused_total = Sum::default();
        for (_, s) in &refused {
            refused_total.value += s.value;
            refused_total.known |= s.known;
            refused_total.missing.extend(&s.missing);
        }
        refused_total.missing.sort_unstable();
        refused_total.missing.dedup();
        for g in &bytes.missing {
            gaps.insert(("bytes", *g));
        }
        for (o, s) in &refused {
            for g in &s.missing {
                gaps.insert((o, *g));
            }
        }
        for g in &last_missing {
            gaps.insert(("last seen", *g));
        }

        let mut flags = Vec::new();
        let mut notes = Vec::new();
        if accepted.value == 0.0 && last.is_none() {
            flags.push("no_use_counted");
            notes.push("no use counted".to_owned());
        } else if let Some(ls) = last.filter(|_| last_missing.is_empty())
            && nowf - ls > (unused_days * 86_400) as f64
        {
            flags.push("unused");
            notes.push(format!("unused for {}", ago(nowf - ls)));
        }
        let presented = |o: &str| {
            refused
                .iter()
                .find(|(n, _)| *n == o)
                .map_or(0.0, |(_, s)| s.value)
        };
        if matches!(*st, "expired" | "not yet valid") && presented("expired") > 0.0 {
            flags.push("presented_while_expired");
            notes.push(format!(
                "still presented while {st} ({} refused)",
                fmt_num(presented("expired"))
            ));
        }
        if *st == "disabled" && presented("disabled") > 0.0 {
            flags.push("presented_while_disabled");
            notes.push(format!(
                "still presented while disabled ({} refused)",
                fmt_num(presented("disabled"))
            ));
        }
        if not_loaded > 0 {
            flags.push("not_loaded");
            notes.push(format!(
                "not loaded on {not_loaded} of {} gateway(s): file not applied yet?",
                pages.len()
            ));
        }
        let breakdown: Vec<String> = refused
            .iter()
            .filter(|(_, s)| s.value > 0.0)
            .map(|(o, s)| format!("{o} {}", s.cell()))
            .collect();
        if !breakdown.is_empty() {
            notes.push(format!("refused: {}", breakdown.join(", ")));
        }
        let last_cell = match (last, last_missing.is_empty()) {
            (Some(ls), true) => format!("{} ago", ago(nowf - ls)),
            (Some(ls), false) => format!(">={} ago", ago(nowf - ls)),
            (None, true) => "never".into(),
            (None, false) => "n/a".into(),
        };
        rows.push(vec![
            id.to_owned(),
            t.tenant.clone().unwrap_or_else(|| "-".into()),
            (*st).to_owned(),
            accepted.cell(),
            refused_total.cell(),
            bytes.cell(),
            last_cell,
            notes.join("; "),
        ]);
        let mut incomplete = Vec::new();
        if !bytes.missing.is_empty() {
            incomplete.push("bytes".to_owned());
        }
        for (o, s) in &refused {
            if !s.missing.is_empty() {
                incomplete.push(format!("refused.{o}"));
            }
        }
        if !last_missing.is_empty() {
            incomplete.push("last_seen".to_owned());
        }
        out_tokens.push(json!({
            "id": id,
            "tenant": t.tenant,
            "signals": signals(t),
            "state": st.replace(' ', "_"),
            "expires_at": t.expires_at.map(format_rfc3339),
            "accepted": accepted.json(),
            "refused": refused.iter().map(|(o, s)| ((*o).to_owned(), s.json())).collect::<serde_json::Map<_, _>>(),
            "bytes": bytes.json(),
            "last_seen": last.map(|l| format_rfc3339(l as i64)),
            "incomplete": incomplete,
            "flags": flags,
        }));
    }

    // Tokens the gateways count that the file no longer has.
    let known: BTreeSet<&str> = tokens.iter().map(|(t, _)| t.id.as_str()).collect();
    let mut stray: BTreeMap<String, f64> = BTreeMap::new();
    for p in pages {
        for id in p
            .accepted
            .keys()
            .chain(p.expiry.iter())
            .chain(p.last_seen.keys())
        {
            if !known.contains(id.as_str()) {
                *stray.entry(id.clone()).or_default() += 0.0;
            }
        }
        for (id, v) in &p.accepted {
            if !known.contains(id.as_str()) {
                *stray.entry(id.clone()).or_default() += v;
            }
        }
    }

    // Which gateway lacks which metric (figures shown as n/a or >=N because of it).
    let mut unavailable: Vec<(usize, &str, String)> = Vec::new();
    for g in 0..pages.len() {
        let has = |c: &str| gaps.contains(&(c, g));
        let refused: Vec<&str> = REFUSED.iter().copied().filter(|o| has(o)).collect();
        if !refused.is_empty() {
            unavailable.push((
                g,
                REFUSED_TOTAL,
                format!(
                    "it counted {} refusals but has no per-token series for them",
                    refused.join("/")
                ),
            ));
        }
        if has("bytes") {
            unavailable.push((
                g,
                BYTES,
                "missing for tokens that sent requests (older modules count bytes only for tokens with a byte limit)".into(),
            ));
        }
        if has("last seen") {
            unavailable.push((
                g,
                LAST_SEEN,
                "not exposed: last-seen times and `unused for N days` are incomplete".into(),
            ));
        }
    }

    if as_json {
        let doc = json!({
            "file": file,
            "now": format_rfc3339(now),
            "gateways": pages.iter().map(|p| json!({
                "source": p.source,
                "uptime_seconds": p.uptime,
                "tokens_loaded": p.loaded,
                "config_generation": p.generation,
            })).collect::<Vec<_>>(),
            "tokens": out_tokens,
            "not_in_file": stray.iter().map(|(id, v)| json!({"id": id, "accepted": v})).collect::<Vec<_>>(),
            "unavailable": unavailable.iter().map(|(g, metric, why)| json!({
                "source": pages.get(*g).map(|p| p.source.as_str()),
                "metric": metric,
                "why": why,
            })).collect::<Vec<_>>(),
        });
        return Done {
            stdout: format!("{doc}\n"),
            stderr: String::new(),
        };
    }
    let mut out = format!(
        "{file} joined with {} gateway(s); counts since each gateway's counters started (Envoy start, or a token-file reload):\n",
        pages.len()
    );
    for p in pages {
        out.push_str(&format!(
            "  {}: {}, {} token(s) loaded, config generation {}\n",
            p.source,
            p.uptime
                .map_or("uptime unknown".into(), |u| format!("up {}", ago(u))),
            p.loaded.map_or("?".into(), fmt_num),
            p.generation.map_or("?".into(), fmt_num),
        ));
    }
    if pages.iter().any(|p| p.generation.is_some_and(|g| g > 1.0)) {
        out.push_str(
            "  (a token file was reloaded since Envoy started: Envoy may have restarted the counts then,\n   so `no use counted` means since the last reload, not ever)\n",
        );
    }
    out.push('\n');
    out.push_str(&table(&rows));
    if !stray.is_empty() {
        let list: Vec<String> = stray
            .iter()
            .map(|(id, v)| format!("{id} ({} accepted)", fmt_num(*v)))
            .collect();
        out.push_str(&format!(
            "\nIn the gateways' stats but not in {file} (removed tokens; their series stay until the pod restarts): {}\n",
            list.join(", ")
        ));
    }
    if !unavailable.is_empty() {
        out.push_str("\nNot available (shown as n/a, or >=N when only some gateways have it):\n");
        let mut last = None;
        for (g, metric, why) in &unavailable {
            if last != Some(*g) {
                let source = pages.get(*g).map_or("", |p| p.source.as_str());
                out.push_str(&format!("  {source}:\n"));
                last = Some(*g);
            }
            out.push_str(&format!("    {metric}: {why}\n"));
        }
    }
    Done {
        stdout: out,
        stderr: String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// Real Envoy 1.40 output with today's module (tests/e2e stack, the tokens of `FILE`).
    const OLD: &str = include_str!("../tests/fixtures/envoy-1.40-module-2026-12.prom");
    /// The agreed per-token series, hand-written in Envoy's format.
    const NEW: &str = include_str!("../tests/fixtures/per-token-refusals-and-last-seen.prom");
    const FILE: &str = r#"{"tokens": [
        {"id": "team-a", "sha256": "0000000000000000000000000000000000000000000000000000000000000001", "tenant": "a"},
        {"id": "lim", "sha256": "0000000000000000000000000000000000000000000000000000000000000002", "tenant": "a", "rate": {"requests_per_second": 1, "burst": 1, "bytes_per_second": 100000}},
        {"id": "old", "sha256": "0000000000000000000000000000000000000000000000000000000000000003", "tenant": "a", "expires_at": "2020-01-01T00:00:00Z"},
        {"id": "off", "sha256": "0000000000000000000000000000000000000000000000000000000000000004", "tenant": "a", "disabled": true},
        {"id": "traces-only", "sha256": "0000000000000000000000000000000000000000000000000000000000000005", "tenant": "b", "signals": ["traces"]},
        {"id": "idle", "sha256": "0000000000000000000000000000000000000000000000000000000000000006", "tenant": "b"},
        {"id": "newbie", "sha256": "0000000000000000000000000000000000000000000000000000000000000007", "tenant": "b"}]}"#;
    /// 2026-12-05T18:13:20Z
    const NOW: i64 = 1_796_500_000;

    fn report(pages: &[(&str, &str)], json: bool) -> String {
        let dir = std::env::temp_dir().join(format!(
            "otlp-gate-report-{}-{}",
            std::process::id(),
            pages.len() * 2 + usize::from(json)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens.json");
        std::fs::write(&file, FILE).unwrap();
        let mut args = vec![file.to_string_lossy().into_owned()];
        for (name, text) in pages {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            args.push("--stats".into());
            args.push(p.to_string_lossy().into_owned());
        }
        if json {
            args.push("--json".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let done = run(&args, NOW).unwrap_or_else(|f| panic!("{f:?}"));
        std::fs::remove_dir_all(&dir).unwrap();
        done.stdout
    }

    fn row<'a>(out: &'a str, id: &str) -> Vec<&'a str> {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap();
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn prometheus_text_as_envoy_writes_it() {
        let s = parse_prometheus(OLD).unwrap();
        assert!(s.contains(&Sample {
            name: "otlp_gate_token_requests_total".into(),
            labels: vec![("token_id".into(), "team-a".into())],
            value: 5.0
        }));
        assert!(s.contains(&Sample {
            name: "otlp_gate_tokens_loaded".into(),
            labels: vec![],
            value: 6.0
        }));
        let odd =
            parse_prometheus("a{x=\"q\\\"\\n\\\\\",y=\"\",} 1.5e3 1700000000\nb +Inf\n").unwrap();
        assert_eq!(
            odd[0].labels,
            vec![("x".into(), "q\"\n\\".into()), ("y".into(), String::new())]
        );
        assert_eq!(odd[0].value, 1500.0);
        assert!(odd[1].value.is_infinite());
        for bad in [
            "<html>",
            "a{x=1} 2",
            "a{x=\"1\" 2",
            "a 1 2 3",
            "a",
            "a{x=\"1\"}2",
        ] {
            assert!(
                parse_prometheus(bad).unwrap_err().contains("line 1"),
                "{bad}"
            );
        }
    }

    #[test]
    fn todays_module_gives_what_it_has_and_says_what_it_lacks() {
        let out = report(&[("pod-a.prom", OLD)], false);
        assert_eq!(
            row(&out, "team-a")[3..7],
            ["5", "n/a", "n/a", "n/a"],
            "{out}"
        );
        // lim: its throttled counter gives its rate_limited refusals; it has a byte limit.
        assert_eq!(row(&out, "lim")[3..6], ["1", ">=2", "2"], "{out}");
        assert!(row(&out, "lim")[7].contains("rate_limited 2"), "{out}");
        // old: two refusals as expired on this pod, which does not say whose.
        assert_eq!(
            row(&out, "old")[2..7],
            ["expired", "0", "n/a", "0", "never"],
            "{out}"
        );
        assert!(
            row(&out, "idle")[3..].starts_with(&["0", "n/a", "0", "never", "no use counted"]),
            "{out}"
        );
        assert!(out.contains("    otlp_gate_token_refused_total: it counted expired/disabled/forbidden_signal refusals but has no per-token series"), "{out}");
        assert!(
            out.contains("    otlp_gate_token_last_seen_timestamp_seconds: not exposed"),
            "{out}"
        );
        assert!(
            out.contains("    otlp_gate_token_bytes_total: missing for tokens that sent requests"),
            "{out}"
        );
        assert!(
            row(&out, "newbie")
                .last()
                .unwrap()
                .contains("not loaded on 1 of 1"),
            "{out}"
        );
        assert!(
            out.contains("up 1s, 6 token(s) loaded, config generation 1\n\n"),
            "{out}"
        );
    }

    #[test]
    fn per_token_series_complete_the_report() {
        let out = report(&[("pod-b.prom", NEW)], false);
        assert!(
            !out.contains("n/a") && !out.contains(">=") && !out.contains("Not available"),
            "{out}"
        );
        assert_eq!(
            row(&out, "team-a")[3..7],
            ["10", "0", "1048576", "2h ago"],
            "{out}"
        );
        assert!(
            row(&out, "old")[7].contains("still presented while expired (3 refused)"),
            "{out}"
        );
        assert!(
            row(&out, "off")[7].contains("still presented while disabled (4 refused)"),
            "{out}"
        );
        assert!(
            row(&out, "traces-only")[7].starts_with("unused for 75d"),
            "{out}"
        );
        assert!(row(&out, "idle")[7].starts_with("no use counted"), "{out}");
        assert!(out.contains("not in "), "{out}");
        assert!(out.contains("gone (1 accepted)"), "{out}");
        assert!(
            out.contains(
                "up 26h, 7 token(s) loaded, config generation 3\n  (a token file was reloaded"
            ),
            "{out}"
        );
    }

    #[test]
    fn pods_are_summed_and_gaps_marked() {
        let out = report(&[("pod-a.prom", OLD), ("pod-b.prom", NEW)], false);
        assert_eq!(
            row(&out, "team-a")[3..7],
            ["15", "n/a", ">=1048576", ">=2h ago"],
            "{out}"
        );
        assert_eq!(row(&out, "lim")[3..6], ["4", ">=9", "302"], "{out}");
        assert_eq!(row(&out, "old")[3..5], ["0", ">=3"], "{out}");
        let json: Value =
            serde_json::from_str(&report(&[("a.prom", OLD), ("b.prom", NEW)], true)).unwrap();
        let team_a = &json["tokens"][0];
        assert_eq!(team_a["accepted"], 15);
        assert_eq!(team_a["bytes"], 1_048_576);
        assert_eq!(
            team_a["incomplete"],
            json!([
                "bytes",
                "refused.expired",
                "refused.disabled",
                "refused.forbidden_signal",
                "last_seen"
            ])
        );
        let old = &json["tokens"][2];
        assert_eq!(old["refused"]["expired"], 3);
        assert_eq!(
            old["flags"],
            json!(["no_use_counted", "presented_while_expired"])
        );
        assert_eq!(json["not_in_file"][0]["id"], "gone");
        assert_eq!(json["gateways"].as_array().unwrap().len(), 2);
        let alone: Value = serde_json::from_str(&report(&[("a.prom", OLD)], true)).unwrap();
        assert_eq!(alone["tokens"][0]["bytes"], Value::Null);
        assert_eq!(alone["tokens"][2]["refused"]["expired"], Value::Null);
        assert_eq!(alone["tokens"][1]["refused"]["rate_limited"], 2);
    }

    #[test]
    fn a_page_without_the_gate_or_a_dead_gateway_is_an_error() {
        let dir = std::env::temp_dir().join(format!("otlp-gate-report-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.json");
        std::fs::write(&file, FILE).unwrap();
        let page = dir.join("envoy.prom");
        std::fs::write(&page, "# TYPE envoy_x counter\nenvoy_x{} 1\n").unwrap();
        let f = file.to_str().unwrap();
        let e = run(&[f, "--stats", page.to_str().unwrap()], NOW).unwrap_err();
        assert!(
            matches!(&e, Failure::Invalid(m) if m.contains("no otlp-gate metrics")),
            "{e:?}"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = run(&[f, "--stats", &format!("http://127.0.0.1:{port}")], NOW).unwrap_err();
        assert!(
            matches!(&e, Failure::Invalid(m) if m.contains("cannot connect")),
            "{e:?}"
        );
        assert!(matches!(run(&[f], NOW), Err(Failure::Usage(_))));
        assert!(matches!(
            run(&[f, "--stats", "x", "--unused-days", "0"], NOW),
            Err(Failure::Usage(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
