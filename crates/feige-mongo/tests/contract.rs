//! The timeline contracts (feige-testkit) against a real MongoDB-compatible server, plus the
//! Mongo-specific guarantees: heads outlive retention, indexes exist.
//!
//! The server is `FEIGE_TEST_MONGO_URL` (default `mongodb://127.0.0.1:27217`, started by
//! `bash scripts/services`). Each test uses a database of its own; an unreachable server fails
//! the tests, it never skips them.

#![allow(clippy::unwrap_used)]

use feige_core::Config;
use feige_core::model::TimelineEntry;
use feige_core::ports::{Inserted, Ports, Probe, TimelineStore};
use feige_core::timeline;
use feige_mongo::{DEFAULT_RETENTION, KEY_INDEX, MongoTimeline, SEQ_INDEX, TTL_INDEX};
use feige_store::memory::MemoryCache;
use feige_testkit as contract;
use futures::TryStreamExt;
use mongodb::bson::doc;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const DEFAULT_URL: &str = "mongodb://127.0.0.1:27217";
/// Keeps an unreachable server from hanging a test for the driver's default 30 s.
const TIMEOUTS: &str = "serverSelectionTimeoutMS=3000&connectTimeoutMS=3000";

/// The test server's URL with a fresh database name and short timeouts.
fn fresh_url() -> String {
    let base =
        std::env::var("FEIGE_TEST_MONGO_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_URL.to_string());
    let (base, query) = base.split_once('?').unwrap_or((&base, ""));
    let (scheme, rest) = base.split_once("://").unwrap_or(("mongodb", base));
    let hosts = rest.split('/').next().unwrap_or(rest);
    let db = format!("feige_test_{}", uuid::Uuid::now_v7().simple());
    let query = if query.is_empty() { TIMEOUTS.to_string() } else { format!("{query}&{TIMEOUTS}") };
    format!("{scheme}://{hosts}/{db}?{query}")
}

async fn connect(url: &str, retention: Duration) -> MongoTimeline {
    MongoTimeline::connect_with_retention(url, retention).await.unwrap_or_else(|e| {
        panic!(
            "MongoDB-compatible test server unreachable at {url}: {e}. Start it with \
                 `bash scripts/services` or point FEIGE_TEST_MONGO_URL at one."
        )
    })
}

async fn store() -> Arc<MongoTimeline> {
    Arc::new(connect(&fresh_url(), DEFAULT_RETENTION).await)
}

/// Embedded ports (SQLite, in-process cache and bus) with the timeline on MongoDB.
async fn ports(dir: &TempDir, timeline: Arc<MongoTimeline>) -> Ports {
    let config = Config::from_lookup(|k| (k == "FEIGE_DATA_DIR").then(|| dir.path().display().to_string())).unwrap();
    let ports = feige_store::connect(&config).await.unwrap().ports;
    Ports { timeline, ..ports }
}

use feige_testkit::entry;

#[tokio::test]
async fn mongo_timeline_store() {
    contract::timeline_store(store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongo_timeline_never_skips_a_hole() {
    for _ in 0..2 {
        let dir = TempDir::new().unwrap();
        let ports = ports(&dir, store().await).await;
        tokio::time::timeout(Duration::from_secs(120), contract::no_hole(ports))
            .await
            .expect("no_hole took over 120 s");
    }
}

#[tokio::test]
async fn mongo_seqs_survive_a_cold_cache() {
    let dir = TempDir::new().unwrap();
    let ports = ports(&dir, store().await).await;
    contract::seqs_survive_a_cold_cache(ports, Arc::new(MemoryCache::default())).await;
}

#[tokio::test]
async fn max_seq_survives_retention_deleting_every_entry() {
    let store = store().await;
    let (a, b, c) = (contract::fresh_user(), contract::fresh_user(), contract::fresh_user());
    // A fan-out over three users, plus a second batch that only raises `a`.
    let out = store.insert_many(&[entry(a, 1, "m1"), entry(b, 4, "m1"), entry(c, 9, "m1")]).await.unwrap();
    assert_eq!(out, vec![Inserted::Ok; 3]);
    let out = store.insert_many(&[entry(a, 2, "m2"), entry(a, 3, "m3"), entry(b, 4, "m2")]).await.unwrap();
    assert_eq!(out, vec![Inserted::Ok, Inserted::Ok, Inserted::SeqTaken], "a refused entry does not move the head");

    // Retention removes everything (the TTL monitor would, eventually).
    let deleted = store
        .database()
        .collection::<mongodb::bson::Document>("timeline")
        .delete_many(doc! { "u": { "$in": [a.0, b.0, c.0] } })
        .await
        .unwrap();
    assert_eq!(deleted.deleted_count, 5);
    assert!(store.read(a, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.max_seq(a).await.unwrap(), 3);
    assert_eq!(store.max_seq(b).await.unwrap(), 4);
    assert_eq!(store.max_seq(c).await.unwrap(), 9);
    assert_eq!(store.max_seq(contract::fresh_user()).await.unwrap(), 0);

    // A cold allocator (restart, flushed cache) carries on after the head, not at 1.
    let dir = TempDir::new().unwrap();
    let ports = ports(&dir, store.clone()).await;
    let e = entry(a, 0, "after-retention").event.unwrap();
    let written = timeline::append(&ports, vec![(a, e)], false).await.unwrap();
    assert_eq!(written[0].1.seq, 4);
    assert_eq!(store.max_seq(a).await.unwrap(), 4);

    // A head never goes down, whatever is written later.
    store.insert(&entry(c, 5, "late")).await.unwrap();
    assert_eq!(store.max_seq(c).await.unwrap(), 9);
}

#[tokio::test]
async fn indexes_exist_and_connect_is_idempotent() {
    let url = fresh_url();
    let retention = Duration::from_secs(7 * 24 * 3600);
    let store = connect(&url, retention).await;
    assert_eq!(store.retention(), retention);
    // Connecting again to the same database finds the indexes in place.
    let again = connect(&url, retention).await;
    again.ping().await.unwrap();

    let indexes: Vec<_> = store
        .database()
        .collection::<mongodb::bson::Document>("timeline")
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let by_name = |name: &str| {
        indexes
            .iter()
            .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name))
            .unwrap_or_else(|| panic!("index {name} missing; have {indexes:?}"))
    };
    let seq = by_name(SEQ_INDEX);
    assert_eq!(seq.keys, doc! { "u": 1, "s": 1 });
    assert_eq!(seq.options.as_ref().unwrap().unique, Some(true));
    let key = by_name(KEY_INDEX);
    assert_eq!(key.keys, doc! { "u": 1, "k": 1 });
    assert_eq!(key.options.as_ref().unwrap().unique, Some(true));
    let ttl = by_name(TTL_INDEX);
    assert_eq!(ttl.keys, doc! { "w": 1 });
    assert_eq!(ttl.options.as_ref().unwrap().expire_after, Some(retention));

    // Another retention on an existing database: MongoDB changes the TTL in place (collMod);
    // a server without collMod (jongodb) keeps the old one, and connecting still works.
    let longer = Duration::from_secs(40 * 24 * 3600);
    let changed = connect(&url, longer).await;
    assert_eq!(changed.retention(), longer);
    let ttl = changed
        .database()
        .collection::<mongodb::bson::Document>("timeline")
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.keys == doc! { "w": 1 })
        .unwrap();
    let now = ttl.options.unwrap().expire_after.unwrap();
    assert!(now == longer || now == retention, "TTL is {now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_only_go_up_under_concurrent_writers() {
    let store = store().await;
    let user = contract::fresh_user();
    let writers = 8u64;
    let per_writer = 10u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Writer w takes seqs w+1, w+1+writers, ...: every head update races the others.
            for i in 0..per_writer {
                let seq = 1 + w + i * writers;
                let out = store.insert(&entry(user, seq, &format!("k{seq}"))).await.unwrap();
                assert_eq!(out, Inserted::Ok);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    store.database().collection::<mongodb::bson::Document>("timeline").delete_many(doc! { "u": user.0 }).await.unwrap();
    assert_eq!(store.max_seq(user).await.unwrap(), writers * per_writer);
}

#[tokio::test]
async fn documents_follow_the_schema() {
    let store = store().await;
    let u = contract::fresh_user();
    let mut e = entry(u, 1, "big");
    // Numbers BSON cannot hold and keys it dislikes survive: the event is stored as JSON text.
    e.event.as_mut().unwrap().body = Some(json!({ "n": u64::MAX, "$odd.key": 1.5 }));
    store.insert(&e).await.unwrap();
    let filler = TimelineEntry { event: None, ..entry(u, 2, "gap:2") };
    store.insert(&filler).await.unwrap();
    assert_eq!(store.read(u, 0, 10).await.unwrap(), vec![e.clone(), filler]);
    assert!(store.read(u, 0, 0).await.unwrap().is_empty(), "limit 0 is zero");

    let raw = store
        .database()
        .collection::<mongodb::bson::Document>("timeline")
        .find_one(doc! { "u": u.0, "s": 1_i64 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get_i64("u").unwrap(), u.0);
    assert_eq!(raw.get_i64("s").unwrap(), 1);
    assert_eq!(raw.get_str("k").unwrap(), "big");
    assert!(raw.get_str("e").unwrap().contains("18446744073709551615"));
    assert_eq!(raw.get_datetime("w").unwrap().timestamp_millis(), e.written_at);
    let head = store
        .database()
        .collection::<mongodb::bson::Document>("heads")
        .find_one(doc! { "_id": u.0 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.get_i64("s").unwrap(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let started = Instant::now();
    let err = MongoTimeline::connect("mongodb://127.0.0.1:1/feige?serverSelectionTimeoutMS=300").await.unwrap_err();
    assert_eq!(err.code(), "backend_unavailable", "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let bad = MongoTimeline::connect("http://nope").await.unwrap_err();
    assert_eq!(bad.status(), 400, "{bad}");
}

#[tokio::test]
async fn retention_is_validated() {
    let err = MongoTimeline::connect_with_retention(&fresh_url(), Duration::from_millis(10)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_retention");
}
