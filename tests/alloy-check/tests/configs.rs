//! The project's real Alloy configurations pass, and broken copies of them fail with the
//! problem named. Each mutation first asserts that the text it replaces exists, so a change to
//! the config cannot turn these tests into no-ops.
#![allow(clippy::panic)] // test code: a panic is a failed test

use alloy_check::{Source, check};

fn repo_file(name: &str) -> String {
    let path = format!("{}/../../alloy/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// config.alloy + kubernetes.alloy, as the Kubernetes bundle loads them.
fn k8s_set() -> Vec<(String, String)> {
    vec![
        ("config.alloy".into(), repo_file("config.alloy")),
        ("kubernetes.alloy".into(), repo_file("kubernetes.alloy")),
    ]
}

fn run(files: &[(String, String)]) -> Result<alloy_check::Summary, Vec<String>> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(n, t)| Source::new(n.clone(), t.clone()))
        .collect();
    check(&sources).map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

/// Replaces the first `from` with `to` in `file` of the set and returns the errors.
fn broken(file: &str, from: &str, to: &str) -> Vec<String> {
    let mut files = k8s_set();
    let entry = files
        .iter_mut()
        .find(|(n, _)| n == file)
        .unwrap_or_else(|| panic!("no {file}"));
    assert!(
        entry.1.contains(from),
        "{file} no longer contains {from:?}: update this test"
    );
    entry.1 = entry.1.replacen(from, to, 1);
    match run(&files) {
        Ok(_) => panic!("broken config accepted: {from:?} -> {to:?}"),
        Err(errors) => errors,
    }
}

fn assert_reports(errors: &[String], want: &str) {
    assert!(
        errors.iter().any(|e| e.contains(want)),
        "expected an error containing {want:?}, got {errors:#?}"
    );
}

#[test]
fn the_kubernetes_configuration_is_valid() {
    let summary = run(&k8s_set()).unwrap_or_else(|e| panic!("{e:#?}"));
    for id in [
        "otelcol.receiver.otlp.gateway",
        "otelcol.processor.batch.per_tenant",
        "otelcol.auth.headers.tenant",
        "prometheus.scrape.annotated_pods",
        "loki.source.kubernetes.gateway",
    ] {
        assert!(summary.components.iter().any(|c| c == id), "{id}");
    }
    assert_eq!(summary.config_blocks, vec!["logging".to_owned()]);
}

#[test]
fn the_compose_configuration_is_valid() {
    let files = vec![
        ("config.alloy".to_owned(), repo_file("config.alloy")),
        ("compose.alloy".to_owned(), repo_file("compose.alloy")),
    ];
    run(&files).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn kubernetes_sources_alone_miss_their_destinations() {
    let files = vec![("kubernetes.alloy".to_owned(), repo_file("kubernetes.alloy"))];
    let errors = run(&files).err().unwrap_or_default();
    assert_reports(
        &errors,
        "reference to undeclared component `prometheus.remote_write` with label \"platform\" (no `prometheus.remote_write` is declared)",
    );
    assert_reports(
        &errors,
        "reference to undeclared component `loki.write` with label \"platform\"",
    );
}

#[test]
fn syntax_errors() {
    assert_reports(
        &broken(
            "config.alloy",
            "  level  = \"info\"\n",
            "  level  = \"info\" format = \"json\"\n",
        ),
        "expected end of line after statement, got identifier \"format\" (one statement per line)",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "endpoint = \"tempo:4317\"",
            "endpoint = 'tempo:4317'",
        ),
        "illegal single-quoted string; use double quotes",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "otelcol.exporter.otlp \"tempo\" {",
            "otelcol.exporter.otlp \"tempo-grpc\" {",
        ),
        "expected block label to be a valid identifier, but got \"tempo-grpc\"",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "  clustering {\n    enabled = true\n  }\n}\n\n// The gateway",
            "  clustering {\n    enabled = true\n\n// The gateway",
        ),
        "expected \"}\", got end of file",
    );
}

