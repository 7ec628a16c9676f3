"""Token hot reload through ECDS: the token file is replaced the way the kubelet updates a
ConfigMap volume (new timestamped directory, `..data` symlink renamed), and Envoy applies it
without a restart. An invalid file is refused as a whole and the previous tokens stay in force; a
pod that starts with an invalid file never reports ready."""

from __future__ import annotations

import statistics
import threading
import time

import otel
import stack as st
from conftest import register_secret, report

SWAPS = 20
TIMEOUT = 30  # generous, so a slow machine cannot make the test flap


def post(s: st.Stack, token: str | None, signal: str = "traces", source: str | None = None) -> int | None:
    headers = [("content-type", "application/x-protobuf")]
    if token is not None:
        headers.append(("authorization", f"Bearer {token}"))
    r = st.request(f"{s.data_url}/observability/v1/{signal}", "POST", headers, b"", source=source, timeout=5)
    return r.status if r else None


def stat(s: st.Stack, name: str) -> int:
    return s.admin_stat(name) or 0


ECDS = "extension_config_discovery.http_filter.otlp-gate."


class SteadyLoad:
    """Exports with one unchanged token, through HAProxy, with the SDK, until stopped: one thread
    over OTLP/HTTP (new requests on a kept-alive connection), one over OTLP/gRPC (one long-lived
    h2 connection)."""

    def __init__(self, s: st.Stack, token: str):
        self.s, self.token = s, token
        self.ok = {"http-protobuf": 0, "grpc": 0}
        self.failed = {"http-protobuf": 0, "grpc": 0}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(p,), daemon=True) for p in self.ok]
        self.batch = otel.make_batch("steady-service", n_spans=1, n_logs=0, n_points=0)

    def _run(self, protocol: str) -> None:
        span_x, log_x, metric_x = otel.exporters(protocol, https_url=self.s.https_url, grpc_target=self.s.grpc_target,
                                                 ca=self.s.certs.ca, token=self.token, timeout=10)
        try:
            while not self.stop.is_set():
                if span_x.export(self.batch.spans) == otel.SpanExportResult.SUCCESS:
                    self.ok[protocol] += 1
                else:
                    self.failed[protocol] += 1
                time.sleep(0.01)
        finally:
            for x in (span_x, log_x, metric_x):
                x.shutdown()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_rotation_under_load(stack, tokens):
    """20 kubelet-style swaps, each adding a token and revoking the previous one, while a steady
    stream with an unchanged token runs through HAProxy: no failure for the steady token, every
    added token starts working and every revoked one stops."""
    base = tokens.settings()
    rot = []
    for i in range(SWAPS + 1):
        value, digest = st.new_token(f"rot-{i}")
        register_secret(value)
        rot.append((value, {"id": f"rot-{i}", "sha256": digest, "tenant": "rotation"}))

    def config(i: int) -> dict:
        return {**base, "tokens": base["tokens"] + [rot[i][1]]}

    stack.swap(config(0))
    st.wait_until(lambda: post(stack, rot[0][0]) == 200, TIMEOUT, "the first rotation token to work")
    seq_before = stack.last_seq()
    rejected_before = stat(stack, ECDS + "update_rejected")
    added, revoked = [], []
    with SteadyLoad(stack, tokens.value("steady")) as load:
        time.sleep(0.5)
        for i in range(1, SWAPS + 1):
            new, old = rot[i][0], rot[i - 1][0]
            swapped = stack.swap(config(i))
            t_add = t_revoke = None
            deadline = swapped + TIMEOUT
            while (t_add is None or t_revoke is None) and time.monotonic() < deadline:
                if t_add is None and post(stack, new) == 200:
                    t_add = time.monotonic() - swapped
                if t_revoke is None and post(stack, old) == 401:
                    t_revoke = time.monotonic() - swapped
                time.sleep(0.01)
            assert t_add is not None, f"swap {i}: the added token did not start working within {TIMEOUT} s"
            assert t_revoke is not None, f"swap {i}: the revoked token still worked after {TIMEOUT} s"
            added.append(t_add)
            revoked.append(t_revoke)
            # Once in force, the old token stays refused and the new one stays accepted.
            assert post(stack, old) == 401 and post(stack, new) == 200, f"swap {i}: flapped"
        time.sleep(0.5)
    stack.load(base)

    ms = lambda xs: ", ".join(f"{x * 1000:.0f}" for x in xs)  # noqa: E731
    report(f"reload delay over {SWAPS} kubelet-style swaps (rename -> first request that sees it):")
    report(f"  added token works after   median {statistics.median(added) * 1000:.0f} ms, "
           f"max {max(added) * 1000:.0f} ms  [{ms(added)}]")
    report(f"  revoked token refused after median {statistics.median(revoked) * 1000:.0f} ms, "
           f"max {max(revoked) * 1000:.0f} ms  [{ms(revoked)}]")
    report(f"  steady token during the swaps: {load.ok['http-protobuf']} OTLP/HTTP + {load.ok['grpc']} OTLP/gRPC "
           f"exports accepted, {sum(load.failed.values())} failed")

    assert load.failed == {"http-protobuf": 0, "grpc": 0}
    assert load.ok["http-protobuf"] >= SWAPS and load.ok["grpc"] >= SWAPS, "the steady load barely ran"
    arrived = [r for r in stack.received(seq_before) if r["tenant"] == "steady"]
    assert len(arrived) == sum(load.ok.values()), "every accepted steady export arrived exactly once"
    assert stat(stack, ECDS + "update_rejected") == rejected_before


