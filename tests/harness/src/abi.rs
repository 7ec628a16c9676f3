//! proxy-wasm ABI v0.2.1 constants and the header-map serialization, as the Rust SDK 0.2.x and
//! proxy-wasm-cpp-host (inside Envoy) use them.

/// `proxy_status_t`.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The key, property or queue does not exist.
    pub const NOT_FOUND: i32 = 1;
    /// Envoy refuses the arguments (e.g. an HTTP call without `:path`).
    pub const BAD_ARGUMENT: i32 = 2;
    /// The queue is empty.
    pub const EMPTY: i32 = 7;
    /// Shared data changed since it was read.
    pub const CAS_MISMATCH: i32 = 8;
}

/// `proxy_map_type_t`.
pub mod map {
    /// HTTP request headers.
    pub const REQUEST_HEADERS: i32 = 0;
    /// HTTP request trailers.
    pub const REQUEST_TRAILERS: i32 = 1;
    /// HTTP response headers.
    pub const RESPONSE_HEADERS: i32 = 2;
    /// HTTP response trailers.
    pub const RESPONSE_TRAILERS: i32 = 3;
    /// Headers of an HTTP call's response.
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    /// Trailers of an HTTP call's response.
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// `proxy_buffer_type_t`.
pub mod buffer {
    /// HTTP request body.
    pub const REQUEST_BODY: i32 = 0;
    /// HTTP response body.
    pub const RESPONSE_BODY: i32 = 1;
    /// Body of an HTTP call's response (the spec text says 1; the SDK and Envoy use 4).
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    /// The VM configuration (`proxy_on_vm_start`).
    pub const VM_CONFIGURATION: i32 = 6;
    /// The plugin configuration (`proxy_on_configure`).
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

/// `proxy_log_level_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info (also stdout).
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error (also stderr).
    Error = 4,
    /// Critical (the Rust SDK logs panics here).
    Critical = 5,
}

impl LogLevel {
    /// The level for an ABI value, `None` if out of range.
    pub fn from_i32(v: i32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// What a stream callback returned (`proxy_action_t`; Envoy also knows 2..=4, which the Rust
/// SDK never returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Continue: hand the data on.
    Continue,
    /// Pause (StopIteration): hold the stream until `proxy_continue_stream`.
    Pause,
}

/// `proxy_metric_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// A counter (incremented).
    Counter,
    /// A gauge (set).
    Gauge,
    /// A histogram (the harness keeps the last recorded value).
    Histogram,
}

/// Header maps: a `u32` count, then `(u32 key_len, u32 value_len)` pairs, then each key and
/// value followed by a NUL byte. All little-endian.
pub fn serialize_map(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0u8; serialized_len(pairs)];
    serialize_map_into(pairs, &mut out);
    out
}

/// The size of `serialize_map(pairs)`.
pub fn serialized_len(pairs: &[(String, Vec<u8>)]) -> usize {
    4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>()
}

/// Writes `serialize_map(pairs)` into `out`, which must be `serialized_len(pairs)` bytes
/// (as the guest allocated them); the NUL terminators are written too.
pub fn serialize_map_into(pairs: &[(String, Vec<u8>)], out: &mut [u8]) {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        at += bytes.len();
    };
    put(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        put(&(k.len() as u32).to_le_bytes());
        put(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        put(k.as_bytes());
        put(&[0]);
        put(v);
        put(&[0]);
    }
}

/// The inverse of `serialize_map`; `None` when the bytes are not a well-formed map.
pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut p = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut out = Vec::with_capacity(count.min(1024));
    for n in 0..count {
        let kl = u32_at(4 + n * 8)?;
        let vl = u32_at(8 + n * 8)?;
        let key = bytes.get(p..p + kl)?;
        p += kl + 1;
        let value = bytes.get(p..p + vl)?;
        p += vl + 1;
        out.push((String::from_utf8(key.to_vec()).ok()?, value.to_vec()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip() {
        let pairs = vec![
            (":path".to_owned(), b"/x".to_vec()),
            ("a".to_owned(), Vec::new()),
        ];
        let bytes = serialize_map(&pairs);
        // count, 2 length pairs, ":path\0/x\0a\0\0"
        assert_eq!(bytes.len(), 4 + 16 + 6 + 3 + 2 + 1);
        assert_eq!(&bytes[20..26], b":path\0");
        assert_eq!(deserialize_map(&bytes), Some(pairs));
        assert_eq!(deserialize_map(&[]), Some(vec![]));
        assert_eq!(deserialize_map(&[5, 0, 0, 0]), None);
    }
}
