//! The port contracts (feige-testkit) against the SQL store on SQLite and on MySQL/MariaDB
//! (`FEIGE_TEST_MYSQL_URL`, default mysql://root@127.0.0.1:3306, a fresh database per test),
//! and against the in-process cache. A missing MySQL fails the tests; nothing is skipped.

#![allow(clippy::unwrap_used)]

use feige_core::Config;
use feige_core::ports::Ports;
use feige_store::memory::MemoryCache;
use feige_store::sql::SqlDb;
use feige_store::sqlite_timeline::SqliteTimeline;
use feige_testkit as contract;
use std::sync::Arc;
use tempfile::TempDir;

async fn db(dir: &TempDir) -> Arc<SqlDb> {
    Arc::new(SqlDb::connect(&format!("sqlite://{}/feige.db", dir.path().display())).await.unwrap())
}

/// A fresh MySQL database, dropped by `Mysql::drop_db` at the end of the test.
struct Mysql {
    db: Arc<SqlDb>,
    server: String,
    name: String,
}

impl Mysql {
    async fn new() -> Mysql {
        let server = std::env::var("FEIGE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let name = contract::unique("feige_t_");
        match SqlDb::connect(&format!("{server}/{name}")).await {
            Ok(db) => Mysql { db: Arc::new(db), server, name },
            Err(e) => {
                panic!("MySQL/MariaDB at {server} is required for these tests (start it with scripts/services): {e}")
            }
        }
    }

    async fn drop_db(self) {
        use sqlx::Executor;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.server).await.unwrap();
        pool.execute(format!("DROP DATABASE `{}`", self.name).as_str()).await.unwrap();
    }
}

async fn timeline(dir: &TempDir) -> Arc<SqliteTimeline> {
    Arc::new(SqliteTimeline::connect(&format!("sqlite://{}/timeline.db", dir.path().display())).await.unwrap())
}

async fn ports(dir: &TempDir) -> Ports {
    let config = Config::from_lookup(|k| (k == "FEIGE_DATA_DIR").then(|| dir.path().display().to_string())).unwrap();
    feige_store::connect(&config).await.unwrap().ports
}

#[tokio::test]
async fn sqlite_user_store() {
    let dir = TempDir::new().unwrap();
    contract::user_store(db(&dir).await).await;
}

#[tokio::test]
async fn sqlite_session_store() {
    let dir = TempDir::new().unwrap();
    let db = db(&dir).await;
    contract::session_store(db.clone(), db).await;
}

#[tokio::test]
async fn sqlite_chat_store() {
    let dir = TempDir::new().unwrap();
    let db = db(&dir).await;
    contract::chat_store(db.clone(), db).await;
}

#[tokio::test]
async fn sqlite_timeline_store() {
    let dir = TempDir::new().unwrap();
    contract::timeline_store(timeline(&dir).await).await;
}

#[tokio::test]
async fn mysql_user_store() {
    let m = Mysql::new().await;
    contract::user_store(m.db.clone()).await;
    m.drop_db().await;
}

#[tokio::test]
async fn mysql_session_store() {
    let m = Mysql::new().await;
    contract::session_store(m.db.clone(), m.db.clone()).await;
    m.drop_db().await;
}

#[tokio::test]
async fn mysql_chat_store() {
    let m = Mysql::new().await;
    contract::chat_store(m.db.clone(), m.db.clone()).await;
    m.drop_db().await;
}

#[tokio::test]
async fn mysql_group_store() {
    let m = Mysql::new().await;
    contract::group_store(m.db.clone(), m.db.clone(), m.db.clone()).await;
    m.drop_db().await;
}

#[tokio::test]
async fn mysql_recall() {
    let m = Mysql::new().await;
    contract::recall(m.db.clone(), m.db.clone()).await;
    m.drop_db().await;
}

#[tokio::test]
async fn sqlite_group_store() {
    let dir = TempDir::new().unwrap();
    let db = db(&dir).await;
    contract::group_store(db.clone(), db.clone(), db).await;
}

#[tokio::test]
async fn sqlite_recall() {
    let dir = TempDir::new().unwrap();
    let db = db(&dir).await;
    contract::recall(db.clone(), db).await;
}

