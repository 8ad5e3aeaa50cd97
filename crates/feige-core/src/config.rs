//! Settings, read from the environment (Lambda has nothing else). Every variable is listed in
//! `.env.example` with its default.

use std::path::PathBuf;

/// Process settings shared by local-runtime, the functions and the push tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `FEIGE_LISTEN`: address to listen on.
    pub listen: String,
    /// `FEIGE_DATA_DIR`: where embedded backends keep their files.
    pub data_dir: PathBuf,
    /// `FEIGE_DB_URL`: users, sessions, conversations, history.
    pub db_url: String,
    /// `FEIGE_TIMELINE_URL`: per-user timelines.
    pub timeline_url: String,
    /// `FEIGE_CACHE_URL`: sequences, revocation, rate limits.
    pub cache_url: String,
    /// `FEIGE_BUS_URL`: push events.
    pub bus_url: String,
    /// `FEIGE_CACHE_PREFIX`: prefix of every Redis key (several deployments, one Redis).
    pub cache_prefix: String,
    /// `FEIGE_KAFKA_TOPIC`: topic of push events (overrides `?topic=` in the bus URL).
    pub kafka_topic: Option<String>,
    /// `FEIGE_KAFKA_GROUP`: consumer group of the push side (overrides `?group=`).
    pub kafka_group: Option<String>,
    /// `FEIGE_MSK_CLUSTER_ARN`: on AWS, find the Kafka bootstrap brokers from this MSK cluster
    /// at start (instead of `FEIGE_BUS_URL`).
    pub msk_cluster_arn: Option<String>,
    /// `FEIGE_MSK_AUTH`: `plaintext`, `tls` (default) or `iam`.
    pub msk_auth: String,
    /// `FEIGE_MSK_ENDPOINT_URL`: override of the MSK API endpoint (tests, VPC endpoints).
    pub msk_endpoint_url: Option<String>,
    /// `FEIGE_TIMELINE_RETENTION_DAYS`: how long timeline entries are kept (offline messages);
    /// history stays in the database.
    pub timeline_retention_days: u64,
    /// `FEIGE_ROLE`: `all` or `api`.
    pub role: String,
    /// `FEIGE_NODE_ID`: this push node's id.
    pub node_id: String,
    /// `FEIGE_TOKEN_SECRET`: HMAC key for access tokens. Unset: local-runtime keeps a random
    /// one in `FEIGE_DATA_DIR/token.secret`.
    pub token_secret: Option<String>,
    /// `FEIGE_ACCESS_TTL_SECS`: access token lifetime.
    pub access_ttl_secs: u64,
    /// `FEIGE_REFRESH_TTL_SECS`: refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// `FEIGE_RECALL_WINDOW_SECS`: how long after sending a message may be recalled.
    pub recall_window_secs: u64,
    /// `FEIGE_WS_IDLE_SECS`: a socket silent this long is closed.
    pub ws_idle_secs: u64,
    /// `FEIGE_WS_QUEUE`: events queued per socket before a slow reader is disconnected.
    pub ws_queue: usize,
    /// `FEIGE_MAX_BODY_BYTES`: request body limit.
    pub max_body_bytes: usize,
    /// `FEIGE_SEND_RATE_PER_SEC`: sends per user per second (0 = unlimited).
    pub send_rate_per_sec: u32,
    /// `FEIGE_LOGIN_RATE_PER_MIN`: login attempts per username per minute (0 = unlimited).
    pub login_rate_per_min: u32,
    /// `FEIGE_GAP_GRACE_MS`: how long a reader waits for a timeline hole to be filled by its
    /// writer before declaring the writer dead and stepping over it.
    pub gap_grace_ms: u64,
    /// `FEIGE_KICK_POLICY`: which older sockets a new one closes.
    pub kick_policy: KickPolicy,
    /// `FEIGE_INTERNAL_LISTEN`: where a push node takes pushes forwarded by other nodes.
    pub internal_listen: String,
    /// `FEIGE_INTERNAL_ADVERTISE`: the `host:port` other nodes reach that listener at (default:
    /// the bound address, which must then not be a wildcard).
    pub internal_advertise: Option<String>,
    /// `FEIGE_INTERNAL_SECRET`: shared by the push nodes to authenticate forwarding (default:
    /// derived from the token secret, which every node shares anyway).
    pub internal_secret: Option<String>,
    /// `FEIGE_KAFKA_SESSION_TIMEOUT_MS`: how long a silent (crashed) consumer keeps its
    /// partitions before the group gives them to the other nodes.
    pub kafka_session_timeout_ms: u32,
    /// `FEIGE_KAFKA_DEBUG`: librdkafka's `debug` contexts (e.g. `cgrp,topic`), logged through
    /// `RUST_LOG=librdkafka=debug`.
    pub kafka_debug: Option<String>,
}

/// Which older sockets of a user a newly opened one closes (`FEIGE_KICK_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KickPolicy {
    /// `multi`: every device stays connected.
    #[default]
    Multi,
    /// `per_platform`: one socket per platform (`ios`, `android`, `web`, …, from login).
    PerPlatform,
    /// `single`: one socket per user.
    Single,
}

