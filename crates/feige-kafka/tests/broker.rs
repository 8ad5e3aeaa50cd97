//! The bus against a real Kafka-compatible broker (tansu in CI and on dev machines, started by
//! `scripts/services`) at `FEIGE_TEST_KAFKA_URL`, default `kafka://127.0.0.1:19092`.
//! An unreachable broker fails the tests: they are never skipped.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{RecordingSink, WAIT, per_user, push};
use feige_core::ports::{EventBus, Probe};
use feige_kafka::{KafkaBus, KafkaConsumer, KafkaSettings, OffsetReset};
use feige_testkit::unique;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings for the test broker with a fresh topic and group (tansu: `earliest` with a fresh
/// group avoids losing records published while the group is still joining).
fn settings(partitions: i32) -> KafkaSettings {
    common::init_tracing();
    let url = std::env::var("FEIGE_TEST_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:19092".to_string());
    let mut s =
        KafkaSettings::parse(&url).unwrap_or_else(|e| panic!("FEIGE_TEST_KAFKA_URL={url} is not a bus URL: {e}"));
    s.topic = unique("feige.test.");
    s.group = unique("feige-test-");
    s.partitions = partitions;
    s.offset_reset = OffsetReset::Earliest;
    s
}

async fn connect(s: &KafkaSettings) -> KafkaBus {
    KafkaBus::connect(s).await.unwrap_or_else(|e| {
        panic!(
            "no Kafka-compatible broker at {} ({e}); start one with `bash scripts/services` \
             or point FEIGE_TEST_KAFKA_URL at one",
            s.brokers
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_consume_through_a_real_broker() {
    let s = settings(3);
    let bus = connect(&s).await;
    bus.ping().await.unwrap();
    // Connecting again finds the topic already there.
    connect(&s).await.ping().await.unwrap();

    let sink = Arc::new(RecordingSink::default());
    let shutdown = CancellationToken::new();
    let handle = KafkaConsumer::start(&s, sink.clone(), shutdown.clone()).await.unwrap();
    assert!(handle.wait_assigned(WAIT).await, "the consumer got no partitions within {WAIT:?}");

    let users = [5_i64, 6, 7, 8];
    let mut all = Vec::new();
    for i in 0..10 {
        for u in users {
            all.push(push(u, i));
        }
    }
    for batch in all.chunks(6) {
        bus.publish(batch).await.unwrap();
    }
    let got = sink.wait_for(all.len(), Duration::from_secs(40)).await;
    assert_eq!(got.len(), all.len(), "{got:?}");
    let by_user = per_user(&got);
    for u in users {
        assert_eq!(by_user[&u], (0..10).collect::<Vec<_>>(), "order of user {u}");
    }

    shutdown.cancel();
    tokio::time::timeout(WAIT, handle.join()).await.expect("the consumer did not stop in time");

    // A second member of the group resumes after what the first one handed off.
    let more = vec![push(5, 10), push(6, 10)];
    bus.publish(&more).await.unwrap();
    let sink2 = Arc::new(RecordingSink::default());
    let shutdown2 = CancellationToken::new();
    let handle2 = KafkaConsumer::start(&s, sink2.clone(), shutdown2.clone()).await.unwrap();
    let got = sink2.wait_for(more.len(), Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_after = sink2.pushes();
    assert_eq!(got_after.len(), got.len(), "re-delivered: {got_after:?}");
    let mut got_sorted = got_after.clone();
    got_sorted.sort_by_key(|p| p.user_id());
    assert_eq!(got_sorted, more);
    shutdown2.cancel();
    tokio::time::timeout(WAIT, handle2.join()).await.expect("the second consumer did not stop in time");
}
