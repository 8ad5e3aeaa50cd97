//! Per-user timelines on MongoDB (the real twin of `feige_store::sqlite_timeline`).
//!
//! One document per (user, seq) in the `timeline` collection:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `u` | int64 | user id |
//! | `s` | int64 | seq in the user's timeline |
//! | `k` | string | event key (idempotency: one entry per (user, key)) |
//! | `e` | string / null | the event as JSON text; `null` for a filler |
//! | `w` | date | write time; the TTL index expires entries `retention` after it |
//!
//! Indexes (created at connect, idempotently): `u_s` unique `{u: 1, s: 1}` (the arbiter between
//! writers and hole-fillers, see `feige_core::timeline`), `u_k` unique `{u: 1, k: 1}` (one entry
//! per event) and `w_ttl` `{w: 1}` with `expireAfterSeconds` = retention.
//!
//! The event is stored as JSON text rather than as a BSON document: the event's body is
//! arbitrary client JSON, and BSON cannot hold every JSON number exactly (no unsigned 64-bit
//! integers, no arbitrary precision) nor every key (`$`-prefixed and dotted field names are
//! awkward); JSON text round-trips byte-exact, like the SQLite twin, and nothing ever queries
//! inside an event.
//!
//! Retention deletes old entries, but sequences must never go backwards: the `heads`
//! collection keeps `{_id: user, s: highest seq ever written}`, raised after each write batch
//! (one `update` command for a whole fan-out; a `$setOnInsert` upsert plus a conditional `$set`
//! per user, which is a `$max` upsert that MongoDB-compatible test servers also understand), and
//! [`TimelineStore::max_seq`] is the larger of the head and the highest `s` still in the
//! timeline.

use async_trait::async_trait;
use feige_core::ids::UserId;
use feige_core::model::{Seq, TimelineEntry};
use feige_core::ports::{Inserted, Probe, TimelineStore};
use feige_core::{Error, Result};
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The backend name in errors and probes.
const BACKEND: &str = "timeline";
/// Database used when the URL names none.
pub const DEFAULT_DATABASE: &str = "feige";
/// How long entries are kept: the seed keeps 30 days of offline messages.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The collection of timeline entries.
pub const TIMELINE_COLLECTION: &str = "timeline";
/// The collection of per-user high-water marks.
pub const HEADS_COLLECTION: &str = "heads";
/// Name of the unique `{u: 1, s: 1}` index.
pub const SEQ_INDEX: &str = "u_s";
/// Name of the unique `{u: 1, k: 1}` index.
pub const KEY_INDEX: &str = "u_k";
/// Name of the TTL index on `w`.
pub const TTL_INDEX: &str = "w_ttl";

/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;
/// `CommandNotFound`.
const COMMAND_NOT_FOUND: i32 = 59;
/// `IndexOptionsConflict` / `IndexKeySpecsConflict`: an index with these keys exists with
/// other options (here: a TTL index made with another retention).
const INDEX_CONFLICT: [i32; 2] = [85, 86];
/// Server error codes that mean "not reachable right now" rather than "wrong request":
/// host/network failures, time limits, write-concern timeouts, elections and shutdowns.
const UNAVAILABLE_CODES: [i32; 15] = [6, 7, 50, 64, 89, 91, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436];

/// One timeline entry as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Doc {
    u: i64,
    s: i64,
    k: String,
    /// The event as JSON text; `None` (null) for a filler.
    e: Option<String>,
    w: DateTime,
}

impl Doc {
    fn from_entry(entry: &TimelineEntry) -> Result<Self> {
        Ok(Doc {
            u: entry.user_id.0,
            s: seq_to_i64(entry.seq)?,
            k: entry.event_key.clone(),
            e: entry.event.as_ref().map(serde_json::to_string).transpose().map_err(Error::internal)?,
            w: DateTime::from_millis(entry.written_at),
        })
    }

    fn into_entry(self) -> Result<TimelineEntry> {
        Ok(TimelineEntry {
            user_id: UserId(self.u),
            seq: seq_from_i64(self.s)?,
            event_key: self.k,
            event: self.e.map(|e| serde_json::from_str(&e)).transpose().map_err(Error::internal)?,
            written_at: self.w.timestamp_millis(),
        })
    }
}

fn seq_to_i64(seq: Seq) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::internal(format!("seq {seq} does not fit in int64")))
}

fn seq_from_i64(s: i64) -> Result<Seq> {
    Seq::try_from(s).map_err(|_| Error::internal(format!("negative seq {s} in the timeline")))
}

