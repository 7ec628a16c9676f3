//! The host refuses what Envoy would not survive and says why: unknown imports, guest panics,
//! runaway loops, memory growth past the cap, `proc_exit`, unimplemented hostcalls, unknown
//! context ids, hostcalls during `_initialize`, buffer writes Envoy rejects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use proxy_wasm_harness::{Action, Module};
use support::{module, started};

/// A minimal wasm module whose only content is one function import `(module, name)`.
fn importing(module: &str, name: &str) -> Vec<u8> {
    fn vec_of(bytes: &[u8]) -> Vec<u8> {
        assert!(bytes.len() < 128, "single-byte LEB128 lengths only");
        let mut v = vec![bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // type section: one type, () -> ()
    wasm.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
    // import section: one function import of type 0
    let mut imports = vec![1];
    imports.extend(vec_of(module.as_bytes()));
    imports.extend(vec_of(name.as_bytes()));
    imports.extend_from_slice(&[0, 0]);
    wasm.push(2);
    wasm.extend(vec_of(&imports));
    wasm
}

fn fails(scenario: &str, fuel: Option<u64>) -> String {
    let (_w, mut vm) = started();
    if let Some(f) = fuel {
        vm.set_fuel_per_call(f);
    }
    let mut s = vm.http_stream().unwrap();
    let result = s.request_headers(&[(":path", "/"), ("x-hostcheck", scenario)], true);
    match result {
        Ok(a) => panic!("scenario {scenario} should fail, returned {a:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn unknown_imports_are_refused_by_name() {
    let err = Module::from_bytes(&importing("env", "proxy_frobnicate"))
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("env::proxy_frobnicate"), "{msg}");
    assert!(msg.contains("cannot be linked against this host"), "{msg}");

    let err = Module::from_bytes(&importing("wasi_snapshot_preview1", "path_open"))
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("path_open"), "{err:#}");

    // A known import with the wrong signature is refused too.
    let err = Module::from_bytes(&importing("env", "proxy_log"))
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("proxy_log"), "{err:#}");
}

#[test]
fn a_module_that_is_not_proxy_wasm_is_refused() {
    let empty = b"\0asm\x01\0\0\0";
    let module = Module::from_bytes(empty).unwrap();
    let err = proxy_wasm_harness::World::new(&module)
        .vm()
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("proxy_on_context_create"),
        "{err:#}"
    );
    assert!(Module::from_bytes(b"not wasm").is_err());
}

#[test]
fn a_guest_panic_fails_with_its_message() {
    let msg = fails("panic", None);
    assert!(msg.contains("proxy_on_request_headers failed"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(
        msg.contains("hostcheck panic on purpose"),
        "last critical log: {msg}"
    );
}

#[test]
fn a_runaway_loop_runs_out_of_fuel() {
    let msg = fails("loop", Some(2_000_000));
    assert!(msg.contains("ran out of fuel"), "{msg}");
}

#[test]
fn fuel_is_per_callback_not_per_vm() {
    let (_w, mut vm) = started();
    vm.set_fuel_per_call(2_000_000);
    for _ in 0..200 {
        support::run(&mut vm, "headers", &[]);
    }
}

#[test]
fn memory_growth_past_the_cap_fails() {
    let msg = fails("grow", None);
    assert!(msg.contains("proxy_on_request_headers failed"), "{msg}");
    assert!(
        msg.contains(&format!(
            "over the memory limit of {} bytes",
            proxy_wasm_harness::DEFAULT_MEMORY_LIMIT
        )),
        "{msg}"
    );

    // The cap is the test's: 1 MiB is below what even a tiny module starts with.
    let world = proxy_wasm_harness::World::new(module()).with_memory_limit(1 << 20);
    let err = world
        .vm()
        .err()
        .expect("a 1 MiB cap refuses the module's initial memory");
    assert!(format!("{err:#}").contains("memory"), "{err:#}");
}

#[test]
fn proc_exit_traps() {
    let msg = fails("exit", None);
    assert!(msg.contains("proc_exit(3)"), "{msg}");
}

#[test]
fn unimplemented_hostcalls_fail_by_name() {
    let msg = fails("grpc-call", None);
    assert!(msg.contains("proxy_grpc_call"), "{msg}");
    assert!(msg.contains("not implemented"), "{msg}");
}

#[test]
fn unknown_context_ids_fail() {
    let msg = fails("bad-context", None);
    assert!(msg.contains("unknown context id 4242"), "{msg}");
}

#[test]
fn buffer_writes_envoy_rejects_fail() {
    let (_w, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    s.request_headers(&[(":path", "/"), ("x-hostcheck", "body-middle")], false)
        .unwrap();
    let msg = format!("{:#}", s.request_body(b"abc", true).unwrap_err());
    assert!(msg.contains("proxy_set_buffer_bytes(start=1)"), "{msg}");
    assert!(msg.contains("BAD_ARGUMENT"), "{msg}");
}

#[test]
fn a_failed_vm_is_not_called_again() {
    let (world, mut vm) = started();
    let mut s = vm.http_stream().unwrap();
    assert!(
        s.request_headers(&[(":path", "/"), ("x-hostcheck", "panic")], true)
            .is_err()
    );
    let msg = format!("{:#}", s.complete().unwrap_err());
    assert!(msg.contains("failed earlier"), "{msg}");
    assert!(msg.contains("hostcheck panic on purpose"), "{msg}");
    assert!(vm.http_stream().is_err());
    assert!(vm.tick().is_err());
    // Other VMs of the same world and module are unaffected.
    let mut fresh = support::vm_with(&world, "");
    let (action, _) = support::run(&mut fresh, "headers", &[]);
    assert_eq!(action, Action::Continue);
}
