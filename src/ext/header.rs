//! `Sec-WebSocket-Extensions` values as data (RFC 6455 §9.1).
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-token = registered-token
//! registered-token = token
//! extension-param = token [ "=" (token | quoted-string) ]
//!     ;When using the quoted-string syntax variant, the value
//!     ;after quoted-string unescaping MUST conform to the
//!     ;'token' ABNF.
//! ```
//!
//! The list may span several header lines (RFC 9110 §5.3) and, like every
//! RFC 2616 rule RFC 6455 builds on, allows whitespace between words and
//! separators. A comma inside a quoted string does not end an element.
//! Nothing here allocates: elements and parameters borrow the header bytes,
//! and a quoted value is unescaped on the fly by [`Value::bytes`].

use crate::handshake::headers::trim_ows;

/// One malformed list element. The caller declines it (an offer, on a
/// server) or fails the handshake (a response, on a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Every extension element across several `Sec-WebSocket-Extensions` header
/// values, in order. Empty elements (`a, , b`) are skipped as RFC 9110
/// §5.6.1 asks; a malformed one is yielded as `Err` and the next element
/// is parsed normally.
pub fn extensions<'b, I>(values: I) -> Extensions<'b, I::IntoIter>
where
    I: IntoIterator<Item = &'b [u8]>,
{
    Extensions {
        values: values.into_iter(),
        rest: None,
    }
}

/// Iterator returned by [`extensions`].
#[derive(Debug, Clone)]
pub struct Extensions<'b, I> {
    values: I,
    /// Unparsed tail of the current header value.
    rest: Option<&'b [u8]>,
}

impl<'b, I: Iterator<Item = &'b [u8]>> Iterator for Extensions<'b, I> {
    type Item = Result<Extension<'b>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(rest) = self.rest else {
                self.rest = Some(self.values.next()?);
                continue;
            };
            let (element, tail) = split_element(rest);
            self.rest = tail;
            let element = trim_ows(element);
            if element.is_empty() {
                continue;
            }
            return Some(Extension::parse(element));
        }
    }
}

/// One element of an extension list: a name and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'b> {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: &'b [u8],
    /// Everything after the name (already validated).
    params: &'b [u8],
}

impl<'b> Extension<'b> {
    fn parse(element: &'b [u8]) -> Result<Self, Malformed> {
        let mut c = Cursor::new(element);
        let name = c.token().ok_or(Malformed)?;
        let params = &element[c.at..];
        // Validate every parameter now so `params()` cannot fail later.
        let mut p = Cursor::new(params);
        while p.param()?.is_some() {}
        Ok(Self { name, params })
    }

    /// The parameters, in order.
    pub fn params(&self) -> Params<'b> {
        Params {
            cursor: Cursor::new(self.params),
        }
    }
}

/// Iterator over the parameters of an [`Extension`].
#[derive(Debug, Clone)]
pub struct Params<'b> {
    cursor: Cursor<'b>,
}

impl<'b> Iterator for Params<'b> {
    type Item = Param<'b>;

    fn next(&mut self) -> Option<Param<'b>> {
        // Validated in `Extension::parse`, so an error cannot happen here.
        self.cursor.param().ok().flatten()
    }
}

/// One `name[=value]` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'b> {
    /// The parameter token.
    pub name: &'b [u8],
    /// The value, if `=` was present.
    pub value: Option<Value<'b>>,
}

/// A parameter value: a token, or a quoted string whose unescaped content
/// is a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'b> {
    /// The bytes between the quotes (escapes still in) or the bare token.
    raw: &'b [u8],
    quoted: bool,
}

impl<'b> Value<'b> {
    /// The value's bytes with quoted-pair escapes removed.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + 'b {
        let quoted = self.quoted;
        let mut escaped = false;
        self.raw.iter().filter_map(move |&b| {
            if quoted && !escaped && b == b'\\' {
                escaped = true;
                return None;
            }
            escaped = false;
            Some(b)
        })
    }

    /// Whether the value was written as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }
}

/// Splits off the first list element at a comma outside a quoted string.
/// An unterminated quote makes the rest of the value one (malformed)
/// element.
fn split_element(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        if quoted {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            return (&s[..i], Some(&s[i + 1..]));
        }
    }
    (s, None)
}

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
/// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Debug, Clone)]
struct Cursor<'b> {
    s: &'b [u8],
    at: usize,
}

impl<'b> Cursor<'b> {
    fn new(s: &'b [u8]) -> Self {
        Self { s, at: 0 }
    }

