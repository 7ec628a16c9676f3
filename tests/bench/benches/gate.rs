//! Microbenchmarks of the compiled `otlp_gate.wasm` in the wasmtime harness (criterion):
//! time per request on every path with 10, 1,000 and 100,000 tokens, the minimal filter as the
//! floor any proxy-wasm filter pays in this host, and the time to load a 100,000-token config.
//!
//! Before timing anything it writes `facts.json` (module sizes, hostcalls and wasm instructions
//! per request, a one-shot load time, the memory a big config takes, and the comparisons the
//! targets are about timed side by side in alternating batches) to `OTLP_GATE_BENCH_OUT`
//! (default `target/bench`), which `tests/bench/report.py` merges with criterion's estimates.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use criterion::{BenchmarkId, Criterion};
use otlp_gate_bench::{
    Path, Request, Scenario, counting_failed_auth, gate_config, load_module, load_module_unmetered,
    minimal_config, out_dir, prepare, wasm_path,
};
use proxy_wasm_harness::Module;
use serde_json::{Value, json};

/// The filter's pure core compiled natively, for comparison with the same code in wasm: the
/// gap is what the wasm build (size-optimised, interpreted through the ABI) costs.
mod native {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use otlp_gate::shared::{Conflict, SharedStore};

    /// Shared data, peer address and clock (ns) as the adapter would provide them.
    #[derive(Default)]
    pub struct Env(HashMap<String, (Vec<u8>, u32)>, pub i64);

    impl SharedStore for Env {
        fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.0.get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict> {
            let current = self.0.get(key).map(|(_, c)| *c);
            if cas.is_some() && cas != current {
                return Err(Conflict);
            }
            self.0
                .insert(key.into(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
    }

    impl otlp_gate::gate::Env for Env {
        fn peer(&mut self) -> Option<IpAddr> {
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
        }

        fn now_ns(&mut self) -> i64 {
            self.1
        }
    }
}

const SIZES: [usize; 3] = [10, 1_000, 100_000];
const BIG: usize = 100_000;

/// Stops the run with the reason (benchmarks must not report numbers for a broken path).
fn must<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Time per request of each scenario, measured in alternating batches so that a machine that
/// speeds up or slows down mid-run affects all of them alike (criterion times one benchmark
/// after another, and on a shared VM two consecutive benchmarks of identical work can differ
/// by more than the effects measured). Returns the median over rounds of each scenario's ns per request.
fn interleaved(
    scenarios: &mut [(Scenario, Request)],
    rounds: usize,
    batch: u32,
) -> Result<Vec<f64>> {
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); scenarios.len()];
    for (sc, req) in scenarios.iter_mut() {
        for _ in 0..batch {
            sc.run(req)?; // warm
        }
    }
    for round in 0..rounds {
        let n = scenarios.len();
        for k in 0..n {
            let i = (k + round) % n; // rotate who goes first
            let (sc, req) = &mut scenarios[i];
            let t = Instant::now();
            for _ in 0..batch {
                black_box(sc.run(black_box(req))?);
            }
            times[i].push(t.elapsed().as_nanos() as f64 / f64::from(batch));
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t.get(t.len() / 2).copied().unwrap_or(f64::NAN)
        })
        .collect())
}

