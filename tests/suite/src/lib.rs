//! otlp-gate-suite (being written).
