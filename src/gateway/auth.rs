//! Handshake authentication: JWT (HS256, RS256, ES256) or anonymous names.
//!
//! The token comes from `Authorization: Bearer T` or, for browsers (which
//! cannot set headers on a WebSocket), from `?token=T` in the request
//! target. Claims: `sub` (required) is the user, shown as `from`; `exp`
//! (required, seconds since the epoch) is enforced at the handshake and
//! while connected; `nbf` is enforced when present; `rooms` (optional) lists
//! the rooms the user may join, exact names or `prefix:*`.
//!
//! Every failure has a [`AuthError::label`] for metrics. Times come from
//! the caller (`now_ms`), never from the system clock, so expiry is
//! testable and the gateway stays sans-IO.

use std::fmt;
use std::rc::Rc;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::room::Grants;

/// Longest `sub` (and anonymous name), in bytes.
pub const MAX_USER_LEN: usize = 64;
/// Longest anonymous `?name=`, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a connection was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token (neither header nor query).
    Missing,
    /// Not a JWT: wrong shape, bad base64 or JSON, or an `Authorization`
    /// header that is not `Bearer`, or a token given twice.
    Malformed(String),
    /// `alg: none`: an unsigned token.
    AlgNone,
    /// Signed with another algorithm than the key's.
    WrongAlg(String),
    /// The signature does not verify.
    BadSignature,
    /// A required claim is missing or invalid (`sub`, `exp`, `rooms`).
    Claims(String),
    /// `exp` has passed.
    Expired,
    /// `nbf` is still ahead.
    NotYetValid,
    /// An anonymous `?name=` that is not a valid name.
    BadName,
    /// A refresh token for another user than the connection's.
    OtherUser,
}

impl AuthError {
    /// The metrics label: `missing`, `malformed`, `alg_none`, `wrong_alg`,
    /// `bad_signature`, `claims`, `expired`, `not_yet_valid`, `bad_name`,
    /// `other_user`.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgNone => "alg_none",
            AuthError::WrongAlg(_) => "wrong_alg",
            AuthError::BadSignature => "bad_signature",
            AuthError::Claims(_) => "claims",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadName => "bad_name",
            AuthError::OtherUser => "other_user",
        }
    }

    /// Every label, for metrics that list zeros too.
    pub const LABELS: [&'static str; 10] = [
        "missing",
        "malformed",
        "alg_none",
        "wrong_alg",
        "bad_signature",
        "claims",
        "expired",
        "not_yet_valid",
        "bad_name",
        "other_user",
    ];

    /// The HTTP status for a handshake: 400 for a bad anonymous name, 401
    /// for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::BadName => 400,
            _ => 401,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("no token"),
            AuthError::Malformed(m) => write!(f, "malformed token: {m}"),
            AuthError::AlgNone => f.write_str("unsigned token (alg none)"),
            AuthError::WrongAlg(a) => write!(f, "token signed with {a}, not the key's algorithm"),
            AuthError::BadSignature => f.write_str("bad signature"),
            AuthError::Claims(m) => write!(f, "bad claims: {m}"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not valid yet (nbf)"),
            AuthError::BadName => {
                f.write_str("name must be 1 to 32 ASCII letters, digits, '_', '-' or '.'")
            }
            AuthError::OtherUser => f.write_str("token is for another user"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (`sub`, or the anonymous name).
    pub user: Rc<str>,
    /// When the token expires, ms since the epoch (`None`: anonymous).
    pub expires_ms: Option<u64>,
    /// The rooms it may join (`None`: all).
    pub rooms: Option<Grants>,
}

impl Identity {
    /// Whether this identity may join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms.as_ref().is_none_or(|g| g.allows(room))
    }
}

/// A JWT verifier for one key and its algorithm.
pub struct JwtVerifier {
    key: DecodingKey,
    alg: Algorithm,
    /// Seconds of clock skew tolerated on `exp` and `nbf`. Default 0.
    pub leeway_s: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("alg", &self.alg)
            .field("leeway_s", &self.leeway_s)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be loaded.
#[derive(Debug)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

#[derive(Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    rooms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: Option<serde_json::Value>,
}

