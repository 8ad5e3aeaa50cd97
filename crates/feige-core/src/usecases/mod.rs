//! The use cases: one method on [`Feige`] per client action. HTTP handlers and Lambda
//! functions are thin shells around these.

mod auth;
mod chat;
mod groups;

pub use auth::{LoginResult, Tokens};
pub use chat::{SendRequest, SendResult, Target};
pub use groups::MAX_GROUP_MEMBERS;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::model::{Event, Push, Seq, User};
use crate::ports::Ports;
use crate::signals::UserSignals;
use std::sync::Arc;

/// Who is calling: taken from a verified access token, never from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub device_id: String,
    pub sid: String,
    /// The platform given at login (`unknown` when none was).
    pub platform: String,
}

/// The application: ports plus settings. Cheap to clone: one shared [`App`] (every request
/// handler gets a clone, so a clone is one reference count, not one per port).
#[derive(Clone)]
pub struct Feige(Arc<App>);

/// What a [`Feige`] shares; reached through `Deref` (`feige.ports`, `feige.config`).
pub struct App {
    pub ports: Ports,
    pub config: Arc<Config>,
    /// Wakes long-polling `sync` calls in this process.
    pub signals: Arc<UserSignals>,
    keys: TokenKeys,
}

impl std::ops::Deref for Feige {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl Feige {
    /// Builds the application; `token_secret` signs access tokens.
    pub fn new(ports: Ports, config: Config, token_secret: &[u8]) -> Self {
        Feige(Arc::new(App {
            ports,
            config: Arc::new(config),
            signals: Arc::default(),
            keys: TokenKeys::new(token_secret),
        }))
    }

    /// The secret push nodes authenticate forwarded pushes with: `FEIGE_INTERNAL_SECRET`, or
    /// one derived from the token key (every node of a deployment shares that already).
    pub fn internal_secret(&self) -> String {
        match &self.config.internal_secret {
            Some(s) => s.clone(),
            None => self.keys.derive("feige-internal-forwarding-v1"),
        }
    }

    /// `GET /v1/users/{id}`.
    pub async fn user(&self, id: UserId) -> Result<User> {
        self.ports.users.user(id).await?.ok_or_else(|| Error::not_found("user_not_found", "no such user"))
    }

    /// `/readyz`: every backend's answer.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<()>)> {
        let checks = self.ports.probes.iter().map(|(name, p)| async move { (*name, p.ping().await) });
        let mut out = Vec::new();
        for c in checks {
            out.push(c.await);
        }
        out
    }

    /// Fans `event` out: one timeline entry per user, each at that user's own seq, then one push
    /// per user on the bus and a wake-up for local long-polls. Returns each user's seq.
    /// `maybe_present` says an earlier attempt may have written some entries already (see
    /// `timeline::append`).
    pub(crate) async fn fan_out(
        &self,
        users: &[UserId],
        event: &Event,
        maybe_present: bool,
    ) -> Result<Vec<(UserId, Seq)>> {
        let items = users.iter().map(|u| (*u, event.clone())).collect();
        let written = crate::timeline::append(&self.ports, items, maybe_present).await?;
        let seqs = written.iter().map(|(u, e)| (*u, e.seq)).collect();
        for (user_id, event) in &written {
            self.signals.bump(*user_id, event.seq);
        }
        let pushes: Vec<Push> = written.into_iter().map(|(user_id, event)| Push::Event { user_id, event }).collect();
        self.ports.bus.publish(&pushes).await?;
        Ok(seqs)
    }
}
