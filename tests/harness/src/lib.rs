//! proxy-wasm-harness (being written).
