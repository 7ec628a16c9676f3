//! Finding the one credential a request presents. RFC 6750 §2.1: `Bearer` (scheme
//! case-insensitive, RFC 9110 §11.1) followed by one or more spaces and a b64token; `Basic`
//! (RFC 7617) carrying the token as the password, as Grafana Cloud clients send it; or a raw
//! token in a configured API-key header. More than one credential is `invalid_request`
//! (RFC 6750 §2: clients MUST NOT use more than one method). Another scheme (`Token`, `Digest`,
//! `Negotiate`, or `Basic` when it is off) is no authentication information for this gate
//! (RFC 6750 §3.1): answered as a missing credential, with the bare challenge.
//!
//! Error messages describe the problem and never contain the presented value.

use std::borrow::Cow;

use base64::Engine as _;

/// Tokens longer than this are refused before hashing, so hostile headers cost little.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Where to look for credentials.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    pub accept_basic: bool,
    /// Lower-case header name, when an API-key header is configured.
    pub api_key_header: Option<&'a str>,
}

/// Result of looking for a credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'h> {
    /// No credential at all (401 without an error code).
    Missing,
    /// The token bytes to look up (borrowed from the header unless Basic had to decode it).
    Token(Cow<'h, [u8]>),
    /// Something was sent but cannot be a single valid credential (400 `invalid_request`).
    Malformed(&'static str),
    /// An Authorization scheme the gate does not accept (401 without an error code).
    Unsupported(&'static str),
}

/// Extracts the credential from request headers (names are lower-case, as Envoy keeps them;
/// every value of a repeated header is a separate entry).
pub fn extract<'h, I>(headers: I, sources: Sources<'_>) -> Presented<'h>
where
    I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
{
    let mut found = Found::default();
    for (name, value) in headers {
        found.see(name, value, sources);
    }
    found.presented(sources)
}

/// The credential headers of a request, gathered header by header so the gate can read
/// every header it needs in a single pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Found<'h> {
    authorization: Option<&'h [u8]>,
    api_key: Option<&'h [u8]>,
    /// The first problem seen (a repeated credential header).
    malformed: Option<&'static str>,
}

impl<'h> Found<'h> {
    /// Looks at one header; true when it is a credential header (Authorization or the
    /// configured API-key header).
    pub fn see(&mut self, name: &[u8], value: &'h [u8], sources: Sources<'_>) -> bool {
        if crate::headers::same(name, "authorization") {
            if self.authorization.replace(value).is_some() {
                self.malformed
                    .get_or_insert("more than one Authorization header");
            }
            true
        } else if sources
            .api_key_header
            .is_some_and(|k| crate::headers::same(name, k))
        {
            if self.api_key.replace(value).is_some() {
                self.malformed.get_or_insert("more than one API-key header");
            }
            true
        } else {
            false
        }
    }

    /// Whether the request carries an Authorization header.
    pub fn has_authorization(&self) -> bool {
        self.authorization.is_some()
    }

    /// Whether the request carries the API-key header.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// The one credential presented, once every header has been seen.
    pub fn presented(self, sources: Sources<'_>) -> Presented<'h> {
        if let Some(why) = self.malformed {
            return Presented::Malformed(why);
        }
        match (self.authorization, self.api_key) {
            (None, None) => Presented::Missing,
            (Some(_), Some(_)) => {
                Presented::Malformed("credentials in both Authorization and the API-key header")
            }
            (Some(value), None) => from_authorization(value, sources.accept_basic),
            (None, Some(value)) => raw_token(value.trim_ascii(), "API-key header"),
        }
    }
}

fn from_authorization(value: &[u8], accept_basic: bool) -> Presented<'_> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Presented::Malformed("empty Authorization header");
    }
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    let param = rest.trim_ascii_start();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        if param.is_empty() {
            return Presented::Malformed("Bearer scheme without a token");
        }
        // One pass over a valid token; a comma (never in a b64token) is looked for only to
        // explain a refusal.
        let valid = is_b64token(param);
        if !valid && param.contains(&b',') {
            return Presented::Malformed("more than one credential in Authorization");
        }
        if param.len() > MAX_TOKEN_LEN {
            return Presented::Malformed("token too long");
        }
        if !valid {
            return Presented::Malformed(
                "Bearer token is not a valid b64token (RFC 6750 section 2.1)",
            );
        }
        Presented::Token(Cow::Borrowed(param))
    } else if scheme.eq_ignore_ascii_case(b"basic") && accept_basic {
        if param.contains(&b',') {
            return Presented::Malformed("more than one credential in Authorization");
        }
        if param.len() > MAX_TOKEN_LEN * 2 {
            return Presented::Malformed("token too long");
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(param) else {
            return Presented::Malformed("Basic credentials are not valid base64");
        };
        // The user part is ignored: Grafana Cloud style clients put an instance id there.
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Presented::Malformed("Basic credentials must be user:token");
        };
        match raw_token(&decoded[colon + 1..], "Basic password") {
            Presented::Token(t) => Presented::Token(Cow::Owned(t.into_owned())),
            Presented::Missing => Presented::Missing,
            Presented::Malformed(why) => Presented::Malformed(why),
            Presented::Unsupported(why) => Presented::Unsupported(why),
        }
    } else if !scheme.iter().all(|&b| is_tchar(b)) {
        // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ].
        Presented::Malformed("Authorization must be a scheme, a space and a credential")
    } else if joins_a_credential(param, accept_basic) {
        Presented::Malformed("more than one credential in Authorization")
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        Presented::Unsupported("Basic authorization is not accepted here")
    } else {
        Presented::Unsupported("unsupported Authorization scheme")
    }
}