def test_invalid_swap_keeps_the_previous_tokens(stack, tokens):
    good = tokens.value("team-a")
    def in_force():
        doc = stack.healthz().json()
        return doc["config_sha256"], doc["tokens"]

    before = in_force()
    rejected_before = stat(stack, ECDS + "update_rejected")
    failures_before = stat(stack, ECDS + "update_failure")
    log_offset = stack.envoy.err_path.stat().st_size

    # 1. Valid YAML, but the filter refuses it (bad digest, tenant Loki would reject).
    bad = tokens.settings()
    bad["tokens"] = bad["tokens"] + [{"id": "broken", "sha256": "not-a-digest", "tenant": "a|b"}]
    stack.swap(bad)
    st.wait_until(lambda: stat(stack, ECDS + "update_rejected") > rejected_before, TIMEOUT,
                  "Envoy to reject the invalid token file", diagnose=stack.envoy.tail)
    assert post(stack, good) == 200
    assert in_force() == before, "the previous configuration stays in force"
    # Counted by Envoy, and exported for alerting: the one signal of a refused file. (The
    # filter's own otlp_gate_config_loads_total{result="rejected"} is incremented inside the
    # refused plugin's VM, whose stats Envoy sometimes drops with it: no signal.)
    assert stat(stack, ECDS + "update_rejected") == rejected_before + 1
    prom = stack.prometheus()
    assert st.sample(prom, "envoy_extension_config_discovery_http_filter_otlp_gate_update_rejected") \
        == rejected_before + 1
    log = stack.envoy.err_path.read_text(errors="replace")[log_offset:]
    assert "otlp-gate: configuration refused" in log
    idx = len(bad["tokens"]) - 1
    assert f"tokens[{idx}].sha256" in log and f"tokens[{idx}].tenant" in log, "the log names the bad keys"
    assert "Filesystem config update rejected" in log

    # 2. Not even YAML: Envoy cannot parse it; nothing changes either.
    stack.swap_text("version_info: broken\nresources: [\n")
    st.wait_until(lambda: stat(stack, ECDS + "update_failure") > failures_before, TIMEOUT,
                  "Envoy to fail the unparseable token file", diagnose=stack.envoy.tail)
    assert post(stack, good) == 200
    assert in_force() == before

    # 3. A valid file again is applied (the same tokens as before, so the same config hash).
    successes = stat(stack, ECDS + "update_success")
    stack.swap(tokens.settings())
    st.wait_until(lambda: stat(stack, ECDS + "update_success") > successes, TIMEOUT, "the valid file to load")
    assert post(stack, good) == 200
    assert in_force() == before


def test_pod_starting_with_an_invalid_token_file_is_never_ready(workdir, module, tokens):
    """Liveness (/ready) is fine, readiness (/healthz, through the filter) is not, and no request
    is forwarded; a valid file then fixes it without a restart."""
    bad = tokens.settings()
    bad["tokens"] = bad["tokens"] + [{"id": "broken", "sha256": "0" * 63, "tenant": "team-a"}]
    s = st.Stack(workdir / "invalid-start", bad, haproxy=False, expect_ready=False).start()
    try:
        assert s._probe("/ready") == 200
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert s._probe("/healthz") not in (200, None), "ready without a valid token file"
            time.sleep(0.2)
        status = post(s, tokens.value("team-a"))
        assert status is not None and status >= 500, f"a request was answered {status} without a filter config"
        assert s.received() == [], "nothing may be forwarded without a valid token file"
        assert "otlp-gate: configuration refused" in s.envoy.err_path.read_text(errors="replace")

        s.swap(tokens.settings())
        st.wait_until(lambda: s._probe("/healthz") == 200, TIMEOUT, "readiness after a valid file")
        assert post(s, tokens.value("team-a")) == 200
    finally:
        s.close()