/// Counts on the metered modules (`gate`, `minimal`); the one-shot load and the interleaved
/// comparisons on the unmetered `fast` and `fast_minimal`.
fn facts(gate: &Module, minimal: &Module, fast: &Module, fast_minimal: &Module) -> Result<Value> {
    let size = |name: &str| {
        std::fs::metadata(wasm_path(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let mut hostcalls = serde_json::Map::new();
    let mut fuel = serde_json::Map::new();
    for path in Path::ALL {
        let (mut sc, req) = prepare(gate, path, 1_000)?;
        hostcalls.insert(path.name().into(), json!(sc.hostcalls_per_request(&req)?));
        fuel.insert(path.name().into(), json!(sc.fuel_per_request(&req)?));
    }
    let mut min = Scenario::new(minimal, minimal_config().as_bytes())?;
    for (name, path) in [
        ("minimal_accept", Path::Accept),
        ("minimal_reject", Path::Unknown),
    ] {
        let req = Request::new(path);
        hostcalls.insert(name.into(), json!(min.hostcalls_per_request(&req)?));
        fuel.insert(name.into(), json!(min.fuel_per_request(&req)?));
    }

    // The comparisons the targets are about, interleaved: accept with 10 vs 100,000 tokens, and
    // otlp-gate's accepted stream (without and with a rate limit) vs the minimal filter's.
    let mut scenarios = vec![
        prepare(fast, Path::Accept, 10)?,
        prepare(fast, Path::Accept, BIG)?,
        prepare(fast, Path::Accept, 1_000)?,
        (
            Scenario::new(fast_minimal, minimal_config().as_bytes())?,
            Request::new(Path::Accept),
        ),
        prepare(fast, Path::AcceptRated, 1_000)?,
    ];
    let t = interleaved(&mut scenarios, 31, 2_000)?;
    drop(scenarios);
    let side_by_side = json!({
        "rounds": 31, "batch": 2_000,
        "accept_10_ns": t[0], "accept_100000_ns": t[1], "accept_1000_ns": t[2], "minimal_accept_ns": t[3],
        "accept_rated_1000_ns": t[4],
    });

    // One-shot load of the big config (best of 3), next to criterion's estimate.
    let big = gate_config(BIG, counting_failed_auth());
    let mut best = Duration::MAX;
    let mut memory = 0;
    for _ in 0..3 {
        let mut sc = Scenario::new(fast, gate_config(4, Value::Null).as_bytes())?;
        let t = Instant::now();
        if !sc.vm.configure(big.as_bytes())? {
            bail!("the 100,000-token configuration was refused");
        }
        best = best.min(t.elapsed());
        memory = sc.vm.memory_size();
    }
    Ok(json!({
        "module_bytes": {"otlp_gate": size("otlp_gate"), "minimal_filter": size("minimal_filter")},
        "hostcalls_per_request_1000_tokens": hostcalls,
        "fuel_per_request_1000_tokens": fuel,
        "load_100k": {"config_bytes": big.len(), "best_of_3_s": best.as_secs_f64(), "linear_memory_bytes": memory},
        "interleaved": side_by_side,
    }))
}

fn main() {
    // Counting (hostcalls, fuel) on metered modules; timing on unmetered ones.
    let gate = must(load_module_unmetered("otlp_gate"));
    let minimal = must(load_module_unmetered("minimal_filter"));
    let facts = must(facts(
        &must(load_module("otlp_gate")),
        &must(load_module("minimal_filter")),
        &gate,
        &minimal,
    ));
    let dir = out_dir();
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("facts.json"), facts.to_string()));
    if let Err(e) = written {
        eprintln!(
            "bench: cannot write {}: {e}",
            dir.join("facts.json").display()
        );
        std::process::exit(1);
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();

    {
        let mut g = c.benchmark_group("request");
        for path in Path::ALL {
            for n in SIZES {
                let (mut sc, req) = must(prepare(&gate, path, n));
                g.bench_with_input(BenchmarkId::new(path.name(), n), &req, |b, req| {
                    b.iter(|| black_box(must(sc.run(black_box(req)))));
                });
            }
        }
        let mut min = must(Scenario::new(&minimal, minimal_config().as_bytes()));
        for (name, path, want) in [
            ("minimal_accept", Path::Accept, None),
            ("minimal_reject", Path::Unknown, Some(401)),
        ] {
            let req = Request::new(path);
            if must(min.run(&req)).status != want {
                eprintln!("bench: minimal filter did not answer {name} as expected");
                std::process::exit(1);
            }
            g.bench_with_input(BenchmarkId::new(name, 1), &req, |b, req| {
                b.iter(|| black_box(must(min.run(black_box(req)))));
            });
        }
        g.finish();
    }

    {
        let mut g = c.benchmark_group("load");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(4));
        for n in [1_000, BIG] {
            let cfg = gate_config(n, counting_failed_auth());
            let mut sc = must(Scenario::new(&gate, gate_config(4, Value::Null).as_bytes()));
            g.bench_with_input(BenchmarkId::new("configure", n), &cfg, |b, cfg| {
                b.iter(|| {
                    if !must(sc.vm.configure(black_box(cfg.as_bytes()))) {
                        eprintln!("bench: configuration with {n} tokens refused");
                        std::process::exit(1);
                    }
                });
            });
        }
        g.finish();
    }

    {
        // The same decisions and config parsing natively (no wasm, no ABI).
        let mut g = c.benchmark_group("native");
        let cfg_text = gate_config(1_000, counting_failed_auth());
        let cfg = match otlp_gate::config::parse(cfg_text.as_bytes()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench: native config parse failed: {e:?}");
                std::process::exit(1);
            }
        };
        for path in [Path::Accept, Path::Missing, Path::Unknown] {
            let headers = path.headers();
            let mut env = native::Env::default();
            let mut worker = otlp_gate::worker::Worker::new(&cfg);
            let mut now: i64 = 1_700_000_000_000_000_000;
            g.bench_function(
                BenchmarkId::new(format!("decide_{}", path.name()), 1_000),
                |b| {
                    b.iter(|| {
                        now += 1_000_000;
                        env.1 = now;
                        let h = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice()));
                        black_box(otlp_gate::gate::decide(
                            &cfg,
                            &mut worker,
                            h,
                            now,
                            1,
                            &mut env,
                        ))
                    });
                },
            );
        }
        let big = gate_config(BIG, counting_failed_auth());
        g.sample_size(10).measurement_time(Duration::from_secs(4));
        g.bench_function(BenchmarkId::new("parse_config", BIG), |b| {
            b.iter(|| black_box(otlp_gate::config::parse(black_box(big.as_bytes())).is_ok()));
        });
        g.finish();
    }

    c.final_summary();
}