#[test]
fn unknown_components_arguments_and_blocks() {
    assert_reports(
        &broken(
            "config.alloy",
            "otelcol.exporter.otlphttp \"loki\" {",
            "otelcol.exporter.otlphtp \"loki\" {",
        ),
        "unknown component `otelcol.exporter.otlphtp` (did you mean `otelcol.exporter.otlphttp`?)",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "include_metadata  = true",
            "include_metdata  = true",
        ),
        "unknown attribute `include_metdata` in otelcol.receiver.otlp \"gateway\" > grpc (did you mean `include_metadata`?)",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "  sending_queue {\n    queue_size = 2000\n  }",
            "  sending_que {\n    queue_size = 2000\n  }",
        ),
        "unknown block `sending_que` in otelcol.exporter.otlp \"tempo\" (did you mean `sending_queue`?)",
    );
    assert_reports(
        &broken("config.alloy", "logging {", "logging \"main\" {"),
        "`logging` block must not have a label",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "  level  = \"info\"",
            "  level  = \"verbose\"",
        ),
        "`level` in logging: must be one of [\"error\", \"warn\", \"info\", \"debug\"], got \"verbose\"",
    );
}

#[test]
fn labels_must_exist_and_be_unique() {
    assert_reports(
        &broken(
            "config.alloy",
            "otelcol.auth.headers \"tenant\" {",
            "otelcol.auth.headers {",
        ),
        "component `otelcol.auth.headers` must have a label",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "discovery.kubernetes \"gateway_pods\" {",
            "discovery.kubernetes \"pods\" {",
        ),
        "component `discovery.kubernetes` with label \"pods\" is already declared at kubernetes.alloy:",
    );
    // Uniqueness spans files, as in `alloy run DIR`.
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "prometheus.scrape \"annotated_pods\" {",
            "otelcol.receiver.otlp \"gateway\" {",
        ),
        "is already declared at config.alloy:",
    );
}

#[test]
fn required_arguments_and_blocks() {
    assert_reports(
        &broken("config.alloy", "  check_interval         = \"1s\"\n", ""),
        "missing required attribute `check_interval` in otelcol.processor.memory_limiter \"default\"",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "    endpoint = \"http://loki:3100/otlp\"\n",
            "",
        ),
        "missing required attribute `endpoint` in otelcol.exporter.otlphttp \"loki\" > client",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "discovery.kubernetes \"pods\" {\n  role = \"pod\"\n",
            "discovery.kubernetes \"pods\" {\n",
        ),
        "missing required attribute `role` in discovery.kubernetes \"pods\"",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "  forward_to = [loki.write.platform.receiver]\n",
            "",
        ),
        "missing required attribute `forward_to` in loki.source.kubernetes \"gateway\"",
    );
    let no_output = broken(
        "config.alloy",
        "  output {\n    logs    = [otelcol.exporter.otlphttp.loki.input]\n    metrics = [otelcol.exporter.otlphttp.mimir.input]\n    traces  = [otelcol.exporter.otlp.tempo.input]\n  }\n",
        "",
    );
    assert_reports(
        &no_output,
        "missing required block `output` in otelcol.processor.batch \"per_tenant\"",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "    from_context = \"x-scope-orgid\"\n",
            "    from_context = \"x-scope-orgid\"\n    value = \"team-a\"\n",
        ),
        "exactly one of `value`, `from_context`, `from_attribute` must be set in otelcol.auth.headers \"tenant\" > header (2 set)",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "  limit_percentage       = 80\n",
            "  limit_percentage       = 80\n  limit = \"1GiB\"\n",
        ),
        "sets limit and limit_percentage, spike_limit_percentage: use one form, not both",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "  sending_queue {\n    queue_size = 2000\n  }\n\n  retry_on_failure {",
            "  sending_queue {\n    queue_size = 2000\n  }\n  sending_queue {\n    queue_size = 1\n  }\n\n  retry_on_failure {",
        ),
        "block `sending_queue` may appear only once in otelcol.exporter.otlp \"tempo\"",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "    include_metadata  = true\n",
            "    include_metadata  = true\n    include_metadata  = false\n",
        ),
        "attribute `include_metadata` in otelcol.receiver.otlp \"gateway\" > grpc is already set at config.alloy:",
    );
}

