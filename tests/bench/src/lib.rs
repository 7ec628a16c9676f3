//! otlp-gate-bench (being written).
