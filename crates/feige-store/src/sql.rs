//! Users, sessions, conversations and history in SQL: SQLite (`sqlite://path`, the embedded
//! profile) or MySQL/MariaDB (`mysql://user:pass@host:port/db`), one implementation over
//! sqlx's `Any` driver. Every statement is written in the SQL both dialects share; the schemas
//! differ only in types (`migrations/sqlite`, `migrations/mysql`).
//!
//! On SQLite the hot writes (appending a message, creating a one-to-one conversation) run on
//! the file's writer thread with group commit ([`crate::lite`]); the other writes go through
//! one sqlx connection and take the same write gate, so SQLite never sees two writers; reads
//! use a small pool, in WAL mode. On MySQL one pool serves everything; the row lock that
//! `UPDATE conversations … last_seq + 1` takes orders concurrent sends to one conversation.

use crate::lite::{BUSY_TIMEOUT, LiteWriter, SQLITE_SETTINGS, WriteGate, lite_err};
use crate::{is_unique_violation, sql_err};
use async_trait::async_trait;
use feige_core::ids::{ConversationId, GroupId, UserId};
use feige_core::model::{ConversationSummary, Membership, Message, NewSession, ReadOutcome, RotateOutcome, Seq, User};
use feige_core::ports::{Appended, ChatStore, NewMessage, Probe, SessionStore, UserStore, append_then_members};
use feige_core::{Error, Result};
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Executor, Row};
use std::time::Duration;

const DB: &str = "db";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// The relational store.
pub struct SqlDb {
    pub(crate) writer: AnyPool,
    pub(crate) readers: AnyPool,
    /// SQLite only: the file's writer thread, which appends messages (the hot write) with group
    /// commit, and the gate that keeps sqlx's writes and it from overlapping.
    lite: Option<(LiteWriter, WriteGate)>,
}

/// Creates the database named in a MySQL URL if it does not exist yet.
async fn ensure_mysql_database(url: &str) -> Result<()> {
    let (server, rest) = match url.strip_prefix("mysql://").and_then(|r| r.split_once('/')) {
        Some((auth_host, rest)) => (format!("mysql://{auth_host}"), rest),
        None => return Ok(()),
    };
    let name = rest.split('?').next().unwrap_or_default();
    if name.is_empty() {
        return Err(Error::bad_request(
            "unsupported_backend",
            "FEIGE_DB_URL: name a database, e.g. mysql://root@127.0.0.1:3306/feige",
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::bad_request(
            "unsupported_backend",
            "FEIGE_DB_URL: database names are letters, digits and '_'",
        ));
    }
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&server)
        .await
        .map_err(sql_err(DB))?;
    pool.execute(format!("CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4").as_str())
        .await
        .map_err(sql_err(DB))?;
    pool.close().await;
    Ok(())
}

impl SqlDb {
    /// Connects to `sqlite://path` (created if missing) or `mysql://…/db` (database created if
    /// missing) and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::unavailable(DB, format!("{}: {e}", dir.display())))?;
            }
            let writer = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(sqlite_pragmas)
                .connect(&format!("sqlite://{path}?mode=rwc"))
                .await
                .map_err(sql_err(DB))?;
            SQLITE_MIGRATIONS.run(&writer).await.map_err(|e| Error::internal(format!("db migrations: {e}")))?;
            let readers = AnyPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(sqlite_pragmas)
                .connect(&format!("sqlite://{path}?mode=ro"))
                .await
                .map_err(sql_err(DB))?;
            let gate = WriteGate::default();
            let lite = LiteWriter::start(path, DB, gate.clone())?;
            Ok(SqlDb { writer, readers, lite: Some((lite, gate)) })
        } else if url.starts_with("mysql://") {
            ensure_mysql_database(url).await?;
            let pool = AnyPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(5))
                .after_connect(mysql_session)
                .connect(url)
                .await
                .map_err(sql_err(DB))?;
            MYSQL_MIGRATIONS.run(&pool).await.map_err(|e| Error::internal(format!("db migrations: {e}")))?;
            Ok(SqlDb { writer: pool.clone(), readers: pool, lite: None })
        } else {
            Err(Error::bad_request(
                "unsupported_backend",
                format!("FEIGE_DB_URL={url}: expected sqlite:// or mysql://"),
            ))
        }
    }
}

