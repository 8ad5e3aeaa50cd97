//! Groups of up to 500: creation, administration with a permission check on every action, and
//! the group events every member sees in sync and push.
//!
//! History visibility: a member reads a group's history from the moment they joined on
//! (`joined_seq`); a member who left or was kicked can neither send nor read, and stops
//! receiving events, from then on.

use super::{Feige, Identity};
use crate::error::{Error, Result};
use crate::ids::{ConversationId, GroupId, UserId};
use crate::model::{Event, Group, GroupMember, Role};
use crate::now_ms;
use serde_json::{Map, Value, json};

/// Hard limit of members per group, owner included (write diffusion's price).
pub const MAX_GROUP_MEMBERS: u32 = 500;
const MAX_NAME_CHARS: usize = 64;
const MAX_ANNOUNCEMENT_CHARS: usize = 2000;

fn check_name(name: &str) -> Result<()> {
    let n = name.trim().chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_name",
            format!("a group name is 1-{MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(())
}

fn extra(group: GroupId, fields: Value) -> Map<String, Value> {
    let mut m = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("group_id".into(), group.0.into());
    m.insert("event_id".into(), uuid::Uuid::now_v7().simple().to_string().into());
    m
}

impl Feige {
    async fn group_event(&self, group: GroupId, by: UserId, kind: &str, to: Vec<UserId>, fields: Value) -> Result<()> {
        let event = Event::notice(kind, ConversationId::Group(group), by, extra(group, fields));
        self.fan_out(&to, &event, false).await.map(|_| ())
    }

    /// The group, and the caller's role in it: 404 for no such group, 403 for a non-member.
    async fn my_role(&self, group: GroupId, me: UserId) -> Result<(Group, Role)> {
        let g = self
            .ports
            .groups
            .group(group)
            .await?
            .ok_or_else(|| Error::not_found("group_not_found", "no such group"))?;
        let role = self
            .ports
            .groups
            .role_of(group, me)
            .await?
            .ok_or_else(|| Error::forbidden("not_member", "you are not a member of this group"))?;
        Ok((g, role))
    }

    async fn require_manager(&self, group: GroupId, me: UserId) -> Result<(Group, Role)> {
        let (g, role) = self.my_role(group, me).await?;
        if !role.manages() {
            return Err(Error::forbidden("not_allowed", "only the owner or an admin may do this"));
        }
        Ok((g, role))
    }

    async fn require_owner(&self, group: GroupId, me: UserId) -> Result<Group> {
        let (g, role) = self.my_role(group, me).await?;
        if role != Role::Owner {
            return Err(Error::forbidden("not_allowed", "only the owner may do this"));
        }
        Ok(g)
    }

    async fn require_users(&self, ids: &[UserId]) -> Result<()> {
        let found = self.ports.users.existing(ids).await?;
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::not_found("user_not_found", format!("no user {missing}")));
        }
        Ok(())
    }

    async fn member_ids(&self, group: GroupId) -> Result<Vec<UserId>> {
        self.ports.chat.members(ConversationId::Group(group)).await
    }

    /// `POST /v1/groups`.
    pub async fn create_group(
        &self,
        who: &Identity,
        name: &str,
        members: &[UserId],
    ) -> Result<(Group, Vec<GroupMember>)> {
        check_name(name)?;
        let mut ids: Vec<UserId> = members.iter().copied().filter(|u| *u != who.user_id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() as u32 + 1 > MAX_GROUP_MEMBERS {
            return Err(Error::conflict("group_full", format!("a group has at most {MAX_GROUP_MEMBERS} members")));
        }
        self.require_users(&ids).await?;
        let group = self.ports.groups.create_group(who.user_id, name.trim(), &ids, MAX_GROUP_MEMBERS, now_ms()).await?;
        let members = self.ports.groups.group_members(group.group_id).await?;
        let all: Vec<UserId> = members.iter().map(|m| m.user_id).collect();
        self.group_event(
            group.group_id,
            who.user_id,
            "group_created",
            all.clone(),
            json!({"name": group.name, "owner_id": who.user_id, "members": all}),
        )
        .await?;
        Ok((group, members))
    }

    /// `GET /v1/groups`.
    pub async fn my_groups(&self, who: &Identity) -> Result<Vec<Group>> {
        self.ports.groups.groups_of(who.user_id).await
    }

    /// `GET /v1/groups/{id}`: the group and the caller's role.
    pub async fn group_info(&self, who: &Identity, group: GroupId) -> Result<(Group, Role)> {
        self.my_role(group, who.user_id).await
    }

    /// `GET /v1/groups/{id}/members`.
    pub async fn group_members(&self, who: &Identity, group: GroupId) -> Result<Vec<GroupMember>> {
        self.my_role(group, who.user_id).await?;
        self.ports.groups.group_members(group).await
    }

    /// `POST /v1/groups/{id}/members` (owner/admin): returns the users newly added.
    pub async fn invite(&self, who: &Identity, group: GroupId, users: &[UserId]) -> Result<Vec<UserId>> {
        self.require_manager(group, who.user_id).await?;
        let mut ids = users.to_vec();
        ids.sort();
        ids.dedup();
        if ids.is_empty() || ids.len() as u32 > MAX_GROUP_MEMBERS {
            return Err(Error::bad_request("invalid_members", format!("user_ids holds 1-{MAX_GROUP_MEMBERS} users")));
        }
        self.require_users(&ids).await?;
        let added = self.ports.groups.add_members(group, &ids, MAX_GROUP_MEMBERS, now_ms()).await?;
        if !added.is_empty() {
            let to = self.member_ids(group).await?;
            self.group_event(group, who.user_id, "member_joined", to, json!({"user_ids": added})).await?;
        }
        Ok(added)
    }

    /// `DELETE /v1/groups/{id}/members/{user_id}`: leave (yourself) or kick (owner/admin).
    pub async fn remove_member(&self, who: &Identity, group: GroupId, user: UserId) -> Result<()> {
        let (_, my_role) = self.my_role(group, who.user_id).await?;
        let reason = if user == who.user_id {
            if my_role == Role::Owner {
                return Err(Error::conflict(
                    "owner_cannot_leave",
                    "the owner transfers ownership or disbands the group first",
                ));
            }
            "left"
        } else {
            let target = self
                .ports
                .groups
                .role_of(group, user)
                .await?
                .ok_or_else(|| Error::not_found("member_not_found", "that user is not a member"))?;
            // Owners kick anyone; admins kick plain members only.
            if !my_role.manages() || target >= my_role {
                return Err(Error::forbidden("not_allowed", "you may not remove this member"));
            }
            "kicked"
        };
        let before = self.member_ids(group).await?;
        if self.ports.groups.remove_member(group, user, now_ms()).await? {
            self.group_event(group, who.user_id, "member_left", before, json!({"user_id": user, "reason": reason}))
                .await?;
        }
        Ok(())
    }

    /// `PATCH /v1/groups/{id}` (owner/admin).
    pub async fn update_group(
        &self,
        who: &Identity,
        group: GroupId,
        name: Option<&str>,
        announcement: Option<&str>,
    ) -> Result<Group> {
        self.require_manager(group, who.user_id).await?;
        if let Some(n) = name {
            check_name(n)?;
        }
        if announcement.is_some_and(|a| a.chars().count() > MAX_ANNOUNCEMENT_CHARS) {
            return Err(Error::bad_request(
                "invalid_announcement",
                format!("an announcement is at most {MAX_ANNOUNCEMENT_CHARS} characters"),
            ));
        }
        if name.is_none() && announcement.is_none() {
            return Err(Error::bad_request("nothing_to_update", "give a name or an announcement"));
        }
        let g = self.ports.groups.update_group(group, name.map(str::trim), announcement, now_ms()).await?;
        let mut fields = Map::new();
        if let Some(n) = name {
            fields.insert("name".into(), n.trim().into());
        }
        if let Some(a) = announcement {
            fields.insert("announcement".into(), a.into());
        }
        let to = self.member_ids(group).await?;
        self.group_event(group, who.user_id, "group_updated", to, Value::Object(fields)).await?;
        Ok(g)
    }

    /// `DELETE /v1/groups/{id}` (owner).
    pub async fn disband(&self, who: &Identity, group: GroupId) -> Result<()> {
        self.require_owner(group, who.user_id).await?;
        let members = self.member_ids(group).await?;
        self.ports.groups.disband(group, now_ms()).await?;
        self.group_event(group, who.user_id, "group_disbanded", members, json!({})).await
    }

    /// Grants (`admin = true`) or revokes admin rights (owner only).
    pub async fn set_admin(&self, who: &Identity, group: GroupId, user: UserId, admin: bool) -> Result<()> {
        self.require_owner(group, who.user_id).await?;
        let current = self
            .ports
            .groups
            .role_of(group, user)
            .await?
            .ok_or_else(|| Error::not_found("member_not_found", "that user is not a member"))?;
        if current == Role::Owner {
            return Err(Error::bad_request("invalid_role", "the owner's role changes only by transfer"));
        }
        let role = if admin { Role::Admin } else { Role::Member };
        if current == role {
            return Ok(());
        }
        self.ports.groups.set_role(group, user, role).await?;
        let to = self.member_ids(group).await?;
        self.group_event(group, who.user_id, "role_changed", to, json!({"user_id": user, "role": role})).await
    }

    /// Hands the group to another member (owner only); the old owner becomes an admin.
    pub async fn transfer_ownership(&self, who: &Identity, group: GroupId, to_user: UserId) -> Result<()> {
        self.require_owner(group, who.user_id).await?;
        if to_user == who.user_id {
            return Err(Error::bad_request("invalid_member", "you already own this group"));
        }
        if self.ports.groups.role_of(group, to_user).await?.is_none() {
            return Err(Error::not_found("member_not_found", "that user is not a member"));
        }
        self.ports.groups.transfer_owner(group, to_user, now_ms()).await?;
        let to = self.member_ids(group).await?;
        self.group_event(
            group,
            who.user_id,
            "role_changed",
            to.clone(),
            json!({"user_id": to_user, "role": Role::Owner}),
        )
        .await?;
        self.group_event(group, who.user_id, "role_changed", to, json!({"user_id": who.user_id, "role": Role::Admin}))
            .await
    }
}
