"""The Grafana dashboard and the alert rules against a real Prometheus scraping real Envoys.

Three gateway "pods" (Envoy + otlp_gate.wasm, no HAProxy): a and b serve the same token file, c
starts with a file the filter refuses. Prometheus scrapes their probe listeners exactly as
alloy/kubernetes.alloy scrapes the gateway (tests/e2e/prom.py derives path and labels from it)
and loads k8s/base/mimir/alert-rules.yaml. Traffic then produces every outcome the dashboard
shows; b gets a different token file and then a refused one; a's upstream (the OTLP receiver
standing in for Alloy) goes away. Then every panel query and every alert expression runs through
Prometheus's HTTP API: it parses, every metric it names exists, and it returns what the scenario
should produce (panels: series; alerts: exactly the expected label sets, nothing more).
"""

from __future__ import annotations

import datetime
import json
import re
import time

import pytest

import prom
import stack as st
from conftest import BASE_SETTINGS, register_secret

CLUSTER = "e2e"
PODS = {"a": "otlp-gate-e2e-a", "b": "otlp-gate-e2e-b", "c": "otlp-gate-e2e-c"}
TIMEOUT = 90
UNKNOWN_BURST = 600  # bad tokens from one address: > 1/s over the surge alert's 5 minutes
MAX_FAILURES = 50
COOLING = "127.0.5.1"
ALLOWED_SOURCE = "127.0.9.0/24"

# Grafana's variables as the dashboard sends them for this stack: the Platform metrics data
# source scrapes every 30 s, so $__rate_interval is at least 4 x 30 s; $__range is a 1 h time range.
VARIABLES = {"cluster": CLUSTER, "namespace": "observability", "__rate_interval": "2m", "__range": "1h",
             "__interval": "30s"}


