#!/usr/bin/env bash
# `just bench [micro|envoy] [--smoke] [envoy_bench.py options]`
#   (no mode)  microbenchmarks in the wasmtime harness, then the Envoy macrobenchmark
#   micro      only the microbenchmarks (criterion, `cargo bench -p otlp-gate-bench`)
#   envoy      only the Envoy macrobenchmark (tests/bench/envoy_bench.py)
#   --smoke    a fast check that the machinery works (each microbenchmark once, 1 s per
#              Envoy variant, 3 reload swaps); writes to target/bench/smoke, publishes nothing
# A full run writes target/bench/latest/ and regenerates tests/bench/results.md + results.svg.
# Expects the modules built (`just bench` builds them first: `just build build-test-modules`).
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=all smoke=0 pass=()
for a in "$@"; do
    case "$a" in
        all|micro|envoy) mode=$a ;;
        --smoke) smoke=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) pass+=("$a") ;;
    esac
done

py=.venv/bin/python
[ -x "$py" ] || py=python3
for m in otlp_gate minimal_filter; do
    [ -f "target/wasm32-wasip1/release/$m.wasm" ] || {
        echo "bench: target/wasm32-wasip1/release/$m.wasm missing: run \`just build build-test-modules\`" >&2
        exit 1
    }
done

if [ "$smoke" = 1 ]; then out=target/bench/smoke; else out=target/bench/latest; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
export OTLP_GATE_BENCH_OUT="$out" CRITERION_HOME="$out/criterion"
cmd="just bench${*:+ $*}"
start=$(date +%s)

if [ "$mode" != envoy ]; then
    echo "bench: microbenchmarks (wasmtime harness)" >&2
    rm -f "$out/facts.json"
    if [ "$smoke" = 1 ]; then
        # Test mode: every benchmark once (reuses the test profile's wasmtime build).
        timeout 900 cargo test -q -p otlp-gate-bench --benches
    else
        rm -rf "$out/criterion"
        timeout 1800 cargo bench -q -p otlp-gate-bench --bench gate
    fi
    echo "bench: microbenchmarks done at $(( $(date +%s) - start )) s" >&2
fi

if [ "$mode" != micro ]; then
    echo "bench: Envoy macrobenchmark" >&2
    flags=()
    [ "$smoke" = 1 ] && flags+=(--smoke)
    timeout 1200 "$py" tests/bench/envoy_bench.py --out "$out/envoy.json" ${flags[@]+"${flags[@]}"} ${pass[@]+"${pass[@]}"}
    echo "bench: Envoy macrobenchmark done at $(( $(date +%s) - start )) s" >&2
fi

publish=()
[ "$smoke" = 1 ] || publish=(--publish)
"$py" tests/bench/report.py --dir "$out" --command "$cmd" "${publish[@]}"
echo "bench: done in $(( $(date +%s) - start )) s; results in $out${publish:+ and tests/bench/results.md}" >&2
