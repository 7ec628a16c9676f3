"""Loopback copies of the production files: Envoy's (envoy/envoy.yaml, envoy/otlp-gate.yaml,
envoy/alloy-client-sds.yaml) and the backends' (k8s/base/{loki,tempo,mimir}/*.yaml).

The tests and the demo run exactly the production files with only these substitutions:
  bootstrap   listen/admin ports, the Alloy address (-> the local receiver), the token-file
              directory, the client-certificate directory and its SDS file; every substitution
              must match the expected number of times, so a change to the production file that
              the rendering no longer covers fails loudly.
  SDS file    the client-certificate directory.
  token file  the module path, the module's pinned sha256, and the plugin configuration
              (the tests' own tokens); all Envoy settings stay as in production.
  backends    data directories, listen ports (on 127.0.0.1) and Tempo's Mimir address
              (tests/backends).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "envoy" / "envoy.yaml"
TOKEN_FILE = ROOT / "envoy" / "otlp-gate.yaml"
MODULE = ROOT / "target" / "wasm32-wasip1" / "release" / "otlp_gate.wasm"

SDS_FILE = ROOT / "envoy" / "alloy-client-sds.yaml"

PROD_CONFIG_DIR = "/etc/otlp-gate/config"
PROD_MODULE = "/etc/otlp-gate/wasm/otlp_gate.wasm"
# The cert-manager Secret with Envoy's client certificate for Alloy (tls.crt, tls.key, ca.crt).
PROD_CLIENT_TLS_DIR = "/etc/otlp-gate/alloy-client-tls"
PROD_SDS = "/etc/envoy/alloy-client-sds.yaml"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRUCT_TYPE = "type.googleapis.com/google.protobuf.Struct"


@dataclass
class Ports:
    data: int
    probe: int
    admin: int
    alloy_http: int
    alloy_grpc: int
    health: int


def substitute(text: str, subs, source: Path, leftovers=()) -> str:
    """`text` (the contents of `source`) with each (old, new, count) substitution applied; each
    `old` must occur exactly `count` times and no `leftovers` string may remain afterwards."""
    for old, new, count in subs:
        found = text.count(old)
        if found != count:
            raise AssertionError(
                f"render: expected {count} occurrence(s) of {old!r} in {source}, found {found}; "
                "update tests/e2e/render.py with the production file"
            )
        text = text.replace(old, new)
    for leftover in leftovers:
        if leftover in text:
            raise AssertionError(f"render: {leftover!r} left in the loopback copy of {source}")
    return text


def without_comments(path: Path) -> str:
    """The file without its whole-line comments (they mention production paths)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.lstrip().startswith("#"))


def render_bootstrap(ports: Ports, config_dir: Path, client_tls_dir: Path, sds_file: Path) -> str:
    """envoy/envoy.yaml with loopback addresses and ports, a local token-file directory and a
    local client-certificate directory (served by `sds_file`, see render_sds)."""
    subs = [
        # (production text, loopback text, expected occurrences)
        ("{address: 0.0.0.0, port_value: 8080}", f"{{address: 127.0.0.1, port_value: {ports.data}}}", 1),
        ("{address: 127.0.0.1, port_value: 8082}", f"{{address: 127.0.0.1, port_value: {ports.health}}}", 2),
        ("{address: 0.0.0.0, port_value: 8081}", f"{{address: 127.0.0.1, port_value: {ports.probe}}}", 1),
        ("{address: 127.0.0.1, port_value: 9901}", f"{{address: 127.0.0.1, port_value: {ports.admin}}}", 2),
        ("{address: alloy.observability.svc.cluster.local, port_value: 4318}",
         f"{{address: 127.0.0.1, port_value: {ports.alloy_http}}}", 1),
        ("{address: alloy.observability.svc.cluster.local, port_value: 4317}",
         f"{{address: 127.0.0.1, port_value: {ports.alloy_grpc}}}", 1),
        (PROD_CONFIG_DIR, str(config_dir), 4),
        (PROD_SDS, str(sds_file), 2),
        (PROD_CLIENT_TLS_DIR, str(client_tls_dir), 2),
    ]
    # The SNI and the name Alloy's certificate must carry stay: the test certificate has it.
    return substitute(without_comments(BOOTSTRAP), subs, BOOTSTRAP, ("0.0.0.0", "/etc/", ":4317", ":4318"))


def render_sds(client_tls_dir: Path) -> str:
    """envoy/alloy-client-sds.yaml pointing at a local client-certificate directory."""
    return substitute(without_comments(SDS_FILE), [(PROD_CLIENT_TLS_DIR, str(client_tls_dir), 3)],
                      SDS_FILE, ("/etc/",))


def production_token_doc() -> dict:
    return yaml.safe_load(TOKEN_FILE.read_text(encoding="utf-8"))


def plugin_config(doc: dict) -> dict:
    """The PluginConfig (`typed_config.config`) of the one Wasm resource in an ECDS document."""
    resources = doc.get("resources") or []
    if len(resources) != 1 or resources[0].get("typed_config", {}).get("@type") != WASM_TYPE:
        raise AssertionError("token file: expected exactly one Wasm resource")
    return resources[0]["typed_config"]["config"]


def module_pin(doc: dict) -> tuple[str, str]:
    """(module path, pinned sha256) recorded in an ECDS document."""
    vm = plugin_config(doc)["vm_config"]
    pin = vm.get("configuration", {})
    if pin.get("@type") != STRUCT_TYPE or "sha256" not in pin.get("value", {}):
        raise AssertionError("token file: vm_config.configuration must be a Struct with the module sha256")
    return vm["code"]["local"]["filename"], pin["value"]["sha256"]


