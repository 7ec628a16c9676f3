//! The plugin configuration: parsed and validated in full before it replaces anything, so a bad
//! update is refused as a whole (Envoy keeps the previous filter config) and never fails open.
//! Every problem is reported with the key path it concerns (`tokens[3].sha256: …`), all at once.

use hashbrown::HashMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::cidr::Cidr;
use crate::credentials::{ct_eq, is_tchar};
use crate::rate::Rate;
use crate::route::Signal;
use crate::throttle::Policy;
use crate::time::{parse_duration, parse_rfc3339};

/// Plaintext tokens estimated below this many bits are refused: a failed-auth cooldown spares
/// valid tokens (README "Security"), so guessing must be hopeless on its own.
pub const MIN_TOKEN_BITS: u32 = 128;

/// Whether a token is strong enough, or else its estimated bits: its length times log2 of the
/// number of distinct characters it uses, in eighths of a bit rounded down (a repeated or short
/// alphabet counts for little; a token from `otlp-gate token new`, 52 characters drawing on 64,
/// estimates about 250). Integer arithmetic only, in the module too.
pub fn token_strength(token: &[u8]) -> Result<(), u32> {
    // A b64token is ASCII and uses at most 67 distinct characters, so distinct^8 fits 64 bits.
    let seen = token
        .iter()
        .fold(0u128, |seen, &b| seen | 1u128.wrapping_shl(u32::from(b)));
    let distinct = u64::from(seen.count_ones()).min(67);
    let eighths = u64::from(distinct.max(1).pow(8).ilog2());
    let bits = token.len() as u64 * eighths / 8;
    if bits >= u64::from(MIN_TOKEN_BITS) {
        Ok(())
    } else {
        Err(bits as u32)
    }
}
/// Loki and Mimir refuse tenant ids longer than this.
pub const MAX_TENANT_LEN: usize = 150;

/// One problem in a configuration, located by its key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A validated token entry. The secret itself is never kept, only its SHA-256.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub id: String,
    pub digest: [u8; 32],
    /// The token's tenant, or the config's `default_tenant`, or none.
    pub tenant: Option<String>,
    /// Bit set of allowed signals (see `Signal::bit`).
    pub signals: u8,
    pub not_before: Option<i64>,
    pub expires_at: Option<i64>,
    pub disabled: bool,
    /// The entry carried a plaintext `token` (allowed, but warned about at every load).
    pub plaintext: bool,
    /// Its own `rate`, else the config's `default_rate`, else unlimited.
    pub rate: Option<Rate>,
    /// When non-empty, the token is only accepted from these client addresses.
    pub source_cidrs: Vec<Cidr>,
    /// `"mode": "dry_run"`: its scope, validity, source and rate checks are reported, not enforced.
    pub dry_run: bool,
}

impl Token {
    pub fn allows(&self, signal: Signal) -> bool {
        self.signals & signal.bit() != 0
    }
}

/// A validated configuration: what was parsed, nothing that changes while it serves (what a
/// worker learns while serving it is a `worker::Worker`).
#[derive(Clone, Debug)]
pub struct Config {
    pub path_prefix: String,
    pub tenant_header: String,
    pub default_tenant: Option<String>,
    pub identity_header: String,
    pub accept_basic: bool,
    pub api_key_header: Option<String>,
    pub realm: String,
    pub tokens: Vec<Token>,
    /// Top-level `"mode": "dry_run"`: every rejection is reported and the request forwarded.
    pub dry_run: bool,
    /// `None` when `failed_auth.enabled` is false.
    pub failed_auth: Option<Policy>,
    /// Ingress addresses whose `x-forwarded-for` is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// `trusted_proxies` was given, even as `[]` (none, on purpose).
    trusted_proxies_set: bool,
    /// Tokens expiring within this many seconds are warned about at load and daily.
    pub warn_before_secs: i64,
    /// Hex SHA-256 of the canonical JSON of the configuration: shown by healthz and by
    /// `otlp-gate check`, safe to publish (tokens are digests or absent).
    pub sha256_hex: String,
    /// Its first 48 bits as a number (exact as a float): the `otlp_gate_config_hash` gauge,
    /// equal on every pod serving the same file.
    pub hash48: u64,
    by_digest: HashMap<[u8; 32], usize>,
    by_id: HashMap<String, usize>,
}

impl Config {
    /// The token whose digest is `digest`, if any. The map lookup finds the candidate; the
    /// final comparison is constant-time so timing does not reveal how much of a digest matched.
    pub fn find(&self, digest: &[u8; 32]) -> Option<(usize, &Token)> {
        let index = *self.by_digest.get(digest)?;
        let token = self.tokens.get(index)?;
        ct_eq(&token.digest, digest).then_some((index, token))
    }