    fn skip_ows(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, want: u8) -> bool {
        self.skip_ows();
        if self.s.get(self.at) == Some(&want) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn token(&mut self) -> Option<&'b [u8]> {
        self.skip_ows();
        let start = self.at;
        while self.s.get(self.at).copied().is_some_and(is_tchar) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    /// A quoted string (the opening quote is next); returns the content
    /// between the quotes, escapes still in. RFC 9110 §5.6.4:
    /// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text`,
    /// `quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )`; RFC 6455 §9.1
    /// then wants the unescaped content to be a token.
    fn quoted(&mut self) -> Result<&'b [u8], Malformed> {
        self.at += 1; // the opening quote
        let start = self.at;
        let mut content = 0;
        loop {
            let b = *self.s.get(self.at).ok_or(Malformed)?;
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.at).ok_or(Malformed)?;
                    self.at += 1;
                    if !is_tchar(e) {
                        return Err(Malformed);
                    }
                }
                b if is_tchar(b) => {}
                _ => return Err(Malformed),
            }
            content += 1;
        }
        if content == 0 {
            return Err(Malformed);
        }
        Ok(&self.s[start..self.at - 1])
    }

    /// The next `; name[=value]`, `None` at the end of the element.
    fn param(&mut self) -> Result<Option<Param<'b>>, Malformed> {
        self.skip_ows();
        if self.at == self.s.len() {
            return Ok(None);
        }
        if !self.eat(b';') {
            return Err(Malformed);
        }
        let name = self.token().ok_or(Malformed)?;
        if !self.eat(b'=') {
            return Ok(Some(Param { name, value: None }));
        }
        self.skip_ows();
        let value = if self.s.get(self.at) == Some(&b'"') {
            Value {
                raw: self.quoted()?,
                quoted: true,
            }
        } else {
            Value {
                raw: self.token().ok_or(Malformed)?,
                quoted: false,
            }
        };
        Ok(Some(Param {
            name,
            value: Some(value),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each element as `name` or `name; p=v; q` with unescaped values, or
    /// `!` for a malformed one.
    fn show(values: &[&str]) -> Vec<String> {
        extensions(values.iter().map(|v| v.as_bytes()))
            .map(|e| match e {
                Err(Malformed) => "!".to_string(),
                Ok(e) => {
                    let mut s = String::from_utf8(e.name.to_vec()).unwrap();
                    for p in e.params() {
                        s.push_str("; ");
                        s.push_str(std::str::from_utf8(p.name).unwrap());
                        if let Some(v) = p.value {
                            s.push('=');
                            s.extend(v.bytes().map(char::from));
                        }
                    }
                    s
                }
            })
            .collect()
    }

    #[test]
    fn rfc_7692_examples() {
        assert_eq!(show(&["permessage-deflate"]), ["permessage-deflate"]);
        assert_eq!(
            show(&["permessage-deflate; client_max_window_bits"]),
            ["permessage-deflate; client_max_window_bits"]
        );
        assert_eq!(
            show(&["permessage-deflate; server_max_window_bits=10, permessage-deflate"]),
            [
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate"
            ]
        );
    }

    #[test]
    fn several_headers_whitespace_and_empty_elements() {
        assert_eq!(
            show(&[" a ;x = 1 ;\ty ,, ", "", "b", " , c;z"]),
            ["a; x=1; y", "b", "c; z"]
        );
        assert_eq!(show(&[]), Vec::<String>::new());
        assert_eq!(show(&[",", " "]), Vec::<String>::new());
    }

    #[test]
    fn quoted_values() {
        assert_eq!(show(&[r#"a; x="10""#]), ["a; x=10"]);
        assert_eq!(show(&[r#"a; x="1\0""#]), ["a; x=10"]);
        // A comma inside quotes does not split, and is not a token: malformed.
        assert_eq!(show(&[r#"a; x="1,0", b"#]), ["!", "b"]);
        // Unescaped content must be a non-empty token.
        assert_eq!(show(&[r#"a; x="""#]), ["!"]);
        assert_eq!(show(&[r#"a; x="a b""#]), ["!"]);
        // Unterminated: the rest of the value is one malformed element.
        assert_eq!(show(&[r#"a; x="10, b"#, "c"]), ["!", "c"]);
        let e = extensions([&br#"a; x="9"; y=9"#[..]])
            .next()
            .unwrap()
            .unwrap();
        let q: Vec<bool> = e.params().map(|p| p.value.unwrap().is_quoted()).collect();
        assert_eq!(q, [true, false]);
    }

    #[test]
    fn malformed_elements_do_not_stop_the_list() {
        for bad in [
            "a;",
            "a; ",
            "a;;b",
            ";a",
            "a b",
            "a; x=",
            "a; =1",
            "a; x=1 2",
            "a; x==1",
            "a; x=1;",
            "a/b",
            "a; x=\"1\"2",
            "a; x=@",
        ] {
            assert_eq!(show(&[bad, "ok"]), ["!", "ok"], "{bad:?}");
        }
    }
}
