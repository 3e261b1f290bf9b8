//! Credentials and message integrity for TURN, RFC 8489 §9.2 (long-term credential mechanism)
//! and the TURN REST ephemeral credentials that coturn's `use-auth-secret` and NetBird use.
//!
//! Secrets never leave this module in readable form: [`Password`], [`SharedSecret`] and
//! [`LongTermKey`] print as `<redacted>` in `Debug`, have no `Display`, and are not
//! serializable.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::TurnError;
use crate::stun::{HEADER_LEN, attr};

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// A password (static user, or derived REST password). Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wrap a password.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The shared secret of TURN REST credentials (coturn `static-auth-secret`). Redacted in
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Vec<u8>);

impl SharedSecret {
    /// Wrap a secret; it must not be empty.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, TurnError> {
        let s = secret.into();
        if s.is_empty() {
            return Err(TurnError::EmptySecret);
        }
        Ok(Self(s))
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// A user name and password for the long-term credential mechanism, RFC 8489 §9.2.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// USERNAME, RFC 8489 §14.3 (sent in clear on the wire, so not secret).
    pub username: String,
    password: Password,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl Credentials {
    /// Static credentials.
    pub fn new(username: impl Into<String>, password: Password) -> Self {
        Self {
            username: username.into(),
            password,
        }
    }

    /// TURN REST ephemeral credentials (the "TURN REST API" draft that coturn implements as
    /// `use-auth-secret`): user name `EXPIRY:USER` where EXPIRY is a Unix time in seconds, and
    /// password = base64(HMAC-SHA1(secret, user name)). The caller supplies the expiry (this
    /// crate reads no clock): typically now + the TTL.
    pub fn rest(secret: &SharedSecret, user: &str, expiry_unix: u64) -> Result<Self, TurnError> {
        if user.is_empty() || user.contains(':') {
            return Err(TurnError::BadRestUser);
        }
        let username = format!("{expiry_unix}:{user}");
        let mut mac = HmacSha1::new_from_slice(&secret.0).map_err(|_| TurnError::EmptySecret)?;
        mac.update(username.as_bytes());
        let password =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Ok(Self {
            username,
            password: Password(password),
        })
    }
}

/// PASSWORD-ALGORITHM values, RFC 8489 §18.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordAlgorithm {
    /// 0x0001: key = MD5(user:realm:password) (also the RFC 5389 key).
    Md5,
    /// 0x0002: key = SHA-256(user:realm:password).
    Sha256,
}

impl PasswordAlgorithm {
    /// The registry value.
    pub fn code(self) -> u16 {
        match self {
            PasswordAlgorithm::Md5 => 0x0001,
            PasswordAlgorithm::Sha256 => 0x0002,
        }
    }
}

/// Which integrity attribute a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY, HMAC-SHA1, RFC 8489 §14.5.
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256, HMAC-SHA256, RFC 8489 §14.6.
    Sha256,
}

impl std::fmt::Display for PasswordAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordAlgorithm::Md5 => "MD5",
            PasswordAlgorithm::Sha256 => "SHA-256",
        })
    }
}

impl std::fmt::Display for IntegrityKind {
    /// The attribute's name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IntegrityKind::Sha1 => "MESSAGE-INTEGRITY",
            IntegrityKind::Sha256 => "MESSAGE-INTEGRITY-SHA256",
        })
    }
}

/// The long-term key, RFC 8489 §9.2.2: the hash of `username ":" realm ":" password` (the
/// OpaqueString/SASLprep step is the identity for the ASCII credentials TURN deployments use;
/// other strings are hashed as given). Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermKey(Vec<u8>);

impl fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LongTermKey(<redacted>)")
    }
}

