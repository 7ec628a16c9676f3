"""The shared behaviour table (tests/cases/behaviour.json), cases marked `"envoy": true`, replayed
against real Envoy 1.40 running the production bootstrap with otlp_gate.wasm, straight to its data
listener (HTTP/1.1, or h2c through grpcio for gRPC requests). For each case: the reply the client
gets, what the receiver (as Alloy) gets, and the gate's counters in Envoy's stats.

Each case is sent from its own loopback address (127.0.1.x), so failed-auth throttling (on by
default) sees every case as a new client, as the table assumes. Header values are never printed:
failures name the case only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import datetime, timezone

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

import conftest
import render
import stack as st

CASES_FILE = render.ROOT / "tests" / "cases" / "behaviour.json"
TABLE = json.loads(CASES_FILE.read_text())
DEFAULT_NOW = "2026-06-01T00:00:00Z"
CASES = sorted((c for c in TABLE["cases"] if c.get("envoy")), key=lambda c: (c.get("config", ""), c["name"]))
SOURCES = {c["name"]: f"127.0.{1 + i // 250}.{1 + i % 250}" for i, c in enumerate(CASES)}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def used_entries(case: dict) -> list[dict]:
    """The config entries of the tokens a case presents (by digest or plaintext)."""
    names = set()
    for req in (case["request"], (case.get("prior") or {}).get("request") or {}):
        for _, v in req.get("headers", []):
            names |= set(re.findall(r"\{\{(?:token|basic:[^:}]*):([^}]*)\}\}", v))
    values = {TABLE["tokens"][n] for n in names if n in TABLE["tokens"]}
    digests = {hashlib.sha256(v.encode()).hexdigest() for v in values}
    return [t for t in TABLE["configs"][case["config"]].get("tokens", [])
            if t.get("sha256") in digests or t.get("token") in values]


def clock_skip_reason(case: dict) -> str | None:
    """Real Envoy runs on the real clock: skip a case whose tokens' validity windows judge the
    real time differently from the case's `now`."""
    case_now = _ts(case.get("now", DEFAULT_NOW))
    real_now = time.time()
    for t in used_entries(case):
        for key in ("not_before", "expires_at"):
            if key in t and (case_now < _ts(t[key])) != (real_now < _ts(t[key])):
                return f"token {t['id']!r} {key} {t[key]} lies between the case clock and the real clock"
    return None


def fill(value: str) -> str:
    def token(name: str) -> str:
        return TABLE["tokens"][name]

    value = re.sub(r"\{\{basic:([^:}]*):([^}]*)\}\}",
                   lambda m: base64.b64encode(f"{m.group(1)}:{token(m.group(2))}".encode()).decode(), value)
    value = re.sub(r"\{\{b64:([^}]*)\}\}", lambda m: base64.b64encode(m.group(1).encode()).decode(), value)
    return re.sub(r"\{\{token:([^}]*)\}\}", lambda m: token(m.group(1)), value)


def headers_of(req: dict) -> list[tuple[str, str]]:
    return [(k, fill(v)) for k, v in req.get("headers", [])]


def is_grpc(req: dict) -> bool:
    return any(k.lower() == "content-type" and v.lower().startswith("application/grpc")
               for k, v in req.get("headers", []))


@pytest.fixture(scope="module")
def replay(workdir, module, cli):
    for value in TABLE["tokens"].values():
        conftest.register_secret(value)
    first = CASES[0]["config"] if CASES else "main"
    s = st.Stack(workdir / "cases", TABLE["configs"][first], haproxy=False).start()
    s.current = first
    yield s
    s.close()


def use_config(s: st.Stack, name: str) -> None:
    if s.current != name:
        s.load(TABLE["configs"][name])
        s.current = name


def gate_stats(s: st.Stack) -> dict[str, int]:
    r = st.request(f"{s.admin_url}/stats?filter=^wasmcustom\\.otlp_gate_&format=json", timeout=5)
    assert r is not None and r.status == 200
    return {x["name"].removeprefix("wasmcustom."): x.get("value", 0) for x in r.json()["stats"] if "value" in x}


