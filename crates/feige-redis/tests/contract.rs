//! The cache port contracts against a real Redis (`FEIGE_TEST_REDIS_URL`, default
//! redis://127.0.0.1:6379). Each test uses its own key prefix. A missing Redis fails the
//! tests; nothing is skipped.

#![allow(clippy::unwrap_used)]

use feige_redis::RedisCache;
use feige_testkit as contract;
use std::sync::Arc;

fn url() -> String {
    std::env::var("FEIGE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn cache() -> Arc<RedisCache> {
    let prefix = format!("{}:", contract::unique("feige-test-"));
    match RedisCache::connect_with_prefix(&url(), &prefix).await {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("Redis at {} is required for these tests (start it with scripts/services): {e}", url()),
    }
}

#[tokio::test]
async fn redis_seq_allocator() {
    contract::seq_allocator(cache().await).await;
}

#[tokio::test]
async fn redis_revocations() {
    contract::revocations(cache().await).await;
}

#[tokio::test]
async fn redis_rate_limiter() {
    contract::rate_limiter(cache().await).await;
}

#[tokio::test]
async fn redis_presence() {
    contract::presence(cache().await).await;
}

#[tokio::test]
async fn a_flushed_counter_reads_as_cold() {
    use feige_core::ports::SeqAllocator;
    let prefix = format!("{}:", contract::unique("feige-flush-"));
    let c = RedisCache::connect_with_prefix(&url(), &prefix).await.unwrap();
    let u = contract::fresh_user();
    c.init(u, 41).await.unwrap();
    assert_eq!(c.allocate(u, 1).await.unwrap(), Some(42));
    // Lose the key the way FLUSHALL would, without disturbing other tests' keys.
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{prefix}seq:{u}")).query_async(&mut conn).await.unwrap();
    assert_eq!(c.allocate(u, 1).await.unwrap(), None, "a lost counter must not restart from 0");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_503() {
    let err = RedisCache::connect("redis://127.0.0.1:1").await.err().unwrap();
    assert_eq!(err.status(), 503);
}
