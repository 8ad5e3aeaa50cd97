//! Users, sessions, conversations and history in SQLite (the embedded profile).
//!
//! All writes go through one connection (SQLite has one writer anyway; this keeps
//! `SQLITE_BUSY` out of the picture), reads through a small pool, in WAL mode.

use crate::{is_unique_violation, sql_err};
use async_trait::async_trait;
use feige_core::ids::{ConversationId, GroupId, UserId};
use feige_core::model::{
    ConversationSummary, Membership, Message, NewSession, ReadOutcome, RotateOutcome, Seq, User,
};
use feige_core::ports::{Appended, ChatStore, NewMessage, Probe, SessionStore, UserStore};
use feige_core::{Error, Result};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

const DB: &str = "db";

/// Opens (creating if needed) a SQLite database at a `sqlite://path` URL: one writer
/// connection and a pool of readers.
pub(crate) async fn open(
    url: &str,
    migrator: &sqlx::migrate::Migrator,
    backend: &'static str,
) -> Result<(SqlitePool, SqlitePool)> {
    let path = url.trim_start_matches("sqlite://");
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::unavailable(backend, format!("{}: {e}", dir.display())))?;
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
    migrator
        .run(&writer)
        .await
        .map_err(|e| Error::internal(format!("{backend} migrations: {e}")))?;
    let readers = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.read_only(true))
        .await
        .map_err(sql_err(backend))?;
    Ok((writer, readers))
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The embedded relational store.
pub struct SqliteDb {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteDb {
    /// Opens the database at `sqlite://path` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let (writer, readers) = open(url, &MIGRATOR, DB).await?;
        Ok(SqliteDb { writer, readers })
    }
}

const MESSAGE_COLS: &str = "msg_id, conversation_id, conv_seq, sender_id, client_msg_id, type, body, created_at, recalled_at";

fn message_from(row: &SqliteRow) -> Result<Message> {
    let get = |e: sqlx::Error| Error::internal(format!("db row: {e}"));
    let conv: String = row.try_get("conversation_id").map_err(get)?;
    let body: String = row.try_get("body").map_err(get)?;
    let recalled_at: Option<i64> = row.try_get("recalled_at").map_err(get)?;
    Ok(Message {
        msg_id: row.try_get("msg_id").map_err(get)?,
        conversation_id: ConversationId::parse(&conv)
            .map_err(|_| Error::internal(format!("stored conversation id {conv:?}")))?,
        conv_seq: row.try_get::<i64, _>("conv_seq").map_err(get)? as Seq,
        sender_id: UserId(row.try_get("sender_id").map_err(get)?),
        client_msg_id: row.try_get("client_msg_id").map_err(get)?,
        kind: row.try_get("type").map_err(get)?,
        body: if recalled_at.is_some() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&body).map_err(Error::internal)?
        },
        created_at: row.try_get("created_at").map_err(get)?,
        recalled: recalled_at.is_some(),
    })
}

#[async_trait]
impl UserStore for SqliteDb {
    async fn create_user(
        &self,
        username: &str,
        nickname: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<User> {
        let res = sqlx::query(
            "INSERT INTO users (username, nickname, password_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(username)
        .bind(nickname)
        .bind(password_hash)
        .bind(now)
        .execute(&self.writer)
        .await;
        match res {
            Ok(done) => Ok(User {
                user_id: UserId(done.last_insert_rowid()),
                username: username.into(),
                nickname: nickname.into(),
            }),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::conflict("username_taken", "that username is taken"))
            }
            Err(e) => Err(sql_err(DB)(e)),
        }
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, username, nickname FROM users WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.readers)
                .await
                .map_err(sql_err(DB))?;
        Ok(row.map(|(id, username, nickname)| User {
            user_id: UserId(id),
            username,
            nickname,
        }))
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        let row: Option<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, username, nickname, password_hash FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        Ok(row.map(|(id, username, nickname, hash)| {
            (
                User {
                    user_id: UserId(id),
                    username,
                    nickname,
                },
                hash,
            )
        }))
    }
}

