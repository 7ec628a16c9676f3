"""The token lifecycle from the CLI against real Envoy: `otlp-gate token add/rotate/revoke` edit
the token file, Envoy applies it (kubelet-style swap), the new token is accepted and the revoked
one refused, and `otlp-gate token report` reads the gateway's /stats/prometheus over HTTP. Then
the same on a running `just demo`: a token added to its token file is accepted after the reload,
and the report shows the demo token's traffic."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import stack as st
from conftest import BASE_SETTINGS, register_secret

TIMEOUT = 30
SHA = re.compile(r"config sha256 \(healthz reports it once this config is loaded\): ([0-9a-f]{64})")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(st.CLI), *args], capture_output=True, text=True, timeout=60)


def edit(*args: str) -> tuple[str, str]:
    """Run an editing command; returns (token printed on stdout or "", config sha256 it reports)."""
    out = run_cli("token", *args)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    if token:
        register_secret(token)
        assert token not in out.stderr
    m = SHA.search(out.stderr)
    assert m, out.stderr
    return token, m.group(1)


def apply(s: st.Stack, path: Path, sha: str) -> None:
    """Deliver the edited file the kubelet way; wait until every worker serves it."""
    s.swap_text(path.read_text())
    seen: list[bool] = []

    def served():
        r = s.healthz()
        seen.append(r is not None and r.status == 200 and r.json()["config_sha256"] == sha)
        return len(seen) >= 5 and all(seen[-5:])

    st.wait_until(served, TIMEOUT, "Envoy to serve the edited token file", diagnose=s.envoy.tail)


def post(url: str, token: str, **kw) -> int | None:
    headers = [("content-type", "application/json"), ("authorization", f"Bearer {token}")]
    r = st.request(f"{url}/observability/v1/traces", "POST", headers, b"{}", timeout=5, **kw)
    return r.status if r else None


def report(path: Path, *urls: str) -> dict:
    args = ["token", "report", str(path), "--json"]
    for u in urls:
        args += ["--stats", u]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return {t["id"]: t for t in doc["tokens"]} | {"_doc": doc}


def test_add_rotate_revoke_and_report_against_envoy(workdir, module, cli):
    svc, svc_digest = st.new_token("svc")
    register_secret(svc)
    settings = {**BASE_SETTINGS, "tokens": [{"id": "svc", "sha256": svc_digest, "tenant": "svc"}]}
    s = st.Stack(workdir / "token-cli", settings, haproxy=False).start()
    try:
        path = workdir / "token-cli" / "otlp-gate.yaml"
        path.write_text(s.token_text(settings, "cli-1"))

        # add: accepted with its tenant once applied; the file holds only the digest.
        added, sha = edit("add", str(path), "--id", "added", "--tenant", "team-x", "--signals", "traces")
        assert added not in path.read_text()
        assert post(s.data_url, added) == 401  # not applied yet
        apply(s, path, sha)
        seq = s.last_seq()
        assert post(s.data_url, added) == 200
        assert [r["tenant"] for r in s.received(seq)] == ["team-x"]
        assert post(s.data_url, svc) == 200

        # report: the gateway's own numbers, summed when the same page is given twice.
        probe = f"{s.probe_url}/stats/prometheus"
        r = st.settled(lambda: report(path, probe)["added"]["accepted"])
        assert r == 1
        both = report(path, probe, s.probe_url)  # a bare base URL means /stats/prometheus
        assert both["added"]["accepted"] == 2 and both["svc"]["accepted"] == 2

        # rotate with no overlap: the old token is refused (expired), the new one accepted.
        rotated, sha = edit("rotate", str(path), "--id", "added", "--new-id", "added-2", "--overlap", "0")
        apply(s, path, sha)
        assert post(s.data_url, added) == 401
        assert post(s.data_url, rotated) == 200

        # revoke: disabled, refused; the report tells who still presents it, or says it cannot.
        _, sha = edit("revoke", str(path), "--id", "svc")
        apply(s, path, sha)
        for _ in range(3):
            assert post(s.data_url, svc) == 401
        assert post(s.data_url, rotated) == 200  # (counts may restart with a reload: send again)

        def refused_reported():
            rep = report(path, probe)
            ready = rep["svc"]["refused"]["disabled"] != 0 and rep["added-2"]["accepted"] >= 1
            return rep if ready else None

        rep = st.wait_until(refused_reported, 5, "the refusals to reach the stats")
        svc_row = rep["svc"]
        assert svc_row["state"] == "disabled"
        if svc_row["refused"]["disabled"] is None:
            # A module without per-token refusals: never a silent zero, and the reason is given.
            assert "refused.disabled" in svc_row["incomplete"]
            assert {"source": probe, "metric": "otlp_gate_token_refused_total"}.items() <= \
                next(u for u in rep["_doc"]["unavailable"] if u["metric"] == "otlp_gate_token_refused_total").items()
        else:
            assert svc_row["refused"]["disabled"] >= 3
            assert "presented_while_disabled" in svc_row["flags"]
        assert rep["added-2"]["accepted"] >= 1

        # delete: the entry goes from the file and from the report.
        _, sha = edit("revoke", str(path), "--id", "added", "--delete")
        apply(s, path, sha)
        rep = report(path, probe)
        assert set(rep) == {"svc", "added-2", "_doc"}
        assert st.cli_check(path).returncode == 0
    finally:
        s.close()


class Demo:
    """`python tests/e2e/demo.py` (the same as `just demo`) running in the background."""

    def __init__(self):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(st.HERE / "demo.py")], cwd=st.ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        """What the demo printed, without the line that carries its token."""
        return "\n".join(line for line in self.lines if "Bearer" not in line)

    def find(self, pattern: str) -> re.Match | None:
        for line in self.lines:
            m = re.search(pattern, line)
            if m:
                return m
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def test_token_add_on_a_running_demo_and_report_its_traffic(module, cli):
    demo = Demo()
    try:
        st.wait_until(lambda: demo.find(r"stack keeps running") or demo.proc.poll() is not None, 600,
                      "the demo to start", interval=0.5, diagnose=demo.output)
        assert demo.proc.poll() is None, demo.output()
        endpoint = demo.find(r"OTEL_EXPORTER_OTLP_ENDPOINT=(https://\S+)/observability$").group(1)
        ca = Path(demo.find(r"OTEL_EXPORTER_OTLP_CERTIFICATE=(\S+)$").group(1))
        metrics = demo.find(r"metrics\s+(http://\S+/stats/prometheus)").group(1)
        path = st.ROOT / ".run" / "demo" / "otlp-gate.yaml"
        demo_token = demo.find(r"OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20(\S+)$").group(1)
        register_secret(demo_token)

        # The demo's own traffic, as the report shows it.
        rep = st.wait_until(lambda: (r := report(path, metrics))["demo"]["accepted"] > 0 and r, 10,
                            "the report to show the demo token's traffic")
        assert rep["demo"]["state"] == "active" and rep["demo"]["flags"] == []

        delivered_before = sum("delivered kubelet-style" in line for line in demo.lines)
        token, _ = edit("add", str(path), "--id", "e2e-added", "--tenant", "e2e")
        st.wait_until(lambda: sum("delivered kubelet-style" in line for line in demo.lines) > delivered_before,
                      TIMEOUT, "the demo to deliver the edited file", diagnose=demo.output)
        assert demo.find(r"otlp-gate\.yaml changed; otlp-gate check: OK"), demo.output()
        st.wait_until(lambda: post(endpoint, token, ca=ca) == 200, TIMEOUT,
                      "the added token to be accepted through HAProxy", diagnose=demo.output)

        # After the reload (which may restart Envoy's counts), both tokens' traffic.
        assert post(endpoint, demo_token, ca=ca) == 200

        def seen():
            rep = report(path, metrics)
            return rep if rep["e2e-added"]["accepted"] >= 1 and rep["demo"]["accepted"] >= 1 else None

        rep = st.wait_until(seen, 10, "the report to show both tokens' traffic")
        assert rep["e2e-added"]["tenant"] == "e2e" and rep["_doc"]["gateways"][0]["config_generation"] >= 2
        text = run_cli("token", "report", str(path), "--stats", metrics)
        assert text.returncode == 0 and re.search(r"^demo\s+demo\s+active\s+[1-9]", text.stdout, re.M), text.stdout
    finally:
        demo.stop()
    assert demo.proc.returncode in (0, -signal.SIGTERM), demo.output()
