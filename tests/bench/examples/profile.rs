//! One request path, for profiling: prints the wasm instructions (fuel) and hostcalls one warm
//! request costs, then (with `--time N`) runs N requests through an unmetered module and prints
//! the time per request. Under `perf record`, set `HARNESS_PERFMAP=1` so perf can name the
//! JIT-compiled wasm functions (use the module before wasm-opt, which keeps the name section:
//! `target/wasm32-wasip1/release/deps/otlp_gate.wasm`).
//!
//! cargo run -q --profile bench -p otlp-gate-bench --example profile -- [MODULE] [PATH] [TOKENS] [--time N]
//! PATH is one of accept, accept_rate_limited, grpc_accept, missing, unknown, expired,
//! out_of_scope, throttled (default accept); a module whose file name contains `minimal` is
//! run as the minimal filter.

use anyhow::{Context, Result, bail};
use otlp_gate_bench::{Path, Request, Scenario, minimal_config, prepare, wasm_path};
use proxy_wasm_harness::Module;

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut time = None;
    if let Some(i) = args.iter().position(|a| a == "--time") {
        let n = args.get(i + 1).context("--time needs a request count")?;
        time = Some(n.parse::<u32>().context("--time needs a request count")?);
        args.drain(i..i + 2);
    }
    let file = args
        .first()
        .cloned()
        .unwrap_or_else(|| wasm_path("otlp_gate").display().to_string());
    let name = args.get(1).map_or("accept", String::as_str);
    let tokens: usize = match args.get(2) {
        Some(n) => n.parse().context("TOKENS must be a number")?,
        None => 1000,
    };
    let Some(path) = Path::ALL.into_iter().find(|p| p.name() == name) else {
        bail!("unknown path {name}");
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
    let minimal = file.contains("minimal");
    let scenario = |m: &Module| -> Result<(Scenario, Request)> {
        if minimal {
            Ok((
                Scenario::new(m, minimal_config().as_bytes())?,
                Request::new(path),
            ))
        } else {
            prepare(m, path, tokens)
        }
    };
    let (mut sc, req) = scenario(&Module::from_bytes(&bytes)?)?;
    println!(
        "{name}: {} wasm instructions, {} hostcalls per request",
        sc.fuel_per_request(&req)?,
        sc.hostcalls_per_request(&req)?
    );
    if let Some(n) = time {
        let (mut sc, req) = scenario(&Module::from_bytes_unmetered(&bytes)?)?;
        let start = std::time::Instant::now();
        for _ in 0..n {
            sc.run(&req)?;
        }
        println!(
            "{name}: {:.2} µs per request over {n}",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1))
        );
    }
    Ok(())
}
