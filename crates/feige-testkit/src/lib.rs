//! Contract tests, written once per port. Every backend's test suite calls these bodies with
//! a fresh instance of its adapter; a backend is correct when it passes them all.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

pub mod http;

use feige_core::ids::{ConversationId, UserId};
use feige_core::model::{Event, NewSession, RotateOutcome, TimelineEntry};
use feige_core::ports::*;
use feige_core::{Error, now_ms, timeline};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// A unique name for test data (backends shared between tests).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// `UserStore`: create, case-insensitive uniqueness, look-ups.
pub async fn user_store(s: Arc<dyn UserStore>) {
    let name = unique("u");
    let u = s.create_user(&name, "Nick", "hash", now_ms()).await.unwrap();
    assert_eq!(u.username, name);
    assert!(u.user_id.0 > 0);
    let dup = s.create_user(&name.to_uppercase(), "x", "h", now_ms()).await.unwrap_err();
    assert_eq!(dup.code(), "username_taken");
    assert_eq!(s.user(u.user_id).await.unwrap(), Some(u.clone()));
    assert_eq!(s.user(UserId(u.user_id.0 + 1_000_000)).await.unwrap(), None);
    let (cu, hash) = s.credentials(&name).await.unwrap().unwrap();
    assert_eq!((cu, hash.as_str()), (u.clone(), "hash"));
    assert!(s.credentials(&unique("nobody")).await.unwrap().is_none());
    let other = s.create_user(&unique("v"), "V", "h", now_ms()).await.unwrap();
    assert_ne!(other.user_id, u.user_id);
}

fn session(sid: &str, user: UserId, device: &str, hash: &str) -> NewSession {
    let now = now_ms();
    NewSession {
        sid: sid.into(),
        user_id: user,
        device_id: device.into(),
        platform: "ios".into(),
        refresh_hash: hash.into(),
        refresh_expires_at: now + 60_000,
        created_at: now,
    }
}

/// `SessionStore`: device replacement, rotation, replay detection, revocation.
pub async fn session_store(users: Arc<dyn UserStore>, s: Arc<dyn SessionStore>) {
    let u = users.create_user(&unique("s"), "S", "h", now_ms()).await.unwrap().user_id;
    let (a, b) = (unique("sid"), unique("sid"));
    assert!(s.create_session(&session(&a, u, "phone", "h1")).await.unwrap().is_empty());
    // Same device logs in again: the old session is replaced.
    assert_eq!(s.create_session(&session(&b, u, "phone", "h1")).await.unwrap(), vec![a.clone()]);
    assert_eq!(s.rotate_refresh(&a, "h1", "h2", now_ms() + 1000, now_ms()).await.unwrap(), RotateOutcome::Invalid);
    // Rotation: current hash moves on; the previous one is now a replay.
    let rotated = s.rotate_refresh(&b, "h1", "h2", now_ms() + 60_000, now_ms()).await.unwrap();
    assert_eq!(rotated, RotateOutcome::Rotated { user_id: u, device_id: "phone".into(), platform: "ios".into() });
    assert_eq!(s.rotate_refresh(&b, "wrong", "h3", now_ms() + 1000, now_ms()).await.unwrap(), RotateOutcome::Invalid);
    assert_eq!(
        s.rotate_refresh(&b, "h1", "h3", now_ms() + 1000, now_ms()).await.unwrap(),
        RotateOutcome::Reused { user_id: u }
    );
    // ... and the replay revoked the session: even the current token is dead.
    assert_eq!(s.rotate_refresh(&b, "h2", "h3", now_ms() + 1000, now_ms()).await.unwrap(), RotateOutcome::Invalid);
    let revoked = s.revoked_since(now_ms() - 60_000).await.unwrap();
    assert!(revoked.contains(&a) && revoked.contains(&b));
    // Expired refresh tokens do not rotate.
    let c = unique("sid");
    let mut old = session(&c, u, "tablet", "x1");
    old.refresh_expires_at = now_ms() - 1;
    s.create_session(&old).await.unwrap();
    assert_eq!(s.rotate_refresh(&c, "x1", "x2", now_ms() + 1000, now_ms()).await.unwrap(), RotateOutcome::Invalid);
    // Two refreshes racing with one token: exactly one rotates.
    let e = unique("sid");
    s.create_session(&session(&e, u, "watch", "w1")).await.unwrap();
    let (r1, r2) = tokio::join!(
        s.rotate_refresh(&e, "w1", "w2a", now_ms() + 60_000, now_ms()),
        s.rotate_refresh(&e, "w1", "w2b", now_ms() + 60_000, now_ms())
    );
    let rotated = [r1.unwrap(), r2.unwrap()].iter().filter(|o| matches!(o, RotateOutcome::Rotated { .. })).count();
    assert_eq!(rotated, 1, "one token, one rotation");
    // Explicit revocation is idempotent.
    let d = unique("sid");
    s.create_session(&session(&d, u, "laptop", "y1")).await.unwrap();
    s.revoke_session(&d, now_ms()).await.unwrap();
    s.revoke_session(&d, now_ms()).await.unwrap();
    assert_eq!(s.rotate_refresh(&d, "y1", "y2", now_ms() + 1000, now_ms()).await.unwrap(), RotateOutcome::Invalid);
}

