//! The embedded profile's hot writes: SQLite through rusqlite on a thread of our own, with
//! **group commit**.
//!
//! sqlx runs each SQLite connection on a worker thread and every statement is a round trip to
//! it; a send was five of them on the one writer connection, so sends queued behind thread
//! hand-offs rather than behind SQLite (issue 7's profile). Here a caller hands the writer
//! thread a closure; the thread takes every closure that is waiting (up to [`MAX_BATCH`]), runs
//! them in one `BEGIN IMMEDIATE … COMMIT` and answers each caller once the transaction has
//! committed. One hand-off per call, one commit per batch, prepared statements cached on the
//! connection.
//!
//! **The rule for jobs**: a job may fail with a domain error (`403`, `404`, `409`…) only
//! *before* its first write; any other failure (a SQLite error, a panic) aborts the whole
//! group: it is rolled back and every caller in it gets the error (a 5xx the client retries;
//! every write here is idempotent on retry). So no job can leave half of itself behind, and no
//! savepoints are needed: a savepoint makes SQLite copy every page a job touches into a
//! sub-journal first, which cost a third of the timeline writer's time in the profile.
//!
//! A database file may also be written through sqlx (the rarer writes: sessions, groups, read
//! positions). Two writers would make SQLite answer `SQLITE_BUSY` to a deferred transaction
//! that read before it wrote, so both sides take the same [`WriteGate`] around a write
//! transaction: SQLite never sees two writers.

use feige_core::{Error, Result};
use rusqlite::Connection;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

/// Most jobs committed in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

/// Serialises write transactions on one database file between the writer thread and sqlx.
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Arc<Mutex<()>>);

impl WriteGate {
    /// Waits for the file's write turn (async side).
    pub(crate) async fn enter(&self) -> OwnedMutexGuard<()> {
        self.0.clone().lock_owned().await
    }

    fn enter_blocking(&self) -> OwnedMutexGuard<()> {
        self.0.clone().blocking_lock_owned()
    }
}

type Boxed = Box<dyn Any + Send>;
/// A job as the writer thread sees it: its result type erased.
type RunJob = Box<dyn FnOnce(&Connection) -> Result<Boxed> + Send>;

struct Job {
    run: RunJob,
    reply: oneshot::Sender<Result<Boxed>>,
}

/// A handle on one database file's writer thread. Cheap to clone; the thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub(crate) struct LiteWriter {
    jobs: mpsc::Sender<Job>,
    backend: &'static str,
}

/// Maps a rusqlite error: a busy or locked database is 503 (nothing was written), the rest 500.
pub(crate) fn lite_err(backend: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => Error::unavailable(backend, e),
        _ => Error::internal(format!("{backend}: {e}")),
    }
}

/// Opens a connection to an existing database file with the settings every Feige SQLite
/// connection uses (WAL, `synchronous = NORMAL`, busy timeout, foreign keys).
pub(crate) fn open_connection(path: &str, backend: &'static str, read_only: bool) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    };
    let conn = Connection::open_with_flags(path, flags).map_err(lite_err(backend))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(lite_err(backend))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
        .map_err(lite_err(backend))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl LiteWriter {
    /// Starts the writer thread on `path` (which must exist, migrated). `gate` is shared with
    /// every other writer of the same file.
    pub(crate) fn start(path: &str, backend: &'static str, gate: WriteGate) -> Result<Self> {
        let conn = open_connection(path, backend, false)?;
        // Checkpoints leave the commit path: the writer never checkpoints, a checkpointer
        // thread does (see `checkpointer`).
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(lite_err(backend))?;
        let checkpoints = open_connection(path, backend, false)?;
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name(format!("feige-{backend}-ckpt"))
            .spawn({
                let alive = jobs.downgrade();
                move || checkpointer(checkpoints, alive)
            })
            .map_err(|e| Error::internal(format!("{backend} checkpoint thread: {e}")))?;
        std::thread::Builder::new()
            .name(format!("feige-{backend}-writer"))
            .spawn(move || run(conn, rx, gate, backend))
            .map_err(|e| Error::internal(format!("{backend} writer thread: {e}")))?;
        Ok(LiteWriter { jobs, backend })
    }

    /// Runs `f` on the writer thread inside the next group transaction; returns its result once
    /// that transaction has committed. `f` must follow the rule in the module docs: domain
    /// errors only before its first write.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run: RunJob = Box::new(move |c: &Connection| f(c).map(|r| Box::new(r) as Boxed));
        let backend = self.backend;
        let gone = move || Error::unavailable(backend, "the writer thread stopped");
        self.jobs.send(Job { run, reply }).await.map_err(|_| gone())?;
        let out = answer.await.map_err(|_| gone())??;
        out.downcast::<R>().map(|b| *b).map_err(|_| Error::internal("writer reply of the wrong type"))
    }
}