/// A stored integer as a seq, whatever numeric type the server kept it as.
fn seq_from_bson(v: Option<&Bson>) -> Result<Seq> {
    match v {
        None | Some(Bson::Null) => Ok(0),
        Some(Bson::Int64(n)) => seq_from_i64(*n),
        Some(Bson::Int32(n)) => seq_from_i64(i64::from(*n)),
        Some(Bson::Double(f)) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.2e18 => Ok(*f as Seq),
        Some(other) => Err(Error::internal(format!("unexpected seq value {other}"))),
    }
}

fn unavailable_code(code: i32) -> bool {
    UNAVAILABLE_CODES.contains(&code)
}

/// Maps a driver error: unreachable server, failed server selection, network errors and
/// timeouts are `Unavailable` (503); anything else is `Internal`.
fn backend_err(e: mongodb::error::Error) -> Error {
    let unavailable = match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Authentication { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(c) => unavailable_code(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        ErrorKind::Write(WriteFailure::WriteError(w)) => unavailable_code(w.code),
        ErrorKind::InsertMany(im) => im.write_concern_error.is_some(),
        _ => false,
    } || e.contains_label("RetryableWriteError")
        || e.contains_label("TransientTransactionError");
    if unavailable { Error::unavailable(BACKEND, e) } else { Error::internal(format!("mongodb: {e}")) }
}

/// A write error reported inside a command's reply.
fn reply_err(what: &str, code: i32, message: &str) -> Error {
    let text = format!("{what}: error {code}: {message}");
    if unavailable_code(code) { Error::unavailable(BACKEND, text) } else { Error::internal(format!("mongodb: {text}")) }
}

/// The database a URL names (`mongodb://host/NAME`), or [`DEFAULT_DATABASE`].
fn database_name(options: &ClientOptions) -> &str {
    options.default_database.as_deref().filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DATABASE)
}

/// What one insert attempt did to each document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Written,
    /// Refused by a unique index: its seq or its key is taken.
    Duplicate,
    /// Refused for another reason.
    Failed,
}

/// The outcome of one `insert` command.
enum Attempt {
    /// Per document, plus an error that makes the batch a failure (write concern, other
    /// write errors).
    Each(Vec<Slot>, Option<Error>),
    /// The server refused the whole batch over a duplicate without saying which document.
    Refused,
}

/// The MongoDB timeline store.
#[derive(Clone)]
pub struct MongoTimeline {
    db: Database,
    timeline: Collection<Doc>,
    /// The same collection, untyped (for projections).
    raw: Collection<Document>,
    heads: Collection<Document>,
    retention: Duration,
}

impl std::fmt::Debug for MongoTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoTimeline").field("database", &self.db.name()).field("retention", &self.retention).finish()
    }
}

