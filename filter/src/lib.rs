//! otlp-gate (being written).
