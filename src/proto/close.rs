//! Close frames (RFC 6455 §5.5.1, §7.4).

use super::error::{Error, ErrorKind};

/// A received close frame's status code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: u16,
    /// The reason, validated as UTF-8.
    pub reason: &'a str,
}

/// Is `code` acceptable in a close frame received from the peer?
///
/// §7.4.1/§7.4.2: 1000-1003 and 1007-1011 are defined; 1012-1014 are
/// registered with IANA since; 3000-3999 are for libraries and frameworks and
/// 4000-4999 for applications. 1004 is reserved, and 1005, 1006 and 1015
/// "MUST NOT be set as a status code in a Close control frame"; everything
/// else below 3000 is unassigned.
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Is `code` acceptable for us to send? The same set as we accept.
pub fn is_valid_sent_code(code: u16) -> bool {
    is_valid_received_code(code)
}

/// Parse a close payload: empty, or a 2-byte code followed by a UTF-8 reason.
///
/// # Errors
/// A 1-byte payload or an invalid code is a protocol error (1002); a reason
/// that is not UTF-8 is 1007 (§8.1).
pub(crate) fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, Error> {
    match payload {
        [] => Ok(None),
        [_] => Err(Error::new(ErrorKind::Protocol, "close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_received_code(code) {
                return Err(Error::new(ErrorKind::Protocol, "invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| Error::new(ErrorKind::InvalidPayload, "close reason is not UTF-8"))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(is_valid_received_code(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_received_code(code), "{code}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(b"").unwrap(), None);
        assert_eq!(parse_close_payload(&[0x03]).unwrap_err().close_code(), 1002);
        assert_eq!(
            parse_close_payload(b"\x03\xe8bye").unwrap(),
            Some(CloseFrame {
                code: 1000,
                reason: "bye"
            })
        );
        assert_eq!(
            parse_close_payload(b"\x03\xed").unwrap_err().close_code(),
            1002
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xce\xba\xed\xa0\x80")
                .unwrap_err()
                .close_code(),
            1007
        );
    }
}
