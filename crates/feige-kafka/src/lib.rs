//! Feige's event bus on Kafka: the real twin of `feige_store::memory::MemoryBus`.
//!
//! - [`KafkaSettings`]: brokers, topic, group, … parsed from a `kafka://` bus URL.
//! - [`KafkaBus`]: the [`EventBus`](feige_core::ports::EventBus) (and readiness
//!   [`Probe`](feige_core::ports::Probe)): an idempotent producer, one JSON record per push,
//!   keyed by user id so a user's pushes stay in order within one partition.
//! - [`KafkaConsumer`]: joins the push tier's consumer group and hands pushes to the socket
//!   hub ([`PushSink`](feige_core::ports::PushSink)), committing offsets only after hand-off
//!   (see [`consumer`] for the strategy).
//!
//! Both sides create the topic if it is missing. Broker trouble is `503` (`bus` unavailable).

pub mod bus;
pub mod consumer;
mod context;
pub mod settings;
mod topic;

pub use bus::KafkaBus;
pub use consumer::{KafkaConsumer, KafkaConsumerHandle};
pub use settings::{KafkaSettings, OffsetReset};
