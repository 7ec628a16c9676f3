"""Content types against real Envoy: whatever a client sends, a refusal comes back in a form the
client can read. Envoy sends a local reply as gRPC (HTTP 200, `grpc-status`, no body) only when
it judges the request gRPC itself; the gate must agree with it, or a refusal becomes an HTTP 200
with a text body (clients see success) or loses its Retry-After.

Every content type below goes to every kind of path, without a credential, with an unknown
token, with a valid one and with a rate-limited one, over HTTP/2 straight to the data listener.
Every refusal must be either a well-formed gRPC trailers-only reply, exactly for the content
types Envoy's rule calls gRPC (`application/grpc`, alone or followed by `+`), or an HTTP
4xx carrying a `google.rpc.Status` in JSON or protobuf and the headers its status needs
(`WWW-Authenticate` on 401, `Allow` on 405, `Retry-After` on 429).
"""

from __future__ import annotations

import re

import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

import conftest
import h2util
import stack as st

CONTENT_TYPES = [
    "application/grpc", "application/grpc+proto", "application/grpc+json", "application/grpc;charset=utf-8",
    "application/grpc+proto; charset=utf-8", "application/grpc-web", "application/grpc-web+proto",
    "application/grpc-web-text", "APPLICATION/GRPC", "Application/Grpc", "application/grpcx", "application/grpc+",
    "application/x-protobuf", "APPLICATION/X-PROTOBUF", "application/x-protobuf; charset=binary",
    "application/json", "application/json; charset=utf-8", "Application/JSON", "text/plain",
    "application/octet-stream", "application/protobuf", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "*/*", "", None,
]
PATHS = [
    ("POST", "/observability/v1/traces"),
    ("GET", "/observability/v1/traces"),
    ("POST", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
    ("POST", "/opentelemetry.proto.collector.trace.v1.TraceService/Other"),
    ("POST", "/nope"),
]
CREDENTIALS = ["none", "unknown", "valid", "rate-limited"]


def envoy_calls_grpc(content_type: str | None) -> bool:
    """Envoy's `Grpc::Common::hasGrpcContentType` (source/common/grpc/common.cc): exactly
    `application/grpc`, or followed by `+`. (Not `;`: this test showed 1.40 treats
    `application/grpc;charset=utf-8` as plain HTTP.)"""
    return content_type is not None and re.match(r"application/grpc($|\+)", content_type) is not None


@pytest.fixture(scope="module")
def envoy(workdir, module, tokens):
    rec = h2util.RecordingGrpcUpstream()
    limited, digest = st.new_token("rate-limited")
    conftest.register_secret(str(limited))
    settings = tokens.settings()
    settings["tokens"] = settings["tokens"] + [
        {"id": "rate-limited", "sha256": digest, "tenant": "team-a",
         "rate": {"requests_per_second": "0.001", "burst": 1}}]
    s = st.Stack(workdir / "content-types", settings, haproxy=False, grpc_upstream=rec.port).start()
    rec.start(str(s.internal.server_cert), str(s.internal.server_key), str(s.internal.ca))
    s.limited = limited
    yield s
    s.close()
    rec.close()


def send(s, method, path, content_type, credential, tokens) -> h2util.H2Response:
    headers = [(":method", method), (":scheme", "http"), (":authority", "otlp"), (":path", path)]
    if content_type is not None:
        headers.append(("content-type", content_type))
    if envoy_calls_grpc(content_type):
        headers.append(("te", "trailers"))
    token = {"none": None, "unknown": st.new_token("unknown")[0], "valid": tokens.value("team-a"),
             "rate-limited": s.limited}[credential]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    # Valid empty exports: a gRPC frame of an empty message, `{}` in JSON, nothing in protobuf.
    body = b"\0\0\0\0\0" if envoy_calls_grpc(content_type) else (
        b"{}" if "json" in (content_type or "").lower() else b"")
    if method == "GET":
        body = b""
    return h2util.request(s.ports.data, headers, body)


def problems(r: h2util.H2Response, grpc: bool) -> list[str]:
    """What is wrong with a refusal (nothing, for a well-formed one of the expected form)."""
    bad = []
    status = r.trailer("grpc-status") or r.header("grpc-status")
    if grpc:
        if r.status != 200 or not (r.header("content-type") or "").startswith("application/grpc"):
            bad.append(f"gRPC request refused as HTTP {r.status} {r.header('content-type')!r}")
        if status is None or status == "0":
            bad.append(f"grpc-status {status!r}")
        if r.body:
            bad.append(f"a body on a trailers-only reply ({len(r.body)} bytes)")
        if status == "8" and not (r.trailer("grpc-status-details-bin") or r.header("grpc-status-details-bin")):
            bad.append("RESOURCE_EXHAUSTED without RetryInfo")
        return bad
    if not 400 <= r.status < 500:
        bad.append(f"HTTP {r.status} for a refusal")
    if status is not None:
        bad.append(f"grpc-status {status} on an HTTP reply")
    ctype = r.header("content-type")
    try:
        if ctype == "application/json":
            st_ = json_format.Parse(r.body, status_pb2.Status(), ignore_unknown_fields=True)
        elif ctype == "application/x-protobuf":
            st_ = status_pb2.Status.FromString(r.body)
        else:
            return bad + [f"content-type {ctype!r}"]
    except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
        return bad + [f"body is not a google.rpc.Status ({type(e).__name__})"]
    if not st_.message or st_.code == 0:
        bad.append("empty google.rpc.Status")
    need = {401: "www-authenticate", 405: "allow", 429: "retry-after"}.get(r.status)
    if need and not r.header(need):
        bad.append(f"{r.status} without {need}")
    if r.status == 429:
        info = [d for d in st_.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        if not info:
            bad.append("429 without RetryInfo")
    return bad


def test_every_refusal_is_well_formed_for_what_envoy_calls_grpc(envoy, tokens):
    findings, refused, forwarded = [], 0, 0
    for ct in CONTENT_TYPES:
        for method, path in PATHS:
            for cred in CREDENTIALS:
                for _ in range(2 if cred == "rate-limited" else 1):
                    r = send(envoy, method, path, ct, cred, tokens)
                    accepted = cred in ("valid", "rate-limited") and r.status == 200 and (
                        r.trailer("grpc-status") or r.header("grpc-status") or "0") == "0"
                    if accepted:
                        forwarded += 1
                        continue
                    refused += 1
                    for p in problems(r, envoy_calls_grpc(ct)):
                        findings.append(f"{method} {path} content-type {ct!r} credential {cred}: {p}")
    conftest.report(f"content types: {len(CONTENT_TYPES)} types x {len(PATHS)} paths x {len(CREDENTIALS)} "
                    f"credentials through real Envoy: {refused} refusals, all well-formed; {forwarded} forwarded")
    assert not findings, "\n".join(findings[:40])
    assert refused > 200 and forwarded > 0


def test_only_otlp_media_types_reach_the_upstreams(envoy, tokens):
    """With a valid token, exactly the content types OTLP defines for a path are forwarded."""
    for ct in CONTENT_TYPES:
        http = send(envoy, "POST", "/observability/v1/traces", ct, "valid", tokens)
        media = (ct or "").split(";")[0].strip().lower()
        want_http = 200 if media in ("application/x-protobuf", "application/json") else (
            404 if envoy_calls_grpc(ct) else 415)
        got = 404 if envoy_calls_grpc(ct) and http.status == 200 and http.header("grpc-status") else http.status
        assert got == want_http, f"{ct!r} on the OTLP/HTTP path: {http.status}"
        grpc = send(envoy, "POST", "/opentelemetry.proto.collector.trace.v1.TraceService/Export", ct, "valid", tokens)
        if envoy_calls_grpc(ct):
            assert grpc.status == 200 and (grpc.trailer("grpc-status") or grpc.header("grpc-status")) == "0", ct
        else:
            assert grpc.status == 415, f"{ct!r} on the gRPC path: {grpc.status}"
