"""The bundle's backend configurations on the real binaries (issue 14): Loki, Tempo and, when
someone has one, Mimir, each started with its own file from k8s/base/ (data directories, listen
ports and addresses substituted by tests/e2e/render.py, nothing else) and its runtime overrides
file, and sent to with the OpenTelemetry SDK exactly as Alloy sends: OTLP (HTTP to Loki's and
Mimir's /otlp, gRPC to Tempo), gzip, `X-Scope-OrgID` per tenant.

For each backend: one tenant cannot read another's data; the federated query the provisioned
Grafana datasource makes (URL and headers read from k8s/base/grafana/datasources.yaml, tenants
from the bundle's settings) sees every listed tenant and no other; a push without a tenant is
refused; the largest batch alloy/config.alloy lets Alloy send (send_batch_max_size items with a
~450-byte URL attribute each) is accepted; the runtime overrides file is read.

The backends run as an unprivileged user (when the tests run as root) with a read-only working
directory, as in the pods (readOnlyRootFilesystem, no WORKDIR): a setting left at a relative
default fails here as it would there.

    LOKI_BIN=... TEMPO_BIN=... [MIMIR_BIN=...] just backends
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import pytest
import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import limits  # noqa: E402
import render  # noqa: E402
import stack as st  # noqa: E402

BINS = {name: os.environ.get(f"{name.upper()}_BIN") for name in ("loki", "tempo", "mimir")}
# Without any binary, conftest.py reports the whole module as one skipped test with this reason.
SKIP_REASON = ("real-backend tests skipped: set LOKI_BIN, TEMPO_BIN and/or MIMIR_BIN to the binaries of the "
               "versions k8s/base/*/statefulset.yaml pins (release assets of grafana/loki, grafana/tempo, "
               "grafana/mimir on GitHub)")

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider  # noqa: E402
from opentelemetry.sdk._logs.export import (InMemoryLogRecordExporter, LogRecordExportResult,  # noqa: E402
                                            SimpleLogRecordProcessor)
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from grpc import Compression as GrpcCompression  # noqa: E402

NOBODY = 65534
# Mimir's -target as the StatefulSet runs it (`all` does not include the Alertmanager).
MIMIR_TARGET = next(a.split("=", 1)[1] for a in yaml.safe_load(
    (render.K8S_BASE / "mimir" / "statefulset.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]["args"]
    if a.startswith("-target="))
READY_TIMEOUT = 240  # Loki's ingester waits 15 s after it is ready; slow under load
QUERY_TIMEOUT = 90
URL_ATTR = "https://shop.example.com/api/v1/orders?" + "&".join(f"item{i:03d}=sku-{i:05d}" for i in range(22))
REPORT: list[str] = []


def note(line: str) -> None:
    print(line)
    REPORT.append(line)


# ----------------------------------------------------------------------------- the bundle's facts


def settings() -> dict:
    """The otlp-gate-settings literals of k8s/base/kustomization.yaml (tenants, ...)."""
    kust = yaml.safe_load((render.K8S_BASE / "kustomization.yaml").read_text())
    gen = next(g for g in kust["configMapGenerator"] if g["name"] == "otlp-gate-settings")
    return dict(lit.split("=", 1) for lit in gen["literals"])


TENANTS = settings()["tenants"].split("|")
OUTSIDER = "outsider-" + uuid.uuid4().hex[:6]  # a tenant Grafana does not list


def datasource(uid: str, base_url: str) -> tuple[str, dict]:
    """The provisioned datasource's URL (its scheme://host:port replaced by the test backend's)
    and its headers, with ${VAR} expanded from the settings the Pod gets (as Grafana does)."""
    doc = yaml.safe_load((render.K8S_BASE / "grafana" / "datasources.yaml").read_text())
    ds = next(d for d in doc["datasources"] if d["uid"] == uid)
    url = re.sub(r"^https?://[^/]+", base_url, ds["url"])
    env = {"OTLP_GATE_TENANTS": settings()["tenants"]}
    headers = {}
    for i in range(1, 10):
        name = (ds.get("jsonData") or {}).get(f"httpHeaderName{i}")
        if not name:
            break
        value = (ds.get("secureJsonData") or {})[f"httpHeaderValue{i}"]
        value = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], value).replace("$$", "$")
        headers[name] = value
    return url, headers


def duration_s(text: str) -> float:
    """Prometheus-style durations as the backends print them (2w, 31d, 744h, 1h30m)."""
    units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+)(ms|w|d|h|m|s)", str(text))
    if not parts or "".join(a + b for a, b in parts) != str(text):
        raise AssertionError(f"cannot read duration {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


# ----------------------------------------------------------------------------- processes


class Backend:
    """One backend process from the bundle's config, rendered into a private directory."""

    def __init__(self, name: str, binary: str, root: Path):
        self.name, self.binary = name, binary
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.data.mkdir()
        self.cwd = self.dir / "read-only-cwd"  # the image's `/`: not writable
        self.cwd.mkdir()
        self.cwd.chmod(0o555)
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.user = NOBODY if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(self.data, NOBODY, NOBODY)
        self.overrides = self.dir / "overrides.yaml"
        shutil.copyfile(render.K8S_BASE / name / "overrides.yaml", self.overrides)
        self.overrides.chmod(0o444)
        self.proc: st.Proc | None = None

    def start(self, config_text: str, flags: list[str], ready_path: str, target: str = "all") -> "Backend":
        cfg = self.dir / f"{self.name}.yaml"
        cfg.write_text(config_text)
        cfg.chmod(0o444)
        started = time.monotonic()
        self.proc = st.Proc(self.name, [self.binary, f"-config.file={cfg}", f"-target={target}", *flags],
                            self.logs, cwd=self.cwd, user=self.user)

        def ready():
            if not self.proc.alive():
                raise RuntimeError(f"{self.name} exited at start\n{self.proc.tail(40)}")
            r = st.request(f"{self.url}{ready_path}", timeout=3)
            return r is not None and r.status == 200

        st.wait_until(ready, READY_TIMEOUT, f"{self.name} to be ready", interval=0.5,
                      diagnose=lambda: self.proc.tail(40))
        note(f"{self.name}: ready {time.monotonic() - started:.1f} s after start "
             f"({'uid 65534, ' if self.user else ''}read-only working directory)")
        return self

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=30)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs.iterdir())