fn new_message(conv: ConversationId, sender: UserId, cmid: &str) -> NewMessage {
    NewMessage {
        msg_id: unique("m"),
        conversation_id: conv,
        sender_id: sender,
        client_msg_id: cmid.into(),
        kind: "text".into(),
        body: json!(format!("hello {cmid}")),
        created_at: now_ms(),
    }
}

/// `ChatStore`: conversations, conv_seq allocation, dedup, history paging, unread.
pub async fn chat_store(users: Arc<dyn UserStore>, s: Arc<dyn ChatStore>) {
    let a = users.create_user(&unique("a"), "A", "h", now_ms()).await.unwrap().user_id;
    let b = users.create_user(&unique("b"), "B", "h", now_ms()).await.unwrap().user_id;
    let c = users.create_user(&unique("c"), "C", "h", now_ms()).await.unwrap().user_id;
    let conv = ConversationId::direct(a, b);
    assert!(s.members(conv).await.unwrap().is_empty());
    // Both users must exist.
    let ghost = ConversationId::direct(a, UserId(i64::MAX - 7));
    let err = s.ensure_direct(ghost, now_ms()).await.unwrap_err();
    assert!(matches!(err, feige_core::Error::NotFound { code: "user_not_found", .. }), "{err:?}");
    assert!(s.members(ghost).await.unwrap().is_empty());
    s.ensure_direct(conv, now_ms()).await.unwrap();
    s.ensure_direct(conv, now_ms()).await.unwrap();
    let mut members = s.members(conv).await.unwrap();
    members.sort();
    assert_eq!(members, vec![a.min(b), a.max(b)]);
    assert!(s.membership(conv, c).await.unwrap().is_none());

    let mut ids = Vec::new();
    for i in 1..=25u64 {
        let sender = if i % 2 == 0 { a } else { b };
        let Appended::New(m) = s.append_message(&new_message(conv, sender, &format!("c{i}"))).await.unwrap() else {
            panic!("expected a new message")
        };
        assert_eq!(m.conv_seq, i);
        ids.push(m.msg_id);
    }
    // A duplicate client id returns the original and takes no conv_seq.
    let Appended::Existing(orig) = s.append_message(&new_message(conv, a, "c2")).await.unwrap() else {
        panic!("expected the original")
    };
    assert_eq!((orig.conv_seq, orig.msg_id.as_str()), (2, ids[1].as_str()));
    assert_eq!(s.find_by_client_id(a, "c2").await.unwrap().unwrap().msg_id, ids[1]);
    assert!(s.find_by_client_id(b, "c2").await.unwrap().is_none());
    // A stranger cannot append.
    let err = s.append_message(&new_message(conv, c, "x")).await.unwrap_err();
    assert_eq!(err.status(), 403);

    // History pages join without gap or overlap.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s.history(conv, 0, before, 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|w| w[0].conv_seq == w[1].conv_seq + 1), "newest first, contiguous");
        before = page.last().map(|m| m.conv_seq);
        seen.extend(page.into_iter().map(|m| m.conv_seq));
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<_>>());

    // Unread: the last sender (b, message 25) has read everything; a has read up to 24.
    let list_a = s.conversations(a).await.unwrap();
    assert_eq!(list_a.len(), 1);
    assert_eq!((list_a[0].last_seq, list_a[0].read_seq, list_a[0].unread), (25, 24, 1));
    assert_eq!(list_a[0].peer_id, Some(b));
    assert_eq!(list_a[0].last_message.as_ref().unwrap().conv_seq, 25);
    assert!(s.conversations(c).await.unwrap().is_empty());
    let m = s.membership(conv, a).await.unwrap().unwrap();
    assert_eq!((m.read_seq, m.last_seq), (24, 25));

    // Read positions only move forward and never past the end.
    let r = s.mark_read(conv, a, 100).await.unwrap();
    assert_eq!((r.read_seq, r.last_seq, r.advanced), (25, 25, true));
    let r = s.mark_read(conv, a, 3).await.unwrap();
    assert_eq!((r.read_seq, r.advanced), (25, false));
    assert_eq!(s.mark_read(conv, c, 3).await.unwrap_err().status(), 403);
    // A one-to-one conversation's first message creates it (no ensure_direct first), once;
    // with a user that does not exist, nothing is created.
    let err = s.append_message(&new_message(ghost, a, "to-ghost")).await.unwrap_err();
    assert!(matches!(err, feige_core::Error::NotFound { code: "user_not_found", .. }), "{err:?}");
    assert!(s.members(ghost).await.unwrap().is_empty());
    assert!(s.find_by_client_id(a, "to-ghost").await.unwrap().is_none());
    let fresh = ConversationId::direct(a, c);
    let err = s.append_message(&new_message(ConversationId::direct(b, c), a, "not-mine")).await.unwrap_err();
    assert_eq!(err.status(), 403, "a third user's send must not create the pair's conversation");
    assert!(s.members(ConversationId::direct(b, c)).await.unwrap().is_empty());
    let (first, fan_out) = s.append_for_fan_out(&new_message(fresh, c, "first")).await.unwrap();
    assert!(matches!(&first, Appended::New(m) if m.conv_seq == 1), "{first:?}");
    assert_eq!(fan_out, vec![a.min(c), a.max(c)]);
    let Appended::New(second) = s.append_message(&new_message(fresh, a, "second")).await.unwrap() else {
        panic!("expected a new message")
    };
    assert_eq!(second.conv_seq, 2);
    assert_eq!(s.membership(fresh, c).await.unwrap().map(|m| (m.read_seq, m.last_seq)), Some((1, 2)));
    assert_eq!(s.conversations(c).await.unwrap().iter().map(|x| x.conversation_id).collect::<Vec<_>>(), vec![fresh]);
}