impl LongTermKey {
    /// Derive the key for `realm` with `algorithm`.
    pub fn derive(creds: &Credentials, realm: &[u8], algorithm: PasswordAlgorithm) -> Self {
        let parts: [&[u8]; 5] = [
            creds.username.as_bytes(),
            b":",
            realm,
            b":",
            creds.password.expose().as_bytes(),
        ];
        match algorithm {
            PasswordAlgorithm::Md5 => {
                let mut h = Md5::new();
                for p in parts {
                    h.update(p);
                }
                Self(h.finalize().to_vec())
            }
            PasswordAlgorithm::Sha256 => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                Self(h.finalize().to_vec())
            }
        }
    }

    /// The MESSAGE-INTEGRITY value (HMAC-SHA1) over `covered`, which must already carry the
    /// adjusted length field (see [`crate::stun::MessageWriter::attr_over_message`]).
    pub fn hmac_sha1(&self, covered: &[u8]) -> Vec<u8> {
        self.hmac::<HmacSha1>(covered)
    }

    /// The MESSAGE-INTEGRITY-SHA256 value over `covered`.
    pub fn hmac_sha256(&self, covered: &[u8]) -> Vec<u8> {
        self.hmac::<HmacSha256>(covered)
    }

    /// The HMAC `M` with this key over `covered` (empty if `M` refused the key).
    fn hmac<M: Mac + hmac::digest::KeyInit>(&self, covered: &[u8]) -> Vec<u8> {
        match <M as Mac>::new_from_slice(&self.0) {
            Ok(mut m) => {
                m.update(covered);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Check the integrity of a received message (already validated by `StunView::parse`).
    /// MESSAGE-INTEGRITY-SHA256 is checked when present, else MESSAGE-INTEGRITY; the HMAC covers
    /// the message up to the attribute with the length field rewritten to end right after it
    /// (RFC 8489 §14.5, §14.6). Comparison is constant-time.
    pub fn verify(&self, msg: &[u8]) -> Integrity {
        let mut mi = None;
        let mut mi256 = None;
        let mut offset = HEADER_LEN;
        while let Some(&[k0, k1, n0, n1]) = msg.get(offset..).and_then(|b| b.first_chunk::<4>()) {
            let kind = u16::from_be_bytes([k0, k1]);
            let len = usize::from(u16::from_be_bytes([n0, n1]));
            match kind {
                attr::MESSAGE_INTEGRITY if mi.is_none() && mi256.is_none() => {
                    mi = Some((offset, len));
                }
                attr::MESSAGE_INTEGRITY_SHA256 if mi256.is_none() => mi256 = Some((offset, len)),
                _ => {}
            }
            offset += 4 + ((len + 3) & !3);
        }
        let (offset, len, sha256) = match (mi256, mi) {
            (Some((o, l)), _) => (o, l, true),
            (None, Some((o, l))) => (o, l, false),
            (None, None) => return Integrity::Absent,
        };
        let valid_len = if sha256 {
            (16..=32).contains(&len) && len % 4 == 0
        } else {
            len == 20
        };
        let (Some(head), Some(body), Some(value)) = (
            msg.get(..2),
            msg.get(4..offset),
            msg.get(offset + 4..offset + 4 + len),
        ) else {
            return Integrity::Invalid;
        };
        if !valid_len {
            return Integrity::Invalid;
        }
        let adjusted = ((offset + 4 + len - HEADER_LEN) as u16).to_be_bytes();
        let ok = if sha256 {
            HmacSha256::new_from_slice(&self.0).is_ok_and(|mut m| {
                m.update(head);
                m.update(&adjusted);
                m.update(body);
                m.verify_truncated_left(value).is_ok()
            })
        } else {
            HmacSha1::new_from_slice(&self.0).is_ok_and(|mut m| {
                m.update(head);
                m.update(&adjusted);
                m.update(body);
                m.verify_slice(value).is_ok()
            })
        };
        if ok {
            Integrity::Valid
        } else {
            Integrity::Invalid
        }
    }
}

/// Result of checking a response's integrity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integrity {
    /// Neither MESSAGE-INTEGRITY nor MESSAGE-INTEGRITY-SHA256 is present.
    Absent,
    /// Present and correct.
    Valid,
    /// Present and wrong (or malformed): the response is not trusted.
    Invalid,
}

/// The RFC 8489 §9.2 nonce cookie: a NONCE starting with it comes from a server that
/// implements RFC 8489's security features (PASSWORD-ALGORITHMS, MESSAGE-INTEGRITY-SHA256).
pub const NONCE_COOKIE: &[u8] = b"obMatJos2";

/// Pick the password algorithm from a PASSWORD-ALGORITHMS value (RFC 8489 §14.11: a list of
/// 2-byte algorithm, 2-byte parameter length, parameters padded to 4): SHA-256 when offered,
/// else MD5 when offered; `None` when neither is.
pub fn choose_algorithm(password_algorithms: &[u8]) -> Option<PasswordAlgorithm> {
    let mut rest = password_algorithms;
    let mut md5 = false;
    while let Some((&[a0, a1, l0, l1], tail)) = rest.split_first_chunk::<4>() {
        match u16::from_be_bytes([a0, a1]) {
            0x0002 => return Some(PasswordAlgorithm::Sha256),
            0x0001 => md5 = true,
            _ => {}
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 3) & !3;
        rest = tail.get(len..).unwrap_or(&[]);
    }
    md5.then_some(PasswordAlgorithm::Md5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{MessageType, MessageWriter, TransactionId};

    fn creds() -> Credentials {
        Credentials::new("user", Password::new("pass"))
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = SharedSecret::new(b"topsecret".to_vec()).unwrap();
        let c = Credentials::rest(&s, "alice", 1_700_000_000).unwrap();
        let k = LongTermKey::derive(&c, b"lab", PasswordAlgorithm::Md5);
        let all = format!("{s:?} {c:?} {k:?} {:?}", Password::new("hunter2"));
        assert!(!all.contains("topsecret"));
        assert!(!all.contains("hunter2"));
        assert!(!all.contains(c.password.expose()));
        assert!(all.contains("1700000000:alice"));
        assert!(all.contains("<redacted>"));
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_pass() {
        // MD5("user:realm:pass") computed independently (coreutils md5sum).
        let k = LongTermKey::derive(&creds(), b"realm", PasswordAlgorithm::Md5);
        let hex: String = k.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "8493fbc53ba582fb4c044c456bdc40eb");
    }

    #[test]
    fn rest_password_is_base64_hmac_sha1() {
        // printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let s = SharedSecret::new(b"secret".to_vec()).unwrap();
        let c = Credentials::rest(&s, "alice", 1_700_000_000).unwrap();
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password.expose(), "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
        assert!(Credentials::rest(&s, "a:b", 1).is_err());
        assert!(Credentials::rest(&s, "", 1).is_err());
        assert!(SharedSecret::new(Vec::new()).is_err());
    }

    /// RFC 5769 §2.4 test vector: a request with long-term authentication (MD5 key, SHA-1
    /// MESSAGE-INTEGRITY). The user name and password are the vector's, which use non-ASCII
    /// characters that SASLprep maps to themselves.
    #[test]
    fn rfc5769_long_term_vector_verifies() {
        let msg: Vec<u8> = [
            "000100602112a44278ad3433c6ad72c029da412e",
            "00060012e3839ee38388e383aae38383e382afe382b90000",
            "0015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b",
            "6578616d706c652e6f726700",
            "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666",
        ]
        .concat()
        .as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect();
        let c = Credentials::new(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
            Password::new("TheMatrIX"),
        );
        let k = LongTermKey::derive(&c, b"example.org", PasswordAlgorithm::Md5);
        assert_eq!(k.verify(&msg), Integrity::Valid);
        let mut bad = msg.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(k.verify(&bad), Integrity::Invalid);
        let wrong = LongTermKey::derive(&creds(), b"example.org", PasswordAlgorithm::Md5);
        assert_eq!(wrong.verify(&msg), Integrity::Invalid);
    }

    #[test]
    fn sign_then_verify_both_kinds_with_fingerprint_after() {
        for (alg, kind) in [
            (PasswordAlgorithm::Md5, IntegrityKind::Sha1),
            (PasswordAlgorithm::Sha256, IntegrityKind::Sha256),
        ] {
            let k = LongTermKey::derive(&creds(), b"lab", alg);
            let mut buf = Vec::new();
            let mut w = MessageWriter::new(
                &mut buf,
                MessageType::BINDING_REQUEST,
                &TransactionId([9; 12]),
            );
            w.software("x");
            match kind {
                IntegrityKind::Sha1 => {
                    w.attr_over_message(attr::MESSAGE_INTEGRITY, 20, |m| k.hmac_sha1(m))
                }
                IntegrityKind::Sha256 => {
                    w.attr_over_message(attr::MESSAGE_INTEGRITY_SHA256, 32, |m| k.hmac_sha256(m))
                }
            };
            w.fingerprint();
            w.finish();
            assert_eq!(k.verify(&buf), Integrity::Valid, "{kind:?}");
            let mut bad = buf.clone();
            bad[30] ^= 1;
            assert_eq!(k.verify(&bad), Integrity::Invalid);
        }
        let mut plain = Vec::new();
        MessageWriter::new(
            &mut plain,
            MessageType::BINDING_REQUEST,
            &TransactionId([1; 12]),
        )
        .finish();
        let k = LongTermKey::derive(&creds(), b"lab", PasswordAlgorithm::Md5);
        assert_eq!(k.verify(&plain), Integrity::Absent);
    }

    #[test]
    fn algorithm_choice_prefers_sha256() {
        assert_eq!(
            choose_algorithm(&[0, 1, 0, 0, 0, 2, 0, 0]),
            Some(PasswordAlgorithm::Sha256)
        );
        assert_eq!(
            choose_algorithm(&[0, 1, 0, 0]),
            Some(PasswordAlgorithm::Md5)
        );
        assert_eq!(choose_algorithm(&[0, 9, 0, 1, 7, 0, 0, 0]), None);
        assert_eq!(choose_algorithm(&[0, 1]), None);
    }
}