/// Whether the parameters of another scheme carry, after a comma, a credential this gate
/// accepts (`Token x, Bearer y`): two credentials, not an unsupported one.
fn joins_a_credential(param: &[u8], accept_basic: bool) -> bool {
    param.split(|&b| b == b',').skip(1).any(|part| {
        let part = part.trim_ascii_start();
        let starts = |scheme: &[u8]| {
            part.len() > scheme.len()
                && part[..scheme.len()].eq_ignore_ascii_case(scheme)
                && part[scheme.len()] == b' '
        };
        starts(b"bearer") || (accept_basic && starts(b"basic"))
    })
}

/// RFC 9110 §5.6.2 tchar: the characters of an auth-scheme or a header name.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn raw_token<'a>(token: &'a [u8], place: &'static str) -> Presented<'a> {
    if token.is_empty() {
        return Presented::Malformed(match place {
            "Basic password" => "empty token in Basic password",
            _ => "empty API-key header",
        });
    }
    if token.len() > MAX_TOKEN_LEN {
        return Presented::Malformed("token too long");
    }
    if token
        .iter()
        .any(|&b| b == b',' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Presented::Malformed(match place {
            "Basic password" => "Basic password contains spaces, commas or control characters",
            _ => "API-key header contains spaces, commas or control characters",
        });
    }
    Presented::Token(Cow::Borrowed(token))
}

/// Equality without an early exit, so timing does not reveal how many leading bytes of a
/// credential (or its digest) matched (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 6750 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(t: &[u8]) -> bool {
    let body_len = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0 && t[..body_len].iter().all(|&b| b64token_char(b))
}

/// The b64token body characters, as a table: one load per byte on every request.
static B64TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    t
};

