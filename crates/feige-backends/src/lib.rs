//! Connects every Feige port to the backend its URL names, and starts the push side of the bus.
//!
//! | port | embedded (default) | real |
//! |---|---|---|
//! | users, sessions, conversations, history (`FEIGE_DB_URL`) | `sqlite://` | `mysql://` |
//! | timelines (`FEIGE_TIMELINE_URL`) | `sqlite://` | `mongodb://` |
//! | sequences, revocation, rate limits (`FEIGE_CACHE_URL`) | `memory://` | `redis://` |
//! | push events (`FEIGE_BUS_URL`) | `memory://` | `kafka://`, or MSK found from `FEIGE_MSK_CLUSTER_ARN` |
//!
//! This crate is the one place that links every driver; libraries and their tests depend only
//! on the adapters they use.

use feige_core::ports::{
    EventBus, Ports, Presence, Probe, PushSink, RateLimiter, Revocations, SeqAllocator, TimelineStore,
};
use feige_core::{Config, Error, Feige, Result};
#[cfg(feature = "kafka")]
use feige_kafka::{KafkaBus, KafkaConsumer, KafkaSettings};
#[cfg(feature = "mongo")]
use feige_mongo::MongoTimeline;
use feige_redis::RedisCache;
use feige_store::memory::{MemoryBus, MemoryCache};
use feige_store::sql::SqlDb;
use feige_store::sqlite_timeline::SqliteTimeline;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How the bus reaches the push side.
enum BusKind {
    Memory(Arc<MemoryBus>),
    #[cfg(feature = "kafka")]
    Kafka(KafkaSettings),
    NotConnected,
}

/// The optional backends a process connects; every process needs the database (users,
/// sessions) and the cache (revocation, rate limits). A Lambda function that never reads
/// timelines or publishes pushes skips those connections, and their start-up cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub timeline: bool,
    pub bus: bool,
}

impl Needs {
    /// Everything (local-runtime, the push tier, the health function).
    pub const ALL: Needs = Needs { timeline: true, bus: true };
}

