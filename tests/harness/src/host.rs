//! The host side of the proxy-wasm ABI: state and the `env.proxy_*` hostcalls. Semantics follow
//! proxy-wasm-cpp-host as used by Envoy; anything this host does not implement traps with the
//! hostcall's name, so a test never passes by accident.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::{Caller, Extern, Linker, Memory, StoreLimits};
use wasmtime::{Result, bail, format_err as anyhow};

use crate::abi::{
    LogLevel, MetricType, buffer, deserialize_map, map, serialize_map, serialize_map_into,
    serialized_len, status,
};

/// Header or trailer pairs, in order, one entry per value.
pub type Pairs = Vec<(String, Vec<u8>)>;

/// A recorded log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Level the module logged at (stdout is Info, stderr Error).
    pub level: LogLevel,
    /// The message (a trailing newline from stdio is trimmed).
    pub message: String,
}

/// A local reply sent with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status code.
    pub status: u32,
    /// Envoy's response-code details (empty from the Rust SDK).
    pub details: String,
    /// The body (for gRPC replies: the status message).
    pub body: Vec<u8>,
    /// Reply headers (gRPC: metadata), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Set for gRPC replies (`grpc_status >= 0`); Envoy then sends `grpc-message` = body.
    pub grpc_status: Option<u32>,
}

impl LocalReply {
    /// First value of a reply header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The gRPC status message (Envoy sends the local-reply body as `grpc-message`).
    pub fn grpc_message(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An outgoing `proxy_http_call` waiting for the test to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    /// The token the module got back, used to answer the call.
    pub token: u32,
    /// The context that made the call. Envoy delivers the response to the root context and
    /// the SDK routes it on to this one.
    pub context_id: u32,
    /// The cluster the call goes to.
    pub upstream: String,
    /// Request headers of the call (`:method`, `:path`, `:authority`, ...).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Request body of the call.
    pub body: Vec<u8>,
    /// Request trailers of the call.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Timeout the module asked for.
    pub timeout_ms: u32,
}

/// Per-HTTP-stream state.
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    /// Request headers as they stand (the upstream's view).
    pub request_headers: Vec<(String, Vec<u8>)>,
    /// Request trailers as they stand.
    pub request_trailers: Vec<(String, Vec<u8>)>,
    /// Response headers as they stand (the client's view).
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// Response trailers as they stand.
    pub response_trailers: Vec<(String, Vec<u8>)>,
    /// The request body buffer the module sees.
    pub request_body: Vec<u8>,
    /// The response body buffer the module sees.
    pub response_body: Vec<u8>,
    /// The last body callback returned Pause: Envoy buffers and appends the next chunk.
    pub request_body_buffering: bool,
    /// Same as `request_body_buffering`, for the response.
    pub response_body_buffering: bool,
    /// The local reply, if the module sent one.
    pub local_reply: Option<LocalReply>,
    /// `proxy_continue_stream` calls, by stream type (0 request, 1 response).
    pub continued: Vec<i32>,
    /// `proxy_close_stream` calls, by stream type.
    pub closed: Vec<i32>,
    /// Properties set on this stream by the test or the module.
    pub properties: HashMap<String, Vec<u8>>,
}

/// One interference scheduled by a test: after the next `after_gets` reads of `key`, the host
/// behaves as if another worker had written it (its CAS changes), so the guest's next
/// compare-and-swap write fails.
#[derive(Clone, Debug)]
pub(crate) struct Interference {
    pub key: String,
    pub writes: u32,
}

/// State shared by every VM of one `World`, as Envoy shares it per `vm_id` between workers.
#[derive(Debug, Default)]
pub struct Shared {
    pub now_ns: u64,
    pub data: HashMap<String, (Vec<u8>, u32)>,
    pub queues: Vec<(String, String, std::collections::VecDeque<Vec<u8>>)>,
    pub metric_ids: HashMap<String, u32>,
    pub metrics: Vec<(String, MetricType, i64)>,
    pub random_state: u64,
    pub(crate) interference: Vec<Interference>,
    pub cas_conflicts: u64,
}

