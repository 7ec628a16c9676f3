"""Whose address the gate judges, attacked the way a client would: through real Envoy with the
shipped listener (use_remote_address, no X-Forwarded-For append, the PROXY protocol from the
ingress) and through HAProxy with the shipped envoy/haproxy.cfg.

A client picks its X-Forwarded-For freely. It must change neither a token's `source_cidrs`
verdict, nor whose address a failed-auth cooldown lands on, nor the address Envoy logs. Only a
peer listed in `trusted_proxies` is believed, and then only for the entry it appended itself.

Every client here binds its own loopback address (127.0.4.x, 127.0.5.x); HAProxy reaches Envoy
from `stack.HAPROXY_SOURCE`.
"""

from __future__ import annotations

import json
import time

import pytest

import stack as st
from conftest import register_secret

# Addresses of the actors (all on 127.0.0.0/8, which Linux routes to the loopback interface).
ALLOWED = "127.0.4.1"  # the one address the restricted token may be used from
ATTACKER = "127.0.4.2"
PROXY = "127.0.4.9"  # a proxy the operator trusts (say, a load balancer in front of the ingress)
VICTIM = "127.0.5.1"
SPOOFER = "127.0.5.2"
PROXIED = "127.0.5.7"  # a client behind PROXY


@pytest.fixture(scope="module")
def restricted(stack, tokens):
    """The session stack with a token usable only from ALLOWED, strict failed-auth throttling,
    and PROXY (and HAProxy's own address) trusted."""
    value, digest = st.new_token("restricted")
    register_secret(value)
    settings = tokens.settings(
        failed_auth={"max_failures": 3, "window": "60s", "cooldown": "300s"},
        trusted_proxies=[st.HAPROXY_SOURCE, PROXY],
    )
    settings["tokens"] = settings["tokens"] + [
        {"id": "restricted", "sha256": digest, "tenant": "team-a", "source_cidrs": [f"{ALLOWED}/32"]}]
    stack.load(settings)
    yield value
    stack.load(tokens.settings())


def direct(stack, source, token, xff=(), marker=""):
    """OTLP/HTTP straight to Envoy's data listener from `source` (no PROXY header)."""
    return st.request(f"{stack.data_url}/observability/v1/traces", "POST", _headers(token, xff, marker),
                      b"", source=source, timeout=10)


def via_haproxy(stack, source, token, xff=(), marker=""):
    """The same through HAProxy (TLS, envoy/haproxy.cfg), from `source`."""
    return st.request(f"https://127.0.0.1:{stack.https_port}/observability/v1/traces", "POST",
                      [("host", "localhost"), *_headers(token, xff, marker)], b"",
                      ca=stack.certs.ca, source=source, timeout=10)


def _headers(token, xff, marker):
    h = [("content-type", "application/x-protobuf"), ("user-agent", marker or "client-address-test")]
    if token is not None:
        h.append(("authorization", f"Bearer {token}"))
    return h + [("x-forwarded-for", v) for v in xff]


def access_log(stack, marker: str, n: int) -> list[dict]:
    def lines():
        found = [json.loads(line) for line in stack.envoy.out_path.read_text(errors="replace").splitlines()
                 if marker in line]
        return found if len(found) >= n else None
    return st.wait_until(lines, 10, f"{n} access log line(s) for {marker}")


def test_haproxy_forwardfor_appends_after_the_clients_own_entries(stack, tokens):
    """`option forwardfor` keeps whatever X-Forwarded-For the client sent and adds the address it
    accepted the connection from after it; Envoy appends nothing."""
    before = stack.last_seq()
    r = via_haproxy(stack, ATTACKER, tokens.value("team-a"), xff=["198.51.100.7, 10.0.0.1", "192.0.2.55"])
    assert r.status == 200
    got = [rec["headers"].get("x-forwarded-for") for rec in stack.received(before)]
    assert len(got) == 1
    hops = [h.strip() for v in got[0] for h in v.split(",")]
    assert hops == ["198.51.100.7", "10.0.0.1", "192.0.2.55", ATTACKER], hops