@pytest.fixture(scope="module")
def workroot():
    root = Path(tempfile.mkdtemp(prefix="otlp-gate-backends-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mimir(workroot):
    if not BINS["mimir"]:
        yield None
        return
    http, grpc_port, gossip = st.free_ports(3)
    b = Backend("mimir", BINS["mimir"], workroot)
    b.url = f"http://127.0.0.1:{http}"
    # The ruler's local store as the pod mounts it: <directory>/<tenant>/<namespace>.
    rules = b.dir / "rules"
    (rules / "platform").mkdir(parents=True)
    shutil.copyfile(render.K8S_BASE / "mimir" / "alert-rules.yaml", rules / "platform" / "otlp-gate")
    alertmanager = b.dir / "alertmanager.yaml"
    shutil.copyfile(render.K8S_BASE / "mimir" / "alertmanager.yaml", alertmanager)
    # The memberlist ring is not in mimir.yaml; keep its listener on loopback too.
    b.start(render.render_mimir(render.BackendPorts(http, grpc_port), b.data, b.overrides, rules, alertmanager),
            ["-memberlist.bind-addr=127.0.0.1", f"-memberlist.bind-port={gossip}"], "/ready",
            target=MIMIR_TARGET)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def loki(workroot):
    if not BINS["loki"]:
        pytest.skip("LOKI_BIN not set")
    http, grpc_port = st.free_ports(2)
    b = Backend("loki", BINS["loki"], workroot)
    b.url = f"http://127.0.0.1:{http}"
    b.start(render.render_loki(render.BackendPorts(http, grpc_port), b.data, b.overrides), [], "/ready")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def tempo(workroot, mimir):
    if not BINS["tempo"]:
        pytest.skip("TEMPO_BIN not set")
    http, grpc_port, otlp_grpc, otlp_http, nothing = st.free_ports(5)
    b = Backend("tempo", BINS["tempo"], workroot)
    b.url = f"http://127.0.0.1:{http}"
    b.otlp_grpc = otlp_grpc
    # The metrics generator writes to Mimir when there is one, else to a closed loopback port.
    push = f"{mimir.url}/api/v1/push" if mimir else f"http://127.0.0.1:{nothing}/api/v1/push"
    ports = render.BackendPorts(http, grpc_port, otlp_grpc, otlp_http)
    b.start(render.render_tempo(ports, b.data, b.overrides, push), [], "/ready")
    yield b
    b.stop()


# ----------------------------------------------------------------------------- OpenTelemetry


def resource(service: str) -> Resource:
    return Resource.create({"service.name": service})


def budget_url(per_item: int) -> str:
    """A URL attribute that makes one item (span, log record) about `per_item` bytes of OTLP."""
    return URL_ATTR + "&pad=" + "x" * max(0, per_item - len(URL_ATTR) - 330)


def make_logs(service: str, bodies: list[str], url_attr: bool = False, url: str = URL_ATTR) -> list:
    exp = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource(service))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exp))
    logger = provider.get_logger("otlp-gate-backends")
    for body in bodies:
        logger.emit(body=body, severity_text="INFO", attributes={"url.full": url} if url_attr else None)
    out = list(exp.get_finished_logs())
    provider.shutdown()
    return out