impl Shared {
    pub(crate) fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic, seeded by the test.
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Everything a VM's store holds.
pub struct HostState {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) limits: StoreLimits,
    pub vm_id: String,
    pub plugin_name: String,
    pub log_level: LogLevel,
    pub logs: Vec<LogLine>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub root_id: u32,
    pub effective_context: u32,
    pub contexts: Vec<u32>,
    pub streams: HashMap<u32, StreamState, ContextIds>,
    pub tick_period_ms: u32,
    pub http_calls: Vec<HttpCall>,
    pub next_call_token: u32,
    /// The HTTP call response being delivered to `proxy_on_http_call_response`.
    pub call_response: Option<(Pairs, Vec<u8>, Pairs)>,
    pub vm_properties: HashMap<String, Vec<u8>>,
    pub hostcalls: u64,
    /// Inside `_initialize`/`main`: Envoy allows only logging and WASI there.
    pub(crate) starting: bool,
    pub(crate) memory: Option<Memory>,
    /// The guest allocator, looked up once (a lookup per copy costs more than the copy).
    pub(crate) allocator: Option<std::sync::Arc<wasmtime::TypedFunc<i32, i32>>>,
}

impl HostState {
    pub(crate) fn new(
        shared: Arc<Mutex<Shared>>,
        limits: StoreLimits,
        vm_id: &str,
        plugin_name: &str,
    ) -> HostState {
        HostState {
            shared,
            limits,
            vm_id: vm_id.to_owned(),
            plugin_name: plugin_name.to_owned(),
            log_level: LogLevel::Trace,
            logs: Vec::new(),
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            root_id: 0,
            effective_context: 0,
            contexts: Vec::new(),
            streams: HashMap::default(),
            tick_period_ms: 0,
            http_calls: Vec::new(),
            next_call_token: 1,
            call_response: None,
            vm_properties: HashMap::new(),
            hostcalls: 0,
            starting: false,
            memory: None,
            allocator: None,
        }
    }

    pub(crate) fn shared(&self) -> MutexGuard<'_, Shared> {
        // A poisoned lock means another test thread panicked mid-update; the data is still usable.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last CRITICAL line the module logged (the Rust SDK logs panics at CRITICAL).
    pub fn last_critical(&self) -> Option<&str> {
        self.logs
            .iter()
            .rev()
            .find(|l| l.level == LogLevel::Critical)
            .map(|l| l.message.as_str())
    }

    fn stream(&mut self) -> Result<&mut StreamState> {
        let id = self.effective_context;
        self.streams
            .get_mut(&id)
            .ok_or_else(|| anyhow!("context {id} is not an HTTP stream"))
    }

    fn header_map(&mut self, kind: i32) -> Result<&mut Vec<(String, Vec<u8>)>> {
        if kind == map::HTTP_CALL_RESPONSE_HEADERS || kind == map::HTTP_CALL_RESPONSE_TRAILERS {
            let (h, _, t) = self.call_response.as_mut().ok_or_else(|| {
                anyhow!("http call response map read outside proxy_on_http_call_response")
            })?;
            return Ok(if kind == map::HTTP_CALL_RESPONSE_HEADERS {
                h
            } else {
                t
            });
        }
        let s = self.stream()?;
        Ok(match kind {
            map::REQUEST_HEADERS => &mut s.request_headers,
            map::REQUEST_TRAILERS => &mut s.request_trailers,
            map::RESPONSE_HEADERS => &mut s.response_headers,
            map::RESPONSE_TRAILERS => &mut s.response_trailers,
            other => bail!("header map type {other} is not implemented by this host"),
        })
    }
}

type C<'a> = Caller<'a, HostState>;

/// Hashing for maps keyed by context id: ids are small sequential integers the host hands
/// out itself, so SipHash's flood resistance buys nothing and costs a visible slice of every
/// hostcall that looks its stream up.
pub type ContextIds = std::hash::BuildHasherDefault<IdHasher>;

/// See [`ContextIds`]: a multiplicative hash of the one integer written.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn memory(c: &mut C<'_>) -> Result<Memory> {
    if let Some(m) = c.data().memory {
        return Ok(m);
    }
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => {
            c.data_mut().memory = Some(m);
            Ok(m)
        }
        _ => bail!("module exports no memory"),
    }
}

