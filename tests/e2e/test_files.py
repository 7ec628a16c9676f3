"""The production files in envoy/ as they are: the token file passes `otlp-gate check` and holds
only digests with tenants, the bootstrap keeps its contract (ports, admin on localhost, ECDS from
a watched directory, access log without credentials, labels for every gate metric), the loopback
rendering changes nothing else, `envoy --mode validate` accepts them with the real module (and
refuses a bad token list), and HAProxy accepts its config."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import subprocess

import pytest
import yaml

import render
import stack as st

BOOT = yaml.safe_load(render.BOOTSTRAP.read_text())
ECDS = render.production_token_doc()
GATE_FILTER = "otlp-gate"


def listeners() -> dict:
    return {lst["name"]: lst for lst in BOOT["static_resources"]["listeners"]}


def hcm(listener: dict) -> dict:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def test_token_file_passes_the_cli_check(cli):
    out = st.cli_check(render.TOKEN_FILE)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_token_file_holds_only_digests_each_with_a_tenant():
    cfg = render.plugin_config(ECDS)
    tokens = cfg["configuration"]["value"]["tokens"]
    assert tokens, "the shipped file has example entries"
    for t in tokens:
        assert "token" not in t, f"{t['id']}: plaintext token"
        assert re.fullmatch(r"[0-9a-f]{64}", t["sha256"]), t["id"]
        assert t.get("tenant"), f"{t['id']}: no tenant"


def test_token_file_envoy_settings():
    resource = ECDS["resources"][0]
    assert resource["@type"] == "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
    assert resource["name"] == GATE_FILTER, "ECDS resources are matched to the filter by name"
    cfg = resource["typed_config"]["config"]
    assert cfg["failure_policy"] == "FAIL_CLOSED" and "fail_open" not in cfg
    assert cfg["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    path, pin = render.module_pin(ECDS)
    assert path == render.PROD_MODULE
    assert re.fullmatch(r"[0-9a-f]{64}", pin)
    assert cfg["configuration"]["@type"] == render.STRUCT_TYPE


def test_module_pin_is_enforced_before_envoy_starts(tmp_path, module):
    doc = render.token_doc({"tokens": []}, "1")
    assert render.verify_module_pin(doc) == hashlib.sha256(module.read_bytes()).hexdigest()
    other = tmp_path / "other.wasm"
    other.write_bytes(module.read_bytes() + b"\0")
    render.plugin_config(doc)["vm_config"]["code"]["local"]["filename"] = str(other)
    with pytest.raises(AssertionError, match="refusing to start Envoy"):
        render.verify_module_pin(doc)


def test_bootstrap_contract():
    assert BOOT["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    ls = listeners()
    assert ls["otlp"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    assert ls["probe"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8081}
    gate = [f for f in hcm(ls["otlp"])["http_filters"] if f["name"] == GATE_FILTER]
    assert len(gate) == 1
    source = gate[0]["config_discovery"]["config_source"]["path_config_source"]
    assert source["path"] == f"{render.PROD_CONFIG_DIR}/otlp-gate.yaml"
    assert source["watched_directory"]["path"] == os.path.dirname(source["path"])
    assert "default_config" not in gate[0]["config_discovery"], "no fallback config: never fail open"
    clusters = {c["name"]: c for c in BOOT["static_resources"]["clusters"]}
    addr = lambda c: clusters[c]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]  # noqa: E731
    assert addr("alloy_http") == {"address": "alloy.observability.svc.cluster.local", "port_value": 4318}
    assert addr("alloy_grpc") == {"address": "alloy.observability.svc.cluster.local", "port_value": 4317}
    assert "http2_protocol_options" in str(clusters["alloy_grpc"]["typed_extension_protocol_options"])
    # Routes match the paths as the filter forwards them; nothing rewrites them.
    routes = hcm(ls["otlp"])["route_config"]["virtual_hosts"][0]["routes"]
    paths = {r["match"].get("path") for r in routes if "route" in r}
    assert paths == {"/v1/traces", "/v1/metrics", "/v1/logs",
                     "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                     "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                     "/opentelemetry.proto.collector.logs.v1.LogsService/Export"}
    assert "prefix_rewrite" not in str(routes) and "regex_rewrite" not in str(routes)


def test_health_listener_is_loopback_only_and_named_for_the_gate():
    """healthz answers in detail only on the filter chain named as gate::HEALTH_CHAIN, which is
    bound to loopback, forwards nothing, and is what the probe's /healthz reaches."""
    chain_name = re.search(r'HEALTH_CHAIN: &str = "([^"]+)"',
                           (render.ROOT / "filter" / "src" / "gate.rs").read_text()).group(1)
    health = listeners()["health"]
    assert health["address"]["socket_address"]["address"] == "127.0.0.1"
    assert [c.get("name") for c in health["filter_chains"]] == [chain_name]
    assert all(c.get("name") != chain_name for n, lst in listeners().items() if n != "health"
               for c in lst["filter_chains"])
    routes = hcm(health)["route_config"]["virtual_hosts"][0]["routes"]
    assert all("direct_response" in r for r in routes), "the health listener forwards nothing"
    gate = [f for f in hcm(health)["http_filters"] if f["name"] == GATE_FILTER]
    otlp_gate = [f for f in hcm(listeners()["otlp"])["http_filters"] if f["name"] == GATE_FILTER]
    assert gate[0]["config_discovery"] == otlp_gate[0]["config_discovery"], "the same ECDS resource"
    clusters = {c["name"]: c for c in BOOT["static_resources"]["clusters"]}
    target = clusters["otlp_self"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert target["socket_address"] == health["address"]["socket_address"]


def test_access_log_never_includes_credentials():
    logs = hcm(listeners()["otlp"])["access_log"]
    text = yaml.safe_dump(logs).lower()
    assert "%req(x-otlp-token-id)%" in text
    assert "authorization" not in text and "%req(:path)%" not in text


def metric_names() -> set[str]:
    """Every stat name pattern filter/src/metrics.rs builds, with sample label values (a tenant
    with dots, as Loki and Mimir allow)."""
    src = (render.ROOT / "filter" / "src" / "metrics.rs").read_text()
    names = set()
    for const in re.findall(r'"(otlp_gate_[a-z_.]+)"', src):
        names.add(const)
    # by_signal_and_outcome("BASE", ...) and token_metric("BASE", id, "LABEL", value) calls.
    for base in re.findall(r'by_signal_and_outcome\(\s*"(otlp_gate_[a-z_]+)"', src):
        names.add(f"{base}.signal.traces.outcome.accepted")
    calls = re.findall(r'token_metric\(\s*"(otlp_gate_[a-z_]+)",\s*\w+,\s*(?:"([^"]*)"|label)', src)
    assert calls, "metrics.rs builds per-token names with token_metric()"
    for base, label in calls:
        for suffix in ({"": "", ".outcome.": ".outcome.rate_limited"}.get(label, "")
                       if base != "otlp_gate_token_info" else ".tenant.team.a-1", ""):
            names.add(f"{base}.token_id.team-a_1{suffix}")
    return names


def test_stats_tags_cover_every_labelled_gate_metric():
    tags = BOOT["stats_config"]["stats_tags"]
    names = metric_names()
    labelled = {n for n in names if "." in n}
    assert len(labelled) >= 5, sorted(names)
    for name in labelled:
        full = f"wasmcustom.{name}"
        remaining = full
        cut = []
        for tag in tags:
            m = re.search(tag["regex"], full)
            if m:
                cut.append(m.span(1))
        for start, end in sorted(cut, reverse=True):
            remaining = remaining[:start] + remaining[end:]
        assert "." not in remaining.removeprefix("wasmcustom."), f"{name}: labels left in the name"
    for want in ("otlp_gate_token_refused_total.token_id.team-a_1.outcome.rate_limited",
                 "otlp_gate_token_info.token_id.team-a_1.tenant.team.a-1",
                 "otlp_gate_token_last_seen_timestamp_seconds.token_id.team-a_1"):
        assert want in labelled, sorted(labelled)


def test_loopback_rendering_changes_only_addresses_and_paths(tmp_path):
    ports = render.Ports(18080, 18081, 19901, 14318, 14317, 18082)
    tls_dir, sds = tmp_path / "tls", tmp_path / "sds.yaml"
    rendered = yaml.safe_load(render.render_bootstrap(ports, tmp_path, tls_dir, sds))
    # The same substitutions, applied to the production tree independently of the text rendering.
    expected = copy.deepcopy(BOOT)
    expected["admin"]["address"]["socket_address"]["port_value"] = ports.admin
    for lst in expected["static_resources"]["listeners"]:
        sa = lst["address"]["socket_address"]
        sa.update(address="127.0.0.1",
                  port_value={8080: ports.data, 8081: ports.probe, 8082: ports.health}[sa["port_value"]])
        for f in hcm(lst)["http_filters"]:
            if f["name"] == GATE_FILTER:
                pcs = f["config_discovery"]["config_source"]["path_config_source"]
                pcs["path"] = f"{tmp_path}/otlp-gate.yaml"
                pcs["watched_directory"]["path"] = str(tmp_path)
    new_port = {"alloy_http": ports.alloy_http, "alloy_grpc": ports.alloy_grpc,
                "otlp_self": ports.health, "envoy_admin": ports.admin}
    for c in expected["static_resources"]["clusters"]:
        sa = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        sa.update(address="127.0.0.1", port_value=new_port[c["name"]])
        if c["name"].startswith("alloy_"):
            ctx = c["transport_socket"]["typed_config"]["common_tls_context"]
            ctx["tls_certificate_sds_secret_configs"][0]["sds_config"]["path_config_source"]["path"] = str(sds)
            ctx["validation_context"]["trusted_ca"]["filename"] = f"{tls_dir}/ca.crt"
    assert rendered == expected
    sds_doc = yaml.safe_load(render.render_sds(tls_dir))
    want = yaml.safe_load(render.SDS_FILE.read_text())
    cert = want["resources"][0]["tls_certificate"]
    cert["certificate_chain"]["filename"] = f"{tls_dir}/tls.crt"
    cert["private_key"]["filename"] = f"{tls_dir}/tls.key"
    cert["watched_directory"]["path"] = str(tls_dir)
    assert sds_doc == want


def envoy_validate(path) -> subprocess.CompletedProcess:
    return subprocess.run([st.envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "error"],
                          capture_output=True, text=True, timeout=120)


def test_envoy_validate_runs_the_filter_on_the_token_file(tmp_path, module):
    import certs
    ports = render.Ports(18080, 18081, 19901, 14318, 14317, 18082)
    internal = certs.make_internal_certs(tmp_path / "internal")
    sds = tmp_path / "sds.yaml"
    sds.write_text(render.render_sds(internal.client_dir))
    boot = render.render_bootstrap(ports, tmp_path, internal.client_dir, sds)
    doc = copy.deepcopy(ECDS)
    render.plugin_config(doc)["vm_config"]["code"]["local"]["filename"] = str(module)
    good = tmp_path / "twin.yaml"
    good.write_text(render.static_twin(boot, doc))
    out = envoy_validate(good)
    assert out.returncode == 0, out.stdout + out.stderr

    render.plugin_config(doc)["configuration"]["value"]["tokens"][0]["sha256"] = "xyz"
    bad = tmp_path / "twin-bad.yaml"
    bad.write_text(render.static_twin(boot, doc))
    out = envoy_validate(bad)
    assert out.returncode != 0
    assert "tokens[0].sha256" in out.stdout + out.stderr


def test_haproxy_config_is_valid(tmp_path):
    env = {**os.environ, "HAPROXY_HTTP_ADDR": "127.0.0.1:18000", "HAPROXY_HTTPS_ADDR": "127.0.0.1:18443",
           "HAPROXY_TLS_PEM": str(tmp_path / "x.pem"), "ENVOY_ADDR": "127.0.0.1:8080",
           "ENVOY_PROBE_PORT": "8081", "GRAFANA_ADDR": "127.0.0.1:3000", "HAPROXY_SOURCE_ADDR": "0.0.0.0"}
    import certs
    env["HAPROXY_TLS_PEM"] = str(certs.make_certs(tmp_path / "tls").haproxy_pem)
    out = subprocess.run(["haproxy", "-c", "-f", str(st.HAPROXY_CFG)], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