#[tokio::test]
async fn mysql_schema_refuses_sql_injection_as_data() {
    use feige_core::ports::UserStore;
    let m = Mysql::new().await;
    let nasty = "Robert'); DROP TABLE users;--";
    let u = m.db.create_user("bobby_tables", nasty, "h", 1).await.unwrap();
    assert_eq!(m.db.user(u.user_id).await.unwrap().unwrap().nickname, nasty);
    m.drop_db().await;
}

#[tokio::test]
async fn memory_seq_allocator() {
    contract::seq_allocator(Arc::new(MemoryCache::default())).await;
}

#[tokio::test]
async fn memory_revocations() {
    contract::revocations(Arc::new(MemoryCache::default())).await;
}

#[tokio::test]
async fn memory_presence() {
    contract::presence(Arc::new(MemoryCache::default())).await;
}

#[tokio::test]
async fn memory_rate_limiter() {
    contract::rate_limiter(Arc::new(MemoryCache::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_timeline_never_skips_a_hole() {
    for _ in 0..3 {
        let dir = TempDir::new().unwrap();
        contract::no_hole(ports(&dir).await).await;
    }
}

#[tokio::test]
async fn embedded_seqs_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    contract::seqs_survive_a_cold_cache(ports(&dir).await, Arc::new(MemoryCache::default())).await;
}

#[tokio::test]
async fn data_survives_reopening_the_files() {
    let dir = TempDir::new().unwrap();
    let id = {
        let db = db(&dir).await;
        feige_core::ports::UserStore::create_user(db.as_ref(), "persist", "P", "h", 1).await.unwrap().user_id
    };
    let db = db(&dir).await;
    let u = feige_core::ports::UserStore::user(db.as_ref(), id).await.unwrap().unwrap();
    assert_eq!(u.username, "persist");
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let config = Config::from_lookup(|k| (k == "FEIGE_CACHE_URL").then(|| "memcached://x".into())).unwrap();
    let err = feige_store::connect(&config).await.err().unwrap();
    assert_eq!(err.code(), "unsupported_backend");
}

/// The embedded timeline stores a fan-out's event once (migration 0003), a retried fan-out
/// adds no event row, and rows written before 0003 (JSON inline) still read back.
#[tokio::test]
async fn embedded_timeline_stores_a_fan_outs_event_once() {
    use feige_core::ports::TimelineStore;
    let dir = TempDir::new().unwrap();
    let t = timeline(&dir).await;
    let users: Vec<_> = (0..3).map(|_| contract::fresh_user()).collect();
    let first: Vec<_> = users
        .iter()
        .map(|&u| feige_core::model::TimelineEntry { user_id: u, ..contract::entry(users[0], 1, "k1") })
        .collect();
    assert_eq!(t.insert_many(&first).await.unwrap(), vec![feige_core::ports::Inserted::Ok; 3]);
    let file = rusqlite::Connection::open(dir.path().join("timeline.db")).unwrap();
    let events = || -> i64 { file.query_row("SELECT COUNT(*) FROM timeline_event", [], |r| r.get(0)).unwrap() };
    assert_eq!(events(), 1);
    // The retry finds every row in place: nothing new is kept.
    assert_eq!(t.insert_many(&first).await.unwrap(), vec![feige_core::ports::Inserted::Ok; 3]);
    assert_eq!(events(), 1);
    for &u in &users {
        let read = t.read(u, 0, 10).await.unwrap();
        assert_eq!(read, vec![feige_core::model::TimelineEntry { user_id: u, ..first[0].clone() }]);
    }
    // A row from before 0003 carries its event inline.
    let old = contract::entry(users[0], 2, "k0");
    let json = serde_json::to_string(old.event.as_ref().unwrap()).unwrap();
    file.execute(
        "INSERT INTO timeline (user_id, seq, event_key, event, written_at) VALUES (?, 2, 'k0', ?, ?)",
        rusqlite::params![users[0].0, json, old.written_at],
    )
    .unwrap();
    assert_eq!(t.read(users[0], 1, 10).await.unwrap(), vec![old]);
}