/// A timeline entry holding a small text message keyed `key`, for store tests.
pub fn entry(user: UserId, seq: u64, key: &str) -> TimelineEntry {
    let conv = ConversationId::direct(user, UserId(user.0 + 1));
    TimelineEntry {
        user_id: user,
        seq,
        event_key: key.into(),
        event: Some(Event {
            seq,
            kind: "message".into(),
            conversation_id: conv,
            conv_seq: Some(seq),
            msg_id: Some(key.into()),
            sender_id: Some(user),
            msg_type: Some("text".into()),
            body: Some(json!("x")),
            created_at: now_ms(),
            extra: Default::default(),
        }),
        written_at: now_ms(),
    }
}

/// A user id no other test (in this process or another one sharing the backend) will draw:
/// 40 random bits, so two draws collide with odds of about 1 in 10^12. (It used to be the
/// clock plus 10 random bits, and two draws in the same millisecond collided 1 time in 1,000.)
pub fn fresh_user() -> UserId {
    UserId(1 + (uuid::Uuid::new_v4().as_u128() % (1 << 40)) as i64)
}

/// `TimelineStore`: unique (user, seq) and (user, event_key), ordered range reads.
pub async fn timeline_store(t: Arc<dyn TimelineStore>) {
    let u = fresh_user();
    let other = UserId(u.0 + 1);
    assert_eq!(t.max_seq(u).await.unwrap(), 0);
    assert_eq!(t.insert(&entry(u, 1, "k1")).await.unwrap(), Inserted::Ok);
    assert_eq!(t.insert(&entry(u, 1, "k2")).await.unwrap(), Inserted::SeqTaken);
    assert_eq!(t.insert(&entry(u, 2, "k1")).await.unwrap(), Inserted::AlreadyAt(1));
    assert_eq!(t.insert(&entry(other, 1, "k1")).await.unwrap(), Inserted::Ok, "keys are per user");
    let batch: Vec<_> = (2..=10).map(|s| entry(u, s, &format!("k{s}"))).chain([entry(u, 11, "k3")]).collect();
    let out = t.insert_many(&batch).await.unwrap();
    assert!(out[..9].iter().all(|o| *o == Inserted::Ok));
    assert_eq!(out[9], Inserted::AlreadyAt(3));
    let filler = TimelineEntry { event: None, ..entry(u, 12, "gap:12") };
    assert_eq!(t.insert(&filler).await.unwrap(), Inserted::Ok);
    assert_eq!(t.max_seq(u).await.unwrap(), 12);
    let read = t.read(u, 4, 5).await.unwrap();
    assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
    assert_eq!(read[0].event.as_ref().unwrap().msg_id.as_deref(), Some("k5"));
    let tail = t.read(u, 10, 100).await.unwrap();
    // Seq 11 was refused (its key sits at 3), so only the filler at 12 follows 10.
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![12]);
    assert!(tail[0].event.is_none());
    assert_eq!(t.find(u, "k7").await.unwrap(), Some(7));
    assert_eq!(t.find(u, "nope").await.unwrap(), None);
}