#[test]
fn references_must_resolve_to_the_right_export() {
    assert_reports(
        &broken(
            "config.alloy",
            "traces  = [otelcol.exporter.otlp.tempo.input]",
            "traces  = [otelcol.exporter.otlp.tmpo.input]",
        ),
        "reference to undeclared component `otelcol.exporter.otlp` with label \"tmpo\" (declared labels: \"tempo\")",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "auth     = otelcol.auth.headers.tenant.handler",
            "auth     = otelcol.auth.headers.tenant.input",
        ),
        "`otelcol.auth.headers` has no export `input` (its exports: handler)",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "auth     = otelcol.auth.headers.tenant.handler",
            "auth     = otelcol.auth.headers.tenant",
        ),
        "`otelcol.auth.headers.tenant` is a component, not a value; use one of its exports: handler",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "logs    = [otelcol.exporter.otlphttp.loki.input]",
            "logs    = [loki.write.platform.receiver]",
        ),
        "`logs` in otelcol.processor.batch \"per_tenant\" > output: list item: expected otelcol.Consumer, got loki.write.platform.receiver (a LogsReceiver)",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "forward_to               = [prometheus.remote_write.platform.receiver]",
            "forward_to               = prometheus.remote_write.platform.receiver",
        ),
        "expected list(MetricsReceiver), got prometheus.remote_write.platform.receiver (a MetricsReceiver)",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "cluster = sys.env(\"CLUSTER_NAME\"),\n  }\n}\n\nloki.write",
            "cluster = sys.envv(\"CLUSTER_NAME\"),\n  }\n}\n\nloki.write",
        ),
        "unknown identifier `sys.envv` (did you mean `sys.env`?)",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "targets = discovery.kubernetes.pods.targets",
            "targets = discovery_kubernetes.pods.targets",
        ),
        "unknown identifier `discovery_kubernetes.pods.targets`",
    );
}

#[test]
fn cycles_are_refused() {
    assert_reports(
        &broken(
            "config.alloy",
            "traces  = [otelcol.exporter.otlp.tempo.input]",
            "traces  = [otelcol.processor.memory_limiter.default.input]",
        ),
        "references form a cycle: ",
    );
}

#[test]
fn types_and_durations() {
    assert_reports(
        &broken(
            "config.alloy",
            "check_interval         = \"1s\"",
            "check_interval         = \"1 second\"",
        ),
        "`check_interval` in otelcol.processor.memory_limiter \"default\": invalid duration \"1 second\"",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "include_metadata      = true",
            "include_metadata      = \"true\"",
        ),
        "`include_metadata` in otelcol.receiver.otlp \"gateway\" > http: expected bool, got a string",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "metadata_keys              = [\"x-scope-orgid\"]",
            "metadata_keys              = \"x-scope-orgid\"",
        ),
        "expected list(string), got a string",
    );
    assert_reports(
        &broken("kubernetes.alloy", "role = \"pod\"", "role = \"pods\""),
        "must be one of [\"node\", \"pod\", \"service\", \"endpoints\", \"endpointslice\", \"ingress\"], got \"pods\"",
    );
    assert_reports(
        &broken(
            "kubernetes.alloy",
            "action        = \"keepequal\"",
            "action        = \"keep_equal\"",
        ),
        "got \"keep_equal\"",
    );
}

#[test]
fn the_tenant_header_must_survive_the_pipeline() {
    assert_reports(
        &broken(
            "config.alloy",
            "metadata_keys              = [\"x-scope-orgid\"]",
            "metadata_keys              = []",
        ),
        "`otelcol.processor.batch.per_tenant` must list \"x-scope-orgid\" in metadata_keys",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "  metadata_keys              = [\"x-scope-orgid\"]\n",
            "",
        ),
        "must list \"x-scope-orgid\" in metadata_keys",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "    endpoint              = \"0.0.0.0:4318\"\n    include_metadata      = true\n",
            "    endpoint              = \"0.0.0.0:4318\"\n",
        ),
        "`otelcol.receiver.otlp.gateway` > http must set include_metadata = true",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "    include_metadata  = true\n    max_recv",
            "    include_metadata  = false\n    max_recv",
        ),
        "`otelcol.receiver.otlp.gateway` > grpc must set include_metadata = true",
    );
}

