"""HAProxy 2.6 (envoy/haproxy.cfg) in front of Envoy, as the ingress: TLS with the generated
certificate, HTTP/1.1 and h2 by ALPN, the OTLP paths to Envoy (gRPC as h2c), everything else to
Grafana, and plain HTTP redirected to HTTPS."""

from __future__ import annotations

import subprocess

import grpc
import pytest

import stack as st

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def curl(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(stack.certs.ca),
                           "--resolve", f"localhost:{stack.https_port}:127.0.0.1", *args],
                          capture_output=True, text=True, timeout=30)


def test_plain_http_is_redirected_to_https(stack):
    """To the https frontend's port, not to https on the plain-HTTP port the request came in on."""
    for host in ["obs.example.test", f"obs.example.test:{stack.http_port}"]:
        for path in ["/observability/v1/traces", "/", "/grafana/login?next=%2F"]:
            r = st.request(f"{stack.http_url}{path}", "POST", [("host", host)], b"")
            assert r.status == 308, path
            assert r.header("location") == f"https://obs.example.test:{stack.https_port}{path}"
    # Followed, the redirect reaches the https frontend.
    r = st.request(f"{stack.http_url}/observability/healthz", headers=[("host", f"localhost:{stack.http_port}")])
    r = st.request(r.header("location"), ca=stack.certs.ca)
    assert r.status == 200 and r.header("server") == "otlp-gate"


@pytest.mark.parametrize("path,backend", [
    ("/", "grafana"), ("/grafana", "grafana"), ("/grafana/d/abc", "grafana"),
    ("/observabilityx", "grafana"), ("/observability/healthz", "envoy"), ("/observability", "envoy"),
])
def test_routing(stack, path, backend):
    r = st.request(f"{stack.https_url}{path}", ca=stack.certs.ca)
    if backend == "grafana":
        assert r.status == 200 and r.header("x-served-by") == "grafana-stand-in"
    else:
        assert r.header("x-served-by") is None and r.header("server") == "otlp-gate"


@pytest.mark.parametrize("flag,version", [("--http1.1", "1.1"), ("--http2", "2")])
def test_alpn_http1_and_h2(stack, tokens, tmp_path, flag, version):
    # The credential goes to curl in a file, not on its command line.
    headers = tmp_path / "headers"
    headers.write_text(f"authorization: Bearer {tokens.value('team-a')}\ncontent-type: application/x-protobuf\n")
    before = stack.last_seq()
    out = curl(stack, flag, "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "-H", f"@{headers}",
               "--data-binary", "", f"https://localhost:{stack.https_port}/observability/v1/traces")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"200 {version}"
    arrived = [(r["tenant"], r["path"]) for r in stack.received(before)]
    assert arrived == [("team-a", "/v1/traces")]


def test_grpc_through_haproxy_gets_grpc_statuses(stack, tokens):
    creds = grpc.ssl_channel_credentials(root_certificates=stack.certs.ca.read_bytes())
    with grpc.secure_channel(stack.grpc_target, creds) as channel:
        export = channel.unary_unary(TRACE_EXPORT)
        with pytest.raises(grpc.RpcError) as missing:
            export(b"", timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as scope:
            channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")(
                b"", metadata=[("authorization", f"Bearer {tokens.value('team-b-traces')}")], timeout=10)
        assert scope.value.code() == grpc.StatusCode.PERMISSION_DENIED
        before = stack.last_seq()
        export(b"", metadata=[("authorization", f"Bearer {tokens.value('team-a')}")], timeout=10)
        assert [(r["tenant"], r["transport"]) for r in stack.received(before)] == [("team-a", "grpc")]
