//! Domain records shared by the use cases, the ports and the wire.

use crate::ids::{ConversationId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Sequence numbers: `seq` per user timeline, `conv_seq` per conversation.
pub type Seq = u64;

/// A registered user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: UserId,
    pub username: String,
    pub nickname: String,
}

/// A message as stored in history (one row per message, whatever the fan-out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub msg_id: String,
    pub conversation_id: ConversationId,
    pub conv_seq: Seq,
    pub sender_id: UserId,
    pub client_msg_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `null` once recalled.
    pub body: Value,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub recalled: bool,
}

/// What a client sees in `sync` and in push frames.
///
/// `extra` carries kind-specific fields (for `read`: `reader_id`, `read_seq`; for messages:
/// `client_msg_id`), flattened into the JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: Seq,
    pub kind: String,
    pub conversation_id: ConversationId,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conv_seq: Option<Seq>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sender_id: Option<UserId>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub msg_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body: Option<Value>,
    pub created_at: i64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Event {
    /// The timeline event for a message (its `seq` is set per recipient when written).
    pub fn message(m: &Message) -> Self {
        let mut extra = Map::new();
        extra.insert("client_msg_id".into(), Value::String(m.client_msg_id.clone()));
        Event {
            seq: 0,
            kind: "message".into(),
            conversation_id: m.conversation_id,
            conv_seq: Some(m.conv_seq),
            msg_id: Some(m.msg_id.clone()),
            sender_id: Some(m.sender_id),
            msg_type: Some(m.kind.clone()),
            body: Some(m.body.clone()),
            created_at: m.created_at,
            extra,
        }
    }

    /// Key that makes writing this event to a timeline idempotent: one message, one recall per
    /// message, one read position per reader, and group events by their own `event_id`.
    pub fn dedup_key(&self) -> String {
        if let Some(Value::String(id)) = self.extra.get("event_id") {
            return format!("{}:{id}", self.kind);
        }
        match (&self.msg_id, self.kind.as_str()) {
            (Some(id), "message") => format!("m:{id}"),
            (Some(id), kind) => format!("{kind}:{id}"),
            (None, kind) => format!(
                "{kind}:{}:{}:{}",
                self.conversation_id,
                self.sender_id.map(|u| u.0).unwrap_or(0),
                self.conv_seq.unwrap_or(0)
            ),
        }
    }

    /// A non-message event (group changes, recall, read) with its kind-specific fields.
    pub fn notice(kind: &str, conversation_id: ConversationId, by: UserId, extra: Map<String, Value>) -> Self {
        Event {
            seq: 0,
            kind: kind.into(),
            conversation_id,
            conv_seq: None,
            msg_id: None,
            sender_id: Some(by),
            msg_type: None,
            body: None,
            created_at: crate::now_ms(),
            extra,
        }
    }
}

/// One slot of a user's timeline. `event: None` is a filler written over a hole whose writer
/// died (see `timeline`): readers step over it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub user_id: UserId,
    pub seq: Seq,
    /// Idempotency key: one entry per (user, event_key).
    pub event_key: String,
    pub event: Option<Event>,
    /// When the entry was written (ms); used to tell a slow writer from a dead one.
    pub written_at: i64,
}

/// One conversation in a user's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation_id: ConversationId,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<crate::ids::GroupId>,
    pub last_message: Option<Message>,
    pub last_seq: Seq,
    pub read_seq: Seq,
    pub unread: Seq,
}

/// A login session: one device of one user, with its rotating refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub sid: String,
    pub user_id: UserId,
    pub device_id: String,
    pub platform: String,
    /// SHA-256 (hex) of the refresh secret; the secret itself is never stored.
    pub refresh_hash: String,
    pub refresh_expires_at: i64,
    pub created_at: i64,
}

/// Result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was current; the session now holds the new hash.
    Rotated { user_id: UserId, device_id: String, platform: String },
    /// The token was valid once but has been rotated away: a replay. The session is revoked.
    Reused { user_id: UserId },
    /// Unknown session, expired or already revoked.
    Invalid,
}

/// Something the push side must do for a user: deliver an event, close a logged-out device's
/// sockets, or close the sockets a newer one replaces. This is what travels on the event bus
/// and between push nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // nearly every push is an Event; boxing would cost an allocation each
pub enum Push {
    Event {
        user_id: UserId,
        event: Event,
    },
    CloseSession {
        user_id: UserId,
        sid: String,
    },
    /// The kick policy: `socket` just opened; every *older* socket of the user that conflicts
    /// with it (any, or the same `platform` when that is set) gets a `kicked` frame and closes.
    Replace {
        user_id: UserId,
        socket: SocketRef,
        platform: Option<String>,
    },
}

impl Push {
    /// The user this push is for (the bus partitions by it).
    pub fn user_id(&self) -> UserId {
        match self {
            Push::Event { user_id, .. } | Push::CloseSession { user_id, .. } | Push::Replace { user_id, .. } => {
                *user_id
            }
        }
    }
}

/// One socket in the whole push tier, ordered by when it opened (node and a per-node counter
/// break ties), so every node agrees which of two sockets is the older.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SocketRef {
    /// Milliseconds since the epoch when the socket opened.
    pub opened_at: i64,
    pub node: String,
    pub id: u64,
}

/// A member's standing in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub read_seq: Seq,
    pub last_seq: Seq,
    /// The conversation's `last_seq` when this member joined: history before it is not theirs.
    pub joined_seq: Seq,
}

/// A member's rank in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Owners and admins manage members and settings.
    pub fn manages(self) -> bool {
        self >= Role::Admin
    }
}

/// A group as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub group_id: crate::ids::GroupId,
    pub name: String,
    pub announcement: String,
    pub owner_id: UserId,
    pub member_count: u32,
    pub conversation_id: ConversationId,
    pub created_at: i64,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: i64,
}

/// What `mark_read` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    pub read_seq: Seq,
    pub last_seq: Seq,
    /// Whether `read_seq` moved forward (only then is a `read` event sent).
    pub advanced: bool,
}