/// `SeqAllocator`: cold until initialised, then strictly increasing; init never lowers.
pub async fn seq_allocator(s: Arc<dyn SeqAllocator>) {
    let u = fresh_user();
    assert_eq!(s.allocate(u, 1).await.unwrap(), None);
    s.init(u, 10).await.unwrap();
    assert_eq!(s.allocate(u, 1).await.unwrap(), Some(11));
    assert_eq!(s.allocate(u, 3).await.unwrap(), Some(14));
    s.init(u, 5).await.unwrap();
    assert_eq!(s.allocate(u, 1).await.unwrap(), Some(15));
    s.init(u, 100).await.unwrap();
    assert_eq!(s.allocate(u, 1).await.unwrap(), Some(101));
    // Concurrent allocations never hand out the same seq.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..50 {
                got.push(s.allocate(u, 1).await.unwrap().unwrap());
            }
            got
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for seq in t.await.unwrap() {
            assert!(all.insert(seq), "seq {seq} handed out twice");
        }
    }
    assert_eq!(all.len(), 400);
    // A brand-new user's counter starts from a floor of 0.
    let z = fresh_user();
    s.init(z, 0).await.unwrap();
    assert_eq!(s.allocate(z, 1).await.unwrap(), Some(1));
    // A batch over several users: cold ones answer None, warm ones advance by one each.
    let (v, w) = (fresh_user(), fresh_user());
    s.init(v, 3).await.unwrap();
    assert_eq!(s.allocate_each(&[v, w, v]).await.unwrap(), vec![Some(4), None, Some(5)]);
}

