#!/usr/bin/env python3
"""Checks of the day-2 operations files for k8s/validate.sh (stdlib + PyYAML): the Grafana
dashboard, the alert rules and their promtool tests, and how the bundle and compose.yaml wire them
into Grafana and Mimir. promtool and amtool check the rule and Alertmanager syntax themselves;
tests/e2e/test_dashboard_alerts.py runs every query against a real Prometheus.

  static            dashboard, rules, tests, README runbook anchors, compose.yaml mounts
  rendered FILE     a rendered overlay: Mimir's ruler/Alertmanager and Grafana's dashboards mounted
                    where their configuration reads them, writable paths on a volume; with the
                    external-lgtm component, their ConfigMaps gone with them

Prints PASS/FAIL lines and exits 1 on failure.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "k8s/base/grafana/dashboards/otlp-gate.json"
PROVIDERS = ROOT / "k8s/base/grafana/dashboards.yaml"
DATASOURCES = ROOT / "k8s/base/grafana/datasources.yaml"
RULES = ROOT / "k8s/base/mimir/alert-rules.yaml"
RULE_TESTS = ROOT / "tests/alerts/alert-rules.test.yaml"
MIMIR = ROOT / "k8s/base/mimir/mimir.yaml"
README = ROOT / "README.md"
COMPOSE = ROOT / "compose.yaml"

# The dashboard schema version the pinned Grafana writes and migrates to: Grafana 13's backend
# migrator (apps/dashboard/pkg/migration/schemaversion/migrations.go, LATEST_VERSION = 42; V42 makes
# every field hidden from a visualization hidden from its tooltip too). A dashboard at this version
# is loaded as it is, without migration. Re-check both when the Grafana image changes.
GRAFANA_IMAGE = "grafana/grafana:13.2.0"
GRAFANA_SCHEMA_VERSION = 42
# Core panel plugins of Grafana 13 this dashboard may use (no external plugins are installed:
# GF_PLUGINS_PREINSTALL_DISABLED).
PANEL_TYPES = {"row", "timeseries", "table", "stat", "bargauge", "text"}
SEVERITIES = {"critical", "warning", "info"}

failures = 0


def report(ok: bool, what: str) -> None:
    global failures
    print(f"{'PASS' if ok else 'FAIL'} {what}")
    if not ok:
        failures += 1


def datasource_uids() -> dict[str, str]:
    doc = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return {d["uid"]: d["type"] for d in doc["datasources"]}


def check_dashboard() -> None:
    try:
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        report(False, f"{DASHBOARD.relative_to(ROOT)} is JSON: {e}")
        return
    uids = datasource_uids()
    problems = []
    images = {p.read_text(encoding="utf-8").count(GRAFANA_IMAGE) > 0
              for p in (ROOT / "k8s/base/grafana/statefulset.yaml", COMPOSE)}
    report(images == {True}, f"Grafana is pinned to {GRAFANA_IMAGE} in the bundle and compose.yaml "
           f"(the schema version below was checked against it)")
    report(dash.get("schemaVersion") == GRAFANA_SCHEMA_VERSION,
           f"dashboard schemaVersion {dash.get('schemaVersion')} is {GRAFANA_IMAGE}'s latest "
           f"({GRAFANA_SCHEMA_VERSION}): loaded without migration")
    for key, want in (("uid", "otlp-gate"), ("title", "otlp-gate")):
        if dash.get(key) != want:
            problems.append(f"{key} is {dash.get(key)!r}, expected {want!r}")
    if "id" in dash and dash["id"] is not None:
        problems.append("a provisioned dashboard must not carry a database id")

    def check_ds(where, ds, allowed_types=None):
        if not isinstance(ds, dict) or ds.get("uid") not in uids:
            problems.append(f"{where}: datasource {ds!r} is not a uid in {DATASOURCES.name} ({sorted(uids)})")
        elif ds.get("type") != uids[ds["uid"]]:
            problems.append(f"{where}: datasource type {ds.get('type')!r}, {DATASOURCES.name} says {uids[ds['uid']]!r}")

    for var in dash.get("templating", {}).get("list", []):
        check_ds(f"variable {var.get('name')}", var.get("datasource"))
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids not unique: {ids}")
    titles = [p.get("title") for p in panels]
    if len(set(titles)) != len(titles):
        problems.append("panel titles not unique (the e2e suite and the README name panels by title)")
    cells = {}
    for p in panels:
        t = p.get("title")
        if p.get("type") not in PANEL_TYPES:
            problems.append(f"{t}: panel type {p.get('type')!r} is not a core panel")
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in "hwxy") or gp["x"] + gp["w"] > 24 or gp["w"] < 1:
            problems.append(f"{t}: gridPos {gp} outside the 24-column grid")
            continue
        for x in range(gp["x"], gp["x"] + gp["w"]):
            for y in range(gp["y"], gp["y"] + gp["h"]):
                if (x, y) in cells:
                    problems.append(f"{t}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = t
            else:
                continue
            break
        if p["type"] == "row":
            continue
        if len(p.get("description", "")) < 80:
            problems.append(f"{t}: no description saying what to do when it looks wrong")
        check_ds(t, p.get("datasource"))
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{t}: no queries")
        refs = [q.get("refId") for q in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{t}: refIds not unique")
        for q in targets:
            check_ds(f"{t} query {q.get('refId')}", q.get("datasource"))
            if not str(q.get("expr", "")).strip():
                problems.append(f"{t} query {q.get('refId')}: empty expression")
        for tr in p.get("transformations", []):
            if tr.get("id") == "formatTime":
                problems.append(f"{t}: formatTime transformation (replaced by convertFieldType)")
        for o in p.get("fieldConfig", {}).get("overrides", []):
            for prop in o.get("properties", []):
                v = prop.get("value")
                if prop.get("id") == "custom.hideFrom" and isinstance(v, dict) and v.get("viz") and not v.get("tooltip"):
                    problems.append(f"{t}: hideFrom.viz without hideFrom.tooltip (schema 42 requires both)")
    report(not problems, f"dashboard {DASHBOARD.relative_to(ROOT)}: {len(panels)} panels, every "
           f"datasource uid in {DATASOURCES.name}, unique ids and titles, core panel types, grid without "
           f"overlaps, a description on every panel" + (f": {problems}" if problems else ""))

    prov = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    ok = prov.get("apiVersion") == 1 and [q.get("type") for q in prov.get("providers", [])] == ["file"]
    report(ok, f"{PROVIDERS.relative_to(ROOT)}: one file provider")


def github_anchors(markdown: str) -> set[str]:
    """The anchors a Markdown file has on GitHub: its headings' (lower case, punctuation dropped,
    spaces to hyphens, -1/-2 for repeats) and explicit `<a id="...">` elements (the README's
    runbook table gives each alert's row one), outside code blocks."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        out.update(re.findall(r'<a\s+id="([^"]+)"\s*>', line))
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"`", "", m.group(2)).lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def check_rules() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    anchors = github_anchors(README.read_text(encoding="utf-8"))
    problems = []
    for a in alerts:
        name = a["alert"]
        ann = a.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                problems.append(f"{name}: no {key}")
        url = str(ann.get("runbook_url", ""))
        m = re.fullmatch(r"README\.md#([a-z0-9_-]+)", url)
        if not m or m.group(1) not in anchors:
            problems.append(f"{name}: runbook_url {url!r} is not an anchor in README.md (a heading or <a id>)")
        if a.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity label not one of {sorted(SEVERITIES)}")
        if 'app="otlp-gate"' not in a["expr"]:
            problems.append(f"{name}: expression does not select app=\"otlp-gate\"")
    report(not problems, f"{RULES.relative_to(ROOT)}: {len(alerts)} alerts, each with summary, description, "
           f"a severity and a runbook_url that is an anchor in README.md" + (f": {problems}" if problems else ""))

    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fires, quiet = set(), set()
    for t in tests.get("tests", []):
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts}
    missing = sorted((names - fires) | (names - quiet))
    unknown = sorted((fires | quiet) - names)
    report(not missing and not unknown,
           f"{RULE_TESTS.relative_to(ROOT)}: every alert has a case where it fires and one where it stays "
           f"quiet" + (f"; missing for {missing}" if missing else "") + (f"; unknown alerts {unknown}" if unknown else ""))


