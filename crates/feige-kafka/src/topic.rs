//! Making sure the push topic exists before anyone produces to it or subscribes to it, and
//! checking that it does (the readiness probe).

use crate::context::TracingContext;
use crate::settings::KafkaSettings;
use feige_core::{Error, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::Client;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::util::Timeout;
use std::time::Duration;

/// How long topic creation may take, broker round trips included.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a metadata look-up (the probe, the existence check) may take.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// `503 backend_unavailable` for the bus.
pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable("bus", format!("{what}: {e}"))
}

/// The partition count of `topic`, or `None` if the cluster does not know it; an error when
/// no broker answers or the topic is in a bad state. Blocks: call it from `spawn_blocking`.
pub(crate) fn topic_partitions<C: rdkafka::ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>> {
    let metadata =
        client.fetch_metadata(Some(topic), Timeout::After(timeout)).map_err(|e| unavailable("kafka metadata", e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().len())),
        None => Err(unavailable("kafka metadata", format!("topic {topic} has no partitions"))),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
        Some(err) => Err(unavailable("kafka metadata", format!("topic {topic}: {}", RDKafkaErrorCode::from(err)))),
    }
}

/// Creates the topic if it does not exist (with `settings.partitions` and
/// `settings.replication`); an existing topic is left as it is. Fails with `503` when no
/// broker answers within [`METADATA_TIMEOUT`] or creation is refused.
pub(crate) async fn ensure_topic(settings: &KafkaSettings) -> Result<()> {
    let admin: AdminClient<TracingContext> = settings
        // The existence check must not auto-create the topic with the broker's defaults.
        .config_with(&[("allow.auto.create.topics", "false")])
        .create_with_context(TracingContext)
        .map_err(|e| Error::internal(format!("kafka admin client: {e}")))?;
    let admin = std::sync::Arc::new(admin);
    let (probe, name) = (admin.clone(), settings.topic.clone());
    let existing = tokio::task::spawn_blocking(move || topic_partitions(probe.inner(), &name, METADATA_TIMEOUT))
        .await
        .map_err(|e| Error::internal(format!("kafka metadata task: {e}")))??;
    if existing.is_some() {
        return Ok(());
    }

    let topic = NewTopic::new(&settings.topic, settings.partitions, TopicReplication::Fixed(settings.replication));
    let options = AdminOptions::new().request_timeout(Some(CREATE_TIMEOUT)).operation_timeout(Some(CREATE_TIMEOUT));
    let outcome =
        tokio::time::timeout(CREATE_TIMEOUT + Duration::from_secs(2), admin.create_topics([&topic], &options))
            .await
            .map_err(|_| unavailable("kafka create topic", "no answer"))?
            .map_err(|e| unavailable("kafka create topic", e))?;
    match outcome.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(
                topic = %settings.topic,
                partitions = settings.partitions,
                "created kafka topic"
            );
            Ok(())
        }
        // Someone else created it meanwhile.
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
        Some(Err((_, code))) => Err(unavailable("kafka create topic", format!("{}: {code}", settings.topic))),
        None => Err(unavailable("kafka create topic", "no result")),
    }
}