    /// Whether a token with this id is configured.
    pub fn has_id(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Warnings worth a log line at every load (never containing secrets).
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .tokens
            .iter()
            .filter(|t| t.plaintext)
            .map(|t| {
                format!(
                    "token {:?} is configured in plaintext; store its sha256 instead (otlp-gate hash)",
                    t.id
                )
            })
            .collect();
        let judged_by_address =
            self.failed_auth.is_some() || self.tokens.iter().any(|t| !t.source_cidrs.is_empty());
        if !self.trusted_proxies_set && judged_by_address {
            w.push("trusted_proxies is not set: without the PROXY protocol every client looks like the ingress; set it to the ingress's addresses, or [] (README \"Security\")".into());
        }
        if self.dry_run {
            w.push("top-level mode is dry_run: NOTHING IS ENFORCED, every rejected request is forwarded; set \"mode\": \"enforce\" when done".into());
        }
        w
    }

    /// Tokens that expired or expire within `warn_before` of `now` (Unix seconds).
    pub fn expiry_warnings(&self, now: i64) -> Vec<String> {
        let mut soon: Vec<&Token> = self
            .tokens
            .iter()
            .filter(|t| {
                !t.disabled
                    && t.expires_at
                        .is_some_and(|e| e - now <= self.warn_before_secs)
            })
            .collect();
        soon.sort_by_key(|t| t.expires_at);
        soon.iter()
            .map(|t| {
                let at = t.expires_at.unwrap_or_default();
                let when = crate::time::format_rfc3339(at);
                if at <= now {
                    format!("token {:?} expired at {when}; rotate it (otlp-gate token rotate) or remove it (token revoke --delete)", t.id)
                } else {
                    format!("token {:?} expires at {when} (in {}h); rotate it soon (otlp-gate token rotate)", t.id, (at - now + 3599) / 3600)
                }
            })
            .collect()
    }
}

/// SHA-256 of a token.
pub fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

fn parse_hex_digest(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// A token id appears in stat names, logs and headers: keep it to a safe alphabet.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Loki and Mimir tenant-id rules: 1..=150 bytes of `[A-Za-z0-9!_.*'()-]`, not `.` or `..`.
/// (`|` would be read as tenant federation by queriers, so it is refused here too.)
pub fn tenant_problem(t: &str) -> Option<String> {
    if t.is_empty() {
        return Some("must not be empty".into());
    }
    if t.len() > MAX_TENANT_LEN {
        return Some(format!(
            "is {} bytes; Loki and Mimir allow at most {MAX_TENANT_LEN}",
            t.len()
        ));
    }
    if t == "." || t == ".." {
        return Some("must not be \".\" or \"..\"".into());
    }
    if let Some(c) = t.chars().find(|&c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')'))
    }) {
        return Some(format!(
            "contains {c:?}; Loki and Mimir allow only letters, digits and !-_.*'()"
        ));
    }
    None
}

/// An HTTP header name we can set or strip: a lower-case token, not a pseudo-header.
fn header_problem(h: &str) -> Option<&'static str> {
    if h.is_empty() {
        return Some("must not be empty");
    }
    if !h.bytes().all(|c| is_tchar(c) && !c.is_ascii_uppercase()) {
        return Some("must be a lower-case HTTP header name (Envoy keeps names lower-case)");
    }
    if matches!(
        h,
        "host" | "content-type" | "content-length" | "te" | "transfer-encoding" | "connection"
    ) {
        return Some("names a header Envoy or OTLP needs; pick another");
    }
    None
}

const TOP_KEYS: &[&str] = &[
    "path_prefix",
    "tenant_header",
    "default_tenant",
    "identity_header",
    "accept_basic",
    "api_key_header",
    "realm",
    "tokens",
    "mode",
    "default_rate",
    "failed_auth",
    "trusted_proxies",
    "warn_before",
];
const TOKEN_KEYS: &[&str] = &[
    "id",
    "sha256",
    "token",
    "tenant",
    "signals",
    "not_before",
    "expires_at",
    "disabled",
    "rate",
    "source_cidrs",
    "mode",
];
const RATE_KEYS: &[&str] = &["requests_per_second", "bytes_per_second", "burst"];
const FAILED_AUTH_KEYS: &[&str] = &[
    "enabled",
    "max_failures",
    "window",
    "cooldown",
    "table_size",
];

/// `"enforce"` (default) or `"dry_run"`.
fn parse_mode(obj: &Map<String, Value>, path: &str, errs: &mut Errors) -> bool {
    match get_string(obj, "mode", path, errs).as_deref() {
        None | Some("enforce") => false,
        Some("dry_run") => true,
        Some(_) => {
            errs.add(path, "must be \"enforce\" or \"dry_run\"");
            false
        }
    }
}

/// A JSON number, or a string holding one: Envoy's YAML reading makes every fraction and
/// exponent, and whole numbers beyond 32 bits, strings (`0.5`, `5000000000`), and proto3's JSON
/// mapping accepts numbers as strings too. The grammar is JSON's (serde_json reads it), and
/// a string that is JSON but not a number (`"true"`, `"[1]"`) is not one.
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s.bytes().all(|c| !c.is_ascii_whitespace()) => {
            // The reader the configuration itself is parsed with: no second JSON parser.
            serde_json::from_slice::<Value>(s.as_bytes())
                .ok()
                .and_then(|n| n.as_f64())
        }
        _ => v.as_f64(),
    }
}

