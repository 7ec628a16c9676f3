#!/usr/bin/env python3
"""Envoy macrobenchmark for otlp-gate (`just bench envoy`).

One Envoy (one worker, pinned to one CPU) serves one listener per variant; each variant POSTs a
512-byte OTLP protobuf body through Envoy's `buffer` filter to a `direct_response`:

  a  no filter                         d  tests/minimal-filter (same proxy-wasm SDK)
  b  RBAC, exact Authorization match   e  otlp-gate accepting, 1,000 tokens (ECDS, production shape)
  c  api_key_auth with 1,000 keys      f  otlp-gate rejecting an unknown token (401)
  extras: e-st  otlp-gate accepting, (e)'s configuration inline instead of ECDS (like f, e-rl)
          e-rl  otlp-gate accepting with a per-token rate limit that never trips (limits enabled)
          f-th  otlp-gate rejecting an unknown token with failed-auth throttling at its defaults
                (after 30 failures the address gets 429 for 5 minutes: what an attacker meets)
  baselines that split a gap into "what Envoy charges for the action" and "what otlp-gate adds":
          d-edit   the minimal filter making otlp-gate's four header edits on accept
          d-rej    the minimal filter's bare 401
          d-reply  the minimal filter sending otlp-gate's exact 401 (checked byte for byte)
          d-th     the minimal filter reading `source.address` and sending otlp-gate's 429 to an
                   address cooling down (checked: same status, headers and body but the seconds)

Load comes from wrk (HTTP/1.1) and h2load (h2, several streams per connection), pinned to the
other CPU, in interleaved rounds (each round runs every variant once per protocol, in a rotated
order); the summary uses medians over rounds. Each run is checked (status classes, errors) so a
misconfigured variant fails the benchmark instead of reporting a fast 4xx. Envoy's CPU time per
request is recorded next to throughput: it is the filter cost that survives a noisy machine.

Then the token reload delay: the ECDS directory is swapped kubelet-style (new `..<ts>` dir,
`..data_tmp` symlink renamed over `..data`) to a config with a new token, and the time to the
first request that the new token gets through is measured, over N swaps.

Tokens are random per run and never printed.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEMPLATES = HERE / "envoy"
PATH = "/observability/v1/traces"
TOKEN_COUNT = 1000


@dataclass
class Variant:
    key: str
    label: str
    listener: str
    token: str  # which credential the load generator presents: good | unknown
    expect: str  # status class the load must get: 2xx | 4xx
    protocols: tuple[str, ...] = ("h1", "h2")


VARIANTS = [
    Variant("a", "no filter", "a", "good", "2xx"),
    Variant("b", "RBAC exact header match", "b", "good", "2xx"),
    Variant("c", "api_key_auth, 1,000 keys", "c", "good", "2xx"),
    Variant("d", "minimal wasm filter", "d", "good", "2xx"),
    Variant("d-edit", "minimal wasm filter + otlp-gate's 4 header edits", "dx", "good", "2xx"),
    Variant("d-rej", "minimal wasm filter rejecting (bare 401)", "d", "unknown", "4xx", ("h2",)),
    Variant("d-reply", "minimal wasm filter rejecting with otlp-gate's 401 headers and body", "dr", "unknown", "4xx", ("h2",)),
    Variant("e", "otlp-gate accepting, 1,000 tokens", "e", "good", "2xx"),
    Variant("f", "otlp-gate rejecting an unknown token (401; the same token every request)", "f", "unknown", "4xx"),
    Variant("e-st", "otlp-gate accepting, (e)'s configuration inline (no ECDS)", "est", "good", "2xx"),
    Variant("e-rl", "otlp-gate accepting, rate limit on", "erl", "good", "2xx"),
    Variant("f-th", "otlp-gate rejecting, failed-auth throttled (429)", "e", "unknown", "4xx", ("h2",)),
    Variant("d-th", "minimal wasm filter reading the client address, rejecting with otlp-gate's 429", "dt", "unknown", "4xx", ("h2",)),
]


def log(msg: str) -> None:
    print(f"bench-envoy: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Inputs: tokens, configs, body


# failed_auth's default cooldown: what (f-th) meets, and what (d-th) answers with.
COOLDOWN_S = 300


def throttled_status(secs: int) -> bytes:
    """otlp-gate's protobuf body for an address cooling down (google.rpc.Status with RetryInfo)."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=secs))
    detail = any_pb2.Any(type_url="type.googleapis.com/google.rpc.RetryInfo", value=info.SerializeToString())
    return status_pb2.Status(
        code=8, message=f"too many failed authentications from this address; retry after {secs}s", details=[detail],
    ).SerializeToString()


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def otlp_body(size: int = 512) -> bytes:
    """A real OTLP ExportTraceServiceRequest (one span), padded to exactly `size` bytes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    def build(pad: int) -> bytes:
        r = ExportTraceServiceRequest()
        rs = r.resource_spans.add()
        attr = rs.resource.attributes.add()
        attr.key, attr.value.string_value = "service.name", "otlp-gate-bench"
        ss = rs.scope_spans.add()
        ss.scope.name = "otlp-gate-bench"
        sp = ss.spans.add()
        sp.trace_id, sp.span_id, sp.name, sp.kind = bytes(range(1, 17)), bytes(range(1, 9)), "bench", 2
        sp.start_time_unix_nano, sp.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_001_000_000
        p = sp.attributes.add()
        p.key, p.value.string_value = "padding", "x" * pad
        return r.SerializeToString()

    pad = max(0, size - len(build(0)))
    while pad >= 0:
        body = build(pad)
        if len(body) == size:
            return body
        pad -= len(body) - size if len(body) > size else -1
    raise SystemExit("cannot build a body of the requested size")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def gate_config(tokens: list[str], extra: dict | None = None) -> str:
    cfg: dict = {
        "tokens": [
            {"id": f"bench-{i:04d}", "sha256": hashlib.sha256(t.encode()).hexdigest(), "tenant": f"tenant-{i % 50}"}
            for i, t in enumerate(tokens)
        ]
    }
    cfg.update(extra or {})
    return json.dumps(cfg, separators=(",", ":"))


def render(name: str, **values) -> object:
    """Loads a template from tests/bench/envoy/, substituting JSON-encoded values."""
    text = (TEMPLATES / name).read_text()
    text = string.Template(text).substitute({k: json.dumps(v) for k, v in values.items()})
    return yaml.safe_load(text)


@dataclass
class Setup:
    work: Path
    ports: dict[str, int]
    admin: int
    good: str
    unknown: str
    filler: list[str]  # the 999 other tokens
    body_file: Path
    gate_wasm: Path
    minimal_wasm: Path
    ecds_dir: Path
    ecds_version: int = 0
    ecds_old: Path | None = None

    def tokens_with(self, *extra: str) -> list[str]:
        # The presented token sits in the middle of the list (hash lookups do not care; lists do).
        others = self.filler[: TOKEN_COUNT - 1 - len(extra)]
        mid = len(others) // 2
        return others[:mid] + [self.good, *extra] + others[mid:]

    def write_ecds(self, tokens: list[str]) -> float:
        """Kubelet AtomicWriter: new ..<ts> dir, ..data_tmp -> it, rename over ..data.
        Returns the monotonic time right after the rename (the moment the change is visible)."""
        self.ecds_version += 1
        v = self.ecds_version
        resource = render(
            "gate-ecds-resource.yaml",
            VERSION=str(v),
            PLUGIN_CONFIG=gate_config(tokens),
            WASM=str(self.gate_wasm),
        )
        ts = self.ecds_dir / f"..bench_{v:04d}"
        ts.mkdir()
        (ts / "otlp-gate.yaml").write_text(yaml.safe_dump(resource, sort_keys=False))
        tmp = self.ecds_dir / "..data_tmp"
        os.symlink(ts.name, tmp)
        os.rename(tmp, self.ecds_dir / "..data")
        t = time.monotonic()
        link = self.ecds_dir / "otlp-gate.yaml"
        if not link.is_symlink():
            os.symlink("..data/otlp-gate.yaml", link)
        if self.ecds_old is not None:
            shutil.rmtree(self.ecds_old, ignore_errors=True)
        self.ecds_old = ts
        return t


# Three of otlp-gate's 100 ms ticks: its counters reach Envoy's stats on a tick.
GATE_COUNTER_SETTLE_S = 0.3


def build_bootstrap(s: Setup) -> Path:
    minimal_cfg = json.dumps({"header": "authorization", "value": f"Bearer {s.good}"})
    tokens = s.tokens_with()
    keys = [{"key": t, "client": f"client-{i:04d}"} for i, t in enumerate(tokens)]
    filters = {
        "a": render("a-none.yaml"),
        "b": render("b-rbac.yaml", AUTHORIZATION=f"Bearer {s.good}"),
        "c": render("c-api-key-auth.yaml", CREDENTIALS=keys),
        "d": render("d-minimal-wasm.yaml", PLUGIN_CONFIG=minimal_cfg, WASM=str(s.minimal_wasm), VM_ID="minimal"),
        # (d-edit): the same filter making the edits otlp-gate makes to an accepted request.
        "dx": render("d-minimal-wasm.yaml", WASM=str(s.minimal_wasm), VM_ID="minimal-edit", PLUGIN_CONFIG=json.dumps({
            "header": "authorization", "value": f"Bearer {s.good}",
            "rewrite": {"path": "/v1/traces", "remove": ["authorization"],
                        "set": [["x-scope-orgid", "bench"], ["x-otlp-token-id", "bench-0000"]]}})),
        # (d-reply): the same filter answering a refused request with the reply otlp-gate sends
        # to an unknown token over OTLP/HTTP protobuf (google.rpc.Status UNAUTHENTICATED).
        "dr": render("d-minimal-wasm.yaml", WASM=str(s.minimal_wasm), VM_ID="minimal-reply", PLUGIN_CONFIG=json.dumps({
            "header": "authorization", "value": f"Bearer {s.good}",
            "reject": {"headers": [["www-authenticate", 'Bearer realm="otlp", error="invalid_token"'],
                                   ["content-type", "application/x-protobuf"]],
                       "body": "\x08\x10\x12\x1cinvalid token: unknown token"}})),
        # (d-th): the same filter reading the client address and answering with the 429 otlp-gate
        # sends to an address cooling down (OTLP/HTTP protobuf, RESOURCE_EXHAUSTED + RetryInfo).
        "dt": render("d-minimal-wasm.yaml", WASM=str(s.minimal_wasm), VM_ID="minimal-throttled", PLUGIN_CONFIG=json.dumps({
            "header": "authorization", "value": f"Bearer {s.good}",
            "reject": {"status": 429, "peer": True,
                       "headers": [["retry-after", str(COOLDOWN_S)], ["content-type", "application/x-protobuf"]],
                       "body_bytes": list(throttled_status(COOLDOWN_S))}})),
        "e": render("gate-ecds.yaml", ECDS_FILE=str(s.ecds_dir / "otlp-gate.yaml"), ECDS_DIR=str(s.ecds_dir)),
        "f": render(
            "gate-static.yaml",
            PLUGIN_CONFIG=gate_config(tokens, {"failed_auth": {"enabled": False}}),
            VM_ID="otlp-gate-f",
            WASM=str(s.gate_wasm),
        ),
        # (e-st): (e)'s configuration inline, as (f) and (e-rl) have theirs: what ECDS costs.
        "est": render("gate-static.yaml", PLUGIN_CONFIG=gate_config(tokens), VM_ID="otlp-gate-st", WASM=str(s.gate_wasm)),
        "erl": render(
            "gate-static.yaml",
            PLUGIN_CONFIG=gate_config(
                tokens,
                {"default_rate": {"requests_per_second": 1_000_000, "bytes_per_second": 1_000_000_000, "burst": 1_000_000}},
            ),
            VM_ID="otlp-gate-rl",
            WASM=str(s.gate_wasm),
        ),
    }
    boot = render("bootstrap.yaml", ADMIN_PORT=s.admin)
    for name, port in s.ports.items():
        lis = render("listener.yaml", NAME=f"v_{name}", PORT=port)
        tail = lis.pop("tail_filters")
        hcm = lis["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"] = list(filters[name]) + tail
        boot["static_resources"]["listeners"].append(lis)
    path = s.work / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(boot, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Envoy process


class Envoy:
    def __init__(self, s: Setup, bootstrap: Path, cpu: str | None):
        self.s = s
        envoy = shutil.which("envoy") or str(ROOT / ".venv/bin/envoy")
        cmd = [envoy, "-c", str(bootstrap), "--concurrency", "1", "-l", "warning",
               "--use-dynamic-base-id", "--disable-hot-restart", "--log-path", str(s.work / "envoy.log")]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def admin(self, path: str, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.s.admin}{path}", timeout=timeout) as r:
            return r.read().decode()

    def wait_ready(self, deadline_s: float = 60.0) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"envoy exited with {self.proc.returncode}; see log tail:\n{self.log_tail()}")
            try:
                if self.admin("/ready", timeout=0.5).strip() == "LIVE":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"envoy not ready after {deadline_s:.0f}s; log tail:\n{self.log_tail()}")

    def outcomes(self) -> dict[str, int]:
        """otlp-gate's own request counters by outcome (summed over signals and listeners)."""
        out: dict[str, int] = {}
        for line in self.admin("/stats?filter=otlp_gate_requests_total").splitlines():
            m = re.search(r"outcome\.([a-z_]+): (\d+)$", line.strip())
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
        return out

    def connections(self, listener: str) -> int:
        """Downstream connections the variant's listener has accepted so far (reconnects show here)."""
        text = self.admin(f"/stats?filter=^http\\.v_{listener}\\.downstream_cx_total$")
        m = re.search(r": (\d+)", text)
        return int(m.group(1)) if m else 0

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.s.work / "envoy.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def cpu_seconds(self) -> float:
        """utime + stime of the whole Envoy process (all threads)."""
        # taskset execs envoy in place, so the pid is Envoy's own.
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def request(port: int, token: str | None, body: bytes, timeout: float = 5.0) -> int:
    return exchange(port, token, body, timeout)[0]


