"""The local OTLP receiver on its own: it decodes what the OTLP spec says it must, refuses what it
must refuse (415 / 400 / 404 / 405, gRPC INVALID_ARGUMENT), and records what it saw without ever
storing a credential."""

from __future__ import annotations

import gzip
import json

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

import stack as st
from receiver import Receiver

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


@pytest.fixture(scope="module")
def rx():
    r = Receiver().start()
    yield r
    r.stop()


def url(rx, path):
    return f"http://127.0.0.1:{rx.ports['http']}{path}"


def traces_request(service="svc", n=2) -> trace_pb.ExportTraceServiceRequest:
    req = trace_pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for i in range(n):
        span = ss.spans.add()
        span.name = f"op-{i}"
        span.trace_id = bytes.fromhex(TRACE_ID)
        span.span_id = bytes.fromhex(SPAN_ID)
    return req


def last(rx) -> dict:
    return rx.store.records()[-1]


def test_protobuf_export(rx):
    body = traces_request().SerializeToString()
    r = st.request(url(rx, "/v1/traces?x=1"), "POST",
                   [("content-type", "application/x-protobuf"), ("x-scope-orgid", "team-a")], body)
    assert r.status == 200 and r.header("content-type") == "application/x-protobuf"
    trace_pb.ExportTraceServiceResponse.FromString(r.body)
    rec = last(rx)
    assert (rec["status"], rec["tenant"], rec["transport"], rec["items"]) == ("ok", "team-a", "http/protobuf", 2)
    assert rec["services"] == ["svc"] and rec["names"] == ["op-0", "op-1"] and rec["path"] == "/v1/traces?x=1"


def test_json_export_with_hex_ids_and_gzip(rx):
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
                              "scopeSpans": [{"spans": [{"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "x",
                                                         "kind": 2, "unknownField": 1}]}]}]}
    r = st.request(url(rx, "/v1/traces"), "POST",
                   [("content-type", "application/json"), ("content-encoding", "gzip")],
                   gzip.compress(json.dumps(doc).encode()))
    assert r.status == 200 and r.json() == {}
    rec = last(rx)
    assert rec["transport"] == "http/json" and rec["tenant"] == "(none)"
    assert rec["span_ids"] == [f"{TRACE_ID}/{SPAN_ID}"]


@pytest.mark.parametrize("ctype,body,status,encoding", [
    ("text/plain", b"hello", 415, "json"),
    ("application/x-protobuf", b"\xff\xff\xff", 400, "protobuf"),
    ("application/json", b"{not json", 400, "json"),
    ("application/json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', 400, "json"),
])
def test_refuses_what_it_cannot_decode(rx, ctype, body, status, encoding):
    r = st.request(url(rx, "/v1/traces"), "POST", [("content-type", ctype)], body)
    assert r.status == status
    if encoding == "protobuf":
        st_ = status_pb2.Status.FromString(r.body)
        assert st_.code == 3 and st_.message
    else:
        assert r.json()["code"] == 3
    assert last(rx)["status"] == status


def test_paths_and_methods(rx):
    assert st.request(url(rx, "/v1/profiles"), "POST", [("content-type", "application/json")], b"{}").status == 404
    r = st.request(url(rx, "/v1/logs"))
    assert r.status == 405 and r.header("allow") == "POST"
    assert st.request(url(rx, "/"), "GET").status == 404


def test_credentials_are_never_stored(rx):
    body = traces_request().SerializeToString()
    st.request(url(rx, "/v1/traces"), "POST",
               [("content-type", "application/x-protobuf"), ("authorization", "Bearer leaked-secret-value")], body)
    rec = last(rx)
    assert rec["headers"]["authorization"] == ["<redacted, 26 bytes>"]
    stored = "leaked-secret-value" in json.dumps(rx.store.records())
    assert not stored
    assert "authorization PRESENT (bug!)" in rx.store.summary_text()


def test_grpc_export_and_invalid_argument(rx):
    with grpc.insecure_channel(f"127.0.0.1:{rx.ports['grpc']}") as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        reply = export(traces_request("g", 3).SerializeToString(), metadata=[("x-scope-orgid", "team-g")], timeout=5)
        trace_pb.ExportTraceServiceResponse.FromString(reply)
        rec = last(rx)
        assert (rec["transport"], rec["tenant"], rec["items"], rec["services"]) == ("grpc", "team-g", 3, ["g"])
        with pytest.raises(grpc.RpcError) as bad:
            export(b"\xff\xff\xff", timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_query_api(rx):
    api = f"http://127.0.0.1:{rx.ports['api']}"
    records = st.request(f"{api}/api/records").json()
    assert records and records == sorted(records, key=lambda r: r["seq"])
    newest = records[-1]["seq"]
    assert st.request(f"{api}/api/records?since={newest}").json() == []
    summary = st.request(f"{api}/api/summary").json()
    assert summary["tenants"]["team-a"]["signals"]["traces"]["items"] == 2
    text = st.request(f"{api}/api/summary.txt").body.decode()
    assert "tenant team-a" in text and "2 span(s)" in text and "refused" in text
    assert st.request(f"{api}/api/reset", "POST", body=b"").status == 200
    assert st.request(f"{api}/api/records").json() == []
