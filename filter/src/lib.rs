//! otlp-gate: an OTLP bearer-token gate for Envoy, as a proxy-wasm filter.
//!
//! Everything that decides is plain Rust in the modules below and is tested natively; the
//! `adapter` module (wasm32 only) is the thin glue to the proxy-wasm ABI.

pub mod cidr;
pub mod config;
pub mod credentials;
pub mod gate;
pub mod headers;
pub mod metrics;
pub mod rate;
mod recent;
pub mod refusal;
pub mod reply;
pub mod route;
pub mod shared;
pub mod structpb;
pub mod throttle;
pub mod time;
pub mod worker;

#[cfg(test)]
mod cases;

#[cfg(target_arch = "wasm32")]
mod adapter;