def check_compose() -> None:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    mimir = yaml.safe_load(MIMIR.read_text(encoding="utf-8"))
    local_dir = mimir["ruler_storage"]["local"]["directory"]
    fallback = mimir["alertmanager"]["fallback_config_file"]
    want = {
        "mimir": {f"./k8s/base/mimir/alert-rules.yaml:{local_dir}/platform/otlp-gate:ro",
                  f"./k8s/base/mimir/alertmanager.yaml:{fallback}:ro"},
        "grafana": {"./k8s/base/grafana/dashboards.yaml:/etc/grafana/provisioning/dashboards/dashboards.yaml:ro",
                    "./k8s/base/grafana/dashboards:" + provider_path() + ":ro"},
    }
    problems = []
    for svc, mounts in want.items():
        have = set(services[svc].get("volumes", []))
        if not mounts <= have:
            problems.append(f"{svc} lacks {sorted(mounts - have)}")
    command = " ".join(services["mimir"].get("command", []))
    if not re.search(r"-target=\S*\balertmanager\b", command):
        problems.append("mimir does not run the alertmanager target")
    report(not problems, "compose.yaml mounts the rules, the Alertmanager configuration, the dashboards and "
           "their provider where Mimir and Grafana read them" + (f": {problems}" if problems else ""))


