//! Writing the server's HTTP response: 101 on success, an error otherwise,
//! or any small response (health checks, metrics, 503 under load).

use super::reject::{Reject, RejectReason};
use super::upgrade::PlainHttp;
use crate::handshake::{accept_key_bytes, WS_VERSION};

/// Standard reason phrase for the codes this crate writes, `""` for others
/// (RFC 9112 §4: the reason-phrase is optional and "a client SHOULD
/// ignore" it).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends an HTTP/1.1 response: status line, `extra_headers` in order,
/// `Content-Length`, empty line, `body`.
///
/// `Content-Length` is left out for 1xx, 204 and 304, which RFC 9110
/// §8.6 forbids it on (and which carry no body). Header names and values
/// come from the caller and are written as given; they must not contain
/// CR or LF.
pub fn write_response(out: &mut Vec<u8>, status: u16, extra_headers: &[(&str, &str)], body: &[u8]) {
    write_response_to(out, status, extra_headers, body, true);
}

/// As [`write_response`] for a `HEAD` request: the same header block,
/// `Content-Length` included, without the body (RFC 9110 §9.3.2).
pub fn write_head_response(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) {
    write_response_to(out, status, extra_headers, body, false);
}

fn write_response_to(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) {
    write_status_line(out, status);
    for (name, value) in extra_headers {
        write_header(out, name, value.as_bytes());
    }
    if has_content(status) {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len());
        out.extend_from_slice(b"\r\n");
    } else {
        debug_assert!(body.is_empty(), "status {status} carries no body");
    }
    out.extend_from_slice(b"\r\n");
    if has_content(status) && with_body {
        out.extend_from_slice(body);
    }
}

