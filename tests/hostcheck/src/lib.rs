//! hostcheck (being written).
