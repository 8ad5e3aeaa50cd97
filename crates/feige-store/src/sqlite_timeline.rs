//! Per-user timelines in a SQLite file of their own (the embedded profile).

use crate::{is_unique_violation, sql_err};
use async_trait::async_trait;
use feige_core::ids::UserId;
use feige_core::model::{Seq, TimelineEntry};
use feige_core::ports::{Inserted, Probe, TimelineStore};
use feige_core::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// Opens (creating if needed) a SQLite database at a `sqlite://path` URL: one writer
/// connection and a pool of readers.
async fn open(
    url: &str,
    migrator: &sqlx::migrate::Migrator,
    backend: &'static str,
) -> Result<(SqlitePool, SqlitePool)> {
    let path = url.trim_start_matches("sqlite://");
    if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::unavailable(backend, format!("{}: {e}", dir.display())))?;
    }
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(sql_err(backend))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.clone())
        .await
        .map_err(sql_err(backend))?;
    migrator.run(&writer).await.map_err(|e| Error::internal(format!("{backend} migrations: {e}")))?;
    let readers = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.read_only(true))
        .await
        .map_err(sql_err(backend))?;
    Ok((writer, readers))
}

const TL: &str = "timeline";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite-timeline");

/// The embedded timeline store.
pub struct SqliteTimeline {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteTimeline {
    /// Opens the store at `sqlite://path` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let (writer, readers) = open(url, &MIGRATOR, TL).await?;
        Ok(SqliteTimeline { writer, readers })
    }

    async fn insert_in(tx: &mut Transaction<'_, Sqlite>, e: &TimelineEntry) -> Result<Inserted> {
        let event = e.event.as_ref().map(serde_json::to_string).transpose().map_err(Error::internal)?;
        let res =
            sqlx::query("INSERT INTO timeline (user_id, seq, event_key, event, written_at) VALUES (?, ?, ?, ?, ?)")
                .bind(e.user_id.0)
                .bind(e.seq as i64)
                .bind(&e.event_key)
                .bind(event)
                .bind(e.written_at)
                .execute(&mut **tx)
                .await;
        match res {
            Ok(_) => Ok(Inserted::Ok),
            Err(err) if is_unique_violation(&err) => {
                let at: Option<(i64,)> = sqlx::query_as("SELECT seq FROM timeline WHERE user_id = ? AND event_key = ?")
                    .bind(e.user_id.0)
                    .bind(&e.event_key)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(sql_err(TL))?;
                Ok(match at {
                    Some((seq,)) => Inserted::AlreadyAt(seq as Seq),
                    None => Inserted::SeqTaken,
                })
            }
            Err(err) => Err(sql_err(TL)(err)),
        }
    }
}

#[async_trait]
impl TimelineStore for SqliteTimeline {
    async fn insert(&self, entry: &TimelineEntry) -> Result<Inserted> {
        Ok(self.insert_many(std::slice::from_ref(entry)).await?.remove(0))
    }

    /// One transaction for the whole batch: one fsync however large the fan-out.
    async fn insert_many(&self, entries: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        let mut tx = self.writer.begin().await.map_err(sql_err(TL))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(Self::insert_in(&mut tx, e).await?);
        }
        tx.commit().await.map_err(sql_err(TL))?;
        Ok(out)
    }

    async fn read(&self, user: UserId, after: Seq, limit: u32) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT seq, event_key, event, written_at FROM timeline WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(user.0)
        .bind(after.min(i64::MAX as u64) as i64)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await
        .map_err(sql_err(TL))?;
        rows.into_iter()
            .map(|(seq, event_key, event, written_at)| {
                Ok(TimelineEntry {
                    user_id: user,
                    seq: seq as Seq,
                    event_key,
                    event: event.map(|e| serde_json::from_str(&e)).transpose().map_err(Error::internal)?,
                    written_at,
                })
            })
            .collect()
    }

    async fn max_seq(&self, user: UserId) -> Result<Seq> {
        let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM timeline WHERE user_id = ?")
            .bind(user.0)
            .fetch_one(&self.writer)
            .await
            .map_err(sql_err(TL))?;
        Ok(max.unwrap_or(0) as Seq)
    }

    async fn find(&self, user: UserId, event_key: &str) -> Result<Option<Seq>> {
        let at: Option<(i64,)> = sqlx::query_as("SELECT seq FROM timeline WHERE user_id = ? AND event_key = ?")
            .bind(user.0)
            .bind(event_key)
            .fetch_optional(&self.readers)
            .await
            .map_err(sql_err(TL))?;
        Ok(at.map(|(s,)| s as Seq))
    }
}

#[async_trait]
impl Probe for SqliteTimeline {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(sql_err(TL))?;
        Ok(())
    }
}
