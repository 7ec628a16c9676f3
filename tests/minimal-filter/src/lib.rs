//! minimal-filter (being written).
