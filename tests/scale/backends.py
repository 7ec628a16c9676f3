"""Real Loki and Tempo (and an S3 server) on loopback, started with the bundle's own configs.

A config is rendered for a test by changing only what one machine needs: paths under a temporary
directory, loopback ports, and, for replicas sharing the host, their ring instance ids (in pods
those are the distinct host names) and memberlist peers (in pods, the headless Service). Every
substitution names the key it changes and fails if the key is gone, so a config change the
rendering no longer covers fails loudly. `${VARS}` stay in the file: the backends expand them
from the environment (-config.expand-env=true), as in the pods.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/e2e"))

import stack as st  # noqa: E402  (the e2e helpers: processes, ports, waiting)

LOKI_BIN = os.environ.get("LOKI_BIN", "")
TEMPO_BIN = os.environ.get("TEMPO_BIN", "")
HOW = ("set LOKI_BIN and TEMPO_BIN to Loki 3.7.6 and Tempo 3.0.3 binaries "
       "(release downloads from github.com/grafana/loki and grafana/tempo)")


def get(doc: dict, path: str):
    node = doc
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise AssertionError(f"render: the config has no {path!r}; update tests/scale/backends.py")
        node = node[key]
    return node


def put(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if last not in node:
        raise AssertionError(f"render: the config has no {path!r}; update tests/scale/backends.py")
    node[last] = value


def rewrite_paths(node, old: str, new: str):
    if isinstance(node, dict):
        return {k: rewrite_paths(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_paths(v, old, new) for v in node]
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    return node


class Backend:
    """One Loki or Tempo process with its rendered config and data directory."""

    def __init__(self, kind: str, binary: str, source: Path, workdir: Path, env: dict | None = None,
                 instance: int = 0):
        self.kind, self.binary, self.source, self.workdir = kind, binary, source, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, **(env or {}))
        self.data = workdir / "data"
        self.ports = dict(zip(("http", "grpc", "memberlist", "otlp_grpc", "otlp_http"), st.free_ports(5)))
        self.config = workdir / f"{kind}.yaml"
        self.proc: st.Proc | None = None
        self.changed: list[str] = []
        self.instance = instance
        # Memberlist ports of every replica (this one alone unless the test says otherwise).
        self.peers = [self.ports["memberlist"]]

    def render(self) -> None:
        doc = yaml.safe_load(self.source.read_text())
        prod_dir = "/var/loki" if self.kind == "loki" else "/var/tempo"
        doc = rewrite_paths(doc, prod_dir, str(self.data))
        overrides = self.workdir / "overrides.yaml"
        shutil.copy(ROOT / f"k8s/base/{self.kind}/overrides.yaml", overrides)
        p = self.ports
        subs = {
            "server.http_listen_port": p["http"],
            "server.grpc_listen_port": p["grpc"],
        }
        if self.kind == "loki":
            subs["runtime_config.file"] = str(overrides)
            if "memberlist" in doc:
                subs["memberlist.join_members"] = [f"127.0.0.1:{port}" for port in self.peers]
                # Pods differ by host name (the default ring instance id and memberlist node name)
                # and each listens on 7946 (the default advertised port); processes on one host do not.
                doc["memberlist"].update(bind_port=p["memberlist"], bind_addr=["127.0.0.1"],
                                         advertise_port=p["memberlist"], advertise_addr="127.0.0.1",
                                         node_name=f"loki-{self.instance}")
                doc["common"]["ring"]["instance_id"] = f"loki-{self.instance}"
        else:
            subs["overrides.per_tenant_override_config"] = str(overrides)
            subs["distributor.receivers.otlp.protocols.grpc.endpoint"] = f"127.0.0.1:{p['otlp_grpc']}"
            subs["distributor.receivers.otlp.protocols.http.endpoint"] = f"127.0.0.1:{p['otlp_http']}"
            # No Mimir here: the metrics generator's remote write goes to a closed local port.
            subs["metrics_generator.storage.remote_write"] = [
                dict(get(doc, "metrics_generator.storage.remote_write")[0],
                     url=f"http://127.0.0.1:{st.free_ports(1)[0]}/api/v1/push")]
            doc.setdefault("memberlist", {}).update(bind_port=p["memberlist"], bind_addr=["127.0.0.1"],
                                                    advertise_port=p["memberlist"], advertise_addr="127.0.0.1")
        for path, value in subs.items():
            get(doc, path)
            put(doc, path, value)
        extra = ["memberlist.{bind,advertise}_{port,addr}", f"paths {prod_dir} -> tmp"]
        if self.kind == "loki" and "memberlist" in doc:
            extra += ["memberlist.node_name", "common.ring.instance_id"]
        self.changed = sorted(subs) + extra
        leftover = [s for s in ("/var/loki", "/var/tempo", "/etc/") if s in yaml.safe_dump(doc)]
        if leftover:
            raise AssertionError(f"render: production paths left in the {self.kind} config: {leftover}")
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def start(self, timeout: float = 180) -> "Backend":
        self.render()
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, f"-config.file={self.config}", "-target=all", "-config.expand-env=true"]
        self.proc = st.Proc(self.kind, argv, self.workdir, env=self.env)

        def ready():
            if not self.proc.alive():
                raise AssertionError(f"{self.kind} exited:\n{self.proc.tail(40)}")
            try:
                return requests.get(self.url + "/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        st.wait_until(ready, timeout, f"{self.kind} /ready", interval=0.5)
        return self

    def stop(self, timeout: float = 120) -> None:
        """A graceful stop (SIGTERM), as the kubelet does; waits for the process to exit."""
        if self.proc:
            self.proc.stop(timeout=timeout)
            self.proc = None

    def wipe(self) -> None:
        """An empty local volume: everything the process kept on disk is gone."""
        shutil.rmtree(self.data, ignore_errors=True)


class S3Server:
    """moto_server on loopback: an S3-compatible API with the buckets the test creates."""

    ACCESS_KEY = "otlp-gate-test"
    SECRET_KEY = "otlp-gate-test-secret"

    def __init__(self, workdir: Path):
        self.port = st.free_ports(1)[0]
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = st.Proc("moto", [str(moto), "-H", "127.0.0.1", "-p", str(self.port)], workdir)
        st.wait_until(self._up, 60, "moto_server", interval=0.2)
        self.credentials = workdir / "aws-credentials"
        # The format of the Secret's `credentials` key (an AWS shared-credentials file).
        self.credentials.write_text(
            f"[default]\naws_access_key_id = {self.ACCESS_KEY}\naws_secret_access_key = {self.SECRET_KEY}\n")

    def _up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def env(self, **buckets: str) -> dict:
        """The pod environment of the object-storage component, pointed at this server."""
        return {
            "S3_ENDPOINT": f"127.0.0.1:{self.port}",
            "S3_REGION": "us-east-1",
            "S3_INSECURE": "true",
            "S3_FORCE_PATH_STYLE": "true",
            "POD_IP": "127.0.0.1",
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials),
            # Nothing else may supply credentials: only the mounted file.
            "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_CONFIG_FILE": "/nonexistent",
            **buckets,
        }

    def stop(self) -> None:
        self.proc.stop()


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    return st.wait_until(predicate, timeout, what, interval=interval)


def now_ns() -> int:
    return time.time_ns()