pub(crate) fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let m = memory(c)?;
    let mut buf = vec![0u8; len as u32 as usize];
    m.read(&*c, ptr as u32 as usize, &mut buf)
        .map_err(|_| anyhow!("guest passed an out-of-bounds buffer ({ptr:#x}, {len})"))?;
    Ok(buf)
}

/// A header name from the guest, lower-cased as Envoy's `LowerCaseString` does: one copy.
fn read_lower(c: &mut C<'_>, ptr: i32, len: i32) -> Result<String> {
    let ([name], _) = in_guest(c, [(ptr, len)])?;
    Ok(header_name(name)?.to_ascii_lowercase())
}

/// The guest's bytes at `(ptr, len)` for each span, borrowed in place next to the host state:
/// header edits compare and copy straight from guest memory instead of allocating copies.
fn in_guest<'a, const N: usize>(
    c: &'a mut C<'_>,
    spans: [(i32, i32); N],
) -> Result<([&'a [u8]; N], &'a mut HostState)> {
    let m = memory(c)?;
    let (mem, state) = m.data_and_store_mut(&mut *c);
    let mem: &'a [u8] = mem;
    let mut out: [&'a [u8]; N] = [&[]; N];
    for (slot, (ptr, len)) in out.iter_mut().zip(spans) {
        let start = ptr as u32 as usize;
        *slot = start
            .checked_add(len as u32 as usize)
            .and_then(|end| mem.get(start..end))
            .ok_or_else(|| anyhow!("guest passed an out-of-bounds buffer ({ptr:#x}, {len})"))?;
    }
    Ok((out, state))
}

/// A header name from the guest, in place: it must be UTF-8.
fn header_name(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| anyhow!("guest passed a non-UTF-8 string"))
}

fn read_str(c: &mut C<'_>, ptr: i32, len: i32) -> Result<String> {
    String::from_utf8(read(c, ptr, len)?).map_err(|_| anyhow!("guest passed a non-UTF-8 string"))
}

pub(crate) fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let m = memory(c)?;
    m.write(&mut *c, ptr as u32 as usize, bytes)
        .map_err(|_| anyhow!("guest passed an out-of-bounds return pointer {ptr:#x}"))
}

pub(crate) fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<()> {
    write(c, ptr, &v.to_le_bytes())
}

fn write_u64(c: &mut C<'_>, ptr: i32, v: u64) -> Result<()> {
    write(c, ptr, &v.to_le_bytes())
}

/// Copies bytes into guest memory allocated by the guest (as cpp-host's copyToPointerSize):
/// empty data is returned as (0, 0) without allocating.
fn copy_out(c: &mut C<'_>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<()> {
    copy_out_with(c, data.len(), ptr_ptr, size_ptr, |dst, _| {
        dst.copy_from_slice(data);
        Ok(())
    })
}

/// [`copy_out`] for data the host writes straight into the guest's buffer: `fill` gets the
/// `size` bytes the guest allocated and the host state.
fn copy_out_with(
    c: &mut C<'_>,
    size: usize,
    ptr_ptr: i32,
    size_ptr: i32,
    fill: impl FnOnce(&mut [u8], &mut HostState) -> Result<()>,
) -> Result<()> {
    let mut p = 0u32;
    if size > 0 {
        let alloc = match c.data().allocator.clone() {
            Some(f) => f,
            None => {
                let f = match c
                    .get_export("proxy_on_memory_allocate")
                    .or_else(|| c.get_export("malloc"))
                {
                    Some(Extern::Func(f)) => std::sync::Arc::new(f.typed::<i32, i32>(&*c)?),
                    _ => bail!("module exports neither proxy_on_memory_allocate nor malloc"),
                };
                c.data_mut().allocator = Some(f.clone());
                f
            }
        };
        p = alloc.call(&mut *c, size as i32)? as u32;
        if p == 0 {
            bail!("guest allocator returned null for {size} bytes");
        }
        let m = memory(c)?;
        let (mem, state) = m.data_and_store_mut(&mut *c);
        let dst = (p as usize)
            .checked_add(size)
            .and_then(|end| mem.get_mut(p as usize..end))
            .ok_or_else(|| anyhow!("guest allocator returned an out-of-bounds buffer {p:#x}"))?;
        fill(dst, state)?;
    }
    write_u32(c, ptr_ptr, p)?;
    write_u32(c, size_ptr, size as u32)
}

