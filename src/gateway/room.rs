//! Room names and the `rooms` claim's grants.

use std::fmt;
use std::rc::Rc;

/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 128;

/// A validated room name: 1 to [`MAX_ROOM_LEN`] bytes of ASCII letters,
/// digits and `_ - . : @ /`. `:` separates namespaces (`team:general`), which
/// the `rooms` claim's `prefix:*` patterns match; `*`, spaces, `#` and
/// control characters are never part of a name, so a reactor may build
/// topic names such as `json#room` without ambiguity.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Rc<str>);

/// Why a string is not a room name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomError {
    /// Zero bytes.
    Empty,
    /// More than [`MAX_ROOM_LEN`] bytes.
    TooLong,
    /// A byte outside the documented set.
    BadChar,
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "room name is empty",
            Self::TooLong => "room name is longer than 128 bytes",
            Self::BadChar => "room name may only hold ASCII letters, digits and _ - . : @ /",
        })
    }
}

fn room_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/')
}

impl RoomName {
    /// Validate `s` as a room name.
    pub fn new(s: &str) -> Result<Self, RoomError> {
        check(s)?;
        Ok(Self(Rc::from(s)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(s: &str) -> Result<(), RoomError> {
    if s.is_empty() {
        return Err(RoomError::Empty);
    }
    if s.len() > MAX_ROOM_LEN {
        return Err(RoomError::TooLong);
    }
    if !s.bytes().all(room_byte) {
        return Err(RoomError::BadChar);
    }
    Ok(())
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RoomName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// One entry of the `rooms` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// Exactly this room.
    Exact(String),
    /// Every room starting with this prefix (which ends with `:`).
    Prefix(String),
}

/// The rooms a token allows: exact names, or `prefix:*` patterns matching
/// every room that starts with `prefix:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

impl Grants {
    /// Parse the claim's entries; `None` names the first invalid one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_ref();
            if let Some(prefix) = e.strip_suffix('*') {
                // The prefix itself must be a name fragment that ends a namespace.
                if !prefix.ends_with(':') || check(prefix).is_err() {
                    return Err(format!(
                        "bad rooms pattern {e:?}: only `prefix:*` is allowed"
                    ));
                }
                out.push(Grant::Prefix(prefix.to_owned()));
            } else {
                check(e).map_err(|err| format!("bad room {e:?} in rooms claim: {err}"))?;
                out.push(Grant::Exact(e.to_owned()));
            }
        }
        Ok(Self(out))
    }

    /// Whether `room` is granted.
    pub fn allows(&self, room: &str) -> bool {
        self.0.iter().any(|g| match g {
            Grant::Exact(r) => r == room,
            Grant::Prefix(p) => room.len() > p.len() && room.starts_with(p.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(RoomName::new("lobby").is_ok());
        assert!(RoomName::new("team:general/2024@x.y-z_w").is_ok());
        assert_eq!(RoomName::new("").unwrap_err(), RoomError::Empty);
        assert!(RoomName::new(&"a".repeat(MAX_ROOM_LEN)).is_ok());
        assert_eq!(
            RoomName::new(&"a".repeat(MAX_ROOM_LEN + 1)).unwrap_err(),
            RoomError::TooLong
        );
        for bad in ["a b", "a*", "a#b", "é", "a\n", "a\"b"] {
            assert_eq!(
                RoomName::new(bad).unwrap_err(),
                RoomError::BadChar,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn grants() {
        let g = Grants::parse(&["lobby", "team:*"]).unwrap();
        assert!(g.allows("lobby"));
        assert!(!g.allows("lobby2"));
        assert!(g.allows("team:a"));
        assert!(g.allows("team:a:b"));
        assert!(!g.allows("team:"));
        assert!(!g.allows("team"));
        assert!(!g.allows("teams:a"));
        assert!(Grants::parse(&["*"]).is_err());
        assert!(Grants::parse(&["team*"]).is_err());
        assert!(Grants::parse(&["a:*:*"]).is_err());
        assert!(Grants::parse(&["bad room"]).is_err());
        assert!(!Grants::parse::<&str>(&[]).unwrap().allows("lobby"));
    }
}
