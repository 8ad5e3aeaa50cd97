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

/// How long a statement waits for a lock another connection holds.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of every Feige SQLite connection, rusqlite's and sqlx's (with [`BUSY_TIMEOUT`]):
/// WAL, relaxed fsync (safe with WAL), foreign keys, and no automatic checkpoints — the writer
/// thread and its copier checkpoint (see [`Checkpoints`]); an automatic one would run inside
/// some commit, holding the file's write gate while every send waits.
pub(crate) const SQLITE_SETTINGS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0";

/// Opens a connection to an existing database file with [`SQLITE_SETTINGS`].
pub(crate) fn open_connection(path: &str, backend: &'static str, read_only: bool) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
    };
    let conn = Connection::open_with_flags(path, flags).map_err(lite_err(backend))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(lite_err(backend))?;
    conn.execute_batch(SQLITE_SETTINGS).map_err(lite_err(backend))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl LiteWriter {
    /// Starts the writer thread on `path` (which must exist, migrated). `gate` is shared with
    /// every other writer of the same file.
    pub(crate) fn start(path: &str, backend: &'static str, gate: WriteGate) -> Result<Self> {
        let conn = open_connection(path, backend, false)?;
        // A big page cache keeps a fan-out's dirty pages in memory until COMMIT (with the
        // default 2 MB SQLite spills them to the WAL mid-transaction, then writes them again).
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA journal_size_limit = {WAL_KEEP_BYTES}"
        ))
        .map_err(lite_err(backend))?;
        let copies = open_connection(path, backend, false)?;
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name(format!("feige-{backend}-copy"))
            .spawn({
                let (alive, wal) = (jobs.downgrade(), format!("{path}-wal"));
                move || copier(copies, alive, &wal, backend)
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

/// The writer connection's page cache.
const WRITER_CACHE_KIB: u32 = 32 * 1024;
/// How often the copier thread copies the write-ahead log back, beside the writer.
const COPY_EVERY: Duration = Duration::from_millis(100);
/// How often the copier, between its passes, pushes the write-ahead log to disk.
const WAL_SYNC_EVERY: Duration = Duration::from_millis(20);
/// How long the log may collect commits before the writer restarts it.
const RESTART_EVERY: Duration = Duration::from_millis(250);
/// After this long without a restart (readers always on the log), the writer waits for them.
const RESTART_OVERDUE: Duration = Duration::from_secs(1);
/// How long an overdue restart waits for readers still on the log.
const RESTART_WAIT: Duration = Duration::from_millis(100);
/// What a restarted write-ahead log is truncated back to (it is reused from its start).
const WAL_KEEP_BYTES: u64 = 64 << 20;

/// Keeping the write-ahead log short.
///
/// SQLite can reuse its WAL from the start only after a checkpoint has copied *all* of it
/// back and no reader still reads from it. A `PASSIVE` checkpoint beside a busy writer never
/// gets there: by the time it has copied the log, more commits have landed, and readers keep
/// starting on the newest snapshot. The log then grows without end (2.3 GB in a 15 s group
/// benchmark), every commit appends to fresh file blocks, and SQLite's own auto-checkpoint, if
/// left on, runs on every commit. So the work is split:
/// - a **copier** thread runs `PASSIVE` checkpoints every [`COPY_EVERY`], and between them
///   flushes the log to disk every [`WAL_SYNC_EVERY`] (see [`copier`]): the copying and its
///   fsyncs happen beside the writer, not in front of the callers waiting on it;
/// - the **writer**, between batches and at most every [`RESTART_EVERY`], runs a `RESTART`
///   checkpoint: no commit can land meanwhile, so it copies only what the copier has not yet,
///   and the next transaction writes the log from its start again, over file blocks already in
///   the page cache. It does not wait for readers still on the log (it tries again after the
///   next commit) unless the restart is [`RESTART_OVERDUE`]; then it waits up to
///   [`RESTART_WAIT`] for them.
///
/// An idle database keeps at most one interval's worth of log (read like the file; SQLite
/// checkpoints it when the last connection closes).
struct Checkpoints {
    restarted: std::time::Instant,
}

impl Checkpoints {
    fn new() -> Self {
        Checkpoints { restarted: std::time::Instant::now() }
    }

    /// After a committed batch: restart the log if it has been collecting long enough.
    fn after_commit(&mut self, conn: &Connection, backend: &'static str) {
        let since = self.restarted.elapsed();
        if since < RESTART_EVERY {
            return;
        }
        let started = std::time::Instant::now();
        let wait = if since >= RESTART_OVERDUE { RESTART_WAIT } else { Duration::ZERO };
        let _ = conn.busy_timeout(wait);
        let res = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        let restarted = match res {
            Ok(busy) => busy == 0,
            Err(e) if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy)) => false,
            Err(e) => {
                tracing::warn!(db = backend, error = %e, "WAL checkpoint failed");
                false
            }
        };
        metrics::histogram!("feige_sqlite_checkpoint_seconds", "db" => backend).record(started.elapsed().as_secs_f64());
        if restarted {
            self.restarted = std::time::Instant::now();
            metrics::counter!("feige_sqlite_wal_restarts_total", "db" => backend).increment(1);
        } else if since >= RESTART_OVERDUE {
            tracing::debug!(db = backend, ?since, "the WAL could not be restarted (readers on it)");
        }
    }
}