def expected_counters(case: dict) -> list[str]:
    """Every counter the case asserts has moved. Each reaches Envoy's stats on the filter's tick
    of the worker that counted it, and two counters of one request can arrive on different
    ticks: wait for all of them, not for one."""
    expect = case["expect"]
    outcome = expect.get("outcome")
    if outcome is None:
        return []
    keys = [f"otlp_gate_requests_total.signal.{expect.get('signal', 'none')}.outcome.{outcome}"]
    if expect.get("token_id") and outcome == "accepted" and not case.get("prior"):
        keys.append(f"otlp_gate_token_requests_total.token_id.{expect['token_id']}")
    if expect.get("would_be"):
        keys.append(f"otlp_gate_dry_run_total.signal.{expect.get('signal', 'none')}.outcome.{expect['would_be']}")
    return keys


def stats_after(s: st.Stack, before: dict[str, int], keys: list[str]) -> dict[str, int]:
    """The gate's counters once every one of `keys` has moved past `before`; with no key, after a
    few ticks, so that anything wrongly counted shows."""
    if not keys:
        time.sleep(3 * st.FILTER_TICK_S)
        return gate_stats(s)

    def moved():
        now = gate_stats(s)
        return now if all(now.get(k, 0) > before.get(k, 0) for k in keys) else None
    return st.wait_until(moved, 10, f"{', '.join(keys)} to be counted")


def send_http(s: st.Stack, req: dict, source: str) -> st.Response:
    headers = headers_of(req)
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
    body = None if req["method"] in ("GET", "HEAD") else (b"{}" if "json" in ctype else b"")
    r = st.request(f"{s.data_url}{req['path']}", req["method"], headers, body, source=source, timeout=10)
    assert r is not None, "no response from Envoy"
    return r


class GrpcResult:
    def __init__(self, code: int, message: str, trailers: dict):
        self.code, self.message, self.trailers = code, message, trailers


def send_grpc(s: st.Stack, req: dict) -> GrpcResult:
    skip = {"content-type", "te", "user-agent", "host", "content-length"}
    metadata = [(k.lower(), v) for k, v in headers_of(req) if k.lower() not in skip and not k.startswith(":")]
    with grpc.insecure_channel(f"127.0.0.1:{s.ports.data}") as channel:
        call = channel.unary_unary(req["path"])  # raw bytes in and out
        if not all(v.isprintable() and v.isascii() for _, v in metadata):
            pytest.skip("grpcio cannot send this header value as gRPC metadata")
        try:
            _, info = call.with_call(b"", metadata=metadata, timeout=10)
            return GrpcResult(0, "", dict(info.trailing_metadata() or ()))
        except grpc.RpcError as e:
            return GrpcResult(e.code().value[0], e.details() or "", dict(e.trailing_metadata() or ()))


def decode_status(body: bytes, encoding: str) -> tuple[int, str, list]:
    """google.rpc.Status -> (code, message, RetryInfo delays in seconds)."""
    if encoding == "protobuf":
        st_ = status_pb2.Status.FromString(body)
    else:
        st_ = json_format.Parse(body, status_pb2.Status(), ignore_unknown_fields=True)
    delays = []
    for d in st_.details:
        info = error_details_pb2.RetryInfo()
        if d.Unpack(info):
            delays.append(info.retry_delay.seconds)
    return st_.code, st_.message, delays


