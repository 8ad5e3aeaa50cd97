//! Shared pieces of the Kafka tests: a recording sink and push builders.

#![allow(clippy::unwrap_used, dead_code)] // test code: a panic is the failure report

use feige_core::UserId;
use feige_core::model::Push;
use feige_core::ports::PushSink;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Generous bound for anything that waits on a broker.
pub const WAIT: Duration = Duration::from_secs(30);

/// Sends logs to the test output; `RUST_LOG=librdkafka=debug` shows librdkafka's too.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A `PushSink` that keeps everything it is handed, in order.
#[derive(Default)]
pub struct RecordingSink {
    got: Mutex<Vec<Push>>,
    changed: Notify,
}

#[async_trait::async_trait]
impl PushSink for RecordingSink {
    async fn deliver(&self, pushes: &[Push]) {
        self.got.lock().unwrap().extend_from_slice(pushes);
        self.changed.notify_waiters();
    }
}

impl RecordingSink {
    /// Everything received so far.
    pub fn pushes(&self) -> Vec<Push> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` pushes arrived; panics with what did arrive after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Push> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let got = self.pushes();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let got = self.pushes();
                assert!(got.len() >= n, "expected {n} pushes within {timeout:?}, got {}: {got:?}", got.len());
                return got;
            }
        }
    }
}

/// A push for `user` whose `sid` encodes its position `i`.
pub fn push(user: i64, i: usize) -> Push {
    Push::CloseSession { user_id: UserId(user), sid: format!("s{i}") }
}

/// The positions of each user's pushes, in arrival order.
pub fn per_user(pushes: &[Push]) -> HashMap<i64, Vec<usize>> {
    let mut out: HashMap<i64, Vec<usize>> = HashMap::new();
    for p in pushes {
        let Push::CloseSession { user_id, sid } = p else {
            panic!("unexpected push {p:?}");
        };
        out.entry(user_id.0).or_default().push(sid[1..].parse().unwrap());
    }
    out
}
