//! What each component accepts, taken from the Alloy reference documentation (the argument and
//! block tables of each page; `doc` is the page). Source: grafana/alloy `docs/sources/reference`
//! at the v1.19 release candidates (August 2026), matching the `grafana/alloy:v1.18.1` image the
//! bundle runs. Only components this project uses are listed: any other component is reported
//! as unknown, so adding one means copying its table here first.
//!
//! Nested blocks the project does not use (OAuth2, SigV4, Azure AD, TPM, ...) are `Opaque`:
//! known by name, contents unchecked.

/// The type of an argument, as far as a static check can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    /// `string` or `secret`.
    Secret,
    Number,
    Bool,
    /// A Go duration string such as `"1m30s"`.
    Duration,
    /// A string from a fixed set.
    OneOf(&'static [&'static str]),
    StrList,
    /// `map(string)` (an object whose values are strings).
    StrMap,
    /// Any object (e.g. `map(list(secret))`).
    Map,
    /// `list(map(string))`: discovery targets.
    Targets,
    Capsule(Cap),
    /// A list of capsules, e.g. `list(otelcol.Consumer)`.
    ListOf(Cap),
}

/// Capsule types: values only components can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    OtelConsumer,
    OtelAuthHandler,
    MetricsReceiver,
    LogsReceiver,
    RelabelRules,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::OtelConsumer => "otelcol.Consumer",
            Cap::OtelAuthHandler => "otelcol.Handler",
            Cap::MetricsReceiver => "MetricsReceiver",
            Cap::LogsReceiver => "LogsReceiver",
            Cap::RelabelRules => "RelabelRules",
        }
    }
}

impl Ty {
    pub fn name(self) -> String {
        match self {
            Ty::Str => "string".into(),
            Ty::Secret => "string or secret".into(),
            Ty::Number => "number".into(),
            Ty::Bool => "bool".into(),
            Ty::Duration => "duration".into(),
            Ty::OneOf(values) => format!("one of {values:?}"),
            Ty::StrList => "list(string)".into(),
            Ty::StrMap => "map(string)".into(),
            Ty::Map => "object".into(),
            Ty::Targets => "list(map(string))".into(),
            Ty::Capsule(c) => c.name().into(),
            Ty::ListOf(c) => format!("list({})", c.name()),
        }
    }
}

#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

/// A cross-argument rule stated in the docs.
#[derive(Debug)]
pub enum Rule {
    /// Exactly one of these attributes must be set.
    ExactlyOne(&'static [&'static str]),
    /// Attributes from the first group and from the second group may not be mixed.
    NotBoth(&'static [&'static str], &'static [&'static str]),
}

#[derive(Debug)]
pub struct BlockSpec {
    pub attrs: &'static [Attr],
    pub blocks: &'static [Sub],
    pub rules: &'static [Rule],
}

#[derive(Debug, Clone, Copy)]
pub struct Sub {
    pub name: &'static str,
    /// `None`: a documented block whose contents this checker does not check.
    pub spec: Option<&'static BlockSpec>,
    pub required: bool,
    pub repeatable: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// A component: needs a label, has exports.
    Component,
    /// A top-level configuration block such as `logging`: no label, at most once.
    ConfigBlock,
}

#[derive(Debug)]
pub struct Component {
    pub name: &'static str,
    pub doc: &'static str,
    pub kind: Kind,
    pub body: BlockSpec,
    pub exports: &'static [(&'static str, Ty)],
}