def provider_path() -> str:
    prov = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    return prov["providers"][0]["options"]["path"]


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; Mimir, Grafana and Prometheus refuse the file."""


def _mapping(loader, node, deep=False):
    keys = [k.value for k, _ in node.value]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate key(s) {dup}", node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def check_unique_keys() -> None:
    files = [MIMIR, RULES, ROOT / "k8s/base/mimir/alertmanager.yaml", PROVIDERS, DATASOURCES, RULE_TESTS]
    problems = []
    for f in files:
        try:
            yaml.load(f.read_text(encoding="utf-8"), Loader=_UniqueKeys)
        except yaml.YAMLError as e:
            problems.append(f"{f.relative_to(ROOT)}: {e}")
    report(not problems, f"no duplicate keys in {', '.join(f.name for f in files)}"
           + (f": {problems}" if problems else ""))


def cmd_static() -> None:
    check_unique_keys()
    check_dashboard()
    check_rules()
    check_compose()


def cmd_rendered(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    name = path.stem

    def one(kind, nm):
        return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == nm), None)

    def configmap(prefix):
        for d in docs:
            n = d["metadata"]["name"]
            if d["kind"] == "ConfigMap" and (n == prefix or re.fullmatch(re.escape(prefix) + r"-[a-z0-9]{10}", n)):
                return d
        return None

    def mounts_of(kind, nm):
        obj = one(kind, nm)
        spec = obj["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in obj["spec"].get("volumeClaimTemplates", [])}
        ctr = spec["containers"][0]
        out = {}
        for m in ctr.get("volumeMounts", []):
            v = vols.get(m["name"], {})
            src = ("configMap", v["configMap"]["name"]) if "configMap" in v else \
                  ("writable", m["name"]) if ("emptyDir" in v or m["name"] in claims) else ("other", m["name"])
            out[m["mountPath"]] = (src, m)
        return ctr, out

    if one("StatefulSet", "mimir") is None:
        left = [n for n in ("mimir-rules-platform", "mimir-alertmanager") if configmap(n) is not None]
        report(not left, f"{name}: no bundled Mimir, and none of its rule or Alertmanager ConfigMaps"
               + (f": {left} left" if left else ""))
    else:
        check_mimir(name, one, configmap, mounts_of)
    if one("StatefulSet", "grafana") is None:
        left = [n for n in ("grafana-dashboard-providers", "grafana-dashboards") if configmap(n) is not None]
        report(not left, f"{name}: no bundled Grafana, and none of its dashboard ConfigMaps"
               + (f": {left} left" if left else ""))
    else:
        check_grafana(name, configmap, mounts_of)


def check_mimir(name, one, configmap, mounts_of) -> None:
    """Mimir: the ruler's local store, the Alertmanager's fallback file, writable paths."""
    ctr, mounts = mounts_of("StatefulSet", "mimir")
    cfg = yaml.safe_load(configmap("mimir-config")["data"]["mimir.yaml"])
    rules_dir = cfg["ruler_storage"]["local"]["directory"] + "/platform"
    src, m = mounts.get(rules_dir, (None, {}))
    rules_cm = one("ConfigMap", "mimir-rules-platform")
    ok = (cfg["ruler_storage"]["backend"] == "local" and src == ("configMap", "mimir-rules-platform")
          and "subPath" not in m and rules_cm is not None
          and rules_cm["data"].get("otlp-gate") == RULES.read_text(encoding="utf-8"))
    report(ok, f"{name}: ConfigMap mimir-rules-platform (alert-rules.yaml as ruler namespace otlp-gate) mounted "
           f"whole at {rules_dir}, where the ruler's local store reads <directory>/<tenant>/<namespace>")
    fallback = cfg["alertmanager"]["fallback_config_file"]
    src, m = mounts.get(str(Path(fallback).parent), (None, {}))
    am_cm = configmap("mimir-alertmanager")
    ok = am_cm is not None and src == ("configMap", am_cm["metadata"]["name"]) \
        and Path(fallback).name in am_cm["data"]
    report(ok, f"{name}: the Alertmanager fallback configuration {fallback} comes from ConfigMap mimir-alertmanager")
    args = " ".join(ctr.get("args", []))
    report(bool(re.search(r"-target=\S*\balertmanager\b", args)) and cfg["ruler"]["alertmanager_url"].startswith(
        "http://localhost:" + str(cfg["server"]["http_listen_port"]) + "/alertmanager"),
        f"{name}: Mimir runs the Alertmanager next to the ruler, which sends to it on localhost")
    writable = [p for p, (s, _) in mounts.items() if s[0] == "writable"]
    paths = [cfg["ruler"]["rule_path"], cfg["alertmanager"]["data_dir"]]
    # The Alertmanager's store: on the data volume, or in the bucket (components/object-storage).
    am_store = cfg.get("alertmanager_storage", {})
    if am_store.get("backend", "filesystem") == "filesystem" and "storage_prefix" not in am_store:
        paths.append(am_store["filesystem"]["dir"])
    outside = [p for p in paths if not any(p == w or p.startswith(w.rstrip("/") + "/") for w in writable)]
    report(not outside, f"{name}: the ruler's and Alertmanager's writable paths {paths} are on a volume "
           f"(read-only root filesystem)" + (f"; not: {outside}" if outside else ""))



def check_grafana(name, configmap, mounts_of) -> None:
    """Grafana: the dashboard provider and the dashboards it reads."""
    ctr, mounts = mounts_of("StatefulSet", "grafana")
    prov_cm = configmap("grafana-dashboard-providers")
    dash_cm = configmap("grafana-dashboards")
    src, _ = mounts.get("/etc/grafana/provisioning/dashboards", (None, None))
    ok = prov_cm is not None and src == ("configMap", prov_cm["metadata"]["name"])
    path_ok = False
    if ok:
        prov = yaml.safe_load(next(iter(prov_cm["data"].values())))
        dpath = prov["providers"][0]["options"]["path"]
        dsrc, _ = mounts.get(dpath, (None, None))
        path_ok = dash_cm is not None and dsrc == ("configMap", dash_cm["metadata"]["name"]) \
            and json.loads(dash_cm["data"]["otlp-gate.json"]) == json.loads(DASHBOARD.read_text(encoding="utf-8"))
    report(ok and path_ok, f"{name}: Grafana provisions the otlp-gate dashboard (ConfigMap grafana-dashboards at "
           f"the provider's path)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["static"] and len(argv) == 1:
        cmd_static()
    elif argv[:1] == ["rendered"] and len(argv) == 2:
        cmd_rendered(Path(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
