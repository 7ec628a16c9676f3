//! A proxy-wasm host for tests, on wasmtime: load a filter compiled to `wasm32-wasip1` once,
//! then drive it through the proxy-wasm ABI v0.2.1 the way Envoy does, and inspect what it did.
//!
//! The API is state-based (in the spirit of the Go SDK's `proxytest`): call a phase, then read
//! the headers as the upstream would see them, the local reply, logs, metrics and shared data.
//! Each [`World`] is independent (its own stores and shared data), so tests run in parallel.
//!
//! ```no_run
//! use proxy_wasm_harness::{Action, Module, World};
//! let module = Module::from_file("target/wasm32-wasip1/release/my_filter.wasm")?;
//! let world = World::new(&module);
//! let mut vm = world.vm()?;
//! assert!(vm.start(b"")?);
//! assert!(vm.configure(br#"{"key":"value"}"#)?);
//! let mut s = vm.http_stream()?;
//! assert_eq!(s.request_headers(&[(":method", "GET"), (":path", "/")], true)?, Action::Continue);
//! assert_eq!(s.upstream_header(":path").as_deref(), Some("/"));
//! s.complete()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

#![warn(missing_docs)]

pub mod abi;
mod host;
mod wasi;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use wasmtime::{Engine, Instance, InstancePre, Linker, Store, StoreLimitsBuilder, Trap, TypedFunc};

pub use abi::{Action, LogLevel, MetricType};
use host::{HostState, Interference, Shared};
pub use host::{HttpCall, LocalReply, LogLine, StreamState};

/// Fuel per callback: far above what a filter needs, so only a runaway loop runs out.
pub const DEFAULT_FUEL: u64 = 200_000_000;
/// Linear memory cap per VM.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

/// `root_id` once `Vm::shutdown` deleted the root context (0 means not started yet).
const SHUT_DOWN: u32 = u32::MAX;

/// A compiled module, ready to instantiate many times. Compile once per test binary (for
/// example in a `OnceLock`): compiling is the slow part.
pub struct Module {
    engine: Engine,
    pre: InstancePre<HostState>,
    metered: bool,
}

impl Module {
    /// Reads and compiles a module file (see [`Module::from_bytes`]).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Module> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read wasm module {}", path.display()))?;
        Module::from_bytes(&bytes)
    }

    /// Compiles a module. Fails with the import's name if it needs a hostcall this host lacks.
    pub fn from_bytes(bytes: &[u8]) -> Result<Module> {
        Module::compile(bytes, true)
    }

    /// Compiles a module without fuel metering, for benchmarks: callbacks run at full speed,
    /// but a runaway loop hangs instead of trapping and [`Vm::fuel_consumed`] stays 0.
    pub fn from_bytes_unmetered(bytes: &[u8]) -> Result<Module> {
        Module::compile(bytes, false)
    }

    fn compile(bytes: &[u8], metered: bool) -> Result<Module> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(metered);
        // For `perf`: name JIT-compiled wasm functions in /tmp/perf-<pid>.map.
        if std::env::var_os("HARNESS_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let module = wasmtime::Module::new(&engine, bytes)?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker)?;
        wasi::add_to_linker(&mut linker)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| anyhow!("module cannot be linked against this host: {e}"))?;
        Ok(Module {
            engine,
            pre,
            metered,
        })
    }
}

/// One simulated Envoy process: a clock, shared data, shared queues and stats shared by every
/// VM (worker) created from it, as Envoy shares them per `vm_id`.
#[derive(Clone)]
pub struct World {
    module: Arc<(Engine, InstancePre<HostState>, bool)>,
    shared: Arc<Mutex<Shared>>,
    vm_id: String,
    plugin_name: String,
    memory_limit: usize,
}