/// How often the checkpointer copies the WAL back.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the WAL back into the database file from its own thread with `PASSIVE` checkpoints,
/// which never block the writer. SQLite would otherwise checkpoint inside a commit every
/// 1,000 pages; a fan-out rewrites one page per member, so that was a checkpoint (with its
/// fsync) inside nearly every group send's commit, and every caller of that group waited.
/// A checkpoint copies each page once however often it changed, so one per second also copies
/// less. Ends with the writer (when `alive` can no longer be upgraded).
fn checkpointer(conn: Connection, alive: mpsc::WeakSender<Job>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if alive.upgrade().is_none() {
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// The writer thread: batch, `BEGIN IMMEDIATE`, run the jobs, `COMMIT`, answer.
fn run(conn: Connection, mut rx: mpsc::Receiver<Job>, gate: WriteGate, backend: &'static str) {
    let err = lite_err(backend);
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let _turn = gate.enter_blocking();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = err(e);
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        let mut abort = None;
        for job in batch {
            if abort.is_some() {
                done.push((job.reply, None));
                continue;
            }
            let out = match std::panic::catch_unwind(AssertUnwindSafe(|| (job.run)(&conn))) {
                Ok(out) => out,
                Err(_) => Err(Error::internal("a write job panicked")),
            };
            if let Err(e @ (Error::Internal(_) | Error::Unavailable { .. })) = &out {
                abort = Some(e.clone());
            }
            done.push((job.reply, Some(out)));
        }
        let committed = match abort {
            Some(e) => Err(e),
            None => conn.execute_batch("COMMIT").map_err(&err),
        };
        match committed {
            Ok(()) => {
                for (reply, out) in done {
                    let _ = reply.send(out.unwrap_or_else(|| Err(Error::internal("write job skipped"))));
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                for (reply, _) in done {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    async fn writer(dir: &tempfile::TempDir) -> LiteWriter {
        let path = dir.path().join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        drop(c);
        LiteWriter::start(path.to_str().unwrap(), "test", WriteGate::default()).unwrap()
    }

    fn count(dir: &tempfile::TempDir) -> i64 {
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_share_transactions_and_each_gets_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir).await;
        let calls = (0..500i64).map(|k| {
            let w = w.clone();
            tokio::spawn(async move {
                w.write(move |c| {
                    c.prepare_cached("INSERT INTO t (k, v) VALUES (?, 'x')")
                        .and_then(|mut s| s.execute([k]))
                        .map_err(lite_err("test"))?;
                    Ok(k * 2)
                })
                .await
            })
        });
        let answers: Vec<i64> = futures_answers(calls).await;
        assert_eq!(answers, (0..500).map(|k| k * 2).collect::<Vec<_>>());
        assert_eq!(count(&dir), 500);
    }

    async fn futures_answers(calls: impl Iterator<Item = tokio::task::JoinHandle<Result<i64>>>) -> Vec<i64> {
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap().unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_domain_error_fails_one_job_and_anything_else_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir).await;
        let insert = |k: i64| {
            move |c: &Connection| {
                c.prepare_cached("INSERT INTO t (k, v) VALUES (?, 'x')")
                    .and_then(|mut s| s.execute([k]))
                    .map_err(lite_err("test"))
            }
        };
        w.write(insert(1)).await.unwrap();
        // A domain error (before writing) fails that job only.
        let refused = w.write(|_: &Connection| -> Result<usize> { Err(Error::forbidden("nope", "no")) }).await;
        assert!(matches!(refused, Err(Error::Forbidden { .. })));
        // A SQLite error after a write: the job's row 2 must not survive.
        let dup = w
            .write(move |c| {
                insert(2)(c)?;
                insert(1)(c)
            })
            .await;
        assert!(dup.is_err());
        // A panic after a write: row 3 must not survive, and the thread goes on.
        let panicked = w
            .write(move |c| {
                insert(3)(c)?;
                if c.is_autocommit() {
                    return Ok(0);
                }
                panic!("boom")
            })
            .await;
        assert!(panicked.is_err());
        w.write(insert(4)).await.unwrap();
        // Jobs queued together with a failing one fail with it, and none of them is committed.
        let group = (10..20i64).map(|k| {
            let w = w.clone();
            tokio::spawn(async move {
                w.write(move |c| {
                    insert(k)(c)?;
                    if k == 15 { insert(1)(c) } else { Ok(1) }
                })
                .await
            })
        });
        let mut outcomes = Vec::new();
        for g in group {
            outcomes.push(g.await.unwrap().is_ok());
        }
        assert!(outcomes.iter().any(|ok| !ok));
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        let keys: Vec<i64> = c
            .prepare("SELECT k FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        // Exactly the successful ones are there (row 15's group failed as a whole).
        let expected: Vec<i64> =
            [1, 4].into_iter().chain((10..20).zip(&outcomes).filter(|(_, ok)| **ok).map(|(k, _)| k)).collect();
        assert_eq!(keys, expected);
        assert!(!keys.contains(&15));
    }
}
