"""Real-binary tests of the object-storage and external-lgtm components (see backends.py).

Without LOKI_BIN and TEMPO_BIN the whole directory is skipped with one line (`just scale` prints
it without starting pytest)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# gRPC's C core logs every failed TLS handshake at INFO; the negative tests make some on purpose.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import backends as bk  # noqa: E402
import otel  # noqa: E402


REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("what the real backends did")
        for line in REPORT:
            terminalreporter.write_line(line)


def report(line: str) -> None:
    """A finding shown in the run's summary (pytest -q hides passing tests' output)."""
    print(line)
    REPORT.append(line)


@pytest.fixture
def loki_bin() -> str:
    if not bk.LOKI_BIN or not Path(bk.LOKI_BIN).exists():
        pytest.skip(f"no Loki binary: {bk.HOW}")
    return bk.LOKI_BIN


@pytest.fixture
def tempo_bin() -> str:
    if not bk.TEMPO_BIN or not Path(bk.TEMPO_BIN).exists():
        pytest.skip(f"no Tempo binary: {bk.HOW}")
    return bk.TEMPO_BIN


@pytest.fixture
def s3(tmp_path):
    server = bk.S3Server(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def marker() -> str:
    return "scale-" + uuid.uuid4().hex[:12]


def batch(service: str, tag: str):
    """One trace (3 spans) and 2 log records made by the OpenTelemetry SDK."""
    return otel.make_batch(service, n_spans=3, n_logs=2, n_points=1, tag=tag)
