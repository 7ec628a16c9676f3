#!/usr/bin/env bash
# Bundles a built filter module: copies it into the kustomization (kustomize cannot read
# target/) with the toolchain file .ci/build-wasm.sh wrote next to it, and rewrites the sha256
# that every token file pins (envoy/otlp-gate.yaml and each overlay's otlp-gate.yaml). Review the
# diff and commit it: upgrading or rolling back the module is an explicit change.
#   just k8s-wasm        (= bash k8s/update-wasm.sh target/wasm32-wasip1/release/otlp_gate.wasm)
set -euo pipefail
cd "$(dirname "$0")/.."
wasm=${1:-target/wasm32-wasip1/release/otlp_gate.wasm}
python=${PYTHON:-.venv/bin/python}
if [ ! -f "$wasm" ]; then
    echo "update-wasm: $wasm not found; build it first (just build)" >&2
    exit 1
fi
if [ ! -f "$wasm.toolchain" ]; then
    echo "update-wasm: $wasm.toolchain not found; build the module with .ci/build-wasm.sh (just build)" >&2
    exit 1
fi
if [ "$(head -c 4 "$wasm" | od -An -tx1 | tr -d ' \n')" != "0061736d" ]; then
    echo "update-wasm: $wasm is not a WebAssembly module" >&2
    exit 1
fi
size=$(stat -c %s "$wasm")
# One ConfigMap holds at most 1 MiB; keep headroom for the key and metadata.
if [ "$size" -ge $((1024 * 1024 - 4096)) ]; then
    echo "update-wasm: $wasm is $size bytes; a ConfigMap holds at most 1 MiB (1048576 bytes)" >&2
    exit 1
fi
dest=k8s/base/gateway/otlp_gate.wasm
old=$( [ -f "$dest" ] && sha256sum "$dest" | cut -d' ' -f1 || echo none)
new=$(sha256sum "$wasm" | cut -d' ' -f1)
cp "$wasm" "$dest"
cp "$wasm.toolchain" "$dest.toolchain"
# Rewrite the pins in every token file (envoy/ and the overlays), then check them.
"$python" k8s/bundle.py pin "$dest" --write >/dev/null
"$python" k8s/bundle.py pin "$dest"
echo "update-wasm: $dest: $size bytes, sha256 $new (was $old), built with $(head -n 1 "$dest.toolchain")"
echo "update-wasm: next: bash k8s/validate.sh, review \`git diff k8s envoy\`, commit, then"
echo "             kubectl apply --server-side -k k8s/overlays/<overlay>   (new module = rolling restart)"