impl JwtVerifier {
    /// HS256 with a shared secret (at least 32 bytes: shorter secrets are
    /// guessable offline from any token).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError(format!(
                "HS256 secret is {} bytes; at least 32 are required",
                secret.len()
            )));
        }
        Ok(JwtVerifier {
            key: DecodingKey::from_secret(secret).map_err(|e| KeyError(e.to_string()))?,
            alg: Algorithm::HS256,
            leeway_s: 0,
        })
    }

    /// HS256 with the secret in a file (`--jwt-secret-file`); one trailing
    /// newline is not part of the secret.
    pub fn hs256_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let mut s = std::fs::read(path)
            .map_err(|e| KeyError(format!("reading {}: {e}", path.display())))?;
        if s.last() == Some(&b'\n') {
            s.pop();
            if s.last() == Some(&b'\r') {
                s.pop();
            }
        }
        Self::hs256(&s)
    }

    /// RS256 or ES256 from a PEM public key (`--jwt-public-key`): an RSA
    /// key verifies RS256, a P-256 key ES256.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|_| KeyError("PEM is not text".into()))?;
        if text.contains("PRIVATE KEY") {
            return Err(KeyError(
                "a private key was given; the gateway needs only the public key".into(),
            ));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(JwtVerifier {
                key,
                alg: Algorithm::RS256,
                leeway_s: 0,
            });
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) => Ok(JwtVerifier {
                key,
                alg: Algorithm::ES256,
                leeway_s: 0,
            }),
            Err(e) => Err(KeyError(format!(
                "not an RSA or P-256 public key in PEM: {e}"
            ))),
        }
    }

    /// [`JwtVerifier::public_key_pem`] from a file.
    pub fn public_key_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path)
            .map_err(|e| KeyError(format!("reading {}: {e}", path.display())))?;
        Self::public_key_pem(&pem)
    }

    /// The algorithm tokens must use.
    pub fn algorithm(&self) -> &'static str {
        match self.alg {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            _ => "ES256",
        }
    }

    /// Verify `token` at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long".into()));
        }
        // The header is read here first so `none` and a wrong algorithm get
        // their own labels (the crate reports `none` as bad JSON).
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not three dot-separated parts".into()));
        };
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
        let header: JoseHeader = serde_json::from_slice(&header)
            .map_err(|_| AuthError::Malformed("header is not a JSON object".into()))?;
        let alg = match header.alg {
            Some(serde_json::Value::String(a)) => a,
            _ => return Err(AuthError::Malformed("header has no \"alg\" string".into())),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if alg != self.algorithm() {
            let shown: String = alg.chars().take(16).collect();
            return Err(AuthError::WrongAlg(shown));
        }
        let mut v = Validation::new(self.alg);
        // exp and nbf are checked below against the caller's clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &v).map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlg(alg.clone())
                }
                ErrorKind::Json(_) => AuthError::Malformed("claims are not a JSON object".into()),
                ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                    AuthError::Malformed("bad base64 or JSON".into())
                }
                _ => AuthError::Malformed(e.to_string()),
            })?;
        self.identity(data.claims, now_ms)
    }

    fn identity(&self, c: Claims, now_ms: u64) -> Result<Identity, AuthError> {
        let sub = match c.sub {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(AuthError::Claims("\"sub\" must be a string".into())),
            None => return Err(AuthError::Claims("\"sub\" is required".into())),
        };
        if sub.is_empty() || sub.len() > MAX_USER_LEN || sub.chars().any(char::is_control) {
            return Err(AuthError::Claims(format!(
                "\"sub\" must be 1 to {MAX_USER_LEN} bytes without control characters"
            )));
        }
        let exp = match c.exp.as_ref().map(numeric_date) {
            Some(Some(t)) => t,
            Some(None) => return Err(AuthError::Claims("\"exp\" must be a number".into())),
            None => return Err(AuthError::Claims("\"exp\" is required".into())),
        };
        let leeway_ms = self.leeway_s.saturating_mul(1000);
        let exp_ms = exp.saturating_mul(1000);
        if exp_ms.saturating_add(leeway_ms) <= now_ms {
            return Err(AuthError::Expired);
        }
        match c.nbf.as_ref().map(numeric_date) {
            Some(None) => return Err(AuthError::Claims("\"nbf\" must be a number".into())),
            Some(Some(nbf)) if nbf.saturating_mul(1000) > now_ms.saturating_add(leeway_ms) => {
                return Err(AuthError::NotYetValid)
            }
            _ => {}
        }
        let rooms = match c.rooms {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(a)) => {
                let mut names = Vec::with_capacity(a.len());
                for v in &a {
                    match v {
                        serde_json::Value::String(s) => names.push(s.as_str()),
                        _ => return Err(AuthError::Claims("\"rooms\" must hold strings".into())),
                    }
                }
                Some(Grants::parse(&names).map_err(AuthError::Claims)?)
            }
            Some(_) => return Err(AuthError::Claims("\"rooms\" must be an array".into())),
        };
        Ok(Identity {
            user: Rc::from(sub),
            expires_ms: Some(exp_ms.saturating_add(leeway_ms)),
            rooms,
        })
    }
}

/// A JWT NumericDate: seconds since the epoch, whole (fractions dropped).
fn numeric_date(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// How the gateway authenticates.
#[derive(Debug)]
pub enum Auth {
    /// No key: `?name=` or a generated `guest-...` name.
    Anonymous,
    /// Tokens verified with this key.
    Jwt(JwtVerifier),
}

/// What the upgrade request offered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The token, from `Authorization: Bearer` or `?token=`.
    pub token: Option<String>,
    /// `?name=`, percent-decoded.
    pub name: Option<String>,
}

