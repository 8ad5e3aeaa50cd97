//! The port traits: what the use cases need from the outside world. Each has an embedded
//! implementation and a real one, chosen by URL (`feige-store`), and one contract test body in
//! `feige-testkit` that every implementation must pass.

use crate::error::Result;
use crate::ids::{ConversationId, GroupId, UserId};
use crate::model::{
    ConversationSummary, Group, GroupMember, Membership, Message, NewSession, Push, ReadOutcome, Role, RotateOutcome,
    Seq, TimelineEntry, User,
};
use async_trait::async_trait;
use std::sync::Arc;

/// Users and their credentials.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; `409 username_taken` if the name exists.
    async fn create_user(&self, username: &str, nickname: &str, password_hash: &str, now: i64) -> Result<User>;
    /// Looks a user up by id.
    async fn user(&self, id: UserId) -> Result<Option<User>>;
    /// The user and password hash for a login name.
    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>>;
    /// Which of these ids name existing users (one query, whatever the count).
    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>>;
}

/// Login sessions (one per device) and their refresh tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session and revokes any live session of the same (user, device);
    /// returns the sids it revoked.
    async fn create_session(&self, session: &NewSession) -> Result<Vec<String>>;
    /// Swaps the refresh hash of `sid` from `old_hash` to `new_hash` if it is current and
    /// unexpired. Presenting an older hash of the session is a replay: the session is revoked.
    async fn rotate_refresh(
        &self,
        sid: &str,
        old_hash: &str,
        new_hash: &str,
        new_expires_at: i64,
        now: i64,
    ) -> Result<RotateOutcome>;
    /// Marks a session revoked (idempotent).
    async fn revoke_session(&self, sid: &str, now: i64) -> Result<()>;
    /// Sessions revoked at or after `since` (ms): used to re-seed a cold revocation cache.
    async fn revoked_since(&self, since: i64) -> Result<Vec<String>>;
}

/// What appending a message to history did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// A new message with a fresh `conv_seq`.
    New(Message),
    /// The sender already sent this `client_msg_id`: here is the original.
    Existing(Message),
}

impl Appended {
    /// The message, new or original.
    pub fn message(&self) -> &Message {
        match self {
            Appended::New(m) | Appended::Existing(m) => m,
        }
    }
}

/// The fan-out set of a conversation: a one-to-one conversation's members are in its id, a
/// group's are asked for.
pub async fn fan_out_set<S: ChatStore + ?Sized>(store: &S, conv: ConversationId) -> Result<Vec<UserId>> {
    match conv {
        ConversationId::Direct(a, b) => Ok(vec![a, b]),
        ConversationId::Group(_) => store.members(conv).await,
    }
}

/// [`ChatStore::append_for_fan_out`] in two steps: the append, then the fan-out set of the
/// message's conversation (the trait's default, for stores that cannot do both at once).
pub async fn append_then_members<S: ChatStore + ?Sized>(
    store: &S,
    msg: &NewMessage,
) -> Result<(Appended, Vec<UserId>)> {
    let appended = store.append_message(msg).await?;
    let members = fan_out_set(store, appended.message().conversation_id).await?;
    Ok((appended, members))
}

/// A message to append; `conv_seq` and `msg_id` are assigned by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub msg_id: String,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub client_msg_id: String,
    pub kind: String,
    pub body: serde_json::Value,
    pub created_at: i64,
}

