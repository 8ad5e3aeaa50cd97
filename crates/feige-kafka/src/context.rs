//! librdkafka's log and error callbacks, routed to `tracing` (rdkafka's default goes to the
//! `log` crate, which Feige does not install).

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// The librdkafka log level matching what `tracing` would record for target `librdkafka`
/// (rdkafka's own default looks at the `log` crate instead).
pub(crate) fn log_level() -> RDKafkaLogLevel {
    use tracing::Level;
    if tracing::enabled!(target: "librdkafka", Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if tracing::enabled!(target: "librdkafka", Level::INFO) {
        RDKafkaLogLevel::Info
    } else if tracing::enabled!(target: "librdkafka", Level::WARN) {
        RDKafkaLogLevel::Warning
    } else {
        RDKafkaLogLevel::Error
    }
}

/// Forwards a librdkafka log line to `tracing` at the matching level.
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

/// Forwards a client-level error (broker down, authentication failure) to `tracing`. These
/// are usually transient: librdkafka keeps retrying, and failed operations report themselves.
pub(crate) fn error(error: KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", %error, "{reason}");
}

/// The context of Feige's producer and admin clients: logging only.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        error(e, reason);
    }
}
