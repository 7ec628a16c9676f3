"""components/external-lgtm, checked against real endpoints: Loki and Tempo binaries behind HAProxy
that terminates TLS (a throw-away CA) and requires basic auth, one user per backend.

Alloy cannot run here, so the test does what Alloy's exporters would do with the rendered
configuration: it renders the component with kustomize (settings pointing at the proxies),
reads the exporters' endpoints, auth handlers, credential files and CA file from the rendered
config.alloy, maps the pod paths to local files through the rendered Alloy Deployment's volume
mounts (the Secret, the CA ConfigMap, the init container's in-memory volume), runs the rendered
auth-header.sh as the init container does, and then sends with the OpenTelemetry SDK (OTLP logs
over HTTPS, OTLP traces over gRPC+TLS) and with Loki's push API (the platform writer) using
exactly those values. A wrong endpoint, path, mount, credential or CA wiring fails the sends.
It does not prove what only a running Alloy can (header handling inside its exporters, its
retries); Mimir's endpoints are checked for their wiring only (no Mimir binary here).
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import requests
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

import backends as bk
import certs
from conftest import batch, report

COMPONENT = bk.ROOT / "k8s/components/external-lgtm"


# ---------------------------------------------------------------- the rendered component


def parse_alloy(text: str) -> dict:
    """Top-level blocks of an Alloy file: {'kind "label"': {attr: expr text, block: [..]}}.
    Enough for the exporters' flat settings; the full syntax is alloy-check's job."""
    lines = [ln.split("//")[0].rstrip() if not ln.strip().startswith("//") else "" for ln in text.splitlines()]
    out: dict = {}
    stack: list[dict] = []
    for ln in lines:
        s = ln.strip()
        if not s:
            continue
        if s.endswith("{"):
            node: dict = {}
            head = s[:-1].strip()
            if stack:
                stack[-1].setdefault(head, []).append(node)
            else:
                out[head] = node
            stack.append(node)
        elif s == "}":
            stack.pop()
        elif stack and "=" in s:
            k, v = s.split("=", 1)
            stack[-1][k.strip()] = v.strip()
    return out


def evaluate(expr: str, env: dict) -> str:
    """A string literal, sys.env("X"), or their concatenation with +."""
    out = ""
    for part in (p.strip() for p in expr.split("+")):
        if m := re.fullmatch(r'sys\.env\("(\w+)"\)', part):
            if m.group(1) not in env:
                raise AssertionError(f"{m.group(1)} is not set by the otlp-gate-external-lgtm ConfigMap")
            out += env[m.group(1)]
        elif m := re.fullmatch(r'"([^"]*)"', part):
            out += m.group(1)
        else:
            raise AssertionError(f"cannot evaluate {part!r}")
    return out


class Rendered:
    """The component as kustomize renders it, with pod paths mapped to local directories."""

    def __init__(self, workdir: Path, settings: dict[str, str], variant: list[str]):
        overlay = workdir / "overlay"
        overlay.mkdir(parents=True)
        rel = lambda p: Path(subprocess.run(["realpath", "--relative-to", overlay, p], capture_output=True,
                                            text=True, check=True).stdout.strip())
        comps = "".join(f"  - {rel(COMPONENT / v)}\n" for v in variant)
        literals = "".join(f"      - {k}={v}\n" for k, v in settings.items())
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: observability\n"
            f"resources:\n  - {rel(bk.ROOT / 'k8s/base')}\ncomponents:\n{comps}"
            f"configMapGenerator:\n  - name: otlp-gate-external-lgtm\n    literals:\n{literals}")
        out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        self.docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        cm = self.configmap("alloy-config")
        self.alloy = parse_alloy(cm["data"]["config.alloy"])
        self.script = self.configmap("otlp-gate-external-auth")["data"]["auth-header.sh"]
        self.env = self.configmap("otlp-gate-external-lgtm")["data"]
        dep = next(d for d in self.docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "alloy")
        pod = dep["spec"]["template"]["spec"]
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        self.alloy_mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        self.init_mounts = {m["mountPath"]: m["name"] for m in pod["initContainers"][0]["volumeMounts"]}
        assert {"configMapRef": {"name": self.configmap("otlp-gate-external-lgtm")["metadata"]["name"]}} \
            in pod["containers"][0]["envFrom"], "Alloy does not get the EXTERNAL_* settings"
        # Local stand-ins for the pod's volumes.
        self.local = {"secret": workdir / "secret", "ca": workdir / "ca", "auth": workdir / "auth"}
        for d in self.local.values():
            d.mkdir()

    def configmap(self, prefix: str) -> dict:
        found = [d for d in self.docs if d["kind"] == "ConfigMap"
                 and re.fullmatch(re.escape(prefix) + r"(-[a-z0-9]{10})?", d["metadata"]["name"])]
        assert len(found) == 1, f"ConfigMap {prefix}: {len(found)} found"
        return found[0]

    def source_of(self, volume: str) -> str:
        v = self.volumes[volume]
        if v.get("secret", {}).get("secretName") == "otlp-gate-external-lgtm":
            return "secret"
        if v.get("configMap", {}).get("name") == "otlp-gate-external-ca":
            return "ca"
        if "emptyDir" in v:
            return "auth"
        raise AssertionError(f"volume {volume} is not one the component provides")

    def local_path(self, pod_path: str, mounts: dict | None = None) -> Path:
        """Where a file Alloy reads lives here, through the Alloy container's mounts."""
        mounts = mounts or self.alloy_mounts
        for mount, volume in mounts.items():
            if pod_path.startswith(mount.rstrip("/") + "/"):
                return self.local[self.source_of(volume)] / pod_path[len(mount.rstrip("/")) + 1:]
        raise AssertionError(f"{pod_path} is on no volume mounted into the container")

    def run_init(self) -> subprocess.CompletedProcess:
        """The init container: the rendered script with the pod's paths mapped to local ones."""
        inv = {v: k for k, v in self.init_mounts.items()}
        script = self.script
        for volume, mount in inv.items():
            if self.volumes[volume].get("configMap", {}).get("name", "").startswith("otlp-gate-external-auth"):
                continue
            script = script.replace(mount, str(self.local[self.source_of(volume)]))
        path = self.local["auth"].parent / "auth-header.sh"
        path.write_text(script)
        return subprocess.run(["sh", str(path)], capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin", **self.env})

    def exporter(self, kind_label: str) -> dict:
        """endpoint, headers (name -> value or ('context', key)) and CA of an otelcol exporter."""
        client = self.alloy[kind_label]["client"][0]
        handler = re.fullmatch(r"otelcol\.auth\.headers\.(\w+)\.handler", client["auth"]).group(1)
        headers = {}
        for h in self.alloy[f'otelcol.auth.headers "{handler}"']["header"]:
            key = evaluate(h["key"], {})
            if "from_context" in h:
                headers[key] = ("context", evaluate(h["from_context"], {}))
            else:
                ref = re.fullmatch(r"local\.file\.(\w+)\.content", h["value"]).group(1)
                f = self.alloy[f'local.file "{ref}"']
                assert f.get("is_secret") == "true", f"local.file {ref} must be is_secret"
                headers[key] = self.local_path(evaluate(f["filename"], {})).read_text()
        ca = self.local_path(evaluate(client["tls"][0]["ca_file"], {}))
        return {"endpoint": evaluate(client["endpoint"], self.env), "headers": headers, "ca": ca}


# ---------------------------------------------------------------- the endpoints


class Proxy:
    """HAProxy: TLS with the test CA's certificate, basic auth per backend."""

    def __init__(self, workdir: Path, loki: bk.Backend, tempo: bk.Backend, users: dict[str, tuple[str, str]]):
        workdir.mkdir(parents=True, exist_ok=True)
        self.certs = certs.make_certs(workdir / "certs")
        self.loki_port, self.tempo_port = bk.st.free_ports(2)
        ul = "".join(f"userlist {b}_users\n  user {u} insecure-password {p}\n" for b, (u, p) in users.items())
        cfg = f"""global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
{ul}
frontend loki
  bind 127.0.0.1:{self.loki_port} ssl crt {self.certs.haproxy_pem}
  http-request auth realm loki unless {{ http_auth(loki_users) }}
  default_backend loki
backend loki
  server loki 127.0.0.1:{loki.ports['http']}
frontend tempo
  bind 127.0.0.1:{self.tempo_port} ssl crt {self.certs.haproxy_pem} alpn h2
  http-request auth realm tempo unless {{ http_auth(tempo_users) }}
  default_backend tempo
backend tempo
  server tempo 127.0.0.1:{tempo.ports['otlp_grpc']} proto h2
"""
        path = workdir / "haproxy.cfg"
        path.write_text(cfg)
        self.proc = bk.st.Proc("haproxy", ["haproxy", "-db", "-f", str(path)], workdir)
        bk.st.wait_until(lambda: self._up(), 30, "haproxy", interval=0.2)

    def _up(self) -> bool:
        try:
            return requests.get(f"https://localhost:{self.loki_port}/ready", verify=str(self.certs.ca),
                                timeout=2).status_code == 401
        except requests.RequestException:
            return False

    def stop(self):
        self.proc.stop()


def send_logs(x: dict, b, tenant: str, headers: dict | None = None) -> bool:
    hdrs = {k: (tenant if isinstance(v, tuple) else v) for k, v in (headers or x["headers"]).items()}
    s = requests.Session()
    s.trust_env = False
    exp = OTLPLogExporter(endpoint=x["endpoint"] + "/v1/logs", headers=hdrs, certificate_file=str(x["ca"]),
                          session=s, timeout=20)
    try:
        return exp.export(b.logs) == LogRecordExportResult.SUCCESS
    finally:
        exp.shutdown()


def send_spans(x: dict, b, tenant: str, ca: Path | None = None, headers: dict | None = None,
               timeout: float = 20) -> bool:
    hdrs = tuple((k.lower(), tenant if isinstance(v, tuple) else v) for k, v in (headers or x["headers"]).items())
    creds = grpc.ssl_channel_credentials(root_certificates=(ca or x["ca"]).read_bytes())
    exp = OTLPSpanExporter(endpoint=x["endpoint"], credentials=creds, headers=hdrs, timeout=timeout)
    try:
        return exp.export(b.spans) == SpanExportResult.SUCCESS
    finally:
        exp.shutdown()


@pytest.fixture(scope="module")
def lgtm(tmp_path_factory):
    """"Your LGTM": Loki and (when TEMPO_BIN is set) Tempo on the bundle's base configs."""
    if not bk.LOKI_BIN or not Path(bk.LOKI_BIN).exists():
        pytest.skip(f"no Loki binary: {bk.HOW}")
    work = tmp_path_factory.mktemp("lgtm")
    have_tempo = bool(bk.TEMPO_BIN) and Path(bk.TEMPO_BIN).exists()
    loki = bk.Backend("loki", bk.LOKI_BIN, bk.ROOT / "k8s/base/loki/loki.yaml", work / "loki")
    tempo = bk.Backend("tempo", bk.TEMPO_BIN, bk.ROOT / "k8s/base/tempo/tempo.yaml", work / "tempo")
    try:
        loki.start()
        if have_tempo:
            tempo.start()
        yield loki, tempo, have_tempo
    finally:
        loki.stop()
        tempo.stop()


@pytest.mark.parametrize("variant", ["basic", "bearer"])
def test_rendered_alloy_config_reaches_lgtm_behind_tls_and_auth(lgtm, tmp_path, marker, variant):
    loki, tempo, have_tempo = lgtm
    users = {b: (f"otlp-gate-{b}", secrets.token_urlsafe(18)) for b in ("loki", "mimir", "tempo")}
    if variant == "basic":
        proxy = Proxy(tmp_path / "proxy", loki, tempo, users)
    else:
        proxy = BearerProxy(tmp_path / "proxy", loki, tempo, {b: pw for b, (_, pw) in users.items()})
    try:
        settings = {
            "EXTERNAL_LOKI_URL": f"https://localhost:{proxy.loki_port}",
            "EXTERNAL_MIMIR_URL": "https://localhost:1",  # wiring checked, not driven
            "EXTERNAL_TEMPO_OTLP_ENDPOINT": f"localhost:{proxy.tempo_port}",
            **{f"EXTERNAL_{b.upper()}_USERNAME": u for b, (u, _) in users.items()},
        }
        r = Rendered(tmp_path / "render", settings, ["."] if variant == "basic" else [".", "bearer"])
        # The Secret as the operator creates it; the CA bundle as the operator's ConfigMap.
        for b, (_, pw) in users.items():
            (r.local["secret"] / (f"{b}-password" if variant == "basic" else f"{b}-token")).write_text(pw)
        (r.local["ca"] / "ca.crt").write_bytes(proxy.certs.ca.read_bytes())
        init = r.run_init()
        assert init.returncode == 0, init.stderr
        assert all(p not in init.stdout + init.stderr for _, p in users.values()), "the init script printed a secret"

        lx = r.exporter('otelcol.exporter.otlphttp "loki"')
        tx = r.exporter('otelcol.exporter.otlp "tempo"')
        mx = r.exporter('otelcol.exporter.otlphttp "mimir"')
        assert lx["headers"]["X-Scope-OrgID"] == ("context", "x-scope-orgid")
        assert mx["endpoint"] == "https://localhost:1/otlp" and mx["headers"]["Authorization"] != lx["headers"]["Authorization"]

        b = batch(marker, marker)
        assert send_logs(lx, b, "team-a"), "OTLP logs through the proxy with the rendered settings"
        if have_tempo:
            assert send_spans(tx, b, "team-a"), "OTLP traces through the proxy with the rendered settings"
        # Wrong wiring fails: another backend's credential, no credential, or no CA bundle.
        assert not send_logs(lx, b, "team-a", headers={**lx["headers"], "Authorization": tx["headers"]["Authorization"]})
        assert not send_logs(lx, b, "team-a", headers={"X-Scope-OrgID": ("context", "")})
        if have_tempo:
            assert not send_spans(tx, b, "team-a", ca=Path(requests.certs.where()), timeout=5)
            assert not send_spans(tx, b, "team-a", timeout=5,
                                  headers={**tx["headers"], "Authorization": lx["headers"]["Authorization"]})

        # The platform writer (loki.write "platform"): its URL, tenant, credential file and CA.
        ep = r.alloy['loki.write "platform"']["endpoint"][0]
        url = evaluate(ep["url"], r.env)
        ca = r.local_path(evaluate(ep["tls_config"][0]["ca_file"], {}))
        if variant == "basic":
            ba = ep["basic_auth"][0]
            auth = (evaluate(ba["username"], r.env), r.local_path(evaluate(ba["password_file"], {})).read_text())
            hdrs = {}
        else:
            auth, hdrs = None, {"Authorization": "Bearer " + r.local_path(evaluate(ep["bearer_token_file"], {})).read_text()}
        push = {"streams": [{"stream": {"service_name": marker + "-platform"},
                             "values": [[str(time.time_ns()), "platform line " + marker]]}]}
        resp = requests.post(url, json=push, auth=auth, verify=str(ca), timeout=20,
                             headers={"X-Scope-OrgID": evaluate(ep["tenant_id"], {}), **hdrs})
        assert resp.status_code == 204, f"loki.write platform: {resp.status_code}"

        # What arrived, read from Loki and Tempo directly, per tenant.
        def lines(tenant, service):
            now = time.time_ns()
            q = requests.get(f"{loki.url}/loki/api/v1/query_range", headers={"X-Scope-OrgID": tenant}, timeout=20,
                             params={"query": f'{{service_name="{service}"}}', "start": now - 3600 * 10**9, "end": now})
            return [v for s in q.json()["data"]["result"] for _, v in s["values"]]

        bk.wait_for(lambda: sorted(lines("team-a", marker)) == sorted(b.log_bodies), 60, "team-a's logs in Loki")
        bk.wait_for(lambda: lines("platform", marker + "-platform"), 60, "the platform line in Loki")
        assert lines("team-b", marker) == []
        trace_id = format(b.spans[0].context.trace_id, "032x")
        if have_tempo:
            bk.wait_for(lambda: requests.get(f"{tempo.url}/api/traces/{trace_id}", headers={"X-Scope-OrgID": "team-a"},
                                             timeout=20).status_code == 200, 60, "team-a's trace in Tempo")
        report(f"{variant}: logs, {'traces, ' if have_tempo else '(no TEMPO_BIN: traces not sent) '}and the platform writer went through TLS + {variant} auth with the "
              f"rendered settings; another backend's credential, none, or the system CAs were refused")
    finally:
        proxy.stop()


class BearerProxy(Proxy):
    """The same proxy checking `Authorization: Bearer <token>` per backend instead of basic auth."""

    def __init__(self, workdir: Path, loki: bk.Backend, tempo: bk.Backend, tokens: dict[str, str]):
        workdir.mkdir(parents=True, exist_ok=True)
        self.certs = certs.make_certs(workdir / "certs")
        self.loki_port, self.tempo_port = bk.st.free_ports(2)
        cfg = f"""global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend loki
  bind 127.0.0.1:{self.loki_port} ssl crt {self.certs.haproxy_pem}
  http-request deny deny_status 401 unless {{ req.hdr(authorization) -m str "Bearer {tokens['loki']}" }}
  default_backend loki
backend loki
  server loki 127.0.0.1:{loki.ports['http']}
frontend tempo
  bind 127.0.0.1:{self.tempo_port} ssl crt {self.certs.haproxy_pem} alpn h2
  http-request deny deny_status 401 unless {{ req.hdr(authorization) -m str "Bearer {tokens['tempo']}" }}
  default_backend tempo
backend tempo
  server tempo 127.0.0.1:{tempo.ports['otlp_grpc']} proto h2
"""
        path = workdir / "haproxy.cfg"
        path.write_text(cfg)
        self.proc = bk.st.Proc("haproxy", ["haproxy", "-db", "-f", str(path)], workdir)
        bk.st.wait_until(lambda: self._up(), 30, "haproxy", interval=0.2)
