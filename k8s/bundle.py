#!/usr/bin/env python3
"""Helpers for k8s/validate.sh and k8s/update-wasm.sh (stdlib + PyYAML).

Subcommands (run from the repository root):
  pin WASM [--write]          check (or rewrite) the module sha256 pinned by every token file
  tokens FILE...              token-file rules: digests only, a tenant on every token, and the
                              same Envoy settings as envoy/otlp-gate.yaml
  twin OUT [--broken] [--bootstrap FILE]
                              write a static twin of envoy.yaml (or of FILE, e.g. the
                              global-ratelimit variant) for `envoy --mode validate`
  rendered FILE CORE_OUT      structural checks on a rendered overlay; write it without the
                              cert-manager kinds for kubernetes-validate
Every check prints PASS/FAIL lines and exits 1 on failure.
"""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_WASM = ROOT / "k8s/base/gateway/otlp_gate.wasm"
BOOTSTRAP = ROOT / "envoy/envoy.yaml"
TOKEN_FILE = ROOT / "envoy/otlp-gate.yaml"
SDS_FILE = ROOT / "envoy/alloy-client-sds.yaml"

# Where the pod mounts things (k8s/base/gateway/deployment.yaml) - the contract with envoy/.
POD_BOOTSTRAP = "/etc/envoy/envoy.yaml"
POD_CONFIG_DIR = "/etc/otlp-gate/config"
POD_ECDS = POD_CONFIG_DIR + "/otlp-gate.yaml"
POD_WASM_DIR = "/etc/otlp-gate/wasm"
POD_WASM = POD_WASM_DIR + "/otlp_gate.wasm"
# Mutual TLS to Alloy: the SDS file (in the bootstrap ConfigMap) and the client-certificate Secret.
POD_SDS = "/etc/envoy/alloy-client-sds.yaml"
POD_CLIENT_TLS_DIR = "/etc/otlp-gate/alloy-client-tls"
ALLOY_TLS_DIR = "/etc/alloy-tls"

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
CONFIGMAP_LIMIT = 1024 * 1024  # bytes of data + binaryData per ConfigMap

failures = 0


def report(ok: bool, what: str) -> None:
    global failures
    print(f"{'PASS' if ok else 'FAIL'} {what}")
    if not ok:
        failures += 1


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def token_files() -> list[Path]:
    """Every ECDS token file the bundle deploys: envoy/'s (the base's) and each overlay's."""
    files = [TOKEN_FILE]
    files += sorted((ROOT / "k8s/overlays").glob("*/otlp-gate.yaml"))
    return [f for f in files if f.exists()]


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def wasm_configs(doc) -> list[dict]:
    """The `typed_config.config` (PluginConfig) of every Wasm resource in an ECDS file."""
    out = []
    for r in (doc or {}).get("resources") or []:
        tc = (r or {}).get("typed_config") or {}
        if tc.get("@type") == WASM_TYPE and isinstance(tc.get("config"), dict):
            out.append(tc["config"])
    return out