#[async_trait]
impl SessionStore for SqliteDb {
    async fn create_session(&self, s: &NewSession) -> Result<Vec<String>> {
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let replaced: Vec<(String,)> = sqlx::query_as(
            "SELECT sid FROM sessions WHERE user_id = ? AND device_id = ? AND revoked_at IS NULL",
        )
        .bind(s.user_id.0)
        .bind(&s.device_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND device_id = ? AND revoked_at IS NULL")
            .bind(s.created_at)
            .bind(s.user_id.0)
            .bind(&s.device_id)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
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
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let row: Option<(i64, String, String, Option<String>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, device_id, refresh_hash, prev_refresh_hash, refresh_expires_at, revoked_at FROM sessions WHERE sid = ?",
        )
        .bind(sid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        let Some((user_id, device_id, current, previous, expires_at, revoked_at)) = row else {
            return Ok(RotateOutcome::Invalid);
        };
        let outcome = if revoked_at.is_some() {
            RotateOutcome::Invalid
        } else if current == old_hash && expires_at > now {
            sqlx::query("UPDATE sessions SET refresh_hash = ?, prev_refresh_hash = ?, refresh_expires_at = ? WHERE sid = ?")
                .bind(new_hash)
                .bind(old_hash)
                .bind(new_expires_at)
                .bind(sid)
                .execute(&mut *tx)
                .await
                .map_err(sql_err(DB))?;
            RotateOutcome::Rotated {
                user_id: UserId(user_id),
                device_id,
            }
        } else if previous.as_deref() == Some(old_hash) {
            sqlx::query("UPDATE sessions SET revoked_at = ? WHERE sid = ?")
                .bind(now)
                .bind(sid)
                .execute(&mut *tx)
                .await
                .map_err(sql_err(DB))?;
            RotateOutcome::Reused {
                user_id: UserId(user_id),
            }
        } else {
            RotateOutcome::Invalid
        };
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(outcome)
    }

    async fn revoke_session(&self, sid: &str, now: i64) -> Result<()> {
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
impl ChatStore for SqliteDb {
    async fn ensure_direct(&self, conv: ConversationId, now: i64) -> Result<()> {
        let ConversationId::Direct(a, b) = conv else {
            return Err(Error::internal("ensure_direct on a group conversation"));
        };
        let id = conv.to_string();
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let created = sqlx::query("INSERT OR IGNORE INTO conversations (id, kind, last_seq, created_at, updated_at) VALUES (?, 'direct', 0, ?, ?)")
            .bind(&id)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        if created.rows_affected() == 1 {
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

    async fn find_by_client_id(
        &self,
        sender: UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"
        ))
        .bind(sender.0)
        .bind(client_msg_id)
        .fetch_optional(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        row.as_ref().map(message_from).transpose()
    }

    async fn append_message(&self, m: &NewMessage) -> Result<Appended> {
        let conv = m.conversation_id.to_string();
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let member: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM conversation_members WHERE conversation_id = ? AND user_id = ? AND active = 1")
                .bind(&conv)
                .bind(m.sender_id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql_err(DB))?;
        if member.is_none() {
            return Err(Error::forbidden(
                "not_member",
                "you are not a member of this conversation",
            ));
        }
        let (conv_seq,): (i64,) = sqlx::query_as("UPDATE conversations SET last_seq = last_seq + 1, updated_at = ? WHERE id = ? RETURNING last_seq")
            .bind(m.created_at)
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
        sqlx::query("UPDATE conversation_members SET read_seq = MAX(read_seq, ?) WHERE conversation_id = ? AND user_id = ?")
            .bind(conv_seq)
            .bind(&conv)
            .bind(m.sender_id.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(Appended::New(Message {
            msg_id: m.msg_id.clone(),
            conversation_id: m.conversation_id,
            conv_seq: conv_seq as Seq,
            sender_id: m.sender_id,
            client_msg_id: m.client_msg_id.clone(),
            kind: m.kind.clone(),
            body: m.body.clone(),
            created_at: m.created_at,
            recalled: false,
        }))
    }

    async fn members(&self, conv: ConversationId) -> Result<Vec<UserId>> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT user_id FROM conversation_members WHERE conversation_id = ? AND active = 1 ORDER BY user_id")
            .bind(conv.to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(sql_err(DB))?;
        Ok(rows.into_iter().map(|(u,)| UserId(u)).collect())
    }

    async fn membership(&self, conv: ConversationId, user: UserId) -> Result<Option<Membership>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT m.read_seq, c.last_seq FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = ? AND m.user_id = ? AND m.active = 1",
        )
        .bind(conv.to_string())
        .bind(user.0)
        .fetch_optional(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        Ok(row.map(|(r, l)| Membership {
            read_seq: r as Seq,
            last_seq: l as Seq,
        }))
    }

    async fn history(
        &self,
        conv: ConversationId,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let before = before
            .map(|b| b.min(i64::MAX as u64) as i64)
            .unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? AND conv_seq < ? ORDER BY conv_seq DESC LIMIT ?"
        ))
        .bind(conv.to_string())
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        rows.iter().map(message_from).collect()
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
                let has_msg = row
                    .try_get::<Option<String>, _>("msg_id")
                    .map_err(get)?
                    .is_some();
                Ok(ConversationSummary {
                    conversation_id: ConversationId::parse(&cid)
                        .map_err(|_| Error::internal("stored conversation id"))?,
                    kind: row.try_get("ckind").map_err(get)?,
                    peer_id: row
                        .try_get::<Option<i64>, _>("peer")
                        .map_err(get)?
                        .map(UserId),
                    group_id: row
                        .try_get::<Option<i64>, _>("gid")
                        .map_err(get)?
                        .map(GroupId),
                    last_message: if has_msg {
                        Some(message_from(row)?)
                    } else {
                        None
                    },
                    last_seq: last,
                    read_seq: read,
                    unread: last.saturating_sub(read),
                })
            })
            .collect()
    }

    async fn mark_read(&self, conv: ConversationId, user: UserId, seq: Seq) -> Result<ReadOutcome> {
        let id = conv.to_string();
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT m.read_seq, c.last_seq FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.conversation_id = ? AND m.user_id = ? AND m.active = 1",
        )
        .bind(&id)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        let Some((read, last)) = row else {
            return Err(Error::forbidden(
                "not_member",
                "you are not a member of this conversation",
            ));
        };
        let (read, last) = (read as Seq, last as Seq);
        let target = seq.min(last);
        if target <= read {
            return Ok(ReadOutcome {
                read_seq: read,
                last_seq: last,
                advanced: false,
            });
        }
        sqlx::query("UPDATE conversation_members SET read_seq = ? WHERE conversation_id = ? AND user_id = ?")
            .bind(target as i64)
            .bind(&id)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(ReadOutcome {
            read_seq: target,
            last_seq: last,
            advanced: true,
        })
    }
}

#[async_trait]
impl Probe for SqliteDb {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(sql_err(DB))?;
        Ok(())
    }
}
