//! Header lookup and comma-separated token lists.
//!
//! Field names are matched ASCII case-insensitively (RFC 9110 §5.1: "Field
//! names are case-insensitive"). `Connection`, `Upgrade` and
//! `Sec-WebSocket-Protocol` carry comma-separated lists that may be split
//! over several field lines, so lookups iterate every line.

use httparse::Header;

/// Strips optional whitespace (SP / HTAB, RFC 9110 §5.6.3 `OWS`) from both
/// ends.
pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Value of the first header named `name` (case-insensitive), untrimmed.
pub fn header<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    header_values(headers, name).next()
}

/// Every value of the headers named `name` (case-insensitive), in order.
pub fn header_values<'a, 'b>(headers: &'a [Header<'b>], name: &'a str) -> HeaderValues<'a, 'b> {
    HeaderValues {
        headers: headers.iter(),
        name,
    }
}

/// Every list element across all headers named `name`, trimmed, empty
/// elements skipped.
pub fn header_tokens<'a, 'b>(headers: &'a [Header<'b>], name: &'a str) -> HeaderTokens<'a, 'b> {
    HeaderTokens {
        values: header_values(headers, name),
        current: tokens(b""),
    }
}

/// The elements of one comma-separated list value, trimmed of OWS.
///
/// RFC 9110 §5.6.1: "a recipient MUST parse and ignore a reasonable number
/// of empty list elements", so `a,,b` yields `a`, `b`.
pub fn tokens(value: &[u8]) -> Tokens<'_> {
    Tokens { rest: Some(value) }
}

/// `true` if the list `value` contains `token`, ASCII case-insensitively.
///
/// `has_token(b"keep-alive, Upgrade", "upgrade")` is `true`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Iterator over the values of one header name; see [`header_values`].
#[derive(Debug, Clone)]
pub struct HeaderValues<'a, 'b> {
    headers: std::slice::Iter<'a, Header<'b>>,
    name: &'a str,
}

impl<'b> Iterator for HeaderValues<'_, 'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        let name = self.name;
        self.headers
            .by_ref()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Iterator over the elements of one list value; see [`tokens`].
#[derive(Debug, Clone)]
pub struct Tokens<'b> {
    rest: Option<&'b [u8]>,
}

impl<'b> Iterator for Tokens<'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        loop {
            let rest = self.rest?;
            let (item, tail) = match rest.iter().position(|&b| b == b',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.rest = tail;
            let item = trim_ows(item);
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// Iterator over list elements across several header lines; see
/// [`header_tokens`].
#[derive(Debug, Clone)]
pub struct HeaderTokens<'a, 'b> {
    values: HeaderValues<'a, 'b>,
    current: Tokens<'b>,
}

impl<'b> Iterator for HeaderTokens<'_, 'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        loop {
            if let Some(t) = self.current.next() {
                return Some(t);
            }
            self.current = tokens(self.values.next()?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'b>(name: &'b str, value: &'b [u8]) -> Header<'b> {
        Header { name, value }
    }

    #[test]
    fn trims_sp_and_htab_only() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"\x0bx"), b"\x0bx");
    }

    #[test]
    fn token_lists() {
        let v: Vec<&[u8]> = tokens(b" keep-alive ,\tUpgrade,, ,x").collect();
        assert_eq!(v, [&b"keep-alive"[..], b"Upgrade", b"x"]);
        assert_eq!(tokens(b"").count(), 0);
        assert_eq!(tokens(b", ,").count(), 0);
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"UPGRADE", "upgrade"));
        assert!(!has_token(b"upgraded", "upgrade"));
        assert!(!has_token(b"up grade", "upgrade"));
    }

    #[test]
    fn lookup_is_case_insensitive_and_sees_repeats() {
        let hs = [
            h("Host", b"a"),
            h("sec-websocket-protocol", b"chat, v2"),
            h("X", b"y"),
            h("Sec-WebSocket-Protocol", b" v3 "),
        ];
        assert_eq!(header(&hs, "HOST"), Some(&b"a"[..]));
        assert_eq!(header(&hs, "missing"), None);
        assert_eq!(header_values(&hs, "SEC-WEBSOCKET-PROTOCOL").count(), 2);
        let t: Vec<&[u8]> = header_tokens(&hs, "Sec-WebSocket-Protocol").collect();
        assert_eq!(t, [&b"chat"[..], b"v2", b"v3"]);
        assert_eq!(header_tokens(&hs, "nope").count(), 0);
    }
}