def exchange(port: int, token: str | None, body: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One OTLP/HTTP protobuf POST: status, the reply headers that describe a refusal, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/x-protobuf"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        conn.request("POST", PATH, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        shown = {k: r.getheader(k) for k in ("www-authenticate", "content-type", "retry-after")}
        return r.status, shown, data
    finally:
        conn.close()


def wait_status(port: int, token: str | None, body: bytes, want: int, deadline_s: float) -> int:
    end = time.monotonic() + deadline_s
    got = -1
    while time.monotonic() < end:
        try:
            got = request(port, token, body)
        except OSError:
            got = -1
        if got == want:
            return got
        time.sleep(0.05)
    return got


def preflight(s: Setup, body: bytes) -> None:
    """Every variant answers the way the benchmark assumes, or the run stops here."""
    p = s.ports
    # ECDS loads after the listener is up: wait for the gate to serve the good token.
    checks = [
        ("a", s.good, 200), ("a", None, 200),
        ("b", s.good, 200), ("b", None, 403), ("b", s.unknown, 403),
        ("c", s.good, 200), ("c", None, 401), ("c", s.unknown, 401),
        ("d", s.good, 200), ("d", None, 401), ("d", s.unknown, 401),
        ("dx", s.good, 200), ("dx", None, 401),
        ("dr", s.good, 200), ("dr", s.unknown, 401),
        ("dt", s.good, 200), ("dt", s.unknown, 429),
        ("e", s.good, 200), ("e", None, 401),
        ("f", s.good, 200), ("f", s.unknown, 401),
        ("est", s.good, 200), ("est", s.unknown, 401),
        ("erl", s.good, 200), ("erl", s.unknown, 401),
    ]
    for name, token, want in checks:
        got = wait_status(p[name], token, body, want, 30.0 if want == 200 else 5.0)
        cred = {None: "no credential", s.good: "the good token", s.unknown: "an unknown token"}[token]
        if got != want:
            raise SystemExit(f"preflight: listener {name} with {cred} answered {got}, expected {want}")
    # (d-reply) must send what (f) sends, or it is not the cost of otlp-gate's reply.
    f_reply, dr_reply = exchange(p["f"], s.unknown, body), exchange(p["dr"], s.unknown, body)
    if f_reply != dr_reply:
        raise SystemExit(f"preflight: (d-reply) answers {dr_reply!r}, otlp-gate answers {f_reply!r}")
    # (d-th) must send what (f-th) sends: drive the (e) listener's client address into its
    # cooldown (as the (f-th) load does), then compare with the seconds to wait taken out.
    th_reply = exchange(p["e"], s.unknown, body)
    for _ in range(40):
        if th_reply[0] == 429:
            break
        th_reply = exchange(p["e"], s.unknown, body)
    dt_reply = exchange(p["dt"], s.unknown, body)

    def no_seconds(reply: tuple[int, dict[str, str], bytes]) -> tuple:
        status, headers, data = reply
        left = int(headers.get("retry-after") or -1)
        return status, {**headers, "retry-after": "N"}, data.replace(throttled_status(left), throttled_status(COOLDOWN_S))

    if no_seconds(th_reply) != no_seconds(dt_reply):
        raise SystemExit(f"preflight: (d-th) answers {dt_reply!r}, otlp-gate throttling answers {th_reply!r}")
    log("preflight: every variant answers as expected (200 for the good token, 401/403 otherwise)")


# ---------------------------------------------------------------------------------------------
# Load generators

WRK_LUA = """
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Authorization"] = "Bearer " .. {token}
"""


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_scripts(s: Setup) -> dict[str, Path]:
    out = {}
    for kind, token in (("good", s.good), ("unknown", s.unknown)):
        p = s.work / f"wrk-{kind}.lua"
        p.write_text(WRK_LUA.format(body_path=lua_string(str(s.body_file)), token=lua_string(token)))
        p.chmod(0o600)
        out[kind] = p
    return out


def parse_duration_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]


