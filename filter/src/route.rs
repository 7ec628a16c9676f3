//! Which OTLP endpoint a request is for. The path is matched exactly as Envoy hands it over:
//! no decoding, no dot-segment or slash normalisation, so `/observability/./v1/logs`,
//! `//v1/logs`, `%2F`, or a trailing slash can never reach a different upstream path — they
//! are simply not OTLP paths (404).

use std::borrow::Cow;

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Logs = 0,
    Metrics = 1,
    Traces = 2,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Metrics, Signal::Traces];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "logs" => Some(Signal::Logs),
            "metrics" => Some(Signal::Metrics),
            "traces" => Some(Signal::Traces),
            _ => None,
        }
    }

    /// The OTLP/HTTP path the receiver serves this signal on.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
            Signal::Traces => "/v1/traces",
        }
    }

    /// Bit for a signal set.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The OTLP/gRPC method path of this signal's export service.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        }
    }
}

/// How the client encodes its request, and so how a local reply must be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/grpc…`: replies are gRPC statuses, never HTTP error pages.
    Grpc,
    /// `application/x-protobuf`: `google.rpc.Status` as protobuf.
    Protobuf,
    /// Anything else (OTLP/JSON, curl, probes): `google.rpc.Status` as JSON.
    Json,
}

impl Encoding {
    /// gRPC exactly when Envoy judges the request gRPC (`Grpc::Common::hasGrpcContentType`):
    /// `application/grpc`, byte for byte, alone or followed by `+`. `application/grpc-web`,
    /// `APPLICATION/GRPC` or `application/grpc;charset=utf-8` are not (checked against Envoy
    /// 1.40 by tests/e2e/test_content_types.py): Envoy would not send a gRPC reply for them.
    pub fn from_content_type(content_type: Option<&[u8]>) -> Encoding {
        classify(content_type).0
    }
}

/// The reply encoding, and whether the content type is one OTLP/HTTP defines
/// (`application/x-protobuf` or `application/json`, in any case, with any parameters, as the
/// Collector's receiver reads it). What exporters send is decided byte for byte, first.
pub fn classify(content_type: Option<&[u8]>) -> (Encoding, bool) {
    let Some(ct) = content_type else {
        return (Encoding::Json, false);
    };
    match ct {
        b"application/x-protobuf" => return (Encoding::Protobuf, true),
        b"application/grpc" | b"application/grpc+proto" => return (Encoding::Grpc, false),
        b"application/json" => return (Encoding::Json, true),
        _ => {}
    }
    if let Some(rest) = ct.strip_prefix(b"application/grpc")
        && matches!(rest.first(), None | Some(b'+'))
    {
        return (Encoding::Grpc, false);
    }
    let media = media_type(ct);
    if media.eq_ignore_ascii_case(b"application/x-protobuf") {
        (Encoding::Protobuf, true)
    } else {
        (
            Encoding::Json,
            media.eq_ignore_ascii_case(b"application/json"),
        )
    }
}

/// The media type of a content type: before any parameters, without surrounding white space.
fn media_type(ct: &[u8]) -> &[u8] {
    ct.split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// Whether the content type is one OTLP/HTTP defines (see [`classify`]).
pub fn otlp_http_media(content_type: Option<&[u8]>) -> bool {
    classify(content_type).1
}

/// What the path and method ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// An OTLP/HTTP export: forward to `upstream_path` (`/v1/{signal}` plus the query string).
    Http {
        signal: Signal,
        upstream_path: Cow<'static, str>,
    },
    /// An OTLP/gRPC export: forwarded with its path unchanged.
    Grpc { signal: Signal },
    /// `GET {prefix}/healthz`.
    Healthz,
    /// An OTLP/gRPC export posted with a content type that is not gRPC (415).
    UnsupportedMediaType { signal: Signal },
    /// An OTLP path with the wrong method (405 `Allow: POST`, or gRPC UNIMPLEMENTED).
    MethodNotAllowed {
        signal: Option<Signal>,
        allow: &'static str,
    },
    /// Anything else (404, or gRPC UNIMPLEMENTED).
    NotFound,
}