/// `Revocations`: cold until marked warm; revoked until the TTL passes. `r` must be a fresh
/// instance (or namespace) that nobody has warmed yet.
pub async fn revocations(r: Arc<dyn Revocations>) {
    let sid = unique("sid");
    assert_eq!(r.check(&sid).await.unwrap(), Revocation::Cold, "a fresh cache cannot know");
    r.revoke(&sid, 60).await.unwrap();
    assert_eq!(r.check(&sid).await.unwrap(), Revocation::Revoked, "revoked is known even when cold");
    r.mark_warm().await.unwrap();
    assert_eq!(r.check(&sid).await.unwrap(), Revocation::Revoked);
    assert_eq!(r.check(&unique("other")).await.unwrap(), Revocation::Valid);
    let short = unique("sid");
    r.revoke(&short, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(r.check(&short).await.unwrap(), Revocation::Valid);
}

/// `RateLimiter`: `limit` hits per window, then 429 with a retry hint.
pub async fn rate_limiter(l: Arc<dyn RateLimiter>) {
    let key = unique("rl");
    // Align to the start of a fresh 10 s window so the test cannot straddle two windows.
    let ms_into = (now_ms() % 10_000) as u64;
    if ms_into > 8_000 {
        tokio::time::sleep(Duration::from_millis(10_050 - ms_into)).await;
    }
    for _ in 0..3 {
        l.hit(&key, 3, 10).await.unwrap();
    }
    match l.hit(&key, 3, 10).await {
        Err(Error::RateLimited { retry_after_secs }) => {
            assert!((1..=10).contains(&retry_after_secs))
        }
        other => panic!("expected rate limiting, got {other:?}"),
    }
    l.hit(&unique("rl"), 3, 10).await.unwrap();
}

/// The no-hole guarantee over real ports: concurrent writers to one user's timeline while a
/// reader walks it; every written event is seen exactly once, in seq order. Then a writer
/// that dies after taking a seq: the reader steps over its hole after the grace period and
/// the timeline goes on.
pub async fn no_hole(ports: Ports) {
    let user = fresh_user();
    let writers = 6;
    let per_writer = 30;
    let mut handles = Vec::new();
    for w in 0..writers {
        let ports = ports.clone();
        handles.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for i in 0..per_writer {
                let e = entry(user, 0, &format!("w{w}-{i}")).event.unwrap();
                let written = timeline::append(&ports, vec![(user, e)], false).await.unwrap();
                keys.push(written[0].1.msg_id.clone().unwrap());
            }
            keys
        }));
    }
    let reader = {
        let ports = ports.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while seen.len() < writers * per_writer && std::time::Instant::now() < deadline {
                let page = timeline::read(&ports, user, cursor, 7, Duration::from_secs(5)).await.unwrap();
                for e in &page.events {
                    assert!(e.seq > cursor, "seq went backwards");
                    seen.push(e.msg_id.clone().unwrap());
                }
                assert!(page.next >= cursor);
                cursor = page.next;
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut acked = HashSet::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    let seen = reader.await.unwrap();
    let unique_seen: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique_seen.len(), seen.len(), "an event was seen twice");
    assert_eq!(unique_seen, acked, "an acked event was never seen");

    // A writer takes a seq and dies; a later writer lands after the hole.
    let before = timeline::read(&ports, user, 0, 1000, Duration::from_millis(100)).await.unwrap().next;
    let dead = timeline::next_seq(ports.seqs.as_ref(), ports.timeline.as_ref(), user).await.unwrap();
    assert_eq!(dead, before + 1);
    let live = entry(user, 0, &unique("late")).event.unwrap();
    timeline::append(&ports, vec![(user, live)], false).await.unwrap();
    let page = timeline::read(&ports, user, before, 10, Duration::from_millis(300)).await.unwrap();
    assert_eq!(page.events.len(), 1, "the event after the hole is delivered once the hole is filled");
    assert_eq!(page.next, dead + 1);
    // The dead writer wakes up and tries its old slot: taken; append goes on after it.
    let zombie = entry(user, dead, &unique("zombie"));
    assert_eq!(ports.timeline.insert(&zombie).await.unwrap(), Inserted::SeqTaken);
}

/// Sequences never go backwards when the counter is lost (a flushed Redis, a restarted
/// process): `fresh_seqs` is a cold allocator over the same timeline.
pub async fn seqs_survive_a_cold_cache(ports: Ports, fresh_seqs: Arc<dyn SeqAllocator>) {
    let user = fresh_user();
    let mut last = 0;
    for i in 0..5 {
        let e = entry(user, 0, &format!("before-{i}")).event.unwrap();
        last = timeline::append(&ports, vec![(user, e)], false).await.unwrap()[0].1.seq;
    }
    let cold = Ports { seqs: fresh_seqs, ..ports };
    let e = entry(user, 0, "after").event.unwrap();
    let next = timeline::append(&cold, vec![(user, e)], false).await.unwrap()[0].1.seq;
    assert_eq!(next, last + 1);
}