impl World {
    /// A world for `module`: clock at 2023-11-14T22:13:20Z, random seed 42, no shared data.
    pub fn new(module: &Module) -> World {
        World {
            module: Arc::new((module.engine.clone(), module.pre.clone(), module.metered)),
            shared: Arc::new(Mutex::new(Shared {
                now_ns: 1_700_000_000_000_000_000,
                random_state: 42,
                ..Shared::default()
            })),
            vm_id: "vm".into(),
            plugin_name: "plugin".into(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }

    /// Names reported by the `plugin_name` / `plugin_vm_id` properties.
    pub fn with_names(mut self, vm_id: &str, plugin_name: &str) -> World {
        self.vm_id = vm_id.into();
        self.plugin_name = plugin_name.into();
        self
    }

    /// Caps each VM's linear memory (default [`DEFAULT_MEMORY_LIMIT`]); growing past it traps,
    /// so a leaking module fails the test. Applies to VMs created afterwards.
    pub fn with_memory_limit(mut self, bytes: usize) -> World {
        self.memory_limit = bytes;
        self
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the host clock (both `proxy_get_current_time_nanoseconds` and WASI clocks).
    pub fn set_time_unix_nanos(&self, ns: u64) {
        self.shared().now_ns = ns;
    }

    /// Sets the host clock to whole seconds since the Unix epoch.
    pub fn set_time_unix_seconds(&self, s: u64) {
        self.set_time_unix_nanos(s.saturating_mul(1_000_000_000));
    }

    /// Moves the host clock forward.
    pub fn advance(&self, d: Duration) {
        let mut s = self.shared();
        s.now_ns = s.now_ns.saturating_add(d.as_nanos() as u64);
    }

    /// The host clock, in nanoseconds since the Unix epoch.
    pub fn now_unix_nanos(&self) -> u64 {
        self.shared().now_ns
    }

    /// Seeds `random_get`.
    pub fn seed_random(&self, seed: u64) {
        self.shared().random_state = seed;
    }

    /// A new VM (an Envoy worker thread) of this world's plugin. Call [`Vm::start`] next.
    pub fn vm(&self) -> Result<Vm> {
        Vm::new(self)
    }

    /// The value of a metric by the name the module defined it with (Envoy would prefix
    /// `wasmcustom.`), or `None` if it was never defined.
    pub fn metric(&self, name: &str) -> Option<i64> {
        let s = self.shared();
        s.metric_ids
            .get(name)
            .and_then(|&id| s.metrics.get(id as usize - 1))
            .map(|m| m.2)
    }

    /// Every defined metric: name, type, value.
    pub fn metrics(&self) -> Vec<(String, MetricType, i64)> {
        self.shared().metrics.clone()
    }

    /// A shared-data value and its CAS version.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared().data.get(key).cloned()
    }

    /// Every shared-data key, sorted.
    pub fn shared_data_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.shared().data.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Writes a shared-data value as another worker would (its CAS value changes).
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        let mut s = self.shared();
        let cas = s.data.get(key).map_or(0, |(_, c)| *c) + 1;
        s.data.insert(key.into(), (value.to_vec(), cas));
    }

    /// Provokes compare-and-swap conflicts: for the next `writes` reads of `key` by any VM,
    /// another worker "writes" the key right after the read, so the reader's CAS write fails.
    pub fn interfere(&self, key: &str, writes: u32) {
        if writes > 0 {
            self.shared().interference.push(Interference {
                key: key.into(),
                writes,
            });
        }
    }

    /// How many `proxy_set_shared_data` calls failed with CAS_MISMATCH.
    pub fn cas_conflicts(&self) -> u64 {
        self.shared().cas_conflicts
    }

    /// Items waiting in a shared queue (by vm_id and name).
    pub fn queue_len(&self, vm_id: &str, name: &str) -> Option<usize> {
        self.shared()
            .queues
            .iter()
            .find(|(v, n, _)| v == vm_id && n == name)
            .map(|q| q.2.len())
    }
}

/// A callback handle: cloned per call, and cloning a `TypedFunc` itself copies its type
/// (registry lookups and an allocation), which showed up as a tenth of a request's host time.
type Cb<P, R> = Arc<TypedFunc<P, R>>;

/// A stream callback taking (context id, size, end of stream) and returning an action.
type PhaseFn = Cb<(i32, i32, i32), i32>;

/// Cached entry points used on every request.
struct Callbacks {
    context_create: Cb<(i32, i32), ()>,
    request_headers: Option<PhaseFn>,
    request_body: Option<PhaseFn>,
    request_trailers: Option<Cb<(i32, i32), i32>>,
    response_headers: Option<PhaseFn>,
    response_body: Option<PhaseFn>,
    response_trailers: Option<Cb<(i32, i32), i32>>,
    log: Option<Cb<i32, ()>>,
    done: Option<Cb<i32, i32>>,
    delete: Option<Cb<i32, ()>>,
}

/// One VM: an instance of the module in its own store, like one Envoy worker's VM.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    callbacks: Callbacks,
    next_context: u32,
    fuel: u64,
    metered: bool,
    /// Fuel given to the current callback, and consumed by finished ones.
    fuel_given: u64,
    fuel_used: u64,
    started: bool,
    /// Set by the first failed callback: like Envoy, the VM is not called again.
    failed: Option<String>,
    memory_limit: usize,
}

