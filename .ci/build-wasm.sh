#!/usr/bin/env bash
# Build proxy-wasm cdylibs for wasm32-wasip1 (release), then shrink them with wasm-opt.
# Usage: .ci/build-wasm.sh PACKAGE [PACKAGE...]   (default: otlp-gate)
# Toolchain order: an installed rustup target; `rustup target add` under a timeout;
# Debian's rustc-web toolchain with -Z build-std (works offline from the Debian mirror).
# Next to each module it writes NAME.wasm.toolchain: what the bytes depend on besides the sources
# and Cargo.lock (the compiler, wasm-opt, and the cargo home, whose registry paths are compiled
# into panic locations). `just k8s-wasm` bundles it with the module; k8s/validate.sh rebuilds
# and requires identical bytes whenever this machine's toolchain file equals the bundled one.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(otlp-gate)
args=()
for p in "${pkgs[@]}"; do args+=(-p "$p"); done

have_target() { rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; }

if ! have_target; then
    echo "build-wasm: adding rustup target wasm32-wasip1 (bounded to 180 s)" >&2
    timeout 180 rustup target add wasm32-wasip1 >&2 || true
fi

if have_target; then
    rustc_used=rustc
    cargo build --release --target wasm32-wasip1 --lib "${args[@]}"
else
    echo "build-wasm: rustup target unavailable; using Debian's rustc-web toolchain" >&2
    if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/wasm32-wasi ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq rustc-web rust-web-src rust-web-llvm lld-22 wasi-libc >&2
    fi
    rustc_used=/usr/bin/rustc
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
        cargo build --release --target wasm32-wasip1 --lib -Z build-std=std,panic_abort "${args[@]}"
fi

out=target/wasm32-wasip1/release
for p in "${pkgs[@]}"; do
    f="$out/${p//-/_}.wasm"
    [ -f "$f" ] || { echo "build-wasm: $f was not produced" >&2; exit 1; }
    if command -v wasm-opt >/dev/null 2>&1; then
        # Rust's default wasm features must be enabled explicitly for binaryen 108.
        wasm-opt -Oz --converge --strip-debug --strip-producers \
            --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
            --enable-mutable-globals --enable-reference-types --enable-multivalue \
            -o "$f.opt" "$f"
        mv "$f.opt" "$f"
    else
        echo "build-wasm: wasm-opt not found, $f left as rustc produced it" >&2
    fi
    {
        echo "$("$rustc_used" -V)$([ "$rustc_used" = rustc ] || echo ' with -Z build-std')"
        if command -v wasm-opt >/dev/null 2>&1; then wasm-opt --version; else echo "no wasm-opt"; fi
        echo "cargo home ${CARGO_HOME:-$HOME/.cargo}"
    } >"$f.toolchain"
    printf 'build-wasm: %s %s bytes\n' "$f" "$(stat -c %s "$f")" >&2
done
