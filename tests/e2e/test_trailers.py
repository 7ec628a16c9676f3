"""Request trailers through real Envoy: an HTTP/2 gRPC export that ends with trailers naming the
tenant, the identity or a credential must not carry them past the gate (Envoy forwards request
trailers to an HTTP/2 upstream as they came). The upstream here records every stream's trailers.
"""

from __future__ import annotations

import pytest

import conftest
import h2util
import stack as st

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def upstream(workdir, module, tokens):
    rec = h2util.RecordingGrpcUpstream()
    settings = tokens.settings(api_key_header="x-api-key")
    s = st.Stack(workdir / "trailers", settings, haproxy=False, grpc_upstream=rec.port).start()
    rec.start(str(s.internal.server_cert), str(s.internal.server_key), str(s.internal.ca))
    yield s, rec
    s.close()
    rec.close()


def export(s, token, trailers):
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", "otlp"), (":path", EXPORT),
               ("content-type", "application/grpc"), ("te", "trailers"), ("authorization", f"Bearer {token}")]
    return h2util.request(s.ports.data, headers, b"\0\0\0\0\0", trailers)


def test_owned_names_never_reach_the_upstream_in_trailers(upstream, tokens):
    s, rec = upstream
    other = tokens.value("team-b-traces")
    trailers = [("x-scope-orgid", "team-b"), ("x-otlp-token-id", "team-b-traces"),
                ("authorization", f"Bearer {other}"), ("x-api-key", str(other)), ("x-checksum", "kept")]
    before = len(rec.calls)
    r = export(s, tokens.value("team-a"), trailers)
    assert (r.status, r.trailer("grpc-status") or r.header("grpc-status")) == (200, "0")
    assert len(rec.calls) == before + 1
    call = rec.calls[-1]
    headers = dict(call.headers)
    assert (headers["x-scope-orgid"], headers["x-otlp-token-id"]) == ("team-a", "team-a")
    assert "authorization" not in headers
    got = dict(call.trailers)
    assert got.get("x-checksum") == "kept", "trailers reach the upstream (the test would see them)"
    leaked = sorted({"x-scope-orgid", "x-otlp-token-id", "authorization", "x-api-key"} & set(got))
    assert leaked == [], f"reached the upstream in trailers: {leaked}"


def test_an_export_without_trailers_is_untouched(upstream, tokens):
    s, rec = upstream
    r = export(s, tokens.value("team-a"), None)
    assert r.status == 200
    assert rec.calls[-1].trailers == []
    conftest.register_secret(str(tokens.value("team-a")))
