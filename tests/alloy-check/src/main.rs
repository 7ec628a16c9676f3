//! `alloy-check FILE|DIR...`: checks Alloy configuration files as one configuration, prints
//! every problem as `file:line:col: message`, and exits 1 when there is any (2 on usage errors).

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: alloy-check FILE|DIR...\n  Checks the files (or the *.alloy files in each DIR) as one Alloy configuration."
        );
        return ExitCode::from(2);
    }
    let paths: Vec<&Path> = args.iter().map(Path::new).collect();
    let sources = match alloy_check::load(&paths) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("alloy-check: {e}");
            return ExitCode::from(2);
        }
    };
    let names = args.join(" ");
    match alloy_check::check(&sources) {
        Ok(summary) => {
            println!(
                "alloy-check: OK: {names}: {} component(s): {}",
                summary.components.len(),
                summary.components.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("alloy-check: FAIL: {names}: {} problem(s)", errors.len());
            ExitCode::from(1)
        }
    }
}