def pins(doc) -> list[tuple[list[str], str]]:
    """(key path, digest) of every `sha256` under a Wasm resource's vm_config."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "sha256" and isinstance(v, str):
                    found.append((path + [k], v))
                else:
                    walk(v, path + [str(k)])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [str(i)])

    for i, cfg in enumerate(wasm_configs(doc)):
        walk(cfg.get("vm_config"), [f"resources[{i}]", "vm_config"])
    return found


# ---------------------------------------------------------------- pin


def cmd_pin(wasm: Path, write: bool) -> None:
    data = wasm.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    report(data[:4] == b"\0asm", f"wasm: {rel(wasm)} is a WebAssembly module ({len(data)} bytes)")
    # binaryData is stored base64 in the object; the API server limits decoded data to 1 MiB
    # and client-side apply would also copy it into a 256 KiB annotation (hence --server-side).
    report(len(data) < CONFIGMAP_LIMIT - 4096,
           f"wasm: {len(data)} bytes fits the 1 MiB ConfigMap limit "
           f"({100 * len(data) // CONFIGMAP_LIMIT}% used)")
    for f in token_files():
        text = f.read_text(encoding="utf-8")
        found = pins(yaml.safe_load(text))
        if not found:
            report(False, f"pin: {rel(f)} pins no module sha256 under vm_config")
            continue
        if write:
            for _, old in found:
                text = text.replace(old, digest)
            f.write_text(text, encoding="utf-8")
            found = pins(yaml.safe_load(text))
        ok = all(v == digest for _, v in found)
        where = ", ".join(".".join(p) for p, _ in found)
        report(ok, f"pin: {rel(f)} {where} = {'the bundled module' if ok else 'a DIFFERENT module'}"
               + (f" ({digest[:12]}...)" if ok else
                  f": pins {found[0][1][:12]}..., module is {digest[:12]}... (run `just k8s-wasm`)"))


# ---------------------------------------------------------------- tokens


def strip_plugin_config(doc):
    """The ECDS document without what may differ per installation (tokens and settings)."""
    d = copy.deepcopy(doc)
    d.pop("version_info", None)
    for cfg in wasm_configs(d):
        conf = cfg.get("configuration")
        if isinstance(conf, dict):
            conf.pop("value", None)
    return d


def cmd_tokens(files: list[Path]) -> None:
    ref_path = TOKEN_FILE
    if not ref_path.exists():
        report(False, "tokens: envoy/otlp-gate.yaml (the reference token file) is missing")
        return
    reference = strip_plugin_config(load_yaml(ref_path))
    for f in files:
        doc = load_yaml(f)
        cfgs = wasm_configs(doc)
        if not cfgs:
            report(False, f"tokens: {rel(f)} has no Wasm resource")
            continue
        problems = []
        count = 0
        for cfg in cfgs:
            conf = cfg.get("configuration") or {}
            value = conf.get("value") if isinstance(conf, dict) else None
            if conf.get("@type") != "type.googleapis.com/google.protobuf.Struct" or not isinstance(value, dict):
                problems.append("configuration must be a google.protobuf.Struct (the token list as YAML)")
                continue
            for i, t in enumerate(value.get("tokens") or []):
                count += 1
                tid = (t or {}).get("id", f"#{i}")
                if "token" in t:
                    problems.append(f"token {tid!r} holds a plaintext `token`: store its sha256 instead")
                if not HEX64.match(str(t.get("sha256", ""))):
                    problems.append(f"token {tid!r} has no 64-hex `sha256`")
                if not t.get("tenant"):
                    problems.append(f"token {tid!r} has no `tenant` (data without a tenant is refused by the backends)")
        same = strip_plugin_config(doc) == reference
        if not same:
            problems.append("Envoy settings (everything but version_info and the plugin configuration) "
                            "differ from envoy/otlp-gate.yaml")
        report(not problems, f"tokens: {rel(f)}: {count} token(s), digests only, each with a tenant, "
               f"same Envoy settings as envoy/otlp-gate.yaml" if not problems
               else f"tokens: {rel(f)}: " + "; ".join(problems))


# ---------------------------------------------------------------- twin


def find_filter_lists(node, found):
    """Every `http_filters` list in the bootstrap."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "http_filters" and isinstance(v, list):
                found.append(v)
            else:
                find_filter_lists(v, found)
    elif isinstance(node, list):
        for v in node:
            find_filter_lists(v, found)
    return found


