//! Per-user timelines in a SQLite file of their own (the embedded profile): writes on the
//! file's writer thread with group commit ([`crate::lite`]), reads through sqlx.

use crate::lite::{LiteWriter, WriteGate, lite_err};
use crate::sql_err;
use async_trait::async_trait;
use feige_core::ids::UserId;
use feige_core::model::{Event, Seq, TimelineEntry};
use feige_core::ports::{Inserted, Probe, TimelineStore};
use feige_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
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

/// Rows per multi-row INSERT (5 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 100;

/// A timeline row as the writer thread binds it (the event already serialised by the caller,
/// so the one writer thread does only SQLite work).
struct Row {
    user_id: i64,
    seq: i64,
    event_key: String,
    /// The event as JSON with `seq` 0 (the row's `seq` column is the event's seq), shared by
    /// every member's row of a fan-out: stored once in `timeline_event`.
    event: Option<Arc<str>>,
    written_at: i64,
}

/// The `timeline_event` rows written by one call: rows of one fan-out share one `Arc`, so
/// one event row each.
#[derive(Default)]
struct EventIds(Vec<StoredEvent>);

struct StoredEvent {
    json: Arc<str>,
    key: String,
    id: i64,
    /// Whether some INSERT that pointed at it ignored a row (a retry, or a seq taken).
    maybe_unused: bool,
}

impl EventIds {
    fn id(&mut self, c: &Connection, row: &Row) -> Result<Option<i64>> {
        let Some(json) = &row.event else { return Ok(None) };
        if let Some(e) = self.0.iter().rev().find(|e| Arc::ptr_eq(&e.json, json)) {
            return Ok(Some(e.id));
        }
        c.prepare_cached("INSERT INTO timeline_event (event) VALUES (?)")
            .and_then(|mut s| s.execute([&**json]))
            .map_err(lite_err(TL))?;
        let id = c.last_insert_rowid();
        self.0.push(StoredEvent { json: json.clone(), key: row.event_key.clone(), id, maybe_unused: false });
        Ok(Some(id))
    }

    fn some_row_ignored(&mut self, ids: &[Option<i64>]) {
        for e in &mut self.0 {
            e.maybe_unused |= ids.contains(&Some(e.id));
        }
    }

    /// Deletes the event rows that no timeline row points at (each of their rows was already
    /// written by an earlier try, or lost its seq).
    fn drop_unused(&self, c: &Connection) -> Result<()> {
        for e in self.0.iter().filter(|e| e.maybe_unused) {
            let used: Option<i64> = c
                .prepare_cached("SELECT 1 FROM timeline WHERE event_key = ? AND event_id = ? LIMIT 1")
                .and_then(|mut s| s.query_row(params![e.key, e.id], |r| r.get(0)).optional())
                .map_err(lite_err(TL))?;
            if used.is_none() {
                c.prepare_cached("DELETE FROM timeline_event WHERE id = ?")
                    .and_then(|mut s| s.execute([e.id]))
                    .map_err(lite_err(TL))?;
            }
        }
        Ok(())
    }
}

/// The embedded timeline store.
///
/// Writes go through the database's writer thread ([`LiteWriter`]): every `insert_many`
/// waiting when the previous transaction ends joins the next one (group commit), and each
/// caller is answered only after that transaction committed. Reads use a small sqlx pool.
pub struct SqliteTimeline {
    writer: LiteWriter,
    readers: SqlitePool,
}

impl SqliteTimeline {
    /// Opens the store at `sqlite://path` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let (migrated, readers) = open(url, &MIGRATOR, TL).await?;
        migrated.close().await;
        let writer = LiteWriter::start(url.trim_start_matches("sqlite://"), TL, WriteGate::default())?;
        Ok(SqliteTimeline { writer, readers })
    }
}