def make_spans(service: str, traces: int, spans_per_trace: int, url: str = URL_ATTR) -> tuple[list, list[str]]:
    exp = InMemorySpanExporter()
    provider = TracerProvider(resource=resource(service))
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracer = provider.get_tracer("otlp-gate-backends")
    ids = []
    for t in range(traces):
        with tracer.start_as_current_span(f"GET /orders/{t}", attributes={"url.full": url}) as root:
            ids.append(f"{root.get_span_context().trace_id:032x}")
            for s in range(spans_per_trace - 1):
                with tracer.start_as_current_span(f"step-{s}", attributes={"url.full": url}):
                    pass
    out = list(exp.get_finished_spans())
    provider.shutdown()
    return out, ids


def send_logs(loki_url: str, logs: list, tenant: str | None):
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    exporter = OTLPLogExporter(endpoint=f"{loki_url}/otlp/v1/logs", headers=headers,
                               compression=Compression.Gzip, timeout=60)
    try:
        return exporter.export(logs)
    finally:
        exporter.shutdown()


def send_spans(tempo_b: Backend, spans: list, tenant: str | None):
    headers = (("x-scope-orgid", tenant),) if tenant else ()
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{tempo_b.otlp_grpc}", insecure=True, headers=headers,
                                compression=GrpcCompression.Gzip, timeout=60)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def grpc_status_without_tenant(tempo_b: Backend, spans: list) -> grpc.StatusCode:
    """The status a raw Export call without X-Scope-OrgID gets (the SDK only says FAILURE)."""
    with grpc.insecure_channel(f"127.0.0.1:{tempo_b.otlp_grpc}") as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        try:
            call(encode_spans(spans).SerializeToString(), timeout=30)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


# ----------------------------------------------------------------------------- Loki


def loki_lines(loki_b: Backend, query: str, headers: dict, url: str | None = None) -> list[tuple[str, str]]:
    """(tenant, line) of every entry `query` finds in the last hour (the tenant label is set on
    federated queries)."""
    now = time.time_ns()
    r = requests.get(f"{url or loki_b.url}/loki/api/v1/query_range", headers=headers, timeout=30, params={
        "query": query, "start": now - 3600 * 10**9, "end": now + 60 * 10**9, "limit": 5000})
    if r.status_code != 200:
        raise AssertionError(f"Loki query {query!r} with {headers}: {r.status_code} {r.text[:300]}")
    out = []
    for stream in r.json()["data"]["result"]:
        for _, line in stream["values"]:
            out.append((stream["stream"].get("__tenant_id__", ""), line))
    return out


