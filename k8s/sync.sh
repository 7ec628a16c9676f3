#!/usr/bin/env bash
# Copies the files the bundle shares with the rest of the repository into it (kustomize reads
# nothing outside k8s/base): envoy/envoy.yaml and envoy/otlp-gate.yaml into k8s/base/gateway/,
# alloy/{config,kubernetes}.alloy into k8s/base/alloy/, and regenerates the global-ratelimit
# component's variant bootstrap (k8s/components/global-ratelimit/envoy-ratelimit.yaml) from
# envoy/envoy.yaml, and the object-storage and external-lgtm components' configs
# (k8s/variants.py). k8s/validate.sh fails while they differ.
#   bash k8s/sync.sh
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-.venv/bin/python}" k8s/bundle.py sync
"${PYTHON:-.venv/bin/python}" k8s/variants.py
exec "${PYTHON:-.venv/bin/python}" k8s/ratelimit_bootstrap.py
