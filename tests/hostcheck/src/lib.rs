//! hostcheck: a tiny proxy-wasm module (Rust SDK 0.2.x) for the harness's self-tests.
//!
//! Each request names one scenario in its `x-hostcheck` header; the module performs the
//! hostcalls of that scenario and reports what the host returned in request headers (or logs,
//! or a local reply), so `tests/harness/tests` can check the host without any real filter
//! logic in between. Build: `bash .ci/build-wasm.sh hostcheck`. See `check.rs` for the list.

#[cfg(target_arch = "wasm32")]
mod check;
