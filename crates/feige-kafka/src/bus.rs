//! The producer side: [`KafkaBus`] publishes pushes to the push topic, one JSON record per
//! push, keyed by the user id so that every push of a user lands in one partition, in order.

use crate::context::TracingContext;
use crate::settings::KafkaSettings;
use crate::topic::{METADATA_TIMEOUT, ensure_topic, topic_partitions, unavailable};
use async_trait::async_trait;
use feige_core::model::Push;
use feige_core::ports::{EventBus, Probe};
use feige_core::{Error, Result};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

/// `message.timeout.ms`: how long a record may wait for the brokers before `publish` fails.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying an enqueue when librdkafka's local queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// The Kafka event bus (producer): an idempotent producer with `acks=all`.
///
/// Ordering: the records of one `publish` call are enqueued in slice order and the producer is
/// idempotent, so the pushes of a user keep their order within the user's partition, across
/// retries too. Delivery is at least once: when `publish` fails, some of its pushes may still
/// have reached the topic.
#[derive(Clone)]
pub struct KafkaBus {
    producer: FutureProducer<TracingContext>,
    topic: String,
}

impl KafkaBus {
    /// Creates the topic if it is missing, then the producer. Fails with `503` when no broker
    /// answers within about ten seconds.
    pub async fn connect(settings: &KafkaSettings) -> Result<KafkaBus> {
        ensure_topic(settings).await?;
        Self::producer(settings)
    }

    /// The producer at once, with the topic check (and creation if missing) running in the
    /// background: a Lambda function's cold start does not wait for the broker. librdkafka
    /// connects in the background too; the first `publish` waits for both, and `/readyz`
    /// reports the bus until it answers.
    pub fn connect_in_background(settings: &KafkaSettings) -> Result<KafkaBus> {
        let bus = Self::producer(settings)?;
        let settings = settings.clone();
        tokio::spawn(async move {
            if let Err(e) = ensure_topic(&settings).await {
                tracing::error!(topic = %settings.topic, error = %e, "kafka topic check failed; publishing will fail until the topic exists");
            }
        });
        Ok(bus)
    }

    fn producer(settings: &KafkaSettings) -> Result<KafkaBus> {
        let timeout_ms = MESSAGE_TIMEOUT.as_millis().to_string();
        let producer: FutureProducer<TracingContext> = settings
            .config_with(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "2"),
                ("message.timeout.ms", &timeout_ms),
                // Java's partitioner: clients in other languages agree on a user's partition.
                ("partitioner", "murmur2_random"),
                // The topic is Feige's to create (`ensure_topic`), with its partition count.
                ("allow.auto.create.topics", "false"),
            ])
            .create_with_context(TracingContext)
            .map_err(|e| Error::internal(format!("kafka producer: {e}")))?;
        tracing::info!(brokers = %settings.brokers, topic = %settings.topic, "kafka bus connected");
        Ok(KafkaBus { producer, topic: settings.topic.clone() })
    }

    /// Enqueues one record without waiting; a full local queue is [`Wait::Full`], for
    /// `publish` to retry the same record.
    fn enqueue(&self, key: &str, payload: &[u8]) -> std::result::Result<DeliveryFuture, Wait> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        match self.producer.send_result(record) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Err(Wait::Full),
            Err((e, _)) => Err(Wait::Failed(e)),
        }
    }
}

/// Why a record could not be enqueued.
enum Wait {
    /// The local queue is full: try again shortly.
    Full,
    /// Anything else.
    Failed(KafkaError),
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, pushes: &[Push]) -> Result<()> {
        let deadline = Instant::now() + MESSAGE_TIMEOUT;
        let mut deliveries = Vec::with_capacity(pushes.len());
        // Enqueue strictly in order (a retry on a full queue retries the same record), then
        // await every delivery report together.
        for push in pushes {
            let payload = serde_json::to_vec(push).map_err(|e| Error::internal(format!("serialising a push: {e}")))?;
            let key = push.user_id().to_string();
            loop {
                match self.enqueue(&key, &payload) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err(Wait::Full) if Instant::now() < deadline => {
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err(Wait::Full) => {
                        return Err(unavailable("kafka publish", "producer queue stayed full"));
                    }
                    Err(Wait::Failed(e)) => return Err(unavailable("kafka publish", e)),
                }
            }
        }
        for result in futures::future::join_all(deliveries).await {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(unavailable("kafka publish", e)),
                Err(_) => return Err(unavailable("kafka publish", "the producer went away")),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Probe for KafkaBus {
    /// Ok when a broker answers a metadata request for the push topic within a few seconds
    /// and the topic exists.
    async fn ping(&self) -> Result<()> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let partitions =
            tokio::task::spawn_blocking(move || topic_partitions(producer.client(), &topic, METADATA_TIMEOUT))
                .await
                .map_err(|e| Error::internal(format!("kafka probe task: {e}")))??;
        match partitions {
            Some(_) => Ok(()),
            None => Err(unavailable("kafka metadata", format!("topic {} does not exist", self.topic))),
        }
    }
}