fn count(c: &mut C<'_>, name: &str) -> Result<()> {
    let d = c.data_mut();
    d.hostcalls += 1;
    if d.starting && name != "proxy_log" {
        bail!("{name} called during _initialize/main: Envoy only allows logging and WASI there");
    }
    Ok(())
}

/// Property paths arrive as segments joined by NUL; they are stored joined by `.`.
fn property_key(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s))
        .collect::<Vec<_>>()
        .join(".")
}

fn unimplemented(linker: &mut Linker<HostState>, name: &'static str, params: usize) -> Result<()> {
    let ty = wasmtime::FuncType::new(
        linker.engine(),
        std::iter::repeat_n(wasmtime::ValType::I32, params),
        [wasmtime::ValType::I32],
    );
    linker.func_new("env", name, ty, move |_, _, _| {
        Err(anyhow!(
            "hostcall {name} is not implemented by this harness"
        ))
    })?;
    Ok(())
}

/// Registers every `env.proxy_*` hostcall.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            count(&mut c, "proxy_log")?;
            let level =
                LogLevel::from_i32(level).ok_or_else(|| anyhow!("proxy_log: bad level {level}"))?;
            let message = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
            c.data_mut().logs.push(LogLine { level, message });
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_get_log_level")?;
            let level = c.data().log_level as u32;
            write_u32(&mut c, ret, level)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_get_current_time_nanoseconds")?;
            let now = c.data().shared().now_ns;
            write_u64(&mut c, ret, now)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: i32| -> Result<i32> {
            count(&mut c, "proxy_set_tick_period_milliseconds")?;
            c.data_mut().tick_period_ms = ms as u32;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| -> Result<i32> {
            count(&mut c, "proxy_set_effective_context")?;
            let id = id as u32;
            if !c.data().contexts.contains(&id) {
                bail!("proxy_set_effective_context: unknown context id {id}");
            }
            c.data_mut().effective_context = id;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: C<'_>| -> Result<i32> {
        count(&mut c, "proxy_done")?;
        Ok(status::OK)
    })?;

    // Buffers.
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>,
         kind: i32,
         start: i32,
         max: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            count(&mut c, "proxy_get_buffer_bytes")?;
            let d = c.data_mut();
            let whole: Vec<u8> = match kind {
                buffer::VM_CONFIGURATION => d.vm_config.clone(),
                buffer::PLUGIN_CONFIGURATION => d.plugin_config.clone(),
                buffer::REQUEST_BODY => d.stream()?.request_body.clone(),
                buffer::RESPONSE_BODY => d.stream()?.response_body.clone(),
                buffer::HTTP_CALL_RESPONSE_BODY => match &d.call_response {
                    Some((_, body, _)) => body.clone(),
                    None => return Ok(status::NOT_FOUND),
                },
                other => bail!(
                    "proxy_get_buffer_bytes: buffer type {other} is not implemented by this harness"
                ),
            };
            let start = (start as u32 as usize).min(whole.len());
            let end = start.saturating_add(max as u32 as usize).min(whole.len());
            copy_out(&mut c, &whole[start..end], ptr_ptr, size_ptr)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            count(&mut c, "proxy_set_buffer_bytes")?;
            let data = read(&mut c, ptr, len)?;
            let s = c.data_mut().stream()?;
            let buf = match kind {
                buffer::REQUEST_BODY => &mut s.request_body,
                buffer::RESPONSE_BODY => &mut s.response_body,
                other => bail!(
                    "proxy_set_buffer_bytes: buffer type {other} is not implemented by this harness"
                ),
            };
            // Envoy (Buffer::copyFrom in its wasm context): start 0 drains `size` bytes and
            // prepends the data; start >= length appends; anything else is BAD_ARGUMENT, on
            // which the Rust SDK panics, so it is a test failure here.
            let start = start as u32 as usize;
            if start == 0 {
                let end = (size as u32 as usize).min(buf.len());
                buf.splice(0..end, data);
            } else if start >= buf.len() {
                buf.extend_from_slice(&data);
            } else {
                bail!(
                    "proxy_set_buffer_bytes(start={start}) inside a {}-byte body: Envoy only \
                     replaces from 0 or appends, and answers BAD_ARGUMENT",
                    buf.len()
                );
            }
            Ok(status::OK)
        },
    )?;

    // Header maps.
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, kind: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_pairs")?;
            // Serialized straight into the guest's buffer (no intermediate copy).
            let size = serialized_len(c.data_mut().header_map(kind)?);
            copy_out_with(&mut c, size, ptr_ptr, size_ptr, |dst, st| {
                serialize_map_into(st.header_map(kind)?, dst);
                Ok(())
            })?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, kind: i32, ptr: i32, len: i32| -> Result<i32> {
            count(&mut c, "proxy_set_header_map_pairs")?;
            let raw = read(&mut c, ptr, len)?;
            let pairs = deserialize_map(&raw)
                .ok_or_else(|| anyhow!("proxy_set_header_map_pairs: malformed map"))?;
            *c.data_mut().header_map(kind)? = pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_value")?;
            let ([key], st) = in_guest(&mut c, [(kp, kl)])?;
            let key = header_name(key)?;
            // Envoy returns the first value of a repeated header.
            let value = st
                .header_map(kind)?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone());
            match value {
                Some(v) => {
                    copy_out(&mut c, &v, ptr_ptr, size_ptr)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            count(&mut c, "proxy_add_header_map_value")?;
            let key = read_lower(&mut c, kp, kl)?;
            let value = read(&mut c, vp, vl)?;
            c.data_mut().header_map(kind)?.push((key, value));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
            count(&mut c, "proxy_replace_header_map_value")?;
            let ([key, value], st) = in_guest(&mut c, [(kp, kl), (vp, vl)])?;
            let key = header_name(key)?;
            let m = st.header_map(kind)?;
            // Envoy's setCopy: the first entry keeps its place, the other values are removed.
            match m.iter().position(|(k, _)| k.eq_ignore_ascii_case(key)) {
                Some(i) => {
                    if let Some((_, v)) = m.get_mut(i) {
                        v.clear();
                        v.extend_from_slice(value);
                    }
                    let mut j = 0;
                    m.retain(|(k, _)| {
                        j += 1;
                        j - 1 == i || !k.eq_ignore_ascii_case(key)
                    });
                }
                None => m.push((key.to_ascii_lowercase(), value.to_vec())),
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, kind: i32, kp: i32, kl: i32| -> Result<i32> {
            count(&mut c, "proxy_remove_header_map_value")?;
            let ([key], st) = in_guest(&mut c, [(kp, kl)])?;
            let key = header_name(key)?;
            st.header_map(kind)?
                .retain(|(k, _)| !k.eq_ignore_ascii_case(key));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, kind: i32, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_size")?;
            let n = serialize_map(c.data_mut().header_map(kind)?).len() as u32;
            write_u32(&mut c, ret, n)?;
            Ok(status::OK)
        },
    )?;

    // Stream control and local replies.
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, kind: i32| -> Result<i32> {
            count(&mut c, "proxy_continue_stream")?;
            c.data_mut().stream()?.continued.push(kind);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: C<'_>, kind: i32| -> Result<i32> {
            count(&mut c, "proxy_close_stream")?;
            c.data_mut().stream()?.closed.push(kind);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> Result<i32> {
            count(&mut c, "proxy_send_local_response")?;
            let details = String::from_utf8_lossy(&read(&mut c, dp, dl)?).into_owned();
            let body = read(&mut c, bp, bl)?;
            let raw = read(&mut c, hp, hl)?;
            let headers = deserialize_map(&raw)
                .ok_or_else(|| anyhow!("proxy_send_local_response: malformed headers"))?;
            let s = c.data_mut().stream()?;
            if s.local_reply.is_some() {
                bail!("proxy_send_local_response called twice on one stream");
            }
            s.local_reply = Some(LocalReply {
                status: code as u32,
                details,
                body,
                headers,
                grpc_status: (grpc >= 0).then_some(grpc as u32),
            });
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count(&mut c, "proxy_get_status")?;
            write_u32(&mut c, code_ptr, 0)?;
            copy_out(&mut c, &[], ptr_ptr, size_ptr)?;
            Ok(status::OK)
        },
    )?;

    // Properties.
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count(&mut c, "proxy_get_property")?;
            let key = property_key(&read(&mut c, pp, pl)?);
            let d = c.data_mut();
            let from_stream = d.streams.get(&d.effective_context).and_then(|s| {
                s.properties.get(&key).cloned().or_else(|| {
                    let pseudo = match key.as_str() {
                        "request.path" => ":path",
                        "request.method" => ":method",
                        "request.host" => ":authority",
                        _ => return None,
                    };
                    s.request_headers
                        .iter()
                        .find(|(k, _)| k == pseudo)
                        .map(|(_, v)| v.clone())
                })
            });
            let value = from_stream
                .or_else(|| d.vm_properties.get(&key).cloned())
                .or_else(|| match key.as_str() {
                    "plugin_name" => Some(d.plugin_name.clone().into_bytes()),
                    "plugin_vm_id" => Some(d.vm_id.clone().into_bytes()),
                    "plugin_root_id" => Some(d.plugin_name.clone().into_bytes()),
                    _ => None,
                });
            match value {
                Some(v) => {
                    copy_out(&mut c, &v, ptr_ptr, size_ptr)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32> {
            count(&mut c, "proxy_set_property")?;
            let key = property_key(&read(&mut c, pp, pl)?);
            let value = read(&mut c, vp, vl)?;
            let d = c.data_mut();
            let id = d.effective_context;
            match d.streams.get_mut(&id) {
                Some(s) => s.properties.insert(key, value),
                None => d.vm_properties.insert(key, value),
            };
            Ok(status::OK)
        },
    )?;

    // Metrics: shared by all VMs of a World, like Envoy's stats store.
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_define_metric")?;
            let name = read_str(&mut c, np, nl)?;
            let kind = match kind {
                0 => MetricType::Counter,
                1 => MetricType::Gauge,
                2 => MetricType::Histogram,
                other => bail!("proxy_define_metric: bad metric type {other}"),
            };
            let id = {
                let mut s = c.data().shared();
                match s.metric_ids.get(&name) {
                    Some(&id) => id,
                    None => {
                        let id = s.metrics.len() as u32 + 1;
                        s.metrics.push((name.clone(), kind, 0));
                        s.metric_ids.insert(name, id);
                        id
                    }
                }
            };
            write_u32(&mut c, ret, id)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, delta: i64| -> Result<i32> {
            count(&mut c, "proxy_increment_metric")?;
            let mut s = c.data().shared();
            let m = s
                .metrics
                .get_mut((id as u32 as usize).wrapping_sub(1))
                .ok_or_else(|| anyhow!("proxy_increment_metric: unknown metric id {id}"))?;
            m.2 = m.2.saturating_add(delta);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> Result<i32> {
            count(&mut c, "proxy_record_metric")?;
            let mut s = c.data().shared();
            let m = s
                .metrics
                .get_mut((id as u32 as usize).wrapping_sub(1))
                .ok_or_else(|| anyhow!("proxy_record_metric: unknown metric id {id}"))?;
            m.2 = value;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_get_metric")?;
            let v = {
                let s = c.data().shared();
                s.metrics
                    .get((id as u32 as usize).wrapping_sub(1))
                    .map(|m| m.2)
                    .ok_or_else(|| anyhow!("proxy_get_metric: unknown metric id {id}"))?
            };
            write_u64(&mut c, ret, v as u64)?;
            Ok(status::OK)
        },
    )?;

    // Shared data with compare-and-swap.
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            count(&mut c, "proxy_get_shared_data")?;
            let key = read_str(&mut c, kp, kl)?;
            let found = {
                let mut s = c.data().shared();
                let found = s.data.get(&key).cloned();
                // A scheduled interference: another "worker" writes right after this read.
                if let Some(i) = s.interference.iter().position(|i| i.key == key) {
                    let entry = s.data.entry(key.clone()).or_insert((Vec::new(), 0));
                    entry.1 += 1;
                    s.interference[i].writes -= 1;
                    if s.interference[i].writes == 0 {
                        s.interference.remove(i);
                    }
                }
                found
            };
            match found {
                Some((value, cas)) => {
                    copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
                    write_u32(&mut c, cas_ptr, cas)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
            count(&mut c, "proxy_set_shared_data")?;
            let key = read_str(&mut c, kp, kl)?;
            let value = read(&mut c, vp, vl)?;
            let mut s = c.data().shared();
            let current = s.data.get(&key).map(|(_, c)| *c);
            if cas != 0 && current.is_some_and(|cur| cur != cas as u32) {
                s.cas_conflicts += 1;
                return Ok(status::CAS_MISMATCH);
            }
            let next = current.unwrap_or(0) + 1;
            s.data.insert(key, (value, next));
            Ok(status::OK)
        },
    )?;

    // Shared queues.
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_register_shared_queue")?;
            let name = read_str(&mut c, np, nl)?;
            let vm_id = c.data().vm_id.clone();
            let id = {
                let mut s = c.data().shared();
                match s
                    .queues
                    .iter()
                    .position(|(v, n, _)| *v == vm_id && *n == name)
                {
                    Some(i) => i as u32 + 1,
                    None => {
                        s.queues.push((vm_id, name, Default::default()));
                        s.queues.len() as u32
                    }
                }
            };
            write_u32(&mut c, ret, id)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> Result<i32> {
            count(&mut c, "proxy_resolve_shared_queue")?;
            let vm_id = read_str(&mut c, vp, vl)?;
            let name = read_str(&mut c, np, nl)?;
            let found = c
                .data()
                .shared()
                .queues
                .iter()
                .position(|(v, n, _)| *v == vm_id && *n == name);
            match found {
                Some(i) => {
                    write_u32(&mut c, ret, i as u32 + 1)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vl: i32| -> Result<i32> {
            count(&mut c, "proxy_enqueue_shared_queue")?;
            let value = read(&mut c, vp, vl)?;
            let mut s = c.data().shared();
            match s.queues.get_mut((id as u32 as usize).wrapping_sub(1)) {
                Some(q) => {
                    q.2.push_back(value);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            count(&mut c, "proxy_dequeue_shared_queue")?;
            let item = {
                let mut s = c.data().shared();
                match s.queues.get_mut((id as u32 as usize).wrapping_sub(1)) {
                    Some(q) => q.2.pop_front(),
                    None => return Ok(status::NOT_FOUND),
                }
            };
            match item {
                Some(v) => {
                    copy_out(&mut c, &v, ptr_ptr, size_ptr)?;
                    Ok(status::OK)
                }
                None => Ok(status::EMPTY),
            }
        },
    )?;

    // Outgoing HTTP calls, answered by the test.
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32|
         -> Result<i32> {
            count(&mut c, "proxy_http_call")?;
            let upstream = read_str(&mut c, up, ul)?;
            let raw_headers = read(&mut c, hp, hl)?;
            let body = read(&mut c, bp, bl)?;
            let raw_trailers = read(&mut c, tp, tl)?;
            let headers = deserialize_map(&raw_headers)
                .ok_or_else(|| anyhow!("proxy_http_call: malformed headers"))?;
            let trailers = deserialize_map(&raw_trailers)
                .ok_or_else(|| anyhow!("proxy_http_call: malformed trailers"))?;
            if !headers.iter().any(|(k, _)| k == ":path")
                || !headers.iter().any(|(k, _)| k == ":method")
            {
                // Envoy refuses calls without :method/:path with BAD_ARGUMENT.
                return Ok(status::BAD_ARGUMENT);
            }
            let d = c.data_mut();
            let token = d.next_call_token;
            d.next_call_token += 1;
            let context_id = d.effective_context;
            d.http_calls.push(HttpCall {
                token,
                context_id,
                upstream,
                headers,
                body,
                trailers,
                timeout_ms: timeout as u32,
            });
            write_u32(&mut c, ret, token)?;
            Ok(status::OK)
        },
    )?;

    // Not implemented here: calling them fails the test with the name.
    for (name, params) in [
        ("proxy_grpc_call", 12),
        ("proxy_grpc_stream", 9),
        ("proxy_grpc_send", 4),
        ("proxy_grpc_cancel", 1),
        ("proxy_grpc_close", 1),
        ("proxy_call_foreign_function", 6),
        ("proxy_get_buffer_status", 3),
    ] {
        unimplemented(linker, name, params)?;
    }
    Ok(())
}
