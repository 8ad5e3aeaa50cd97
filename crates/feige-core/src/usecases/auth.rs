//! Register, login, refresh, logout, and checking a bearer token.

use super::{Feige, Identity};
use crate::auth::{Claims, hash_password, random_token, sha256_hex, verify_password};
use crate::error::{Error, Result};
use crate::model::{NewSession, Push, RotateOutcome, User};
use crate::now_ms;
use crate::ports::Revocation;
use serde::Serialize;
use std::sync::OnceLock;

/// Access and refresh tokens handed to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// `POST /v1/auth/login`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginResult {
    pub user_id: crate::UserId,
    pub device_id: String,
    #[serde(flatten)]
    pub tokens: Tokens,
}

fn valid_username(u: &str) -> bool {
    (3..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn valid_device(d: &str) -> bool {
    (1..=64).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// A real argon2 hash to verify against when the user does not exist, so that a login for an
/// unknown name costs as much as one with a wrong password (no user enumeration by timing).
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("feige-dummy-password").unwrap_or_default())
}

type HashJob = Box<dyn FnOnce() + Send>;

/// Runs a password hash or check off the async workers, on a pool of one thread per CPU. Each
/// argon2 run takes 19 MiB. On tokio's blocking pool a burst of logins ran hundreds at once on
/// as many threads, and glibc kept a 19 MiB arena per thread (seen: 5 GiB of RSS after a few
/// hundred sign-ups, never given back), for no speed-up on two cores.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static POOL: OnceLock<std::sync::mpsc::Sender<HashJob>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..std::thread::available_parallelism().map_or(2, |n| n.get()) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("feige-hash-{i}")).spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        tx
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.send(Box::new(move || {
        let _ = tx.send(f());
    }))
    .map_err(|_| Error::internal("the password hashing pool stopped"))?;
    rx.await.map_err(|_| Error::internal("a password hashing job died"))
}

impl Feige {
    /// `POST /v1/auth/register`.
    pub async fn register(&self, username: &str, password: &str, nickname: Option<&str>) -> Result<User> {
        if !valid_username(username) {
            return Err(Error::bad_request(
                "invalid_username",
                "username must be 3-32 characters of letters, digits, '_', '.' or '-'",
            ));
        }
        if !(8..=128).contains(&password.chars().count()) {
            return Err(Error::bad_request("invalid_password", "password must be 8-128 characters"));
        }
        let nickname = nickname.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(username);
        if nickname.chars().count() > 64 || nickname.chars().any(char::is_control) {
            return Err(Error::bad_request("invalid_nickname", "nickname must be at most 64 printable characters"));
        }
        let password = password.to_owned();
        let hash = blocking(move || hash_password(&password)).await??;
        self.ports.users.create_user(username, nickname, &hash, now_ms()).await
    }

