//! Shared by the self-tests: the `hostcheck` module (tests/hostcheck), compiled once per test
//! binary, and small helpers to run one scenario.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::OnceLock;

use proxy_wasm_harness::{Action, Module, Vm, World};

pub const HOSTCHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../target/wasm32-wasip1/release/hostcheck.wasm"
);

/// The hostcheck module, compiled once per test binary.
pub fn module() -> &'static Module {
    static M: OnceLock<Module> = OnceLock::new();
    M.get_or_init(|| {
        Module::from_file(HOSTCHECK).unwrap_or_else(|e| {
            panic!(
                "{e:#}\n-> build the self-test module first: `just build-test-modules` \
                 (or `bash .ci/build-wasm.sh hostcheck`)"
            )
        })
    })
}

/// A started VM configured with `config` (hostcheck's plugin config is plain text).
pub fn vm_with(world: &World, config: &str) -> Vm {
    let mut vm = world.vm().expect("instantiate");
    assert!(
        vm.start(b"vm-config").expect("start"),
        "on_vm_start refused"
    );
    assert!(
        vm.configure(config.as_bytes()).expect("configure"),
        "configure refused"
    );
    vm
}

/// A fresh world with one started, configured VM.
pub fn started() -> (World, Vm) {
    let world = World::new(module());
    let vm = vm_with(&world, "");
    (world, vm)
}

/// The upstream request headers after one scenario, as text pairs.
pub type Headers = Vec<(String, String)>;

/// Runs one scenario (request headers only, end of stream) and completes the stream.
pub fn run(vm: &mut Vm, scenario: &str, extra: &[(&str, &str)]) -> (Action, Headers) {
    let mut s = vm.http_stream().expect("stream");
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/p?q=1"),
        (":authority", "example.test"),
        ("x-hostcheck", scenario),
    ];
    headers.extend_from_slice(extra);
    let action = s.request_headers(&headers, true).expect(scenario);
    let up = text(s.upstream_headers());
    s.complete().expect("complete");
    (action, up)
}

pub fn text(h: &[(String, Vec<u8>)]) -> Headers {
    h.iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// Every value of `name`.
pub fn all<'a>(h: &'a Headers, name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The single value of `name` (fails if absent or repeated).
pub fn one<'a>(h: &'a Headers, name: &str) -> &'a str {
    match all(h, name).as_slice() {
        [v] => v,
        other => panic!("expected exactly one {name}, got {other:?}"),
    }
}
