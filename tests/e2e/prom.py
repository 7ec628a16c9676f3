"""A real Prometheus (Debian's `prometheus` 2.42) scraping e2e Envoys the way production does, and
the helpers to run the dashboard's and the alert rules' queries against it.

The scrape target is derived, not written down: the gateway Deployment's pod (labels, annotations,
container ports; k8s/base/gateway/deployment.yaml) becomes the targets Alloy's
`discovery.kubernetes` would produce, and the `discovery.relabel` rules of alloy/kubernetes.alloy
are applied to them with Prometheus's relabelling semantics. What comes out (address, metrics
path, scheme, target labels, the job name of the `prometheus.scrape` component that reads the
relabelled targets) plus the `cluster` external label of config.alloy's remote write is what
Prometheus is configured with. Only the production ports are swapped for the e2e Envoy's.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml

import stack as st

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_ALLOY = ROOT / "alloy" / "kubernetes.alloy"
CONFIG_ALLOY = ROOT / "alloy" / "config.alloy"
DEPLOYMENT = ROOT / "k8s" / "base" / "gateway" / "deployment.yaml"
KUSTOMIZATION = ROOT / "k8s" / "base" / "kustomization.yaml"
RULES = ROOT / "k8s" / "base" / "mimir" / "alert-rules.yaml"
DASHBOARD = ROOT / "k8s" / "base" / "grafana" / "dashboards" / "otlp-gate.json"


# ----------------------------------------------------------------------------- Alloy syntax


_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_.]*)|(-?\d+(?:\.\d+)?)|([{}\[\](),=])',
                    re.S)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"alloy: cannot read {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.group(1):
            out.append(("str", json.loads(m.group(1))))
        elif m.group(2):
            out.append(("ident", m.group(2)))
        elif m.group(3):
            out.append(("num", m.group(3)))
        elif m.group(4):
            out.append(("punct", m.group(4)))
    return out


@dataclass
class Block:
    name: str
    label: str | None
    attrs: dict
    blocks: list


@dataclass
class Ref:
    """A reference (`discovery.relabel.x.output`) or a call (`sys.env("X")`)."""
    path: str
    args: tuple = ()


def parse_alloy(text: str) -> list[Block]:
    """Blocks, attributes, strings, lists, maps, references and calls: enough of the syntax for the
    files in alloy/ (alloy-check validates them fully)."""
    toks = _tokens(text)
    i = 0

    def expr():
        nonlocal i
        kind, val = toks[i]
        if kind in ("str", "num"):
            i += 1
            return val if kind == "str" else float(val)
        if kind == "ident":
            i += 1
            if val in ("true", "false"):
                return val == "true"
            if i < len(toks) and toks[i] == ("punct", "("):
                i += 1
                args = []
                while toks[i] != ("punct", ")"):
                    args.append(expr())
                    if toks[i] == ("punct", ","):
                        i += 1
                i += 1
                return Ref(val, tuple(args))
            return Ref(val)
        if val == "[":
            i += 1
            items = []
            while toks[i] != ("punct", "]"):
                items.append(expr())
                if toks[i] == ("punct", ","):
                    i += 1
            i += 1
            return items
        if val == "{":
            i += 1
            items = {}
            while toks[i] != ("punct", "}"):
                key = toks[i][1]
                i += 2  # key, '='
                items[key] = expr()
                if toks[i] == ("punct", ","):
                    i += 1
            i += 1
            return items
        raise ValueError(f"alloy: unexpected {val!r}")

    def body(end):
        nonlocal i
        attrs, blocks = {}, []
        while i < len(toks) and toks[i] != end:
            name = toks[i][1]
            i += 1
            if toks[i] == ("punct", "="):
                i += 1
                attrs[name] = expr()
                continue
            label = None
            if toks[i][0] == "str":
                label = toks[i][1]
                i += 1
            i += 1  # '{'
            a, b = body(("punct", "}"))
            i += 1  # '}'
            blocks.append(Block(name, label, a, b))
        return attrs, blocks

    _, blocks = body(None)
    return blocks


def find_block(blocks: list[Block], name: str, label: str) -> Block:
    for b in blocks:
        if b.name == name and b.label == label:
            return b
    raise LookupError(f"no {name} \"{label}\" block")


# ----------------------------------------------------------------------------- relabelling


def _expand(template: str, m: re.Match) -> str:
    # Prometheus (Go regexp.Expand): $1, ${1}, $name; a missing group expands to "".
    def sub(g):
        key = g.group(1) or g.group(2)
        try:
            return m.group(int(key) if key.isdigit() else key) or ""
        except IndexError:
            return ""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, template)


def relabel(labels: dict[str, str], rules: list[Block]) -> dict[str, str] | None:
    """Prometheus relabelling (the actions alloy/kubernetes.alloy uses); None if the target is dropped."""
    lb = dict(labels)
    for rule in rules:
        a = rule.attrs
        action = a.get("action", "replace")
        sep = a.get("separator", ";")
        value = sep.join(lb.get(s, "") for s in a.get("source_labels", []))
        regex = re.compile("^(?:" + a.get("regex", "(.*)") + ")$")
        if action == "keep":
            if not regex.match(value):
                return None
        elif action == "drop":
            if regex.match(value):
                return None
        elif action == "keepequal":
            if lb.get(a["target_label"], "") != value:
                return None
        elif action == "dropequal":
            if lb.get(a["target_label"], "") == value:
                return None
        elif action == "replace":
            m = regex.match(value)
            if not m:
                continue
            target = _expand(a["target_label"], m)
            result = _expand(a.get("replacement", "$1"), m)
            if result:
                lb[target] = result
            else:
                lb.pop(target, None)
        else:
            raise NotImplementedError(f"relabel action {action!r}: teach tests/e2e/prom.py")
    return lb


@dataclass
class ScrapeTarget:
    job: str
    address: str
    metrics_path: str
    scheme: str
    labels: dict[str, str]


def gateway_target(probe_port: int, data_port: int, pod_name: str, cluster: str) -> ScrapeTarget:
    """The scrape target Alloy makes of one gateway pod, with the e2e Envoy's ports."""
    blocks = parse_alloy(KUBERNETES_ALLOY.read_text(encoding="utf-8"))
    scrape = next(b for b in blocks if b.name == "prometheus.scrape"
                  and isinstance(b.attrs.get("targets"), Ref)
                  and b.attrs["targets"].path.startswith("discovery.relabel."))
    relabel_label = scrape.attrs["targets"].path.split(".")[2]
    rules = [r for r in find_block(blocks, "discovery.relabel", relabel_label).blocks if r.name == "rule"]

    dep = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))
    namespace = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))["namespace"]
    tmpl = dep["spec"]["template"]
    ports = {8080: data_port, 8081: probe_port}  # production -> e2e

    def swap(v: str) -> str:
        return str(ports.get(int(v), v)) if str(v).isdigit() else v

    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
    }
    for k, v in tmpl["metadata"].get("labels", {}).items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^A-Za-z0-9_]", "_", k)] = v
    for k, v in tmpl["metadata"].get("annotations", {}).items():
        meta["__meta_kubernetes_pod_annotation_" + re.sub(r"[^A-Za-z0-9_]", "_", k)] = swap(v)
    # discovery.kubernetes (role pod): one target per declared container port.
    candidates = []
    for c in tmpl["spec"]["containers"]:
        for p in c.get("ports", []):
            port = ports[p["containerPort"]]
            candidates.append({**meta, "__address__": f"127.0.0.1:{port}",
                               "__meta_kubernetes_pod_container_name": c["name"],
                               "__meta_kubernetes_pod_container_init": "false",
                               "__meta_kubernetes_pod_container_port_name": p.get("name", ""),
                               "__meta_kubernetes_pod_container_port_number": str(port),
                               "__meta_kubernetes_pod_container_port_protocol": p.get("protocol", "TCP")})
    kept = [t for t in (relabel(c, rules) for c in candidates) if t is not None]
    if len(kept) != 1:
        raise AssertionError(f"alloy/kubernetes.alloy keeps {len(kept)} targets of the gateway pod, expected 1")
    t = kept[0]
    labels = {k: v for k, v in t.items() if not k.startswith("__")}
    # config.alloy's remote write adds the external label `cluster` (from CLUSTER_NAME).
    remote = next(b for b in parse_alloy(CONFIG_ALLOY.read_text(encoding="utf-8"))
                  if b.name == "prometheus.remote_write" and b.label == "platform")
    for name, value in remote.attrs.get("external_labels", {}).items():
        if isinstance(value, Ref) and value.path == "sys.env" and value.args == ("CLUSTER_NAME",):
            labels[name] = cluster
        elif isinstance(value, str):
            labels[name] = value
        else:
            raise AssertionError(f"config.alloy external label {name}: teach tests/e2e/prom.py")
    job = scrape.attrs.get("job_name") or f"{scrape.name}.{scrape.label}"
    return ScrapeTarget(job=job, address=t["__address__"], metrics_path=t.get("__metrics_path__", "/metrics"),
                        scheme=t.get("__scheme__", "http"), labels=labels)