def otlp_body(signal: str) -> bytes:
    """A small, valid OTLP/protobuf export request for `signal`."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = {"traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest,
           "logs": ExportLogsServiceRequest}[signal]()
    part = getattr(req, {"traces": "resource_spans", "metrics": "resource_metrics", "logs": "resource_logs"}[signal]).add()
    attr = part.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "dashboard-e2e"
    return req.SerializeToString()


def post(s: st.Stack, token, signal="traces", source=None) -> int | None:
    headers = [("content-type", "application/x-protobuf")]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    r = st.request(f"{s.data_url}/observability/v1/{signal}", "POST", headers, otlp_body(signal),
                   source=source, timeout=10)
    return r.status if r else None


class Ops:
    """The three stacks, their tokens and Prometheus, driven through the scenario once."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.secrets: dict[str, st.Secret] = {}
        self.entries: list[dict] = []
        in_3_days = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)).replace(microsecond=0)
        self.add("team", tenant="team-a")
        self.add("soon", tenant="team-a", expires_at=in_3_days.isoformat().replace("+00:00", "Z"))
        self.add("narrow", tenant="team-b", signals=["traces"])
        self.add("sourced", tenant="team-b", source_cidrs=[ALLOWED_SOURCE])
        self.add("revoked", tenant="team-a", disabled=True)
        self.add("expired", tenant="team-a", expires_at="2020-01-01T00:00:00Z")
        self.add("limited", tenant="team-a", rate={"requests_per_second": 1, "burst": 1})
        self.add("unused", tenant="team-c")
        self.settings = {**BASE_SETTINGS, "failed_auth": {"max_failures": MAX_FAILURES, "window": "60s",
                                                          "cooldown": "300s"},
                         "tokens": list(self.entries)}
        self.stacks: dict[str, st.Stack] = {}
        self.prometheus = None

    def add(self, token_id, **entry):
        value, digest = st.new_token(token_id)
        register_secret(value)
        self.secrets[token_id] = value
        self.entries.append({"id": token_id, "sha256": digest, **entry})

    def start(self):
        broken = {**self.settings, "tokens": self.settings["tokens"] + [
            {"id": "broken", "sha256": "0" * 63, "tenant": "team-a"}]}
        for name, settings, ready in (("a", self.settings, True), ("b", self.settings, True), ("c", broken, False)):
            self.stacks[name] = st.Stack(self.workdir / f"pod-{name}", settings, haproxy=False,
                                         expect_ready=ready).start()
        self.targets = {n: prom.gateway_target(s.ports.probe, s.ports.data, PODS[n], CLUSTER)
                        for n, s in self.stacks.items()}
        self.prometheus = prom.Prometheus(self.workdir / "prometheus", list(self.targets.values()),
                                          rule_files=[prom.RULES])
        return self

    def close(self):
        if self.prometheus:
            self.prometheus.close()
        for s in self.stacks.values():
            s.close()

    def wait_scraped(self, since: float, what: str):
        """Until Prometheus holds a scrape of every pod taken after `since` (wall clock) and has
        evaluated the rules on it."""
        def done():
            res = self.prometheus.series(f'timestamp(up{{cluster="{CLUSTER}"}})')
            return len(res) == len(self.stacks) and all(float(r["value"][1]) > since + 1.5 for r in res)
        st.wait_until(done, TIMEOUT, what, interval=0.25)

    def drive(self):
        p = self.prometheus
        a, b = self.stacks["a"], self.stacks["b"]
        s = self.secrets
        # Prometheus has scraped every pod once (every counter's zero is recorded before traffic).
        st.wait_until(lambda: len(p.series(f'up{{cluster="{CLUSTER}"}} == 1')) == 3
                      and len(p.series(f'otlp_gate_tokens_loaded{{cluster="{CLUSTER}"}}')) == 2,
                      TIMEOUT, "the first scrape of every pod", interval=0.25)
        self.wait_scraped(time.time(), "a scrape after start")
        self.skew_before = p.series(self.alert_expr("OtlpGateTokenFileSkew"))

        for signal in ("traces", "metrics", "logs"):
            for _ in range(5):
                assert post(a, s["team"], signal) == 200
        for _ in range(5):
            assert post(b, s["team"]) == 200
        for _ in range(3):
            assert post(a, s["soon"]) == 200
            assert post(a, s["narrow"], "logs") == 403
            assert post(a, s["sourced"]) == 403
            assert post(a, s["revoked"]) == 401
            assert post(a, s["expired"]) == 401
        assert post(a, s["sourced"], source="127.0.9.1") == 200
        limited = [post(a, s["limited"]) for _ in range(6)]
        assert limited.count(429) >= 4 and limited.count(200) >= 1, limited
        wrong = st.new_token("guess")[0]
        guesses = [post(a, f"{wrong}{i}", source=COOLING) for i in range(UNKNOWN_BURST)]
        assert guesses.count(401) == MAX_FAILURES and guesses.count(429) == UNKNOWN_BURST - MAX_FAILURES, \
            {c: guesses.count(c) for c in set(guesses)}

        # b: a different valid token file, then one the filter refuses.
        changed = {**self.settings, "tokens": self.settings["tokens"] + [
            {"id": "added", "sha256": st.new_token("added")[1], "tenant": "team-c"}]}
        b.load(changed)
        rejected = b.admin_stat(st.ECDS_STATS + "update_rejected") or 0
        b.swap({**changed, "tokens": changed["tokens"] + [{"id": "broken", "sha256": "x", "tenant": "team-a"}]})
        st.wait_until(lambda: (b.admin_stat(st.ECDS_STATS + "update_rejected") or 0) > rejected, TIMEOUT,
                      "b to refuse the broken token file")

        # a's upstream goes away: every accepted request now fails with Envoy's 503. Two bursts a
        # few scrapes apart, so that rate() sees the 5xx series grow.
        a.receiver.stop()
        first = [post(a, s["team"]) for _ in range(5)]
        self.wait_scraped(time.time(), "a scrape after the first upstream failures")
        # Sustained rate limiting: a second burst after a scrape (a token's rate_limited series
        # appears with its first refusal, so rate() needs it to grow).
        # (The bucket refilled meanwhile: the first may be admitted, and fail upstream.)
        again = [post(a, s["limited"]) for _ in range(4)]
        assert again.count(429) >= 3, again
        second = [post(a, s["team"]) for _ in range(20)]
        assert set(first + second) == {503}, first + second
        self.wait_scraped(time.time(), "a scrape after the scenario")

    def alert_expr(self, name: str) -> str:
        return next(r["expr"] for r in prom.alert_rules() if r["alert"] == name)


@pytest.fixture(scope="module")
def ops(workdir, module):
    if not prom.prometheus_binary():
        pytest.fail("prometheus is not installed: run `bash .ci/setup` (Debian's prometheus package)")
    o = Ops(workdir / "ops")
    try:
        o.start()
        o.drive()
        yield o
    finally:
        o.close()


def labels_of(result: list[dict], *keys) -> list[dict]:
    return sorted(({k: r["metric"].get(k) for k in keys} for r in result), key=json.dumps)


def test_scraped_exactly_as_alloy_scrapes_the_gateway(ops):
    """One target per pod (the data port is dropped by the relabelling), the probe listener's
    /stats/prometheus, Alloy's job name and target labels, all of them up (c too: not ready, but
    scraped, so its metrics say why)."""
    active = ops.prometheus.api("targets", state="active")["data"]["activeTargets"]
    got = sorted((t["labels"]["pod"], t["scrapeUrl"], t["health"]) for t in active)
    want = sorted((PODS[n], f"http://127.0.0.1:{s.ports.probe}/stats/prometheus", "up") for n, s in ops.stacks.items())
    assert got == want
    for t in active:
        labels = dict(t["labels"])
        assert labels.pop("instance").startswith("127.0.0.1:")
        assert labels == {"job": "prometheus.scrape.annotated_pods", "namespace": "observability",
                          "pod": labels["pod"], "container": "envoy", "app": "otlp-gate", "cluster": CLUSTER}