const fn req(name: &'static str, ty: Ty) -> Attr {
    Attr {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Attr {
    Attr {
        name,
        ty,
        required: false,
    }
}

const fn block(name: &'static str, spec: &'static BlockSpec) -> Sub {
    Sub {
        name,
        spec: Some(spec),
        required: false,
        repeatable: false,
    }
}

const fn required_block(name: &'static str, spec: &'static BlockSpec) -> Sub {
    Sub {
        name,
        spec: Some(spec),
        required: true,
        repeatable: false,
    }
}

const fn repeated(name: &'static str, spec: &'static BlockSpec) -> Sub {
    Sub {
        name,
        spec: Some(spec),
        required: false,
        repeatable: true,
    }
}

const fn opaque(name: &'static str) -> Sub {
    Sub {
        name,
        spec: None,
        required: false,
        repeatable: false,
    }
}

const fn attrs(attrs: &'static [Attr]) -> BlockSpec {
    BlockSpec {
        attrs,
        blocks: &[],
        rules: &[],
    }
}

use Cap::*;
use Ty::*;

// ---- shared blocks (docs/sources/shared/reference/components/*.md) ----

/// otelcol-tls-client-block.md
static OTEL_TLS_CLIENT: BlockSpec = BlockSpec {
    attrs: &[
        opt("ca_file", Str),
        opt("ca_pem", Str),
        opt("cert_file", Str),
        opt("cert_pem", Str),
        opt("cipher_suites", StrList),
        opt("curve_preferences", StrList),
        opt("include_insecure_cipher_suites", Bool),
        opt("include_system_ca_certs_pool", Bool),
        opt("insecure_skip_verify", Bool),
        opt("insecure", Bool),
        opt("key_file", Str),
        opt("key_pem", Secret),
        opt("max_version", Str),
        opt("min_version", Str),
        opt("reload_interval", Duration),
        opt("server_name", Str),
    ],
    blocks: &[opaque("tpm")],
    rules: &[],
};

/// output-block.md
static OTEL_OUTPUT: BlockSpec = attrs(&[
    opt("logs", ListOf(OtelConsumer)),
    opt("metrics", ListOf(OtelConsumer)),
    opt("traces", ListOf(OtelConsumer)),
]);

/// otelcol-debug-metrics-block.md
static OTEL_DEBUG_METRICS: BlockSpec = attrs(&[opt("disable_high_cardinality_metrics", Bool)]);

/// otelcol-retry-block.md
static OTEL_RETRY: BlockSpec = attrs(&[
    opt("enabled", Bool),
    opt("initial_interval", Duration),
    opt("max_elapsed_time", Duration),
    opt("max_interval", Duration),
    opt("multiplier", Number),
    opt("randomization_factor", Number),
]);

/// otelcol-queue-block.md (+ otelcol-queue-batch-block.md, unchecked)
static OTEL_QUEUE: BlockSpec = BlockSpec {
    attrs: &[
        opt("block_on_overflow", Bool),
        opt("enabled", Bool),
        opt("num_consumers", Number),
        opt("queue_size", Number),
        opt("sizer", OneOf(&["requests", "items", "bytes"])),
        opt("wait_for_result", Bool),
        opt("storage", Capsule(OtelAuthHandler)),
    ],
    blocks: &[opaque("batch")],
    rules: &[],
};

/// otelcol-http-client-block.md
static OTEL_HTTP_CLIENT: BlockSpec = BlockSpec {
    attrs: &[
        req("endpoint", Str),
        opt("auth", Capsule(OtelAuthHandler)),
        opt("compression", Str),
        opt("disable_keep_alives", Bool),
        opt("force_attempt_http2", Bool),
        opt("headers", StrMap),
        opt("http2_ping_timeout", Duration),
        opt("http2_read_idle_timeout", Duration),
        opt("idle_conn_timeout", Duration),
        opt("max_conns_per_host", Number),
        opt("max_idle_conns_per_host", Number),
        opt("max_idle_conns", Number),
        opt("proxy_url", Str),
        opt("read_buffer_size", Str),
        opt("timeout", Duration),
        opt("write_buffer_size", Str),
    ],
    blocks: &[
        block("tls", &OTEL_TLS_CLIENT),
        opaque("compression_params"),
        opaque("cookies"),
    ],
    rules: &[],
};

/// rule-block.md
static RELABEL_RULE: BlockSpec = attrs(&[
    opt(
        "action",
        OneOf(&[
            "drop",
            "dropequal",
            "hashmod",
            "keep",
            "keepequal",
            "labeldrop",
            "labelkeep",
            "labelmap",
            "lowercase",
            "replace",
            "uppercase",
        ]),
    ),
    opt("modulus", Number),
    opt("regex", Str),
    opt("replacement", Str),
    opt("separator", Str),
    opt("source_labels", StrList),
    opt("target_label", Str),
]);

/// The `clustering` block of prometheus.scrape and loki.source.kubernetes.
static CLUSTERING: BlockSpec = attrs(&[req("enabled", Bool)]);

/// authorization-block.md (`internal/component/common/config/types.go`, Authorization).
static HTTP_AUTHORIZATION: BlockSpec = BlockSpec {
    attrs: &[
        opt("type", Str),
        opt("credentials", Secret),
        opt("credentials_file", Str),
    ],
    blocks: &[],
    rules: &[Rule::NotBoth(&["credentials"], &["credentials_file"])],
};

/// basic-auth-block.md (BasicAuth: `password` and `password_file` exclude each other).
static HTTP_BASIC_AUTH: BlockSpec = BlockSpec {
    attrs: &[
        opt("username", Str),
        opt("password", Secret),
        opt("password_file", Str),
    ],
    blocks: &[],
    rules: &[Rule::NotBoth(&["password"], &["password_file"])],
};

/// tls-config-block.md (TLSConfig).
static HTTP_TLS_CONFIG: BlockSpec = attrs(&[
    opt("ca_pem", Str),
    opt("ca_file", Str),
    opt("cert_pem", Str),
    opt("cert_file", Str),
    opt("key_pem", Secret),
    opt("key_file", Str),
    opt("server_name", Str),
    opt("insecure_skip_verify", Bool),
    opt("min_version", OneOf(&["TLS10", "TLS11", "TLS12", "TLS13"])),
]);

/// Blocks shared by the HTTP clients of discovery, scrape and write components
/// (authorization-block.md, basic-auth-block.md, oauth2-block.md, tls-config-block.md).
const HTTP_AUTH_BLOCKS: [Sub; 4] = [
    block("authorization", &HTTP_AUTHORIZATION),
    block("basic_auth", &HTTP_BASIC_AUTH),
    opaque("oauth2"),
    block("tls_config", &HTTP_TLS_CONFIG),
];

// ---- otelcol.receiver.otlp ----

/// The `tls` block of otelcol servers (Alloy v1.18.1 internal/component/otelcol/config_tls.go:
/// TLSServerArguments = TLSSetting + client_ca_file). A server needs both a certificate and a
/// key (configtls ServerConfig.Validate); `client_ca_file` makes it require and verify client
/// certificates (tls.RequireAndVerifyClientCert).
static OTEL_TLS_SERVER: BlockSpec = BlockSpec {
    attrs: &[
        opt("ca_file", Str),
        opt("ca_pem", Str),
        opt("cert_file", Str),
        opt("cert_pem", Str),
        opt("cipher_suites", StrList),
        opt("client_ca_file", Str),
        opt("curve_preferences", StrList),
        opt("include_system_ca_certs_pool", Bool),
        opt("key_file", Str),
        opt("key_pem", Secret),
        opt("max_version", OneOf(TLS_VERSIONS)),
        opt("min_version", OneOf(TLS_VERSIONS)),
        opt("reload_interval", Duration),
    ],
    blocks: &[opaque("tpm")],
    rules: &[
        Rule::ExactlyOne(&["cert_file", "cert_pem"]),
        Rule::ExactlyOne(&["key_file", "key_pem"]),
        Rule::NotBoth(&["ca_file"], &["ca_pem"]),
    ],
};

/// configtls convertVersion: "1.0" .. "1.3".
const TLS_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3"];

static OTLP_GRPC_SERVER: BlockSpec = BlockSpec {
    attrs: &[
        opt("auth", Capsule(OtelAuthHandler)),
        opt("endpoint", Str),
        opt("include_metadata", Bool),
        opt("max_concurrent_streams", Number),
        opt("max_recv_msg_size", Str),
        opt("read_buffer_size", Str),
        opt("transport", Str),
        opt("write_buffer_size", Str),
    ],
    blocks: &[opaque("keepalive"), block("tls", &OTEL_TLS_SERVER)],
    rules: &[],
};

static OTLP_HTTP_SERVER: BlockSpec = BlockSpec {
    attrs: &[
        opt("auth", Capsule(OtelAuthHandler)),
        opt("compression_algorithms", StrList),
        opt("endpoint", Str),
        opt("idle_timeout", Duration),
        opt("include_metadata", Bool),
        opt("keep_alives_enabled", Bool),
        opt("logs_url_path", Str),
        opt("max_request_body_size", Str),
        opt("metrics_url_path", Str),
        opt("read_header_timeout", Duration),
        opt("read_timeout", Duration),
        opt("traces_url_path", Str),
        opt("write_timeout", Duration),
    ],
    blocks: &[opaque("cors"), block("tls", &OTEL_TLS_SERVER)],
    rules: &[],
};

// ---- otelcol.auth.headers ----

static AUTH_HEADER: BlockSpec = BlockSpec {
    attrs: &[
        req("key", Str),
        opt("action", OneOf(&["insert", "update", "upsert", "delete"])),
        opt("from_attribute", Str),
        opt("from_context", Str),
        opt("value", Secret),
    ],
    blocks: &[],
    rules: &[Rule::ExactlyOne(&[
        "value",
        "from_context",
        "from_attribute",
    ])],
};

// ---- otelcol.exporter.otlp (gRPC client) ----

static OTLP_GRPC_CLIENT: BlockSpec = BlockSpec {
    attrs: &[
        req("endpoint", Str),
        opt("auth", Capsule(OtelAuthHandler)),
        opt("authority", Str),
        opt("balancer_name", Str),
        opt("compression", Str),
        opt("headers", StrMap),
        opt("read_buffer_size", Str),
        opt("wait_for_ready", Bool),
        opt("write_buffer_size", Str),
    ],
    blocks: &[block("tls", &OTEL_TLS_CLIENT), opaque("keepalive")],
    rules: &[],
};

// ---- discovery.kubernetes ----

static K8S_NAMESPACES: BlockSpec = attrs(&[opt("names", StrList), opt("own_namespace", Bool)]);

static K8S_SELECTORS: BlockSpec = attrs(&[
    req("role", OneOf(K8S_ROLES)),
    opt("field", Str),
    opt("label", Str),
]);

static K8S_ATTACH_METADATA: BlockSpec = attrs(&[opt("node", Bool), opt("namespace", Bool)]);

const K8S_ROLES: &[&str] = &[
    "node",
    "pod",
    "service",
    "endpoints",
    "endpointslice",
    "ingress",
];

/// Arguments of every component that talks to the Kubernetes API.
macro_rules! k8s_client_attrs {
    ($($extra:expr),* $(,)?) => {
        &[
            $($extra,)*
            opt("api_server", Str),
            opt("bearer_token_file", Str),
            opt("bearer_token", Secret),
            opt("enable_http2", Bool),
            opt("follow_redirects", Bool),
            opt("http_headers", Map),
            opt("kubeconfig_file", Str),
            opt("no_proxy", Str),
            opt("proxy_connect_header", Map),
            opt("proxy_from_environment", Bool),
            opt("proxy_url", Str),
        ]
    };
}

static LOKI_K8S_CLIENT: BlockSpec = BlockSpec {
    attrs: k8s_client_attrs!(),
    blocks: &HTTP_AUTH_BLOCKS,
    rules: &[],
};

// ---- prometheus.remote_write ----

static REMOTE_WRITE_ENDPOINT: BlockSpec = BlockSpec {
    attrs: &[
        req("url", Str),
        opt("bearer_token_file", Str),
        opt("bearer_token", Secret),
        opt("enable_http2", Bool),
        opt("follow_redirects", Bool),
        opt("http_headers", Map),
        opt("headers", StrMap),
        opt("name", Str),
        opt("no_proxy", Str),
        opt("protobuf_message", Str),
        opt("proxy_connect_header", Map),
        opt("proxy_from_environment", Bool),
        opt("proxy_url", Str),
        opt("remote_timeout", Duration),
        opt("round_robin_dns", Bool),
        opt("send_exemplars", Bool),
        opt("send_native_histograms", Bool),
    ],
    blocks: &[
        HTTP_AUTH_BLOCKS[0],
        HTTP_AUTH_BLOCKS[1],
        HTTP_AUTH_BLOCKS[2],
        HTTP_AUTH_BLOCKS[3],
        opaque("azuread"),
        opaque("google_iam"),
        opaque("metadata_config"),
        opaque("queue_config"),
        opaque("sigv4"),
        Sub {
            name: "write_relabel_config",
            spec: Some(&RELABEL_RULE),
            required: false,
            repeatable: true,
        },
    ],
    rules: &[],
};

static REMOTE_WRITE_WAL: BlockSpec = attrs(&[
    opt("truncate_frequency", Duration),
    opt("min_keepalive_time", Duration),
    opt("max_keepalive_time", Duration),
]);

// ---- loki.write ----

static LOKI_WRITE_ENDPOINT: BlockSpec = BlockSpec {
    attrs: &[
        req("url", Str),
        opt("batch_size", Str),
        opt("batch_wait", Duration),
        opt("bearer_token_file", Str),
        opt("bearer_token", Secret),
        opt("enable_http2", Bool),
        opt("follow_redirects", Bool),
        opt("http_headers", Map),
        opt("headers", StrMap),
        opt("max_backoff_period", Duration),
        opt("max_backoff_retries", Number),
        opt("min_backoff_period", Duration),
        opt("name", Str),
        opt("no_proxy", Str),
        opt("proxy_connect_header", Map),
        opt("proxy_from_environment", Bool),
        opt("proxy_url", Str),
        opt("remote_timeout", Duration),
        opt("retry_on_http_429", Bool),
        opt("tenant_id", Str),
    ],
    blocks: &[
        HTTP_AUTH_BLOCKS[0],
        HTTP_AUTH_BLOCKS[1],
        HTTP_AUTH_BLOCKS[2],
        HTTP_AUTH_BLOCKS[3],
        opaque("queue_config"),
    ],
    rules: &[],
};

/// The components and configuration blocks this checker knows.
pub static COMPONENTS: &[Component] = &[
    Component {
        name: "logging",
        doc: "https://grafana.com/docs/alloy/latest/reference/config-blocks/logging/",
        kind: Kind::ConfigBlock,
        body: attrs(&[
            opt("destination", Str),
            opt("format", OneOf(&["logfmt", "json"])),
            opt("level", OneOf(&["error", "warn", "info", "debug"])),
            opt("write_to", ListOf(LogsReceiver)),
        ]),
        exports: &[],
    },
    Component {
        name: "otelcol.receiver.otlp",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/otelcol/otelcol.receiver.otlp/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[],
            blocks: &[
                required_block("output", &OTEL_OUTPUT),
                block("debug_metrics", &OTEL_DEBUG_METRICS),
                block("grpc", &OTLP_GRPC_SERVER),
                block("http", &OTLP_HTTP_SERVER),
            ],
            rules: &[],
        },
        exports: &[],
    },
    Component {
        name: "otelcol.processor.memory_limiter",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/otelcol/otelcol.processor.memory_limiter/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[
                req("check_interval", Duration),
                opt("limit_percentage", Number),
                opt("limit", Str),
                opt("spike_limit_percentage", Number),
                opt("spike_limit", Str),
            ],
            blocks: &[
                required_block("output", &OTEL_OUTPUT),
                block("debug_metrics", &OTEL_DEBUG_METRICS),
            ],
            // "The arguments must define either `limit` or the `limit_percentage,
            // spike_limit_percentage` pair, but not both."
            rules: &[Rule::NotBoth(
                &["limit", "spike_limit"],
                &["limit_percentage", "spike_limit_percentage"],
            )],
        },
        exports: &[("input", Capsule(OtelConsumer))],
    },
    Component {
        name: "otelcol.processor.batch",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/otelcol/otelcol.processor.batch/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[
                opt("metadata_cardinality_limit", Number),
                opt("metadata_keys", StrList),
                opt("send_batch_max_size", Number),
                opt("send_batch_size", Number),
                opt("timeout", Duration),
            ],
            blocks: &[
                required_block("output", &OTEL_OUTPUT),
                block("debug_metrics", &OTEL_DEBUG_METRICS),
            ],
            rules: &[],
        },
        exports: &[("input", Capsule(OtelConsumer))],
    },
    Component {
        name: "otelcol.auth.headers",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/otelcol/otelcol.auth.headers/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[],
            blocks: &[
                Sub {
                    name: "header",
                    spec: Some(&AUTH_HEADER),
                    required: true,
                    repeatable: true,
                },
                block("debug_metrics", &OTEL_DEBUG_METRICS),
            ],
            rules: &[],
        },
        exports: &[("handler", Capsule(OtelAuthHandler))],
    },
    Component {
        name: "otelcol.exporter.otlp",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/otelcol/otelcol.exporter.otlp/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[opt("timeout", Duration)],
            blocks: &[
                required_block("client", &OTLP_GRPC_CLIENT),
                block("debug_metrics", &OTEL_DEBUG_METRICS),
                block("retry_on_failure", &OTEL_RETRY),
                block("sending_queue", &OTEL_QUEUE),
            ],
            rules: &[],
        },
        exports: &[("input", Capsule(OtelConsumer))],
    },
    Component {
        name: "otelcol.exporter.otlphttp",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/otelcol/otelcol.exporter.otlphttp/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[
                opt("encoding", OneOf(&["proto", "json"])),
                opt("logs_endpoint", Str),
                opt("metrics_endpoint", Str),
                opt("traces_endpoint", Str),
            ],
            blocks: &[
                required_block("client", &OTEL_HTTP_CLIENT),
                block("debug_metrics", &OTEL_DEBUG_METRICS),
                block("retry_on_failure", &OTEL_RETRY),
                block("sending_queue", &OTEL_QUEUE),
            ],
            rules: &[],
        },
        exports: &[("input", Capsule(OtelConsumer))],
    },
    Component {
        name: "discovery.kubernetes",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/discovery/discovery.kubernetes/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: k8s_client_attrs!(req("role", OneOf(K8S_ROLES))),
            blocks: &[
                block("attach_metadata", &K8S_ATTACH_METADATA),
                block("namespaces", &K8S_NAMESPACES),
                repeated("selectors", &K8S_SELECTORS),
                HTTP_AUTH_BLOCKS[0],
                HTTP_AUTH_BLOCKS[1],
                HTTP_AUTH_BLOCKS[2],
                HTTP_AUTH_BLOCKS[3],
            ],
            rules: &[],
        },
        exports: &[("targets", Targets)],
    },
    Component {
        name: "discovery.relabel",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/discovery/discovery.relabel/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[req("targets", Targets)],
            blocks: &[repeated("rule", &RELABEL_RULE)],
            rules: &[],
        },
        exports: &[("output", Targets), ("rules", Capsule(RelabelRules))],
    },
    Component {
        name: "prometheus.scrape",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/prometheus/prometheus.scrape/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[
                req("forward_to", ListOf(MetricsReceiver)),
                req("targets", Targets),
                opt("bearer_token_file", Str),
                opt("bearer_token", Secret),
                opt("body_size_limit", Number),
                opt("convert_classic_histograms_to_nhcb", Bool),
                opt("start_timestamp_zero_ingestion", Bool),
                opt("enable_compression", Bool),
                opt("enable_http2", Bool),
                opt("enable_protobuf_negotiation", Bool),
                opt("enable_type_and_unit_labels", Bool),
                opt("extra_metrics", Bool),
                opt("follow_redirects", Bool),
                opt("http_headers", Map),
                opt("honor_labels", Bool),
                opt("honor_timestamps", Bool),
                opt("honor_metadata", Bool),
                opt("job_name", Str),
                opt("label_limit", Number),
                opt("label_name_length_limit", Number),
                opt("label_value_length_limit", Number),
                opt("metric_name_escaping_scheme", Str),
                opt("metric_name_validation_scheme", Str),
                opt("metrics_path", Str),
                opt("native_histogram_bucket_limit", Number),
                opt("native_histogram_min_bucket_factor", Number),
                opt("no_proxy", Str),
                opt("params", Map),
                opt("proxy_connect_header", Map),
                opt("proxy_from_environment", Bool),
                opt("proxy_url", Str),
                opt("sample_limit", Number),
                opt("scheme", OneOf(&["http", "https"])),
                opt("scrape_classic_histograms", Bool),
                opt("scrape_failure_log_file", Str),
                opt("scrape_fallback_protocol", Str),
                opt("scrape_interval", Duration),
                opt("scrape_native_histograms", Bool),
                opt("scrape_protocols", StrList),
                opt("scrape_timeout", Duration),
                opt("target_limit", Number),
                opt("track_timestamps_staleness", Bool),
            ],
            blocks: &[
                block("clustering", &CLUSTERING),
                HTTP_AUTH_BLOCKS[0],
                HTTP_AUTH_BLOCKS[1],
                HTTP_AUTH_BLOCKS[2],
                HTTP_AUTH_BLOCKS[3],
            ],
            rules: &[],
        },
        exports: &[],
    },
    Component {
        name: "prometheus.remote_write",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/prometheus/prometheus.remote_write/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[opt("external_labels", StrMap)],
            blocks: &[
                repeated("endpoint", &REMOTE_WRITE_ENDPOINT),
                block("wal", &REMOTE_WRITE_WAL),
            ],
            rules: &[],
        },
        exports: &[("receiver", Capsule(MetricsReceiver))],
    },
    Component {
        name: "loki.source.kubernetes",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/loki/loki.source.kubernetes/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[
                req("forward_to", ListOf(LogsReceiver)),
                req("targets", Targets),
            ],
            blocks: &[
                block("client", &LOKI_K8S_CLIENT),
                block("clustering", &CLUSTERING),
            ],
            rules: &[],
        },
        exports: &[],
    },
    Component {
        name: "local.file",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/local/local.file/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[
                req("filename", Str),
                opt("detector", OneOf(&["fsnotify", "poll"])),
                opt("poll_frequency", Duration),
                opt("is_secret", Bool),
            ],
            blocks: &[],
            rules: &[],
        },
        // A secret when is_secret is set, else a string: typed as the stricter of the two.
        exports: &[("content", Secret)],
    },
    Component {
        name: "loki.write",
        doc: "https://grafana.com/docs/alloy/latest/reference/components/loki/loki.write/",
        kind: Kind::Component,
        body: BlockSpec {
            attrs: &[opt("external_labels", StrMap), opt("max_streams", Number)],
            blocks: &[repeated("endpoint", &LOKI_WRITE_ENDPOINT), opaque("wal")],
            rules: &[],
        },
        exports: &[("receiver", Capsule(LogsReceiver))],
    },
];

