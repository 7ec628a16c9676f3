//! One plain-HTTP/1.1 GET over `std::net` (CLI only): `token report` reads gateways'
//! `/stats/prometheus` on the probe listener, a port-forward or an in-cluster address. No
//! TLS on purpose: the probe listener is plain HTTP, and an HTTP client crate would bring a
//! TLS stack and a dependency tree into an operator tool for nothing it needs.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Responses larger than this are refused (a /stats/prometheus with 4,000 tokens is ~5 MB).
const MAX_BYTES: usize = 64 << 20;

/// `http://host[:port][/path]` → (host, port, path); an empty path or `/` means
/// `/stats/prometheus`.
pub fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: https is not supported; read the gateway's probe listener over plain http (kubectl port-forward, or an in-cluster address), or save the page to a file and pass the file"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http:// URL"))?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let path = if path.is_empty() || path == "/" {
        "/stats/prometheus"
    } else {
        path
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url}: bad IPv6 address"))?;
        (h, p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
    };
    if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{url}: not a valid URL"));
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// GETs `url` and returns the body of a 200 answer as text.
pub fn get(url: &str, timeout: Duration) -> Result<String, String> {
    let (host, port, path) = parse_url(url)?;
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{url}: {host} has no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{url}: cannot connect: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: otlp-gate-cli\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if let Some(body) = complete(&buf).map_err(|e| format!("{url}: {e}"))? {
            return body.map_err(|e| format!("{url}: {e}"));
        }
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return match complete_at_eof(&buf) {
                Ok(body) => body.map_err(|e| format!("{url}: {e}")),
                Err(e) => Err(format!("{url}: {e}")),
            };
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.len() > MAX_BYTES {
            return Err(format!("{url}: answer larger than {MAX_BYTES} bytes"));
        }
    }
}

struct Head {
    status: u16,
    body_at: usize,
    length: Option<usize>,
    chunked: bool,
}

fn head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(buf.get(..end).unwrap_or_default())
        .map_err(|_| "the answer's header is not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or("not an HTTP/1.x answer")?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            length = Some(v.parse().map_err(|_| "bad content-length")?);
        } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    Ok(Some(Head {
        status,
        body_at: end + 4,
        length,
        chunked,
    }))
}

fn body(h: &Head, bytes: Vec<u8>) -> Result<String, String> {
    if h.status != 200 {
        return Err(format!("answered HTTP {}", h.status));
    }
    String::from_utf8(bytes).map_err(|_| "the answer is not UTF-8 text".into())
}

/// The body once the whole answer is in `buf` (framed by content-length or chunks).
#[allow(clippy::type_complexity)]
fn complete(buf: &[u8]) -> Result<Option<Result<String, String>>, String> {
    let Some(h) = head(buf)? else {
        return Ok(None);
    };
    let rest = buf.get(h.body_at..).unwrap_or_default();
    if h.chunked {
        return Ok(dechunk(rest)?.map(|b| body(&h, b)));
    }
    match h.length {
        Some(n) if rest.len() >= n => {
            Ok(Some(body(&h, rest.get(..n).unwrap_or_default().to_vec())))
        }
        _ => Ok(None),
    }
}

/// The body when the server closed the connection (the close delimits it without framing).
fn complete_at_eof(buf: &[u8]) -> Result<Result<String, String>, String> {
    let h = head(buf)?.ok_or("the connection closed before a complete answer")?;
    if h.chunked || h.length.is_some() {
        return Err("the connection closed before the whole answer arrived".into());
    }
    Ok(body(&h, buf.get(h.body_at..).unwrap_or_default().to_vec()))
}

/// Decodes `Transfer-Encoding: chunked`; None while incomplete.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text =
            std::str::from_utf8(b.get(..eol).unwrap_or_default()).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        let data = eol + 2;
        if size == 0 {
            return Ok(Some(out));
        }
        let Some(chunk) = b.get(data..data + size) else {
            return Ok(None);
        };
        out.extend_from_slice(chunk);
        match b.get(data + size..data + size + 2) {
            None => return Ok(None),
            Some(b"\r\n") => b = b.get(data + size + 2..).unwrap_or_default(),
            Some(_) => return Err("bad chunk framing".into()),
        }
        if out.len() > MAX_BYTES {
            return Err(format!("answer larger than {MAX_BYTES} bytes"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `answer` (after reading the request), returns the URL.
    fn serve(answer: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8(req).unwrap()
        });
        (url, t)
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8081").unwrap(),
            ("127.0.0.1".into(), 8081, "/stats/prometheus".into())
        );
        assert_eq!(
            parse_url("http://gw.observability.svc/").unwrap(),
            (
                "gw.observability.svc".into(),
                80,
                "/stats/prometheus".into()
            )
        );
        assert_eq!(
            parse_url("http://[::1]:9/stats/prometheus?usedonly").unwrap(),
            ("::1".into(), 9, "/stats/prometheus?usedonly".into())
        );
        assert!(parse_url("https://x/").unwrap_err().contains("plain http"));
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://x:99999/").is_err());
        assert!(parse_url("http:///stats").is_err());
    }

    #[test]
    fn content_length_chunked_and_close_delimited() {
        let (url, t) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
        assert_eq!(get(&url, Duration::from_secs(5)).unwrap(), "hello");
        let req = t.join().unwrap();
        assert!(
            req.starts_with("GET /stats/prometheus HTTP/1.1\r\nHost: 127.0.0.1:"),
            "{req}"
        );

        let (url, _t) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert_eq!(get(&url, Duration::from_secs(5)).unwrap(), "abcde");

        let (url, _t) = serve(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
        assert_eq!(get(&url, Duration::from_secs(5)).unwrap(), "until close");
    }

    #[test]
    fn errors_are_clear() {
        let (url, _t) = serve(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        assert!(
            get(&url, Duration::from_secs(5))
                .unwrap_err()
                .contains("HTTP 404")
        );
        let (url, _t) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort");
        assert!(
            get(&url, Duration::from_secs(5))
                .unwrap_err()
                .contains("closed before")
        );
        let (url, _t) = serve(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(
            get(&url, Duration::from_secs(5))
                .unwrap_err()
                .contains("not an HTTP")
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
