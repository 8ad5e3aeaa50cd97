//! The consumer side: [`KafkaConsumer`] reads the push topic in a consumer group and hands
//! every push to the process's [`PushSink`] (the socket hub).
//!
//! # Commit strategy
//!
//! Offsets are committed only after hand-off, with librdkafka's "store then auto-commit"
//! pattern: `enable.auto.commit=true`, `enable.auto.offset.store=false`, and the offset of a
//! record is stored (`store_offset`) only once `sink.deliver` returned for it. Records are
//! handed off in batches (whatever is already fetched, up to [`MAX_BATCH`]) so that a router
//! forwarding to other nodes pays one round trip per batch, not per record.
//! librdkafka commits the stored offsets in the background (every `auto.commit.interval.ms`,
//! 5 s), on every partition revocation, and when the consumer closes; on shutdown the loop also
//! commits them synchronously before closing. Thus a crash hands off again at most the last few
//! seconds of pushes (at least once; the hub tolerates duplicates, clients dedupe by `seq`) and
//! never skips one, while the hot path pays no commit round trip per record.

use crate::context;
use crate::settings::KafkaSettings;
use crate::topic::ensure_topic;
use feige_core::model::Push;
use feige_core::ports::PushSink;
use feige_core::{Error, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pause after a consumer error before polling again (errors are mostly "broker down").
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// Most records handed to the sink at once.
pub const MAX_BATCH: usize = 512;

/// The consumer's context: logs, and publishes how many partitions the consumer holds (None
/// before it first joined the group).
struct GroupContext {
    assigned: watch::Sender<Option<usize>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        context::log(level, fac, log_message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        context::error(e, reason);
    }

    /// librdkafka's periodic statistics: the records of assigned partitions not yet consumed.
    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        metrics::gauge!("feige_push_consumer_lag").set(lag as f64);
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "kafka consumer assigned");
                metrics::gauge!("feige_push_partitions").set(tpl.count() as f64);
                self.assigned.send_replace(Some(tpl.count()));
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "kafka consumer revoked");
                metrics::gauge!("feige_push_partitions").set(0.0);
                self.assigned.send_replace(Some(0));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "kafka offset commit failed"),
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// Starts the push consumer of a process.
pub struct KafkaConsumer;

/// A running consumer: wait for its first assignment, or for its end.
pub struct KafkaConsumerHandle {
    assigned: watch::Receiver<Option<usize>>,
    task: JoinHandle<()>,
}

impl KafkaConsumer {
    /// Creates the topic if it is missing, joins the consumer group `settings.group`,
    /// subscribes to `settings.topic`, and spawns the loop that hands every push to `sink`
    /// until `shutdown` is cancelled. Fails with `503` when no broker answers.
    pub async fn start(
        settings: &KafkaSettings,
        sink: Arc<dyn PushSink>,
        shutdown: CancellationToken,
    ) -> Result<KafkaConsumerHandle> {
        ensure_topic(settings).await?;
        let (tx, rx) = watch::channel(None);
        let session_timeout = settings.session_timeout_ms.to_string();
        let heartbeat = (settings.session_timeout_ms / 3).max(100).to_string();
        let consumer: GroupConsumer = settings
            .config_with(&[
                ("group.id", &settings.group),
                ("enable.auto.commit", "true"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", settings.offset_reset.as_str()),
                ("session.timeout.ms", &session_timeout),
                ("heartbeat.interval.ms", &heartbeat),
                ("statistics.interval.ms", "5000"),
            ])
            .create_with_context(GroupContext { assigned: tx })
            .map_err(|e| Error::internal(format!("kafka consumer: {e}")))?;
        consumer.subscribe(&[&settings.topic]).map_err(|e| Error::internal(format!("kafka subscribe: {e}")))?;
        tracing::info!(
            brokers = %settings.brokers,
            topic = %settings.topic,
            group = %settings.group,
            "kafka consumer started"
        );
        let task = tokio::spawn(run(Arc::new(consumer), sink, shutdown));
        Ok(KafkaConsumerHandle { assigned: rx, task })
    }
}

impl KafkaConsumerHandle {
    /// Waits until the consumer holds a non-empty partition assignment; false if that did not
    /// happen within `timeout` (or the consumer stopped).
    ///
    /// With [`OffsetReset::Latest`](crate::OffsetReset) and no committed offsets, the start
    /// offset of a newly assigned partition is resolved just after the assignment, so a push
    /// published in that instant can still be missed; the default, `Earliest`, has no such gap.
    pub async fn wait_assigned(&self, timeout: Duration) -> bool {
        let mut rx = self.assigned.clone();
        matches!(tokio::time::timeout(timeout, rx.wait_for(|n| n.is_some_and(|n| n > 0))).await, Ok(Ok(_)))
    }

    /// Waits until the consumer has joined its group: from then on every partition of the
    /// topic is consumed by some member, this one or another. A member may hold no partition
    /// at all (more push nodes than partitions) and still be useful: it receives forwarded
    /// pushes for its sockets.
    pub async fn wait_joined(&self, timeout: Duration) -> bool {
        let mut rx = self.assigned.clone();
        matches!(tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await, Ok(Ok(_)))
    }

    /// Waits for the consumer loop to end (after `shutdown` was cancelled): its offsets are
    /// committed and it has left the group.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "kafka consumer task failed");
        }
    }
}

/// The consumer loop.
async fn run(consumer: Arc<GroupConsumer>, sink: Arc<dyn PushSink>, shutdown: CancellationToken) {
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        match received {
            Ok(first) => {
                let mut batch = vec![first];
                // Whatever else is already fetched joins the batch, without waiting.
                while batch.len() < MAX_BATCH {
                    match futures::FutureExt::now_or_never(consumer.recv()) {
                        Some(Ok(m)) => batch.push(m),
                        _ => break,
                    }
                }
                hand_off(&consumer, sink.as_ref(), batch).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ERROR_PAUSE) => {}
                }
            }
        }
    }
    // Commit what was handed off, then close (which leaves the group). Both block.
    let closed = tokio::task::spawn_blocking(move || {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "kafka final offset commit failed"),
        }
        drop(consumer);
    })
    .await;
    if let Err(e) = closed {
        tracing::error!(error = %e, "closing the kafka consumer failed");
    }
    tracing::info!("kafka consumer stopped");
}

/// Hands a batch of records to the sink (skipping any that is not a push), then stores their
/// offsets.
async fn hand_off(consumer: &GroupConsumer, sink: &dyn PushSink, batch: Vec<BorrowedMessage<'_>>) {
    let mut pushes = Vec::with_capacity(batch.len());
    let mut offsets = Vec::with_capacity(batch.len());
    for message in &batch {
        offsets.push((message.topic().to_owned(), message.partition(), message.offset()));
        match message.payload().map(serde_json::from_slice::<Push>) {
            Some(Ok(push)) => pushes.push(push),
            Some(Err(e)) => tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                error = %e,
                "skipping a kafka record that is not a push"
            ),
            None => tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                "skipping an empty kafka record"
            ),
        }
    }
    // Release the borrowed records (they pin librdkafka buffers) before the await.
    drop(batch);
    if !pushes.is_empty() {
        sink.deliver(&pushes).await;
    }
    for (topic, partition, offset) in offsets {
        // `store_offset` takes the offset of the record just handled; the commit is of the next.
        if let Err(e) = consumer.store_offset(&topic, partition, offset) {
            // The partition was revoked meanwhile: its new owner will hand the record off again.
            tracing::warn!(partition, offset, error = %e, "could not store a kafka offset");
        }
    }
}