/// Stands in for a backend this process chose not to connect: any use is a bug, reported as
/// one (500), never silently ignored.
struct NotConnected(&'static str);

impl NotConnected {
    fn err(&self) -> Error {
        Error::internal(format!("the {} backend is not connected in this process", self.0))
    }
}

#[async_trait::async_trait]
impl TimelineStore for NotConnected {
    async fn insert(&self, _: &feige_core::model::TimelineEntry) -> Result<feige_core::ports::Inserted> {
        Err(self.err())
    }
    async fn read(&self, _: feige_core::UserId, _: u64, _: u32) -> Result<Vec<feige_core::model::TimelineEntry>> {
        Err(self.err())
    }
    async fn max_seq(&self, _: feige_core::UserId) -> Result<u64> {
        Err(self.err())
    }
    async fn find(&self, _: feige_core::UserId, _: &str) -> Result<Option<u64>> {
        Err(self.err())
    }
}

#[async_trait::async_trait]
impl EventBus for NotConnected {
    async fn publish(&self, _: &[feige_core::model::Push]) -> Result<()> {
        Err(self.err())
    }
}

/// Connected backends.
pub struct Backends {
    pub ports: Ports,
    bus: BusKind,
}

impl Backends {
    /// Whether pushes travel on a bus shared by several processes (Kafka), so that a push node
    /// must route to sockets held by other nodes; the in-process bus reaches only this process.
    pub fn bus_is_shared(&self) -> bool {
        #[cfg(feature = "kafka")]
        return matches!(self.bus, BusKind::Kafka(_));
        #[cfg(not(feature = "kafka"))]
        false
    }
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map(|(s, _)| s).unwrap_or("")
}

/// A backend this binary was built without (a Lambda function linked with only what it uses).
#[allow(dead_code)] // used only in builds without some backend
fn built_without(var: &str, feature: &str) -> Error {
    Error::bad_request(
        "unsupported_backend",
        format!("{var}: this binary was built without the `{feature}` feature of feige-backends"),
    )
}

fn unsupported(var: &str, url: &str, expected: &str) -> Error {
    Error::bad_request("unsupported_backend", format!("{var}={url}: expected {expected}"))
}

/// The Kafka settings of a config: the bus URL — or, with `FEIGE_MSK_CLUSTER_ARN`, the
/// brokers MSK reports for `FEIGE_MSK_AUTH` plus the client settings that mode needs — and
/// `FEIGE_KAFKA_TOPIC`/`FEIGE_KAFKA_GROUP`.
#[cfg(feature = "kafka")]
pub async fn kafka_settings(config: &Config) -> Result<KafkaSettings> {
    let mut settings = match &config.msk_cluster_arn {
        Some(arn) => {
            let auth = feige_msk::MskAuth::parse(&config.msk_auth)?;
            let brokers = feige_msk::bootstrap_brokers(arn, auth, config.msk_endpoint_url.as_deref()).await?;
            tracing::info!(%arn, %auth, %brokers, "MSK bootstrap brokers discovered");
            let mut s = KafkaSettings::parse(&feige_msk::bus_url(&brokers))?;
            let mut extra = feige_msk::librdkafka_settings(auth);
            extra.append(&mut s.extra);
            s.extra = extra;
            s
        }
        None => KafkaSettings::parse(&config.bus_url)?,
    };
    if let Some(t) = &config.kafka_topic {
        settings.topic = t.clone();
    }
    if let Some(g) = &config.kafka_group {
        settings.group = g.clone();
    }
    settings.session_timeout_ms = config.kafka_session_timeout_ms;
    if let Some(debug) = &config.kafka_debug {
        settings.extra.push(("debug".into(), debug.clone()));
    }
    Ok(settings)
}

/// Connects every backend named in the config (running migrations, creating indexes and
/// topics where missing).
pub async fn connect(config: &Config) -> Result<Backends> {
    connect_for(config, Needs::ALL).await
}

/// Connects the database, the cache and the optional backends in `needs`.
pub async fn connect_for(config: &Config, needs: Needs) -> Result<Backends> {
    let mut probes: Vec<(&'static str, Arc<dyn Probe>)> = Vec::new();

    let db = match scheme(&config.db_url) {
        "sqlite" | "mysql" => Arc::new(SqlDb::connect(&config.db_url).await?),
        _ => return Err(unsupported("FEIGE_DB_URL", &config.db_url, "sqlite:// or mysql://")),
    };
    probes.push(("db", db.clone()));

    let timeline: Arc<dyn TimelineStore> = match scheme(&config.timeline_url) {
        _ if !needs.timeline => Arc::new(NotConnected("timeline")),
        "sqlite" => {
            let t = Arc::new(SqliteTimeline::connect(&config.timeline_url).await?);
            probes.push(("timeline", t.clone()));
            t
        }
        #[cfg(not(feature = "mongo"))]
        "mongodb" | "mongodb+srv" => return Err(built_without("FEIGE_TIMELINE_URL", "mongo")),
        #[cfg(feature = "mongo")]
        "mongodb" | "mongodb+srv" => {
            let retention = std::time::Duration::from_secs(config.timeline_retention_days.max(1) * 24 * 3600);
            let t = Arc::new(MongoTimeline::connect_with_retention(&config.timeline_url, retention).await?);
            probes.push(("timeline", t.clone()));
            t
        }
        _ => return Err(unsupported("FEIGE_TIMELINE_URL", &config.timeline_url, "sqlite:// or mongodb://")),
    };

    #[allow(clippy::type_complexity)]
    let (seqs, revocations, limiter, presence): (
        Arc<dyn SeqAllocator>,
        Arc<dyn Revocations>,
        Arc<dyn RateLimiter>,
        Arc<dyn Presence>,
    ) = match scheme(&config.cache_url) {
        "memory" => {
            let c = Arc::new(MemoryCache::default());
            probes.push(("cache", c.clone()));
            (c.clone(), c.clone(), c.clone(), c)
        }
        "redis" | "rediss" => {
            let c = Arc::new(RedisCache::connect_with_prefix(&config.cache_url, &config.cache_prefix).await?);
            probes.push(("cache", c.clone()));
            (c.clone(), c.clone(), c.clone(), c)
        }
        _ => return Err(unsupported("FEIGE_CACHE_URL", &config.cache_url, "memory:// or redis://")),
    };

    let bus_scheme = if config.msk_cluster_arn.is_some() { "kafka" } else { scheme(&config.bus_url) };
    let (bus, kind): (Arc<dyn EventBus>, BusKind) = match bus_scheme {
        _ if !needs.bus => (Arc::new(NotConnected("bus")), BusKind::NotConnected),
        "memory" => {
            let b = Arc::new(MemoryBus::default());
            probes.push(("bus", b.clone()));
            (b.clone(), BusKind::Memory(b))
        }
        #[cfg(not(feature = "kafka"))]
        "kafka" => return Err(built_without("FEIGE_BUS_URL", "kafka")),
        #[cfg(feature = "kafka")]
        "kafka" => {
            let settings = kafka_settings(config).await?;
            // Off the start-up path (a Lambda cold start); /readyz shows the bus until it answers.
            // A process that also consumes checks the topic before subscribing.
            let b = Arc::new(KafkaBus::connect_in_background(&settings)?);
            probes.push(("bus", b.clone()));
            (b, BusKind::Kafka(settings))
        }
        _ => return Err(unsupported("FEIGE_BUS_URL", &config.bus_url, "memory:// or kafka://")),
    };

    Ok(Backends {
        ports: Ports {
            users: db.clone(),
            sessions: db.clone(),
            chat: db.clone(),
            groups: db,
            timeline,
            seqs,
            revocations,
            limiter,
            presence,
            bus,
            probes,
        },
        bus: kind,
    })
}

/// Builds the application: connects the backends, loads the token key, warms the revocation
/// cache.
pub async fn build(config: Config) -> Result<(Feige, Backends)> {
    build_for(config, Needs::ALL).await
}

/// `build` with only the optional backends in `needs`.
pub async fn build_for(config: Config, needs: Needs) -> Result<(Feige, Backends)> {
    let backends = connect_for(&config, needs).await?;
    let secret = feige_store::token_secret(&config)?;
    let feige = Feige::new(backends.ports.clone(), config, &secret);
    feige.restore_revocations().await?;
    Ok((feige, backends))
}

/// Makes pushes published on the bus reach `sink` (this process's socket hub or push router):
/// attaches it to the in-process bus, or starts a Kafka consumer that feeds it, waiting until
/// the consumer joined its group so that nothing published after this returns is missed.
pub async fn deliver_pushes_to(
    backends: &Backends,
    sink: Arc<dyn PushSink>,
    shutdown: CancellationToken,
) -> Result<PushFeed> {
    #[cfg(not(feature = "kafka"))]
    let _ = &shutdown;
    match &backends.bus {
        BusKind::Memory(bus) => {
            bus.attach(sink);
            Ok(PushFeed {
                #[cfg(feature = "kafka")]
                consumer: None,
            })
        }
        #[cfg(feature = "kafka")]
        BusKind::Kafka(settings) => {
            let consumer = KafkaConsumer::start(settings, sink, shutdown).await?;
            if !consumer.wait_joined(std::time::Duration::from_secs(60)).await {
                return Err(Error::unavailable("bus", "the Kafka consumer did not join its group within 60 s"));
            }
            Ok(PushFeed { consumer: Some(consumer) })
        }
        BusKind::NotConnected => Err(Error::internal("the bus is not connected in this process")),
    }
}

/// The running feed of [`deliver_pushes_to`].
pub struct PushFeed {
    #[cfg(feature = "kafka")]
    consumer: Option<feige_kafka::KafkaConsumerHandle>,
}

impl PushFeed {
    /// After shutdown was cancelled: waits until the consumer committed what it handed off and
    /// left its group (so its partitions move to the other nodes at once).
    pub async fn finish(self) {
        #[cfg(feature = "kafka")]
        if let Some(consumer) = self.consumer {
            consumer.join().await;
        }
    }
}