impl SqlDb {
    /// Waits for the write turn on a SQLite file (see [`crate::lite`]); hold the guard until the
    /// transaction has committed. MySQL needs none.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.lite {
            Some((_, gate)) => Some(gate.enter().await),
            None => None,
        }
    }
}

type BoxFuture<'c> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

/// READ COMMITTED: every invariant here rests on row locks taken by UPDATEs or on unique keys,
/// never on gap locks, which under REPEATABLE READ only add deadlocks between unrelated rows.
fn mysql_session<'c>(conn: &'c mut sqlx::AnyConnection, _: sqlx::pool::PoolConnectionMetadata) -> BoxFuture<'c> {
    Box::pin(async move {
        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
        Ok(())
    })
}

/// The settings of every SQLite connection ([`crate::lite::SQLITE_SETTINGS`]) on each sqlx
/// connection to a SQLite file.
fn sqlite_pragmas<'c>(conn: &'c mut sqlx::AnyConnection, _: sqlx::pool::PoolConnectionMetadata) -> BoxFuture<'c> {
    Box::pin(async move {
        let settings = format!("{SQLITE_SETTINGS}; PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
        conn.execute(settings.as_str()).await?;
        Ok(())
    })
}

/// A conversation's current members (`members`, and the SQLite fan-out job).
const MEMBERS_SQL: &str =
    "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND active = 1 ORDER BY user_id";

const MESSAGE_COLS: &str =
    "msg_id, conversation_id, conv_seq, sender_id, client_msg_id, type, body, created_at, recalled_at";

/// A text column that MySQL may report as a BLOB through sqlx's `Any` driver (MEDIUMTEXT does):
/// read it as text, or as UTF-8 bytes.
fn text_col(row: &AnyRow, name: &str) -> Result<String> {
    match row.try_get::<String, _>(name) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Vec<u8> = row.try_get(name).map_err(|e| Error::internal(format!("db row: {e}")))?;
            String::from_utf8(bytes).map_err(|e| Error::internal(format!("db row {name}: {e}")))
        }
    }
}

/// `?, ?, …` for an IN list or a multi-row VALUES.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn message_from(row: &AnyRow) -> Result<Message> {
    let get = |e: sqlx::Error| Error::internal(format!("db row: {e}"));
    let conv: String = row.try_get("conversation_id").map_err(get)?;
    let body = text_col(row, "body")?;
    let recalled_at: Option<i64> = row.try_get("recalled_at").map_err(get)?;
    let (conversation_id, body) = decode_stored(&conv, &body, recalled_at.is_some())?;
    Ok(Message {
        msg_id: row.try_get("msg_id").map_err(get)?,
        conversation_id,
        conv_seq: row.try_get::<i64, _>("conv_seq").map_err(get)? as Seq,
        sender_id: UserId(row.try_get("sender_id").map_err(get)?),
        client_msg_id: row.try_get("client_msg_id").map_err(get)?,
        kind: row.try_get("type").map_err(get)?,
        body,
        created_at: row.try_get("created_at").map_err(get)?,
        recalled: recalled_at.is_some(),
    })
}

/// The columns of a stored message that need decoding, whichever driver read them: the
/// conversation id, and the body (JSON, or null once recalled).
fn decode_stored(conv: &str, body: &str, recalled: bool) -> Result<(ConversationId, serde_json::Value)> {
    let conversation_id =
        ConversationId::parse(conv).map_err(|_| Error::internal(format!("stored conversation id {conv:?}")))?;
    let body = if recalled { serde_json::Value::Null } else { serde_json::from_str(body).map_err(Error::internal)? };
    Ok((conversation_id, body))
}