impl std::str::FromStr for KickPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "multi" => Ok(KickPolicy::Multi),
            "per_platform" => Ok(KickPolicy::PerPlatform),
            "single" => Ok(KickPolicy::Single),
            other => Err(format!("FEIGE_KICK_POLICY={other:?}: expected multi, per_platform or single")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_lookup(|_| None).unwrap_or_else(|_| unreachable!("defaults always parse"))
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, String> {
        Config::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        fn num<T: std::str::FromStr>(get: &dyn Fn(&str) -> Option<String>, key: &str, default: T) -> Result<T, String> {
            match get(key) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| format!("{key}={v:?} is not a valid number")),
            }
        }
        let data_dir = PathBuf::from(get("FEIGE_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let in_data = |f: &str| format!("sqlite://{}", data_dir.join(f).display());
        let role = get("FEIGE_ROLE").unwrap_or_else(|| "all".into());
        if role != "all" && role != "api" {
            return Err(format!("FEIGE_ROLE={role:?}: expected `all` or `api`"));
        }
        Ok(Config {
            listen: get("FEIGE_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            db_url: get("FEIGE_DB_URL").unwrap_or_else(|| in_data("feige.db")),
            timeline_url: get("FEIGE_TIMELINE_URL").unwrap_or_else(|| in_data("timeline.db")),
            cache_url: get("FEIGE_CACHE_URL").unwrap_or_else(|| "memory://".into()),
            bus_url: get("FEIGE_BUS_URL").unwrap_or_else(|| "memory://".into()),
            cache_prefix: get("FEIGE_CACHE_PREFIX").unwrap_or_else(|| "feige:".into()),
            kafka_topic: get("FEIGE_KAFKA_TOPIC"),
            kafka_group: get("FEIGE_KAFKA_GROUP"),
            timeline_retention_days: num(&get, "FEIGE_TIMELINE_RETENTION_DAYS", 30)?,
            msk_cluster_arn: get("FEIGE_MSK_CLUSTER_ARN"),
            msk_auth: get("FEIGE_MSK_AUTH").unwrap_or_else(|| "tls".into()),
            msk_endpoint_url: get("FEIGE_MSK_ENDPOINT_URL"),
            role,
            node_id: get("FEIGE_NODE_ID").or_else(|| get("HOSTNAME")).unwrap_or_else(|| "node-1".into()),
            token_secret: get("FEIGE_TOKEN_SECRET"),
            access_ttl_secs: num(&get, "FEIGE_ACCESS_TTL_SECS", 900)?,
            refresh_ttl_secs: num(&get, "FEIGE_REFRESH_TTL_SECS", 30 * 24 * 3600)?,
            recall_window_secs: num(&get, "FEIGE_RECALL_WINDOW_SECS", 120)?,
            ws_idle_secs: num(&get, "FEIGE_WS_IDLE_SECS", 60)?,
            ws_queue: num(&get, "FEIGE_WS_QUEUE", 1024)?,
            max_body_bytes: num(&get, "FEIGE_MAX_BODY_BYTES", 64 * 1024)?,
            send_rate_per_sec: num(&get, "FEIGE_SEND_RATE_PER_SEC", 200)?,
            login_rate_per_min: num(&get, "FEIGE_LOGIN_RATE_PER_MIN", 30)?,
            gap_grace_ms: num(&get, "FEIGE_GAP_GRACE_MS", 3000)?,
            kick_policy: get("FEIGE_KICK_POLICY").map(|v| v.parse()).transpose()?.unwrap_or_default(),
            internal_listen: get("FEIGE_INTERNAL_LISTEN").unwrap_or_else(|| "127.0.0.1:0".into()),
            internal_advertise: get("FEIGE_INTERNAL_ADVERTISE"),
            internal_secret: get("FEIGE_INTERNAL_SECRET"),
            kafka_session_timeout_ms: num(&get, "FEIGE_KAFKA_SESSION_TIMEOUT_MS", 10_000)?,
            kafka_debug: get("FEIGE_KAFKA_DEBUG"),
            data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_policy_parses_and_rejects_unknown_values() {
        let with = |v: &'static str| Config::from_lookup(move |k| (k == "FEIGE_KICK_POLICY").then(|| v.to_owned()));
        assert_eq!(Config::default().kick_policy, KickPolicy::Multi);
        assert_eq!(with("single").map(|c| c.kick_policy), Ok(KickPolicy::Single));
        assert_eq!(with("per_platform").map(|c| c.kick_policy), Ok(KickPolicy::PerPlatform));
        assert!(with("newest").is_err());
    }

    #[test]
    fn defaults_follow_design() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.cache_url, "memory://");
        assert_eq!(c.bus_url, "memory://");
        assert_eq!(c.db_url, "sqlite://./data/feige.db");
        assert_eq!(c.ws_idle_secs, 60);
    }

    #[test]
    fn data_dir_moves_embedded_files_and_bad_numbers_fail() {
        let c = Config::from_lookup(|k| (k == "FEIGE_DATA_DIR").then(|| "/tmp/x".into())).expect("config");
        assert_eq!(c.db_url, "sqlite:///tmp/x/feige.db");
        assert_eq!(c.timeline_url, "sqlite:///tmp/x/timeline.db");
        assert!(Config::from_lookup(|k| (k == "FEIGE_WS_IDLE_SECS").then(|| "soon".into())).is_err());
        assert!(Config::from_lookup(|k| (k == "FEIGE_ROLE").then(|| "both".into())).is_err());
    }
}