/// Conversations, their members and their history (MySQL / SQLite).
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// Creates the one-to-one conversation of its two users if it does not exist yet;
    /// `404 user_not_found` if either user does not exist.
    async fn ensure_direct(&self, conv: ConversationId, now: i64) -> Result<()>;
    /// The message a sender already sent with this client id, if any.
    async fn find_by_client_id(&self, sender: UserId, client_msg_id: &str) -> Result<Option<Message>>;
    /// Atomically: takes the next `conv_seq`, stores the message, moves the conversation's
    /// `last_seq` and the sender's `read_seq` to it. A duplicate (sender, client_msg_id) returns
    /// the original instead. A group conversation must exist and the sender be a member
    /// (`403 not_member`); a one-to-one conversation is created by its first message, as
    /// [`ChatStore::ensure_direct`] does (`404 user_not_found`), in the same round trip where
    /// the store can.
    async fn append_message(&self, msg: &NewMessage) -> Result<Appended>;
    /// `append_message`, plus the current members of the message's conversation (the fan-out
    /// set). The default asks twice; a store may answer both in one round trip.
    async fn append_for_fan_out(&self, msg: &NewMessage) -> Result<(Appended, Vec<UserId>)> {
        append_then_members(self, msg).await
    }
    /// Current members of a conversation (the fan-out set), empty if it does not exist.
    async fn members(&self, conv: ConversationId) -> Result<Vec<UserId>>;
    /// A user's standing in a conversation; `None` if not a member (or no such conversation).
    async fn membership(&self, conv: ConversationId, user: UserId) -> Result<Option<Membership>>;
    /// Up to `limit` messages with `after < conv_seq < before` (or the newest), newest first.
    async fn history(&self, conv: ConversationId, after: Seq, before: Option<Seq>, limit: u32) -> Result<Vec<Message>>;
    /// One message by id.
    async fn message(&self, msg_id: &str) -> Result<Option<Message>>;
    /// Marks a message recalled (its body is dropped); false if it already was.
    async fn recall(&self, msg_id: &str, now: i64) -> Result<bool>;
    /// Every current member's read position (O(members)).
    async fn read_positions(&self, conv: ConversationId) -> Result<Vec<(UserId, Seq)>>;
    /// Every conversation the user is in, most recently active first, with the last message.
    async fn conversations(&self, user: UserId) -> Result<Vec<ConversationSummary>>;
    /// Moves the user's `read_seq` forward to `min(seq, last_seq)`; never backwards.
    async fn mark_read(&self, conv: ConversationId, user: UserId, seq: Seq) -> Result<ReadOutcome>;
}

/// Groups and their members; membership itself lives in the group conversation's member list
/// (`ChatStore::members`), with a role.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates a group owned by `owner` with `members` (the owner is added if absent), and its
    /// conversation. `409 group_full` past `limit` members.
    async fn create_group(&self, owner: UserId, name: &str, members: &[UserId], limit: u32, now: i64) -> Result<Group>;
    /// A live (not disbanded) group.
    async fn group(&self, id: GroupId) -> Result<Option<Group>>;
    /// The live groups a user is a member of.
    async fn groups_of(&self, user: UserId) -> Result<Vec<Group>>;
    /// Current members with their roles.
    async fn group_members(&self, id: GroupId) -> Result<Vec<GroupMember>>;
    /// A user's role, `None` if not a current member.
    async fn role_of(&self, id: GroupId, user: UserId) -> Result<Option<Role>>;
    /// Adds members atomically: all or none, never past `limit` (`409 group_full`), even under
    /// concurrent calls. Returns those newly added (current members are skipped). A former
    /// member rejoins from the conversation's current end.
    async fn add_members(&self, id: GroupId, users: &[UserId], limit: u32, now: i64) -> Result<Vec<UserId>>;
    /// Removes a member; false if they were not one.
    async fn remove_member(&self, id: GroupId, user: UserId, now: i64) -> Result<bool>;
    /// Renames and/or re-announces.
    async fn update_group(
        &self,
        id: GroupId,
        name: Option<&str>,
        announcement: Option<&str>,
        now: i64,
    ) -> Result<Group>;
    /// Sets a member's role (not `Owner`: use `transfer_owner`).
    async fn set_role(&self, id: GroupId, user: UserId, role: Role) -> Result<()>;
    /// Makes `to` (a member) the owner and the old owner an admin, atomically.
    async fn transfer_owner(&self, id: GroupId, to: UserId, now: i64) -> Result<()>;
    /// Disbands: the group and its conversation lose all members.
    async fn disband(&self, id: GroupId, now: i64) -> Result<()>;
}

/// What writing one timeline entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Written at the requested seq.
    Ok,
    /// That seq is taken (a filler or a writer that reused it): allocate another.
    SeqTaken,
    /// This event is already in the user's timeline at the given seq.
    AlreadyAt(Seq),
}

/// Per-user timelines (MongoDB / embedded): one entry per (user, seq), unique by both
/// (user, seq) and (user, event_key).
#[async_trait]
pub trait TimelineStore: Send + Sync {
    /// Writes one entry; never overwrites.
    async fn insert(&self, entry: &TimelineEntry) -> Result<Inserted>;
    /// Writes many entries (for fan-out); the default writes them one by one.
    async fn insert_many(&self, entries: &[TimelineEntry]) -> Result<Vec<Inserted>> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(self.insert(e).await?);
        }
        Ok(out)
    }
    /// Entries with `seq > after`, ascending, at most `limit`.
    async fn read(&self, user: UserId, after: Seq, limit: u32) -> Result<Vec<TimelineEntry>>;
    /// The highest seq written for the user (0 if none): the durable high-water mark.
    async fn max_seq(&self, user: UserId) -> Result<Seq>;
    /// Where an event already sits in the user's timeline, if it does.
    async fn find(&self, user: UserId, event_key: &str) -> Result<Option<Seq>>;
}