def evaluate(p, label: str, q: str, problems: list[str]):
    """Runs q through Prometheus's API; notes in problems a query that does not parse or a metric it
    names that has no series. Returns the result vector, or None when the query did not parse."""
    doc = p.query(q)
    if doc.get("status") != "success":
        problems.append(f"{label}: {doc.get('error')}")
        return None
    missing = sorted(n for n in prom.metric_names(q) if not p.series(f'count({{__name__="{n}"}})'))
    if missing:
        problems.append(f"{label}: no series of {missing}")
    return doc["data"]["result"]


def test_every_panel_query_parses_names_existing_metrics_and_returns_series(ops):
    p = ops.prometheus
    problems = []
    checked = 0
    for title, ref, ds, expr in prom.panel_queries(prom.dashboard()):
        if ds != "prometheus":
            continue
        q = prom.substitute(expr, VARIABLES)
        result = evaluate(p, f"{title} {ref}", q, problems)
        if result is None:
            continue
        if not result:
            problems.append(f"{title} {ref}: no series after the traffic ({q})")
        checked += 1
    assert checked >= 30 and not problems, "\n".join(problems)


def test_dashboard_variables_list_this_stack(ops):
    for var in prom.dashboard()["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.*), (\w+)\)", var["definition"])
        assert m, var["definition"]
        selector = prom.substitute(m.group(1), {"cluster": CLUSTER})
        values = ops.prometheus.api(f"label/{m.group(2)}/values", **{"match[]": selector})["data"]
        assert VARIABLES[var["name"]] in values, (var["name"], values)


