//! Where the bus lives and how its clients are configured: [`KafkaSettings`], parsed from a
//! `kafka://` bus URL and then adjustable field by field by the caller.

use feige_core::{Error, Result};
use rdkafka::ClientConfig;
use std::fmt;

/// Topic used when the URL names none.
pub const DEFAULT_TOPIC: &str = "feige.push";
/// Consumer group used when the URL names none.
pub const DEFAULT_GROUP: &str = "feige-push";
/// Partition count of a topic created by Feige when the URL names none.
pub const DEFAULT_PARTITIONS: i32 = 12;
/// `session.timeout.ms` unless the caller sets another.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 10_000;
/// Replication factor meaning "the broker's `default.replication.factor`".
pub const BROKER_DEFAULT_REPLICATION: i32 = -1;

/// Where a consumer group with no committed offset for a partition starts reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Only pushes published after the group joined. librdkafka resolves "latest" a moment
    /// *after* the assignment, so a push published in that window is never consumed: only for
    /// deliberate skips (an operator replacing a group on a huge backlog).
    Latest,
    /// Everything still retained in the topic (the default). Only a brand-new group (or an
    /// offset that retention already deleted) starts here; replayed pushes for users without
    /// sockets are dropped by the presence lookup, and sockets drop seqs they already sent, so
    /// the cost is bounded by the topic's retention and nothing published after the node became
    /// ready can be missed.
    #[default]
    Earliest,
}

impl OffsetReset {
    /// The librdkafka value of `auto.offset.reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Latest => "latest",
            OffsetReset::Earliest => "earliest",
        }
    }
}

/// Everything the producer, the consumer and the topic bootstrap need to know.
///
/// Built by [`KafkaSettings::parse`] from
/// `kafka://host:port[,host:port…][?topic=NAME&group=NAME&partitions=N&replication=N]`;
/// every field is public so the caller can override it (e.g. from `FEIGE_KAFKA_TOPIC`).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// The push topic.
    pub topic: String,
    /// The consumer group of the push tier.
    pub group: String,
    /// Partition count used when Feige creates the topic (an existing topic is left alone).
    pub partitions: i32,
    /// Replication factor used when Feige creates the topic; [`BROKER_DEFAULT_REPLICATION`]
    /// (the default) lets the broker decide.
    pub replication: i32,
    /// `auto.offset.reset` of the consumer.
    pub offset_reset: OffsetReset,
    /// `session.timeout.ms` of the consumer: how long a crashed member keeps its partitions.
    pub session_timeout_ms: u32,
    /// Raw librdkafka settings appended to every client config (TLS, SASL, tuning); they
    /// override Feige's own settings of the same name.
    pub extra: Vec<(String, String)>,
}