    /// `POST /v1/auth/login`: checks the password and opens a session for the device,
    /// replacing (and disconnecting) an earlier session of the same device.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_id: Option<&str>,
        platform: Option<&str>,
    ) -> Result<LoginResult> {
        if self.config.login_rate_per_min > 0 {
            self.ports.limiter.hit(&format!("login:{username}"), self.config.login_rate_per_min, 60).await?;
        }
        let device_id = match device_id {
            Some(d) if valid_device(d) => d.to_owned(),
            Some(_) => {
                return Err(Error::bad_request("invalid_device_id", "device_id must be 1-64 URL-safe characters"));
            }
            None => random_token(12),
        };
        let platform = platform.unwrap_or("unknown");
        if platform.len() > 32 {
            return Err(Error::bad_request("invalid_platform", "platform must be at most 32 characters"));
        }
        let found = self.ports.users.credentials(username).await?;
        let hash = found.as_ref().map(|(_, h)| h.clone()).unwrap_or_else(|| dummy_hash().to_owned());
        let pw = password.to_owned();
        let ok = blocking(move || verify_password(&pw, &hash)).await?;
        let user = match found {
            Some((user, _)) if ok => user,
            _ => {
                return Err(Error::unauthorized("invalid_credentials", "wrong username or password"));
            }
        };
        let sid = random_token(16);
        let (refresh_token, refresh_hash) = self.new_refresh(&sid);
        let now = now_ms();
        let replaced = self
            .ports
            .sessions
            .create_session(&NewSession {
                sid: sid.clone(),
                user_id: user.user_id,
                device_id: device_id.clone(),
                platform: platform.to_owned(),
                refresh_hash,
                refresh_expires_at: now + self.config.refresh_ttl_secs as i64 * 1000,
                created_at: now,
            })
            .await?;
        for old in replaced {
            self.close_session(user.user_id, &old).await?;
        }
        let access_token = self.access_token(user.user_id, &device_id, &sid, platform);
        Ok(LoginResult {
            user_id: user.user_id,
            device_id,
            tokens: Tokens { access_token, refresh_token, expires_in: self.config.access_ttl_secs },
        })
    }

    /// `POST /v1/auth/refresh`: rotates the refresh token. Replaying an old one revokes the
    /// whole session (it was stolen or copied).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let invalid = || Error::unauthorized("invalid_refresh_token", "refresh token is invalid, expired or revoked");
        let (sid, secret) = refresh_token.split_once('.').ok_or_else(invalid)?;
        if sid.is_empty() || secret.is_empty() {
            return Err(invalid());
        }
        let (new_token, new_hash) = self.new_refresh(sid);
        let now = now_ms();
        let expires = now + self.config.refresh_ttl_secs as i64 * 1000;
        match self.ports.sessions.rotate_refresh(sid, &sha256_hex(secret), &new_hash, expires, now).await? {
            RotateOutcome::Rotated { user_id, device_id, platform } => Ok(Tokens {
                access_token: self.access_token(user_id, &device_id, sid, &platform),
                refresh_token: new_token,
                expires_in: self.config.access_ttl_secs,
            }),
            RotateOutcome::Reused { user_id } => {
                tracing::warn!(%user_id, "refresh token replayed; session revoked");
                self.close_session(user_id, sid).await?;
                Err(invalid())
            }
            RotateOutcome::Invalid => Err(invalid()),
        }
    }

    /// `POST /v1/auth/logout`: this device's tokens die now and its sockets close.
    pub async fn logout(&self, who: &Identity) -> Result<()> {
        self.ports.sessions.revoke_session(&who.sid, now_ms()).await?;
        self.close_session(who.user_id, &who.sid).await
    }

    /// Verifies a bearer token: signature, expiry, revocation.
    pub async fn authenticate(&self, token: &str) -> Result<Identity> {
        let claims = self.keys.verify(token, now_ms() / 1000)?;
        let mut state = self.ports.revocations.check(&claims.sid).await?;
        if state == Revocation::Cold {
            self.restore_revocations().await?;
            state = self.ports.revocations.check(&claims.sid).await?;
        }
        match state {
            Revocation::Valid => {
                Ok(Identity { user_id: claims.uid, device_id: claims.did, sid: claims.sid, platform: claims.plt })
            }
            Revocation::Revoked => Err(Error::unauthorized("token_revoked", "this session has been logged out")),
            Revocation::Cold => Err(Error::unavailable("cache", "revocation cache would not warm up")),
        }
    }

    /// Re-seeds a cold revocation cache from the durable session table (process start, or a
    /// flushed Redis), then marks it warm.
    pub async fn restore_revocations(&self) -> Result<usize> {
        let ttl = self.config.access_ttl_secs;
        let sids = self.ports.sessions.revoked_since(now_ms() - ttl as i64 * 1000).await?;
        for sid in &sids {
            self.ports.revocations.revoke(sid, ttl).await?;
        }
        self.ports.revocations.mark_warm().await?;
        Ok(sids.len())
    }

    async fn close_session(&self, user_id: crate::UserId, sid: &str) -> Result<()> {
        self.ports.sessions.revoke_session(sid, now_ms()).await?;
        self.ports.revocations.revoke(sid, self.config.access_ttl_secs).await?;
        self.ports.bus.publish(&[Push::CloseSession { user_id, sid: sid.to_owned() }]).await
    }

    fn access_token(&self, uid: crate::UserId, did: &str, sid: &str, platform: &str) -> String {
        let exp = now_ms() / 1000 + self.config.access_ttl_secs as i64;
        self.keys.sign(&Claims { uid, did: did.to_owned(), sid: sid.to_owned(), plt: platform.to_owned(), exp })
    }

    /// A refresh token `<sid>.<secret>` and the hash of its secret.
    fn new_refresh(&self, sid: &str) -> (String, String) {
        let secret = random_token(32);
        let hash = sha256_hex(&secret);
        (format!("{sid}.{secret}"), hash)
    }
}
