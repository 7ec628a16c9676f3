//! Why a request is refused: the one vocabulary. A [`Refusal`] is written once, where the gate
//! decides it, and everything reported about it derives from it here: the `outcome` label it
//! is counted under, the reply the client gets (HTTP status, gRPC code, message, challenge,
//! Retry-After; encoded by `reply.rs`), the reason logged, and the details string for Envoy's
//! `%RESPONSE_CODE_DETAILS%`. None of them ever contains the credential.

use crate::metrics::Outcome;
use crate::route::Signal;

/// gRPC status codes used here (also the `google.rpc.Code` values in Status bodies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Unauthenticated = 16,
}

/// What every local reply's details start with (see [`Refusal::details`]).
pub const DETAILS_PREFIX: &str = "otlp_gate.";

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not an OTLP endpoint (nor healthz), or a method or path that is not UTF-8: 404.
    NotFound,
    /// An OTLP endpoint asked with another method: 405 with `Allow`.
    MethodNotAllowed(&'static str),
    /// An OTLP endpoint sent a content type OTLP does not define for it (gRPC-Web, text, none,
    /// or a gRPC one on an OTLP/HTTP path...): 415, as OTLP/HTTP servers answer.
    UnsupportedMediaType,
    /// No credential: 401 with a bare challenge (RFC 6750 §3.1: no error code).
    Missing,
    /// An Authorization scheme the gate does not accept (says which): no authentication
    /// information either (RFC 6750 §3.1), so 401 with the bare challenge, counted as `missing`.
    Unsupported(&'static str),
    /// Credential headers that cannot be one valid credential (says why): 400 `invalid_request`.
    Malformed(&'static str),
    /// A token no configured one matches: 401 `invalid_token`.
    Unknown,
    /// A disabled token: 401 `invalid_token`.
    Disabled,
    /// A token before its `not_before`: 401 `invalid_token`, counted as `expired`.
    NotYetValid,
    /// A token at or past its `expires_at`: 401 `invalid_token`.
    Expired,
    /// A valid token without this signal: 403 `insufficient_scope`.
    ForbiddenSignal(Signal),
    /// A valid token from an address outside its `source_cidrs`: 403.
    ForbiddenSource,
    /// The token's rate limit: 429 with Retry-After and RetryInfo.
    RateLimited { retry_after: u64 },
    /// The client address is cooling down after repeated failed authentications: 429.
    AuthThrottled { retry_after: u64 },
}

impl Refusal {
    /// The `outcome` label it is counted under.
    pub fn outcome(self) -> Outcome {
        match self {
            Refusal::NotFound => Outcome::NotFound,
            Refusal::MethodNotAllowed(_) => Outcome::MethodNotAllowed,
            Refusal::UnsupportedMediaType => Outcome::UnsupportedMediaType,
            Refusal::Missing | Refusal::Unsupported(_) => Outcome::Missing,
            Refusal::Malformed(_) => Outcome::Malformed,
            Refusal::Unknown => Outcome::Unknown,
            Refusal::Disabled => Outcome::Disabled,
            Refusal::NotYetValid | Refusal::Expired => Outcome::Expired,
            Refusal::ForbiddenSignal(_) => Outcome::ForbiddenSignal,
            Refusal::ForbiddenSource => Outcome::ForbiddenSource,
            Refusal::RateLimited { .. } => Outcome::RateLimited,
            Refusal::AuthThrottled { .. } => Outcome::AuthThrottled,
        }
    }

    /// A failed authentication, which counts against the client address (`throttle.rs`); not a
    /// valid token used beyond its rights, nor a request for something that is not there.
    pub fn failed_auth(self) -> bool {
        matches!(
            self,
            Refusal::Missing
                | Refusal::Unsupported(_)
                | Refusal::Malformed(_)
                | Refusal::Unknown
                | Refusal::Disabled
                | Refusal::NotYetValid
                | Refusal::Expired
        )
    }

    /// The short reason logged with it.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotFound => "not an OTLP path",
            Refusal::MethodNotAllowed(_) => "method not allowed",
            Refusal::UnsupportedMediaType => "unsupported media type",
            Refusal::Missing => "no credentials",
            Refusal::Unsupported(why) | Refusal::Malformed(why) => why,
            Refusal::Unknown => "unknown token",
            Refusal::Disabled => "token disabled",
            Refusal::NotYetValid => "token not yet valid",
            Refusal::Expired => "token expired",
            Refusal::ForbiddenSignal(_) => "signal not allowed",
            Refusal::ForbiddenSource => "source address not allowed",
            Refusal::RateLimited { .. } => "rate limit exceeded",
            Refusal::AuthThrottled { .. } => "too many failed authentications from this address",
        }
    }

    /// The local reply's details after [`DETAILS_PREFIX`], as Envoy's access log shows them
    /// (`%RESPONSE_CODE_DETAILS%`, e.g. `otlp_gate.expired`): one word without spaces, the
    /// outcome label, finer where the label joins two reasons. (The labels are the metrics'
    /// strings: the module carries each once.)
    pub fn details(self) -> &'static str {
        match self {
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Unsupported(_) => "unsupported_scheme",
            _ => self.outcome().as_str(),
        }
    }

    /// The message the client reads (`google.rpc.Status.message`, `grpc-message`).
    pub fn message(self) -> String {
        match self {
            Refusal::NotFound => {
                "not found: OTLP/HTTP endpoints are POST <prefix>/v1/{logs,metrics,traces}".into()
            }
            Refusal::MethodNotAllowed(allow) => format!("method not allowed: use {allow}"),
            Refusal::UnsupportedMediaType => {
                "unsupported media type: use application/x-protobuf or application/json".into()
            }
            Refusal::Missing => "missing credentials: send Authorization: Bearer <token>".into(),
            Refusal::Unsupported(why) => format!("{why}: send Authorization: Bearer <token>"),
            Refusal::Malformed(why) => format!("invalid request: {why}"),
            Refusal::Unknown | Refusal::Disabled | Refusal::NotYetValid | Refusal::Expired => {
                format!("invalid token: {}", self.reason())
            }
            Refusal::ForbiddenSignal(s) => format!("token is not allowed to send {}", s.as_str()),
            Refusal::ForbiddenSource => "token is not allowed from this client address".into(),
            Refusal::RateLimited { retry_after } => {
                format!("rate limit exceeded for this token; retry after {retry_after}s")
            }
            Refusal::AuthThrottled { retry_after } => format!(
                "too many failed authentications from this address; retry after {retry_after}s"
            ),
        }
    }

    /// The HTTP status of the reply, and the gRPC status a gRPC client gets instead.
    pub fn status(self) -> (u16, GrpcCode) {
        match self {
            Refusal::NotFound => (404, GrpcCode::Unimplemented),
            Refusal::MethodNotAllowed(_) => (405, GrpcCode::Unimplemented),
            Refusal::UnsupportedMediaType => (415, GrpcCode::InvalidArgument),
            Refusal::Malformed(_) => (400, GrpcCode::InvalidArgument),
            Refusal::Missing
            | Refusal::Unsupported(_)
            | Refusal::Unknown
            | Refusal::Disabled
            | Refusal::NotYetValid
            | Refusal::Expired => (401, GrpcCode::Unauthenticated),
            Refusal::ForbiddenSignal(_) | Refusal::ForbiddenSource => {
                (403, GrpcCode::PermissionDenied)
            }
            Refusal::RateLimited { .. } | Refusal::AuthThrottled { .. } => {
                (429, GrpcCode::ResourceExhausted)
            }
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge of an HTTP reply, if it carries one.
    pub fn challenge(self, realm: &str) -> Option<String> {
        match self {
            Refusal::Missing | Refusal::Unsupported(_) => Some(format!("Bearer realm=\"{realm}\"")),
            Refusal::Malformed(_) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\""
            )),
            Refusal::Unknown | Refusal::Disabled | Refusal::NotYetValid | Refusal::Expired => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\""))
            }
            Refusal::ForbiddenSignal(s) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                s.as_str()
            )),
            Refusal::ForbiddenSource => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\""
            )),
            Refusal::NotFound
            | Refusal::MethodNotAllowed(_)
            | Refusal::UnsupportedMediaType
            | Refusal::RateLimited { .. }
            | Refusal::AuthThrottled { .. } => None,
        }
    }

    /// Whole seconds the client should wait before retrying, for a 429.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after } | Refusal::AuthThrottled { retry_after } => {
                Some(retry_after)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of refusal once.
    const ALL: [Refusal; 14] = [
        Refusal::NotFound,
        Refusal::MethodNotAllowed("POST"),
        Refusal::UnsupportedMediaType,
        Refusal::Missing,
        Refusal::Unsupported("unsupported Authorization scheme"),
        Refusal::Malformed("empty Authorization header"),
        Refusal::Unknown,
        Refusal::Disabled,
        Refusal::NotYetValid,
        Refusal::Expired,
        Refusal::ForbiddenSignal(Signal::Traces),
        Refusal::ForbiddenSource,
        Refusal::RateLimited { retry_after: 2 },
        Refusal::AuthThrottled { retry_after: 300 },
    ];

    #[test]
    fn vocabulary_table() {
        // (refusal, outcome label, log reason, HTTP status, failed authentication)
        let table = [
            ("not_found", "not an OTLP path", 404, false),
            ("method_not_allowed", "method not allowed", 405, false),
            (
                "unsupported_media_type",
                "unsupported media type",
                415,
                false,
            ),
            ("missing", "no credentials", 401, true),
            ("missing", "unsupported Authorization scheme", 401, true),
            ("malformed", "empty Authorization header", 400, true),
            ("unknown", "unknown token", 401, true),
            ("disabled", "token disabled", 401, true),
            ("expired", "token not yet valid", 401, true),
            ("expired", "token expired", 401, true),
            ("forbidden_signal", "signal not allowed", 403, false),
            ("forbidden_source", "source address not allowed", 403, false),
            ("rate_limited", "rate limit exceeded", 429, false),
            (
                "auth_throttled",
                "too many failed authentications from this address",
                429,
                false,
            ),
        ];
        for (r, (outcome, reason, status, failed_auth)) in ALL.into_iter().zip(table) {
            assert_eq!(r.outcome().as_str(), outcome, "{r:?}");
            assert_eq!(r.reason(), reason, "{r:?}");
            assert_eq!(r.status().0, status, "{r:?}");
            assert_eq!(r.failed_auth(), failed_auth, "{r:?}");
            assert_eq!(r.retry_after().is_some(), status == 429, "{r:?}");
        }
    }

    #[test]
    fn details_are_distinct_single_words_naming_the_outcome() {
        let mut seen = std::collections::HashSet::new();
        for r in ALL {
            let d = format!("{DETAILS_PREFIX}{}", r.details());
            assert!(seen.insert(d.clone()), "{d} twice");
            assert!(
                d.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
                "{d}: Envoy's details are one token"
            );
            let word = d.strip_prefix(DETAILS_PREFIX).unwrap();
            assert!(
                word == r.outcome().as_str()
                    || matches!(r, Refusal::NotYetValid | Refusal::Unsupported(_)),
                "{d} for {r:?}"
            );
        }
    }

    #[test]
    fn invalid_token_messages_say_which() {
        assert_eq!(Refusal::Unknown.message(), "invalid token: unknown token");
        assert_eq!(Refusal::Disabled.message(), "invalid token: token disabled");
        assert_eq!(
            Refusal::NotYetValid.message(),
            "invalid token: token not yet valid"
        );
        assert_eq!(Refusal::Expired.message(), "invalid token: token expired");
    }
}
