//! Local replies, encoded the way the client spoke: gRPC statuses for gRPC clients (never an
//! HTTP error page), and `google.rpc.Status` bodies in protobuf or JSON for OTLP/HTTP, as the
//! OTLP specification requires. RFC 6750 `WWW-Authenticate` challenges on 400/401/403.

use std::rc::Rc;

use prost::Message as _;

use crate::refusal::{DETAILS_PREFIX, GrpcCode, Refusal};
use crate::route::Encoding;

/// `google.rpc.Status` (google/rpc/status.proto); `details` is never sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: tells OTLP exporters how long to back off before retrying.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// A reply the filter sends instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status (Envoy sends 200 with `grpc-status` for gRPC replies).
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Set for gRPC clients: the status code and `grpc-message`.
    pub grpc: Option<(GrpcCode, String)>,
    /// `headers` serialized as the host reads a header map (`headers::serialize`), once: a
    /// canned reply is then sent without building anything.
    pub wire_headers: Vec<u8>,
    /// What Envoy's access log shows as `%RESPONSE_CODE_DETAILS%` (`otlp_gate.<outcome>` for a
    /// refusal, see `Refusal::details`; empty for healthz), built with the reply.
    pub details: String,
}

impl Reply {
    fn new(
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        grpc: Option<(GrpcCode, String)>,
    ) -> Reply {
        let wire_headers =
            crate::headers::serialize(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        Reply {
            status,
            headers,
            body,
            grpc,
            wire_headers,
            details: String::new(),
        }
    }
}

/// The reply for `refusal` in the client's encoding (see `refusal.rs` for what it says), with
/// its details for the access log.
pub fn refused(refusal: Refusal, encoding: Encoding, realm: &str) -> Reply {
    let mut reply = refused_reply(refusal, encoding, realm);
    reply.details = String::from(DETAILS_PREFIX) + refusal.details();
    reply
}

fn refused_reply(refusal: Refusal, encoding: Encoding, realm: &str) -> Reply {
    let (status, code) = refusal.status();
    let message = refusal.message();
    let retry = refusal.retry_after();
    let details: Vec<Any> = retry
        .map(|secs| Any {
            type_url: RETRY_INFO_TYPE.into(),
            value: RetryInfo {
                retry_delay: Some(Duration {
                    seconds: i64::try_from(secs).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    let status_msg = RpcStatus {
        code: code as i32,
        message,
        details,
    };
    if encoding == Encoding::Grpc {
        // gRPC carries RetryInfo in the binary `grpc-status-details-bin` trailer.
        let mut headers = Vec::new();
        if retry.is_some() {
            use base64::Engine as _;
            let bin =
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(status_msg.encode_to_vec());
            headers.push(("grpc-status-details-bin".to_owned(), bin));
        }
        return Reply::new(200, headers, Vec::new(), Some((code, status_msg.message)));
    }
    let mut headers = Vec::with_capacity(3);
    if let Some(c) = refusal.challenge(realm) {
        headers.push(("www-authenticate".to_owned(), c));
    }
    if let Refusal::MethodNotAllowed(allow) = refusal {
        headers.push(("allow".to_owned(), allow.to_owned()));
    }
    if let Some(secs) = retry {
        headers.push(("retry-after".to_owned(), secs.to_string()));
    }
    let (content_type, body) = match encoding {
        Encoding::Protobuf => ("application/x-protobuf", status_msg.encode_to_vec()),
        _ => ("application/json", json_status(&status_msg, retry)),
    };
    headers.push(("content-type".to_owned(), content_type.to_owned()));
    Reply::new(status, headers, body, None)
}

/// Replies as sent, so a refusal a client triggers again and again is built once: the missing
/// and unknown credential ones in each encoding when the configuration is loaded (a
/// misconfigured or hostile client triggers them on every request, and building one costs more
/// than the rest of the decision), the others on first use in a few slots replaced in turn (a
/// 429 carries its seconds to wait, so it is rebuilt at most once a second per encoding).
/// Part of a worker's state for one configuration (`worker.rs`), built in its realm.
#[derive(Clone, Debug)]
pub struct Canned {
    fixed: Vec<Rc<Reply>>,
    recent: Vec<(Refusal, Encoding, Rc<Reply>)>,
    /// The slot of `recent` replaced next.
    next: usize,
}

/// The refusals `Canned` holds from the start, in order.
const CANNED: [Refusal; 2] = [Refusal::Missing, Refusal::Unknown];
const ENCODINGS: [Encoding; 3] = [Encoding::Grpc, Encoding::Protobuf, Encoding::Json];
/// Replies built on demand and kept: a few refusals in each encoding.
const RECENT_REPLIES: usize = 8;

impl Canned {
    pub fn new(realm: &str) -> Canned {
        let mut fixed = Vec::with_capacity(CANNED.len() * ENCODINGS.len());
        for r in CANNED {
            for e in ENCODINGS {
                fixed.push(Rc::new(refused(r, e, realm)));
            }
        }
        Canned {
            fixed,
            recent: Vec::new(),
            next: 0,
        }
    }

    /// The reply for `refusal` in `encoding`: a kept one, or one built now (and kept).
    pub fn get(&mut self, refusal: Refusal, encoding: Encoding, realm: &str) -> Rc<Reply> {
        let e = ENCODINGS.iter().position(|c| *c == encoding).unwrap_or(0);
        if let Some(r) = CANNED.iter().position(|c| *c == refusal)
            && let Some(reply) = self.fixed.get(r * ENCODINGS.len() + e)
        {
            return Rc::clone(reply);
        }
        if let Some((_, _, reply)) = self
            .recent
            .iter()
            .find(|(r, e, _)| *r == refusal && *e == encoding)
        {
            return Rc::clone(reply);
        }
        let reply = Rc::new(refused(refusal, encoding, realm));
        let kept = (refusal, encoding, Rc::clone(&reply));
        if self.recent.len() < RECENT_REPLIES {
            self.recent.push(kept);
        } else {
            let i = self.next % RECENT_REPLIES;
            if let Some(slot) = self.recent.get_mut(i) {
                *slot = kept;
            }
            self.next = i + 1;
        }
        reply
    }
}

/// The proto3 JSON form of a Status: `{"code":16,"message":"…"}`, with RetryInfo as
/// `{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}`. Written
/// directly (the message is the one part that needs JSON string escaping).
fn json_status(s: &RpcStatus, retry: Option<u64>) -> Vec<u8> {
    let message = serde_json::to_string(&s.message).unwrap_or_else(|_| "\"\"".to_owned());
    let details = retry.map_or(String::new(), |secs| {
        format!(r#","details":[{{"@type":"{RETRY_INFO_TYPE}","retryDelay":"{secs}s"}}]"#)
    });
    format!(r#"{{"code":{},"message":{message}{details}}}"#, s.code).into_bytes()
}

/// `GET {prefix}/healthz`: proves a valid config is loaded, without revealing anything secret.
/// `detail` only on the health listener (see `gate::HEALTH_CHAIN`); anyone else who reaches
/// healthz (through the ingress) learns only that a configuration is loaded.
pub fn healthz(generation: u64, config_sha256: &str, tokens: usize, detail: bool) -> Reply {
    // `config_sha256` is hex: nothing to escape.
    let body = if detail {
        format!(
            r#"{{"status":"ok","generation":{generation},"config_sha256":"{config_sha256}","tokens":{tokens}}}"#
        )
    } else {
        r#"{"status":"ok"}"#.to_owned()
    };
    Reply::new(
        200,
        vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body.into_bytes(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Signal;

    #[test]
    fn kept_replies_are_the_built_ones() {
        let mut canned = Canned::new("otlp");
        let throttled = |secs| Refusal::AuthThrottled { retry_after: secs };
        for e in ENCODINGS {
            for r in CANNED.into_iter().chain([
                Refusal::Expired,
                Refusal::RateLimited { retry_after: 1 },
                throttled(300),
            ]) {
                let first = canned.get(r, e, "otlp");
                assert_eq!(*first, refused(r, e, "otlp"), "{r:?} {e:?}");
                assert!(
                    Rc::ptr_eq(&first, &canned.get(r, e, "otlp")),
                    "{r:?} {e:?} built once"
                );
            }
        }
        // A 429 with other seconds is another reply; the slots are replaced in turn.
        let a = canned.get(throttled(299), Encoding::Json, "otlp");
        assert_eq!(*a, refused(throttled(299), Encoding::Json, "otlp"));
        assert_ne!(*a, *canned.get(throttled(300), Encoding::Json, "otlp"));
        for secs in 0..RECENT_REPLIES as u64 {
            canned.get(throttled(secs), Encoding::Json, "otlp");
        }
        assert_eq!(canned.recent.len(), RECENT_REPLIES);
        assert!(!Rc::ptr_eq(
            &a,
            &canned.get(throttled(299), Encoding::Json, "otlp")
        ));
        // The missing and unknown replies are never replaced.
        let missing = canned.get(Refusal::Missing, Encoding::Grpc, "otlp");
        assert!(Rc::ptr_eq(&missing, &canned.fixed[0]));
    }

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn reply_table() {
        use Encoding::*;
        let cases: &[(Refusal, Encoding, u16, Option<&str>, i32)] = &[
            (
                Refusal::Missing,
                Json,
                401,
                Some(r#"Bearer realm="otlp""#),
                16,
            ),
            (
                Refusal::Malformed("x"),
                Json,
                400,
                Some(r#"Bearer realm="otlp", error="invalid_request""#),
                3,
            ),
            (
                Refusal::Unknown,
                Protobuf,
                401,
                Some(r#"Bearer realm="otlp", error="invalid_token""#),
                16,
            ),
            (
                Refusal::ForbiddenSignal(Signal::Logs),
                Protobuf,
                403,
                Some(r#"Bearer realm="otlp", error="insufficient_scope", scope="logs""#),
                7,
            ),
            (Refusal::NotFound, Json, 404, None, 12),
            (Refusal::MethodNotAllowed("POST"), Json, 405, None, 12),
        ];
        for &(refusal, enc, status, challenge, code) in cases {
            let r = refused(refusal, enc, "otlp");
            assert_eq!(r.status, status, "{refusal:?}");
            assert_eq!(header(&r, "www-authenticate"), challenge, "{refusal:?}");
            assert!(r.grpc.is_none());
            let decoded = match enc {
                Protobuf => {
                    assert_eq!(header(&r, "content-type"), Some("application/x-protobuf"));
                    RpcStatus::decode(r.body.as_slice()).unwrap()
                }
                _ => {
                    assert_eq!(header(&r, "content-type"), Some("application/json"));
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    RpcStatus {
                        code: v["code"].as_i64().unwrap() as i32,
                        message: v["message"].as_str().unwrap().into(),
                        details: vec![],
                    }
                }
            };
            assert_eq!(decoded.code, code);
            assert_eq!(decoded.message, refusal.message());
        }
        assert_eq!(
            header(
                &refused(Refusal::MethodNotAllowed("POST"), Json, "otlp"),
                "allow"
            ),
            Some("POST")
        );
    }

    #[test]
    fn grpc_replies_are_statuses() {
        let cases = [
            (Refusal::Missing, GrpcCode::Unauthenticated),
            (Refusal::Expired, GrpcCode::Unauthenticated),
            (
                Refusal::ForbiddenSignal(Signal::Traces),
                GrpcCode::PermissionDenied,
            ),
            (Refusal::Malformed("x"), GrpcCode::InvalidArgument),
            (Refusal::NotFound, GrpcCode::Unimplemented),
            (Refusal::MethodNotAllowed("POST"), GrpcCode::Unimplemented),
        ];
        for (refusal, code) in cases {
            let r = refused(refusal, Encoding::Grpc, "otlp");
            assert_eq!(r.status, 200);
            assert_eq!(r.grpc, Some((code, refusal.message())));
            assert!(r.body.is_empty());
        }
    }

    #[test]
    fn healthz_has_no_secrets() {
        let r = healthz(3, "ab", 2, true);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status":"ok","generation":3,"config_sha256":"ab","tokens":2})
        );
        assert_eq!(healthz(3, "ab", 2, false).body, br#"{"status":"ok"}"#);
    }
}