def run_timed(cmd: list[str], timeout: float, out_path: Path) -> tuple[str, float, float]:
    """Runs a load generator; returns its stdout, wall seconds and CPU seconds (its rusage)."""
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        end = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(proc.pid, 0)
                proc.returncode = -9
                break
            time.sleep(0.02)
        wall = time.monotonic() - t0
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {text[-500:]}")
    return text, wall, ru.ru_utime + ru.ru_stime


def run_wrk(s: Setup, v: Variant, scripts: dict, duration: int, conns: int, cpu: str | None) -> dict:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(scripts[v.token]),
           f"http://127.0.0.1:{s.ports[v.listener]}{PATH}"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    text, wall, cpu_s = run_timed(cmd, duration + 30, s.work / "wrk.out")
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    n = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if not m or not n:
        raise RuntimeError(f"cannot parse wrk output: {text[-500:]}")
    requests = int(n.group(1))
    non2xx = int(re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text).group(1)) if "Non-2xx" in text else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = {k: int(x) for k, x in zip(("connect", "read", "write", "timeout"), sock.groups())} if sock else {}
    lat = {}
    for pct, val in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M):
        lat[f"p{pct}"] = parse_duration_us(val)
    return {"rps": float(m.group(1)), "requests": requests, "ok": requests - non2xx, "rejected": non2xx,
            "errors": errors, "latency_us": lat, "loadgen_cpu_s": cpu_s}


