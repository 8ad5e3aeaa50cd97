//! Sending, syncing, history, the conversation list and read positions.

use super::{Feige, Identity};
use crate::error::{Error, Result};
use crate::ids::{ConversationId, GroupId, UserId};
use crate::model::{ConversationSummary, Event, Membership, Message, Seq};
use crate::now_ms;
use crate::ports::{Appended, NewMessage, fan_out_set};
use crate::timeline::{self, Page};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::time::Instant;

/// The message types of the seed (DESIGN.md): `text` carries a string body, the rest a JSON
/// object.
pub const MESSAGE_TYPES: &[&str] = &["text", "image", "file", "audio", "video", "location", "custom", "emoji", "card"];
/// Longest text body, in characters.
pub const MAX_TEXT_CHARS: usize = 8000;
/// How often a long-poll re-reads the store when no in-process wake-up comes (writers in
/// another process, as on Lambda).
const LONG_POLL_RECHECK: Duration = Duration::from_millis(250);

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    User(UserId),
    Group(GroupId),
}

/// `POST /v1/messages`'s body, already typed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    pub client_msg_id: String,
    pub to: Target,
    pub kind: String,
    pub body: Value,
}

/// `POST /v1/messages`'s answer; `created` is false for an idempotent retry (HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendResult {
    pub msg_id: String,
    pub conversation_id: ConversationId,
    pub conv_seq: Seq,
    pub seq: Seq,
    pub created_at: i64,
    #[serde(skip)]
    pub created: bool,
}

fn validate(req: &SendRequest) -> Result<()> {
    let id = &req.client_msg_id;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b)) {
        return Err(Error::bad_request("invalid_client_msg_id", "client_msg_id must be 1-64 URL-safe characters"));
    }
    if !MESSAGE_TYPES.contains(&req.kind.as_str()) {
        return Err(Error::bad_request("invalid_type", format!("type must be one of {}", MESSAGE_TYPES.join(", "))));
    }
    match (&req.kind[..], &req.body) {
        ("text", Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_TEXT_CHARS => Ok(()),
        ("text", _) => Err(Error::bad_request(
            "invalid_body",
            format!("a text body is a non-empty string of at most {MAX_TEXT_CHARS} characters"),
        )),
        (_, Value::Object(_)) => Ok(()),
        _ => Err(Error::bad_request("invalid_body", "a non-text body is a JSON object")),
    }
}

impl Feige {
    /// `POST /v1/messages`. On success the message is in history and in every member's
    /// timeline. A retry with the same `client_msg_id` returns the original and completes
    /// whatever an earlier, interrupted attempt left undone.
    #[tracing::instrument(skip(self, req), fields(user = %who.user_id))]
    pub async fn send(&self, who: &Identity, req: SendRequest) -> Result<SendResult> {
        validate(&req)?;
        if self.config.send_rate_per_sec > 0 {
            self.ports.limiter.hit(&format!("send:{}", who.user_id), self.config.send_rate_per_sec, 1).await?;
        }
        let chat = &self.ports.chat;
        // The store recognises a retried `client_msg_id` itself (the common case costs no extra
        // lookup) and checks membership as it appends. Only when the sender may no longer send
        // there (left the group, group gone) is the original looked up here: a retry of a
        // message that was sent still gets it.
        let client_msg_id = req.client_msg_id.clone();
        let to = req.to;
        let conv = Self::resolve_target(who.user_id, to)?;
        let attempt = chat
            .append_for_fan_out(&NewMessage {
                msg_id: new_msg_id(),
                conversation_id: conv,
                sender_id: who.user_id,
                client_msg_id: req.client_msg_id,
                kind: req.kind,
                body: req.body,
                created_at: now_ms(),
            })
            .await;
        let (message, created, members) = match attempt {
            Ok((Appended::New(m), members)) => (m, true, members),
            Ok((Appended::Existing(m), members)) => (m, false, members),
            Err(e @ (Error::Forbidden { .. } | Error::NotFound { .. })) => {
                match chat.find_by_client_id(who.user_id, &client_msg_id).await? {
                    Some(existing) => {
                        let members = fan_out_set(chat.as_ref(), existing.conversation_id).await?;
                        (existing, false, members)
                    }
                    None => return Err(self.refusal(who.user_id, to, e).await),
                }
            }
            Err(e) => return Err(e),
        };
        let event = Event::message(&message);
        let written = self.fan_out(&members, &event, !created).await?;
        let seq = written.iter().find(|(u, _)| *u == who.user_id).map(|(_, s)| *s).unwrap_or(0);
        Ok(SendResult {
            msg_id: message.msg_id,
            conversation_id: message.conversation_id,
            conv_seq: message.conv_seq,
            seq,
            created_at: message.created_at,
            created,
        })
    }