def replace_strings(node, mapping):
    if isinstance(node, dict):
        return {k: replace_strings(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_strings(v, mapping) for v in node]
    if isinstance(node, str) and node in mapping:
        return mapping[node]
    return node


def cmd_twin(out: Path, broken: bool, bootstrap: Path | None = None) -> None:
    """envoy --mode validate checks static resources (and runs the wasm's on_configure) but never
    reads file-based ECDS: inline the token file's Wasm config in place of `config_discovery`,
    with pod paths pointed at the repository's files."""
    boot = load_yaml(bootstrap or BOOTSTRAP)
    ecds = load_yaml(TOKEN_FILE)
    by_name = {r.get("name"): r.get("typed_config") for r in ecds.get("resources") or []}
    inlined = 0
    for filters in find_filter_lists(boot, []):
        for f in filters:
            cd = f.get("config_discovery") if isinstance(f, dict) else None
            if not cd:
                continue
            src = (cd.get("config_source") or {}).get("path_config_source") or {}
            if src.get("path") != POD_ECDS:
                raise SystemExit(f"twin: filter {f.get('name')!r} reads {src.get('path')!r}, expected {POD_ECDS}")
            tc = by_name.get(f.get("name"))
            if tc is None:
                raise SystemExit(f"twin: otlp-gate.yaml has no resource named {f.get('name')!r}")
            tc = copy.deepcopy(tc)
            if broken:
                # An entry the filter must refuse at on_configure (bad digest, tenant with `|`).
                value = tc["config"]["configuration"]["value"]
                value.setdefault("tokens", []).append(
                    {"id": "validate-broken", "sha256": "not-hex", "tenant": "a|b"})
            del f["config_discovery"]
            f["typed_config"] = tc
            inlined += 1
    if inlined == 0:
        raise SystemExit("twin: envoy.yaml has no http filter using config_discovery")
    # The client-certificate SDS file is envoy/alloy-client-sds.yaml; the CA it is verified against is a
    # Secret in the pod, so the twin gets a throw-away CA (validate loads the trusted CA file).
    ca = out.parent / (out.stem + "-internal-ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=twin internal CA", "-keyout", "/dev/null",
                    "-out", str(ca)], check=True, capture_output=True, timeout=60)
    boot = replace_strings(boot, {POD_WASM: str(BUNDLED_WASM),
                                  POD_SDS: str(SDS_FILE),
                                  POD_CLIENT_TLS_DIR + "/ca.crt": str(ca)})
    leftover = [p for p in re.findall(r"/etc/[\w./-]+", yaml.safe_dump(boot))]
    if leftover:
        raise SystemExit(f"twin: unexpected pod paths left in the twin: {sorted(set(leftover))}")
    out.write_text(yaml.safe_dump(boot, sort_keys=False), encoding="utf-8")
    print(f"twin: wrote {rel(out)} ({inlined} filter(s) inlined{', with a broken token entry' if broken else ''})")


# ---------------------------------------------------------------- rendered