#[test]
fn the_tenant_header_is_taken_only_from_clients_with_a_certificate() {
    // Without client_ca_file a TLS server does not ask for a client certificate.
    assert_reports(
        &broken(
            "config.alloy",
            "      client_ca_file  = \"/etc/alloy-tls/ca.crt\"\n",
            "",
        ),
        "`otelcol.receiver.otlp.gateway` > grpc must authenticate its clients",
    );
    let errors = broken(
        "config.alloy",
        "    max_request_body_size = \"16MiB\"\n\n    tls {\n      cert_file       = \"/etc/alloy-tls/tls.crt\"\n      key_file        = \"/etc/alloy-tls/tls.key\"\n      client_ca_file  = \"/etc/alloy-tls/ca.crt\"\n      min_version     = \"1.3\"\n      reload_interval = \"1h\"\n    }\n",
        "    max_request_body_size = \"16MiB\"\n",
    );
    assert_reports(
        &errors,
        "`otelcol.receiver.otlp.gateway` > http must authenticate its clients",
    );
}

#[test]
fn server_tls_blocks_are_checked() {
    assert_reports(
        &broken(
            "config.alloy",
            "      key_file        = \"/etc/alloy-tls/tls.key\"\n",
            "",
        ),
        "exactly one of `key_file`, `key_pem` must be set",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "      min_version     = \"1.3\"",
            "      min_version     = \"TLS13\"",
        ),
        "min_version",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "      reload_interval = \"1h\"",
            "      reload_interval = \"hourly\"",
        ),
        "reload_interval",
    );
    assert_reports(
        &broken(
            "config.alloy",
            "      client_ca_file  = \"/etc/alloy-tls/ca.crt\"",
            "      client_ca     = \"/etc/alloy-tls/ca.crt\"",
        ),
        "client_ca",
    );
}

/// The external-lgtm component's generated variants (k8s/variants.py) with kubernetes.alloy.
fn external_set(variant: &str) -> Vec<(String, String)> {
    let path = format!(
        "{}/../../k8s/components/external-lgtm/{variant}config.alloy",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    vec![
        ("config.alloy".into(), text),
        ("kubernetes.alloy".into(), repo_file("kubernetes.alloy")),
    ]
}

fn external_broken(from: &str, to: &str) -> Vec<String> {
    let mut files = external_set("");
    assert!(
        files[0].1.contains(from),
        "the external config no longer contains {from:?}: update this test"
    );
    files[0].1 = files[0].1.replacen(from, to, 1);
    match run(&files) {
        Ok(_) => panic!("broken config accepted: {from:?} -> {to:?}"),
        Err(errors) => errors,
    }
}

#[test]
fn the_external_lgtm_variants_are_valid() {
    for variant in ["", "bearer/"] {
        let summary = run(&external_set(variant)).unwrap_or_else(|e| panic!("{variant}: {e:#?}"));
        for id in [
            "otelcol.auth.headers.loki",
            "otelcol.auth.headers.tempo",
            "local.file.mimir_authorization",
        ] {
            assert!(
                summary.components.iter().any(|c| c == id),
                "{variant}: {id}"
            );
        }
    }
}

#[test]
fn external_lgtm_secrets_and_auth_blocks_are_checked() {
    // A secret (local.file with is_secret) cannot become a plain string argument.
    let errors = external_broken(
        "username      = sys.env(\"EXTERNAL_MIMIR_USERNAME\")",
        "username      = local.file.mimir_authorization.content",
    );
    assert_reports(
        &errors,
        "expected string, got local.file.mimir_authorization.content",
    );
    // basic_auth takes a password or a password_file, not both.
    let errors = external_broken(
        "password_file = \"/etc/otlp-gate/external-secret/loki-password\"",
        "password_file = \"/etc/otlp-gate/external-secret/loki-password\"\n      password = \"x\"",
    );
    assert_reports(&errors, "sets password and password_file");
    // tls_config's fields are known now.
    let errors = external_broken("tls_config {\n      ca_file", "tls_config {\n      ca_fil");
    assert_reports(&errors, "ca_fil");
    // The Authorization header must come from a declared local.file.
    let errors = external_broken(
        "value  = local.file.loki_authorization.content",
        "value  = local.file.loki_auth.content",
    );
    assert_reports(
        &errors,
        "undeclared component `local.file` with label \"loki_auth\"",
    );
}