fn optional<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &str,
) -> Result<Option<Cb<P, R>>> {
    if instance.get_export(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map(|f| Some(Arc::new(f)))
        .map_err(|e| anyhow!("export {name} has the wrong signature: {e}"))
}

impl Vm {
    fn new(world: &World) -> Result<Vm> {
        let (engine, pre, metered) = &*world.module;
        let limits = StoreLimitsBuilder::new()
            .memory_size(world.memory_limit)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            engine,
            HostState::new(
                Arc::clone(&world.shared),
                limits,
                &world.vm_id,
                &world.plugin_name,
            ),
        );
        store.limiter(|s| &mut s.limits);
        if *metered {
            store.set_fuel(DEFAULT_FUEL)?;
        }
        let instance = pre.instantiate(&mut store)?;
        let callbacks = Callbacks {
            context_create: instance
                .get_typed_func(&mut store, "proxy_on_context_create")
                .map(Arc::new)
                .map_err(|e| {
                    anyhow!(
                        "not a proxy-wasm module: no usable proxy_on_context_create export: {e}"
                    )
                })?,
            request_headers: optional(&mut store, &instance, "proxy_on_request_headers")?,
            request_body: optional(&mut store, &instance, "proxy_on_request_body")?,
            request_trailers: optional(&mut store, &instance, "proxy_on_request_trailers")?,
            response_headers: optional(&mut store, &instance, "proxy_on_response_headers")?,
            response_body: optional(&mut store, &instance, "proxy_on_response_body")?,
            response_trailers: optional(&mut store, &instance, "proxy_on_response_trailers")?,
            log: optional(&mut store, &instance, "proxy_on_log")?,
            done: optional(&mut store, &instance, "proxy_on_done")?,
            delete: optional(&mut store, &instance, "proxy_on_delete")?,
        };
        let has_abi = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"]
            .iter()
            .any(|n| instance.get_export(&mut store, n).is_some());
        if !has_abi {
            bail!("module does not export proxy_abi_version_0_2_1 (or 0_2_0)");
        }
        Ok(Vm {
            store,
            instance,
            callbacks,
            next_context: 1,
            fuel: DEFAULT_FUEL,
            metered: *metered,
            fuel_given: DEFAULT_FUEL,
            fuel_used: 0,
            started: false,
            failed: None,
            memory_limit: world.memory_limit,
        })
    }

    /// Fuel per callback (a runaway module traps with "all fuel consumed").
    pub fn set_fuel_per_call(&mut self, fuel: u64) {
        self.fuel = fuel;
    }

    /// The log level `proxy_get_log_level` reports (default: trace).
    pub fn set_log_level(&mut self, level: LogLevel) {
        self.store.data_mut().log_level = level;
    }

    fn fail(&mut self, what: &str, e: wasmtime::Error) -> anyhow::Error {
        let last = self.store.data().last_critical().unwrap_or("none");
        let cause = match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => "ran out of fuel (a runaway loop?)".to_owned(),
            Some(Trap::UnreachableCodeReached) => {
                "trapped: unreachable (a Rust panic or abort)".to_owned()
            }
            // The root cause names the hostcall or limit; wasm backtraces of a stripped
            // module are only function indices.
            _ => {
                let root = e.root_cause().to_string();
                if root.contains("growing memory") {
                    format!(
                        "{root} (over the memory limit of {} bytes)",
                        self.memory_limit
                    )
                } else {
                    root
                }
            }
        };
        let msg = format!("{what} failed: {cause}; last critical log: {last}");
        self.failed = Some(msg.clone());
        anyhow!(msg)
    }

    fn prepare(&mut self, context: u32) -> Result<()> {
        if let Some(first) = &self.failed {
            bail!("the VM failed earlier and Envoy would not call it again ({first})");
        }
        if self.metered {
            self.settle_fuel();
            self.store.set_fuel(self.fuel)?;
            self.fuel_given = self.fuel;
        }
        self.store.data_mut().effective_context = context;
        Ok(())
    }

    fn call<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
        args: P,
        context: u32,
    ) -> Result<Option<R>> {
        let Some(f) = optional::<P, R>(&mut self.store, &self.instance, name)? else {
            return Ok(None);
        };
        self.prepare(context)?;
        f.call(&mut self.store, args)
            .map(Some)
            .map_err(|e| self.fail(name, e))
    }

    /// Runs `_initialize`, creates the root context and calls `proxy_on_vm_start`.
    pub fn start(&mut self, vm_config: &[u8]) -> Result<bool> {
        if self.started {
            bail!("VM already started");
        }
        self.started = true;
        self.store.data_mut().starting = true;
        let init = if self
            .instance
            .get_export(&mut self.store, "_initialize")
            .is_some()
        {
            "_initialize"
        } else {
            "_start"
        };
        let r = self.call::<(), ()>(init, (), 0);
        self.store.data_mut().starting = false;
        r?;
        let root = self.new_context();
        self.store.data_mut().root_id = root;
        self.store.data_mut().vm_config = vm_config.to_vec();
        self.prepare(root)?;
        let create = self.callbacks.context_create.clone();
        create
            .call(&mut self.store, (root as i32, 0))
            .map_err(|e| self.fail("proxy_on_context_create(root)", e))?;
        Ok(self
            .call::<(i32, i32), i32>(
                "proxy_on_vm_start",
                (root as i32, vm_config.len() as i32),
                root,
            )?
            .unwrap_or(1)
            != 0)
    }

    /// Calls `proxy_on_configure` with a plugin configuration (Envoy passes a JSON string for a
    /// `StringValue`, and serialized protobuf for a `Struct`). Returns what the module returned.
    pub fn configure(&mut self, plugin_config: &[u8]) -> Result<bool> {
        let root = self.root_id()?;
        self.store.data_mut().plugin_config = plugin_config.to_vec();
        Ok(self
            .call::<(i32, i32), i32>(
                "proxy_on_configure",
                (root as i32, plugin_config.len() as i32),
                root,
            )?
            .unwrap_or(1)
            != 0)
    }

    fn root_id(&self) -> Result<u32> {
        match self.store.data().root_id {
            0 => bail!("VM not started: call start() first"),
            SHUT_DOWN => bail!("the plugin was shut down (root context deleted)"),
            id => Ok(id),
        }
    }

    fn new_context(&mut self) -> u32 {
        let id = self.next_context;
        self.next_context += 1;
        self.store.data_mut().contexts.push(id);
        id
    }

    /// Opens an HTTP stream (creates an HTTP context under the root context).
    pub fn http_stream(&mut self) -> Result<Stream<'_>> {
        let root = self.root_id()?;
        let id = self.new_context();
        self.store
            .data_mut()
            .streams
            .insert(id, StreamState::default());
        self.prepare(id)?;
        let create = self.callbacks.context_create.clone();
        create
            .call(&mut self.store, (id as i32, root as i32))
            .map_err(|e| self.fail("proxy_on_context_create", e))?;
        Ok(Stream {
            vm: self,
            id,
            completed: false,
        })
    }

    /// Fires `proxy_on_tick` on the root context.
    pub fn tick(&mut self) -> Result<()> {
        let root = self.root_id()?;
        self.call::<i32, ()>("proxy_on_tick", root as i32, root)?;
        Ok(())
    }

    /// Tears the plugin down as Envoy does when its configuration is replaced or removed:
    /// `proxy_on_done` on the root context, then `proxy_on_delete`. Returns what
    /// `proxy_on_done` returned (a deferred done is not waited for, see the README). Streams
    /// still open are not touched; the root context is gone afterwards.
    pub fn shutdown(&mut self) -> Result<bool> {
        let root = self.root_id()?;
        let mut done = true;
        if let Some(f) = self.callbacks.done.clone() {
            self.prepare(root)?;
            done = f
                .call(&mut self.store, root as i32)
                .map_err(|e| self.fail("proxy_on_done(root)", e))?
                != 0;
        }
        if let Some(f) = self.callbacks.delete.clone() {
            self.prepare(root)?;
            f.call(&mut self.store, root as i32)
                .map_err(|e| self.fail("proxy_on_delete(root)", e))?;
        }
        let d = self.store.data_mut();
        d.contexts.retain(|&c| c != root);
        d.root_id = SHUT_DOWN;
        Ok(done)
    }

    /// The tick period the module asked for (0 = none).
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(u64::from(self.store.data().tick_period_ms))
    }

    /// Calls `proxy_on_queue_ready` for a queue id on the root context.
    pub fn queue_ready(&mut self, queue_id: u32) -> Result<()> {
        let root = self.root_id()?;
        self.call::<(i32, i32), ()>("proxy_on_queue_ready", (root as i32, queue_id as i32), root)?;
        Ok(())
    }

    /// Outgoing HTTP calls not yet answered.
    pub fn http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// Answers an outgoing HTTP call with `proxy_on_http_call_response`. Calls made by a stream
    /// that has completed are gone, as Envoy cancels them when the stream is destroyed.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        trailers: &[(&str, &str)],
    ) -> Result<()> {
        let d = self.store.data_mut();
        let i = d
            .http_calls
            .iter()
            .position(|c| c.token == token)
            .ok_or_else(|| anyhow!("no pending http call with token {token}"))?;
        d.http_calls.remove(i);
        let conv = |h: &[(&str, &str)]| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect::<Vec<_>>()
        };
        d.call_response = Some((conv(headers), body.to_vec(), conv(trailers)));
        // Envoy attributes every call to the root context and calls back there; the SDK then
        // switches to the originating stream with proxy_set_effective_context.
        let root = self.root_id()?;
        let args = (
            root as i32,
            token as i32,
            headers.len() as i32,
            body.len() as i32,
            trailers.len() as i32,
        );
        let r =
            self.call::<(i32, i32, i32, i32, i32), ()>("proxy_on_http_call_response", args, root);
        self.store.data_mut().call_response = None;
        r.map(|_| ())
    }

    /// Every line the module logged, in order.
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// Messages logged at `level` or above.
    pub fn logs_at_least(&self, level: LogLevel) -> Vec<&str> {
        self.logs()
            .iter()
            .filter(|l| l.level >= level)
            .map(|l| l.message.as_str())
            .collect()
    }

    /// Forgets the logs recorded so far.
    pub fn clear_logs(&mut self) {
        self.store.data_mut().logs.clear();
    }

    /// Hostcalls made since the last [`Vm::reset_hostcalls`].
    pub fn hostcalls(&self) -> u64 {
        self.store.data().hostcalls
    }

    /// Restarts the hostcall count from zero.
    pub fn reset_hostcalls(&mut self) {
        self.store.data_mut().hostcalls = 0;
    }

    fn settle_fuel(&mut self) {
        if let Ok(left) = self.store.get_fuel() {
            self.fuel_used += self.fuel_given.saturating_sub(left);
            self.fuel_given = left;
        }
    }

    /// Fuel the module consumed since the last [`Vm::reset_fuel_consumed`]: roughly the wasm
    /// instructions it executed, a deterministic measure of its work (0 when unmetered).
    pub fn fuel_consumed(&mut self) -> u64 {
        self.settle_fuel();
        self.fuel_used
    }

    /// Restarts the fuel count from zero.
    pub fn reset_fuel_consumed(&mut self) {
        self.settle_fuel();
        self.fuel_used = 0;
    }

    /// Current size of the module's linear memory, in bytes.
    pub fn memory_size(&mut self) -> usize {
        match self.instance.get_memory(&mut self.store, "memory") {
            Some(m) => m.data_size(&self.store),
            None => 0,
        }
    }

    /// Sets a VM-wide property (e.g. `node`); stream properties override it.
    pub fn set_property(&mut self, path: &str, value: &[u8]) {
        self.store
            .data_mut()
            .vm_properties
            .insert(path.into(), value.to_vec());
    }
}

