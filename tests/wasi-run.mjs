#!/usr/bin/env node
// Runs a wasm32-wasip1 command (a Rust test binary) under Node's built-in WASI, so the filter's
// pure core can be unit-tested compiled to 32-bit wasm, the way it runs inside Envoy. Cargo
// runs the runner from the package directory, so give it an absolute path:
//
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node $PWD/tests/wasi-run.mjs" \
//     cargo test --target wasm32-wasip1 -p otlp-gate --lib
//
// Cargo calls `node …/wasi-run.mjs path/to/test.wasm [test args…]`; the arguments are passed
// through (`--exact NAME`, `--list`, `--ignored` work) and the exit code is the test result.
//
// - Imports from modules other than WASI (the proxy-wasm hostcalls in `env`) get stubs that
//   throw with the import's name: unit tests must not reach the host, and if one does it fails
//   loudly instead of passing by accident.
// - wasm32-wasip1 only has panic=abort, so a failing test traps and takes the rest of the run
//   with it. The runner then lists the tests and runs each in a fresh instance, so every
//   failure is reported by name. Output capture is off (RUST_TEST_NOCAPTURE=1) because an
//   aborting test never gets to print what libtest captured.
// Needs Node >= 20 (node:wasi, preview1).
import { readFile } from "node:fs/promises";
import process from "node:process";
import { WASI } from "node:wasi";

const WASI_MODULE = "wasi_snapshot_preview1";

// Node flags node:wasi as experimental on every run; that one warning is noise here.
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (!(w.name === "ExperimentalWarning" && /WASI/.test(w.message))) console.warn(w);
});

/** Import object: real WASI plus throwing stubs for everything else. */
function importsFor(module, wasiImport) {
  const imports = { [WASI_MODULE]: wasiImport };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === WASI_MODULE) {
      if (!(imp.name in wasiImport)) {
        throw new Error(`Node's WASI lacks ${imp.module}.${imp.name}`);
      }
      continue;
    }
    if (imp.kind !== "function") {
      throw new Error(`unsupported ${imp.kind} import ${imp.module}.${imp.name}`);
    }
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => {
      throw new Error(
        `${imp.module}.${imp.name} called: host functions are not available to unit tests ` +
          `(run this through the proxy-wasm harness instead)`,
      );
    };
  }
  return imports;
}

/** Runs the command once in a fresh instance. Returns {code, trapped}. */
async function runOnce(module, wasmPath, args) {
  const env = { ...process.env };
  env.RUST_TEST_NOCAPTURE ??= "1";
  const wasi = new WASI({
    version: "preview1",
    args: [wasmPath, ...args],
    env,
    // The working directory, for tests that read fixtures by relative path.
    preopens: { ".": process.cwd() },
    returnOnExit: true,
  });
  const instance = await WebAssembly.instantiate(module, importsFor(module, wasi.wasiImport));
  // A cdylib crate compiled as a test binary also exports the proxy-wasm SDK's `_initialize`
  // (a reactor entry point) next to libtest's `_start`; node:wasi refuses instances with both.
  // `_start` runs the constructors itself, so only it and `memory` are handed over.
  const command = {
    exports: { _start: instance.exports._start, memory: instance.exports.memory },
  };
  try {
    return { code: wasi.start(command), trapped: false };
  } catch (err) {
    const why = err && err.message ? err.message : String(err);
    console.error(`wasi-run: ${wasmPath} trapped: ${why}`);
    return { code: 101, trapped: true };
  }
}

/** Test names libtest would run with `args` (it applies filters, --skip and --ignored). */
async function listTests(wasmPath, args) {
  const { spawnSync } = await import("node:child_process");
  const out = spawnSync(
    process.execPath,
    ["--no-warnings", process.argv[1], wasmPath, ...args, "--list", "--format", "terse"],
    { encoding: "utf8", env: { ...process.env, WASI_RUN_NO_ISOLATE: "1" } },
  );
  if (out.status !== 0) return null;
  return out.stdout
    .split("\n")
    .filter((l) => l.endsWith(": test"))
    .map((l) => l.slice(0, -": test".length));
}

/** Flags worth keeping when re-running one test by name. */
function perTestFlags(args) {
  const keep = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (["--ignored", "--include-ignored", "--nocapture", "--show-output"].includes(a)) {
      keep.push(a);
    } else if (a === "--color") {
      keep.push(a, args[++i]);
    } else if (a.startsWith("--color=")) {
      keep.push(a);
    }
  }
  return keep;
}

async function main() {
  const [wasmPath, ...args] = process.argv.slice(2);
  if (!wasmPath) {
    console.error("usage: node tests/wasi-run.mjs FILE.wasm [ARGS...]");
    return 2;
  }
  const module = await WebAssembly.compile(await readFile(wasmPath));
  const first = await runOnce(module, wasmPath, args);
  const listing = args.includes("--list") || args.includes("--help") || args.includes("-h");
  if (!first.trapped || listing || process.env.WASI_RUN_NO_ISOLATE) return first.code;

  // A test aborted the run: run each test alone so every result is known.
  const names = await listTests(wasmPath, args);
  if (!names) return first.code;
  console.error(`wasi-run: re-running ${names.length} tests one instance each`);
  const failed = [];
  for (const name of names) {
    const r = await runOnce(module, wasmPath, [name, "--exact", "--quiet", ...perTestFlags(args)]);
    if (r.code !== 0) failed.push(name);
  }
  console.error(
    `wasi-run: ${names.length - failed.length} passed, ${failed.length} failed` +
      (failed.length ? `:\n  ${failed.join("\n  ")}` : ""),
  );
  return failed.length ? 101 : 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  console.error(`wasi-run: ${err && err.message ? err.message : err}`);
  process.exitCode = 2;
}