/// Read the credentials from the request target and headers (name, value).
/// A header that is not `Bearer`, a token or name given twice, or bad
/// percent-encoding is `Malformed`.
pub fn credentials<'a, I>(target: &str, headers: I) -> Result<Credentials, AuthError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut c = Credentials::default();
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("authorization") {
            continue;
        }
        if c.token.is_some() {
            return Err(AuthError::Malformed("two Authorization headers".into()));
        }
        let v = std::str::from_utf8(value)
            .map_err(|_| AuthError::Malformed("Authorization is not text".into()))?
            .trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed("Authorization is not Bearer".into()));
        }
        c.token = Some(rest.trim().to_owned());
    }
    let header_token = c.token.is_some();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "token" if header_token => continue,
            "token" => &mut c.token,
            "name" => &mut c.name,
            _ => continue,
        };
        if slot.is_some() {
            return Err(AuthError::Malformed(format!("{k} given twice")));
        }
        *slot = Some(
            percent_decode(v)
                .ok_or_else(|| AuthError::Malformed(format!("bad percent-encoding in {k}")))?,
        );
    }
    Ok(c)
}

/// Decode `%XX` escapes and `+` (a space, as forms send it); `None` for a
/// broken escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `name` is a valid anonymous name: 1 to [`MAX_NAME_LEN`] bytes
/// of ASCII letters, digits, `_`, `-`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Auth {
    /// Authenticate an upgrade request at `now_ms`. `guest` numbers the
    /// generated name when an anonymous client gives none.
    pub fn authenticate(
        &self,
        creds: &Credentials,
        now_ms: u64,
        guest: u64,
    ) -> Result<Identity, AuthError> {
        match self {
            Auth::Jwt(v) => match creds.token.as_deref() {
                None | Some("") => Err(AuthError::Missing),
                Some(t) => v.verify(t, now_ms),
            },
            Auth::Anonymous => {
                let user = match creds.name.as_deref() {
                    Some(n) if valid_name(n) => n.to_owned(),
                    Some(_) => return Err(AuthError::BadName),
                    None => format!("guest-{guest:06x}"),
                };
                Ok(Identity {
                    user: Rc::from(user),
                    expires_ms: None,
                    rooms: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
        v.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    #[test]
    fn credentials_from_header_and_query() {
        let c = credentials("/ws", h(&[("Authorization", "Bearer abc")])).unwrap();
        assert_eq!(c.token.as_deref(), Some("abc"));
        let c = credentials("/ws?token=a.b.c&name=x", h(&[])).unwrap();
        assert_eq!(c.token.as_deref(), Some("a.b.c"));
        assert_eq!(c.name.as_deref(), Some("x"));
        // The header wins over the query.
        let c = credentials("/ws?token=q", h(&[("authorization", "bearer  h ")])).unwrap();
        assert_eq!(c.token.as_deref(), Some("h"));
        let c = credentials("/ws?name=J%C3%B6rg+X", h(&[])).unwrap();
        assert_eq!(c.name.as_deref(), Some("Jörg X"));
        assert_eq!(credentials("/ws", h(&[])).unwrap(), Credentials::default());
        for (target, headers) in [
            ("/ws", h(&[("Authorization", "Basic abc")])),
            (
                "/ws",
                h(&[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]),
            ),
            ("/ws?token=a&token=b", h(&[])),
            ("/ws?name=%zz", h(&[])),
            ("/ws?name=%C3", h(&[])),
            ("/ws?name=%4", h(&[])),
        ] {
            let e = credentials(target, headers).unwrap_err();
            assert_eq!(e.label(), "malformed", "{target}");
        }
    }

    #[test]
    fn anonymous_names() {
        let a = Auth::Anonymous;
        let id = a
            .authenticate(
                &Credentials {
                    name: Some("ann".into()),
                    token: None,
                },
                0,
                1,
            )
            .unwrap();
        assert_eq!(&*id.user, "ann");
        assert_eq!(id.expires_ms, None);
        assert!(id.may_join("anything"));
        let id = a.authenticate(&Credentials::default(), 0, 0xabc).unwrap();
        assert_eq!(&*id.user, "guest-000abc");
        for bad in ["", "a b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            let e = a
                .authenticate(
                    &Credentials {
                        name: Some(bad.into()),
                        token: None,
                    },
                    0,
                    1,
                )
                .unwrap_err();
            assert_eq!(e, AuthError::BadName);
            assert_eq!(e.http_status(), 400);
        }
    }

    #[test]
    fn key_loading() {
        assert!(JwtVerifier::hs256(b"short").is_err());
        assert!(JwtVerifier::public_key_pem(b"not a key").is_err());
        assert!(JwtVerifier::public_key_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
