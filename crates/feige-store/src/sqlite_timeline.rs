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
use tokio::sync::{mpsc, oneshot};

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

/// Most concurrent `insert_many` calls committed in one transaction.
const GROUP_COMMIT_MAX: usize = 128;
/// Rows per multi-row INSERT (5 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 100;

type Batch = (Vec<TimelineEntry>, oneshot::Sender<Result<Vec<Inserted>>>);

/// The embedded timeline store.
///
/// Writes go through one writer task doing **group commit**: every `insert_many` waiting when
/// the previous transaction ends joins the next one, and each caller is answered only after
/// that transaction committed. SQLite has one writer at a time anyway; this pays its
/// BEGIN/COMMIT (and WAL append) once per group instead of once per send.
pub struct SqliteTimeline {
    writer: SqlitePool,
    readers: SqlitePool,
    batches: mpsc::Sender<Batch>,
}

impl SqliteTimeline {
    /// Opens the store at `sqlite://path` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let (writer, readers) = open(url, &MIGRATOR, TL).await?;
        let (batches, rx) = mpsc::channel(4 * GROUP_COMMIT_MAX);
        tokio::spawn(group_commit(writer.clone(), rx));
        Ok(SqliteTimeline { writer, readers, batches })
    }

    /// Inserts `chunk` with one statement; if any row collides (a retry, or a seq taken by a
    /// filler), SQLite undid that statement alone, and the rows go in one by one to learn which.
    async fn insert_chunk(tx: &mut Transaction<'_, Sqlite>, chunk: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        if chunk.len() == 1 {
            return Ok(vec![Self::insert_in(tx, &chunk[0]).await?]);
        }
        let mut sql = String::from("INSERT INTO timeline (user_id, seq, event_key, event, written_at) VALUES ");
        sql.push_str(&vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", "));
        let mut query = sqlx::query(&sql);
        for e in chunk {
            let event = e.event.as_ref().map(serde_json::to_string).transpose().map_err(Error::internal)?;
            query = query.bind(e.user_id.0).bind(e.seq as i64).bind(&e.event_key).bind(event).bind(e.written_at);
        }
        match query.execute(&mut **tx).await {
            Ok(_) => Ok(vec![Inserted::Ok; chunk.len()]),
            Err(err) if is_unique_violation(&err) => {
                let mut out = Vec::with_capacity(chunk.len());
                for e in chunk {
                    out.push(Self::insert_in(tx, e).await?);
                }
                Ok(out)
            }
            Err(err) => Err(sql_err(TL)(err)),
        }
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

/// The writer task: takes a batch, adds every batch already waiting (up to
/// [`GROUP_COMMIT_MAX`]), writes them in one transaction, commits, answers each. A failure
/// fails every batch of that transaction (none of it was committed).
async fn group_commit(writer: SqlitePool, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let written: Result<Vec<Vec<Inserted>>> = async {
            let mut tx = writer.begin().await.map_err(sql_err(TL))?;
            let mut all = Vec::with_capacity(group.len());
            for (entries, _) in &group {
                let mut out = Vec::with_capacity(entries.len());
                for chunk in entries.chunks(ROWS_PER_INSERT) {
                    out.extend(SqliteTimeline::insert_chunk(&mut tx, chunk).await?);
                }
                all.push(out);
            }
            tx.commit().await.map_err(sql_err(TL))?;
            Ok(all)
        }
        .await;
        match written {
            Ok(all) => {
                for ((_, reply), out) in group.into_iter().zip(all) {
                    let _ = reply.send(Ok(out));
                }
            }
            Err(e) => {
                for (_, reply) in group {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[async_trait]
impl TimelineStore for SqliteTimeline {
    async fn insert(&self, entry: &TimelineEntry) -> Result<Inserted> {
        Ok(self.insert_many(std::slice::from_ref(entry)).await?.remove(0))
    }

    /// All entries in one transaction (shared with concurrent callers, see [`SqliteTimeline`]).
    async fn insert_many(&self, entries: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        let (tx, rx) = oneshot::channel();
        let gone = || Error::unavailable(TL, "the timeline writer stopped");
        self.batches.send((entries.to_vec(), tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
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
