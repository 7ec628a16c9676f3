# otlp-gate: `just --list` explains every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := false

export PATH := justfile_directory() / ".venv/bin" + ":" + env_var("PATH")
wasm := "target/wasm32-wasip1/release/otlp_gate.wasm"

# List the recipes
default:
    @just --list --unsorted

# Install what tests, demo and bench need on a fresh machine, or say what to do (README "Requirements")
setup:
    bash .ci/setup

# Build target/wasm32-wasip1/release/otlp_gate.wasm (release, LTO, panic=abort, wasm-opt -Oz)
build:
    bash .ci/build-wasm.sh otlp-gate

# Build the harness self-test module and the minimal filter used by `just bench`
build-test-modules:
    bash .ci/build-wasm.sh hostcheck minimal-filter

# Run the operator CLI: `just cli token new --id ID`, `just cli hash`, `just cli check FILE`
cli *args:
    @cargo run -q --release -p otlp-gate --bin otlp-gate -- {{args}}

# rustfmt --check and clippy -D warnings (native, and the wasm32-wasip1 build when rustup has the target)
lint:
    cargo fmt --all --check
    cargo clippy -q --workspace --all-targets -- -D warnings
    if rustup target list --installed | grep -qx wasm32-wasip1; then cargo clippy -q --release --target wasm32-wasip1 --lib -p otlp-gate -p hostcheck -p minimal-filter -- -D warnings; else echo "lint: wasm32-wasip1 clippy skipped (Debian toolchain fallback in use)"; fi

# Unit tests: the filter's pure core and CLI, the Alloy config checker; the core again as 32-bit wasm under wasmtime's WASI (tests/wasi-run)
unit:
    cargo test -q -p otlp-gate -p alloy-check
    if rustup target list --installed | grep -qx wasm32-wasip1; then cargo build -q -p wasi-run && CARGO_TARGET_WASM32_WASIP1_RUNNER="{{justfile_directory()}}/target/debug/wasi-run" cargo test -q --target wasm32-wasip1 -p otlp-gate --lib; else echo "unit: wasm32 unit tests skipped (Debian toolchain fallback in use)"; fi

# The compiled .wasm driven through the proxy-wasm ABI in the wasmtime harness
harness: build build-test-modules
    cargo test -q -p proxy-wasm-harness -p otlp-gate-suite

# End to end with real parts: OTel SDK -> HAProxy (TLS) -> Envoy + otlp_gate.wasm -> OTLP receiver
e2e: build
    python -m pytest -q -p no:cacheprovider tests/e2e

# Offline checks of the deployment: k8s/ overlays, the bundled module against a build of the sources, token files, Envoy (envoy --mode validate), Alloy, generated files
validate: build
    bash k8s/validate.sh

# The bundle's Loki/Tempo/Mimir configs on real binaries: LOKI_BIN=... TEMPO_BIN=... [MIMIR_BIN=...] just backends
# (skipped with one line when none is set)
backends:
    python -m pytest -q -rs -p no:cacheprovider tests/backends

# The object-storage and external-lgtm components against real Loki/Tempo (LOKI_BIN, TEMPO_BIN), moto_server and HAProxy; one SKIP line without the binaries
scale:
    @if [ -z "${LOKI_BIN:-}" ] && [ -z "${TEMPO_BIN:-}" ]; then echo "scale: SKIP real-backend tests of components/object-storage and components/external-lgtm: set LOKI_BIN and TEMPO_BIN to Loki 3.7.6 / Tempo 3.0.3 binaries"; else python -m pytest -q -p no:cacheprovider -rs tests/scale; fi

# Everything CI runs (ends with the demo, run through once); `backends` and `scale` run when LOKI_BIN/TEMPO_BIN (MIMIR_BIN) are set
test: build build-test-modules lint unit harness e2e validate backends scale
    python tests/e2e/demo.py --once

# Start receiver + Envoy + HAProxy, send telemetry with a good and a bad token (`--once` to exit)
demo *args: build
    python tests/e2e/demo.py {{args}}

# Microbenchmarks in the harness, then (or only, with `envoy`) the Envoy macrobenchmark
bench *args: build build-test-modules
    bash tests/bench/run.sh {{args}}

# Copy the built .wasm (and its toolchain file) into the k8s bundle (kustomize cannot read target/) and pin its sha256
k8s-wasm: build
    bash k8s/update-wasm.sh {{wasm}}