impl MongoTimeline {
    /// Connects to `mongodb://host:port/DBNAME` (database `feige` if the path is empty) with the
    /// default retention of 30 days, and creates the indexes. Driver options in the URL's query
    /// (`serverSelectionTimeoutMS`, `replicaSet`, credentials, …) apply.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_retention(url, DEFAULT_RETENTION).await
    }

    /// Like [`MongoTimeline::connect`], keeping entries for `retention` (whole seconds, at
    /// least one) after they were written.
    pub async fn connect_with_retention(url: &str, retention: Duration) -> Result<Self> {
        let options = ClientOptions::parse(url).await.map_err(|e| match *e.kind {
            ErrorKind::InvalidArgument { .. } => {
                Error::bad_request("invalid_backend_url", format!("invalid MongoDB URL: {e}"))
            }
            _ => backend_err(e),
        })?;
        let name = database_name(&options).to_string();
        let client = Client::with_options(options).map_err(backend_err)?;
        Self::open(client.database(&name), retention).await
    }

    /// Uses an existing database handle (sharing its client's pool); creates the indexes.
    pub async fn open(db: Database, retention: Duration) -> Result<Self> {
        let secs = retention.as_secs();
        if secs == 0 || secs > i32::MAX as u64 {
            return Err(Error::bad_request(
                "invalid_retention",
                format!("timeline retention must be 1 s to {} s", i32::MAX),
            ));
        }
        let store = MongoTimeline {
            timeline: db.collection(TIMELINE_COLLECTION),
            raw: db.collection(TIMELINE_COLLECTION),
            heads: db.collection(HEADS_COLLECTION),
            db,
            retention: Duration::from_secs(secs),
        };
        store.create_indexes().await?;
        tracing::info!(database = store.db.name(), retention_secs = secs, "MongoDB timeline store ready");
        Ok(store)
    }

    /// How long entries are kept after they were written.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The database holding the `timeline` and `heads` collections.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn create_indexes(&self) -> Result<()> {
        let unique = |name: &str| IndexOptions::builder().name(name.to_string()).unique(true).build();
        self.timeline
            .create_indexes([
                IndexModel::builder().keys(doc! { "u": 1, "s": 1 }).options(unique(SEQ_INDEX)).build(),
                IndexModel::builder().keys(doc! { "u": 1, "k": 1 }).options(unique(KEY_INDEX)).build(),
            ])
            .await
            .map_err(backend_err)?;
        let ttl = IndexModel::builder()
            .keys(doc! { "w": 1 })
            .options(IndexOptions::builder().name(TTL_INDEX.to_string()).expire_after(self.retention).build())
            .build();
        match self.timeline.create_index(ttl).await {
            Ok(_) => {}
            // The TTL index exists with another retention (MongoDB refuses to redefine it):
            // reconciled below.
            Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if INDEX_CONFLICT.contains(&c.code)) => {}
            Err(e) => return Err(backend_err(e)),
        }
        self.reconcile_retention().await
    }

    /// Brings the TTL of an existing `{w: 1}` index to the configured retention (`collMod`).
    /// Some servers keep the old TTL without complaint and cannot change it (jongodb has no
    /// `collMod`): that is logged, not fatal.
    async fn reconcile_retention(&self) -> Result<()> {
        let indexes: Vec<IndexModel> =
            self.timeline.list_indexes().await.map_err(backend_err)?.try_collect().await.map_err(backend_err)?;
        let current = indexes
            .iter()
            .find(|i| i.keys == doc! { "w": 1 })
            .and_then(|i| i.options.as_ref())
            .and_then(|o| o.expire_after);
        if current == Some(self.retention) {
            return Ok(());
        }
        tracing::info!(
            from_secs = current.map(|d| d.as_secs()),
            to_secs = self.retention.as_secs(),
            "changing the timeline TTL"
        );
        let changed = self
            .db
            .run_command(doc! {
                "collMod": TIMELINE_COLLECTION,
                "index": {
                    "keyPattern": { "w": 1 },
                    "expireAfterSeconds": self.retention.as_secs() as i64,
                },
            })
            .await;
        match changed {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == COMMAND_NOT_FOUND) => {
                tracing::warn!(
                    current_secs = current.map(|d| d.as_secs()),
                    wanted_secs = self.retention.as_secs(),
                    "this server cannot change a TTL (no collMod): the timeline keeps its old retention"
                );
                Ok(())
            }
            Err(e) => Err(backend_err(e)),
        }
    }

    /// Raises each user's head to at least the given seq, in one `update` command (one round
    /// trip however many users).
    ///
    /// Per user, two statements: an upsert that creates the head at `seq` if there is none
    /// (`$setOnInsert`), then `{_id: u, s: {$lt: seq}} → $set s: seq`. Together they are a
    /// `$max` upsert (which jongodb does not implement, nor pipeline updates): atomic per
    /// document, so the head only ever goes up, however many writers race. The command is
    /// ordered so each conditional `$set` runs after its upsert. A duplicate `_id` (two
    /// first-ever upserts racing; MongoDB itself retries those) is retried once: the statements
    /// are idempotent.
    async fn bump_heads(&self, heads: &BTreeMap<i64, i64>) -> Result<()> {
        let mut updates = Vec::with_capacity(heads.len() * 2);
        for (u, s) in heads {
            updates.push(doc! {
                "q": { "_id": *u },
                "u": { "$setOnInsert": { "s": *s } },
                "upsert": true,
            });
            updates.push(doc! {
                "q": { "_id": *u, "s": { "$lt": *s } },
                "u": { "$set": { "s": *s } },
            });
        }
        let command = doc! {
            "update": HEADS_COLLECTION,
            "updates": updates,
            "ordered": true,
        };
        let mut last = None;
        for _ in 0..2 {
            let reply = match self.db.run_command(command.clone()).await {
                Ok(reply) => reply,
                Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == DUPLICATE_KEY) => {
                    last = Some(backend_err(e));
                    continue;
                }
                Err(e) => return Err(backend_err(e)),
            };
            if let Ok(wce) = reply.get_document("writeConcernError") {
                return Err(reply_err(
                    "heads write concern",
                    wce.get_i32("code").unwrap_or(64),
                    wce.get_str("errmsg").unwrap_or(""),
                ));
            }
            let first_error =
                reply.get_array("writeErrors").ok().and_then(|errors| errors.first()).and_then(Bson::as_document);
            match first_error {
                None => return Ok(()),
                Some(err) => {
                    let code = err.get_i32("code").unwrap_or(0);
                    let err = reply_err("heads update", code, err.get_str("errmsg").unwrap_or(""));
                    if code != DUPLICATE_KEY {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::internal("heads update kept failing")))
    }

    /// One unordered `insert` of `docs`: what happened to each.
    async fn try_insert(&self, docs: &[Doc]) -> Result<Attempt> {
        let e = match self.timeline.insert_many(docs).ordered(false).await {
            Ok(_) => return Ok(Attempt::Each(vec![Slot::Written; docs.len()], None)),
            Err(e) => e,
        };
        match e.kind.as_ref() {
            // MongoDB: per-document errors, the rest written.
            ErrorKind::InsertMany(im) => {
                let mut slots = vec![Slot::Written; docs.len()];
                let mut fatal = None;
                for we in im.write_errors.iter().flatten() {
                    let Some(slot) = slots.get_mut(we.index) else {
                        continue;
                    };
                    if we.code == DUPLICATE_KEY {
                        *slot = Slot::Duplicate;
                    } else {
                        *slot = Slot::Failed;
                        fatal.get_or_insert_with(|| reply_err("timeline insert", we.code, &we.message));
                    }
                }
                if let Some(wce) = &im.write_concern_error {
                    fatal = Some(reply_err("timeline write concern", wce.code, &wce.message));
                }
                Ok(Attempt::Each(slots, fatal))
            }
            // jongodb: the whole command refused with one top-level duplicate-key error.
            ErrorKind::Command(c) if c.code == DUPLICATE_KEY => {
                Ok(if docs.len() == 1 { Attempt::Each(vec![Slot::Duplicate], None) } else { Attempt::Refused })
            }
            _ => Err(backend_err(e)),
        }
    }

    /// Raises the heads of the users of the written documents; a failure is logged, not
    /// returned: the entries are written and still carry the high-water mark until retention
    /// removes them, and the next write to these users raises their heads again.
    async fn raise_heads(&self, docs: &[Doc], written: impl Fn(usize) -> bool) {
        let mut heads = BTreeMap::new();
        for (i, d) in docs.iter().enumerate() {
            if written(i) {
                let head = heads.entry(d.u).or_insert(d.s);
                *head = (*head).max(d.s);
            }
        }
        if heads.is_empty() {
            return;
        }
        if let Err(e) = self.bump_heads(&heads).await {
            tracing::warn!(error = %e, users = heads.len(), "could not raise timeline heads");
        }
    }

    /// Where each (user, key) already sits, in one query.
    async fn locate(&self, wanted: &[(i64, &str)]) -> Result<HashMap<(i64, String), Seq>> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let any: Vec<Document> = wanted.iter().map(|(u, k)| doc! { "u": *u, "k": *k }).collect();
        let docs: Vec<Document> = self
            .raw
            .find(doc! { "$or": any })
            .projection(doc! { "u": 1, "k": 1, "s": 1, "_id": 0 })
            .await
            .map_err(backend_err)?
            .try_collect()
            .await
            .map_err(backend_err)?;
        docs.iter()
            .map(|d| {
                let u = d.get_i64("u").map_err(Error::internal)?;
                let k = d.get_str("k").map_err(Error::internal)?;
                Ok(((u, k.to_string()), seq_from_bson(d.get("s"))?))
            })
            .collect()
    }
}