/// A number of at least `min` (Struct configs carry every number as a double).
/// (`min` is given as text too: formatting floats would add ~20 KB to the module.)
fn number(v: &Value, path: &str, min: (f64, &str), errs: &mut Errors) -> Option<f64> {
    match as_number(v) {
        Some(n) if n.is_finite() && n >= min.0 => Some(n),
        _ => {
            errs.add(path, format!("must be a number >= {}", min.1));
            None
        }
    }
}

/// A whole number in `min..=max`.
fn integer(v: &Value, path: &str, min: u64, max: u64, errs: &mut Errors) -> Option<u64> {
    match as_number(v) {
        Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Some(n as u64),
        _ => {
            errs.add(path, format!("must be a whole number from {min} to {max}"));
            None
        }
    }
}

/// A duration: `"90s"`, `"5m"`, `"2h"`, `"14d"`, or a number of seconds.
fn duration(v: &Value, path: &str, errs: &mut Errors) -> Option<i64> {
    let parsed = match v {
        Value::String(s) => parse_duration(s),
        Value::Number(_) => v
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n < 1e15)
            .map(|n| n as i64),
        _ => None,
    };
    if parsed.is_none() {
        errs.add(
            path,
            "must be a duration like \"90s\", \"5m\", \"2h\", \"14d\" or a number of seconds",
        );
    }
    parsed
}

fn parse_rate(v: &Value, path: &str, errs: &mut Errors) -> Option<Rate> {
    let Value::Object(obj) = v else {
        errs.add(
            path,
            format!(
                "must be an object with requests_per_second, bytes_per_second and/or burst, not {}",
                kind(v)
            ),
        );
        return None;
    };
    let before = errs.0.len();
    unknown_keys(obj, RATE_KEYS, path, errs);
    let field = |k: &str, min: (f64, &str), errs: &mut Errors| {
        obj.get(k)
            .filter(|v| !v.is_null())
            .and_then(|v| number(v, &format!("{path}.{k}"), min, errs))
    };
    let rps = field("requests_per_second", (0.001, "0.001"), errs);
    let bps = field("bytes_per_second", (1.0, "1"), errs);
    let burst = field("burst", (1.0, "1"), errs);
    if errs.0.len() == before && rps.is_none() && bps.is_none() {
        errs.add(path, "needs requests_per_second and/or bytes_per_second");
    }
    if errs.0.len() == before && burst.is_some() && rps.is_none() {
        errs.add(
            format!("{path}.burst"),
            "needs requests_per_second (burst is a number of requests)",
        );
    }
    (errs.0.len() == before).then(|| Rate {
        requests_per_second: rps,
        bytes_per_second: bps,
        burst: burst.unwrap_or_else(|| rps.map_or(1.0, |r| r.ceil().max(1.0))),
    })
}

fn parse_cidrs(v: &Value, path: &str, errs: &mut Errors) -> Vec<Cidr> {
    let Value::Array(list) = v else {
        errs.add(
            path,
            format!(
                "must be a list of CIDR ranges like \"10.0.0.0/8\", not {}",
                kind(v)
            ),
        );
        return Vec::new();
    };
    if list.is_empty() {
        errs.add(path, "must not be empty (omit it to allow every address)");
    }
    list.iter()
        .enumerate()
        .filter_map(|(i, item)| match item.as_str().map(Cidr::parse) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                errs.add(format!("{path}[{i}]"), e);
                None
            }
            None => {
                errs.add(
                    format!("{path}[{i}]"),
                    "must be a string like \"10.0.0.0/8\"",
                );
                None
            }
        })
        .collect()
}

fn parse_failed_auth(v: Option<&Value>, errs: &mut Errors) -> Option<Policy> {
    let mut p = Policy::default();
    let obj = match v {
        None | Some(Value::Null) => return Some(p),
        Some(Value::Object(o)) => o,
        Some(other) => {
            errs.add(
                "failed_auth",
                format!("must be an object, not {}", kind(other)),
            );
            return None;
        }
    };
    unknown_keys(obj, FAILED_AUTH_KEYS, "failed_auth", errs);
    let enabled = get_bool(obj, "enabled", "failed_auth.enabled", true, errs);
    if let Some(v) = obj.get("max_failures") {
        p.max_failures = integer(v, "failed_auth.max_failures", 1, 1_000_000, errs)
            .map_or(p.max_failures, |n| n as u32);
    }
    if let Some(v) = obj.get("table_size") {
        p.table_size = integer(v, "failed_auth.table_size", 1, 1_000_000, errs)
            .map_or(p.table_size, |n| n as u32);
    }
    for (key, slot) in [
        ("window", &mut p.window_secs),
        ("cooldown", &mut p.cooldown_secs),
    ] {
        if let Some(v) = obj.get(key) {
            let path = format!("failed_auth.{key}");
            match duration(v, &path, errs) {
                Some(d) if d >= 1 => *slot = d,
                Some(_) => errs.add(path, "must be at least 1 second"),
                None => {}
            }
        }
    }
    enabled.then_some(p)
}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn get_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errs: &mut Errors,
) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => {
            errs.add(path, format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

fn get_bool(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    default: bool,
    errs: &mut Errors,
) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errs.add(path, format!("must be true or false, not {}", kind(other)));
            default
        }
    }
}