    /// The conversation a new message goes to. A one-to-one conversation is created by its
    /// first message's append; membership is checked by the append itself (atomically with it),
    /// and `refusal` says why when it fails.
    fn resolve_target(me: UserId, to: Target) -> Result<ConversationId> {
        match to {
            Target::User(peer) if peer == me => {
                Err(Error::bad_request("invalid_recipient", "cannot send a message to yourself"))
            }
            Target::User(peer) => Ok(ConversationId::direct(me, peer)),
            Target::Group(g) => Ok(ConversationId::Group(g)),
        }
    }

    /// The error for a send the store refused: `404 group_not_found` for a group that does not
    /// exist (or was disbanded), else the store's own (`403 not_member`).
    async fn refusal(&self, me: UserId, to: Target, refused: Error) -> Error {
        let Target::Group(g) = to else { return refused };
        match self.ports.groups.group(g).await {
            Ok(None) => Error::not_found("group_not_found", "no such group"),
            Ok(Some(_)) => match self.require_member(ConversationId::Group(g), me).await {
                Ok(_) => refused,
                Err(e) => e,
            },
            Err(e) => e,
        }
    }

    /// `GET /v1/sync`: events after `since`, waiting up to `wait` for the first one.
    pub async fn sync(&self, who: &Identity, since: Seq, limit: u32, wait: Duration) -> Result<Page> {
        let limit = limit.clamp(1, 500);
        let deadline = Instant::now() + wait.min(Duration::from_secs(30));
        let grace = Duration::from_millis(self.config.gap_grace_ms);
        loop {
            let mut wake = self.signals.subscribe(who.user_id);
            let page = timeline::read(&self.ports, who.user_id, since, limit, grace).await?;
            let now = Instant::now();
            if !page.events.is_empty() || page.next > since || now >= deadline {
                return Ok(page);
            }
            let nap = (deadline - now).min(LONG_POLL_RECHECK);
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// `GET /v1/conversations`.
    pub async fn conversations(&self, who: &Identity) -> Result<Vec<ConversationSummary>> {
        self.ports.chat.conversations(who.user_id).await
    }

    /// `GET /v1/conversations/{id}/messages`: newest first, `before` exclusive.
    pub async fn history(
        &self,
        who: &Identity,
        conv: ConversationId,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)> {
        let me = self.require_member(conv, who.user_id).await?;
        let limit = limit.clamp(1, 100);
        let mut page = self.ports.chat.history(conv, me.joined_seq, before, limit + 1).await?;
        let has_more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    /// `POST /v1/conversations/{id}/read`: moves the caller's read position forward and tells
    /// the peer and the caller's other devices. Returns the unread count.
    pub async fn mark_read(&self, who: &Identity, conv: ConversationId, seq: Seq) -> Result<Seq> {
        self.require_member(conv, who.user_id).await?;
        let out = self.ports.chat.mark_read(conv, who.user_id, seq).await?;
        if out.advanced {
            let mut extra = Map::new();
            extra.insert("reader_id".into(), who.user_id.0.into());
            extra.insert("read_seq".into(), out.read_seq.into());
            let event = Event {
                seq: 0,
                kind: "read".into(),
                conversation_id: conv,
                conv_seq: Some(out.read_seq),
                msg_id: None,
                sender_id: Some(who.user_id),
                msg_type: None,
                body: None,
                created_at: now_ms(),
                extra,
            };
            let mut to = vec![who.user_id];
            to.extend(conv.peer_of(who.user_id));
            self.fan_out(&to, &event, false).await?;
        }
        Ok(out.last_seq.saturating_sub(out.read_seq))
    }

    /// `GET /v1/conversations/{id}/read-positions`: each member's read position, O(members).
    pub async fn read_positions(&self, who: &Identity, conv: ConversationId) -> Result<Vec<(UserId, Seq)>> {
        self.require_member(conv, who.user_id).await?;
        self.ports.chat.read_positions(conv).await
    }

    /// `POST /v1/messages/{msg_id}/recall`: by the sender, or a group's owner or admin, within
    /// the recall window. The body leaves history and every member gets a `recall` event;
    /// recalling again changes nothing and sends nothing new.
    pub async fn recall(&self, who: &Identity, msg_id: &str) -> Result<Message> {
        let not_found = || Error::not_found("message_not_found", "no such message");
        if msg_id.is_empty() || msg_id.len() > 64 {
            return Err(not_found());
        }
        let msg = self.ports.chat.message(msg_id).await?.ok_or_else(not_found)?;
        let conv = msg.conversation_id;
        if self.ports.chat.membership(conv, who.user_id).await?.is_none() {
            return Err(not_found());
        }
        let allowed = msg.sender_id == who.user_id
            || match conv {
                ConversationId::Group(g) => {
                    self.ports.groups.role_of(g, who.user_id).await?.is_some_and(|r| r.manages())
                }
                ConversationId::Direct(..) => false,
            };
        if !allowed {
            return Err(Error::forbidden("not_allowed", "only the sender or a group owner/admin may recall a message"));
        }
        let window_ms = self.config.recall_window_secs as i64 * 1000;
        if !msg.recalled && now_ms() - msg.created_at > window_ms {
            return Err(Error::forbidden(
                "recall_window_passed",
                format!("messages can be recalled within {} s", self.config.recall_window_secs),
            ));
        }
        let first = self.ports.chat.recall(msg_id, now_ms()).await?;
        let mut event = Event::notice("recall", conv, who.user_id, Map::new());
        event.msg_id = Some(msg.msg_id.clone());
        event.conv_seq = Some(msg.conv_seq);
        let members = self.ports.chat.members(conv).await?;
        // A repeat may only complete an interrupted first attempt: look before writing.
        self.fan_out(&members, &event, !first).await?;
        Ok(Message { body: Value::Null, recalled: true, ..msg })
    }

    /// The caller's membership, or 404 for an unknown conversation and 403 for a stranger.
    pub(crate) async fn require_member(&self, conv: ConversationId, user: UserId) -> Result<Membership> {
        if let Some(m) = self.ports.chat.membership(conv, user).await? {
            return Ok(m);
        }
        if self.ports.chat.members(conv).await?.is_empty() {
            let what =
                if matches!(conv, ConversationId::Group(_)) { "group_not_found" } else { "conversation_not_found" };
            Err(Error::not_found(what, "no such conversation"))
        } else {
            Err(Error::forbidden("not_member", "you are not a member of this conversation"))
        }
    }
}

/// A fresh message id: a UUIDv7 (time-ordered, never reused) as 32 hex characters.
fn new_msg_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, body: Value) -> SendRequest {
        SendRequest { client_msg_id: "c-1".into(), to: Target::User(UserId(2)), kind: kind.into(), body }
    }

    #[test]
    fn bodies_must_match_their_type() {
        assert!(validate(&req("text", Value::String("hi".into()))).is_ok());
        assert!(validate(&req("image", serde_json::json!({"url": "x"}))).is_ok());
        assert!(validate(&req("text", Value::String("  ".into()))).is_err());
        assert!(validate(&req("text", serde_json::json!({"a": 1}))).is_err());
        assert!(validate(&req("image", Value::String("x".into()))).is_err());
        assert!(validate(&req("sticker-bomb", Value::String("x".into()))).is_err());
        assert!(validate(&req("text", Value::String("x".repeat(MAX_TEXT_CHARS + 1)))).is_err());
        let mut bad_id = req("text", Value::String("x".into()));
        bad_id.client_msg_id = "has space".into();
        assert!(validate(&bad_id).is_err());
    }
}