@pytest.mark.parametrize("send", [direct, via_haproxy], ids=["direct", "haproxy"])
def test_spoofed_forwarded_for_does_not_pass_source_cidrs(stack, restricted, send):
    spoofs = [[ALLOWED], [f"{ALLOWED}, {ALLOWED}"], [ALLOWED, ALLOWED], [f"{st.HAPROXY_SOURCE}, {ALLOWED}"],
              [f"{ALLOWED}:443"], [f"[::ffff:{ALLOWED}]"]]
    for xff in spoofs:
        r = send(stack, ATTACKER, restricted, xff)
        assert r.status == 403, f"{send.__name__} with a spoofed header (#{spoofs.index(xff)}): {r.status}"
        assert "insufficient_scope" in (r.header("www-authenticate") or "")
    assert send(stack, ALLOWED, restricted).status == 200, "the allowed address itself"
    assert send(stack, ALLOWED, restricted, ["203.0.113.9"]).status == 200, "whatever it claims"


def test_a_trusted_proxy_is_believed_for_the_entry_it_appended(stack, restricted):
    # PROXY appended ALLOWED after the client's own (spoofed) entries: ALLOWED is the client.
    assert direct(stack, PROXY, restricted, [f"203.0.113.5, {ALLOWED}"]).status == 200
    # PROXY appended ATTACKER; the ALLOWED left of it is the attacker's own claim.
    assert direct(stack, PROXY, restricted, [f"{ALLOWED}, {ATTACKER}"]).status == 403
    # Nothing appended: the proxy itself is the client.
    assert direct(stack, PROXY, restricted).status == 403
    # The same proxy in front of HAProxy: HAProxy appends PROXY and names it in the PROXY
    # protocol header; PROXY is trusted, so the entry before HAProxy's is PROXY's, and decides.
    assert via_haproxy(stack, PROXY, restricted, [ALLOWED]).status == 200
    assert via_haproxy(stack, PROXY, restricted, [f"{ALLOWED}, {ATTACKER}"]).status == 403


def test_spoofed_forwarded_for_cannot_aim_or_dodge_a_cooldown(stack, restricted, tokens):
    wrong = st.new_token("wrong")[0]
    marker = f"cooldown-{time.monotonic_ns()}"
    # The spoofer names the victim, and a new address on every request, through both paths.
    claims = [[VICTIM], ["198.51.100.1"], [VICTIM, f"{VICTIM}, {VICTIM}"], ["198.51.100.2"], [VICTIM]]
    statuses = []
    for i, claim in enumerate(claims):
        send = direct if i % 2 == 0 else via_haproxy
        statuses.append(send(stack, SPOOFER, wrong, claim, f"{marker}-{i}.").status)
    assert statuses == [401, 401, 401, 429, 429], "the spoofer's own address cools down"
    assert direct(stack, VICTIM, wrong).status == 401, "the named victim is not in a cooldown"
    assert via_haproxy(stack, VICTIM, wrong).status == 401
    assert direct(stack, SPOOFER, tokens.value("team-a")).status == 200, "valid tokens still pass"
    # The log names the spoofer, whatever it claimed; through HAProxy, HAProxy is the connection.
    lines = [access_log(stack, f"{marker}-{i}.", 1)[0] for i in range(5)]
    assert [x["peer"] for x in lines] == [SPOOFER] * 5
    assert [x["connection_peer"] for x in lines] == [SPOOFER, st.HAPROXY_SOURCE] * 2 + [SPOOFER]
    assert all(VICTIM in (x["forwarded_for"] or "") or "198.51.100." in x["forwarded_for"] for x in lines)


def test_a_cooldown_earned_through_a_trusted_proxy_lands_on_the_client_it_named(stack, restricted):
    wrong = st.new_token("wrong")[0]
    statuses = [direct(stack, PROXY, wrong, [f"{VICTIM}, {PROXIED}"]).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert direct(stack, PROXIED, wrong).status == 429, "the client the proxy named cools down"
    assert direct(stack, PROXY, wrong, ["127.0.5.8"]).status == 401, "not the proxy's other clients"
