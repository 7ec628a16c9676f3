"""Per-token rate limits and failed-auth throttling on real Envoy (shared data across its worker
threads): an OTel SDK exporter that gets a 429 backs off and then succeeds, and a client address
that keeps presenting bad credentials is throttled while valid tokens from the same address (a
NAT neighbour) are still served."""

from __future__ import annotations

import time

import otel
import stack as st
from conftest import register_secret


def post(s, token, source):
    headers = [("content-type", "application/x-protobuf")]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    return st.request(f"{s.data_url}/observability/v1/traces", "POST", headers, b"", source=source, timeout=5)


def test_failed_auth_throttling_spares_valid_tokens_behind_the_same_address(stack, tokens):
    strict = tokens.settings(failed_auth={"max_failures": 3, "window": "60s", "cooldown": "300s"})
    stack.load(strict)
    try:
        nat, other = "127.0.3.1", "127.0.3.2"
        wrong = st.new_token("wrong")[0]
        assert [post(stack, wrong, nat).status for _ in range(3)] == [401, 401, 401]
        throttled = post(stack, wrong, nat)
        assert throttled.status == 429 and int(throttled.header("retry-after")) > 0
        assert post(stack, None, nat).status == 429, "no credential at all is throttled too"
        assert post(stack, tokens.value("team-a"), nat).status == 200, "a valid token from the same address"
        assert post(stack, wrong, other).status == 401, "another address is not affected"
    finally:
        stack.load(tokens.settings())


def test_rate_limited_exporter_backs_off_and_succeeds(stack, tokens):
    value, digest = st.new_token("limited")
    register_secret(value)
    settings = tokens.settings()
    settings["tokens"] = settings["tokens"] + [
        {"id": "limited", "sha256": digest, "tenant": "team-a", "rate": {"requests_per_second": 1, "burst": 1}}]
    stack.load(settings)
    try:
        before_seq = stack.last_seq()
        throttled_before = st.sample(stack.prometheus(), "otlp_gate_token_refused_total", token_id="limited",
                                     outcome="rate_limited")
        batch = otel.make_batch("limited-service", n_spans=1, n_logs=0, n_points=0)
        span_x = otel.exporters("http-protobuf", https_url=stack.https_url, grpc_target=stack.grpc_target,
                                ca=stack.certs.ca, token=value, timeout=15)[0]
        started = time.monotonic()
        results = [span_x.export(batch.spans) for _ in range(3)]
        elapsed = time.monotonic() - started
        span_x.shutdown()
        assert results == [otel.SpanExportResult.SUCCESS] * 3
        assert elapsed >= 1.0, "the exporter was told to wait (Retry-After) and did"
        arrived = [r for r in stack.received(before_seq) if r["services"] == ["limited-service"]]
        assert len(arrived) == 3, "every batch arrived exactly once"
        st.wait_until(lambda: st.sample(stack.prometheus(), "otlp_gate_token_refused_total",
                                        token_id="limited", outcome="rate_limited") > throttled_before,
                      5, "the throttled requests to be counted")
    finally:
        stack.load(tokens.settings())