def cmd_rendered(path: Path, core_out: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    name = path.stem
    crd_kinds = {"Certificate", "Issuer", "ClusterIssuer"}
    skipped = sorted({d["kind"] for d in docs if d["kind"] in crd_kinds})
    with open(core_out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all([d for d in docs if d["kind"] not in crd_kinds], f, sort_keys=False)
    if skipped:
        print(f"note {name}: kubernetes-validate skips {', '.join(skipped)} (cert-manager CRDs, no schema offline)")

    def one(kind, nm):
        for d in docs:
            if d["kind"] == kind and d["metadata"]["name"] == nm:
                return d
        return None

    def configmap(prefix):
        for d in docs:
            n = d["metadata"]["name"]
            if d["kind"] == "ConfigMap" and (n == prefix or re.fullmatch(re.escape(prefix) + r"-[a-z0-9]{10}", n)):
                return d
        return None

    dep = one("Deployment", "otlp-gate")
    if dep is None:
        report(False, f"{name}: no Deployment otlp-gate")
        return
    pod = dep["spec"]["template"]["spec"]
    c = next((c for c in pod["containers"] if c["name"] == "envoy"), None)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    def mounted_configmap(path):
        m = mounts.get(path)
        if not m:
            return None, None
        v = volumes.get(m["name"], {})
        return m, (v.get("configMap") or {}).get("name")

    tokens = one("ConfigMap", "otlp-gate-tokens")
    m, cm = mounted_configmap(POD_CONFIG_DIR)
    report(tokens is not None and cm == "otlp-gate-tokens" and m and "subPath" not in m,
           f"{name}: token ConfigMap `otlp-gate-tokens` (no hash suffix) mounted as the whole "
           f"directory {POD_CONFIG_DIR} (no subPath)")
    if tokens is not None:
        key_ok = list((tokens.get("data") or {}).keys()) == ["otlp-gate.yaml"]
        report(key_ok, f"{name}: token ConfigMap holds exactly otlp-gate.yaml")

    m, cm = mounted_configmap(POD_WASM_DIR)
    wasm_cm = configmap("otlp-gate-wasm")
    ok = wasm_cm is not None and cm == wasm_cm["metadata"]["name"] and "otlp_gate.wasm" in (wasm_cm.get("binaryData") or {})
    size = 0
    if wasm_cm is not None:
        import base64
        size = sum(len(base64.b64decode(v)) + len(k) for k, v in (wasm_cm.get("binaryData") or {}).items())
    report(ok and size < CONFIGMAP_LIMIT,
           f"{name}: wasm ConfigMap mounted at {POD_WASM_DIR} with binaryData otlp_gate.wasm "
           f"({size} of {CONFIGMAP_LIMIT} bytes)")

    m, cm = mounted_configmap("/etc/envoy")
    boot_cm = configmap("otlp-gate-bootstrap")
    report(boot_cm is not None and cm == boot_cm["metadata"]["name"]
           and (boot_cm.get("data") or {}).get("envoy.yaml") == BOOTSTRAP.read_text(encoding="utf-8")
           and POD_BOOTSTRAP in c.get("args", []),
           f"{name}: Envoy runs {POD_BOOTSTRAP}, envoy/envoy.yaml unchanged")

    # The bootstrap must watch the directory the token ConfigMap is mounted at.
    boot = yaml.safe_load(boot_cm["data"]["envoy.yaml"]) if boot_cm else {}
    watched = []

    def walk(node):
        if isinstance(node, dict):
            pcs = node.get("path_config_source")
            if isinstance(pcs, dict):
                watched.append((pcs.get("path"), (pcs.get("watched_directory") or {}).get("path")))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(boot)
    ecds_sources = [(p, w) for p, w in watched if p != POD_SDS]
    report(bool(ecds_sources) and all(p == POD_ECDS and w == POD_CONFIG_DIR for p, w in ecds_sources),
           f"{name}: bootstrap reads {POD_ECDS} and watches {POD_CONFIG_DIR} (kubelet `..data` swaps)")

    # Mutual TLS to Alloy, both sides: Envoy's SDS file is in the bootstrap ConfigMap and names the
    # client-certificate Secret's mount; Alloy mounts its server certificate where config.alloy
    # reads it; both Secrets come from cert-manager Certificates of the internal CA Issuer.
    sds_text = (boot_cm.get("data") or {}).get("alloy-client-sds.yaml") if boot_cm else None
    sds_ok = sds_text == SDS_FILE.read_text(encoding="utf-8")
    sds_paths = sds_ok and sds_text.count(POD_CLIENT_TLS_DIR) == 3
    m, _ = mounted_configmap(POD_CLIENT_TLS_DIR)
    gw_secret = (volumes.get(m["name"], {}).get("secret") or {}).get("secretName") if m else None
    alloy = one("Deployment", "alloy")
    a_pod = alloy["spec"]["template"]["spec"] if alloy else {}
    a_mounts = {mm["mountPath"]: mm for cc in a_pod.get("containers", []) for mm in cc.get("volumeMounts", [])}
    a_vols = {v["name"]: v for v in a_pod.get("volumes", [])}
    am = a_mounts.get(ALLOY_TLS_DIR)
    alloy_secret = (a_vols.get(am["name"], {}).get("secret") or {}).get("secretName") if am else None
    alloy_cm = configmap("alloy-config")
    alloy_cfg = (alloy_cm.get("data") or {}).get("config.alloy", "") if alloy_cm else ""
    certs = {d["spec"]["secretName"]: d for d in docs if d["kind"] == "Certificate"}
    issuer = one("Issuer", "otlp-gate-internal")

    def issued(secret, usage):
        c = certs.get(secret)
        return (c is not None and c["spec"]["issuerRef"]["name"] == "otlp-gate-internal"
                and usage in c["spec"].get("usages", []))

    ok = (sds_paths and gw_secret == "otlp-gate-alloy-client-tls" and m and "subPath" not in m
          and alloy_secret == "alloy-otlp-tls" and am and "subPath" not in am
          and alloy_cfg.count(f'client_ca_file  = "{ALLOY_TLS_DIR}/ca.crt"') == 2
          and issuer is not None and "ca" in issuer["spec"]
          and issued("otlp-gate-alloy-client-tls", "client auth") and issued("alloy-otlp-tls", "server auth"))
    report(bool(ok), f"{name}: mutual TLS Envoy -> Alloy: the client-certificate Secret mounted at "
           f"{POD_CLIENT_TLS_DIR} (SDS, no subPath), Alloy's at {ALLOY_TLS_DIR} with client_ca_file on "
           f"both receivers, both issued by the internal CA Issuer")

    heap = [m.get("typed_config", {}).get("max_heap_size_bytes")
            for m in (boot.get("overload_manager") or {}).get("resource_monitors", [])
            if "fixed_heap" in m.get("name", "")]
    limit = quantity_bytes(c["resources"]["limits"]["memory"])
    if heap and heap[0]:
        report(limit >= int(heap[0]) * 1.25,
               f"{name}: Envoy memory limit {c['resources']['limits']['memory']} leaves room above the "
               f"overload manager's heap limit ({int(heap[0]) // 2**20} MiB)")

    args = c.get("args", [])
    env = {e["name"]: e for e in c.get("env", [])}
    conc = env.get("ENVOY_CONCURRENCY", {}).get("valueFrom", {}).get("resourceFieldRef", {})
    report("--concurrency" in args and args[args.index("--concurrency") + 1] == "$(ENVOY_CONCURRENCY)"
           and conc.get("resource") == "limits.cpu" and conc.get("containerName") == "envoy",
           f"{name}: --concurrency follows the CPU limit ({c['resources']['limits']['cpu']})")

    report("replicas" not in dep["spec"] and one("HorizontalPodAutoscaler", "otlp-gate") is not None,
           f"{name}: the HorizontalPodAutoscaler alone sets the gateway's replica count")

    rp = (c.get("readinessProbe") or {}).get("httpGet") or {}
    report(rp.get("path") == "/healthz" and rp.get("port") in ("probe", 8081),
           f"{name}: readiness goes through the filter (/healthz on the probe listener)")
    pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    report("drain_listeners" in " ".join(pre) and grace >= 40,
           f"{name}: preStop drains listeners; grace period {grace}s")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    report(ann.get("prometheus.io/port") == "8081" and ann.get("prometheus.io/path") == "/stats/prometheus",
           f"{name}: Alloy scrapes /stats/prometheus on the probe port 8081")

    # Who may open connections to whom (ingress NetworkPolicies), exactly as intended.
    expected = {
        "otlp-gate": {("ns:haproxy-controller", 8080), ("alloy", 8081)},
        "alloy": {("otlp-gate", 4317), ("otlp-gate", 4318), ("alloy", 12345)},
        "loki": {("alloy", 3100), ("grafana", 3100)},
        "mimir": {("alloy", 9009), ("grafana", 9009), ("tempo", 9009)},
        "tempo": {("alloy", 4317), ("alloy", 4318), ("alloy", 3200), ("grafana", 3200)},
        "grafana": {("ns:haproxy-controller", 3000)},
    }
    # components/external-lgtm removes the bundle's backends (and their policies);
    # components/object-storage runs Loki and Mimir with replicas that gossip (7946) and call
    # each other (9095).
    for backend in ("loki", "mimir", "tempo"):
        sts = one("StatefulSet", backend)
        if sts is None:
            del expected[backend]
            for app in expected:
                expected[app] = {(src, port) for src, port in expected[app] if src != backend}
        elif sts["spec"].get("replicas", 1) > 1:
            expected[backend] |= {(backend, 7946), (backend, 9095)}
    if one("StatefulSet", "grafana") is None:  # components/external-lgtm/no-grafana
        del expected["grafana"]
        for app in expected:
            expected[app] = {(src, port) for src, port in expected[app] if src != "grafana"}
    allowed = {app: set() for app in expected}
    default_deny = False
    problems = []
    for d in docs:
        if d["kind"] != "NetworkPolicy":
            continue
        spec = d["spec"]
        target = (spec.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        if not spec.get("podSelector") and spec.get("policyTypes") == ["Ingress"] and not spec.get("ingress"):
            default_deny = True
            continue
        if target not in allowed:
            problems.append(f"policy {d['metadata']['name']} selects {target!r}")
            continue
        for rule in spec.get("ingress") or []:
            sources = []
            for peer in rule.get("from") or [{"any": True}]:
                if "namespaceSelector" in peer:
                    ns = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                    sources.append(f"ns:{ns}" if "podSelector" not in peer else f"ns:{ns}+pods")
                elif "podSelector" in peer:
                    sources.append(peer["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name", "?"))
                else:
                    sources.append("ANYONE")
            for src in sources:
                for port in rule.get("ports") or [{"port": "ALL"}]:
                    allowed[target].add((src, port["port"]))
    for app, want in expected.items():
        if allowed[app] != want:
            problems.append(f"{app}: allows {sorted(map(str, allowed[app]))}, expected {sorted(map(str, want))}")
    backends = [b for b in ("loki", "mimir", "tempo") if b in expected]
    report(default_deny and not problems,
           f"{name}: NetworkPolicies: default deny; "
           + (f"backends ({', '.join(backends)}) only from Alloy and Grafana (and Tempo -> Mimir, "
              f"replicas -> each other); " if backends else "no bundled backends (external LGTM); ")
           + "Alloy's OTLP only from the gateway; gateway data port and Grafana only from the "
           f"ingress controller; probe listener from Alloy" + (f": {problems}" if problems else "")
           + ("" if default_deny else ": no default-deny policy"))

    # RBAC: nothing cluster-wide. Alloy reads pods and pod logs of its own namespace only (a
    # ClusterRole with pods/log would let it read every team's logs).
    cluster_rbac = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
                    if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = one("Role", "alloy")
    rules = {(r, tuple(sorted(x["verbs"]))) for x in (role or {}).get("rules", []) for r in x["resources"]}
    binding = one("RoleBinding", "alloy")
    report(not cluster_rbac and rules == {("pods", ("get", "list", "watch")), ("pods/log", ("get",))}
           and binding is not None and binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "alloy"},
           f"{name}: Alloy's API access is a namespaced Role (pods, pods/log read-only), nothing cluster-wide"
           + (f": found {cluster_rbac}" if cluster_rbac else ""))

    # An init container of Alloy's (components/external-lgtm) runs the same image as Alloy.
    alloy = one("Deployment", "alloy")
    if alloy is not None:
        pod_spec = alloy["spec"]["template"]["spec"]
        images = {c["image"] for c in pod_spec.get("initContainers", [])}
        report(images <= {pod_spec["containers"][0]["image"]},
               f"{name}: Alloy's init containers run Alloy's image"
               + ("" if images <= {pod_spec["containers"][0]["image"]} else f": {sorted(images)}"))

    # Every container: non-root, no privilege escalation, all capabilities dropped, limits set.
    bad = []
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        for ctr in spec.get("containers", []) + spec.get("initContainers", []):
            sc = ctr.get("securityContext", {})
            wid = f"{d['kind']}/{d['metadata']['name']}/{ctr['name']}"
            if not psc.get("runAsNonRoot") or sc.get("allowPrivilegeEscalation") is not False \
                    or sc.get("capabilities", {}).get("drop") != ["ALL"] or not sc.get("readOnlyRootFilesystem"):
                bad.append(wid + " securityContext")
            lim = ctr.get("resources", {})
            if not all(lim.get(a, {}).get(r) for a in ("requests", "limits") for r in ("cpu", "memory")):
                bad.append(wid + " resources")
            if not re.search(r":[vV]?\d+\.\d+\.\d+$", ctr["image"]):
                bad.append(wid + f" image {ctr['image']} not pinned to an exact version")
    report(not bad, f"{name}: every container non-root, read-only root, capabilities dropped, "
           f"requests+limits, exact image versions" + (f": {bad}" if bad else ""))


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity (e.g. 512Mi, 1G) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", str(q))
    if not m:
        raise SystemExit(f"cannot read memory quantity {q!r}")
    unit = m.group(2) or ""
    mult = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[unit]
    return int(float(m.group(1)) * mult)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "pin" and rest:
        cmd_pin(Path(rest[0]), "--write" in rest)
    elif cmd == "tokens" and rest:
        cmd_tokens([Path(p) for p in rest])
    elif cmd == "twin" and rest:
        boot = rest[rest.index("--bootstrap") + 1] if "--bootstrap" in rest[:-1] else None
        cmd_twin(Path(rest[0]), "--broken" in rest, Path(boot) if boot else None)
    elif cmd == "rendered" and len(rest) == 2:
        cmd_rendered(Path(rest[0]), Path(rest[1]))
    else:
        print(__doc__)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