fn b64token_char(b: u8) -> bool {
    B64TOKEN[usize::from(b)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn run<'a>(headers: &'a [(&'a str, &'a str)], basic: bool, key: Option<&str>) -> Presented<'a> {
        extract(
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            Sources {
                accept_basic: basic,
                api_key_header: key,
            },
        )
    }

    #[test]
    fn ct_eq_is_equality() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"), "different lengths");
    }

    #[test]
    fn b64token_characters_are_exactly_rfc_6750s() {
        for b in 0..=255u8 {
            let want =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(b64token_char(b), want, "byte {b}");
        }
    }

    #[test]
    fn extraction_table() {
        let tok = |s: &str| Presented::Token(Cow::Owned(s.as_bytes().to_vec()));
        let bad = Presented::Malformed;
        let unsupported = Presented::Unsupported;
        let basic_ok = format!("Basic {}", b64("12345:tok-abcdefghijklmnop"));
        let basic_no_colon = format!("Basic {}", b64("tok-abcdefghijklmnop"));
        let basic_empty = format!("Basic {}", b64("user:"));
        type Case<'a> = (
            Vec<(&'a str, &'a str)>,
            bool,
            Option<&'a str>,
            Presented<'static>,
        );
        let cases: Vec<Case> = vec![
            (vec![], true, None, Presented::Missing),
            (
                vec![("content-type", "application/json")],
                true,
                None,
                Presented::Missing,
            ),
            (
                vec![("authorization", "Bearer abc.DEF-123_~+/==")],
                true,
                None,
                tok("abc.DEF-123_~+/=="),
            ),
            (
                vec![("authorization", "bearer abc")],
                true,
                None,
                tok("abc"),
            ),
            (
                vec![("authorization", "BEARER   abc")],
                true,
                None,
                tok("abc"),
            ),
            (
                vec![("authorization", " Bearer abc ")],
                true,
                None,
                tok("abc"),
            ),
            (
                vec![("authorization", "Bearer")],
                true,
                None,
                bad("Bearer scheme without a token"),
            ),
            (
                vec![("authorization", "Bearer ")],
                true,
                None,
                bad("Bearer scheme without a token"),
            ),
            (
                vec![("authorization", "")],
                true,
                None,
                bad("empty Authorization header"),
            ),
            (
                vec![("authorization", "Bearer a b")],
                true,
                None,
                bad("Bearer token is not a valid b64token (RFC 6750 section 2.1)"),
            ),
            (
                vec![("authorization", "Bearer =abc")],
                true,
                None,
                bad("Bearer token is not a valid b64token (RFC 6750 section 2.1)"),
            ),
            (
                vec![("authorization", "Bearer ab=c")],
                true,
                None,
                bad("Bearer token is not a valid b64token (RFC 6750 section 2.1)"),
            ),
            (
                vec![("authorization", "Bearer a, Bearer b")],
                true,
                None,
                bad("more than one credential in Authorization"),
            ),
            (
                vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
                true,
                None,
                bad("more than one Authorization header"),
            ),
            (
                vec![("authorization", "Token abc")],
                true,
                None,
                unsupported("unsupported Authorization scheme"),
            ),
            (
                vec![("authorization", "Bearerabc")],
                true,
                None,
                unsupported("unsupported Authorization scheme"),
            ),
            (
                vec![(
                    "authorization",
                    "Digest username=\"u\", realm=\"otlp\", nonce=\"n\", response=\"r\"",
                )],
                true,
                None,
                unsupported("unsupported Authorization scheme"),
            ),
            (
                vec![("authorization", "Negotiate YIIabc==")],
                true,
                None,
                unsupported("unsupported Authorization scheme"),
            ),
            (
                vec![("authorization", "NTLM")],
                true,
                None,
                unsupported("unsupported Authorization scheme"),
            ),
            (
                vec![("authorization", "Token abc, Bearer def")],
                true,
                None,
                bad("more than one credential in Authorization"),
            ),
            (
                vec![("authorization", "Token abc,bearer  def")],
                true,
                None,
                bad("more than one credential in Authorization"),
            ),
            (
                vec![("authorization", "Token abc, Basic def")],
                false,
                None,
                unsupported("unsupported Authorization scheme"),
            ),
            (
                vec![("authorization", "Bearer\tabc")],
                true,
                None,
                bad("Authorization must be a scheme, a space and a credential"),
            ),
            (
                vec![("authorization", "\"Bearer\" abc")],
                true,
                None,
                bad("Authorization must be a scheme, a space and a credential"),
            ),
            (
                vec![("authorization", "Bearer: abc")],
                true,
                None,
                bad("Authorization must be a scheme, a space and a credential"),
            ),
            (
                vec![("authorization", basic_ok.as_str())],
                true,
                None,
                tok("tok-abcdefghijklmnop"),
            ),
            (
                vec![("authorization", basic_ok.as_str())],
                false,
                None,
                unsupported("Basic authorization is not accepted here"),
            ),
            (
                vec![("authorization", basic_no_colon.as_str())],
                true,
                None,
                bad("Basic credentials must be user:token"),
            ),
            (
                vec![("authorization", basic_empty.as_str())],
                true,
                None,
                bad("empty token in Basic password"),
            ),
            (
                vec![("authorization", "Basic !!!")],
                true,
                None,
                bad("Basic credentials are not valid base64"),
            ),
            (
                vec![("x-api-key", "k-abcdefghijklmnop")],
                true,
                Some("x-api-key"),
                tok("k-abcdefghijklmnop"),
            ),
            (vec![("x-api-key", "k-abc")], true, None, Presented::Missing),
            (
                vec![("x-api-key", "")],
                true,
                Some("x-api-key"),
                bad("empty API-key header"),
            ),
            (
                vec![("x-api-key", "a b")],
                true,
                Some("x-api-key"),
                bad("API-key header contains spaces, commas or control characters"),
            ),
            (
                vec![("x-api-key", "a"), ("x-api-key", "b")],
                true,
                Some("x-api-key"),
                bad("more than one API-key header"),
            ),
            (
                vec![("authorization", "Bearer a"), ("x-api-key", "b")],
                true,
                Some("x-api-key"),
                bad("credentials in both Authorization and the API-key header"),
            ),
        ];
        for (i, (headers, basic, key, want)) in cases.into_iter().enumerate() {
            assert_eq!(run(&headers, basic, key), want, "case {i}");
        }
    }

    #[test]
    fn long_and_binary_values_are_malformed_not_panics() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            run(&[("authorization", &long)], true, None),
            Presented::Malformed("token too long")
        );
        let got = extract(
            [(&b"authorization"[..], &b"Bearer \xff\xfe"[..])],
            Sources {
                accept_basic: true,
                api_key_header: None,
            },
        );
        assert!(matches!(got, Presented::Malformed(_)));
    }
}