/// Inserts `chunk` with one `INSERT OR IGNORE` (which, unlike a plain INSERT that may abort
/// half-way, needs no statement journal); only if some row was ignored (a retry, or a seq
/// taken by a filler) are the rows looked at one by one to learn what happened to each.
fn insert_chunk(c: &Connection, events: &mut EventIds, chunk: &[Row]) -> Result<Vec<Inserted>> {
    let ids = chunk.iter().map(|r| events.id(c, r)).collect::<Result<Vec<_>>>()?;
    let mut sql =
        String::from("INSERT OR IGNORE INTO timeline (user_id, seq, event_key, event_id, written_at) VALUES ");
    sql.push_str(&vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", "));
    let mut stmt = c.prepare_cached(&sql).map_err(lite_err(TL))?;
    for (i, (r, id)) in chunk.iter().zip(&ids).enumerate() {
        let at = i * 5;
        stmt.raw_bind_parameter(at + 1, r.user_id).map_err(lite_err(TL))?;
        stmt.raw_bind_parameter(at + 2, r.seq).map_err(lite_err(TL))?;
        stmt.raw_bind_parameter(at + 3, &r.event_key).map_err(lite_err(TL))?;
        stmt.raw_bind_parameter(at + 4, id).map_err(lite_err(TL))?;
        stmt.raw_bind_parameter(at + 5, r.written_at).map_err(lite_err(TL))?;
    }
    let written = stmt.raw_execute().map_err(lite_err(TL))?;
    if written == chunk.len() {
        return Ok(vec![Inserted::Ok; chunk.len()]);
    }
    events.some_row_ignored(&ids);
    chunk.iter().map(|r| outcome(c, r)).collect()
}

/// What became of a row after an `INSERT OR IGNORE`: ours is at (user, seq) → `Ok`; the event
/// sits at another seq → `AlreadyAt`; the seq holds something else → `SeqTaken`.
fn outcome(c: &Connection, r: &Row) -> Result<Inserted> {
    let at_seq: Option<String> = c
        .prepare_cached("SELECT event_key FROM timeline WHERE user_id = ? AND seq = ?")
        .and_then(|mut s| s.query_row(params![r.user_id, r.seq], |row| row.get(0)).optional())
        .map_err(lite_err(TL))?;
    if at_seq.as_deref() == Some(r.event_key.as_str()) {
        return Ok(Inserted::Ok);
    }
    let at: Option<i64> = c
        .prepare_cached("SELECT seq FROM timeline WHERE user_id = ? AND event_key = ?")
        .and_then(|mut s| s.query_row(params![r.user_id, r.event_key], |row| row.get(0)).optional())
        .map_err(lite_err(TL))?;
    Ok(match at {
        Some(seq) => Inserted::AlreadyAt(seq as Seq),
        None => Inserted::SeqTaken,
    })
}

#[async_trait]
impl TimelineStore for SqliteTimeline {
    async fn insert(&self, entry: &TimelineEntry) -> Result<Inserted> {
        Ok(self.insert_many(std::slice::from_ref(entry)).await?.remove(0))
    }

    /// All entries in one transaction (shared with concurrent callers, see [`SqliteTimeline`]).
    async fn insert_many(&self, entries: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        // A fan-out is the same event (same key) for every member, each at its own seq.
        let mut last: Option<(&str, Arc<str>)> = None;
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let event = match (&e.event, &last) {
                (None, _) => None,
                (Some(_), Some((key, json))) if *key == e.event_key => Some(json.clone()),
                (Some(ev), _) => {
                    let json: Arc<str> =
                        serde_json::to_string(&Event { seq: 0, ..ev.clone() }).map_err(Error::internal)?.into();
                    last = Some((&e.event_key, json.clone()));
                    Some(json)
                }
            };
            rows.push(Row {
                user_id: e.user_id.0,
                seq: e.seq.min(i64::MAX as u64) as i64,
                event_key: e.event_key.clone(),
                event,
                written_at: e.written_at,
            });
        }
        self.writer
            .write(move |c| {
                let mut out = Vec::with_capacity(rows.len());
                let mut events = EventIds::default();
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    out.extend(insert_chunk(c, &mut events, chunk)?);
                }
                events.drop_unused(c)?;
                Ok(out)
            })
            .await
    }

    async fn read(&self, user: UserId, after: Seq, limit: u32) -> Result<Vec<TimelineEntry>> {
        let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT t.seq, t.event_key, COALESCE(t.event, e.event), t.written_at FROM timeline t \
             LEFT JOIN timeline_event e ON e.id = t.event_id \
             WHERE t.user_id = ? AND t.seq > ? ORDER BY t.seq LIMIT ?",
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
                    event: event
                        .map(|e| serde_json::from_str(&e).map(|ev| Event { seq: seq as Seq, ..ev }))
                        .transpose()
                        .map_err(Error::internal)?,
                    written_at,
                })
            })
            .collect()
    }

    async fn max_seq(&self, user: UserId) -> Result<Seq> {
        // On the writer: it sees every committed write (rare: only for a cold seq counter).
        let max: Option<i64> = self
            .writer
            .write(move |c| {
                c.prepare_cached("SELECT MAX(seq) FROM timeline WHERE user_id = ?")
                    .and_then(|mut s| s.query_row([user.0], |row| row.get(0)))
                    .map_err(lite_err(TL))
            })
            .await?;
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
