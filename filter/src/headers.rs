//! Reading a proxy-wasm serialized header map in place. The host hands every request header
//! over in one buffer (`proxy_get_header_map_pairs`); the SDK would copy each name and value
//! into its own `String`/`Vec` (two allocations per header); [`parse`] validates the buffer
//! once and borrows from it. Names stay bytes: the gate only compares them with names it knows,
//! so validating them as UTF-8 would cost a pass over every name for nothing.
//!
//! Layout (ABI v0.2.1): `u32` count, then `count` × (`u32` name length, `u32` value length),
//! then each name and value followed by a NUL byte; all integers little-endian.

/// One header: lower-case name, raw value. Repeated headers are separate entries.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// Header-name equality with the length compared first, inline: most header names differ in
/// length from the few the gate looks for, so most comparisons end there.
#[inline(always)]
pub fn same(a: &[u8], b: &str) -> bool {
    a.len() == b.len() && a == b.as_bytes()
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

/// Reads a serialized map in one pass (lengths in bounds, NUL terminators) into
/// borrowed pairs: one allocation for the list, none per header. `None` for a malformed
/// buffer; an empty buffer is an empty map.
pub fn parse(block: &[u8]) -> Option<Vec<Header<'_>>> {
    if block.is_empty() {
        return Some(Vec::new());
    }
    let count = u32_at(block, 0)?;
    let table_end = count.checked_mul(8)?.checked_add(4)?;
    let lengths = block.get(4..table_end)?;
    let data = block.get(table_end..)?;
    let mut pairs = Vec::with_capacity(count);
    let mut at = 0usize;
    for entry in lengths.chunks_exact(8) {
        // name NUL value NUL
        let name_end = at.checked_add(u32_at(entry, 0)?)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(u32_at(entry, 4)?)?;
        // Patterns, not `Option` equality: at the size-optimised level that is a call per test.
        if !matches!(data.get(name_end), Some(0)) || !matches!(data.get(value_end), Some(0)) {
            return None;
        }
        pairs.push((data.get(at..name_end)?, data.get(value_start..value_end)?));
        at = value_end + 1;
    }
    Some(pairs)
}

/// Serializes pairs the way the host does: replies hand their headers over in this form, and
/// the native case tables feed the gate through it.
pub fn serialize<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Vec<u8> {
    let (count, size) = pairs.clone().into_iter().fold((0, 4), |(c, s), (n, v)| {
        (c + 1, s + 8 + n.len() + v.len() + 2)
    });
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    for (n, v) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(n.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(block: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
        parse(block).map(|p| {
            p.iter()
                .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
                .collect()
        })
    }

    #[test]
    fn round_trips_what_the_host_sends() {
        let headers: Vec<(&str, &[u8])> = vec![
            (":method", b"POST"),
            (":path", b"/v1/logs"),
            ("empty", b""),
            ("authorization", b"Bearer x"),
            ("authorization", b"\xff binary \x00 value"),
        ];
        let block = serialize(headers.iter().copied());
        let got = pairs(&block);
        let want: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        assert_eq!(got, Some(want));
        assert_eq!(parse(&block).map(|p| p.len()), Some(5));
    }

    #[test]
    fn malformed_buffers_are_refused() {
        let good = serialize([("a", &b"1"[..]), ("bb", &b"22"[..])]);
        assert_eq!(pairs(&[]), Some(vec![]), "empty buffer = no headers");
        assert_eq!(pairs(&serialize(std::iter::empty())), Some(vec![]));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated count", vec![1, 0]),
            ("count beyond the table", {
                let mut b = good.clone();
                b[0] = 9;
                b
            }),
            ("huge count", vec![0xff, 0xff, 0xff, 0xff]),
            ("value length past the end", {
                let mut b = good.clone();
                b[8] = 200;
                b
            }),
            ("missing NUL", {
                let mut b = good.clone();
                let i = b.len() - 1;
                b[i] = b'x';
                b
            }),
            ("cut short", good[..good.len() - 2].to_vec()),
        ];
        for (why, block) in cases {
            assert!(parse(&block).is_none(), "{why}: accepted");
        }
        // A name that is not UTF-8 is kept as bytes: it can never equal a name the gate
        // looks for, so it is just another header.
        let mut odd = serialize([("ab", &b"v"[..])]);
        odd[4 + 8] = 0xff;
        assert_eq!(parse(&odd), Some(vec![(&b"\xffb"[..], &b"v"[..])]));
    }
}