#[async_trait]
impl UserStore for SqlDb {
    async fn create_user(&self, username: &str, nickname: &str, password_hash: &str, now: i64) -> Result<User> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let res = sqlx::query("INSERT INTO users (username, nickname, password_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(username)
            .bind(nickname)
            .bind(password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::conflict("username_taken", "that username is taken"));
            }
            Err(e) => return Err(sql_err(DB)(e)),
        }
        // Read the id back by the unique name: portable across SQLite and MySQL through `Any`.
        let (id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE username = ?")
            .bind(username)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(User { user_id: UserId(id), username: username.into(), nickname: nickname.into() })
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, username, nickname FROM users WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.readers)
                .await
                .map_err(sql_err(DB))?;
        Ok(row.map(|(id, username, nickname)| User { user_id: UserId(id), username, nickname }))
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        let row: Option<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, username, nickname, password_hash FROM users WHERE username = ?")
                .bind(username)
                .fetch_optional(&self.readers)
                .await
                .map_err(sql_err(DB))?;
        Ok(row.map(|(id, username, nickname, hash)| (User { user_id: UserId(id), username, nickname }, hash)))
    }

    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!("SELECT id FROM users WHERE id IN ({})", placeholders(chunk.len()));
            let mut q = sqlx::query_as::<_, (i64,)>(&sql);
            for id in chunk {
                q = q.bind(id.0);
            }
            found.extend(q.fetch_all(&self.readers).await.map_err(sql_err(DB))?.into_iter().map(|(id,)| UserId(id)));
        }
        Ok(found)
    }
}

