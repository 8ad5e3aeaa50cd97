//! The consumer side: [`KafkaConsumer`] reads the push topic in a consumer group and hands
//! every push to the process's [`PushSink`] (the socket hub).
//!
//! # Commit strategy
//!
//! Offsets are committed only after hand-off, with librdkafka's "store then auto-commit"
//! pattern: `enable.auto.commit=true`, `enable.auto.offset.store=false`, and the offset of a
//! record is stored (`store_offset_from_message`) only once `sink.deliver` returned for it.
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
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pause after a consumer error before polling again (errors are mostly "broker down").
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The consumer's context: logs, and publishes whether the consumer holds partitions.
struct GroupContext {
    assigned: watch::Sender<bool>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        context::log(level, fac, log_message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        context::error(e, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "kafka consumer assigned");
                self.assigned.send_replace(tpl.count() > 0);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "kafka consumer revoked");
                self.assigned.send_replace(false);
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
    assigned: watch::Receiver<bool>,
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
        let (tx, rx) = watch::channel(false);
        let consumer: GroupConsumer = settings
            .config_with(&[
                ("group.id", &settings.group),
                ("enable.auto.commit", "true"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", settings.offset_reset.as_str()),
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
    /// With `auto.offset.reset=latest` and no committed offsets, the start offset of a newly
    /// assigned partition is resolved just after the assignment, so a push published in that
    /// instant can still be missed; tests use `earliest`.
    pub async fn wait_assigned(&self, timeout: Duration) -> bool {
        let mut rx = self.assigned.clone();
        matches!(tokio::time::timeout(timeout, rx.wait_for(|assigned| *assigned)).await, Ok(Ok(_)))
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
            Ok(message) => hand_off(&consumer, sink.as_ref(), &message),
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

/// Hands one record to the sink (or skips it if it is not a push), then stores its offset.
fn hand_off(consumer: &GroupConsumer, sink: &dyn PushSink, message: &BorrowedMessage<'_>) {
    match message.payload().map(serde_json::from_slice::<Push>) {
        Some(Ok(push)) => sink.deliver(std::slice::from_ref(&push)),
        Some(Err(e)) => tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            error = %e,
            "skipping a kafka record that is not a push"
        ),
        None => {
            tracing::warn!(partition = message.partition(), offset = message.offset(), "skipping an empty kafka record")
        }
    }
    if let Err(e) = consumer.store_offset_from_message(message) {
        // The partition was revoked meanwhile: its new owner will hand the record off again.
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            error = %e,
            "could not store a kafka offset"
        );
    }
}
