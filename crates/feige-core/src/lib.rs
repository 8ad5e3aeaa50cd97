//! Feige's core: domain types, the port traits every backend implements, and the use cases
//! (register, login, send, sync, …) written against those ports.
//!
//! Nothing in this crate talks to a network or a disk: adapters live in `feige-store`, HTTP in
//! `feige-api`, sockets in `feige-push`. The compiler keeps that boundary.

pub mod auth;
pub mod config;
pub mod error;
pub mod ids;
pub mod model;
pub mod ports;
pub mod signals;
pub mod timeline;
pub mod usecases;

pub use config::{Config, KickPolicy};
pub use error::{Error, Result};
pub use ids::{ConversationId, GroupId, UserId};
pub use usecases::{App, Feige};

/// Milliseconds since the Unix epoch: the one time unit of the API.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
