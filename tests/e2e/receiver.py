#!/usr/bin/env python3
"""A local OTLP receiver: the development stand-in for Alloy (think: the Collector's debug exporter).

It speaks real OTLP and checks what it gets:
  OTLP/HTTP  POST /v1/traces|/v1/metrics|/v1/logs, `application/x-protobuf` or `application/json`
             (gzip accepted); replies 200 with the Export*ServiceResponse in the request's encoding,
             415 for another content type, 400 (google.rpc.Status) for a body it cannot decode,
             404 / 405 for other paths and methods.
  OTLP/gRPC  the three collector services' Export methods (h2c), INVALID_ARGUMENT for bad input.
Everything that arrives is decoded and recorded per tenant (the `x-scope-orgid` header Envoy sets):
resource service names, span / data point / log record counts and names, and the headers seen
(credential values are never stored, only their presence and length).

A small JSON API (separate port) lets tests and the demo look inside:
  GET  /api/records?since=N   every request since sequence number N (refused ones included)
  GET  /api/summary           per tenant and signal totals (JSON); /api/summary.txt readable text
  POST /api/reset             forget everything
  GET  /api/tls              TLS handshakes refused (no or untrusted client certificate)
  POST /api/close-connections close every OTLP/HTTP connection after its response from now on
With --tls-cert/--tls-key/--client-ca both OTLP servers speak TLS 1.3 only and require a client
certificate from that CA (mutual TLS), as Alloy's receiver does behind the gateway; each record
then names the client certificate's subject CN (`peer`).
Run: python tests/e2e/receiver.py [--http 127.0.0.1:0] [--grpc 127.0.0.1:0] [--api 127.0.0.1:0]
     [--tls-cert alloy.crt --tls-key alloy.key --client-ca ca.crt]
It prints one line `RECEIVER {"http": port, "grpc": port, "api": port}` once listening.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import signal
import socket
import ssl
import sys
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

TENANT_HEADER = "x-scope-orgid"
NO_TENANT = "(none)"
# Header values that are credentials: recorded as presence and length only.
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
MAX_BODY = 64 * 1024 * 1024

SIGNALS = {
    "traces": (trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse),
    "metrics": (metrics_pb.ExportMetricsServiceRequest, metrics_pb.ExportMetricsServiceResponse),
    "logs": (logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse),
}
ITEM_NAME = {"traces": "span", "metrics": "data point", "logs": "log record"}
# OTLP/JSON encodes these bytes fields as hex, not base64 (OTLP spec, "JSON Protobuf Encoding").
HEX_ID_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


class BadRequest(Exception):
    """A request the receiver refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def redact_headers(pairs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        name = name.lower()
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if name in SECRET_HEADERS:
            value = f"<redacted, {len(value)} bytes>"
        out.setdefault(name, []).append(value)
    return out


def _hex_ids_to_base64(node):
    """Rewrite OTLP/JSON hex ids into the base64 that protobuf's JSON mapping expects."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in HEX_ID_FIELDS and isinstance(v, str):
                try:
                    raw = bytes.fromhex(v)
                except ValueError as e:
                    raise BadRequest(400, f"{k}: {v!r} is not hex") from e
                out[k] = base64.b64encode(raw).decode()
            else:
                out[k] = _hex_ids_to_base64(v)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def decode(signal_name: str, body: bytes, encoding: str):
    request_type = SIGNALS[signal_name][0]
    if encoding == "protobuf":
        try:
            return request_type.FromString(body)
        except DecodeError as e:
            raise BadRequest(400, f"cannot decode {request_type.DESCRIPTOR.name} (protobuf): {e}") from e
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(400, f"body is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise BadRequest(400, "OTLP/JSON body must be an object")
    try:
        # Receivers must ignore unknown fields (OTLP spec).
        return json_format.ParseDict(_hex_ids_to_base64(doc), request_type(), ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise BadRequest(400, f"cannot decode {request_type.DESCRIPTOR.name} (JSON): {e}") from e


def _service(resource) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return kv.value.string_value
    return "(unnamed)"


def contents(signal_name: str, req) -> dict:
    """Service names, item count, item names (span names, metric names, log bodies) and, for
    traces, `trace_id/span_id` in hex of a decoded export request."""
    services: list[str] = []
    names: list[str] = []
    ids: list[str] = []
    count = 0
    if signal_name == "traces":
        for rs in req.resource_spans:
            services.append(_service(rs.resource))
            for ss in rs.scope_spans:
                count += len(ss.spans)
                names += [s.name for s in ss.spans]
                ids += [f"{s.trace_id.hex()}/{s.span_id.hex()}" for s in ss.spans]
    elif signal_name == "metrics":
        for rm in req.resource_metrics:
            services.append(_service(rm.resource))
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    points = len(getattr(m, kind).data_points) if kind else 0
                    count += points
                    names.append(m.name)
    else:
        for rl in req.resource_logs:
            services.append(_service(rl.resource))
            for sl in rl.scope_logs:
                count += len(sl.log_records)
                names += [lr.body.string_value for lr in sl.log_records]
    return {"services": sorted(set(services)), "items": count, "names": names, "span_ids": ids}


class Store:
    """Everything received, in arrival order, thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._records: list[dict] = []
        self._seq = 0
        self.tls_refused: list[str] = []  # why each refused TLS handshake failed
        self.close_connections = False

    def add(self, **record) -> dict:
        with self._lock:
            self._seq += 1
            record["seq"] = self._seq
            record["time"] = time.time()
            self._records.append(record)
            return record

    def records(self, since: int = 0) -> list[dict]:
        with self._lock:
            return [r for r in self._records if r["seq"] > since]

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    def summary(self) -> dict:
        tenants: dict[str, dict] = {}
        refused: dict[str, int] = {}
        for r in self.records():
            if r["status"] != "ok":
                key = f"{r['status']} {r['error'].split(':')[0]}"
                refused[key] = refused.get(key, 0) + 1
                continue
            t = tenants.setdefault(r["tenant"], {"signals": {}, "headers": {}})
            s = t["signals"].setdefault(r["signal"], {"requests": 0, "items": 0, "services": [], "transports": []})
            s["requests"] += 1
            s["items"] += r["items"]
            s["services"] = sorted(set(s["services"]) | set(r["services"]))
            s["transports"] = sorted(set(s["transports"]) | {r["transport"]})
            for name, values in r["headers"].items():
                t["headers"].setdefault(name, set()).update(values)
        for t in tenants.values():
            t["headers"] = {k: sorted(v) for k, v in sorted(t["headers"].items())}
        return {"tenants": tenants, "refused": refused}

    def summary_text(self) -> str:
        s = self.summary()
        accepted = sum(sig["requests"] for t in s["tenants"].values() for sig in t["signals"].values())
        lines = [f"OTLP receiver: {accepted} export request(s) accepted, {sum(s['refused'].values())} refused"]
        for tenant, t in sorted(s["tenants"].items()):
            lines.append(f"  tenant {tenant}")
            for name in ("traces", "metrics", "logs"):
                sig = t["signals"].get(name)
                if sig:
                    items = f"{sig['items']} {ITEM_NAME[name]}(s)"
                    lines.append(
                        f"    {name:<8}{sig['requests']:>4} request(s) {items:<20} "
                        f"via {', '.join(sig['transports'])}; services: {', '.join(sig['services'])}"
                    )
            shown = {k: v for k, v in t["headers"].items() if k in (TENANT_HEADER, "x-otlp-token-id")}
            lines.append("    headers: " + ", ".join(f"{k}={'|'.join(v)}" for k, v in shown.items())
                         + f"; authorization {'PRESENT (bug!)' if 'authorization' in t['headers'] else 'absent'}")
        for reason, n in sorted(s["refused"].items()):
            lines.append(f"  refused {n}x: {reason}")
        return "\n".join(lines) + "\n"


def status_body(code: int, message: str, encoding: str) -> tuple[bytes, str]:
    st = status_pb2.Status(code=code, message=message)
    if encoding == "protobuf":
        return st.SerializeToString(), "application/x-protobuf"
    return json_format.MessageToJson(st, indent=None).encode(), "application/json"


def make_http_handler(store: Store):
    class OtlpHttp(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "otlp-receiver"

        def log_message(self, *args):  # quiet: the summary is the log
            pass

        def _reply(self, status: int, body: bytes, ctype: str, extra=()):
            self.send_response(status)
            if self.close_connection:
                self.send_header("connection", "close")
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _signal(self) -> str | None:
            path = urlsplit(self.path).path
            for name in SIGNALS:
                if path == f"/v1/{name}":
                    return name
            return None

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY:
                        raise BadRequest(413, "body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                raise BadRequest(413, "body too large")
            return self.rfile.read(length)

        def _peer(self) -> str:
            cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            if not cert:
                return ""
            return dict(x[0] for x in cert.get("subject", ())).get("commonName", "")

        def do_POST(self):
            if store.close_connections:
                self.close_connection = True
            name = self._signal()
            headers = redact_headers(self.headers.items())
            tenant = (headers.get(TENANT_HEADER) or [NO_TENANT])[0]
            ctype = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
            encoding = {"application/x-protobuf": "protobuf", "application/json": "json"}.get(ctype)
            try:
                body = self._read_body()
                if name is None:
                    raise BadRequest(404, f"no OTLP endpoint at {urlsplit(self.path).path}")
                if encoding is None:
                    raise BadRequest(415, f"unsupported content-type {ctype!r} (OTLP/HTTP uses application/x-protobuf or application/json)")
                ce = (self.headers.get("content-encoding") or "identity").lower()
                if ce == "gzip":
                    try:
                        body = gzip.decompress(body)
                    except (OSError, EOFError, zlib.error) as e:
                        raise BadRequest(400, f"bad gzip body: {e}") from e
                elif ce != "identity":
                    raise BadRequest(400, f"unsupported content-encoding {ce!r}")
                req = decode(name, body, encoding)
            except BadRequest as e:
                store.add(transport=f"http/{encoding or ctype or 'none'}", signal=name or "none", path=self.path,
                          tenant=tenant, headers=headers, status=e.status, error=str(e), services=[], items=0, names=[], span_ids=[])
                extra = [("allow", "POST")] if e.status == 405 else []
                payload, rtype = status_body(code_pb2.INVALID_ARGUMENT, str(e), encoding or "json")
                self._reply(e.status, payload, rtype, extra)
                return
            store.add(transport=f"http/{encoding}", signal=name, path=self.path, tenant=tenant,
                      headers=headers, status="ok", error="", peer=self._peer(), **contents(name, req))
            response = SIGNALS[name][1]()
            if encoding == "protobuf":
                self._reply(200, response.SerializeToString(), "application/x-protobuf")
            else:
                self._reply(200, b"{}", "application/json")

        def _not_allowed(self):
            if self._signal() is None:
                payload, rtype = status_body(code_pb2.NOT_FOUND, "not found", "json")
                self._reply(404, payload, rtype)
            else:
                payload, rtype = status_body(code_pb2.UNIMPLEMENTED, "OTLP/HTTP accepts POST only", "json")
                self._reply(405, payload, rtype, [("allow", "POST")])

        do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed

    return OtlpHttp


def make_api_handler(store: Store):
    class Api(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, ctype="application/json"):
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/api/records":
                since = int(parse_qs(url.query).get("since", ["0"])[0])
                self._send(200, json.dumps(store.records(since)).encode())
            elif url.path == "/api/summary":
                self._send(200, json.dumps(store.summary()).encode())
            elif url.path == "/api/summary.txt":
                self._send(200, store.summary_text().encode(), "text/plain; charset=utf-8")
            elif url.path == "/api/health":
                self._send(200, b'{"status":"ok"}')
            elif url.path == "/api/tls":
                self._send(200, json.dumps({"refused": list(store.tls_refused)}).encode())
            else:
                self._send(404, b'{"error":"not found"}')

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if urlsplit(self.path).path == "/api/reset":
                store.reset()
                self._send(200, b'{"status":"reset"}')
            elif urlsplit(self.path).path == "/api/close-connections":
                store.close_connections = True
                self._send(200, b'{"status":"closing connections after each response"}')
            else:
                self._send(404, b'{"error":"not found"}')

    return Api


GRPC_SERVICES = {
    "opentelemetry.proto.collector.trace.v1.TraceService": "traces",
    "opentelemetry.proto.collector.metrics.v1.MetricsService": "metrics",
    "opentelemetry.proto.collector.logs.v1.LogsService": "logs",
}


def _grpc_handlers(store: Store) -> list:
    """Export handlers that decode the request themselves, so a body that is not a valid
    Export*ServiceRequest gets INVALID_ARGUMENT (grpcio's own deserialiser would say INTERNAL)."""

    def export_for(service: str, signal_name: str):
        request_type, response_type = SIGNALS[signal_name]
        path = f"/{service}/Export"

        def export(raw: bytes, context):
            headers = redact_headers(context.invocation_metadata())
            tenant = (headers.get(TENANT_HEADER) or [NO_TENANT])[0]
            try:
                request = request_type.FromString(raw)
            except DecodeError as e:
                store.add(transport="grpc", signal=signal_name, path=path, tenant=tenant,
                          headers=headers, status=400, error=f"cannot decode protobuf: {e}",
                          services=[], items=0, names=[], span_ids=[])
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode {request_type.DESCRIPTOR.name}")
            cn = context.auth_context().get("x509_common_name") or [b""]
            store.add(transport="grpc", signal=signal_name, path=path, tenant=tenant,
                      headers=headers, status="ok", error="", peer=cn[0].decode(errors="replace"),
                      **contents(signal_name, request))
            return response_type()

        return export

    return [
        grpc.method_handlers_generic_handler(service, {
            "Export": grpc.unary_unary_rpc_method_handler(
                export_for(service, signal_name), response_serializer=lambda m: m.SerializeToString()),
        })
        for service, signal_name in GRPC_SERVICES.items()
    ]


class Server(ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a peer (Envoy, HAProxy)
    closes an idle kept-alive connection."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)


class TLSServer(Server):
    """Server with mutual TLS: the handshake runs in the connection's own thread (a slow or
    failing client never blocks the accept loop); a refused handshake is counted, not logged."""

    def __init__(self, addr, handler, context: ssl.SSLContext, store: Store):
        super().__init__(addr, handler)
        self.context = context
        self.store = store

    def finish_request(self, request, client_address):
        try:
            request.settimeout(10)
            tls = self.context.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError) as e:
            self.store.tls_refused.append(getattr(e, "reason", None) or type(e).__name__)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class TLSFiles:
    cert: str
    key: str
    client_ca: str

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def grpc_credentials(self) -> grpc.ServerCredentials:
        read = lambda p: open(p, "rb").read()  # noqa: E731
        return grpc.ssl_server_credentials([(read(self.key), read(self.cert))],
                                           root_certificates=read(self.client_ca), require_client_auth=True)


class Receiver:
    """The three servers, started on loopback (port 0 = pick a free one); with `tls` the two OTLP
    servers require a client certificate (the API stays plain: it is the tests' side door)."""

    def __init__(self, http_addr=("127.0.0.1", 0), grpc_addr=("127.0.0.1", 0), api_addr=("127.0.0.1", 0),
                 tls: TLSFiles | None = None):
        self.store = Store()
        if tls:
            self.http = TLSServer(http_addr, make_http_handler(self.store), tls.context(), self.store)
        else:
            self.http = Server(http_addr, make_http_handler(self.store))
        self.api = Server(api_addr, make_api_handler(self.store))
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=_grpc_handlers(self.store))
        target = f"{grpc_addr[0]}:{grpc_addr[1]}"
        self.grpc_port = (self.grpc.add_secure_port(target, tls.grpc_credentials()) if tls
                          else self.grpc.add_insecure_port(target))
        self._threads = []

    @property
    def ports(self) -> dict:
        return {"http": self.http.server_address[1], "grpc": self.grpc_port, "api": self.api.server_address[1]}

    def start(self) -> "Receiver":
        self.grpc.start()
        for server in (self.http, self.api):
            t = threading.Thread(target=server.serve_forever, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self.grpc.stop(grace=1)
        for server in (self.http, self.api):
            server.shutdown()
            server.server_close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--http", default="127.0.0.1:0", help="OTLP/HTTP listen address (default %(default)s)")
    ap.add_argument("--grpc", default="127.0.0.1:0", help="OTLP/gRPC listen address (default %(default)s)")
    ap.add_argument("--api", default="127.0.0.1:0", help="query API listen address (default %(default)s)")
    ap.add_argument("--tls-cert", help="server certificate (PEM): mutual TLS on both OTLP servers")
    ap.add_argument("--tls-key", help="its key (PEM)")
    ap.add_argument("--client-ca", help="CA that client certificates must chain to (PEM)")
    args = ap.parse_args(argv)
    given = [args.tls_cert, args.tls_key, args.client_ca]
    if any(given) and not all(given):
        ap.error("--tls-cert, --tls-key and --client-ca go together")
    tls = TLSFiles(args.tls_cert, args.tls_key, args.client_ca) if all(given) else None
    receiver = Receiver(_addr(args.http), _addr(args.grpc), _addr(args.api), tls=tls).start()
    print("RECEIVER " + json.dumps(receiver.ports), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    receiver.stop()
    sys.stdout.write(receiver.store.summary_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