# ----------------------------------------------------------------------------- Prometheus


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class Prometheus:
    """A Prometheus server on loopback with the given targets, scraping and evaluating every second."""

    def __init__(self, workdir: Path, targets: list[ScrapeTarget], rule_files=(), interval: str = "1s"):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = st.free_ports(1)[0]
        cfg = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [],
        }
        jobs: dict[str, dict] = {}
        for t in targets:
            job = jobs.setdefault(t.job, {"job_name": t.job, "metrics_path": t.metrics_path, "scheme": t.scheme,
                                          "static_configs": []})
            assert (job["metrics_path"], job["scheme"]) == (t.metrics_path, t.scheme)
            job["static_configs"].append({"targets": [t.address], "labels": t.labels})
        cfg["scrape_configs"] = list(jobs.values())
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.proc = st.Proc("prometheus", [
            prometheus_binary(), f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ], workdir)
        st.wait_until(lambda: self._ready() or not self.proc.alive(), 60, "Prometheus to start",
                      diagnose=self.proc.tail)
        if not self.proc.alive():
            raise RuntimeError("Prometheus exited at startup\n" + self.proc.tail())

    def _ready(self) -> bool:
        r = st.request(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
        return r is not None and r.status == 200

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; returns the JSON document (status success or error), never raises on 400."""
        query = urllib.parse.urlencode(params, doseq=True)
        r = st.request(f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}", timeout=30)
        if r is None:
            raise RuntimeError("Prometheus is not answering\n" + self.proc.tail())
        return json.loads(r.body)

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr, time=f"{time.time():.3f}")

    def series(self, expr: str) -> list[dict]:
        doc = self.query(expr)
        if doc.get("status") != "success":
            raise AssertionError(f"{expr}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]["result"]

    def close(self) -> None:
        self.proc.stop()


# ----------------------------------------------------------------------------- PromQL


_KEYWORDS_WITH_LABELS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregation operators may be followed by `by (...)` instead of their argument.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                 "topk", "quantile", "limitk", "limit_ratio"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"} | _KEYWORDS_WITH_LABELS | _AGGREGATIONS


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, matchers, ranges, functions,
    aggregations and their label lists removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # a duration or number suffix (5m, 1e3)
        rest = s[m.end():].lstrip()
        if word.lower() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    # Label lists of by/on/...: `by (a, b)` left their names behind; drop them.
    for m in re.finditer(r"\b(?:" + "|".join(_KEYWORDS_WITH_LABELS) + r")\s*\(([^()]*)\)", s):
        names -= {n.strip() for n in m.group(1).split(",")}
    return names


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's template variables, as the dashboard would send them."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    if "$" in expr:
        raise AssertionError(f"unsubstituted variable in {expr!r}")
    return expr


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panel_queries(dash: dict):
    """(panel title, refId, datasource type, expression) of every query of every panel."""
    for p in dash["panels"]:
        for q in p.get("targets", []):
            yield p["title"], q["refId"], q["datasource"]["type"], q["expr"]


def alert_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
