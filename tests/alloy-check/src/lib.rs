//! alloy-check (being written).