/// Appends the 101 response accepting a handshake (RFC 6455 §4.2.2).
///
/// `key` is [`Upgrade::key`](super::Upgrade::key). `protocol` must be one
/// the client offered, and `extensions` the negotiated extension list;
/// both are left out when `None`. Allocates nothing beyond growing `out`.
pub fn write_accept(
    out: &mut Vec<u8>,
    key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    let accept = accept_key_bytes(key);
    write_status_line(out, 101);
    write_header(out, "Upgrade", b"websocket");
    write_header(out, "Connection", b"Upgrade");
    write_header(out, "Sec-WebSocket-Accept", &accept);
    if let Some(p) = protocol {
        write_header(out, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    if let Some(e) = extensions {
        write_header(out, "Sec-WebSocket-Extensions", e.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the error response for a refused request: status line,
/// `Content-Type: text/plain; charset=utf-8`, `Connection: close` and a
/// one-line body naming the problem.
///
/// A 426 also carries `Sec-WebSocket-Version: 13` (RFC 6455 §4.4: "the
/// server MUST ... include a |Sec-WebSocket-Version| header field
/// containing the version(s) it supports") and `Upgrade: websocket` (RFC
/// 9110 §15.5.22: "The server MUST send an Upgrade header field in a 426
/// response"). A 405 carries `Allow: GET` (RFC 9110 §15.5.6: "The origin
/// server MUST generate an Allow header field in a 405 response").
pub fn write_reject(out: &mut Vec<u8>, reject: &Reject) {
    let mut body = [0u8; 128];
    let msg = reject.reason.message().as_bytes();
    let n = msg.len().min(body.len() - 1);
    body[..n].copy_from_slice(&msg[..n]);
    body[n] = b'\n';
    let body = &body[..=n];
    match reject.reason {
        RejectReason::BadWsVersion => write_response(out, reject.status, &UPGRADE_REQUIRED, body),
        RejectReason::Method => write_response(
            out,
            reject.status,
            &[TEXT_PLAIN, CLOSE, ("Allow", "GET")],
            body,
        ),
        _ => write_response(out, reject.status, &[TEXT_PLAIN, CLOSE], body),
    }
}

/// The default answer to plain HTTP: [`answer_plain`] without a metrics
/// path (`/healthz` answers, anything else gets 426).
pub fn default_http_response(out: &mut Vec<u8>, req: &PlainHttp<'_>) {
    answer_plain(out, req, None);
}

/// What [`answer_plain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainAnswer {
    /// The answer is written; close after it.
    Written,
    /// The request is for the metrics: the caller renders and writes them
    /// (`head`: a `HEAD` request, header block only, see
    /// [`write_head_response`]).
    Metrics {
        /// Answer without the body.
        head: bool,
    },
}

/// Answer plain HTTP by path, whatever the query: `/healthz` gets 200
/// `ok`, `metrics_path` (if set) is left to the caller; on those paths
/// `HEAD` is `GET` without the body and other methods get 405 with
/// `Allow: GET, HEAD`. Any other path gets 426 saying a WebSocket upgrade is
/// required. Every answer closes the connection.
pub fn answer_plain(
    out: &mut Vec<u8>,
    req: &PlainHttp<'_>,
    metrics_path: Option<&str>,
) -> PlainAnswer {
    let path = path_of(req.path);
    let metrics = metrics_path == Some(path);
    if path != HEALTHZ && !metrics {
        write_response(
            out,
            426,
            &UPGRADE_REQUIRED,
            b"this is a WebSocket endpoint: upgrade required\n",
        );
        return PlainAnswer::Written;
    }
    let head = match req.method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            write_response(
                out,
                405,
                &[TEXT_PLAIN, CLOSE, ("Allow", "GET, HEAD")],
                b"method not allowed\n",
            );
            return PlainAnswer::Written;
        }
    };
    if metrics {
        return PlainAnswer::Metrics { head };
    }
    write_response_to(out, 200, &[TEXT_PLAIN, CLOSE], b"ok\n", !head);
    PlainAnswer::Written
}

/// The health-check path.
const HEALTHZ: &str = "/healthz";

/// Is `req` a `GET` or `HEAD` of `/healthz` (whatever the query)? A server
/// that can be partly down checks this before [`answer_plain`] and answers
/// 503 itself.
pub fn is_health_check(req: &PlainHttp<'_>) -> bool {
    matches!(req.method, "GET" | "HEAD") && path_of(req.path) == HEALTHZ
}

/// A request target without its query (RFC 9112 §3.2: origin-form is
/// `absolute-path [ "?" query ]`) and without a fragment, which a client
/// should not send but some do.
fn path_of(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    &target[..end]
}

const TEXT_PLAIN: (&str, &str) = ("Content-Type", "text/plain; charset=utf-8");
const CLOSE: (&str, &str) = ("Connection", "close");
/// RFC 9110 §7.8: "A sender of Upgrade MUST also send an "Upgrade"
/// connection option in the Connection header field".
const UPGRADE_REQUIRED: [(&str, &str); 4] = [
    TEXT_PLAIN,
    ("Connection", "Upgrade, close"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", WS_VERSION),
];

fn has_content(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    debug_assert!(
        !name.contains(['\r', '\n', ':']),
        "bad header name {name:?}"
    );
    debug_assert!(!value.contains(&b'\r') && !value.contains(&b'\n'));
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Decimal formatting without `format!` (no temporary `String`).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn accept_bytes_for_rfc_key() {
        let mut out = Vec::new();
        write_accept(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==", None, None);
        assert_eq!(
            s(&out),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             \r\n"
        );
    }

    #[test]
    fn accept_with_protocol_and_extensions_appends() {
        let mut out = b"prefix".to_vec();
        write_accept(
            &mut out,
            b"dGhlIHNhbXBsZSBub25jZQ==",
            Some("chat"),
            Some("permessage-deflate"),
        );
        assert_eq!(
            s(&out),
            "prefixHTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate\r\n\
             \r\n"
        );
    }

    #[test]
    fn general_response() {
        let mut out = Vec::new();
        write_response(&mut out, 503, &[("Retry-After", "1")], b"busy\n");
        assert_eq!(
            s(&out),
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
             Content-Length: 5\r\n\r\nbusy\n"
        );
        out.clear();
        write_response(&mut out, 299, &[], b"");
        assert_eq!(s(&out), "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
        out.clear();
        write_response(&mut out, 204, &[], b"");
        assert_eq!(s(&out), "HTTP/1.1 204 No Content\r\n\r\n");
    }

    fn plain(
        method: &'static str,
        path: &'static str,
        metrics: Option<&str>,
    ) -> (String, PlainAnswer) {
        let mut out = Vec::new();
        let answer = answer_plain(&mut out, &PlainHttp { method, path }, metrics);
        (String::from_utf8(out).unwrap(), answer)
    }

    #[test]
    fn plain_http_by_path_whatever_the_query() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Connection: close\r\nContent-Length: 3\r\n\r\n";
        for path in ["/healthz", "/healthz?probe=1", "/healthz?", "/healthz#x"] {
            assert!(is_health_check(&PlainHttp {
                method: "GET",
                path
            }));
            assert!(is_health_check(&PlainHttp {
                method: "HEAD",
                path
            }));
            assert!(!is_health_check(&PlainHttp {
                method: "POST",
                path
            }));
            assert_eq!(
                plain("GET", path, None),
                (format!("{ok}ok\n"), PlainAnswer::Written)
            );
            // HEAD: the same header block, Content-Length included, no body.
            assert_eq!(
                plain("HEAD", path, None),
                (ok.to_string(), PlainAnswer::Written)
            );
        }
        let m = Some("/metrics");
        for path in ["/metrics", "/metrics?x=1"] {
            assert_eq!(
                plain("GET", path, m).1,
                PlainAnswer::Metrics { head: false }
            );
            assert_eq!(
                plain("HEAD", path, m).1,
                PlainAnswer::Metrics { head: true }
            );
        }
        for (method, path) in [
            ("POST", "/healthz"),
            ("DELETE", "/metrics?x"),
            ("get", "/healthz"),
        ] {
            let (text, answer) = plain(method, path, m);
            assert_eq!(answer, PlainAnswer::Written);
            assert!(
                text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        }
        // Other paths, near misses and a disabled metrics path: 426.
        for (method, path, metrics) in [
            ("GET", "/", m),
            ("HEAD", "/", m),
            ("POST", "/x", m),
            ("GET", "/healthzz", m),
            ("GET", "/healthz/", m),
            ("GET", "/metrics/", m),
            ("GET", "/metrics", None),
            ("GET", "?/healthz", m),
        ] {
            let (text, answer) = plain(method, path, metrics);
            assert_eq!(answer, PlainAnswer::Written);
            assert!(text.starts_with("HTTP/1.1 426 "), "{method} {path}: {text}");
        }
    }

    #[test]
    fn decimal() {
        for (n, want) in [(0, "0"), (7, "7"), (10, "10"), (8192, "8192")] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(s(&out), want);
        }
        let mut out = Vec::new();
        push_decimal(&mut out, usize::MAX);
        assert_eq!(s(&out), usize::MAX.to_string());
    }

    #[test]
    fn reject_426_carries_version() {
        let mut out = Vec::new();
        write_reject(&mut out, &Reject::new(RejectReason::BadWsVersion));
        assert_eq!(
            s(&out),
            "HTTP/1.1 426 Upgrade Required\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Connection: Upgrade, close\r\n\
             Upgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Content-Length: 33\r\n\
             \r\n\
             Sec-WebSocket-Version must be 13\n"
        );
    }

    #[test]
    fn reject_400_and_405_and_431() {
        let mut out = Vec::new();
        write_reject(&mut out, &Reject::new(RejectReason::BadKey));
        assert_eq!(
            s(&out),
            "HTTP/1.1 400 Bad Request\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\n\
             Content-Length: 61\r\n\
             \r\n\
             Sec-WebSocket-Key must appear once and be base64 of 16 bytes\n"
        );
        out.clear();
        write_reject(&mut out, &Reject::new(RejectReason::Method));
        assert!(s(&out).starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(s(&out).contains("\r\nAllow: GET\r\n"));
        out.clear();
        write_reject(&mut out, &Reject::new(RejectReason::HeaderTooLarge));
        assert!(s(&out).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(!s(&out).contains("Sec-WebSocket-Version"));
    }

    #[test]
    fn healthz_and_default() {
        let mut out = Vec::new();
        let health = PlainHttp {
            method: "GET",
            path: "/healthz",
        };
        default_http_response(&mut out, &health);
        assert_eq!(
            s(&out),
            "HTTP/1.1 200 OK\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\n\
             Content-Length: 3\r\n\
             \r\n\
             ok\n"
        );
        out.clear();
        let other = PlainHttp {
            method: "GET",
            path: "/",
        };
        default_http_response(&mut out, &other);
        assert_eq!(
            s(&out),
            "HTTP/1.1 426 Upgrade Required\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Connection: Upgrade, close\r\n\
             Upgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Content-Length: 47\r\n\
             \r\n\
             this is a WebSocket endpoint: upgrade required\n"
        );
        out.clear();
        let post = PlainHttp {
            method: "POST",
            path: "/healthz",
        };
        default_http_response(&mut out, &post);
        assert!(s(&out).starts_with("HTTP/1.1 405 "));
    }
}