@pytest.mark.skipif(not CASES, reason="no case in tests/cases/behaviour.json is marked \"envoy\": true")
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_against_real_envoy(replay, cli, case):
    req, expect = case["request"], case["expect"]
    reason = clock_skip_reason(case)
    if reason:
        pytest.skip(reason)
    if "source" in req:
        pytest.skip("needs a specific client address (request.source), which loopback cannot provide")
    grpc_case = is_grpc(req)
    if grpc_case and req["method"] != "POST":
        pytest.skip("grpcio (the h2 client here) always sends POST")
    use_config(replay, case["config"])
    source = SOURCES[case["name"]]

    stats_before = st.settled(lambda: gate_stats(replay))
    seq_before = replay.last_seq()
    prior = case.get("prior")
    for _ in range((prior or {}).get("count", 0)):
        p = prior.get("request", req)
        send_grpc(replay, p) if is_grpc(p) else send_http(replay, p, source)
        seq_before = replay.last_seq()
    result = send_grpc(replay, req) if grpc_case else send_http(replay, req, source)
    time.sleep(0.05)  # let the receiver record a forwarded request before we look
    forwarded = replay.received(seq_before)
    outcome = expect.get("outcome")
    expected = expected_counters(case)
    key = expected[0] if expected else None
    delta = {k: v - stats_before.get(k, 0) for k, v in stats_after(replay, stats_before, expected).items()}

    if "forward" in expect:
        fwd = expect["forward"]
        assert len(forwarded) == 1, f"{case['name']}: expected 1 forwarded request, receiver got {len(forwarded)}"
        got = forwarded[0]
        assert got["path"] == fwd.get("path", req["path"]), f"{case['name']}: upstream path"
        for name, value in fwd.get("headers", {}).items():
            assert got["headers"].get(name.lower()) == [value], f"{case['name']}: upstream header {name}"
        for name in fwd.get("absent", []):
            assert name.lower() not in got["headers"], f"{case['name']}: {name} reached upstream"
        if grpc_case:
            assert result.code == 0, f"{case['name']}: gRPC status {result.code}"
        else:
            assert result.status == 200, f"{case['name']}: status {result.status} from the receiver"
    else:
        assert forwarded == [], f"{case['name']}: the receiver got {len(forwarded)} request(s)"

    if "reply" in expect:
        reply = expect["reply"]
        if grpc_case:
            assert result.code == reply["grpc_status"], f"{case['name']}: gRPC status {result.code}"
            if "grpc_message_contains" in reply:
                assert reply["grpc_message_contains"] in result.message, f"{case['name']}: grpc-message"
            if reply.get("body", {}).get("retry_delay") is not None:
                details = status_pb2.Status.FromString(result.trailers["grpc-status-details-bin"])
                _, _, delays = decode_status(details.SerializeToString(), "protobuf")
                assert delays == [reply["body"]["retry_delay"]], f"{case['name']}: RetryInfo"
        else:
            assert result.status == reply["status"], f"{case['name']}: status {result.status}"
            for name, value in reply.get("headers", {}).items():
                assert result.header(name) == value, f"{case['name']}: reply header {name}"
            body = reply.get("body") or {}
            encoding = body.get("encoding", "none")
            if encoding == "healthz":
                doc = result.json()
                assert doc["status"] == "ok" and doc["tokens"] == body["tokens"], f"{case['name']}: healthz body"
                assert doc["generation"] >= 1 and re.fullmatch(r"[0-9a-f]{64}", doc["config_sha256"])
            elif encoding in ("protobuf", "json"):
                code, message, delays = decode_status(result.body, encoding)
                assert code == body["code"], f"{case['name']}: google.rpc.Status code {code}"
                if "message_contains" in body:
                    assert body["message_contains"] in message, f"{case['name']}: status message"
                if body.get("retry_delay") is not None:
                    assert delays == [body["retry_delay"]], f"{case['name']}: RetryInfo"

    # The gate's counters, read from Envoy's stats.
    counted = {k: v for k, v in delta.items() if k.startswith("otlp_gate_requests_total.") and v}
    if outcome is None:
        assert counted == {}, f"{case['name']}: counted as {sorted(counted)}"
    else:
        if prior:
            assert delta.get(key, 0) >= 1, f"{case['name']}: {key} not incremented"
        else:
            assert counted == {key: 1}, f"{case['name']}: counters moved: {counted}"
    if expect.get("token_id") and outcome == "accepted" and not prior:
        key = f"otlp_gate_token_requests_total.token_id.{expect['token_id']}"
        assert delta.get(key) == 1, f"{case['name']}: {key}"
    if expect.get("would_be"):
        key = f"otlp_gate_dry_run_total.signal.{expect.get('signal', 'none')}.outcome.{expect['would_be']}"
        assert delta.get(key, 0) >= 1, f"{case['name']}: {key}"


def test_healthz_hash_matches_the_cli(replay, cli, tmp_path):
    """`otlp-gate check` prints the config hash the filter reports once Envoy has loaded the
    same configuration from the ECDS file (a Struct, not JSON)."""
    use_config(replay, replay.current)
    config = TABLE["configs"][replay.current]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = st.cli_check(path)
    assert out.returncode == 0, out.stderr
    m = re.search(r"config sha256[^:]*: ([0-9a-f]{64})", out.stdout)
    assert m, "otlp-gate check printed no config sha256"
    assert replay.healthz().json()["config_sha256"] == m.group(1)