#[async_trait]
impl SessionStore for SqlDb {
    async fn create_session(&self, s: &NewSession) -> Result<Vec<String>> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let replaced: Vec<(String,)> =
            sqlx::query_as("SELECT sid FROM sessions WHERE user_id = ? AND device_id = ? AND revoked_at IS NULL")
                .bind(s.user_id.0)
                .bind(&s.device_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(sql_err(DB))?;
        // Revoke by primary key, and only when there is something to revoke: a range UPDATE
        // that matches nothing would still take InnoDB gap locks that deadlock concurrent logins.
        for (old,) in &replaced {
            sqlx::query("UPDATE sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL")
                .bind(s.created_at)
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(sql_err(DB))?;
        }
        sqlx::query(
            "INSERT INTO sessions (sid, user_id, device_id, platform, refresh_hash, refresh_expires_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.sid)
        .bind(s.user_id.0)
        .bind(&s.device_id)
        .bind(&s.platform)
        .bind(&s.refresh_hash)
        .bind(s.refresh_expires_at)
        .bind(s.created_at)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(replaced.into_iter().map(|(sid,)| sid).collect())
    }

    async fn rotate_refresh(
        &self,
        sid: &str,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<RotateOutcome> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        // Compare-and-swap: of two concurrent refreshes with one token, exactly one wins.
        let swapped = sqlx::query(
            "UPDATE sessions SET refresh_hash = ?, prev_refresh_hash = ?, refresh_expires_at = ? \
             WHERE sid = ? AND refresh_hash = ? AND revoked_at IS NULL AND refresh_expires_at > ?",
        )
        .bind(new_hash)
        .bind(old_hash)
        .bind(new_expires_at)
        .bind(sid)
        .bind(old_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        let row: Option<(i64, String, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, device_id, platform, prev_refresh_hash, revoked_at FROM sessions WHERE sid = ?",
        )
        .bind(sid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        let Some((user_id, device_id, platform, previous, revoked_at)) = row else {
            return Ok(RotateOutcome::Invalid);
        };
        let outcome = if swapped.rows_affected() == 1 {
            RotateOutcome::Rotated { user_id: UserId(user_id), device_id, platform }
        } else if revoked_at.is_none() && previous.as_deref() == Some(old_hash) {
            // The token was good once and has been rotated away: a replay. Kill the session.
            sqlx::query("UPDATE sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(sid)
                .execute(&mut *tx)
                .await
                .map_err(sql_err(DB))?;
            RotateOutcome::Reused { user_id: UserId(user_id) }
        } else {
            RotateOutcome::Invalid
        };
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(outcome)
    }

    async fn revoke_session(&self, sid: &str, now: i64) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(sid)
            .execute(&self.writer)
            .await
            .map_err(sql_err(DB))?;
        Ok(())
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT sid FROM sessions WHERE revoked_at >= ?")
            .bind(since)
            .fetch_all(&self.readers)
            .await
            .map_err(sql_err(DB))?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }
}

#[async_trait]
impl ChatStore for SqlDb {
    async fn ensure_direct(&self, conv: ConversationId, now: i64) -> Result<()> {
        let ConversationId::Direct(a, b) = conv else {
            return Err(Error::internal("ensure_direct on a group conversation"));
        };
        if let Some((lite, _)) = &self.lite {
            return lite.write(move |c| ensure_direct_lite(c, a, b, now)).await;
        }
        // MySQL.
        let id = conv.to_string();
        let (found,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE id IN (?, ?)")
            .bind(a.0)
            .bind(b.0)
            .fetch_one(&self.readers)
            .await
            .map_err(sql_err(DB))?;
        if found != 2 {
            return Err(no_such_user());
        }
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let inserted = sqlx::query(
            "INSERT INTO conversations (id, kind, last_seq, created_at, updated_at) VALUES (?, 'direct', 0, ?, ?)",
        )
        .bind(&id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        let created = match inserted {
            Ok(_) => true,
            Err(e) if is_unique_violation(&e) => false,
            Err(e) => return Err(sql_err(DB)(e)),
        };
        if created {
            for (me, peer) in [(a, b), (b, a)] {
                sqlx::query("INSERT INTO conversation_members (conversation_id, user_id, peer_id) VALUES (?, ?, ?)")
                    .bind(&id)
                    .bind(me.0)
                    .bind(peer.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_err(DB))?;
            }
        }
        tx.commit().await.map_err(sql_err(DB))
    }

    async fn find_by_client_id(&self, sender: UserId, client_msg_id: &str) -> Result<Option<Message>> {
        let row =
            sqlx::query(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"))
                .bind(sender.0)
                .bind(client_msg_id)
                .fetch_optional(&self.readers)
                .await
                .map_err(sql_err(DB))?;
        row.as_ref().map(message_from).transpose()
    }

    async fn append_message(&self, m: &NewMessage) -> Result<Appended> {
        if let Some((lite, _)) = &self.lite {
            let m = m.clone();
            return lite.write(move |c| append_lite(c, &m)).await;
        }
        // MySQL.
        let conv = m.conversation_id.to_string();
        let mut created = false;
        let mut tx = loop {
            let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
            let member: Option<(i64,)> = sqlx::query_as(
                "SELECT user_id FROM conversation_members WHERE conversation_id = ? AND user_id = ? AND active = 1",
            )
            .bind(&conv)
            .bind(m.sender_id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
            match member {
                Some(_) => break tx,
                // A one-to-one conversation's first message creates it.
                None if !created && m.conversation_id.peer_of(m.sender_id).is_some() => {
                    tx.rollback().await.map_err(sql_err(DB))?;
                    self.ensure_direct(m.conversation_id, m.created_at).await?;
                    created = true;
                }
                None => return Err(not_member()),
            }
        };
        // The UPDATE takes the conversation's row lock: concurrent sends queue here.
        sqlx::query("UPDATE conversations SET last_seq = last_seq + 1, updated_at = ? WHERE id = ?")
            .bind(m.created_at)
            .bind(&conv)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        let (conv_seq,): (i64,) = sqlx::query_as("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(&conv)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        let inserted = sqlx::query(
            "INSERT INTO messages (msg_id, conversation_id, conv_seq, sender_id, client_msg_id, type, body, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.msg_id)
        .bind(&conv)
        .bind(conv_seq)
        .bind(m.sender_id.0)
        .bind(&m.client_msg_id)
        .bind(&m.kind)
        .bind(m.body.to_string())
        .bind(m.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.map_err(sql_err(DB))?;
                return self
                    .find_by_client_id(m.sender_id, &m.client_msg_id)
                    .await?
                    .map(Appended::Existing)
                    .ok_or_else(|| Error::internal("duplicate message vanished"));
            }
            Err(e) => return Err(sql_err(DB)(e)),
        }
        sqlx::query(
            "UPDATE conversation_members SET read_seq = CASE WHEN read_seq < ? THEN ? ELSE read_seq END \
             WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(conv_seq)
        .bind(conv_seq)
        .bind(&conv)
        .bind(m.sender_id.0)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(Appended::New(stored(m, conv_seq)))
    }

    /// On SQLite, one writer job: the members are those at the append, read in its transaction.
    async fn append_for_fan_out(&self, m: &NewMessage) -> Result<(Appended, Vec<UserId>)> {
        let Some((lite, _)) = &self.lite else {
            return append_then_members(self, m).await;
        };
        let m = m.clone();
        lite.write(move |c| {
            let appended = append_lite(c, &m)?;
            let conv = appended.message().conversation_id;
            // As `fan_out_set`, inside this transaction.
            let members = match conv {
                ConversationId::Direct(a, b) => vec![a, b],
                ConversationId::Group(_) => c
                    .prepare_cached(MEMBERS_SQL)
                    .and_then(|mut s| {
                        s.query_map([conv.to_string()], |r| r.get(0).map(UserId))?.collect::<rusqlite::Result<_>>()
                    })
                    .map_err(lite_err(DB))?,
            };
            Ok((appended, members))
        })
        .await
    }

    async fn members(&self, conv: ConversationId) -> Result<Vec<UserId>> {
        let rows: Vec<(i64,)> =
            sqlx::query_as(MEMBERS_SQL).bind(conv.to_string()).fetch_all(&self.readers).await.map_err(sql_err(DB))?;
        Ok(rows.into_iter().map(|(u,)| UserId(u)).collect())
    }

    async fn membership(&self, conv: ConversationId, user: UserId) -> Result<Option<Membership>> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT m.read_seq, c.last_seq, m.joined_seq FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = ? AND m.user_id = ? AND m.active = 1",
        )
        .bind(conv.to_string())
        .bind(user.0)
        .fetch_optional(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        Ok(row.map(|(r, l, j)| Membership { read_seq: r as Seq, last_seq: l as Seq, joined_seq: j as Seq }))
    }

    async fn history(&self, conv: ConversationId, after: Seq, before: Option<Seq>, limit: u32) -> Result<Vec<Message>> {
        let before = before.map(|b| b.min(i64::MAX as u64) as i64).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND conv_seq > ? AND conv_seq < ? \
             ORDER BY conv_seq DESC LIMIT ?"
        ))
        .bind(conv.to_string())
        .bind(after.min(i64::MAX as u64) as i64)
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        rows.iter().map(message_from).collect()
    }

    async fn message(&self, msg_id: &str) -> Result<Option<Message>> {
        let row = sqlx::query(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE msg_id = ?"))
            .bind(msg_id)
            .fetch_optional(&self.readers)
            .await
            .map_err(sql_err(DB))?;
        row.as_ref().map(message_from).transpose()
    }

    async fn recall(&self, msg_id: &str, now: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done =
            sqlx::query("UPDATE messages SET recalled_at = ?, body = 'null' WHERE msg_id = ? AND recalled_at IS NULL")
                .bind(now)
                .bind(msg_id)
                .execute(&self.writer)
                .await
                .map_err(sql_err(DB))?;
        Ok(done.rows_affected() == 1)
    }

    async fn read_positions(&self, conv: ConversationId) -> Result<Vec<(UserId, Seq)>> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT user_id, read_seq FROM conversation_members WHERE conversation_id = ? AND active = 1 ORDER BY user_id")
                .bind(conv.to_string())
                .fetch_all(&self.readers)
                .await
                .map_err(sql_err(DB))?;
        Ok(rows.into_iter().map(|(u, r)| (UserId(u), r as Seq)).collect())
    }

    async fn conversations(&self, user: UserId) -> Result<Vec<ConversationSummary>> {
        let rows = sqlx::query(
            "SELECT c.id AS cid, c.kind AS ckind, c.group_id AS gid, m.peer_id AS peer, c.last_seq AS last, m.read_seq AS rd, \
                    msg.msg_id, msg.conversation_id, msg.conv_seq, msg.sender_id, msg.client_msg_id, msg.type, msg.body, \
                    msg.created_at, msg.recalled_at \
             FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             LEFT JOIN messages msg ON msg.conversation_id = c.id AND msg.conv_seq = c.last_seq \
             WHERE m.user_id = ? AND m.active = 1 \
             ORDER BY c.updated_at DESC, c.id",
        )
        .bind(user.0)
        .fetch_all(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        rows.iter()
            .map(|row| {
                let get = |e: sqlx::Error| Error::internal(format!("db row: {e}"));
                let cid: String = row.try_get("cid").map_err(get)?;
                let last = row.try_get::<i64, _>("last").map_err(get)? as Seq;
                let read = row.try_get::<i64, _>("rd").map_err(get)? as Seq;
                let has_msg = row.try_get::<Option<String>, _>("msg_id").map_err(get)?.is_some();
                Ok(ConversationSummary {
                    conversation_id: ConversationId::parse(&cid)
                        .map_err(|_| Error::internal("stored conversation id"))?,
                    kind: row.try_get("ckind").map_err(get)?,
                    peer_id: row.try_get::<Option<i64>, _>("peer").map_err(get)?.map(UserId),
                    group_id: row.try_get::<Option<i64>, _>("gid").map_err(get)?.map(GroupId),
                    last_message: if has_msg { Some(message_from(row)?) } else { None },
                    last_seq: last,
                    read_seq: read,
                    unread: last.saturating_sub(read),
                })
            })
            .collect()
    }

    async fn mark_read(&self, conv: ConversationId, user: UserId, seq: Seq) -> Result<ReadOutcome> {
        let id = conv.to_string();
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        // One conditional UPDATE: concurrent readers (two devices) can only move it forward.
        let moved = sqlx::query(
            "UPDATE conversation_members SET read_seq = \
               CASE WHEN ? < (SELECT c.last_seq FROM conversations c WHERE c.id = ?) THEN ? \
                    ELSE (SELECT c.last_seq FROM conversations c WHERE c.id = ?) END \
             WHERE conversation_id = ? AND user_id = ? AND active = 1 AND read_seq < ? \
               AND read_seq < (SELECT c.last_seq FROM conversations c WHERE c.id = ?)",
        )
        .bind(seq.min(i64::MAX as u64) as i64)
        .bind(&id)
        .bind(seq.min(i64::MAX as u64) as i64)
        .bind(&id)
        .bind(&id)
        .bind(user.0)
        .bind(seq.min(i64::MAX as u64) as i64)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT m.read_seq, c.last_seq FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = ? AND m.user_id = ? AND m.active = 1",
        )
        .bind(&id)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        let Some((read, last)) = row else {
            return Err(not_member());
        };
        Ok(ReadOutcome { read_seq: read as Seq, last_seq: last as Seq, advanced: moved.rows_affected() == 1 })
    }
}

#[async_trait]
impl Probe for SqlDb {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(sql_err(DB))?;
        Ok(())
    }
}

/// The message `m` became, stored at `conv_seq`.
fn stored(m: &NewMessage, conv_seq: i64) -> Message {
    Message {
        msg_id: m.msg_id.clone(),
        conversation_id: m.conversation_id,
        conv_seq: conv_seq as Seq,
        sender_id: m.sender_id,
        client_msg_id: m.client_msg_id.clone(),
        kind: m.kind.clone(),
        body: m.body.clone(),
        created_at: m.created_at,
        recalled: false,
    }
}

fn not_member() -> Error {
    Error::forbidden("not_member", "you are not a member of this conversation")
}

fn no_such_user() -> Error {
    Error::not_found("user_not_found", "no such user")
}

/// `ensure_direct` on the SQLite writer thread: both users must exist; the conversation and
/// its two member rows are created once.
fn ensure_direct_lite(c: &rusqlite::Connection, a: UserId, b: UserId, now: i64) -> Result<()> {
    use rusqlite::params;
    let err = lite_err(DB);
    let found: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM users WHERE id IN (?, ?)")
        .and_then(|mut s| s.query_row(params![a.0, b.0], |r| r.get(0)))
        .map_err(&err)?;
    if found != 2 {
        return Err(no_such_user());
    }
    let id = ConversationId::Direct(a, b).to_string();
    let created = c
        .prepare_cached(
            "INSERT INTO conversations (id, kind, last_seq, created_at, updated_at) VALUES (?, 'direct', 0, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![id, now, now]))
        .map_err(&err)?;
    if created == 1 {
        for (me, peer) in [(a, b), (b, a)] {
            c.prepare_cached("INSERT INTO conversation_members (conversation_id, user_id, peer_id) VALUES (?, ?, ?)")
                .and_then(|mut s| s.execute(params![id, me.0, peer.0]))
                .map_err(&err)?;
        }
    }
    Ok(())
}

/// `append_message` on the SQLite writer thread, inside the group transaction: a retried
/// `client_msg_id` returns the original; otherwise membership check, `conv_seq` increment and
/// read-back in one statement, the row, and the sender's read position.
fn append_lite(c: &rusqlite::Connection, m: &NewMessage) -> Result<Appended> {
    use rusqlite::{OptionalExtension, params};
    let err = lite_err(DB);
    let existing = c
        .prepare_cached(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"))
        .and_then(|mut s| s.query_row(params![m.sender_id.0, m.client_msg_id], lite_message).optional())
        .map_err(&err)?;
    if let Some(found) = existing {
        return Ok(Appended::Existing(found?));
    }
    let conv = m.conversation_id.to_string();
    let next_seq = || -> Result<Option<i64>> {
        c.prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = ? WHERE id = ? AND EXISTS \
             (SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ? AND active = 1) \
             RETURNING last_seq",
        )
        .and_then(|mut s| s.query_row(params![m.created_at, conv, conv, m.sender_id.0], |r| r.get(0)).optional())
        .map_err(&err)
    };
    let conv_seq = match (next_seq()?, m.conversation_id) {
        (Some(seq), _) => seq,
        // A one-to-one conversation's first message creates it (nothing was written yet: the
        // UPDATE matched no row), in the same job: no round trip of its own.
        (None, ConversationId::Direct(a, b)) if m.conversation_id.peer_of(m.sender_id).is_some() => {
            // A second miss means the conversation existed after all (its member rows were
            // edited by hand): `ensure_direct_lite` then wrote nothing, so a refusal is allowed.
            ensure_direct_lite(c, a, b, m.created_at)?;
            next_seq()?.ok_or_else(not_member)?
        }
        (None, _) => return Err(not_member()),
    };
    c.prepare_cached(
        "INSERT INTO messages (msg_id, conversation_id, conv_seq, sender_id, client_msg_id, type, body, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.msg_id,
            conv,
            conv_seq,
            m.sender_id.0,
            m.client_msg_id,
            m.kind,
            m.body.to_string(),
            m.created_at
        ])
    })
    .map_err(&err)?;
    c.prepare_cached(
        "UPDATE conversation_members SET read_seq = CASE WHEN read_seq < ? THEN ? ELSE read_seq END \
         WHERE conversation_id = ? AND user_id = ?",
    )
    .and_then(|mut s| s.execute(params![conv_seq, conv_seq, conv, m.sender_id.0]))
    .map_err(&err)?;
    Ok(Appended::New(stored(m, conv_seq)))
}

/// A `MESSAGE_COLS` row read through rusqlite (the outer error is SQLite's, the inner one a
/// stored value Feige cannot read).
fn lite_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Message>> {
    let conv: String = r.get(1)?;
    let body: String = r.get(6)?;
    let recalled_at: Option<i64> = r.get(8)?;
    let (conversation_id, body) = match decode_stored(&conv, &body, recalled_at.is_some()) {
        Ok(decoded) => decoded,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Message {
        msg_id: r.get(0)?,
        conversation_id,
        conv_seq: r.get::<_, i64>(2)? as Seq,
        sender_id: UserId(r.get(3)?),
        client_msg_id: r.get(4)?,
        kind: r.get(5)?,
        body,
        created_at: r.get(7)?,
        recalled: recalled_at.is_some(),
    }))
}
