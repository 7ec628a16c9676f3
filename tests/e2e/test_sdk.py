"""The official OpenTelemetry Python SDK exporters -> HAProxy (TLS, generated CA) -> Envoy +
otlp_gate.wasm -> the OTLP receiver: what is accepted arrives exactly, under the token's tenant,
without the credential; what is refused is reported as a failure by the exporter and never
arrives."""

from __future__ import annotations

import pytest

import otel
import stack as st

TRANSPORT = {"http-protobuf": "http/protobuf", "http-json": "http/json", "grpc": "grpc"}


def send(stack, batch, protocol, token):
    return otel.send(batch, protocol, https_url=stack.https_url, grpc_target=stack.grpc_target,
                     ca=stack.certs.ca, token=token)


@pytest.mark.parametrize("protocol", otel.PROTOCOLS)
def test_valid_token_delivers_exactly_what_was_sent(stack, tokens, protocol):
    batch = otel.make_batch(f"checkout-{protocol}", n_spans=3, n_logs=2, n_points=4, tag=f"{protocol}-")
    before = stack.last_seq()
    result = send(stack, batch, protocol, tokens.value("team-a"))
    assert result == {"traces": True, "logs": True, "metrics": True}

    records = stack.received(before)
    assert sorted(r["signal"] for r in records) == ["logs", "metrics", "traces"]
    by_signal = {r["signal"]: r for r in records}
    for r in records:
        assert r["status"] == "ok", r["error"]
        assert r["transport"] == TRANSPORT[protocol]
        assert r["tenant"] == "team-a"
        assert r["services"] == [batch.service]
        assert "authorization" not in r["headers"]
        assert r["headers"]["x-scope-orgid"] == ["team-a"]
        assert r["headers"]["x-otlp-token-id"] == ["team-a"]
    assert by_signal["traces"]["items"] == 3
    assert sorted(by_signal["traces"]["names"]) == sorted(batch.span_names)
    sent_ids = sorted(f"{s.context.trace_id:032x}/{s.context.span_id:016x}" for s in batch.spans)
    assert sorted(by_signal["traces"]["span_ids"]) == sent_ids
    assert by_signal["logs"]["items"] == 2
    assert by_signal["logs"]["names"] == batch.log_bodies
    assert by_signal["metrics"]["items"] == batch.metric_points
    if protocol != "grpc":
        # The filter rewrote /observability/v1/<signal> to /v1/<signal>.
        assert {r["path"] for r in records} == {"/v1/traces", "/v1/logs", "/v1/metrics"}
    else:
        assert by_signal["traces"]["path"] == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


BAD = ["missing", "wrong", "expired", "disabled", "not-yet-valid"]


@pytest.mark.parametrize("protocol", otel.PROTOCOLS)
@pytest.mark.parametrize("kind", BAD)
def test_bad_credentials_fail_and_deliver_nothing(stack, tokens, protocol, kind):
    token = {
        "missing": None,
        "wrong": st.new_token("wrong")[0],
        "expired": tokens.value("expired"),
        "disabled": tokens.value("disabled"),
        "not-yet-valid": tokens.value("future"),
    }[kind]
    batch = otel.make_batch(f"bad-{kind}", n_spans=1, n_logs=1, n_points=1)
    before = stack.last_seq()
    result = send(stack, batch, protocol, token)
    assert result == {"traces": False, "logs": False, "metrics": False}
    arrived = len(stack.received(before))
    assert arrived == 0


@pytest.mark.parametrize("protocol", otel.PROTOCOLS)
def test_out_of_scope_signals_fail_in_scope_signal_arrives(stack, tokens, protocol):
    batch = otel.make_batch(f"scoped-{protocol}", n_spans=2, n_logs=1, n_points=1)
    before = stack.last_seq()
    result = send(stack, batch, protocol, tokens.value("team-b-traces"))
    assert result == {"traces": True, "logs": False, "metrics": False}
    records = stack.received(before)
    assert [(r["signal"], r["tenant"], r["items"]) for r in records] == [("traces", "team-b", 2)]