/// `GroupStore` (with the `ChatStore` its membership lives in): creation, the member limit
/// under concurrent additions, roles, leaving and rejoining from the current end, disbanding.
pub async fn group_store(users: Arc<dyn UserStore>, chat: Arc<dyn ChatStore>, g: Arc<dyn GroupStore>) {
    use feige_core::model::Role;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(users.create_user(&unique(&format!("g{i}_")), "G", "h", now_ms()).await.unwrap().user_id);
    }
    let owner = ids[0];
    let limit = 6;
    let too_many = g.create_group(owner, "big", &ids[1..7], limit, now_ms()).await.unwrap_err();
    assert_eq!(too_many.code(), "group_full");
    let group = g.create_group(owner, "team", &[ids[1], ids[2], ids[1]], limit, now_ms()).await.unwrap();
    assert_eq!(group.member_count, 3);
    assert_eq!(g.group(group.group_id).await.unwrap().unwrap(), group);
    assert_eq!(g.role_of(group.group_id, owner).await.unwrap(), Some(Role::Owner));
    assert_eq!(g.role_of(group.group_id, ids[1]).await.unwrap(), Some(Role::Member));
    assert_eq!(g.role_of(group.group_id, ids[5]).await.unwrap(), None);
    assert_eq!(g.groups_of(ids[2]).await.unwrap(), vec![group.clone()]);
    assert!(g.groups_of(ids[5]).await.unwrap().is_empty());
    assert_eq!(chat.members(group.conversation_id).await.unwrap().len(), 3);

    // Six concurrent additions of one user each to a group of 3 with room for 3: exactly 3 fit.
    let mut tasks = Vec::new();
    for u in ids[3..9].iter().copied() {
        let g = g.clone();
        tasks.push(tokio::spawn(async move { g.add_members(group.group_id, &[u], limit, now_ms()).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(added) => {
                assert_eq!(added.len(), 1);
                ok += 1;
            }
            Err(e) => assert_eq!(e.code(), "group_full"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(g.group_members(group.group_id).await.unwrap().len(), 6);
    assert_eq!(g.group(group.group_id).await.unwrap().unwrap().member_count, 6);
    // All or nothing: a batch that does not fit adds nobody.
    let members = g.group_members(group.group_id).await.unwrap();
    let outsider = ids.iter().copied().find(|u| !members.iter().any(|m| m.user_id == *u)).unwrap();
    assert_eq!(g.add_members(group.group_id, &[outsider], limit, now_ms()).await.unwrap_err().code(), "group_full");
    // Current members are skipped, not counted.
    assert!(g.add_members(group.group_id, &[ids[1]], limit, now_ms()).await.unwrap().is_empty());

    // A member leaves; history moves on; they rejoin from the current end.
    let conv = group.conversation_id;
    assert!(g.remove_member(group.group_id, ids[1], now_ms()).await.unwrap());
    assert!(!g.remove_member(group.group_id, ids[1], now_ms()).await.unwrap());
    assert!(chat.membership(conv, ids[1]).await.unwrap().is_none());
    for i in 0..3 {
        chat.append_message(&new_message(conv, owner, &unique(&format!("gm{i}")))).await.unwrap();
    }
    assert_eq!(g.add_members(group.group_id, &[ids[1]], limit, now_ms()).await.unwrap(), vec![ids[1]]);
    let back = chat.membership(conv, ids[1]).await.unwrap().unwrap();
    assert_eq!((back.joined_seq, back.read_seq, back.last_seq), (3, 3, 3));
    assert!(chat.history(conv, back.joined_seq, None, 10).await.unwrap().is_empty());

    // Roles and ownership.
    g.set_role(group.group_id, ids[2], Role::Admin).await.unwrap();
    assert_eq!(g.role_of(group.group_id, ids[2]).await.unwrap(), Some(Role::Admin));
    g.transfer_owner(group.group_id, ids[2], now_ms()).await.unwrap();
    assert_eq!(g.role_of(group.group_id, ids[2]).await.unwrap(), Some(Role::Owner));
    assert_eq!(g.role_of(group.group_id, owner).await.unwrap(), Some(Role::Admin));
    assert_eq!(g.group(group.group_id).await.unwrap().unwrap().owner_id, ids[2]);
    let renamed = g.update_group(group.group_id, Some("renamed"), None, now_ms()).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.announcement.as_str()), ("renamed", ""));
    let renamed = g.update_group(group.group_id, None, Some("hi all"), now_ms()).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.announcement.as_str()), ("renamed", "hi all"));

    // Read positions are per member.
    let positions = chat.read_positions(conv).await.unwrap();
    assert_eq!(positions.len(), 6);

    g.disband(group.group_id, now_ms()).await.unwrap();
    assert!(g.group(group.group_id).await.unwrap().is_none());
    assert!(chat.members(conv).await.unwrap().is_empty());
    assert!(g.groups_of(ids[2]).await.unwrap().is_empty());
}

