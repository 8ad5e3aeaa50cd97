//! Credentials: argon2id password hashes, HMAC-signed access tokens with expiry, random
//! refresh secrets (stored only as SHA-256).

use crate::error::{Error, Result};
use crate::ids::UserId;
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(Error::internal)
}

/// Checks a password against a PHC hash; false on any mismatch or malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    OsRng.fill_bytes(&mut buf);
    B64.encode(buf)
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What an access token says: who, which device and session, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub uid: UserId,
    pub did: String,
    pub sid: String,
    /// The device's platform from login (the kick policy `per_platform` compares it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plt: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// Signs and verifies access tokens: `v1.<base64url(claims)>.<base64url(hmac-sha256)>`.
#[derive(Clone)]
pub struct TokenKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        TokenKeys { secret: secret.to_vec() }
    }

    fn mac(&self, msg: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(msg.as_bytes());
        mac
    }

    /// A secret derived from the token key for another purpose (`label`), as lowercase hex.
    pub fn derive(&self, label: &str) -> String {
        self.mac(label).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Issues a token for the claims.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let body = format!("v1.{payload}");
        let sig = B64.encode(self.mac(&body).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Verifies signature and expiry (`now_secs`); revocation is checked by the caller.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims> {
        let bad = || Error::unauthorized("invalid_token", "invalid access token");
        let (body, sig) = token.rsplit_once('.').ok_or_else(bad)?;
        let payload = body.strip_prefix("v1.").ok_or_else(bad)?;
        let sig = B64.decode(sig).map_err(|_| bad())?;
        self.mac(body).verify_slice(&sig).map_err(|_| bad())?;
        let claims: Claims = B64.decode(payload).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(bad)?;
        if claims.exp <= now_secs {
            return Err(Error::unauthorized("token_expired", "access token expired"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_when_right() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_reject_tampering_other_keys_and_expiry() {
        let k = TokenKeys::new(b"secret-one");
        let claims = Claims { uid: UserId(7), did: "d".into(), sid: "s".into(), plt: "ios".into(), exp: 1_000 };
        let t = k.sign(&claims);
        assert_eq!(k.verify(&t, 999).expect("valid"), claims);
        assert_eq!(k.verify(&t, 1_000).expect_err("expired").code(), "token_expired");
        assert_eq!(TokenKeys::new(b"other").verify(&t, 0).expect_err("wrong key").code(), "invalid_token");
        // Swap in a payload claiming another user, keep the signature.
        let forged = {
            let other = Claims { uid: UserId(8), ..claims.clone() };
            let t2 = k.sign(&other);
            let (body2, _) = t2.rsplit_once('.').expect("dot");
            let (_, sig1) = t.rsplit_once('.').expect("dot");
            format!("{body2}.{sig1}")
        };
        assert!(k.verify(&forged, 0).is_err());
        for junk in ["", "v1", "v1..", "a.b.c", "v1.e30.AAAA"] {
            assert!(k.verify(junk, 0).is_err(), "{junk}");
        }
    }
}