def run_h2load(s: Setup, v: Variant, duration: int, conns: int, streams: int, cpu: str | None, warmup: float) -> dict:
    token = s.good if v.token == "good" else s.unknown
    logf = s.work / "h2load.log"
    if logf.exists():
        logf.unlink()
    cmd = ["h2load", "-t1", f"-c{conns}", f"-m{streams}", f"-D{duration}", f"--warm-up-time={warmup}",
           "-d", str(s.body_file), "-H", "content-type: application/x-protobuf",
           "-H", f"authorization: Bearer {token}", "--log-file", str(logf),
           f"http://127.0.0.1:{s.ports[v.listener]}{PATH}"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    text, wall, cpu_s = run_timed(cmd, duration + warmup + 30, s.work / "h2load.out")
    m = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not m or not req or not codes:
        raise RuntimeError(f"cannot parse h2load output: {text[-800:]}")
    lat = {}
    try:
        times = sorted(int(line.split("\t")[2]) for line in logf.read_text().splitlines() if line.count("\t") >= 2)
        if times:
            for p in (50, 75, 90, 99):
                lat[f"p{p}"] = float(times[min(len(times) - 1, int(len(times) * p / 100))])
    except (OSError, ValueError, IndexError):
        pass
    c2, c3, c4, c5 = (int(x) for x in codes.groups())
    return {"rps": float(m.group(3)), "requests": int(req.group(3)), "ok": c2, "rejected": c4 + c5,
            "status": {"2xx": c2, "3xx": c3, "4xx": c4, "5xx": c5},
            "errors": {"failed": int(req.group(5)) - c4 - c5, "errored": int(req.group(6)), "timeout": int(req.group(7))},
            "latency_us": lat, "loadgen_cpu_s": cpu_s}


def check_run(v: Variant, proto: str, r: dict) -> str | None:
    """Returns why a run is invalid, or None."""
    if r["requests"] <= 0:
        return "no request completed"
    want_ok = v.expect == "2xx"
    bad = r["rejected"] if want_ok else r["ok"]
    if bad:
        return f"{bad} of {r['requests']} responses were {'rejections' if want_ok else '2xx'}"
    want = {"e": {"accepted"}, "e-st": {"accepted"}, "e-rl": {"accepted"}, "f": {"unknown"}, "f-th": {"unknown", "auth_throttled"}}.get(v.key)
    if want and r.get("outcomes"):
        other = {k: n for k, n in r["outcomes"].items() if k not in want}
        if sum(other.values()) > 0.01 * r["requests"]:
            return f"otlp-gate counted unexpected outcomes {other}"
    errs = {k: n for k, n in r["errors"].items() if n and not (k == "read" and not want_ok)}
    if errs:
        return f"load generator errors: {errs}"
    return None


# ---------------------------------------------------------------------------------------------
# Reload delay


def reload_test(s: Setup, envoy: Envoy, body: bytes, swaps: int, timeout_s: float) -> dict:
    delays = []
    port = s.ports["e"]
    for k in range(swaps):
        fresh = new_token()
        if request(port, fresh, body) == 200:
            raise SystemExit("reload: a token not yet configured was accepted")
        t0 = s.write_ecds(s.tokens_with(fresh))
        end = t0 + timeout_s
        seen = None
        while time.monotonic() < end:
            try:
                if request(port, fresh, body, timeout=2.0) == 200:
                    seen = time.monotonic()
                    break
            except OSError:
                pass
            time.sleep(0.002)
        if seen is None:
            raise SystemExit(f"reload: swap {k + 1} not visible after {timeout_s:.0f}s; log tail:\n{envoy.log_tail()}")
        delays.append((seen - t0) * 1000.0)
    stats = envoy.admin("/stats?filter=extension_config_discovery")
    reloads = [int(x) for x in re.findall(r"config_reload: (\d+)", stats)]
    return {"swaps": swaps, "delays_ms": delays, "median_ms": statistics.median(delays), "max_ms": max(delays),
            "config_reload_counter": max(reloads) if reloads else None}


# ---------------------------------------------------------------------------------------------


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        mem_kb = 0
    envoy = shutil.which("envoy") or str(ROOT / ".venv/bin/envoy")
    try:
        ver = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        ver = ver.split("version:")[-1].strip().split("/")[1]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        ver = "unknown"
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "envoy": ver, "loadavg_start": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--duration", type=int, default=2, help="seconds per run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per variant and protocol")
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--h2-connections", type=int, default=4)
    ap.add_argument("--h2-streams", type=int, default=16)
    ap.add_argument("--reload-swaps", type=int, default=20)
    ap.add_argument("--reload-timeout", type=float, default=30.0)
    ap.add_argument("--variants", default=",".join(v.key for v in VARIANTS))
    ap.add_argument("--no-pin", action="store_true", help="do not pin Envoy and the load generator to CPUs")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s, 3 reload swaps: checks the machinery")
    ap.add_argument("--out", type=Path, required=True, help="write the results JSON here")
    ap.add_argument("--gate-wasm", type=Path, default=ROOT / "target/wasm32-wasip1/release/otlp_gate.wasm")
    ap.add_argument("--minimal-wasm", type=Path, default=ROOT / "target/wasm32-wasip1/release/minimal_filter.wasm")
    a = ap.parse_args()
    if a.smoke:
        a.rounds, a.duration, a.warmup, a.reload_swaps = 1, 1, 0, 3
    for w in (a.gate_wasm, a.minimal_wasm):
        if not w.is_file():
            raise SystemExit(f"{w} is missing: run `just build build-test-modules` first")
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run `just setup` (Debian packages wrk, nghttp2-client)")
    selected = [v for v in VARIANTS if v.key in a.variants.split(",")]
    pin = not a.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    envoy_cpu, load_cpu = ("1", "0") if pin else (None, None)

    work = Path(tempfile.mkdtemp(prefix="otlp-gate-bench-"))
    envoy = None
    try:
        names = ["a", "b", "c", "d", "dx", "dr", "dt", "e", "est", "f", "erl"]
        ports = dict(zip(names, free_ports(len(names) + 1)))
        admin = free_ports(1)[0]
        body = otlp_body(512)
        body_file = work / "body.pb"
        body_file.write_bytes(body)
        ecds = work / "ecds"
        ecds.mkdir()
        good, unknown = new_token(), new_token()
        filler = [new_token() for _ in range(TOKEN_COUNT)]
        s = Setup(work, ports, admin, good, unknown, filler, body_file, a.gate_wasm.resolve(),
                  a.minimal_wasm.resolve(), ecds)
        s.write_ecds(s.tokens_with())
        boot = build_bootstrap(s)
        info = machine()
        log(f"{info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']} GiB, Envoy {info['envoy']}; "
            f"load average {info['loadavg_start'][0]:.2f}; work dir {work}")
        envoy = Envoy(s, boot, envoy_cpu)
        envoy.wait_ready()
        preflight(s, body)
        scripts = write_wrk_scripts(s)

        pairs = [(v, p) for v in selected for p in v.protocols]

        def one(v: Variant, proto: str, duration: int) -> dict:
            gate = v.listener in ("e", "est", "f", "erl")
            o0 = envoy.outcomes() if gate else {}
            x0 = envoy.connections(v.listener)
            c0, t0 = envoy.cpu_seconds(), time.monotonic()
            if proto == "h1":
                r = run_wrk(s, v, scripts, duration, a.wrk_connections, load_cpu)
            else:
                r = run_h2load(s, v, duration, a.h2_connections, a.h2_streams, load_cpu, 0)
            r["envoy_cpu_s"] = envoy.cpu_seconds() - c0
            r["wall_s"] = time.monotonic() - t0
            r["envoy_cpu_us_per_req"] = r["envoy_cpu_s"] * 1e6 / max(1, r["requests"])
            r["connections"] = envoy.connections(v.listener) - x0
            if gate:
                # otlp-gate hands its counter sums to Envoy on its 100 ms tick: wait a few ticks so
                # this run's counts are all in (and none spills into the next run's).
                time.sleep(GATE_COUNTER_SETTLE_S)
                o1 = envoy.outcomes()
                r["outcomes"] = {k: n - o0.get(k, 0) for k, n in o1.items() if n - o0.get(k, 0)}
            return r

        if a.warmup > 0:
            log(f"warm-up: {a.warmup}s per variant and protocol")
            for v, proto in pairs:
                one(v, proto, a.warmup)
        runs = []
        for rnd in range(a.rounds):
            order = pairs[rnd % len(pairs):] + pairs[: rnd % len(pairs)]
            for v, proto in order:
                r = one(v, proto, a.duration)
                why = check_run(v, proto, r)
                r.update({"variant": v.key, "protocol": proto, "round": rnd + 1})
                runs.append(r)
                log(f"round {rnd + 1}/{a.rounds} {v.key:>4} {proto}: {r['rps']:>9.0f} req/s, "
                    f"Envoy {r['envoy_cpu_us_per_req']:6.1f} µs CPU/req ({100 * r['envoy_cpu_s'] / r['wall_s']:.0f}% of a core), "
                    f"{r['connections']} connections"
                    + (f"  INVALID: {why}" if why else ""))
                if why:
                    raise SystemExit(f"variant {v.key} on {proto}: {why}")
        f_status = request(ports["e"], unknown, body)
        reload = reload_test(s, envoy, body, a.reload_swaps, a.reload_timeout)
        log(f"reload: {reload['swaps']} swaps, median {reload['median_ms']:.0f} ms, max {reload['max_ms']:.0f} ms")
        result = {
            "machine": info | {"loadavg_end": os.getloadavg()},
            "settings": {"rounds": a.rounds, "duration_s": a.duration, "warmup_s": a.warmup,
                         "wrk": f"wrk -t1 -c{a.wrk_connections}", "h2load": f"h2load -t1 -c{a.h2_connections} -m{a.h2_streams}",
                         "pinned": pin, "body_bytes": len(body), "tokens": TOKEN_COUNT, "smoke": a.smoke},
            "variants": {v.key: {"label": v.label, "protocols": list(v.protocols), "expect": v.expect} for v in selected},
            "runs": runs,
            "f_th_status": f_status,
            "reload": reload,
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
        log(f"wrote {a.out}")
        return 0
    finally:
        if envoy is not None:
            envoy.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