#[async_trait]
impl TimelineStore for MongoTimeline {
    async fn insert(&self, entry: &TimelineEntry) -> Result<Inserted> {
        self.insert_many(std::slice::from_ref(entry))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("insert_many returned no outcome"))
    }

    /// One unordered `insert` for the whole batch, then (on duplicates) one look-up, then one
    /// `update` of the heads: three round trips at most, however large the fan-out.
    async fn insert_many(&self, entries: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let docs = entries.iter().map(Doc::from_entry).collect::<Result<Vec<_>>>()?;
        let (slots, fatal) = match self.try_insert(&docs).await? {
            Attempt::Each(slots, fatal) => (slots, fatal),
            Attempt::Refused => {
                // The server would not say which document clashed (nor whether the others
                // landed): write them one by one. Only servers that refuse whole batches
                // (jongodb) come here; MongoDB reports each document.
                tracing::debug!(entries = docs.len(), "timeline batch refused as a whole; writing one by one");
                let mut slots = Vec::with_capacity(docs.len());
                let mut fatal = None;
                for d in &docs {
                    match self.try_insert(std::slice::from_ref(d)).await? {
                        Attempt::Each(one, f) => {
                            slots.push(one.into_iter().next().unwrap_or(Slot::Failed));
                            fatal = fatal.or(f);
                        }
                        Attempt::Refused => slots.push(Slot::Duplicate),
                    }
                }
                (slots, fatal)
            }
        };

        let fatal =
            fatal.or_else(|| slots.contains(&Slot::Failed).then(|| Error::internal("timeline insert failed silently")));
        let mut out = vec![Inserted::Ok; docs.len()];
        if let Some(e) = fatal {
            self.raise_heads(&docs, |i| slots[i] == Slot::Written).await;
            tracing::error!(error = %e, "timeline insert failed");
            return Err(e);
        }
        let duplicates: Vec<usize> = (0..docs.len()).filter(|&i| slots[i] == Slot::Duplicate).collect();
        let wanted: Vec<(i64, &str)> = duplicates.iter().map(|&i| (docs[i].u, docs[i].k.as_str())).collect();
        let found = self.locate(&wanted).await?;
        for &i in &duplicates {
            out[i] = match found.get(&(docs[i].u, docs[i].k.clone())) {
                Some(&at) => Inserted::AlreadyAt(at),
                None => Inserted::SeqTaken,
            };
        }
        // An entry already at its own seq (the same entry written twice, or a batch that landed
        // before the server refused it) counts too: it is in the timeline at that seq.
        self.raise_heads(&docs, |i| matches!(out[i], Inserted::Ok) || out[i] == Inserted::AlreadyAt(docs[i].s as Seq))
            .await;
        Ok(out)
    }

    async fn read(&self, user: UserId, after: Seq, limit: u32) -> Result<Vec<TimelineEntry>> {
        // MongoDB reads `limit(0)` as "no limit".
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = after.min(i64::MAX as u64) as i64;
        let docs: Vec<Doc> = self
            .timeline
            .find(doc! { "u": user.0, "s": { "$gt": after } })
            .sort(doc! { "s": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(backend_err)?
            .try_collect()
            .await
            .map_err(backend_err)?;
        docs.into_iter().map(Doc::into_entry).collect()
    }

    async fn max_seq(&self, user: UserId) -> Result<Seq> {
        let head = self.heads.find_one(doc! { "_id": user.0 }).projection(doc! { "s": 1 });
        let last = self.raw.find_one(doc! { "u": user.0 }).sort(doc! { "s": -1 }).projection(doc! { "s": 1, "_id": 0 });
        let (head, last) = futures::try_join!(head.into_future(), last.into_future()).map_err(backend_err)?;
        let head = seq_from_bson(head.as_ref().and_then(|d| d.get("s")))?;
        let last = seq_from_bson(last.as_ref().and_then(|d| d.get("s")))?;
        Ok(head.max(last))
    }

    async fn find(&self, user: UserId, event_key: &str) -> Result<Option<Seq>> {
        let found = self
            .raw
            .find_one(doc! { "u": user.0, "k": event_key })
            .projection(doc! { "s": 1, "_id": 0 })
            .await
            .map_err(backend_err)?;
        found.map(|d| seq_from_bson(d.get("s"))).transpose()
    }
}

#[async_trait]
impl Probe for MongoTimeline {
    async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await.map_err(backend_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn database_name_comes_from_the_url_path() {
        let named = ClientOptions::parse("mongodb://127.0.0.1:27017/chat?serverSelectionTimeoutMS=10").await.unwrap();
        assert_eq!(database_name(&named), "chat");
        let bare = ClientOptions::parse("mongodb://127.0.0.1:27017").await.unwrap();
        assert_eq!(database_name(&bare), DEFAULT_DATABASE);
        let slash = ClientOptions::parse("mongodb://127.0.0.1:27017/").await.unwrap();
        assert_eq!(database_name(&slash), DEFAULT_DATABASE);
    }

    #[test]
    fn entries_round_trip_through_documents() {
        let entry = TimelineEntry {
            user_id: UserId(7),
            seq: 3,
            event_key: "gap:3".into(),
            event: None,
            written_at: 1_700_000_000_123,
        };
        let back = Doc::from_entry(&entry).unwrap().into_entry().unwrap();
        assert_eq!(back, entry);
        assert!(seq_to_i64(u64::MAX).is_err());
        assert!(seq_from_i64(-1).is_err());
        assert_eq!(seq_from_bson(Some(&Bson::Int32(5))).unwrap(), 5);
        assert_eq!(seq_from_bson(None).unwrap(), 0);
    }

    #[test]
    fn network_failures_are_unavailable() {
        let io = mongodb::error::Error::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        assert_eq!(backend_err(io).code(), "backend_unavailable");
        assert_eq!(reply_err("x", 91, "shutting down").status(), 503);
        assert_eq!(reply_err("x", 2, "bad value").status(), 500);
    }
}
