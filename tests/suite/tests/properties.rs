//! Property tests on random and hostile input through the compiled module: it never traps,
//! never forwards without a valid token, and never writes a presented token into its logs.
#![allow(clippy::unwrap_used)] // test code

use otlp_gate_suite::*;
use proptest::prelude::*;
use proxy_wasm_harness::Action;

const VALID: &str = "valid-Vq7Lm2Bz9Kc4Rb8Nw3Yd6Ht1Jp5Gs";

fn cfg() -> String {
    format!(
        r#"{{"tokens": [{{"id": "v", "token": "{VALID}", "tenant": "t", "signals": ["traces"]}}], "api_key_header": "x-api-key"}}"#
    )
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        "(Bearer|bearer|BEARER|Basic|Token|) {0,3}[A-Za-z0-9._~+/=, -]{0,60}"
            .prop_map(String::into_bytes),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/observability/v1/(traces|logs|metrics)",
        "/(observability|v1|/|\\.|\\.\\.|%2F|%2e|traces|logs|healthz|opentelemetry\\.proto\\.collector\\.trace\\.v1\\.TraceService|Export)(/(observability|v1|/|\\.|\\.\\.|%2F|%2e|traces|logs|healthz|Export)){0,4}[/?]?[a-z=&]{0,6}",
        "[ -~]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_requests_never_trap_never_pass_without_the_token(
        method in prop_oneof![Just("POST".to_owned()), Just("GET".to_owned()), "[A-Z]{0,8}"],
        path in path(),
        auth in proptest::option::of(header_value()),
        api_key in proptest::option::of(header_value()),
        content_type in proptest::option::of(prop_oneof![Just(b"application/grpc".to_vec()), Just(b"application/x-protobuf".to_vec()), header_value()]),
        extra in proptest::collection::vec(("[a-z-]{1,12}", header_value()), 0..4),
    ) {
        let (_world, mut vm) = configured(&cfg());
        let mut headers: Vec<(String, Vec<u8>)> = vec![(":method".into(), method.into_bytes()), (":path".into(), path.into_bytes())];
        if let Some(a) = &auth { headers.push(("authorization".into(), a.clone())); }
        if let Some(k) = &api_key { headers.push(("x-api-key".into(), k.clone())); }
        if let Some(c) = content_type { headers.push(("content-type".into(), c)); }
        headers.extend(extra);
        let mut s = vm.http_stream().unwrap();
        let action = s.request_headers_bytes(&headers, false);
        prop_assert!(action.is_ok(), "the module trapped: {:#}", action.err().unwrap());
        if action.unwrap() == Action::Continue {
            // Forwarded: only possible with the one valid token, presented exactly once.
            prop_assert!(s.local_reply().is_none());
            let id = s.upstream_header("x-otlp-token-id");
            prop_assert_eq!(id.as_deref(), Some("v"));
            prop_assert!(s.upstream_header("authorization").is_none());
            prop_assert!(s.upstream_header("x-api-key").is_none());
        } else {
            prop_assert!(s.local_reply().is_some());
        }
        s.complete().unwrap();
        let logged: String = vm.logs().iter().map(|l| l.message.as_str()).collect::<Vec<_>>().join("\n");
        prop_assert!(!logged.contains(VALID));
        for v in [auth, api_key].into_iter().flatten() {
            let text = String::from_utf8_lossy(&v);
            if text.len() >= 12 {
                prop_assert!(!logged.contains(text.as_ref()), "a credential value reached the logs");
            }
        }
    }

    #[test]
    fn the_valid_token_in_any_scheme_case_is_accepted(scheme in "[bB][eE][aA][rR][eE][rR]", spaces in 1usize..4) {
        let (_world, mut vm) = configured(&cfg());
        let auth = format!("{scheme}{}{VALID}", " ".repeat(spaces));
        let mut s = vm.http_stream().unwrap();
        let h = [(":method", "POST"), (":path", "/observability/v1/traces"), ("content-type", "application/x-protobuf"), ("authorization", auth.as_str())];
        prop_assert_eq!(s.request_headers(&h, true).unwrap(), Action::Continue);
        s.complete().unwrap();
    }
}
