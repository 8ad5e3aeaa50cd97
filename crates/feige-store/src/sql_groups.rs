//! Groups in SQL (SQLite or MySQL through sqlx's `Any`). A group is a `chat_groups` row plus
//! the member list of its conversation (`g<id>`), where each member has a role. The member
//! limit is enforced inside one transaction that first locks the group row (an UPDATE), so
//! concurrent invitations cannot pass it together.

use crate::sql::{SqlDb, placeholders};
use crate::sql_err;
use async_trait::async_trait;
use feige_core::ids::{ConversationId, GroupId, UserId};
use feige_core::model::{Group, GroupMember, Role};
use feige_core::ports::GroupStore;
use feige_core::{Error, Result};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const DB: &str = "db";
const GROUP_COLS: &str = "g.id, g.name, g.announcement, g.owner_id, g.member_count, g.created_at";
/// Rows per multi-row INSERT.
const BATCH: usize = 100;

fn group_from(row: &AnyRow) -> Result<Group> {
    let get = |e: sqlx::Error| Error::internal(format!("db row: {e}"));
    let id = GroupId(row.try_get("id").map_err(get)?);
    Ok(Group {
        group_id: id,
        name: row.try_get("name").map_err(get)?,
        announcement: row.try_get("announcement").map_err(get)?,
        owner_id: UserId(row.try_get("owner_id").map_err(get)?),
        member_count: row.try_get::<i64, _>("member_count").map_err(get)? as u32,
        conversation_id: ConversationId::Group(id),
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

fn full() -> Error {
    Error::conflict("group_full", format!("a group has at most {} members", feige_core::usecases::MAX_GROUP_MEMBERS))
}

/// Inserts member rows (role `member` unless `owner`), `BATCH` per statement.
async fn insert_members(
    tx: &mut Transaction<'_, Any>,
    conv: &str,
    users: &[UserId],
    owner: Option<UserId>,
    last_seq: i64,
    now: i64,
) -> Result<()> {
    for chunk in users.chunks(BATCH) {
        let rows = vec!["(?, ?, ?, ?, ?, ?, 1)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_seq, read_seq, joined_at, active) VALUES {rows}"
        );
        let mut q = sqlx::query(&sql);
        for u in chunk {
            let role = if Some(*u) == owner { Role::Owner } else { Role::Member };
            q = q.bind(conv).bind(u.0).bind(role.as_str()).bind(last_seq).bind(last_seq).bind(now);
        }
        q.execute(&mut **tx).await.map_err(sql_err(DB))?;
    }
    Ok(())
}

#[async_trait]
impl GroupStore for SqlDb {
    async fn create_group(&self, owner: UserId, name: &str, members: &[UserId], limit: u32, now: i64) -> Result<Group> {
        let mut all = vec![owner];
        all.extend(members.iter().copied().filter(|u| *u != owner));
        all[1..].sort();
        all.dedup();
        if all.len() as u32 > limit {
            return Err(full());
        }
        let key = feige_core::auth::random_token(18);
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        sqlx::query(
            "INSERT INTO chat_groups (create_key, name, announcement, owner_id, member_count, created_at, updated_at) \
             VALUES (?, ?, '', ?, ?, ?, ?)",
        )
        .bind(&key)
        .bind(name)
        .bind(owner.0)
        .bind(all.len() as i64)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        // Read the id back by the random creation key: portable across both dialects.
        let (id,): (i64,) = sqlx::query_as("SELECT id FROM chat_groups WHERE create_key = ?")
            .bind(&key)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        let conv = ConversationId::Group(GroupId(id)).to_string();
        sqlx::query("INSERT INTO conversations (id, kind, group_id, last_seq, created_at, updated_at) VALUES (?, 'group', ?, 0, ?, ?)")
            .bind(&conv)
            .bind(id)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        insert_members(&mut tx, &conv, &all, Some(owner), 0, now).await?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(Group {
            group_id: GroupId(id),
            name: name.to_owned(),
            announcement: String::new(),
            owner_id: owner,
            member_count: all.len() as u32,
            conversation_id: ConversationId::Group(GroupId(id)),
            created_at: now,
        })
    }

    async fn group(&self, id: GroupId) -> Result<Option<Group>> {
        let row =
            sqlx::query(&format!("SELECT {GROUP_COLS} FROM chat_groups g WHERE g.id = ? AND g.disbanded_at IS NULL"))
                .bind(id.0)
                .fetch_optional(&self.readers)
                .await
                .map_err(sql_err(DB))?;
        row.as_ref().map(group_from).transpose()
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLS} FROM conversation_members m \
             JOIN conversations c ON c.id = m.conversation_id \
             JOIN chat_groups g ON g.id = c.group_id \
             WHERE m.user_id = ? AND m.active = 1 AND c.kind = 'group' AND g.disbanded_at IS NULL ORDER BY g.id"
        ))
        .bind(user.0)
        .fetch_all(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        rows.iter().map(group_from).collect()
    }

    async fn group_members(&self, id: GroupId) -> Result<Vec<GroupMember>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT user_id, role, joined_at FROM conversation_members WHERE conversation_id = ? AND active = 1 ORDER BY user_id",
        )
        .bind(ConversationId::Group(id).to_string())
        .fetch_all(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        rows.into_iter()
            .map(|(u, role, joined_at)| {
                Ok(GroupMember {
                    user_id: UserId(u),
                    role: Role::parse(&role).ok_or_else(|| Error::internal(format!("stored role {role:?}")))?,
                    joined_at,
                })
            })
            .collect()
    }

    async fn role_of(&self, id: GroupId, user: UserId) -> Result<Option<Role>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT role FROM conversation_members WHERE conversation_id = ? AND user_id = ? AND active = 1",
        )
        .bind(ConversationId::Group(id).to_string())
        .bind(user.0)
        .fetch_optional(&self.readers)
        .await
        .map_err(sql_err(DB))?;
        Ok(row.and_then(|(r,)| Role::parse(&r)))
    }

    async fn add_members(&self, id: GroupId, users: &[UserId], limit: u32, now: i64) -> Result<Vec<UserId>> {
        let conv = ConversationId::Group(id).to_string();
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        // Lock the group row first: concurrent invitations queue here.
        let locked = sqlx::query("UPDATE chat_groups SET updated_at = ? WHERE id = ? AND disbanded_at IS NULL")
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        if locked.rows_affected() == 0 {
            return Err(Error::not_found("group_not_found", "no such group"));
        }
        let (count,): (i64,) = sqlx::query_as("SELECT member_count FROM chat_groups WHERE id = ?")
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        let mut known: Vec<(i64, i64)> = Vec::new();
        for chunk in users.chunks(500) {
            let sql = format!(
                "SELECT user_id, active FROM conversation_members WHERE conversation_id = ? AND user_id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as::<_, (i64, i64)>(&sql).bind(&conv);
            for u in chunk {
                q = q.bind(u.0);
            }
            known.extend(q.fetch_all(&mut *tx).await.map_err(sql_err(DB))?);
        }
        let active = |u: &UserId| known.iter().any(|(k, a)| *k == u.0 && *a == 1);
        let former = |u: &UserId| known.iter().any(|(k, a)| *k == u.0 && *a == 0);
        let added: Vec<UserId> = users.iter().copied().filter(|u| !active(u)).collect();
        if added.is_empty() {
            return Ok(added);
        }
        if count + added.len() as i64 > limit as i64 {
            return Err(full());
        }
        let (last_seq,): (i64,) = sqlx::query_as("SELECT last_seq FROM conversations WHERE id = ?")
            .bind(&conv)
            .fetch_one(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        let (rejoining, fresh): (Vec<UserId>, Vec<UserId>) = added.iter().partition(|u| former(u));
        for u in &rejoining {
            sqlx::query(
                "UPDATE conversation_members SET active = 1, role = 'member', joined_seq = ?, read_seq = ?, joined_at = ? \
                 WHERE conversation_id = ? AND user_id = ?",
            )
            .bind(last_seq)
            .bind(last_seq)
            .bind(now)
            .bind(&conv)
            .bind(u.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        }
        insert_members(&mut tx, &conv, &fresh, None, last_seq, now).await?;
        sqlx::query("UPDATE chat_groups SET member_count = member_count + ? WHERE id = ?")
            .bind(added.len() as i64)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(added)
    }

    async fn remove_member(&self, id: GroupId, user: UserId, now: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let gone = sqlx::query(
            "UPDATE conversation_members SET active = 0 WHERE conversation_id = ? AND user_id = ? AND active = 1",
        )
        .bind(ConversationId::Group(id).to_string())
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE chat_groups SET member_count = member_count - 1, updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))?;
        Ok(true)
    }

    async fn update_group(
        &self,
        id: GroupId,
        name: Option<&str>,
        announcement: Option<&str>,
        now: i64,
    ) -> Result<Group> {
        let turn = self.write_turn().await;
        sqlx::query(
            "UPDATE chat_groups SET name = COALESCE(?, name), announcement = COALESCE(?, announcement), updated_at = ? \
             WHERE id = ? AND disbanded_at IS NULL",
        )
        .bind(name)
        .bind(announcement)
        .bind(now)
        .bind(id.0)
        .execute(&self.writer)
        .await
        .map_err(sql_err(DB))?;
        drop(turn);
        self.group(id).await?.ok_or_else(|| Error::not_found("group_not_found", "no such group"))
    }

    async fn set_role(&self, id: GroupId, user: UserId, role: Role) -> Result<()> {
        if role == Role::Owner {
            return Err(Error::internal("set_role cannot make an owner"));
        }
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE conversation_members SET role = ? WHERE conversation_id = ? AND user_id = ? AND active = 1 AND role <> 'owner'")
            .bind(role.as_str())
            .bind(ConversationId::Group(id).to_string())
            .bind(user.0)
            .execute(&self.writer)
            .await
            .map_err(sql_err(DB))?;
        Ok(())
    }

    async fn transfer_owner(&self, id: GroupId, to: UserId, now: i64) -> Result<()> {
        let conv = ConversationId::Group(id).to_string();
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        let promoted = sqlx::query(
            "UPDATE conversation_members SET role = 'owner' WHERE conversation_id = ? AND user_id = ? AND active = 1",
        )
        .bind(&conv)
        .bind(to.0)
        .execute(&mut *tx)
        .await
        .map_err(sql_err(DB))?;
        if promoted.rows_affected() == 0 {
            return Err(Error::not_found("member_not_found", "that user is not a member"));
        }
        sqlx::query("UPDATE conversation_members SET role = 'admin' WHERE conversation_id = ? AND role = 'owner' AND user_id <> ?")
            .bind(&conv)
            .bind(to.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        sqlx::query("UPDATE chat_groups SET owner_id = ?, updated_at = ? WHERE id = ?")
            .bind(to.0)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))
    }

    async fn disband(&self, id: GroupId, now: i64) -> Result<()> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await.map_err(sql_err(DB))?;
        sqlx::query("UPDATE chat_groups SET disbanded_at = ?, member_count = 0, updated_at = ? WHERE id = ? AND disbanded_at IS NULL")
            .bind(now)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        sqlx::query("UPDATE conversation_members SET active = 0 WHERE conversation_id = ?")
            .bind(ConversationId::Group(id).to_string())
            .execute(&mut *tx)
            .await
            .map_err(sql_err(DB))?;
        tx.commit().await.map_err(sql_err(DB))
    }
}