/// `ChatStore` recall: the body leaves history; once only.
pub async fn recall(users: Arc<dyn UserStore>, chat: Arc<dyn ChatStore>) {
    let a = users.create_user(&unique("ra"), "A", "h", now_ms()).await.unwrap().user_id;
    let b = users.create_user(&unique("rb"), "B", "h", now_ms()).await.unwrap().user_id;
    let conv = ConversationId::direct(a, b);
    chat.ensure_direct(conv, now_ms()).await.unwrap();
    let Appended::New(m) = chat.append_message(&new_message(conv, a, "r1")).await.unwrap() else { panic!("new") };
    assert!(chat.recall(&m.msg_id, now_ms()).await.unwrap());
    assert!(!chat.recall(&m.msg_id, now_ms()).await.unwrap());
    let got = chat.message(&m.msg_id).await.unwrap().unwrap();
    assert!(got.recalled);
    assert_eq!(got.body, serde_json::Value::Null);
    assert!(chat.message("no-such-id").await.unwrap().is_none());
    assert_eq!(users.existing(&[a, b, UserId(a.0 + 10_000_000)]).await.unwrap().len(), 2);
}

/// `Presence`: users online on nodes, batch look-ups, going offline, expiry.
pub async fn presence(p: Arc<dyn Presence>) {
    let (a, b, c) = (fresh_user(), fresh_user(), fresh_user());
    assert_eq!(p.nodes_of(&[a, b]).await.unwrap(), vec![Vec::<String>::new(), vec![]]);
    p.set_online("node-1", &[a, b], 30).await.unwrap();
    p.set_online("node-2", &[a], 30).await.unwrap();
    assert_eq!(
        p.nodes_of(&[a, b, c]).await.unwrap(),
        vec![vec!["node-1".to_owned(), "node-2".to_owned()], vec!["node-1".to_owned()], vec![]]
    );
    p.set_offline("node-1", a).await.unwrap();
    assert_eq!(p.nodes_of(&[a]).await.unwrap(), vec![vec!["node-2".to_owned()]]);
    // A node that stops refreshing drops out by itself.
    p.set_online("node-3", &[c], 1).await.unwrap();
    assert_eq!(p.nodes_of(&[c]).await.unwrap(), vec![vec!["node-3".to_owned()]]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(p.nodes_of(&[c]).await.unwrap(), vec![Vec::<String>::new()]);
    assert!(p.nodes_of(&[]).await.unwrap().is_empty());

    // The node directory: where each node takes forwarded pushes, expiring the same way.
    let (n1, n2, n3) = (unique("node"), unique("node"), unique("node"));
    p.announce_node(&n1, "10.0.0.1:8081", 30).await.unwrap();
    p.announce_node(&n2, "10.0.0.2:8081", 1).await.unwrap();
    assert_eq!(
        p.node_addrs(&[n1.clone(), n2.clone(), n3.clone()]).await.unwrap(),
        vec![Some("10.0.0.1:8081".to_owned()), Some("10.0.0.2:8081".to_owned()), None]
    );
    // A restarted node announces its new address over the old one.
    p.announce_node(&n1, "10.0.0.9:8081", 30).await.unwrap();
    assert_eq!(p.node_addrs(std::slice::from_ref(&n1)).await.unwrap(), vec![Some("10.0.0.9:8081".to_owned())]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(p.node_addrs(&[n2]).await.unwrap(), vec![None]);
    assert!(p.node_addrs(&[]).await.unwrap().is_empty());
}