/// One HTTP stream through the filter. Drive its phases in Envoy's order, then `complete()`.
pub struct Stream<'vm> {
    vm: &'vm mut Vm,
    id: u32,
    completed: bool,
}

fn to_pairs(h: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect()
}

fn action(what: &str, v: i32) -> Result<Action> {
    match v {
        0 => Ok(Action::Continue),
        1 => Ok(Action::Pause),
        other => bail!("{what} returned unknown action {other}"),
    }
}

impl Stream<'_> {
    /// The stream's proxy-wasm context id.
    pub fn context_id(&self) -> u32 {
        self.id
    }

    fn state(&self) -> &StreamState {
        // Streams are only removed by complete(), which consumes the Stream.
        static EMPTY: std::sync::OnceLock<StreamState> = std::sync::OnceLock::new();
        self.vm
            .store
            .data()
            .streams
            .get(&self.id)
            .unwrap_or_else(|| EMPTY.get_or_init(StreamState::default))
    }

    fn state_mut(&mut self) -> Result<&mut StreamState> {
        let id = self.id;
        self.vm
            .store
            .data_mut()
            .streams
            .get_mut(&id)
            .ok_or_else(|| anyhow!("stream {id} is gone"))
    }

    /// Sets a stream property such as `source.address` (`request.path` and `request.method`
    /// come from the request headers unless set here).
    pub fn set_property(&mut self, path: &str, value: &[u8]) -> Result<()> {
        self.state_mut()?
            .properties
            .insert(path.into(), value.to_vec());
        Ok(())
    }

    /// Request headers arrive (`proxy_on_request_headers`). Header values may be any bytes.
    pub fn request_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.request_headers_bytes(&to_pairs(headers), end_of_stream)
    }

    /// Like [`Stream::request_headers`], for values that are not UTF-8.
    pub fn request_headers_bytes(
        &mut self,
        headers: &[(String, Vec<u8>)],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.state_mut()?.request_headers = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let n = headers.len() as i32;
        self.phase(
            "proxy_on_request_headers",
            |c| c.request_headers.clone(),
            (self.id as i32, n, i32::from(end_of_stream)),
        )
    }

    /// A request body chunk arrives (`proxy_on_request_body`). As in Envoy, if the previous
    /// body callback returned [`Action::Pause`] (StopIterationAndBuffer) the chunk is appended
    /// to the buffered body and the callback sees the cumulative size; otherwise the buffer
    /// holds just this chunk.
    pub fn request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let st = self.state_mut()?;
        if !st.request_body_buffering {
            st.request_body.clear();
        }
        st.request_body.extend_from_slice(chunk);
        let n = st.request_body.len() as i32;
        let action = self.phase(
            "proxy_on_request_body",
            |c| c.request_body.clone(),
            (self.id as i32, n, i32::from(end_of_stream)),
        )?;
        self.state_mut()?.request_body_buffering = action == Action::Pause;
        Ok(action)
    }

    /// Request trailers arrive (`proxy_on_request_trailers`).
    pub fn request_trailers(&mut self, trailers: &[(&str, &str)]) -> Result<Action> {
        self.state_mut()?.request_trailers = to_pairs(trailers);
        let Some(f) = self.vm.callbacks.request_trailers.clone() else {
            return Ok(Action::Continue);
        };
        self.vm.prepare(self.id)?;
        let r = f
            .call(&mut self.vm.store, (self.id as i32, trailers.len() as i32))
            .map_err(|e| self.vm.fail("proxy_on_request_trailers", e))?;
        action("proxy_on_request_trailers", r)
    }

    /// Response headers arrive from the upstream (`proxy_on_response_headers`).
    pub fn response_headers(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.state_mut()?.response_headers = to_pairs(headers);
        let n = headers.len() as i32;
        self.phase(
            "proxy_on_response_headers",
            |c| c.response_headers.clone(),
            (self.id as i32, n, i32::from(end_of_stream)),
        )
    }

    /// A response body chunk arrives (`proxy_on_response_body`), buffered after a
    /// [`Action::Pause`] like [`Stream::request_body`].
    pub fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let st = self.state_mut()?;
        if !st.response_body_buffering {
            st.response_body.clear();
        }
        st.response_body.extend_from_slice(chunk);
        let n = st.response_body.len() as i32;
        let action = self.phase(
            "proxy_on_response_body",
            |c| c.response_body.clone(),
            (self.id as i32, n, i32::from(end_of_stream)),
        )?;
        self.state_mut()?.response_body_buffering = action == Action::Pause;
        Ok(action)
    }

    /// Response trailers arrive (`proxy_on_response_trailers`).
    pub fn response_trailers(&mut self, trailers: &[(&str, &str)]) -> Result<Action> {
        self.state_mut()?.response_trailers = to_pairs(trailers);
        let Some(f) = self.vm.callbacks.response_trailers.clone() else {
            return Ok(Action::Continue);
        };
        self.vm.prepare(self.id)?;
        let r = f
            .call(&mut self.vm.store, (self.id as i32, trailers.len() as i32))
            .map_err(|e| self.vm.fail("proxy_on_response_trailers", e))?;
        action("proxy_on_response_trailers", r)
    }

    fn phase(
        &mut self,
        name: &str,
        pick: fn(&Callbacks) -> Option<PhaseFn>,
        args: (i32, i32, i32),
    ) -> Result<Action> {
        if self.completed {
            bail!("{name} after the stream completed");
        }
        let Some(f) = pick(&self.vm.callbacks) else {
            return Ok(Action::Continue);
        };
        self.vm.prepare(self.id)?;
        let r = f
            .call(&mut self.vm.store, args)
            .map_err(|e| self.vm.fail(name, e))?;
        action(name, r)
    }

    /// The request headers as the upstream would receive them (after the filter's changes).
    pub fn upstream_headers(&self) -> &[(String, Vec<u8>)] {
        &self.state().request_headers
    }

    /// Every value of one upstream request header, as text.
    pub fn upstream_header_values(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.upstream_headers()
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The first value of an upstream request header.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.upstream_header_values(name).into_iter().next()
    }

    /// The request body as the upstream would receive it: the last chunk delivered, or
    /// everything buffered since the module started pausing body callbacks.
    pub fn upstream_body(&self) -> &[u8] {
        &self.state().request_body
    }

    /// The request trailers as the upstream would receive them.
    pub fn upstream_trailers(&self) -> &[(String, Vec<u8>)] {
        &self.state().request_trailers
    }

    /// The response body as the client would receive it (see [`Stream::upstream_body`]).
    pub fn downstream_body(&self) -> &[u8] {
        &self.state().response_body
    }

    /// The response trailers as the client would receive them.
    pub fn downstream_trailers(&self) -> &[(String, Vec<u8>)] {
        &self.state().response_trailers
    }

    /// The VM this stream runs on, to fire ticks, answer HTTP calls or read logs while the
    /// stream is still open (as Envoy interleaves them).
    pub fn vm(&mut self) -> &mut Vm {
        self.vm
    }

    /// The response headers as the client would receive them.
    pub fn downstream_headers(&self) -> &[(String, Vec<u8>)] {
        &self.state().response_headers
    }

    /// The local reply, if the filter sent one.
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.state().local_reply.as_ref()
    }

    /// `proxy_continue_stream` calls (stream types) so far.
    pub fn continued(&self) -> &[i32] {
        &self.state().continued
    }

    /// `proxy_close_stream` calls (stream types) so far.
    pub fn closed(&self) -> &[i32] {
        &self.state().closed
    }

    /// Ends the stream as Envoy does: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn complete(mut self) -> Result<()> {
        self.completed = true;
        let id = self.id as i32;
        if let Some(f) = self.vm.callbacks.log.clone() {
            self.vm.prepare(self.id)?;
            f.call(&mut self.vm.store, id)
                .map_err(|e| self.vm.fail("proxy_on_log", e))?;
        }
        if let Some(f) = self.vm.callbacks.done.clone() {
            self.vm.prepare(self.id)?;
            f.call(&mut self.vm.store, id)
                .map_err(|e| self.vm.fail("proxy_on_done", e))?;
        }
        if let Some(f) = self.vm.callbacks.delete.clone() {
            self.vm.prepare(self.id)?;
            f.call(&mut self.vm.store, id)
                .map_err(|e| self.vm.fail("proxy_on_delete", e))?;
        }
        let d = self.vm.store.data_mut();
        d.streams.remove(&self.id);
        d.contexts.retain(|&c| c != self.id);
        // Envoy cancels a destroyed stream's pending HTTP calls.
        d.http_calls.retain(|c| c.context_id != self.id);
        Ok(())
    }
}
