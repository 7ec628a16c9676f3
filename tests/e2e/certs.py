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


# ----------------------------------------------------------------------------- internal mTLS

# The name Envoy verifies on Alloy's certificate (envoy/envoy.yaml, SNI and SAN match).
ALLOY_NAME = "alloy.observability.svc.cluster.local"


@dataclass
class InternalCerts:
    """The Envoy -> Alloy hop's certificates, as cert-manager issues them in k8s/ (an internal CA,
    a server certificate for Alloy, a client certificate for Envoy). `client_dir` is laid out like
    the mounted Secret (tls.crt, tls.key, ca.crt behind a kubelet `..data` symlink) so a rotation
    can be swapped in the way the kubelet does it."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_dir: Path
    days: int = 30

    def issue(self, name: str, cn: str, usage: str, san: str = "") -> tuple[bytes, bytes]:
        """A new certificate + key from the internal CA (usage: serverAuth or clientAuth)."""
        return _issue(self.directory, name, cn, usage, san, self.days)

    def rotate_client(self, cn: str) -> str:
        """Swap a newly issued client certificate into client_dir (kubelet style); returns its
        serial number (hex, upper case, as openssl prints it)."""
        crt, key = self.issue(f"client-{cn}", cn, "clientAuth")
        write_kubelet_dir(self.client_dir, {"tls.crt": crt, "tls.key": key, "ca.crt": self.ca.read_bytes()})
        return serial(crt)


def _issue(directory: Path, name: str, cn: str, usage: str, san: str, days: int) -> tuple[bytes, bytes]:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=directory)
    (directory / f"{name}.ext").write_text(
        (f"subjectAltName={san}\n" if san else "")
        + "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        + f"extendedKeyUsage={usage}\n"
    )
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "internal-ca.crt", "-CAkey", "internal-ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-extfile", f"{name}.ext", cwd=directory)
    return (directory / f"{name}.crt").read_bytes(), (directory / f"{name}.key").read_bytes()


def serial(pem: bytes) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True, timeout=30)
    return out.stdout.decode().strip().split("=", 1)[-1].upper()


def write_kubelet_dir(path: Path, files: dict[str, bytes]) -> None:
    """Write `files` the way the kubelet updates a Secret volume: a new timestamped directory,
    `..data_tmp` pointing at it renamed over `..data` (atomic), each file a symlink into `..data`."""
    import datetime
    import os
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("..%Y_%m_%d_%H_%M_%S.%f")
    (path / stamp).mkdir()
    for name, data in files.items():
        (path / stamp / name).write_bytes(data)
        (path / stamp / name).chmod(0o600)
    data_link = path / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp = path / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp, tmp)
    os.replace(tmp, data_link)
    for name in files:
        if not (path / name).is_symlink():
            os.symlink(f"..data/{name}", path / name)
    if old and old != stamp:
        shutil.rmtree(path / old, ignore_errors=True)


def make_internal_certs(directory: Path, days: int = 30) -> InternalCerts:
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "internal-ca.key", "-out", "internal-ca.crt", "-days", str(days),
             "-subj", "/CN=otlp-gate internal test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _issue(directory, "alloy", "alloy", "serverAuth", f"DNS:{ALLOY_NAME},IP:127.0.0.1", days)
    certs = InternalCerts(directory=directory, ca=directory / "internal-ca.crt",
                          server_cert=directory / "alloy.crt", server_key=directory / "alloy.key",
                          client_dir=directory / "alloy-client-tls", days=days)
    certs.rotate_client("otlp-gate")
    return certs
