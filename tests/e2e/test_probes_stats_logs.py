"""Envoy's probe listener, the gate's metrics in /stats/prometheus (labels and exact values), the
access log, and the bootstrap's limits — all on the real Envoy of the session stack."""

from __future__ import annotations

import json
import re
import time

import otel
import stack as st


def test_probe_listener_serves_only_probes(stack, tokens):
    ready = st.request(f"{stack.probe_url}/ready")
    assert ready.status == 200 and ready.body.strip() == b"LIVE"
    health = stack.healthz()
    assert health.status == 200
    doc = health.json()
    assert doc["status"] == "ok"
    assert doc["tokens"] == len(tokens.settings()["tokens"])
    assert doc["generation"] >= 1 and re.fullmatch(r"[0-9a-f]{64}", doc["config_sha256"])
    assert st.request(f"{stack.probe_url}/stats/prometheus").status == 200
    # Nothing else of the admin interface is reachable, and only GET works.
    for method, path in [("GET", "/config_dump"), ("GET", "/stats"), ("POST", "/quitquitquit"),
                         ("POST", "/ready"), ("POST", "/healthz"), ("GET", "/clusters"),
                         ("GET", "/observability/healthz"), ("POST", "/logging?level=debug")]:
        r = st.request(f"{stack.probe_url}{path}", method, body=b"" if method == "POST" else None)
        assert r.status == 404, f"{method} {path} -> {r.status}"


def test_prometheus_shows_gate_counters_with_labels_and_exact_values(stack, tokens):
    def snapshot():
        return stack.prometheus()

    before = st.settled(snapshot)
    team_a, team_b = tokens.value("team-a"), tokens.value("team-b-traces")
    batch = otel.make_batch("stats-check", n_spans=1, n_logs=1, n_points=1)
    kw = dict(https_url=stack.https_url, grpc_target=stack.grpc_target, ca=stack.certs.ca)
    assert otel.send(batch, "http-protobuf", token=team_a, **kw) == {"traces": True, "logs": True, "metrics": True}
    assert otel.send(batch, "grpc", token=team_b, **kw) == {"traces": True, "logs": False, "metrics": False}
    assert otel.send(batch, "http-json", token=None, **kw) == {"traces": False, "logs": False, "metrics": False}
    wrong = st.new_token("wrong")[0]
    base = f"{stack.data_url}/observability/v1"
    pb = ("content-type", "application/x-protobuf")
    assert st.request(f"{base}/traces", "POST", [("authorization", f"Bearer {wrong}"), pb], b"").status == 401
    assert st.request(f"{base}/profiles", "POST", [("authorization", f"Bearer {team_a}")], b"").status == 404
    assert st.request(f"{base}/traces", "GET", [("authorization", f"Bearer {team_a}")]).status == 405
    expected = {
        ("traces", "accepted"): 2, ("logs", "accepted"): 1, ("metrics", "accepted"): 1,
        ("logs", "forbidden_signal"): 1, ("metrics", "forbidden_signal"): 1,
        ("traces", "missing"): 1, ("logs", "missing"): 1, ("metrics", "missing"): 1,
        ("traces", "unknown"): 1, ("none", "not_found"): 1, ("traces", "method_not_allowed"): 1,
    }

    def moved(after):
        out = {}
        for (name, labels), value in after.items():
            if name == "otlp_gate_requests_total":
                d = value - before.get((name, labels), 0)
                if d:
                    out[(dict(labels)["signal"], dict(labels)["outcome"])] = d
        return out
    expected_per_token = {"team-a": 3, "team-b-traces": 1}

    def per_token(after):
        return {t: st.sample(after, "otlp_gate_token_requests_total", token_id=t)
                - st.sample(before, "otlp_gate_token_requests_total", token_id=t) for t in expected_per_token}

    # Counter sums reach Envoy on the tick of the worker that counted them, not all on the same
    # tick: wait for every counter asserted below; then a few more ticks, so that a request
    # counted twice would show.
    try:
        st.wait_until(lambda: (lambda a: moved(a) == expected and per_token(a) == expected_per_token)(snapshot()),
                      10, "the counters to settle")
    except TimeoutError:
        pass  # the assertions below show the difference
    time.sleep(3 * st.FILTER_TICK_S)
    after = snapshot()

    assert moved(after) == expected
    assert per_token(after) == expected_per_token

    def delta(name, **labels):
        return st.sample(after, name, **labels) - st.sample(before, name, **labels)

    # Per token: the recognised token's refusals by outcome, body bytes, last accepted second.
    assert delta("otlp_gate_token_refused_total", token_id="team-b-traces", outcome="forbidden_signal") == 2
    assert delta("otlp_gate_token_bytes_total", token_id="team-a") > 0
    assert abs(st.sample(after, "otlp_gate_token_last_seen_timestamp_seconds", token_id="team-a") - time.time()) < 60
    hash48 = st.sample(after, "otlp_gate_config_hash")
    assert hash48 == int(stack.healthz().json()["config_sha256"][:12], 16)
    assert st.sample(after, "otlp_gate_token_info", token_id="team-a", tenant="team-a") == hash48
    assert ("otlp_gate_token_refused_total", (("outcome", "disabled"), ("token_id", "disabled"))) in after, \
        "a disabled token's refusal counter exists from the load"
    # Gauges.
    assert st.sample(after, "otlp_gate_tokens_loaded") == len(tokens.settings()["tokens"])
    assert st.sample(after, "otlp_gate_config_generation") >= 1
    assert st.sample(after, "otlp_gate_token_expiry_timestamp_seconds", token_id="expired") == 1577836800
    assert st.sample(after, "otlp_gate_token_expiry_timestamp_seconds", token_id="team-a") == 0
    assert ("otlp_gate_config_loads_total", (("result", "ok"),)) in after
    # Every gate series carries labels (none is left with its label encoded in the name).
    leftovers = [n for n, _ in after if n.startswith("otlp_gate_") and re.search(r"_(signal|outcome|token_id|result)_", n)]
    assert leftovers == []


