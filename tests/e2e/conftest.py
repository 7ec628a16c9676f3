"""Fixtures for the end-to-end suite: real Envoy 1.40 + otlp_gate.wasm, HAProxy 2.6 with TLS, the
local OTLP receiver, and the official OpenTelemetry SDK as the client.

One session-wide stack serves most tests; tests that need a pristine Envoy (replaying the shared
case table, starting with an invalid token file) start their own. Every token is a `Secret` and
is registered here; at the end of the session every log the stacks wrote is searched for them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import render
import stack as st

ALL_SECRETS: list[str] = []
# Measurements tests want shown at the end of the run (pytest -q hides passing tests' output).
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("otlp-gate e2e measurements")
        for line in REPORT:
            terminalreporter.write_line(line)


def report(line: str) -> None:
    """Show a measurement in the run's summary (and in the test's captured output)."""
    print(line)
    REPORT.append(line)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def module() -> Path:
    if not render.MODULE.exists():
        pytest.fail(f"{render.MODULE} is missing: run `just build` first (`just e2e` does)")
    return render.MODULE


@pytest.fixture(scope="session")
def cli() -> Path:
    """The operator CLI, built once (release, as `just cli` runs it)."""
    return st.build_cli()


class Tokens:
    """The session's test tokens: `tokens.value(id)` is the Secret, `tokens.entry(id)` its config."""

    def __init__(self):
        self._values: dict[str, st.Secret] = {}
        self.entries: dict[str, dict] = {}

    def add(self, token_id: str, **entry) -> st.Secret:
        value, digest = st.new_token(token_id)
        ALL_SECRETS.append(str(value))
        self._values[token_id] = value
        self.entries[token_id] = {"id": token_id, "sha256": digest, **entry}
        return value

    def value(self, token_id: str) -> st.Secret:
        return self._values[token_id]

    def settings(self, ids=None, **extra) -> dict:
        chosen = [self.entries[i] for i in (ids if ids is not None else self.entries)]
        return {**BASE_SETTINGS, **extra, "tokens": chosen}


# The test configuration: production keys, plus failed-auth throttling loosened because every test
# request reaches Envoy from the same address (HAProxy on 127.0.0.1) and the suite sends far more
# than the default 30 bad credentials a minute. Throttling itself is tested with its own config.
BASE_SETTINGS = {
    "path_prefix": "/observability",
    "tenant_header": "x-scope-orgid",
    "identity_header": "x-otlp-token-id",
    "failed_auth": {"max_failures": 1000000},
}


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    t = Tokens()
    t.add("team-a", tenant="team-a")
    t.add("team-b-traces", tenant="team-b", signals=["traces"])
    t.add("expired", tenant="team-a", expires_at="2020-01-01T00:00:00Z")
    t.add("disabled", tenant="team-a", disabled=True)
    t.add("future", tenant="team-a", not_before="2099-01-01T00:00:00Z")
    t.add("steady", tenant="steady")
    return t


@pytest.fixture(scope="session")
def stack(workdir, module, tokens):
    s = st.Stack(workdir / "main", tokens.settings()).start()
    yield s
    s.close()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(workdir):
    """After the session: no token appears in any log, config dump or output any stack wrote."""
    yield
    leaked = []
    for path in workdir.rglob("*"):
        if path.is_file() and path.suffix in {".out", ".err", ".log", ".txt"}:
            text = path.read_text(errors="replace")
            if any(s in text for s in ALL_SECRETS):
                leaked.append(str(path.relative_to(workdir)))
    assert not leaked, f"a token appeared in: {', '.join(leaked)}"


def register_secret(value: str) -> None:
    ALL_SECRETS.append(str(value))
