//! Runs a wasm32-wasip1 command (a Rust test binary) under wasmtime's WASI preview 1, so the
//! filter's pure core can be unit-tested compiled to 32-bit wasm, the way it runs inside Envoy.
//! Cargo runs the runner from the package directory, so give it an absolute path (`just unit`
//! builds it first):
//!
//! ```sh
//! CARGO_TARGET_WASM32_WASIP1_RUNNER=$PWD/target/debug/wasi-run \
//!   cargo test --target wasm32-wasip1 -p otlp-gate --lib
//! ```
//!
//! Cargo calls `wasi-run path/to/test.wasm [test args…]`; the arguments are passed through
//! (`--exact NAME`, `--list`, `--ignored` work), the environment is the caller's, the working
//! directory is preopened as `.`, and the exit status is the test result.
//!
//! - Imports from modules other than WASI (the proxy-wasm hostcalls in `env`) get stubs that
//!   trap with the import's name: unit tests must not reach the host, and if one does it fails
//!   loudly instead of passing by accident.
//! - wasm32-wasip1 only has panic=abort, so a failing test traps and takes the rest of the run
//!   with it. The runner then lists the tests and runs each in a fresh instance, so every
//!   failure is reported by name. Output capture is off (`RUST_TEST_NOCAPTURE=1`) because an
//!   aborting test never gets to print what libtest captured.

use std::path::Path;
use std::process::{Command, ExitCode};

use wasmtime::error::Context;
use wasmtime::{Engine, Linker, Module, Result, Store, bail};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// Set in the environment of the listing run: report a trap instead of isolating tests.
const NO_ISOLATE: &str = "WASI_RUN_NO_ISOLATE";
/// libtest's exit status for failed tests.
const TESTS_FAILED: u8 = 101;

/// How one run of the command ended.
enum Ended {
    Exit(i32),
    Trap(String),
}

struct Runner {
    engine: Engine,
    module: Module,
    linker: Linker<WasiP1Ctx>,
    wasm_path: String,
}

impl Runner {
    fn new(wasm_path: &str) -> Result<Self> {
        let engine = Engine::default();
        let module = Module::from_file(&engine, wasm_path)
            .with_context(|| format!("loading {wasm_path}"))?;
        let mut linker = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |cx| cx)?;
        for import in module.imports() {
            if import.module() == WASI_MODULE {
                continue;
            }
            let what = format!("{}.{}", import.module(), import.name());
            let Some(ty) = import.ty().func().cloned() else {
                bail!("unsupported non-function import {what}");
            };
            linker.func_new(import.module(), import.name(), ty, move |_, _, _| {
                bail!(
                    "{what} called: host functions are not available to unit tests \
                     (run this through the proxy-wasm harness instead)"
                )
            })?;
        }
        Ok(Runner {
            engine,
            module,
            linker,
            wasm_path: wasm_path.to_owned(),
        })
    }

    /// Runs the command once, in a fresh instance, with `args` after the program name.
    fn run(&self, args: &[String]) -> Result<Ended> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdio()
            .inherit_env()
            .arg(&self.wasm_path)
            .args(args);
        if std::env::var_os("RUST_TEST_NOCAPTURE").is_none() {
            wasi.env("RUST_TEST_NOCAPTURE", "1");
        }
        // The working directory, for tests that read fixtures by relative path.
        wasi.preopened_dir(".", ".", FsPerms::ReadWrite)?;
        let mut store = Store::new(&self.engine, wasi.build_p1());
        let instance = self.linker.instantiate(&mut store, &self.module)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        Ok(match start.call(&mut store, ()) {
            Ok(()) => Ended::Exit(0),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ended::Exit(exit.0),
                None => Ended::Trap(format!("{e:#}")),
            },
        })
    }
}

/// The test names libtest would run with `args` (it applies filters, `--skip`, `--ignored`):
/// this runner again, on the same module, with `--list` and its output captured.
fn list_tests(wasm_path: &str, args: &[String]) -> Option<Vec<String>> {
    let out = Command::new(std::env::current_exe().ok()?)
        .arg(wasm_path)
        .args(args)
        .args(["--list", "--format", "terse"])
        .env(NO_ISOLATE, "1")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_owned)
            .collect(),
    )
}

/// Flags worth keeping when re-running one test by name.
fn per_test_flags(args: &[String]) -> Vec<String> {
    let mut keep = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ignored" | "--include-ignored" | "--nocapture" | "--show-output" => {
                keep.push(a.clone())
            }
            "--color" => {
                keep.push(a.clone());
                keep.extend(it.next().cloned());
            }
            _ if a.starts_with("--color=") => keep.push(a.clone()),
            _ => {}
        }
    }
    keep
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(TESTS_FAILED))
}

fn main_() -> Result<ExitCode> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((wasm_path, args)) = argv.split_first() else {
        eprintln!("usage: wasi-run FILE.wasm [ARGS...]");
        return Ok(ExitCode::from(2));
    };
    if !Path::new(wasm_path).exists() {
        bail!("{wasm_path} not found");
    }
    let runner = Runner::new(wasm_path)?;
    let why = match runner.run(args)? {
        Ended::Exit(code) => return Ok(exit_code(code)),
        Ended::Trap(why) => why,
    };
    eprintln!("wasi-run: {wasm_path} trapped: {why}");
    let listing = args
        .iter()
        .any(|a| matches!(a.as_str(), "--list" | "--help" | "-h"));
    if listing || std::env::var_os(NO_ISOLATE).is_some() {
        return Ok(ExitCode::from(TESTS_FAILED));
    }

    // A test aborted the run: run each test alone so every result is known.
    let Some(names) = list_tests(wasm_path, args) else {
        return Ok(ExitCode::from(TESTS_FAILED));
    };
    eprintln!(
        "wasi-run: re-running {} tests one instance each",
        names.len()
    );
    let flags = per_test_flags(args);
    let mut failed = Vec::new();
    for name in &names {
        let mut one = vec![name.clone(), "--exact".to_owned(), "--quiet".to_owned()];
        one.extend(flags.iter().cloned());
        match runner.run(&one)? {
            Ended::Exit(0) => {}
            Ended::Exit(_) => failed.push(name.as_str()),
            Ended::Trap(why) => {
                eprintln!("wasi-run: {name} trapped: {why}");
                failed.push(name.as_str());
            }
        }
    }
    eprintln!(
        "wasi-run: {} passed, {} failed",
        names.len() - failed.len(),
        failed.len()
    );
    for name in &failed {
        eprintln!("  {name}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(TESTS_FAILED)
    })
}

fn main() -> ExitCode {
    match main_() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasi-run: {e:#}");
            ExitCode::from(2)
        }
    }
}