impl fmt::Debug for KafkaSettings {
    /// Values of `extra` may be secrets (`sasl.password`): only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("offset_reset", &self.offset_reset)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("extra", &self.extra.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

fn bad(url: &str, why: impl fmt::Display) -> Error {
    Error::bad_request("unsupported_backend", format!("bus URL {url}: {why}"))
}

/// Kafka's own rule for topic names: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_broker(hp: &str) -> bool {
    // `host:port`, or `[v6::addr]:port`.
    match hp.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(['/', '?', '&', '@', ' ']) && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

impl KafkaSettings {
    /// Parses a bus URL. Anything malformed (wrong scheme, no broker, a broker without a port,
    /// an unknown or bad query parameter) is `400 unsupported_backend`.
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("kafka://").ok_or_else(|| bad(url, "expected kafka://host:port[,host:port…]"))?;
        let (hosts, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
        let brokers: Vec<&str> = hosts.split(',').collect();
        if let Some(b) = brokers.iter().find(|b| !valid_broker(b)) {
            return Err(bad(url, format!("broker {b:?} is not host:port")));
        }

        let mut settings = KafkaSettings {
            brokers: brokers.join(","),
            topic: DEFAULT_TOPIC.to_string(),
            group: DEFAULT_GROUP.to_string(),
            partitions: DEFAULT_PARTITIONS,
            replication: BROKER_DEFAULT_REPLICATION,
            offset_reset: OffsetReset::default(),
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            extra: Vec::new(),
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) =
                pair.split_once('=').ok_or_else(|| bad(url, format!("query parameter {pair:?} has no value")))?;
            match key {
                "topic" if valid_topic(value) => settings.topic = value.to_string(),
                "topic" => return Err(bad(url, format!("{value:?} is not a valid topic name"))),
                "group" if !value.is_empty() => settings.group = value.to_string(),
                "group" => return Err(bad(url, "group is empty")),
                "partitions" => {
                    settings.partitions = value
                        .parse::<i32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(url, "partitions must be a positive integer"))?;
                }
                "replication" => {
                    settings.replication = value
                        .parse::<i32>()
                        .ok()
                        .filter(|n| *n > 0 || *n == BROKER_DEFAULT_REPLICATION)
                        .ok_or_else(|| bad(url, "replication must be a positive integer or -1"))?;
                }
                other => return Err(bad(url, format!("unknown query parameter {other:?}"))),
            }
        }
        Ok(settings)
    }

    /// A client config: brokers, a client id, `own` (one client kind's settings), then
    /// `extra`, which wins over both.
    pub(crate) fn config_with(&self, own: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set_log_level(crate::context::log_level())
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "feige");
        for (k, v) in own {
            config.set(*k, *v);
        }
        for (k, v) in &self.extra {
            config.set(k, v);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults() {
        let s = KafkaSettings::parse("kafka://127.0.0.1:9092").unwrap();
        assert_eq!(s.brokers, "127.0.0.1:9092");
        assert_eq!(s.topic, "feige.push");
        assert_eq!(s.group, "feige-push");
        assert_eq!(s.partitions, 12);
        assert_eq!(s.replication, -1);
        assert_eq!(s.offset_reset, OffsetReset::Earliest);
        assert!(s.extra.is_empty());
    }

    #[test]
    fn several_brokers_and_query() {
        let s = KafkaSettings::parse(
            "kafka://k1:9092,k2.example.com:9093,[::1]:9094/?topic=a.b_c-1&group=g 1&partitions=3&replication=2",
        )
        .unwrap();
        assert_eq!(s.brokers, "k1:9092,k2.example.com:9093,[::1]:9094");
        assert_eq!(s.topic, "a.b_c-1");
        assert_eq!(s.group, "g 1");
        assert_eq!(s.partitions, 3);
        assert_eq!(s.replication, 2);
    }

    #[test]
    fn bad_urls_are_unsupported_backend() {
        for url in [
            "memory://",
            "kafka://",
            "kafka://host",
            "kafka://host:",
            "kafka://host:0",
            "kafka://host:99999",
            "kafka://host:9092,",
            "kafka://:9092",
            "kafka://user@host:9092",
            "kafka://host:9092?topic=",
            "kafka://host:9092?topic=a/b",
            "kafka://host:9092?topic=..",
            "kafka://host:9092?group=",
            "kafka://host:9092?partitions=0",
            "kafka://host:9092?partitions=x",
            "kafka://host:9092?replication=0",
            "kafka://host:9092?toppic=x",
            "kafka://host:9092?topic",
        ] {
            let err = KafkaSettings::parse(url).unwrap_err();
            assert_eq!(err.status(), 400, "{url}");
            assert_eq!(err.code(), "unsupported_backend", "{url}");
        }
    }

    #[test]
    fn debug_hides_extra_values() {
        let mut s = KafkaSettings::parse("kafka://h:1").unwrap();
        s.extra.push(("sasl.password".into(), "hunter2".into()));
        let shown = format!("{s:?}");
        assert!(shown.contains("sasl.password"));
        assert!(!shown.contains("hunter2"));
    }
}
