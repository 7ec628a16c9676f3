//! alloy-check: an offline checker for Grafana Alloy configuration files.
//!
//! There is no Alloy binary on the machines this project builds on (`alloy validate` needs the
//! Go binary, and the Go parser module needs a newer Go than Debian ships), so this crate
//! re-implements the parts of `alloy validate` that catch real mistakes: the syntax
//! ([`scanner`], [`parser`]), and ([`check`]) known components with unique labels, known
//! arguments and blocks with the documented types, required ones present, references that
//! resolve to a declared component's export of the right type, no reference cycles, and the
//! tenant-metadata rules the `otelcol.auth.headers` docs state. The component table
//! ([`schema`]) is copied from the Alloy reference docs, one cited page per component.
//!
//! Like `alloy run DIR`, several files are checked as one configuration.

pub mod check;
pub mod diag;
pub mod parser;
pub mod scanner;
pub mod schema;

use std::path::Path;

pub use check::{Summary, check};
pub use diag::{Diagnostic, Source};

/// Loads files, or the `*.alloy` files directly inside a directory (as `alloy run DIR` does).
pub fn load(paths: &[&Path]) -> Result<Vec<Source>, String> {
    let mut sources = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "alloy") && p.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!("{}: no *.alloy files", path.display()));
            }
            for f in files {
                sources.push(read(&f)?);
            }
        } else {
            sources.push(read(path)?);
        }
    }
    Ok(sources)
}

fn read(path: &Path) -> Result<Source, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{}: not valid UTF-8", path.display()))?;
    Ok(Source::new(path.display().to_string(), text))
}