def test_loki_isolates_tenants_and_federates_the_listed_ones(loki):
    marker = uuid.uuid4().hex[:10]
    service = f"backends-{marker}"
    for tenant in TENANTS + [OUTSIDER]:
        result = send_logs(loki.url, make_logs(service, [f"{marker} from {tenant}"]), tenant)
        assert result == LogRecordExportResult.SUCCESS, f"push for {tenant} refused"
    query = f'{{service_name="{service}"}}'
    for tenant in TENANTS + [OUTSIDER]:
        lines = st.wait_until(lambda: loki_lines(loki, query, {"X-Scope-OrgID": tenant}), QUERY_TIMEOUT,
                              f"{tenant}'s line in Loki", interval=1)
        assert [line for _, line in lines] == [f"{marker} from {tenant}"], f"{tenant} sees {lines}"
    url, headers = datasource("loki", loki.url)
    seen = loki_lines(loki, query, headers, url)
    assert sorted(seen) == sorted((t, f"{marker} from {t}") for t in TENANTS), \
        f"the Loki datasource ({headers}) sees {seen}"
    note(f"loki: {len(TENANTS) + 1} tenants isolated; the datasource's X-Scope-OrgID "
         f"{headers.get('X-Scope-OrgID')!r} sees exactly {TENANTS}")