def access_log_lines(stack, marker: str) -> list[dict]:
    lines = []
    for line in stack.envoy.out_path.read_text(errors="replace").splitlines():
        if marker in line:
            lines.append(json.loads(line))
    return lines


def test_access_log_has_token_id_never_credentials(stack, tokens):
    marker = f"access-log-check-{time.monotonic_ns()}"
    team_a = tokens.value("team-a")
    ok = st.request(f"{stack.data_url}/observability/v1/traces?access_token=query-secret", "POST",
                    [("authorization", f"Bearer {team_a}"), ("content-type", "application/x-protobuf"),
                     ("user-agent", marker)], b"")
    assert ok.status == 200
    # A rejected request that claims an identity and a tenant it does not have.
    spoofed = st.request(f"{stack.data_url}/observability/v1/traces", "POST",
                         [("authorization", "Bearer not-a-valid-token-0123456789"), ("user-agent", marker),
                          ("content-type", "application/x-protobuf"),
                          ("x-otlp-token-id", "team-a"), ("x-scope-orgid", "team-a")], b"")
    assert spoofed.status == 401
    # A recognised token refused (disabled, i.e. revoked): the log says why and names the token.
    revoked = tokens.value("disabled")
    refused = st.request(f"{stack.data_url}/observability/v1/traces", "POST",
                         [("authorization", f"Bearer {revoked}"), ("user-agent", marker),
                          ("content-type", "application/x-protobuf")], b"")
    assert refused.status == 401
    lines = st.wait_until(lambda: len(access_log_lines(stack, marker)) == 3 and access_log_lines(stack, marker),
                          10, "three access log lines")
    accepted, rejected, revoked_line = lines
    assert (accepted["status"], accepted["token_id"], accepted["tenant"]) == (200, "team-a", "team-a")
    assert accepted["path"] == "/v1/traces", "no query string in the log"
    assert accepted["details"] == "via_upstream"
    assert (rejected["status"], rejected["token_id"], rejected["tenant"]) == (401, None, None)
    assert rejected["details"] == "otlp_gate.unknown"
    assert (revoked_line["status"], revoked_line["token_id"], revoked_line["tenant"]) == (401, "disabled", None)
    assert revoked_line["details"] == "otlp_gate.disabled"
    raw = "\n".join(json.dumps(x) for x in lines).lower()
    leaks = sum(w in raw for w in ("authorization", "bearer", "query-secret", "not-a-valid-token", team_a.lower(),
                                   revoked.lower()))
    assert leaks == 0, "credentials or the query string reached the access log"


def test_limits(stack, tokens):
    team_a = tokens.value("team-a")
    auth = [("authorization", f"Bearer {team_a}"), ("content-type", "application/x-protobuf")]
    url = f"{stack.data_url}/observability/v1/traces"
    before = stack.last_seq()
    # Max request size (8 MiB), for an accepted token: 413, nothing forwarded.
    big = st.request(url, "POST", auth, b"\0" * (8 * 1024 * 1024 + 1), timeout=30)
    assert big.status == 413
    # Headers with underscores (which some servers read as dashes) are refused outright.
    under = st.request(url, "POST", auth + [("x_scope_orgid", "team-b")], b"")
    assert under.status == 400
    assert stack.received(before) == []
    # Escaped slashes are refused; dot-segments are normalised before the filter sees the path.
    assert st.request(f"{stack.data_url}/observability%2Fv1/traces", "POST", auth, b"").status == 400
    dotted = st.request(f"{stack.data_url}/observability/x/../v1/traces", "POST", auth, b"")
    assert dotted.status == 200
    assert [r["path"] for r in stack.received(before)] == ["/v1/traces"]


def test_healthz_through_the_ingress_says_only_ok(stack, tokens):
    """The configuration's hash, generation and token count are for the probe listener only:
    through HAProxy (and straight to the data listener, whatever a client claims) healthz is
    200 {"status":"ok"} while a configuration is loaded."""
    detailed = stack.healthz().json()
    assert set(detailed) == {"status", "generation", "config_sha256", "tokens"}
    for r in [
        st.request(f"{stack.https_url}/observability/healthz", ca=stack.certs.ca),
        st.request(f"{stack.https_url}/observability/healthz?detail=1", ca=stack.certs.ca),
        st.request(f"{stack.data_url}/observability/healthz", headers=[("x-forwarded-for", "127.0.0.1")]),
        st.request(f"{stack.data_url}/observability/healthz", "HEAD"),
    ]:
        assert r.status == 200
        assert r.body in (b'{"status":"ok"}', b""), r.body
        assert detailed["config_sha256"].encode() not in r.body