fn unknown_keys(obj: &Map<String, Value>, allowed: &[&str], base: &str, errs: &mut Errors) {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            let path = if base.is_empty() {
                key.clone()
            } else {
                format!("{base}.{key}")
            };
            errs.add(
                path,
                format!("unknown key (allowed: {})", allowed.join(", ")),
            );
        }
    }
}

/// Rewrites `5.0` as `5` everywhere, as a Struct decodes it (see `structpb`).
fn integral_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                *v = crate::structpb::number(f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Parses and validates a configuration. Returns every problem found.
pub fn parse(raw: &[u8]) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());
    // JSON (a StringValue, or the CLI) or a serialized google.protobuf.Struct (Envoy).
    let value: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => match crate::structpb::decode(raw) {
            Some(v) if raw.first() == Some(&0x0a) => v,
            _ => {
                return Err(vec![ConfigError {
                    path: String::new(),
                    message: format!(
                        "configuration is neither JSON ({e}) nor a google.protobuf.Struct"
                    ),
                }]);
            }
        },
    };
    // The content hash is over the canonical JSON (sorted keys, integral numbers as integers),
    // so the same content gives the same hash whether it arrived as JSON, as YAML read by the
    // CLI, or as a Struct (whose numbers are all doubles).
    let mut value = value;
    integral_numbers(&mut value);
    let canonical = value.to_string();
    let sha256 = digest(canonical.as_bytes());
    let Value::Object(top) = value else {
        return Err(vec![ConfigError {
            path: String::new(),
            message: format!("configuration must be a JSON object, not {}", kind(&value)),
        }]);
    };
    unknown_keys(&top, TOP_KEYS, "", &mut errs);

    let path_prefix = get_string(&top, "path_prefix", "path_prefix", &mut errs)
        .unwrap_or_else(|| "/observability".into());
    if !path_prefix.is_empty()
        && (!path_prefix.starts_with('/')
            || path_prefix.ends_with('/')
            // After the leading `/` (and with no trailing one), an empty segment is a `//`.
            || path_prefix
                .split('/')
                .skip(1)
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            || !path_prefix.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'/' | b'-' | b'_' | b'.' | b'~')
            }))
    {
        errs.add(
            "path_prefix",
            "must be empty or start with \"/\", not end with \"/\", and use only letters, digits and /-_.~ without dot-segments",
        );
    }

    let header = |key: &str, default: Option<&str>, errs: &mut Errors| -> Option<String> {
        let h = get_string(&top, key, key, errs).or(default.map(str::to_owned))?;
        if let Some(p) = header_problem(&h) {
            errs.add(key, p);
        }
        Some(h)
    };
    let tenant_header =
        header("tenant_header", Some("x-scope-orgid"), &mut errs).unwrap_or_default();
    let identity_header =
        header("identity_header", Some("x-otlp-token-id"), &mut errs).unwrap_or_default();
    let api_key_header = header("api_key_header", None, &mut errs);
    if tenant_header == identity_header {
        errs.add("identity_header", "must differ from tenant_header");
    }
    if let Some(k) = &api_key_header
        && (k == "authorization" || *k == tenant_header || *k == identity_header)
    {
        errs.add(
            "api_key_header",
            "must differ from authorization, tenant_header and identity_header",
        );
    }
    for (key, h) in [
        ("tenant_header", &tenant_header),
        ("identity_header", &identity_header),
    ] {
        if h == "authorization" || h.starts_with(':') {
            errs.add(key, "must not be authorization or a pseudo-header");
        }
    }

    let default_tenant = get_string(&top, "default_tenant", "default_tenant", &mut errs);
    if let Some(p) = default_tenant.as_deref().and_then(tenant_problem) {
        errs.add("default_tenant", p);
    }
    let accept_basic = get_bool(&top, "accept_basic", "accept_basic", true, &mut errs);
    let realm = get_string(&top, "realm", "realm", &mut errs).unwrap_or_else(|| "otlp".into());
    if realm.is_empty()
        || realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
    {
        errs.add(
            "realm",
            "must be non-empty printable ASCII without quotes or backslashes",
        );
    }

    let dry_run = parse_mode(&top, "mode", &mut errs);
    let default_rate = top
        .get("default_rate")
        .filter(|v| !v.is_null())
        .and_then(|v| parse_rate(v, "default_rate", &mut errs));
    let failed_auth = parse_failed_auth(top.get("failed_auth"), &mut errs);
    let proxies = top.get("trusted_proxies").filter(|v| !v.is_null());
    let trusted_proxies_set = proxies.is_some();
    let trusted_proxies = match proxies {
        // `[]`: no proxy is trusted, on purpose (and no warning about it).
        Some(Value::Array(list)) if list.is_empty() => Vec::new(),
        Some(v) => parse_cidrs(v, "trusted_proxies", &mut errs),
        None => Vec::new(),
    };
    let warn_before_secs = top
        .get("warn_before")
        .filter(|v| !v.is_null())
        .and_then(|v| duration(v, "warn_before", &mut errs))
        .unwrap_or(14 * 86_400);

    let mut tokens = Vec::new();
    let mut by_digest: HashMap<[u8; 32], usize> = HashMap::new();
    // Token id → entry index (duplicate ids are refused; the map stays for `has_id`).
    let mut ids: HashMap<String, usize> = HashMap::new();
    match top.get("tokens") {
        None => errs.add("tokens", "is required (a list of token entries)"),
        Some(Value::Array(list)) => {
            ids.reserve(list.len());
            by_digest.reserve(list.len());
            tokens.reserve(list.len());
            for (i, entry) in list.iter().enumerate() {
                let Some(t) =
                    parse_token(entry, i, default_tenant.as_deref(), default_rate, &mut errs)
                else {
                    continue;
                };
                if let Some(first) = ids.insert(t.id.clone(), i) {
                    errs.add(
                        format!("tokens[{i}].id"),
                        format!("duplicate id {:?} (also tokens[{first}])", t.id),
                    );
                    continue;
                }
                if let Some(&first) = by_digest.get(&t.digest) {
                    let other = tokens.get(first).map_or("", |o: &Token| o.id.as_str());
                    errs.add(
                        format!("tokens[{i}]"),
                        format!("same token as {other:?}: every token must be distinct"),
                    );
                    continue;
                }
                by_digest.insert(t.digest, tokens.len());
                tokens.push(t);
            }
        }
        Some(other) => errs.add("tokens", format!("must be a list, not {}", kind(other))),
    }

    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    Ok(Config {
        path_prefix,
        tenant_header,
        default_tenant,
        identity_header,
        accept_basic,
        api_key_header,
        tokens,
        dry_run,
        failed_auth,
        trusted_proxies,
        trusted_proxies_set,
        warn_before_secs,
        sha256_hex: hex(&sha256),
        hash48: u64::from_be_bytes([
            0, 0, sha256[0], sha256[1], sha256[2], sha256[3], sha256[4], sha256[5],
        ]),
        by_digest,
        by_id: ids,
        realm,
    })
}