/// Looks a component or configuration block up by its full name.
pub fn component(name: &str) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.name == name)
}

/// Standard-library namespaces and functions (`syntax/internal/stdlib/stdlib.go`). Deprecated
/// top-level aliases such as `env` are still accepted by Alloy and so here.
pub static STDLIB: &[(&str, &[&str])] = &[
    ("sys", &["env"]),
    ("constants", &["hostname", "os", "arch", "version"]),
    ("convert", &["nonsensitive"]),
    ("array", &["concat", "combine_maps", "group_by"]),
    (
        "encoding",
        &[
            "from_json",
            "from_yaml",
            "from_base64",
            "from_URLbase64",
            "to_json",
            "to_base64",
            "to_URLbase64",
            "url_encode",
            "url_decode",
        ],
    ),
    (
        "string",
        &[
            "format",
            "join",
            "replace",
            "split",
            "to_lower",
            "to_upper",
            "trim",
            "trim_prefix",
            "trim_suffix",
            "trim_space",
        ],
    ),
    ("file", &["path_join"]),
];

/// Top-level functions (no namespace), including the deprecated aliases.
pub static STDLIB_FUNCTIONS: &[&str] = &[
    "coalesce",
    "json_path",
    "env",
    "nonsensitive",
    "concat",
    "json_decode",
    "yaml_decode",
    "base64_decode",
    "format",
    "join",
    "replace",
    "split",
    "to_lower",
    "to_upper",
    "trim",
    "trim_prefix",
    "trim_suffix",
    "trim_space",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check_spec(path: &str, spec: &BlockSpec) {
        let mut names: Vec<&str> = spec.attrs.iter().map(|a| a.name).collect();
        names.extend(spec.blocks.iter().map(|b| b.name));
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate name in {path}");
        for rule in spec.rules {
            let listed: Vec<&str> = match rule {
                Rule::ExactlyOne(a) => a.to_vec(),
                Rule::NotBoth(a, b) => a.iter().chain(b.iter()).copied().collect(),
            };
            for n in listed {
                assert!(names.contains(&n), "rule names unknown {n} in {path}");
            }
        }
        for b in spec.blocks {
            if let Some(inner) = b.spec {
                check_spec(&format!("{path} > {}", b.name), inner);
            }
        }
    }

    #[test]
    fn table_is_consistent_and_cites_the_docs() {
        let mut names: Vec<&str> = COMPONENTS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMPONENTS.len(), "duplicate component");
        for c in COMPONENTS {
            assert!(
                c.doc
                    .starts_with("https://grafana.com/docs/alloy/latest/reference/")
                    && c.doc.ends_with(&format!("{}/", c.name)),
                "{}: {}",
                c.name,
                c.doc
            );
            check_spec(c.name, &c.body);
            assert_eq!(
                c.kind == Kind::ConfigBlock,
                c.exports.is_empty() && c.name == "logging"
            );
        }
        assert!(component("otelcol.exporter.otlp").is_some());
        assert!(component("otelcol.exporter.otlpgrpc").is_none());
    }
}
