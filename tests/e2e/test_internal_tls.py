"""The Envoy -> Alloy hop is mutual TLS (envoy/envoy.yaml's alloy_* clusters, alloy/config.alloy's
receiver): the stack's receiver, like Alloy, requires a client certificate from the internal CA.
A client without one, with one from another CA, or in plain text is refused by the receiver
itself (it counts the refused handshakes); Envoy's requests arrive with its certificate; and a
client certificate swapped in the kubelet way is used by the running Envoy without a restart."""

from __future__ import annotations

import http.client
import json
import ssl
import time

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

import certs
import stack as st


def traces(service: str = "tls-check") -> bytes:
    req = trace_pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    span = rs.scope_spans.add().spans.add()
    span.name, span.trace_id, span.span_id = "op", b"\x01" * 16, b"\x02" * 8
    return req.SerializeToString()


def refused(stack) -> list[str]:
    return st.request(f"{stack.api_url}/api/tls", timeout=5).json()["refused"]


def post_direct(stack, ctx: ssl.SSLContext | None) -> int | str:
    """POST a trace export straight to the receiver's OTLP/HTTP port: the status, or the error."""
    port = stack.receiver_ports["http"]
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10) if ctx
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        conn.request("POST", "/v1/traces", traces(), {"content-type": "application/x-protobuf",
                                                      "x-scope-orgid": "intruder"})
        return conn.getresponse().status
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()


def client_context(internal, cert: tuple[bytes, bytes] | None, tmp_path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(internal.ca))
    ctx.check_hostname = False  # the receiver's name is Alloy's Service name; the chain is checked
    if cert:
        (tmp_path / "c.crt").write_bytes(cert[0])
        (tmp_path / "c.key").write_bytes(cert[1])
        ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    return ctx


def test_the_receiver_refuses_clients_without_the_gateway_certificate(stack, tmp_path):
    internal = stack.internal
    other_ca = certs.make_internal_certs(tmp_path / "other-ca")
    foreign = other_ca.issue("foreign", "otlp-gate", "clientAuth")
    seq = stack.last_seq()
    before = len(refused(stack))

    # In plain text, with TLS but no certificate, and with a certificate of another CA: refused
    # during the handshake, so no request reaches the receiver whatever tenant it claims.
    assert post_direct(stack, None) != 200
    assert post_direct(stack, client_context(internal, None, tmp_path)) != 200
    assert post_direct(stack, client_context(internal, foreign, tmp_path)) != 200
    st.wait_until(lambda: len(refused(stack)) >= before + 3, 10, "the receiver to count 3 refused handshakes")
    # A server certificate of the right CA is no client certificate either (no clientAuth usage).
    server_pair = (internal.server_cert.read_bytes(), internal.server_key.read_bytes())
    assert post_direct(stack, client_context(internal, server_pair, tmp_path)) != 200

    # gRPC: no client certificate, no call.
    creds = grpc.ssl_channel_credentials(root_certificates=internal.ca.read_bytes())
    target = f"127.0.0.1:{stack.receiver_ports['grpc']}"
    opts = [("grpc.ssl_target_name_override", certs.ALLOY_NAME)]
    with grpc.secure_channel(target, creds, options=opts) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as e:
            export(traces(), timeout=10, metadata=[("x-scope-orgid", "intruder")])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert all(r["tenant"] != "intruder" for r in stack.received(seq))

    # The same client with the gateway's kind of certificate is accepted: the refusals above are
    # about the certificate, not a receiver that refuses everything.
    good = internal.issue("direct-client", "direct-client", "clientAuth")
    assert post_direct(stack, client_context(internal, good, tmp_path)) == 200
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(
            root_certificates=internal.ca.read_bytes(), private_key=good[1], certificate_chain=good[0]),
            options=opts) as ch:
        ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(traces(), timeout=10)
    peers = {r["peer"] for r in stack.received(seq) if r["status"] == "ok"}
    assert peers == {"direct-client"}


def test_envoy_presents_its_client_certificate(stack, tokens):
    seq = stack.last_seq()
    r = st.request(f"{stack.data_url}/observability/v1/traces", "POST",
                   [("authorization", f"Bearer {tokens.value('team-a')}"),
                    ("content-type", "application/x-protobuf")], traces("via-envoy"))
    assert r.status == 200, r.body
    rec = st.wait_until(lambda: [x for x in stack.received(seq) if "via-envoy" in x["services"]], 10,
                        "the export at the receiver")[0]
    assert (rec["tenant"], rec["peer"]) == ("team-a", "otlp-gate")


def test_a_renewed_client_certificate_is_used_without_a_restart(workdir, module, tokens):
    s = st.Stack(workdir / "tls-rotation", tokens.settings(), haproxy=False).start()
    try:
        pid = s.envoy.pid

        def send(service: str) -> dict:
            seq = s.last_seq()
            r = st.request(f"{s.data_url}/observability/v1/traces", "POST",
                           [("authorization", f"Bearer {tokens.value('team-a')}"),
                            ("content-type", "application/x-protobuf")], traces(service))
            assert r is not None and r.status == 200, r and r.body
            return st.wait_until(lambda: [x for x in s.received(seq) if service in x["services"]], 10,
                                 f"{service} at the receiver")[0]

        assert send("before-rotation")["peer"] == "otlp-gate"
        # New connections only: the receiver closes each after its response from now on.
        st.request(f"{s.api_url}/api/close-connections", "POST", body=b"")
        swapped = time.monotonic()
        s.internal.rotate_client("otlp-gate-renewed")
        n = 0

        def renewed():
            nonlocal n
            n += 1
            return send(f"after-rotation-{n}")["peer"] == "otlp-gate-renewed"

        st.wait_until(renewed, 30, "Envoy to present the renewed certificate", interval=0.2,
                      diagnose=s.envoy.tail)
        assert s.envoy.alive() and s.envoy.pid == pid
        stats = json.loads(st.request(f"{s.admin_url}/certs", timeout=5).body)
        print(f"renewed client certificate in use {time.monotonic() - swapped:.1f} s after the swap; "
              f"Envoy holds {len(stats.get('certificates', []))} certificate context(s)")
    finally:
        s.close()
