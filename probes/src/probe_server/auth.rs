//! Who may ask the probe server: an optional bearer token (RFC 6750 §2.1) and/or HTTP Basic
//! credentials (RFC 7617), either accepted. Only SHA-256 digests of the expected secrets are
//! kept, and a presented credential is compared digest to digest in constant time (`subtle`),
//! so neither its content nor its length shows in the answer's timing. `Debug` shows which
//! kinds are configured, never a secret.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What authorises a request.
#[derive(Clone, Default)]
pub struct Auth {
    bearer: Option<[u8; 32]>,
    basic: Option<[u8; 32]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("bearer", &self.bearer.is_some())
            .field("basic", &self.basic.is_some())
            .finish()
    }
}

/// Why a request is not authorised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("authorization required")]
    Missing,
    /// A scheme not configured, a malformed value, or a wrong secret (not told apart).
    #[error("authorization refused")]
    Refused,
}

/// Why a configured secret is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Empty.
    #[error("the {what} is empty")]
    Empty {
        /// Token or Basic credentials.
        what: &'static str,
    },
    /// Basic credentials without `user:password`.
    #[error("basic credentials must read USER:PASSWORD")]
    NoColon,
    /// Characters a header value cannot carry (RFC 9110 §5.5) or a token cannot hold.
    #[error("the {what} holds characters an HTTP header cannot carry")]
    Characters {
        /// Token or Basic credentials.
        what: &'static str,
    },
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

impl Auth {
    /// No authorisation: every request is served.
    pub fn none() -> Auth {
        Auth::default()
    }

    /// Whether any credential is required.
    pub fn required(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    /// Also accept `Authorization: Bearer TOKEN` (RFC 6750 §2.1: token68 characters).
    pub fn with_bearer(mut self, token: &str) -> Result<Auth, SecretError> {
        let what = "bearer token";
        if token.is_empty() {
            return Err(SecretError::Empty { what });
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        {
            return Err(SecretError::Characters { what });
        }
        self.bearer = Some(digest(token.as_bytes()));
        Ok(self)
    }

    /// Also accept `Authorization: Basic base64(USER:PASSWORD)` (RFC 7617 §2).
    pub fn with_basic(mut self, user_password: &str) -> Result<Auth, SecretError> {
        let what = "basic credentials";
        if user_password.is_empty() {
            return Err(SecretError::Empty { what });
        }
        if !user_password.contains(':') {
            return Err(SecretError::NoColon);
        }
        if user_password.chars().any(char::is_control) {
            return Err(SecretError::Characters { what });
        }
        self.basic = Some(digest(user_password.as_bytes()));
        Ok(self)
    }

    /// The `WWW-Authenticate` challenges of a 401 answer (RFC 9110 §11.6.1).
    pub fn challenges(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.bearer.is_some() {
            v.push("Bearer realm=\"stunmap\"");
        }
        if self.basic.is_some() {
            v.push("Basic realm=\"stunmap\", charset=\"UTF-8\"");
        }
        v
    }

    /// Check the `Authorization` header value, if any.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), AuthError> {
        if !self.required() {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(AuthError::Missing);
        };
        let value = std::str::from_utf8(value).map_err(|_| AuthError::Refused)?;
        let (scheme, credentials) = value.trim().split_once(' ').ok_or(AuthError::Refused)?;
        let credentials = credentials.trim_start();
        let ok = if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer
                .as_ref()
                .is_some_and(|want| equal(want, &digest(credentials.as_bytes())))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .map_err(|_| AuthError::Refused)?;
            self.basic
                .as_ref()
                .is_some_and(|want| equal(want, &digest(&decoded)))
        } else {
            false
        };
        if ok { Ok(()) } else { Err(AuthError::Refused) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nothing_configured_serves_everyone() {
        assert_eq!(Auth::none().check(None), Ok(()));
        assert_eq!(Auth::none().check(Some(b"Bearer x")), Ok(()));
    }

    #[test]
    fn bearer_tokens() {
        let a = Auth::none().with_bearer("s3cr3t-Token").unwrap();
        assert_eq!(a.check(None), Err(AuthError::Missing));
        assert_eq!(a.check(Some(b"Bearer s3cr3t-Token")), Ok(()));
        assert_eq!(a.check(Some(b"bearer  s3cr3t-Token")), Ok(()));
        assert_eq!(
            a.check(Some(b"Bearer s3cr3t-Toke")),
            Err(AuthError::Refused)
        );
        assert_eq!(
            a.check(Some(b"Bearer s3cr3t-Token2")),
            Err(AuthError::Refused)
        );
        assert_eq!(
            a.check(Some(b"Basic czNjcjN0LVRva2Vu")),
            Err(AuthError::Refused)
        );
        assert_eq!(a.check(Some(b"s3cr3t-Token")), Err(AuthError::Refused));
        assert_eq!(a.check(Some(b"\xff\xfe")), Err(AuthError::Refused));
        assert!(Auth::none().with_bearer("").is_err());
        assert!(Auth::none().with_bearer("a b").is_err());
    }

    #[test]
    fn basic_credentials() {
        let a = Auth::none().with_basic("prom:pa:ss").unwrap();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("prom:pa:ss")
        );
        assert_eq!(a.check(Some(good.as_bytes())), Ok(()));
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("prom:pass")
        );
        assert_eq!(a.check(Some(bad.as_bytes())), Err(AuthError::Refused));
        assert_eq!(a.check(Some(b"Basic !!!")), Err(AuthError::Refused));
        assert!(Auth::none().with_basic("nocolon").is_err());
        assert_eq!(a.challenges().len(), 1);
    }

    #[test]
    fn either_kind_passes_and_debug_hides_secrets() {
        let a = Auth::none()
            .with_bearer("tok")
            .unwrap()
            .with_basic("u:p")
            .unwrap();
        assert_eq!(a.check(Some(b"Bearer tok")), Ok(()));
        assert_eq!(a.check(Some(b"Basic dTpw")), Ok(()));
        let d = format!("{a:?}");
        assert!(!d.contains("tok") && !d.contains("u:p"), "{d}");
        assert_eq!(a.challenges().len(), 2);
    }
}