/// Classifies a request. `grpc` is true when the content-type is `application/grpc…`: gRPC
/// requests are OTLP only on the three gRPC export paths, other requests only on the HTTP ones.
pub fn route(prefix: &str, method: &str, path: &str, grpc: bool) -> Route {
    let (bare, query) = match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    if let Some(rest) = bare.strip_prefix(prefix) {
        if rest == "/healthz" {
            return if method == "GET" || method == "HEAD" {
                Route::Healthz
            } else {
                Route::MethodNotAllowed {
                    signal: None,
                    allow: "GET, HEAD",
                }
            };
        }
        if let Some(signal) = rest.strip_prefix("/v1/").and_then(Signal::parse) {
            // A gRPC client here is calling a gRPC method that does not exist: forwarding it
            // to the OTLP/HTTP receiver would answer with an HTTP error page, so it is refused
            // below as not found (gRPC UNIMPLEMENTED).
            if grpc {
                return Route::NotFound;
            }
            return if method == "POST" {
                Route::Http {
                    signal,
                    upstream_path: if query.is_empty() {
                        Cow::Borrowed(signal.http_path())
                    } else {
                        let mut p = String::with_capacity(signal.http_path().len() + query.len());
                        p.push_str(signal.http_path());
                        p.push_str(query);
                        Cow::Owned(p)
                    },
                }
            } else {
                Route::MethodNotAllowed {
                    signal: Some(signal),
                    allow: "POST",
                }
            };
        }
    }
    // gRPC service paths carry no query string; a non-gRPC client on a gRPC path is not OTLP.
    if let Some(signal) = Signal::ALL.into_iter().find(|s| s.grpc_path() == path) {
        if !grpc {
            // A gRPC-Web (or any other) client posting to a gRPC method: a media type OTLP
            // does not define here. Anything else is not an OTLP request at all.
            return if method == "POST" {
                Route::UnsupportedMediaType { signal }
            } else {
                Route::NotFound
            };
        }
        return if method == "POST" {
            Route::Grpc { signal }
        } else {
            Route::MethodNotAllowed {
                signal: Some(signal),
                allow: "POST",
            }
        };
    }
    Route::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/observability";

    #[test]
    fn routes_table() {
        use Signal::*;
        let http = |s: Signal, up: &str| Route::Http {
            signal: s,
            upstream_path: Cow::Owned(up.to_owned()),
        };
        let cases: &[(&str, &str, bool, Route)] = &[
            (
                "POST",
                "/observability/v1/logs",
                false,
                http(Logs, "/v1/logs"),
            ),
            (
                "POST",
                "/observability/v1/metrics",
                false,
                http(Metrics, "/v1/metrics"),
            ),
            (
                "POST",
                "/observability/v1/traces?a=1&b",
                false,
                http(Traces, "/v1/traces?a=1&b"),
            ),
            ("POST", "/observability/v1/traces", true, Route::NotFound),
            ("GET", "/observability/v1/traces", true, Route::NotFound),
            (
                "GET",
                "/observability/v1/traces",
                false,
                Route::MethodNotAllowed {
                    signal: Some(Traces),
                    allow: "POST",
                },
            ),
            (
                "PUT",
                "/observability/v1/logs",
                false,
                Route::MethodNotAllowed {
                    signal: Some(Logs),
                    allow: "POST",
                },
            ),
            ("GET", "/observability/healthz", false, Route::Healthz),
            ("HEAD", "/observability/healthz", false, Route::Healthz),
            (
                "POST",
                "/observability/healthz",
                false,
                Route::MethodNotAllowed {
                    signal: None,
                    allow: "GET, HEAD",
                },
            ),
            (
                "POST",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                true,
                Route::Grpc { signal: Traces },
            ),
            (
                "POST",
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                true,
                Route::Grpc { signal: Logs },
            ),
            (
                "POST",
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                true,
                Route::Grpc { signal: Metrics },
            ),
            (
                "GET",
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                true,
                Route::MethodNotAllowed {
                    signal: Some(Metrics),
                    allow: "POST",
                },
            ),
            (
                "POST",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                false,
                Route::UnsupportedMediaType { signal: Traces },
            ),
            (
                "GET",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                false,
                Route::NotFound,
            ),
            (
                "POST",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export?x",
                true,
                Route::NotFound,
            ),
            (
                "POST",
                "/opentelemetry.proto.collector.trace.v1.TraceService/Other",
                true,
                Route::NotFound,
            ),
            ("POST", "/v1/traces", false, Route::NotFound),
            ("POST", "/observability/v1/traces/", false, Route::NotFound),
            ("POST", "/observability//v1/traces", false, Route::NotFound),
            ("POST", "/observability/./v1/traces", false, Route::NotFound),
            (
                "POST",
                "/observability/v1/../v1/traces",
                false,
                Route::NotFound,
            ),
            ("POST", "/observability/v1/%74races", false, Route::NotFound),
            ("POST", "/observability%2Fv1/traces", false, Route::NotFound),
            ("POST", "/observability/v1/Traces", false, Route::NotFound),
            ("POST", "/observability/v1/profiles", false, Route::NotFound),
            ("POST", "/observabilityx/v1/traces", false, Route::NotFound),
            ("POST", "/observability", false, Route::NotFound),
            ("POST", "", false, Route::NotFound),
            ("GET", "/", false, Route::NotFound),
            (
                "post",
                "/observability/v1/traces",
                false,
                Route::MethodNotAllowed {
                    signal: Some(Traces),
                    allow: "POST",
                },
            ),
        ];
        for (method, path, grpc, want) in cases {
            assert_eq!(
                &route(P, method, path, *grpc),
                want,
                "{method} {path} grpc={grpc}"
            );
        }
    }

    #[test]
    fn empty_prefix_serves_plain_otlp_paths() {
        assert_eq!(
            route("", "POST", "/v1/logs", false),
            Route::Http {
                signal: Signal::Logs,
                upstream_path: "/v1/logs".into()
            }
        );
    }

    #[test]
    fn encodings() {
        let cases: &[(Option<&[u8]>, Encoding)] = &[
            (None, Encoding::Json),
            (Some(b"application/json"), Encoding::Json),
            (Some(b"application/x-protobuf"), Encoding::Protobuf),
            (
                Some(b"Application/X-Protobuf; charset=binary"),
                Encoding::Protobuf,
            ),
            (Some(b"application/grpc"), Encoding::Grpc),
            (Some(b"application/grpc+proto"), Encoding::Grpc),
            (
                Some(b"application/grpc+proto;charset=utf-8"),
                Encoding::Grpc,
            ),
            (Some(b"application/grpc+json"), Encoding::Grpc),
            // Not gRPC to Envoy: replies to these are HTTP.
            (Some(b"APPLICATION/GRPC"), Encoding::Json),
            (Some(b"application/grpc;charset=utf-8"), Encoding::Json),
            (Some(b"application/grpc-web"), Encoding::Json),
            (Some(b"application/grpc-web+proto"), Encoding::Json),
            (Some(b"application/grpcx"), Encoding::Json),
            (Some(b" application/grpc"), Encoding::Json),
            (Some(b"text/plain"), Encoding::Json),
            (Some(b"application/grp"), Encoding::Json),
            (Some(b"\xff\xfe"), Encoding::Json),
        ];
        for (ct, want) in cases {
            assert_eq!(Encoding::from_content_type(*ct), *want, "{ct:?}");
        }
    }

    #[test]
    fn otlp_http_media_types() {
        for (ct, want) in [
            (None, false),
            (Some(&b"application/x-protobuf"[..]), true),
            (Some(b"application/json"), true),
            (Some(b"Application/JSON; charset=utf-8"), true),
            (Some(b" application/x-protobuf ; a=b"), true),
            (Some(b""), false),
            (Some(b"application/protobuf"), false),
            (Some(b"application/grpc"), false),
            (Some(b"application/grpc-web+proto"), false),
            (Some(b"text/plain"), false),
            (Some(b"application/jsonx"), false),
        ] {
            assert_eq!(otlp_http_media(ct), want, "{ct:?}");
        }
    }
}
