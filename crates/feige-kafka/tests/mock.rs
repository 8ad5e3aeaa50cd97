//! The bus against librdkafka's in-process mock cluster: ordering, commit-after-hand-off,
//! poison records, the probe. No broker needed.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{RecordingSink, WAIT, per_user, push};
use feige_core::ports::{EventBus, Probe};
use feige_kafka::{KafkaBus, KafkaConsumer, KafkaSettings, OffsetReset};
use feige_testkit::unique;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A mock cluster with one fresh topic, and settings pointing at it (own group, `earliest`).
fn cluster(partitions: i32) -> (MockCluster<'static, DefaultProducerContext>, KafkaSettings) {
    common::init_tracing();
    let mock = MockCluster::new(1).unwrap();
    let topic = unique("feige.test.");
    mock.create_topic(&topic, partitions, 1).unwrap();
    let mut settings = KafkaSettings::parse(&format!("kafka://{}", mock.bootstrap_servers())).unwrap();
    settings.topic = topic;
    settings.group = unique("group-");
    settings.offset_reset = OffsetReset::Earliest;
    // Mock quirk: when the last member leaves, the mock group waits `session.timeout.ms - 1s`
    // for rejoins before admitting a new member (45 s by default).
    settings.extra.push(("session.timeout.ms".into(), "6000".into()));
    (mock, settings)
}

async fn start(settings: &KafkaSettings) -> (Arc<RecordingSink>, CancellationToken, feige_kafka::KafkaConsumerHandle) {
    let sink = Arc::new(RecordingSink::default());
    let shutdown = CancellationToken::new();
    let handle = KafkaConsumer::start(settings, sink.clone(), shutdown.clone()).await.unwrap();
    assert!(handle.wait_assigned(WAIT).await, "the consumer got no partitions within {WAIT:?}");
    (sink, shutdown, handle)
}

async fn stop(shutdown: CancellationToken, handle: feige_kafka::KafkaConsumerHandle) {
    shutdown.cancel();
    tokio::time::timeout(WAIT, handle.join()).await.expect("the consumer did not stop in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_push_in_per_user_order() {
    let (_mock, settings) = cluster(4);
    let bus = KafkaBus::connect(&settings).await.unwrap();
    let (sink, shutdown, handle) = start(&settings).await;

    // Five users, 20 pushes each, published in interleaved batches of various sizes.
    let users = [1_i64, 2, 3, 42, 9_007_199_254_740_991];
    let mut all = Vec::new();
    for i in 0..20 {
        for u in users {
            all.push(push(u, i));
        }
    }
    for batch in all.chunks(7) {
        bus.publish(batch).await.unwrap();
    }
    bus.publish(&[]).await.unwrap();

    let got = sink.wait_for(all.len(), WAIT).await;
    assert_eq!(got.len(), all.len());
    let by_user = per_user(&got);
    for u in users {
        assert_eq!(by_user[&u], (0..20).collect::<Vec<_>>(), "order of user {u}");
    }
    stop(shutdown, handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_only_what_was_handed_off() {
    let (_mock, settings) = cluster(3);
    let bus = KafkaBus::connect(&settings).await.unwrap();

    let first: Vec<_> = (0..12).map(|i| push(1 + (i as i64 % 4), i)).collect();
    let (sink1, shutdown1, handle1) = start(&settings).await;
    bus.publish(&first).await.unwrap();
    sink1.wait_for(first.len(), WAIT).await;
    stop(shutdown1, handle1).await;
    assert_eq!(sink1.pushes().len(), first.len(), "nothing handed off twice");

    let second: Vec<_> = (12..20).map(|i| push(1 + (i as i64 % 4), i)).collect();
    bus.publish(&second).await.unwrap();

    let (sink2, shutdown2, handle2) = start(&settings).await;
    let got = sink2.wait_for(second.len(), WAIT).await;
    // Give a wrongly re-delivered old push time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_after = sink2.pushes();
    assert_eq!(got_after.len(), got.len(), "extra pushes: {got_after:?}");
    let mut by_user = per_user(&got_after);
    for (u, positions) in per_user(&second) {
        assert_eq!(by_user.remove(&u).unwrap(), positions, "user {u}");
    }
    assert!(by_user.is_empty());
    stop(shutdown2, handle2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_records_that_are_not_pushes() {
    let (_mock, settings) = cluster(1);
    let bus = KafkaBus::connect(&settings).await.unwrap();
    let raw: FutureProducer = ClientConfig::new().set("bootstrap.servers", &settings.brokers).create().unwrap();
    let raw_send = |payload: &'static [u8]| {
        let raw = raw.clone();
        let topic = settings.topic.clone();
        async move {
            raw.send(FutureRecord::to(&topic).key("7").payload(payload), Duration::from_secs(10)).await.unwrap();
        }
    };

    let (sink, shutdown, handle) = start(&settings).await;
    raw_send(b"not json at all").await;
    raw_send(br#"{"op":"no_such_op","user_id":7}"#).await;
    bus.publish(&[push(7, 0)]).await.unwrap();
    raw_send(b"\xff\xfe").await; // last in the partition: its offset must be committed too
    let got = sink.wait_for(1, WAIT).await;
    assert_eq!(got, vec![push(7, 0)]);
    // The consumer must get past the trailing garbage too (then it commits 4 on shutdown).
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(shutdown, handle).await;
    assert_eq!(sink.pushes(), vec![push(7, 0)]);

    // The group's committed offset is past every record, the garbage included.
    let settings2 = settings.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &settings2.brokers)
            .set("group.id", &settings2.group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&settings2.topic, 0);
        let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        committed.find_partition(&settings2.topic, 0).unwrap().offset()
    })
    .await
    .unwrap();
    assert_eq!(committed, Offset::Offset(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_for_an_existing_topic_only() {
    let (_mock, mut settings) = cluster(2);
    let bus = KafkaBus::connect(&settings).await.unwrap();
    bus.ping().await.unwrap();

    // A bus whose topic was never created (the mock refuses CreateTopics).
    settings.topic = unique("feige.missing.");
    let err = KafkaBus::connect(&settings).await.map(|_| ()).unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_unavailable() {
    common::init_tracing();
    // Nothing listens on port 1.
    let settings = KafkaSettings::parse("kafka://127.0.0.1:1").unwrap();
    let started = std::time::Instant::now();
    let err = KafkaBus::connect(&settings).await.map(|_| ()).unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert_eq!(err.code(), "backend_unavailable");
    let sink = Arc::new(RecordingSink::default());
    let err = KafkaConsumer::start(&settings, sink, CancellationToken::new()).await.map(|_| ()).unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_while_the_broker_is_down_then_recovers() {
    let (mock, settings) = cluster(2);
    let bus = KafkaBus::connect(&settings).await.unwrap();
    bus.publish(&[push(1, 0)]).await.unwrap();

    mock.broker_down(1).unwrap();
    let started = std::time::Instant::now();
    let err = bus.publish(&[push(1, 1), push(2, 1)]).await.unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());
    assert_eq!(bus.ping().await.unwrap_err().status(), 503);

    mock.broker_up(1).unwrap();
    tokio::time::timeout(WAIT, async { while bus.publish(&[push(1, 2)]).await.is_err() {} })
        .await
        .expect("publishing did not recover after the broker came back");
    bus.ping().await.unwrap();
}