fn parse_token(
    entry: &Value,
    i: usize,
    default_tenant: Option<&str>,
    default_rate: Option<Rate>,
    errs: &mut Errors,
) -> Option<Token> {
    let base = format!("tokens[{i}]");
    let Value::Object(obj) = entry else {
        errs.add(&base, format!("must be an object, not {}", kind(entry)));
        return None;
    };
    let before = errs.0.len();
    unknown_keys(obj, TOKEN_KEYS, &base, errs);
    let p = |k: &str| format!("{base}.{k}");

    let id = get_string(obj, "id", &p("id"), errs);
    match &id {
        None if !obj.contains_key("id") => errs.add(p("id"), "is required"),
        Some(id) if !valid_id(id) => errs.add(
            p("id"),
            "must be 1-64 characters of letters, digits, - and _ starting with a letter or digit (it appears in metric names and logs)",
        ),
        _ => {}
    }

    let sha = get_string(obj, "sha256", &p("sha256"), errs);
    let plain = get_string(obj, "token", &p("token"), errs);
    let digest = match (sha, plain) {
        (Some(_), Some(_)) => {
            errs.add(&base, "has both sha256 and token; keep only sha256");
            None
        }
        (None, None) => {
            if !obj.contains_key("sha256") && !obj.contains_key("token") {
                errs.add(
                    &base,
                    "needs sha256 (the token's digest, from `otlp-gate hash`) or token",
                );
            }
            None
        }
        (Some(h), None) => {
            let d = parse_hex_digest(&h);
            if d.is_none() {
                errs.add(
                    p("sha256"),
                    "must be exactly 64 lower-case hex characters (a SHA-256 digest)",
                );
            }
            d
        }
        (None, Some(t)) => {
            if !crate::credentials::is_b64token(t.as_bytes()) {
                errs.add(p("token"), "must use only letters, digits and -._~+/ (then optional =), so clients can send it as a Bearer token");
            } else if let Err(bits) = token_strength(t.as_bytes()) {
                errs.add(
                    p("token"),
                    format!("is too easy to guess: about {bits} bits, {MIN_TOKEN_BITS} needed (README \"Security\"); use `otlp-gate token new`"),
                );
            }
            Some(self::digest(t.as_bytes()))
        }
    };
    let plaintext = obj.get("token").is_some_and(Value::is_string);

    let tenant = get_string(obj, "tenant", &p("tenant"), errs);
    if let Some(problem) = tenant.as_deref().and_then(tenant_problem) {
        errs.add(p("tenant"), problem);
    }

    let mut signals = 0u8;
    match obj.get("signals") {
        None | Some(Value::Null) => signals = 0b111,
        Some(Value::Array(list)) => {
            if list.is_empty() {
                errs.add(
                    p("signals"),
                    "must not be empty (use \"disabled\": true to turn a token off)",
                );
            }
            for (j, s) in list.iter().enumerate() {
                match s.as_str().and_then(Signal::parse) {
                    Some(sig) if signals & sig.bit() != 0 => {
                        errs.add(format!("{base}.signals[{j}]"), "is listed twice")
                    }
                    Some(sig) => signals |= sig.bit(),
                    None => errs.add(
                        format!("{base}.signals[{j}]"),
                        "must be \"logs\", \"metrics\" or \"traces\"",
                    ),
                }
            }
        }
        Some(other) => errs.add(p("signals"), format!("must be a list, not {}", kind(other))),
    }

    let mut time = |key: &str| -> Option<i64> {
        let s = get_string(obj, key, &p(key), errs)?;
        match parse_rfc3339(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                errs.add(p(key), e);
                None
            }
        }
    };
    let not_before = time("not_before");
    let expires_at = time("expires_at");
    if let (Some(nb), Some(exp)) = (not_before, expires_at)
        && nb >= exp
    {
        errs.add(p("expires_at"), "must be later than not_before");
    }
    let disabled = get_bool(obj, "disabled", &p("disabled"), false, errs);
    let rate = match obj.get("rate").filter(|v| !v.is_null()) {
        Some(v) => parse_rate(v, &p("rate"), errs),
        None => default_rate,
    };
    let source_cidrs = obj
        .get("source_cidrs")
        .filter(|v| !v.is_null())
        .map(|v| parse_cidrs(v, &p("source_cidrs"), errs))
        .unwrap_or_default();
    let dry_run = parse_mode(obj, &p("mode"), errs);

    if errs.0.len() != before {
        return None;
    }
    Some(Token {
        id: id?,
        digest: digest?,
        tenant: tenant.or_else(|| default_tenant.map(str::to_owned)),
        signals,
        not_before,
        expires_at,
        disabled,
        plaintext,
        rate,
        source_cidrs,
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn errors_of(v: Value) -> Vec<String> {
        match parse(v.to_string().as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_apply() {
        let c = parse(br#"{"tokens":[{"id":"a","sha256":"0000000000000000000000000000000000000000000000000000000000000001"}]}"#).unwrap();
        assert_eq!(c.path_prefix, "/observability");
        assert_eq!(c.tenant_header, "x-scope-orgid");
        assert_eq!(c.identity_header, "x-otlp-token-id");
        assert!(c.accept_basic);
        assert_eq!(c.api_key_header, None);
        assert_eq!(c.realm, "otlp");
        assert_eq!(c.tokens[0].signals, 0b111);
        assert_eq!(c.tokens[0].tenant, None);
        assert!(!c.tokens[0].disabled);
        assert_eq!(c.sha256_hex.len(), 64);
        // The config-hash gauge: the first 12 hex digits of config_sha256, exact as a float.
        assert_eq!(
            c.hash48,
            u64::from_str_radix(&c.sha256_hex[..12], 16).unwrap()
        );
        assert!(c.hash48 < 1 << 48);
    }

    #[test]
    fn default_tenant_fills_in() {
        let c = parse(json!({"default_tenant":"shared","tokens":[{"id":"a","sha256":D1},{"id":"b","sha256":D1.replace('1', "2"),"tenant":"own"}]}).to_string().as_bytes()).unwrap();
        assert_eq!(c.tokens[0].tenant.as_deref(), Some("shared"));
        assert_eq!(c.tokens[1].tenant.as_deref(), Some("own"));
    }

    #[test]
    fn lookup_is_by_digest() {
        let c = parse(
            json!({"tokens":[{"id":"p","token":"plaintext-Tq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1-0001"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            c.find(&digest(b"plaintext-Tq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1-0001"))
                .map(|(_, t)| t.id.as_str()),
            Some("p")
        );
        assert!(
            c.find(&digest(b"plaintext-Tq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1-0002"))
                .is_none()
        );
        // Plaintext, and trusted_proxies unset while failed-auth throttling is on.
        assert_eq!(c.warnings().len(), 2);
        assert!(c.warnings()[1].starts_with("trusted_proxies is not set"));
        assert!(!c.warnings()[0].contains("plaintext-Tq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1-0001"));
    }

    #[test]
    fn error_table() {
        let cases: Vec<(Value, &[&str])> = vec![
            (json!([]), &["must be a JSON object"]),
            (json!({}), &["tokens: is required"]),
            (json!({"tokens": {}}), &["tokens: must be a list"]),
            (json!({"tokens": [], "extra": 1}), &["extra: unknown key"]),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"colour":"red"}]}),
                &["tokens[0].colour: unknown key"],
            ),
            (
                json!({"tokens": [{"sha256":D1}]}),
                &["tokens[0].id: is required"],
            ),
            (
                json!({"tokens": [{"id":"a b","sha256":D1}]}),
                &["tokens[0].id: must be 1-64"],
            ),
            (
                json!({"tokens": [{"id":"a"}]}),
                &["tokens[0]: needs sha256"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"token":"abcdefghijklmnopq"}]}),
                &["tokens[0]: has both"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":"XYZ"}]}),
                &["tokens[0].sha256: must be exactly 64"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1.to_uppercase().replace('0', "A")}]}),
                &["tokens[0].sha256: must be exactly 64"],
            ),
            (
                json!({"tokens": [{"id":"a","token":"short"}]}),
                &["tokens[0].token: is too easy to guess: about 11 bits"],
            ),
            (
                json!({"tokens": [{"id":"a","token":"has spaces in it ok"}]}),
                &["tokens[0].token: must use only"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1},{"id":"a","sha256":D1.replace('1',"2")}]}),
                &["tokens[1].id: duplicate id \"a\""],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1},{"id":"b","sha256":D1}]}),
                &["tokens[1]: same token as \"a\""],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"signals":["spans"]}]}),
                &["tokens[0].signals[0]: must be \"logs\""],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"signals":[]}]}),
                &["tokens[0].signals: must not be empty"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"signals":["logs","logs"]}]}),
                &["tokens[0].signals[1]: is listed twice"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"signals":"logs"}]}),
                &["tokens[0].signals: must be a list"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"expires_at":"tomorrow"}]}),
                &["tokens[0].expires_at: \"tomorrow\" is not an RFC 3339"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"not_before":"2027-01-01T00:00:00Z","expires_at":"2026-01-01T00:00:00Z"}]}),
                &["tokens[0].expires_at: must be later"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"tenant":"a|b"}]}),
                &["tokens[0].tenant: contains '|'"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"tenant":".."}]}),
                &["tokens[0].tenant: must not be \".\""],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"tenant":"x".repeat(151)}]}),
                &["tokens[0].tenant: is 151 bytes"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"tenant":""}]}),
                &["tokens[0].tenant: must not be empty"],
            ),
            (
                json!({"tokens": [{"id":"a","sha256":D1,"disabled":"yes"}]}),
                &["tokens[0].disabled: must be true or false"],
            ),
            (
                json!({"tokens": [], "default_tenant": "a b"}),
                &["default_tenant: contains ' '"],
            ),
            (
                json!({"tokens": [], "path_prefix": "observability"}),
                &["path_prefix: must be empty or start"],
            ),
            (
                json!({"tokens": [], "path_prefix": "/obs/"}),
                &["path_prefix: must be empty or start"],
            ),
            (
                json!({"tokens": [], "path_prefix": "/a/../b"}),
                &["path_prefix: must be empty or start"],
            ),
            (
                json!({"tokens": [], "path_prefix": "/a//b"}),
                &["path_prefix: must be empty or start"],
            ),
            (
                json!({"tokens": [], "path_prefix": "//a"}),
                &["path_prefix: must be empty or start"],
            ),
            (
                json!({"tokens": [], "tenant_header": "X-Scope-OrgID"}),
                &["tenant_header: must be a lower-case"],
            ),
            (
                json!({"tokens": [], "identity_header": "x-scope-orgid"}),
                &["identity_header: must differ"],
            ),
            (
                json!({"tokens": [], "api_key_header": "authorization"}),
                &["api_key_header: must differ"],
            ),
            (
                json!({"tokens": [], "accept_basic": "no"}),
                &["accept_basic: must be true or false"],
            ),
            (
                json!({"tokens": [], "realm": "a\"b"}),
                &["realm: must be non-empty"],
            ),
            (
                json!({"tokens": [], "tenant_header": 5}),
                &["tenant_header: must be a string"],
            ),
            // Several problems are all reported.
            (
                json!({"tokens": [{"id":"a","sha256":"x"},{"id":"b","token":"short"}], "bogus": true}),
                &["bogus: unknown key", "tokens[0].sha256", "tokens[1].token"],
            ),
        ];
        for (cfg, wants) in cases {
            let errs = errors_of(cfg.clone());
            assert!(!errs.is_empty(), "accepted: {cfg}");
            for want in wants {
                assert!(
                    errs.iter().any(|e| e.contains(want)),
                    "{cfg}: wanted {want:?} in {errs:?}"
                );
            }
        }
    }

    #[test]
    fn plaintext_tokens_need_128_bits() {
        // (token, strong, estimate when weak): length x log2(distinct characters).
        let table: &[(&str, Option<u32>)] = &[
            ("short", Some(11)),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                Some(0),
            ),
            ("plaintext-allowed-but-warned", Some(108)),
            ("abcdefghijklmnop", Some(64)),
            // 32 hex digits, all 16 used: exactly 2^128.
            ("0123456789abcdef0123456789abcdef", None),
            ("0123456789abcde00123456789abcde0", Some(124)),
            ("plain-Qx7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5Gs0", None),
        ];
        for (token, weak) in table {
            assert_eq!(token_strength(token.as_bytes()).err(), *weak, "{token}");
        }
        let errs =
            errors_of(json!({"tokens": [{"id":"a","token":"plaintext-allowed-but-warned"}]}));
        assert_eq!(
            errs,
            vec![
                "tokens[0].token: is too easy to guess: about 108 bits, 128 needed (README \"Security\"); use `otlp-gate token new`"
            ]
        );
        // `[]` trusts no proxy on purpose: no warning about it.
        let none = parse(br#"{"trusted_proxies": [], "tokens": []}"#).unwrap();
        assert!(none.trusted_proxies.is_empty() && none.warnings().is_empty());
        let unset = parse(br#"{"failed_auth": {"enabled": false}, "tokens": []}"#).unwrap();
        assert!(unset.warnings().is_empty(), "nothing is judged by address");
    }

    #[test]
    fn numbers_may_be_strings_as_envoy_makes_them() {
        let c = parse(br#"{"default_rate": {"requests_per_second": "0.5", "bytes_per_second": "5000000000"}, "failed_auth": {"max_failures": "7"}, "tokens": []}"#).unwrap();
        let rate = c.tokens.first().and_then(|t| t.rate);
        assert!(rate.is_none());
        let d = parse(br#"{"default_rate": {"requests_per_second": 0.5, "bytes_per_second": 5000000000}, "failed_auth": {"max_failures": 7}, "tokens": []}"#).unwrap();
        assert_ne!(
            c.sha256_hex, d.sha256_hex,
            "the hash is over what was written"
        );
        assert_eq!(c.failed_auth.map(|p| p.max_failures), Some(7));
        for bad in [
            r#""0x10""#,
            r#"" 5""#,
            r#"".5""#,
            r#""1e400""#,
            r#""NaN""#,
            r#""five""#,
        ] {
            let errs = errors_of(
                serde_json::from_str(&format!(
                    r#"{{"default_rate": {{"requests_per_second": {bad}}}, "tokens": []}}"#
                ))
                .unwrap(),
            );
            assert!(
                errs.iter().any(|e| e.contains("must be a number")),
                "{bad}: {errs:?}"
            );
        }
    }

    #[test]
    fn errors_never_echo_plaintext_tokens() {
        let errs = errors_of(
            json!({"tokens": [{"id":"a","token":"secret-but-x y z"},{"id":"b","token":"tiny-secret"}]}),
        );
        assert_eq!(errs.len(), 2);
        for e in errs {
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn not_json_is_one_clear_error() {
        let e = parse(b"not json").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].message.starts_with("configuration is neither JSON"));
    }

    #[test]
    fn content_hash_ignores_form_but_not_content() {
        use crate::structpb::{Kind, ListValue, PbValue, Struct};
        use prost::Message as _;
        let hash = |raw: &[u8]| parse(raw).unwrap().sha256_hex;
        let a = hash(
            br#"{"tokens":[{"id":"a","sha256":"0000000000000000000000000000000000000000000000000000000000000001"}],"default_rate":{"requests_per_second":50}}"#,
        );
        // Key order, whitespace and 50 vs 50.0 are form, not content.
        let b = hash(
            br#"{ "default_rate": {"requests_per_second": 50.0},
                  "tokens": [{"sha256": "0000000000000000000000000000000000000000000000000000000000000001", "id": "a"}] }"#,
        );
        assert_eq!(a, b);
        // The same content as Envoy hands it over: a serialized google.protobuf.Struct.
        let v = |k: Kind| PbValue { kind: Some(k) };
        let obj = |pairs: Vec<(&str, PbValue)>| Struct {
            fields: pairs.into_iter().map(|(k, x)| (k.to_owned(), x)).collect(),
        };
        let token = obj(vec![
            ("id", v(Kind::String("a".into()))),
            ("sha256", v(Kind::String(D1.into()))),
        ]);
        let st = obj(vec![
            (
                "tokens",
                v(Kind::List(ListValue {
                    values: vec![v(Kind::Struct(token))],
                })),
            ),
            (
                "default_rate",
                v(Kind::Struct(obj(vec![(
                    "requests_per_second",
                    v(Kind::Number(50.0)),
                )]))),
            ),
        ]);
        assert_eq!(hash(&st.encode_to_vec()), a);
        let c = hash(
            br#"{"tokens":[{"id":"a","sha256":"0000000000000000000000000000000000000000000000000000000000000001"}],"default_rate":{"requests_per_second":50.5}}"#,
        );
        assert_ne!(a, c);
    }

    #[test]
    fn hex_round_trips() {
        let a = digest(b"x");
        assert_eq!(parse_hex_digest(&hex(&a)), Some(a));
    }
}