/// Per-user sequence allocation (Redis / in-process).
#[async_trait]
pub trait SeqAllocator: Send + Sync {
    /// Reserves `n` consecutive seqs and returns the last; `None` if the counter is not
    /// initialised (cold cache, flushed Redis): call `init` and try again.
    async fn allocate(&self, user: UserId, n: u64) -> Result<Option<Seq>>;
    /// One seq for each user, in one round trip where the backend allows (group fan-out).
    async fn allocate_each(&self, users: &[UserId]) -> Result<Vec<Option<Seq>>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.allocate(*u, 1).await?);
        }
        Ok(out)
    }
    /// Raises the counter to at least `floor` (never lowers it).
    async fn init(&self, user: UserId, floor: Seq) -> Result<()>;
}

/// What the revocation cache knows about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Not revoked.
    Valid,
    /// Revoked: refuse the token.
    Revoked,
    /// The cache lost its state (fresh process, flushed Redis) and has not been re-seeded from
    /// the session table yet: it cannot tell.
    Cold,
}

/// Revoked sessions, checked on every authenticated request.
#[async_trait]
pub trait Revocations: Send + Sync {
    /// Remembers `sid` as revoked for `ttl_secs` (the access token lifetime).
    async fn revoke(&self, sid: &str, ttl_secs: u64) -> Result<()>;
    /// Whether `sid` is revoked, or `Cold` if the cache cannot know.
    async fn check(&self, sid: &str) -> Result<Revocation>;
    /// Records that the cache now holds every live revocation (after a re-seed).
    async fn mark_warm(&self) -> Result<()>;
}

/// Fixed-window rate limiting.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one hit on `key`; `Err(RateLimited)` past `limit` hits in the window.
    async fn hit(&self, key: &str, limit: u32, window_secs: u64) -> Result<()>;
}

/// Where users are connected: user → the push nodes holding their sockets, each entry with a
/// TTL that the node's heartbeat refreshes (so a node that dies drops out by itself).
#[async_trait]
pub trait Presence: Send + Sync {
    /// Records that these users have sockets on `node`, for `ttl_secs`.
    async fn set_online(&self, node: &str, users: &[UserId], ttl_secs: u64) -> Result<()>;
    /// Records that `user` has no more sockets on `node`.
    async fn set_offline(&self, node: &str, user: UserId) -> Result<()>;
    /// For each user, the nodes holding their sockets (expired entries left out).
    async fn nodes_of(&self, users: &[UserId]) -> Result<Vec<Vec<String>>>;
    /// Publishes where `node` takes forwarded pushes (`host:port`), for `ttl_secs`.
    async fn announce_node(&self, node: &str, addr: &str, ttl_secs: u64) -> Result<()>;
    /// For each node, its announced address (None when unknown or expired).
    async fn node_addrs(&self, nodes: &[String]) -> Result<Vec<Option<String>>>;
}

/// The push event bus (Kafka / in-process).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes pushes; returns once the bus has them.
    async fn publish(&self, pushes: &[Push]) -> Result<()>;
}

/// Something that consumes pushes: the socket hub of this process, or the router that also
/// forwards to other push nodes.
#[async_trait]
pub trait PushSink: Send + Sync {
    /// Hands pushes over. Returns once they are handed off (queued on local sockets, or
    /// acknowledged by the node holding the sockets), so the caller may count them consumed.
    /// Never waits on a socket: a slow reader is dropped instead.
    async fn deliver(&self, pushes: &[Push]);
}

/// A backend that `/readyz` can check.
#[async_trait]
pub trait Probe: Send + Sync {
    /// Ok when the backend answers.
    async fn ping(&self) -> Result<()>;
}

/// The backends a Feige process uses, one handle per port.
#[derive(Clone)]
pub struct Ports {
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub chat: Arc<dyn ChatStore>,
    pub groups: Arc<dyn GroupStore>,
    pub timeline: Arc<dyn TimelineStore>,
    pub seqs: Arc<dyn SeqAllocator>,
    pub revocations: Arc<dyn Revocations>,
    pub limiter: Arc<dyn RateLimiter>,
    pub presence: Arc<dyn Presence>,
    pub bus: Arc<dyn EventBus>,
    /// Named readiness probes, one per backend.
    pub probes: Vec<(&'static str, Arc<dyn Probe>)>,
}