def verify_module_pin(doc: dict) -> str:
    """Check that the module the document loads is the one it pins; returns the digest.

    Envoy does not check a local module's digest, so every place that starts Envoy checks it."""
    path, pinned = module_pin(doc)
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned:
        raise AssertionError(
            f"module {path} has sha256 {actual}, the token file pins {pinned}: refusing to start Envoy"
        )
    return actual


def token_doc(settings: dict, version: str, module: Path = MODULE) -> dict:
    """The production ECDS document with our plugin configuration and the local module."""
    doc = copy.deepcopy(production_token_doc())
    doc["version_info"] = version
    cfg = plugin_config(doc)
    cfg["vm_config"]["code"]["local"]["filename"] = str(module)
    cfg["vm_config"]["configuration"]["value"]["sha256"] = hashlib.sha256(module.read_bytes()).hexdigest()
    cfg["configuration"] = {"@type": STRUCT_TYPE, "value": settings}
    return doc


def dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def static_twin(bootstrap_text: str, doc: dict) -> str:
    """The bootstrap with the ECDS filter inlined, for `envoy --mode validate` (which does not
    read file-based xDS contents but does load the module and run on_configure)."""
    boot = yaml.safe_load(bootstrap_text)
    resource = doc["resources"][0]
    replaced = 0
    for listener in boot["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for hf in f.get("typed_config", {}).get("http_filters", []):
                    if hf.get("name") == resource["name"] and "config_discovery" in hf:
                        del hf["config_discovery"]
                        hf["typed_config"] = resource["typed_config"]
                        replaced += 1
    if replaced != 2:
        raise AssertionError(f"static twin: replaced {replaced} ECDS filters, expected 2 (data and health listeners)")
    return yaml.safe_dump(boot, sort_keys=False)


# ----------------------------------------------------------------------------- backends

K8S_BASE = ROOT / "k8s" / "base"


@dataclass
class BackendPorts:
    http: int
    grpc: int
    otlp_grpc: int = 0  # Tempo's OTLP receivers
    otlp_http: int = 0


def render_loki(ports: BackendPorts, data: Path, overrides: Path) -> str:
    """k8s/base/loki/loki.yaml with loopback ports, `data` for /var/loki and a local overrides file."""
    src = K8S_BASE / "loki" / "loki.yaml"
    return substitute(without_comments(src), [
        ("http_listen_port: 3100", f"http_listen_address: 127.0.0.1\n  http_listen_port: {ports.http}", 1),
        ("grpc_listen_port: 9095", f"grpc_listen_address: 127.0.0.1\n  grpc_listen_port: {ports.grpc}", 1),
        ("/var/loki", str(data), 4),
        ("/etc/loki/overrides/overrides.yaml", str(overrides), 1),
    ], src, ("/var/", "/etc/"))


def render_tempo(ports: BackendPorts, data: Path, overrides: Path, mimir_push: str) -> str:
    """k8s/base/tempo/tempo.yaml with loopback ports and addresses, `data` for /var/tempo, a local
    overrides file and the address of a Mimir (or of nothing) for the metrics generator."""
    src = K8S_BASE / "tempo" / "tempo.yaml"
    return substitute(without_comments(src), [
        ("http_listen_port: 3200", f"http_listen_address: 127.0.0.1\n  http_listen_port: {ports.http}", 1),
        ("grpc_listen_port: 9095", f"grpc_listen_address: 127.0.0.1\n  grpc_listen_port: {ports.grpc}", 1),
        ('endpoint: "0.0.0.0:4317"', f'endpoint: "127.0.0.1:{ports.otlp_grpc}"', 1),
        ('endpoint: "0.0.0.0:4318"', f'endpoint: "127.0.0.1:{ports.otlp_http}"', 1),
        ("/var/tempo", str(data), 6),
        ("/etc/tempo/overrides/overrides.yaml", str(overrides), 1),
        ("http://mimir:9009/api/v1/push", mimir_push, 1),
    ], src, ("/var/", "/etc/", "0.0.0.0"))


def render_mimir(ports: BackendPorts, data: Path, overrides: Path, rules: Path, alertmanager: Path) -> str:
    """k8s/base/mimir/mimir.yaml with loopback ports and addresses, `data` for /data, a local
    overrides file, `rules` for the ruler's local store (laid out <tenant>/<namespace> as the
    ConfigMap mount is) and a local copy of the Alertmanager fallback configuration."""
    src = K8S_BASE / "mimir" / "mimir.yaml"
    text = without_comments(src)
    return substitute(text, [
        ("http_listen_port: 9009", f"http_listen_address: 127.0.0.1\n  http_listen_port: {ports.http}", 1),
        ("grpc_listen_port: 9095", f"grpc_listen_address: 127.0.0.1\n  grpc_listen_port: {ports.grpc}", 1),
        (" /data/", f" {data}/", 8),
        ("/etc/mimir/overrides/overrides.yaml", str(overrides), 1),
        ("directory: /etc/mimir/rules", f"directory: {rules}", 1),
        ("/etc/mimir/alertmanager/alertmanager.yaml", str(alertmanager), 1),
        ("http://localhost:9009/", f"http://127.0.0.1:{ports.http}/", 1),
        ("http://mimir:9009/", f"http://127.0.0.1:{ports.http}/", 1),
    ], src, (" /data", "/etc/", ":9009"))
