"""Raw HTTP/2 for the e2e suite (the `h2` library): a client that sends exactly the headers, body
and request trailers it is given (grpcio and urllib cannot send request trailers or any
content-type), and a gRPC upstream that records each request's headers and trailers (grpcio's
server does not show a client's trailers). Both are bounded by timeouts and bind loopback only.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class H2Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return values[0] if values else None

    def trailer(self, name: str) -> str | None:
        values = [v for k, v in self.trailers if k == name.lower()]
        return values[0] if values else None


def _config(client_side: bool) -> h2.config.H2Configuration:
    # Hostile requests on purpose: odd content-types, credential trailers; never validated here.
    return h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8",
                                     validate_outbound_headers=False, validate_inbound_headers=False,
                                     normalize_outbound_headers=False)


def request(port: int, headers: list[tuple[str, str]], body: bytes = b"",
            trailers: list[tuple[str, str]] | None = None, timeout: float = 10,
            host: str = "127.0.0.1") -> H2Response:
    """One request over cleartext HTTP/2 with prior knowledge (h2c), as HAProxy speaks to
    Envoy's data port. `headers` include the pseudo-headers."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(config=_config(True))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, headers, end_stream=not body and not trailers)
        if body:
            conn.send_data(sid, body, end_stream=not trailers)
        if trailers:
            conn.send_headers(sid, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, got_headers, got_trailers, data = 0, [], [], b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection before the response ended")
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    got_headers = [(k, v) for k, v in ev.headers if not k.startswith(":")]
                    status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                    got_trailers = list(ev.headers)
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise ConnectionError(f"stream reset by the server (error {ev.error_code})")
                if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    return H2Response(status, got_headers, data, got_trailers)
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


@dataclass
class Recorded:
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)


class RecordingGrpcUpstream:
    """A gRPC server over TLS (ALPN h2, a client certificate required, like Alloy's receiver
    behind the gateway) that answers every call OK with an empty message and records what each
    stream carried. Bind first (`port`), start serving with the certificates later."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.calls: list[Recorded] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self, cert: str, key: str, client_ca: str) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["h2"])
        self.context = ctx
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(30)
            sock = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        conn = h2.connection.H2Connection(config=_config(False))
        conn.initiate_connection()
        streams: dict[int, Recorded] = {}
        try:
            sock.sendall(conn.data_to_send())
            while not self._stop.is_set():
                chunk = sock.recv(65536)
                if not chunk:
                    return
                for ev in conn.receive_data(chunk):
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = Recorded(list(ev.headers))
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id].body += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        streams[ev.stream_id].trailers = list(ev.headers)
                    if isinstance(ev, h2.events.StreamEnded):
                        with self._lock:
                            self.calls.append(streams.pop(ev.stream_id))
                        conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                        conn.send_data(ev.stream_id, b"\0\0\0\0\0")
                        conn.send_headers(ev.stream_id, [("grpc-status", "0")], end_stream=True)
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, KeyError):
            return
        finally:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
