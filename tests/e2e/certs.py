"""A throw-away CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI.

HAProxy terminates TLS with `server.pem` (certificate + key); clients trust `ca.pem`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

HOSTNAME = "localhost"


@dataclass
class Certs:
    ca: Path  # the CA certificate clients trust
    haproxy_pem: Path  # server certificate chain + key, as HAProxy's `crt` wants it
    hostname: str = HOSTNAME


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_certs(directory: Path, days: int = 30) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(days),
             "-subj", "/CN=otlp-gate local test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={HOSTNAME}",
             cwd=directory)
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", str(days), "-extfile", "server.ext", cwd=directory)
    pem = directory / "haproxy.pem"
    pem.write_text((directory / "server.crt").read_text() + (directory / "server.key").read_text())
    pem.chmod(0o600)
    (directory / "ca.key").unlink()  # nothing else is ever signed with it
    return Certs(ca=directory / "ca.pem", haproxy_pem=pem)