/// The copier thread (see [`Checkpoints`]): `PASSIVE` checkpoints, which never wait and never
/// block the writer, and in between an `fdatasync` of the write-ahead log (`wal`, its path).
/// Ends with the writer (when `alive` can no longer be upgraded).
///
/// Why the syncs: a checkpoint must fsync the log before it copies it, and the writer's
/// `RESTART` found up to a whole [`COPY_EVERY`] of commits not yet on disk — with the disk
/// writing back ~300 MB/s under load, its fsyncs held every send for 10–50 ms, a few times a
/// second (end-to-end p99 at 10,000 sends/s paced: 45–223 ms → 31–45 ms, BENCHMARKS.md). Syncing
/// from here, on a descriptor of our own, takes none of SQLite's locks and only moves the
/// writeback earlier.
fn copier(conn: Connection, alive: mpsc::WeakSender<Job>, wal: &str, backend: &'static str) {
    let syncs_per_pass = (COPY_EVERY.as_millis() / WAL_SYNC_EVERY.as_millis()).max(1);
    let mut log: Option<std::fs::File> = None;
    let mut tick = 0u128;
    loop {
        std::thread::sleep(WAL_SYNC_EVERY);
        if alive.upgrade().is_none() {
            return;
        }
        tick += 1;
        if !tick.is_multiple_of(syncs_per_pass) {
            // Opened lazily: SQLite creates the log with the first write.
            if log.is_none() {
                log = std::fs::File::open(wal).ok();
            }
            if let Some(f) = &log
                && let Err(e) = f.sync_data()
            {
                tracing::debug!(db = backend, error = %e, "WAL sync failed");
                log = None;
            }
            continue;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => {}
            Err(e) if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy)) => {}
            Err(e) => tracing::warn!(db = backend, error = %e, "WAL checkpoint failed"),
        }
    }
}

/// The writer thread: batch, `BEGIN IMMEDIATE`, run the jobs, `COMMIT`, answer.
fn run(conn: Connection, mut rx: mpsc::Receiver<Job>, gate: WriteGate, backend: &'static str) {
    let err = lite_err(backend);
    let mut checkpoints = Checkpoints::new();
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
        let started = std::time::Instant::now();
        metrics::histogram!("feige_sqlite_commit_jobs", "db" => backend).record(batch.len() as f64);
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
        metrics::histogram!("feige_sqlite_commit_seconds", "db" => backend).record(started.elapsed().as_secs_f64());
        match committed {
            Ok(()) => {
                for (reply, out) in done {
                    let _ = reply.send(out.unwrap_or_else(|| Err(Error::internal("write job skipped"))));
                }
                checkpoints.after_commit(&conn, backend);
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

    /// Commits land continuously while another connection keeps reading, as on a loaded
    /// server: the write-ahead log must still be reused from its start, not grow with every
    /// commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_stays_bounded_under_constant_reads() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir).await;
        let path = dir.path().join("t.db");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = std::thread::spawn({
            let (path, stop) = (path.clone(), stop.clone());
            move || {
                let c = open_connection(path.to_str().unwrap(), "test", true).unwrap();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let from = (reads * 7919) % 100_000;
                    let mut stmt = c.prepare_cached("SELECT v FROM t WHERE k > ? ORDER BY k LIMIT 20").unwrap();
                    let rows = stmt.query_map([from], |r| r.get::<_, String>(0)).unwrap();
                    assert!(rows.count() <= 20);
                    reads += 1;
                }
                reads
            }
        });
        let started = std::time::Instant::now();
        let mut round = 0i64;
        // Long enough that even a log restarted only when overdue (every ~1.1 s, when the
        // reader always holds it) ends up holding well under half of what was written.
        while started.elapsed() < RESTART_OVERDUE * 3 {
            round += 1;
            w.write(move |c| {
                let mut stmt = c.prepare_cached("INSERT INTO t (k, v) VALUES (?, ?)").map_err(lite_err("test"))?;
                // Like a fan-out: a few hundred small rows spread over the whole key range.
                for k in 0..300 {
                    stmt.execute(rusqlite::params![k * 1_000_000 + round, "x".repeat(200)])
                        .map_err(lite_err("test"))?;
                }
                Ok(())
            })
            .await
            .unwrap();
        }
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0, "the reader never read");
        let wal = std::fs::metadata(dir.path().join("t.db-wal")).unwrap().len();
        // Once the table has grown, each commit rewrites ~300 pages (one per row): without
        // checkpoints the log holds every one of them; with them, about one interval's worth.
        let written = round as u64 * 250 * 4096;
        assert!(wal < written / 2, "the log grew to {} MB of ~{} MB written in {took:?}", wal >> 20, written >> 20);
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
