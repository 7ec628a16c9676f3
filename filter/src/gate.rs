//! The decision for one request, as a pure function of the configuration, the request headers
//! and the clock. The proxy-wasm adapter only reads headers in and applies the result.

use crate::config::{Config, Token, digest};
use crate::credentials::{self, Presented, Sources};
use crate::metrics::Outcome;
use crate::reply::{self, Refusal, Reply};
use crate::route::{self, Encoding, Route, Signal};

/// Header changes for a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// New `:path`, or `None` to keep it (gRPC).
    pub path: Option<String>,
    /// Every value of these headers is removed before `set` is applied.
    pub remove: Vec<String>,
    /// Headers set from the token (tenant, identity).
    pub set: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Forward(Forward),
    Reply(Reply),
}

/// What to do with a request and how to count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// `None` for requests that are not counted (healthz).
    pub outcome: Option<Outcome>,
    pub signal: Option<Signal>,
    /// Index into `Config::tokens` of the token that was presented and recognised.
    pub token: Option<usize>,
    /// Short reason for logs (never contains a credential).
    pub reason: &'static str,
}

/// Decides what happens to a request. `headers` are the request headers as Envoy holds them
/// (lower-case names, pseudo-headers included, one entry per value); `now` is Unix seconds.
pub fn decide<'h, H>(cfg: &Config, headers: H, now: i64, generation: u64) -> Decision
where
    H: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
{
    let mut method: &[u8] = b"";
    let mut path: &[u8] = b"";
    let mut content_type = None;
    for (name, value) in headers.clone() {
        match name {
            ":method" => method = value,
            ":path" => path = value,
            "content-type" => content_type = Some(value),
            _ => {}
        }
    }
    let encoding = Encoding::from_content_type(content_type);
    let refuse = |refusal: Refusal,
                  outcome: Outcome,
                  signal: Option<Signal>,
                  token: Option<usize>,
                  reason| Decision {
        action: Action::Reply(refusal.reply(encoding, &cfg.realm)),
        outcome: Some(outcome),
        signal,
        token,
        reason,
    };
    // Non-UTF-8 method or path cannot be an OTLP endpoint.
    let (Ok(method), Ok(path)) = (std::str::from_utf8(method), std::str::from_utf8(path)) else {
        return refuse(
            Refusal::NotFound,
            Outcome::NotFound,
            None,
            None,
            "not an OTLP path",
        );
    };

    let (signal, upstream_path) =
        match route::route(&cfg.path_prefix, method, path, encoding == Encoding::Grpc) {
            Route::Http {
                signal,
                upstream_path,
            } => (signal, Some(upstream_path)),
            Route::Grpc { signal } => (signal, None),
            Route::Healthz => {
                return Decision {
                    action: Action::Reply(reply::healthz(
                        generation,
                        &cfg.sha256_hex,
                        cfg.tokens.len(),
                    )),
                    outcome: None,
                    signal: None,
                    token: None,
                    reason: "healthz",
                };
            }
            Route::MethodNotAllowed { signal, allow } => {
                return refuse(
                    Refusal::MethodNotAllowed(allow),
                    Outcome::MethodNotAllowed,
                    signal,
                    None,
                    "method not allowed",
                );
            }
            Route::NotFound => {
                return refuse(
                    Refusal::NotFound,
                    Outcome::NotFound,
                    None,
                    None,
                    "not an OTLP path",
                );
            }
        };

    let sources = Sources {
        accept_basic: cfg.accept_basic,
        api_key_header: cfg.api_key_header.as_deref(),
    };
    let presented = match credentials::extract(headers, sources) {
        Presented::Missing => {
            return refuse(
                Refusal::Missing,
                Outcome::Missing,
                Some(signal),
                None,
                "no credentials",
            );
        }
        Presented::Malformed(why) => {
            return refuse(
                Refusal::Malformed(why),
                Outcome::Malformed,
                Some(signal),
                None,
                why,
            );
        }
        Presented::Token(t) => t,
    };
    let Some((index, token)) = cfg.find(&digest(&presented)) else {
        return refuse(
            Refusal::InvalidToken("unknown token"),
            Outcome::Unknown,
            Some(signal),
            None,
            "unknown token",
        );
    };
    let index = Some(index);
    if let Some((outcome, why)) = check_token(token, now) {
        return refuse(
            Refusal::InvalidToken(why),
            outcome,
            Some(signal),
            index,
            why,
        );
    }
    if !token.allows(signal) {
        return refuse(
            Refusal::Scope(signal),
            Outcome::ForbiddenSignal,
            Some(signal),
            index,
            "signal not allowed",
        );
    }

    let mut remove = vec![
        "authorization".to_owned(),
        cfg.tenant_header.clone(),
        cfg.identity_header.clone(),
    ];
    if let Some(k) = &cfg.api_key_header {
        remove.push(k.clone());
    }
    let mut set = Vec::with_capacity(2);
    if let Some(tenant) = &token.tenant {
        set.push((cfg.tenant_header.clone(), tenant.clone()));
    }
    set.push((cfg.identity_header.clone(), token.id.clone()));
    Decision {
        action: Action::Forward(Forward {
            path: upstream_path,
            remove,
            set,
        }),
        outcome: Some(Outcome::Accepted),
        signal: Some(signal),
        token: index,
        reason: "accepted",
    }
}

/// Disabled and validity-window checks, in that order.
fn check_token(token: &Token, now: i64) -> Option<(Outcome, &'static str)> {
    if token.disabled {
        return Some((Outcome::Disabled, "token disabled"));
    }
    if token.not_before.is_some_and(|nb| now < nb) {
        return Some((Outcome::Expired, "token not yet valid"));
    }
    if token.expires_at.is_some_and(|exp| now >= exp) {
        return Some((Outcome::Expired, "token expired"));
    }
    None
}