def test_logs_panel_reads_fields_the_access_log_has(ops):
    """The cooldown panel's LogQL: its stream labels are the ones Alloy gives the gateway's logs,
    and its JSON fields are in the access log lines of throttled requests."""
    blocks = prom.parse_alloy(prom.KUBERNETES_ALLOY.read_text())
    rules = [r for r in prom.find_block(blocks, "discovery.relabel", "gateway_logs").blocks if r.name == "rule"]
    stream_labels = {r.attrs["target_label"] for r in rules if "target_label" in r.attrs}
    fixed = {r.attrs["target_label"]: r.attrs["replacement"] for r in rules
             if "replacement" in r.attrs and not r.attrs.get("source_labels")}
    remote = prom.find_block(prom.parse_alloy(prom.CONFIG_ALLOY.read_text()), "loki.write", "platform")
    stream_labels |= set(remote.attrs.get("external_labels", {}))
    panels = [(t, e) for t, _, ds, e in prom.panel_queries(prom.dashboard()) if ds == "loki"]
    assert panels, "the dashboard has a logs panel"
    lines = [json.loads(x) for x in ops.stacks["a"].envoy.out_path.read_text().splitlines() if x.startswith("{")]
    for title, expr in panels:
        selector = re.match(r".*?\{([^}]*)\}", expr).group(1)
        for name, op, value in re.findall(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"', selector):
            assert name in stream_labels, f"{title}: stream label {name} is not set by alloy/"
            if op == "=" and name in fixed:
                assert fixed[name] == value, f"{title}: {name}={value!r}, Alloy sets {fixed[name]!r}"
        pipeline = expr[expr.index("}") + 1:]
        filters = dict(re.findall(r'\|\s*(\w+)\s*=\s*"([^"]*)"', pipeline))
        filters.pop("__error__", None)
        grouped = re.search(r"by \(([^)]*)\)", expr).group(1).replace(" ", "").split(",")
        hits = [x for x in lines if all(str(x.get(k)) == v for k, v in filters.items())]
        assert len(hits) == UNKNOWN_BURST - MAX_FAILURES, (title, filters, len(hits))
        assert all(set(grouped) <= set(x) for x in hits), grouped
        assert {x["peer"] for x in hits} == {COOLING}


# What every alert expression must return after the scenario (Prometheus evaluates the
# expression, without `for`): the label values of each series, or nothing.
EXPECTED = {
    "OtlpGateTokenFileRefused": ("pod", [PODS["b"]]),
    "OtlpGateGatewayNotReady": ("pod", [PODS["c"]]),
    "OtlpGateGatewayAbsent": None,
    "OtlpGateDryRunEnabled": None,
    "OtlpGateTokenExpiringSoonInUse": ("token_id", ["soon"]),
    "OtlpGateRevokedTokenPresented": ("token_id", ["expired", "revoked"]),
    "OtlpGateFailedAuthSurge": ("namespace", ["observability"]),
    "OtlpGateAddressesInCooldown": ("namespace", ["observability"]),
    "OtlpGateTokenRateLimited": ("token_id", ["limited"]),
    "OtlpGateUpstreamErrors": ("namespace", ["observability"]),
    "OtlpGateTokenFileSkew": ("namespace", ["observability"]),
}


def test_every_alert_expression_parses_names_existing_metrics_and_selects_the_scenario(ops):
    p = ops.prometheus
    rules = prom.alert_rules()
    assert sorted(r["alert"] for r in rules) == sorted(EXPECTED), "a new alert needs its expected result here"
    problems = []
    for rule in rules:
        name, expr = rule["alert"], rule["expr"]
        got = evaluate(p, name, expr, problems)
        if got is None:
            continue
        want = EXPECTED[name]
        if want is None:
            if got:
                problems.append(f"{name}: expected nothing, got {[r['metric'] for r in got]}")
        else:
            key, values = want
            if sorted(r["metric"].get(key) for r in got) != sorted(values):
                problems.append(f"{name}: expected {key} {values}, got {[r['metric'] for r in got]}")
    assert not problems, "\n".join(problems)


def test_rules_loaded_into_prometheus_evaluate_and_alert(ops):
    """The rule file as Prometheus loads it: every rule evaluates without error, and the alerts the
    scenario triggers are active (firing without `for`, pending with it)."""
    def state():
        groups = ops.prometheus.api("rules")["data"]["groups"]
        return {r["name"]: r for g in groups for r in g["rules"]}

    st.wait_until(lambda: all(r.get("lastEvaluation", "").startswith("2") for r in state().values())
                  and len(state()) == len(EXPECTED), TIMEOUT, "the rules to be evaluated")
    rules = state()
    assert {n: (r["health"], r.get("lastError", "")) for n, r in rules.items() if r["health"] != "ok"} == {}
    spec = {r["alert"]: r for r in prom.alert_rules()}
    for name, want in EXPECTED.items():
        active = {a["state"] for a in rules[name]["alerts"]}
        if want is None:
            assert active == set(), name
        else:
            assert active == {"pending" if spec[name].get("for") else "firing"}, (name, active)
    firing = ops.prometheus.api("alerts")["data"]["alerts"]
    revoked = [a for a in firing if a["labels"]["alertname"] == "OtlpGateRevokedTokenPresented"]
    assert {a["annotations"]["summary"] for a in revoked} == {
        "otlp-gate: disabled token revoked is still presented", "otlp-gate: expired token expired is still presented"}
    assert all(a["annotations"]["runbook_url"] == "README.md#otlpgaterevokedtokenpresented" for a in revoked)


# The scenario checks the issue names, spelled out.

def test_refused_token_file_update_shows_in_the_token_file_alert(ops):
    res = ops.prometheus.series(ops.alert_expr("OtlpGateTokenFileRefused"))
    assert labels_of(res, "pod", "cluster", "namespace") == [
        {"pod": PODS["b"], "cluster": CLUSTER, "namespace": "observability"}]
    assert ops.skew_before == [], "a and b served the same file before b's update"
    skew = ops.prometheus.series(ops.alert_expr("OtlpGateTokenFileSkew"))
    assert [float(r["value"][1]) for r in skew] == [2.0]


def test_token_expiring_in_3_days_shows_in_the_expiring_expression(ops):
    res = ops.prometheus.series(ops.alert_expr("OtlpGateTokenExpiringSoonInUse"))
    assert labels_of(res, "token_id") == [{"token_id": "soon"}]
    left = float(res[0]["value"][1])
    assert 3 * 86400 - 600 < left <= 3 * 86400
    panel = next(e for t, _, _, e in prom.panel_queries(prom.dashboard()) if t == "Tokens expiring within warn_before")
    rows = ops.prometheus.series(prom.substitute(panel, VARIABLES))
    assert sorted(r["metric"]["token_id"] for r in rows) == ["expired", "soon"], "within warn_before (14d), or past"


def test_burst_of_bad_tokens_trips_the_failed_auth_expression(ops):
    res = ops.prometheus.series(ops.alert_expr("OtlpGateFailedAuthSurge"))
    assert len(res) == 1 and float(res[0]["value"][1]) >= UNKNOWN_BURST / 300 * 0.9


def test_revoked_token_still_presented_shows_up_with_its_id(ops):
    res = ops.prometheus.series(ops.alert_expr("OtlpGateRevokedTokenPresented"))
    assert labels_of(res, "token_id", "outcome") == [{"token_id": "expired", "outcome": "expired"},
                                                     {"token_id": "revoked", "outcome": "disabled"}]
    assert all(2.5 <= float(r["value"][1]) <= 3.5 for r in res), [r["value"] for r in res]
