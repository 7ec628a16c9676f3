//! minimal-filter: the baseline of `just bench` (variant d). It pays what every proxy-wasm
//! filter built with the same SDK pays (a VM, a context per stream, one header read, an
//! occasional local reply) and nothing more, so otlp-gate's cost can be stated as "over the
//! bare cost of being a wasm filter".
//!
//! Plugin configuration (a `StringValue` or JSON text): `{"header": "authorization",
//! "value": "Bearer <token>"}`. A request whose header equals `value` byte for byte is
//! forwarded untouched; any other request gets a bare 401. With an optional
//! `"rewrite": {"path": "/v1/logs", "remove": ["authorization"], "set": [["x-scope-orgid", "t"]]}`
//! a forwarded request also gets otlp-gate's header edits, so the Envoy benchmark can separate
//! what the edits cost (variant d-edit) from what otlp-gate's decision costs. Likewise an
//! optional `"reject": {"headers": [["www-authenticate", "…"]], "body": "…"}` makes the 401 carry
//! otlp-gate's reply headers and body (variant d-reply) instead of a bare status; with
//! `"status": 429, "peer": true` it also reads `source.address` first and answers 429, as
//! otlp-gate does for an address cooling down after failed authentications (variant d-th).

use serde::Deserialize;

/// The one comparison this filter makes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Header name (lower case, as Envoy hands headers to proxy-wasm).
    pub header: String,
    /// The exact value that lets a request through.
    pub value: String,
    /// Header edits applied to a request that passes.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// What the 401 carries besides its status.
    #[serde(default)]
    pub reject: Option<Reject>,
}

/// The headers and body of the local reply to a request that does not pass.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// The HTTP status (401 when absent).
    #[serde(default = "unauthorized")]
    pub status: u32,
    /// Read the `source.address` property before replying (its value is not used).
    #[serde(default)]
    pub peer: bool,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
    /// The body as bytes, when it is not UTF-8 (a protobuf with varints ≥ 128); replaces `body`.
    #[serde(default)]
    pub body_bytes: Vec<u8>,
}

impl Reject {
    pub fn body(&self) -> &[u8] {
        if self.body_bytes.is_empty() {
            self.body.as_bytes()
        } else {
            &self.body_bytes
        }
    }
}

fn unauthorized() -> u32 {
    401
}

/// The edits otlp-gate makes to an accepted OTLP/HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    pub path: String,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub set: Vec<(String, String)>,
}

impl Rule {
    /// Parses the plugin configuration; a bad config is refused rather than failing open.
    pub fn parse(raw: &[u8]) -> Result<Rule, String> {
        let rule: Rule =
            serde_json::from_slice(raw).map_err(|e| format!("minimal-filter: bad config: {e}"))?;
        if rule.header.is_empty() || rule.header.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("minimal-filter: `header` must be a non-empty lower-case name".into());
        }
        Ok(rule)
    }

    /// True when the request may pass.
    pub fn allows(&self, presented: Option<&[u8]>) -> bool {
        presented == Some(self.value.as_bytes())
    }
}

#[cfg(target_arch = "wasm32")]
mod adapter;

#[cfg(test)]
mod tests {
    use super::Rule;

    #[test]
    fn parses_and_compares() {
        let r = Rule::parse(br#"{"header":"authorization","value":"Bearer abc"}"#).unwrap();
        assert!(r.allows(Some(b"Bearer abc")));
        assert!(!r.allows(Some(b"Bearer abd")));
        assert!(!r.allows(Some(b"bearer abc")));
        assert!(!r.allows(None));
        assert_eq!(r.rewrite, None);
        assert_eq!(r.reject, None);
        let r = Rule::parse(
            br#"{"header":"authorization","value":"v","reject":{"headers":[["content-type","application/x-protobuf"]],"body":"\u0008\u0010"}}"#,
        )
        .unwrap();
        let j = r.reject.unwrap();
        assert_eq!((j.headers.len(), j.body.as_bytes()), (1, &[8u8, 16][..]));
        assert_eq!((j.status, j.peer), (401, false));
        let r = Rule::parse(
            br#"{"header":"authorization","value":"v","reject":{"status":429,"peer":true,"body":"x","body_bytes":[8,172,2]}}"#,
        )
        .unwrap();
        let j = r.reject.unwrap();
        assert_eq!((j.status, j.peer, j.headers.len()), (429, true, 0));
        assert_eq!(j.body(), &[8u8, 172, 2][..]);
        let r = Rule::parse(
            br#"{"header":"authorization","value":"v","rewrite":{"path":"/v1/logs","remove":["authorization"],"set":[["x-scope-orgid","t"]]}}"#,
        )
        .unwrap();
        let w = r.rewrite.unwrap();
        assert_eq!(
            (w.path.as_str(), w.remove.len(), w.set.len()),
            ("/v1/logs", 1, 1)
        );
    }

    #[test]
    fn refuses_bad_configs() {
        for raw in [
            &b"not json"[..],
            br#"{"header":"authorization"}"#,
            br#"{"header":"","value":"x"}"#,
            br#"{"header":"Authorization","value":"x"}"#,
            br#"{"header":"a","value":"x","extra":1}"#,
            br#"{"header":"a","value":"x","rewrite":{"remove":[]}}"#,
        ] {
            assert!(
                Rule::parse(raw).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
