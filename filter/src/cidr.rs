//! Client addresses and CIDR ranges, for per-token source allow-lists and trusted proxies.

use std::net::IpAddr;

/// An address range such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` (a bare address means a single host). Host bits must be zero, so a
    /// typo like `10.0.0.1/8` is refused instead of silently meaning `10.0.0.0/8`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        let c = Cidr { addr, prefix };
        if c.network_bits(addr) != bits(addr) {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}/{prefix}?",
                c.network()
            ));
        }
        Ok(c)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && self.network_bits(ip) == bits(self.addr)
    }

    fn network_bits(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(self.prefix);
        if shift >= 128 {
            0
        } else {
            bits(ip) >> shift << shift
        }
    }

    /// The network address as text, for the error message: dotted quad, or eight hexadecimal
    /// groups without `::` compression (core's IPv6 formatting is ~2 KB of the module).
    fn network(&self) -> String {
        let n = self.network_bits(self.addr);
        let mut out = String::new();
        if self.addr.is_ipv4() {
            for (i, b) in u32::try_from(n)
                .unwrap_or(0)
                .to_be_bytes()
                .iter()
                .enumerate()
            {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(&b.to_string());
            }
        } else {
            for i in (0..8).rev() {
                out.push_str(&format!("{:x}", (n >> (16 * i)) & 0xffff));
                if i > 0 {
                    out.push(':');
                }
            }
        }
        out
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is treated as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses Envoy's `source.address` (`1.2.3.4:5678`, `[::1]:5678`, or a bare address).
pub fn parse_socket_address(s: &str) -> Option<IpAddr> {
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(a, _)| a.parse().ok())
            .map(canonical);
    }
    // `a.b.c.d:port`, Envoy's form for IPv4 (one colon: never a bare IPv6 address), parsed once.
    if let Some((a, _)) = s.rsplit_once(':')
        && !a.contains(':')
    {
        return a.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4);
    }
    s.parse::<IpAddr>().ok().map(canonical)
}

/// The client address: the direct peer, or — only when the peer is a trusted proxy — the
/// rightmost `x-forwarded-for` entry that is not itself a trusted proxy. Entries left of that
/// are client-supplied and never trusted.
pub fn client_address<'h>(
    peer: Option<IpAddr>,
    forwarded_for: impl Iterator<Item = &'h [u8]>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    let mut hops: Vec<&[u8]> = Vec::new();
    for value in forwarded_for {
        hops.extend(value.split(|&b| b == b','));
    }
    for hop in hops.iter().rev() {
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|h| parse_socket_address(h.trim()))
        else {
            // An unparseable hop: stop here rather than trust anything further left.
            return Some(peer);
        };
        if !trusted.iter().any(|c| c.contains(ip)) {
            return Some(ip);
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_table() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "::1", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "::1", true),
        ];
        for (c, a, want) in cases {
            assert_eq!(Cidr::parse(c).unwrap().contains(ip(a)), want, "{c} {a}");
        }
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "300.0.0.0/8",
            "abc",
            "10.0.0.0/",
            "::1/129",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Cidr::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(
            Cidr::parse("2001:db8::1/32")
                .unwrap_err()
                .contains("did you mean 2001:db8:0:0:0:0:0:0/32?")
        );
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(parse_socket_address("10.0.0.1:443"), Some(ip("10.0.0.1")));
        assert_eq!(
            parse_socket_address("[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_socket_address("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(
            parse_socket_address("[::ffff:10.0.0.1]:1"),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(parse_socket_address("nonsense"), None);
        assert_eq!(parse_socket_address("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(
            parse_socket_address("::ffff:10.0.0.1"),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            parse_socket_address("::1"),
            Some(ip("::1")),
            "not ':' + port 1"
        );
        for bad in ["999.0.0.1:80", "host:80", ":80", "10.0.0.1:80:80", "[::1"] {
            assert_eq!(parse_socket_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_for_only_through_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = |v: &'static str| std::iter::once(v.as_bytes());
        let proxy = Some(ip("10.0.0.5"));
        assert_eq!(
            client_address(proxy, xff("203.0.113.9"), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(proxy, xff("1.1.1.1, 203.0.113.9, 10.0.0.7"), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(Some(ip("198.51.100.1")), xff("203.0.113.9"), &trusted),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_address(proxy, xff("garbage, 203.0.113.9"), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(proxy, xff("203.0.113.9, garbage"), &trusted),
            proxy
        );
        assert_eq!(client_address(proxy, std::iter::empty(), &trusted), proxy);
        assert_eq!(client_address(proxy, xff("203.0.113.9"), &[]), proxy);
        assert_eq!(client_address(None, xff("203.0.113.9"), &trusted), None);
    }
}