def test_loki_refuses_a_push_without_tenant(loki):
    assert send_logs(loki.url, make_logs("backends-no-tenant", ["no tenant"]), None) != LogRecordExportResult.SUCCESS
    body = gzip.compress(b"")
    r = requests.post(f"{loki.url}/otlp/v1/logs", data=body, timeout=30,
                      headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"})
    assert r.status_code == 401, (r.status_code, r.text)
    note(f"loki: a push without X-Scope-OrgID -> {r.status_code} {r.text.strip()[:60]!r}")


@pytest.mark.parametrize("per_item", [None, limits.ITEM_BUDGET], ids=["issue-batch", "budget-batch"])
def test_loki_accepts_the_largest_batch_alloy_sends(loki, per_item):
    """send_batch_max_size records: with the issue's ~450-byte URL, and at the size chain's
    per-item budget (README "Size limits"), each as one push."""
    n = limits.alloy().batch_max_items
    marker = uuid.uuid4().hex[:10]
    service = f"backends-batch-{marker}"
    url = budget_url(per_item) if per_item else URL_ATTR
    logs = make_logs(service, [f"{marker} record {i}" for i in range(n)], url_attr=True, url=url)
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    size = encode_logs(logs).ByteSize()
    if per_item:
        assert 0.9 * n * per_item <= size <= n * per_item, f"{size} bytes is not the budget batch"
    started = time.monotonic()
    assert send_logs(loki.url, logs, TENANTS[0]) == LogRecordExportResult.SUCCESS, \
        f"Loki refused {n} records ({size:,} bytes)\n" + loki.proc.tail(10)
    took = time.monotonic() - started
    query = f'sum(count_over_time({{service_name="{service}"}}[1h]))'

    def counted():
        r = requests.get(f"{loki.url}/loki/api/v1/query", params={"query": query}, timeout=30,
                         headers={"X-Scope-OrgID": TENANTS[0]})
        result = r.json()["data"]["result"] if r.status_code == 200 else []
        return int(float(result[0]["value"][1])) if result else 0

    st.wait_until(lambda: counted() == n, QUERY_TIMEOUT, f"all {n} records counted in Loki", interval=1)
    note(f"loki: one batch of {n} log records, {size:,} bytes of OTLP before gzip "
         f"({size / n:,.0f} per record), accepted in {took:.2f} s; all {n} counted")


def test_loki_reads_the_runtime_overrides(loki):
    overrides = limits.tenants(yaml.safe_load(loki.overrides.read_text()))
    default = yaml.safe_load((render.K8S_BASE / "loki" / "loki.yaml").read_text())["limits_config"]
    assert overrides, "loki overrides.yaml lists no tenant to check"
    for tenant, values in list(overrides.items()) + [(TENANTS[0], {})]:
        r = requests.get(f"{loki.url}/config/tenant/v1/limits", headers={"X-Scope-OrgID": tenant}, timeout=30)
        assert r.status_code == 200, r.text
        got = yaml.safe_load(r.text)["retention_period"]
        want = values.get("retention_period", default["retention_period"])
        assert duration_s(got) == duration_s(want), f"{tenant}: retention {got}, the files say {want}"
    note(f"loki: runtime overrides read ({', '.join(overrides)}: retention_period as in overrides.yaml)")


# ----------------------------------------------------------------------------- Tempo


def tempo_trace(tempo_b: Backend, trace_id: str, headers: dict, url: str | None = None) -> dict | None:
    r = requests.get(f"{url or tempo_b.url}/api/v2/traces/{trace_id}", headers=headers, timeout=30)
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise AssertionError(f"Tempo trace {trace_id} with {headers}: {r.status_code} {r.text[:300]}")
    doc = r.json()
    return doc if span_count(doc) else None  # Tempo 3 answers an unknown id with 200 and no spans


def span_count(doc: dict) -> int:
    trace = doc.get("trace", doc)
    return sum(len(ss.get("spans", [])) for rs in trace.get("resourceSpans", trace.get("batches", []))
               for ss in rs.get("scopeSpans", []))


def test_tempo_isolates_tenants_and_federates_the_listed_ones(tempo):
    marker = uuid.uuid4().hex[:10]
    ids = {}
    for tenant in TENANTS + [OUTSIDER]:
        spans, trace_ids = make_spans(f"backends-{marker}-{tenant}", traces=1, spans_per_trace=3)
        assert send_spans(tempo, spans, tenant) == SpanExportResult.SUCCESS, f"push for {tenant} refused"
        ids[tenant] = trace_ids[0]
    for tenant, trace_id in ids.items():
        doc = st.wait_until(lambda: tempo_trace(tempo, trace_id, {"X-Scope-OrgID": tenant}), QUERY_TIMEOUT,
                            f"{tenant}'s trace in Tempo", interval=1)
        assert span_count(doc) == 3
        for other in ids:
            if other != tenant:
                assert tempo_trace(tempo, trace_id, {"X-Scope-OrgID": other}) is None, \
                    f"{other} can read {tenant}'s trace"
    url, headers = datasource("tempo", tempo.url)
    for tenant, trace_id in ids.items():
        doc = tempo_trace(tempo, trace_id, headers, url)
        if tenant == OUTSIDER:
            assert doc is None, "the datasource reads a tenant Grafana does not list"
        else:
            assert doc is not None and span_count(doc) == 3, f"the Tempo datasource cannot read {tenant}'s trace"
    note(f"tempo: {len(ids)} tenants isolated (trace by id); the datasource's X-Scope-OrgID "
         f"{headers.get('X-Scope-OrgID')!r} reads exactly {TENANTS}")


def test_tempo_refuses_a_push_without_tenant(tempo):
    spans, _ = make_spans("backends-no-tenant", traces=1, spans_per_trace=1)
    assert send_spans(tempo, spans, None) != SpanExportResult.SUCCESS
    code = grpc_status_without_tenant(tempo, spans)
    assert code != grpc.StatusCode.OK
    note(f"tempo: an export without X-Scope-OrgID -> gRPC {code.name}")


@pytest.mark.parametrize("per_item", [None, limits.ITEM_BUDGET], ids=["issue-batch", "budget-batch"])
def test_tempo_accepts_the_largest_batch_alloy_sends(tempo, per_item):
    """send_batch_max_size spans in one gRPC export: the issue's batch (~450-byte URL, over the
    4 MiB default Tempo had) and one at the size chain's per-item budget."""
    n = limits.alloy().batch_max_items
    per_trace = 128
    url = budget_url(per_item) if per_item else URL_ATTR
    spans, ids = make_spans(f"backends-batch-{uuid.uuid4().hex[:8]}", traces=n // per_trace,
                            spans_per_trace=per_trace, url=url)
    assert len(spans) == n
    size = encode_spans(spans).ByteSize()
    assert size > 4 * limits.MiB, f"{size} bytes: not the batch Tempo's old 4 MiB limit refused"
    if per_item:
        assert 0.9 * n * per_item <= size <= n * per_item, f"{size} bytes is not the budget batch"
    started = time.monotonic()
    assert send_spans(tempo, spans, TENANTS[0]) == SpanExportResult.SUCCESS, \
        f"Tempo refused a {size:,}-byte batch of {n} spans\n" + tempo.proc.tail(10)
    took = time.monotonic() - started
    for trace_id in (ids[0], ids[-1]):
        doc = st.wait_until(lambda: tempo_trace(tempo, trace_id, {"X-Scope-OrgID": TENANTS[0]}), QUERY_TIMEOUT,
                            "a trace of the big batch", interval=1)
        assert span_count(doc) == per_trace
    note(f"tempo: one batch of {n} spans, {size:,} bytes of OTLP before gzip ({size / n:,.0f} per span), "
         f"accepted in {took:.2f} s; first and last of its {len(ids)} traces complete")


def tempo_overrides_page(tempo_b: Backend, tenant: str) -> str:
    r = requests.get(f"{tempo_b.url}/status/overrides/{tenant}", timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.text


def test_tempo_reads_the_runtime_overrides(tempo):
    """The bundle's overrides file loads (dskit's reload metric), tempo.yaml's defaults are in
    force for an unlisted tenant, and an entry added to the file is in force within Tempo's
    reload period, without a restart (what tempo.yaml's per_tenant_override_period promises)."""
    def reloaded():
        text = st.request(f"{tempo.url}/metrics", timeout=10).body.decode()
        return re.search(r'^tempo_runtime_config_last_reload_successful\{[^}]*\} 1$', text, re.M)

    st.wait_until(reloaded, 60, "Tempo to load the bundle's runtime overrides file", interval=1)
    defaults = yaml.safe_load((render.K8S_BASE / "tempo" / "tempo.yaml").read_text())["overrides"]
    burst = defaults["defaults"]["ingestion"]["burst_size_bytes"]
    page = tempo_overrides_page(tempo, TENANTS[0])
    assert f"burst_size_bytes: {burst}" in page and "trace_id_label_name: trace_id" in page, page[-800:]

    tenant = "reload-check"
    entry = {tenant: {**defaults["defaults"], "ingestion": {**defaults["defaults"]["ingestion"],
                                                            "burst_size_bytes": burst + 1}}}
    doc = yaml.safe_load(tempo.overrides.read_text()) or {}
    doc["overrides"] = {**(doc.get("overrides") or {}), **entry}
    tempo.overrides.chmod(0o644)
    tempo.overrides.write_text(yaml.safe_dump(doc))
    started = time.monotonic()
    period = duration_s(defaults["per_tenant_override_period"])
    st.wait_until(lambda: f"burst_size_bytes: {burst + 1}" in tempo_overrides_page(tempo, tenant),
                  period * 6, "Tempo to apply an edited overrides file", interval=1)
    assert tempo.proc.alive()
    note(f"tempo: the bundle's overrides file loads; tempo.yaml's defaults apply to {TENANTS[0]}; an entry "
         f"added to the file was in force {time.monotonic() - started:.1f} s later (period {period:.0f} s), no restart")


# ----------------------------------------------------------------------------- Mimir


def make_points(n: int, metric: str) -> object:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=resource("backends"), metric_readers=[reader])
    counter = provider.get_meter("otlp-gate-backends").create_counter(metric)
    for i in range(n):
        counter.add(1, {"route": f"/r{i}", "url.full": URL_ATTR})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def send_points(mimir_b: Backend, data, tenant: str | None):
    exporter = OTLPMetricExporter(endpoint=f"{mimir_b.url}/otlp/v1/metrics", compression=Compression.Gzip,
                                  headers={"X-Scope-OrgID": tenant} if tenant else {}, timeout=60)
    try:
        return exporter.export(data)
    finally:
        exporter.shutdown()


def mimir_query(mimir_b: Backend, query: str, headers: dict, url: str | None = None) -> list:
    r = requests.post(f"{url or mimir_b.url + '/prometheus'}/api/v1/query", data={"query": query},
                      headers=headers, timeout=30)
    if r.status_code != 200:
        raise AssertionError(f"Mimir query {query!r} with {headers}: {r.status_code} {r.text[:300]}")
    return r.json()["data"]["result"]


def needs_mimir(mimir):
    if mimir is None:
        pytest.skip("MIMIR_BIN not set")


def test_mimir_isolates_tenants_and_federates_the_listed_ones(mimir):
    needs_mimir(mimir)
    metric = f"backends_{uuid.uuid4().hex[:8]}"
    for tenant in TENANTS + [OUTSIDER]:
        assert send_points(mimir, make_points(1, metric), tenant) == MetricExportResult.SUCCESS
    query = f'{{__name__=~"{metric}.*"}}'
    for tenant in TENANTS + [OUTSIDER]:
        st.wait_until(lambda: len(mimir_query(mimir, query, {"X-Scope-OrgID": tenant})) == 1, QUERY_TIMEOUT,
                      f"{tenant}'s series alone", interval=1)
    url, headers = datasource("mimir", mimir.url)
    seen = {r["metric"].get("__tenant_id__") for r in mimir_query(mimir, query, headers, url)}
    assert seen == set(TENANTS), f"the Mimir datasource sees {seen}"
    note(f"mimir: tenants isolated; the datasource sees exactly {TENANTS}")


def test_mimir_refuses_a_push_without_tenant(mimir):
    needs_mimir(mimir)
    assert send_points(mimir, make_points(1, "backends_no_tenant"), None) != MetricExportResult.SUCCESS


def test_mimir_accepts_the_largest_batch_alloy_sends(mimir):
    needs_mimir(mimir)
    n = limits.alloy().batch_max_items
    metric = f"backends_batch_{uuid.uuid4().hex[:8]}"
    assert send_points(mimir, make_points(n, metric), TENANTS[0]) == MetricExportResult.SUCCESS
    st.wait_until(lambda: len(mimir_query(mimir, f'{{__name__=~"{metric}.*"}}', {"X-Scope-OrgID": TENANTS[0]})) == n,
                  QUERY_TIMEOUT, f"{n} series in Mimir", interval=1)
    note(f"mimir: one batch of {n} data points accepted, {n} series queried")


def test_mimir_reads_the_runtime_overrides(mimir):
    needs_mimir(mimir)
    want = limits.tenants(yaml.safe_load(mimir.overrides.read_text()))
    r = requests.get(f"{mimir.url}/runtime_config", timeout=30)
    assert r.status_code == 200, r.text
    loaded = limits.tenants(yaml.safe_load(r.text))
    def same(a, b) -> bool:  # Mimir prints durations its own way (14d -> 2w)
        try:
            return duration_s(str(a)) == duration_s(str(b))
        except AssertionError:
            return str(a) == str(b)

    for tenant, values in want.items():
        for key, value in values.items():
            assert same(loaded[tenant][key], value), (tenant, key, loaded[tenant][key], value)
    note(f"mimir: runtime overrides read ({', '.join(want)})")


def test_mimir_ruler_evaluates_the_platform_rules_and_alertmanager_uses_the_fallback(mimir):
    """alert-rules.yaml from the ruler's local store, laid out as the ConfigMap mount lays it out,
    is loaded and evaluated for the `platform` tenant; the tenant's Alertmanager starts from the
    fallback configuration with its placeholder receiver."""
    needs_mimir(mimir)
    headers = {"X-Scope-OrgID": "platform"}
    want = {r["alert"] for g in yaml.safe_load((render.K8S_BASE / "mimir" / "alert-rules.yaml").read_text())["groups"]
            for r in g["rules"]}

    def evaluated():
        r = requests.get(f"{mimir.url}/prometheus/api/v1/rules", headers=headers, timeout=30)
        groups = r.json()["data"]["groups"] if r.status_code == 200 else []
        rules = [x for g in groups if g["file"] == "otlp-gate" for x in g["rules"]]
        return {x["name"] for x in rules if x.get("health") == "ok"} == want and rules

    st.wait_until(evaluated, QUERY_TIMEOUT, "the ruler to evaluate the platform tenant's otlp-gate rules", interval=2)
    r = requests.get(f"{mimir.url}/alertmanager/api/v2/status", headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert "platform-oncall" in r.json()["config"]["original"]
    note(f"mimir: the ruler evaluates {len(want)} otlp-gate alerts for tenant platform; its Alertmanager runs "
         f"the fallback configuration")
