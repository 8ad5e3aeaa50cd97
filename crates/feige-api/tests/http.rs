//! The HTTP contract of DESIGN.md, through the whole router in-process (`oneshot`), on the
//! embedded backends.

#![allow(clippy::unwrap_used)]

mod common;

use common::{app, app_with, code};

use axum::body::Body;
use axum::http::{StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::test]
async fn register_login_me_and_profiles() {
    let app = app().await;
    let r = app
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(json!({"username": "alice", "password": "password-1", "nickname": "Alice"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["username"], "alice");
    assert_eq!(r.body["nickname"], "Alice");
    let id = r.body["user_id"].as_i64().unwrap();
    let dup =
        app.call("POST", "/v1/auth/register", None, Some(json!({"username": "ALICE", "password": "password-2"}))).await;
    assert_eq!((dup.status, code(&dup)), (StatusCode::CONFLICT, "username_taken"));
    let bad =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": "alice", "password": "nope-nope"}))).await;
    assert_eq!((bad.status, code(&bad)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let ghost =
        app.call("POST", "/v1/auth/login", None, Some(json!({"username": "ghost", "password": "nope-nope"}))).await;
    assert_eq!((ghost.status, code(&ghost)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let (uid, token, refresh) = app.login("alice", "phone").await;
    assert_eq!(uid, id);
    assert!(!refresh.is_empty());
    let me = app.call("GET", "/v1/users/me", Some(&token), None).await;
    assert_eq!((me.status, me.body["user_id"].as_i64()), (StatusCode::OK, Some(id)));
    let other = app.call("GET", &format!("/v1/users/{id}"), Some(&token), None).await;
    assert_eq!(other.body["nickname"], "Alice");
    assert!(other.body.get("password_hash").is_none());
    let missing = app.call("GET", "/v1/users/999999", Some(&token), None).await;
    assert_eq!((missing.status, code(&missing)), (StatusCode::NOT_FOUND, "user_not_found"));
    let junk = app.call("GET", "/v1/users/abc", Some(&token), None).await;
    assert_eq!(junk.status, StatusCode::BAD_REQUEST);
    for bad in [
        json!({"username": "x", "password": "password-1"}),
        json!({"username": "okname", "password": "short"}),
        json!({"username": "has space", "password": "password-1"}),
    ] {
        let r = app.call("POST", "/v1/auth/register", None, Some(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    }
}

#[tokio::test]
async fn tokens_are_required_checked_and_revoked_at_once() {
    let app = app().await;
    let (_, token, _) = app.user("bob").await;
    for (tok, want) in
        [(None, "missing_token"), (Some("garbage"), "invalid_token"), (Some("v1.e30.AAAA"), "invalid_token")]
    {
        let r = app.call("GET", "/v1/users/me", tok, None).await;
        assert_eq!((r.status, code(&r)), (StatusCode::UNAUTHORIZED, want));
    }
    // A token signed with another key (another deployment) is refused.
    let foreign = feige_core::auth::TokenKeys::new(b"some-other-secret-key").sign(&feige_core::auth::Claims {
        uid: feige_core::UserId(1),
        did: "d".into(),
        sid: "s".into(),
        plt: String::new(),
        exp: i64::MAX / 2,
    });
    assert_eq!(app.call("GET", "/v1/users/me", Some(&foreign), None).await.status, StatusCode::UNAUTHORIZED);
    let out = app.call("POST", "/v1/auth/logout", Some(&token), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = app.call("GET", "/v1/users/me", Some(&token), None).await;
    assert_eq!((after.status, code(&after)), (StatusCode::UNAUTHORIZED, "token_revoked"));
}

#[tokio::test]
async fn access_tokens_expire() {
    let app = app_with(&[("FEIGE_ACCESS_TTL_SECS", "1")]).await;
    let (_, token, _) = app.user("shortlived").await;
    assert_eq!(app.call("GET", "/v1/users/me", Some(&token), None).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app.call("GET", "/v1/users/me", Some(&token), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::UNAUTHORIZED, "token_expired"));
}

#[tokio::test]
async fn refresh_rotates_and_a_replay_kills_the_session() {
    let app = app().await;
    let (_, _, refresh1) = app.user("carol").await;
    let r = app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh1}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let access2 = r.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    assert!(r.body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(app.call("GET", "/v1/users/me", Some(&access2), None).await.status, StatusCode::OK);
    // The old refresh token died; presenting it again is a replay: the session is revoked.
    let replay = app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh1}))).await;
    assert_eq!((replay.status, code(&replay)), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    assert_eq!(app.call("GET", "/v1/users/me", Some(&access2), None).await.status, StatusCode::UNAUTHORIZED);
    let r = app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh2}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for junk in ["", "nodot", ".x", "x."] {
        let r = app.call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": junk}))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_new_login_on_the_same_device_replaces_the_old_session() {
    let app = app().await;
    let (_, first, _) = app.user_on("dave", "phone").await;
    let (_, other_device, _) = app.login("dave", "laptop").await;
    let (_, second, _) = app.login("dave", "phone").await;
    assert_eq!(app.call("GET", "/v1/users/me", Some(&first), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.call("GET", "/v1/users/me", Some(&second), None).await.status, StatusCode::OK);
    assert_eq!(app.call("GET", "/v1/users/me", Some(&other_device), None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn send_is_durable_idempotent_and_visible_to_both_sides() {
    let app = app().await;
    let (a, ta, _) = app.user("erin").await;
    let (b, tb, _) = app.user("frank").await;
    let first = app.send(&ta, b, "cm-1", "hello").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    for k in ["msg_id", "conversation_id", "conv_seq", "seq", "created_at"] {
        assert!(!first.body[k].is_null(), "missing {k}");
    }
    let retry = app.send(&ta, b, "cm-1", "hello").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body, first.body, "a retry returns identical values");
    let (ea, _) = app.sync_all(&ta, 0).await;
    let (eb, _) = app.sync_all(&tb, 0).await;
    assert_eq!(ea.len(), 1, "the retry created nothing: {ea:?}");
    assert_eq!(eb.len(), 1);
    for e in [&ea[0], &eb[0]] {
        assert_eq!(e["kind"], "message");
        assert_eq!(e["msg_id"], first.body["msg_id"]);
        assert_eq!(e["sender_id"].as_i64(), Some(a));
        assert_eq!(e["body"], "hello");
        assert_eq!(e["type"], "text");
        assert_eq!(e["conv_seq"], 1);
    }
    assert_eq!(ea[0]["seq"], first.body["seq"]);
    let conv = first.body["conversation_id"].as_str().unwrap();
    let h = app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&tb), None).await;
    assert_eq!(h.body["messages"].as_array().unwrap().len(), 1);
    // Identity comes from the token only: a body claiming another sender is ignored.
    let spoof = app
        .call("POST", "/v1/messages", Some(&tb), Some(json!({"client_msg_id": "s-1", "sender_id": a, "from": a, "to": {"kind": "user", "id": a}, "type": "text", "body": "x"})))
        .await;
    assert_eq!(spoof.status, StatusCode::CREATED);
    let (ea, _) = app.sync_all(&ta, 0).await;
    assert_eq!(ea.last().unwrap()["sender_id"].as_i64(), Some(b));
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_code_and_changes_nothing() {
    let app = app_with(&[("FEIGE_MAX_BODY_BYTES", "2048")]).await;
    let (_, ta, _) = app.user("gina").await;
    let (b, tb, _) = app.user("hank").await;
    let cases: Vec<(Body, StatusCode)> = vec![
        (Body::from("{not json"), StatusCode::BAD_REQUEST),
        (
            Body::from(r#"{"client_msg_id": 5, "to": {"kind": "user", "id": 2}, "type": "text", "body": "x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "user", "id": "2"}, "type": "text", "body": "x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "room", "id": 2}, "type": "text", "body": "x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "user", "id": 2}, "type": "bogus", "body": "x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "user", "id": 2}, "type": "image", "body": "x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "user", "id": -4}, "type": "text", "body": "x"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "user", "id": 999999}, "type": "text", "body": "x"}"#),
            StatusCode::NOT_FOUND,
        ),
        (
            Body::from(r#"{"client_msg_id": "a", "to": {"kind": "group", "id": 77}, "type": "text", "body": "x"}"#),
            StatusCode::NOT_FOUND,
        ),
        (
            Body::from(format!(
                r#"{{"client_msg_id": "a", "to": {{"kind": "user", "id": {b}}}, "type": "text", "body": "{}"}}"#,
                "x".repeat(5000)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (Body::from(""), StatusCode::BAD_REQUEST),
    ];
    for (body, want) in cases {
        let r = app.raw("POST", "/v1/messages", Some(&ta), body).await;
        assert_eq!(r.status, want, "{:?}", r.body);
        assert!(r.body["error"]["code"].is_string(), "{:?}", r.body);
        assert!(r.body["error"]["message"].is_string());
    }
    let me_self = app.raw("POST", "/v1/messages", Some(&ta), Body::from(json!({"client_msg_id": "s", "to": {"kind": "user", "id": app.call("GET", "/v1/users/me", Some(&ta), None).await.body["user_id"]}, "type": "text", "body": "x"}).to_string())).await;
    assert_eq!(code(&me_self), "invalid_recipient");
    assert_eq!(
        app.raw("POST", "/v1/messages", Some(&ta), Body::from("x".repeat(4096))).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(code(&app.raw("POST", "/v1/messages", Some(&ta), Body::from("x".repeat(4096))).await), "body_too_large");
    let r = app.call("GET", "/v1/sync?since=abc", Some(&ta), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::BAD_REQUEST, "invalid_query"));
    let r = app.call("GET", "/v1/nowhere", Some(&ta), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let r = app.call("DELETE", "/v1/messages", Some(&ta), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    // Nothing was created by any of it.
    assert!(app.sync_all(&ta, 0).await.0.is_empty());
    assert!(app.sync_all(&tb, 0).await.0.is_empty());
    assert!(
        app.call("GET", "/v1/conversations", Some(&ta), None).await.body["conversations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn strangers_cannot_read_or_mark_other_conversations() {
    let app = app().await;
    let (_, ta, _) = app.user("ivan").await;
    let (b, _, _) = app.user("judy").await;
    let (_, tc, _) = app.user("mallory").await;
    let sent = app.send(&ta, b, "x1", "secret").await;
    let conv = sent.body["conversation_id"].as_str().unwrap();
    let r = app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&tc), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "not_member"));
    let r = app.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&tc), Some(json!({"seq": 1}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for unknown in ["p900_901", "zzz", "g12345"] {
        let r = app.call("GET", &format!("/v1/conversations/{unknown}/messages"), Some(&tc), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{unknown}");
    }
    assert!(
        app.call("GET", "/v1/conversations", Some(&tc), None).await.body["conversations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(app.sync_all(&tc, 0).await.0.is_empty());
}

#[tokio::test]
async fn sequences_increase_and_history_pages_join_without_gap_or_overlap() {
    let app = app().await;
    let (a, ta, _) = app.user("kate").await;
    let (b, tb, _) = app.user("liam").await;
    let mut last_seq_a = 0;
    let mut conv = String::new();
    for i in 1..=23u64 {
        let (tok, to) = if i % 3 == 0 { (&tb, a) } else { (&ta, b) };
        let r = app.send(tok, to, &format!("m{i}"), &format!("n{i}")).await;
        assert_eq!(r.body["conv_seq"].as_u64(), Some(i));
        conv = r.body["conversation_id"].as_str().unwrap().to_owned();
        if tok == &ta {
            let s = r.body["seq"].as_u64().unwrap();
            assert!(s > last_seq_a);
            last_seq_a = s;
        }
    }
    let (events, next) = app.sync_all(&ta, 0).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=23).collect::<Vec<_>>());
    assert_eq!(next, 23);
    let mut before: Option<u64> = None;
    let mut got: Vec<u64> = Vec::new();
    loop {
        let q = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let r = app.call("GET", &format!("/v1/conversations/{conv}/messages?limit=5{q}"), Some(&ta), None).await;
        let page: Vec<u64> =
            r.body["messages"].as_array().unwrap().iter().map(|m| m["conv_seq"].as_u64().unwrap()).collect();
        got.extend(&page);
        if !r.body["has_more"].as_bool().unwrap() {
            break;
        }
        before = page.last().copied();
    }
    assert_eq!(got, (1..=23).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn unread_counts_and_read_events_reach_the_peer_and_other_devices() {
    let app = app().await;
    let (a, ta, _) = app.user_on("mia", "phone").await;
    let (_, ta2, _) = app.login("mia", "laptop").await;
    let (b, tb, _) = app.user("noah").await;
    for i in 0..4 {
        app.send(&ta, b, &format!("u{i}"), "hi").await;
    }
    let list = app.call("GET", "/v1/conversations", Some(&tb), None).await;
    let c = &list.body["conversations"][0];
    assert_eq!(
        (
            c["kind"].as_str(),
            c["peer_id"].as_i64(),
            c["last_seq"].as_u64(),
            c["read_seq"].as_u64(),
            c["unread"].as_u64()
        ),
        (Some("direct"), Some(a), Some(4), Some(0), Some(4))
    );
    assert_eq!(c["last_message"]["conv_seq"], 4);
    let mine = app.call("GET", "/v1/conversations", Some(&ta), None).await;
    assert_eq!(mine.body["conversations"][0]["unread"], 0, "your own messages are never unread");
    let conv = c["conversation_id"].as_str().unwrap();
    let r = app.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&tb), Some(json!({"seq": 3}))).await;
    assert_eq!((r.status, r.body["unread"].as_u64()), (StatusCode::OK, Some(1)));
    let r = app.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&tb), Some(json!({"seq": 1}))).await;
    assert_eq!(r.body["unread"].as_u64(), Some(1), "read_seq never moves back");
    let (events, _) = app.sync_all(&ta2, 0).await;
    let reads: Vec<&Value> = events.iter().filter(|e| e["kind"] == "read").collect();
    assert_eq!(reads.len(), 1, "one read event, not one per call: {events:?}");
    assert_eq!((reads[0]["reader_id"].as_i64(), reads[0]["read_seq"].as_u64()), (Some(b), Some(3)));
    let (bev, _) = app.sync_all(&tb, 0).await;
    assert_eq!(bev.iter().filter(|e| e["kind"] == "read").count(), 1, "the reader's own devices see it too");
    let r = app.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&tb), Some(json!({"seq": "x"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Several concurrent senders to one user while a reader walks its cursor with sync: every
/// acked message is seen exactly once, in seq order. Repeated on fresh recipients.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_no_hole_is_skipped() {
    let app = std::sync::Arc::new(app().await);
    let senders = 5;
    let per_sender = 12;
    let mut tokens = Vec::new();
    for s in 0..senders {
        tokens.push(app.user(&format!("sender{s}")).await.1);
    }
    for round in 0..8 {
        let (rid, rt, _) = app.user(&format!("reader{round}")).await;
        let mut tasks = Vec::new();
        for (s, tok) in tokens.iter().enumerate() {
            let (app, tok) = (app.clone(), tok.clone());
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..per_sender {
                    let r = app.send(&tok, rid, &format!("r{round}-s{s}-{i}"), "x").await;
                    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
                    acked.push(r.body["msg_id"].as_str().unwrap().to_owned());
                }
                acked
            }));
        }
        let reader = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut cursor = 0;
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while seen.len() < senders * per_sender && Instant::now() < deadline {
                    let r = app.call("GET", &format!("/v1/sync?since={cursor}&limit=7"), Some(&rt), None).await;
                    for e in r.body["events"].as_array().unwrap() {
                        let seq = e["seq"].as_u64().unwrap();
                        assert_eq!(seq, cursor + 1, "a hole was skipped or an event repeated");
                        cursor = seq;
                        seen.push(e["msg_id"].as_str().unwrap().to_owned());
                    }
                    cursor = cursor.max(r.body["next"].as_u64().unwrap());
                }
                seen
            })
        };
        let mut acked = HashSet::new();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        let seen = reader.await.unwrap();
        assert_eq!(seen.len(), acked.len(), "seen {} of {} acked", seen.len(), acked.len());
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), acked);
    }
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_an_event_arrives() {
    let app = std::sync::Arc::new(app().await);
    let (a, ta, _) = app.user("olga").await;
    let (_, tb, _) = app.user("pete").await;
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = app.call("GET", "/v1/sync?since=0&wait=10", Some(&ta), None).await;
            (start.elapsed(), r.body)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.send(&tb, a, "lp-1", "wake up").await;
    let (took, body) = waiter.await.unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert!(took < Duration::from_secs(3), "long-poll took {took:?}");
    // With nothing to deliver it waits, then returns empty.
    let start = Instant::now();
    let r = app.call("GET", "/v1/sync?since=1&wait=1", Some(&tb), None).await;
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(r.body["events"].as_array().unwrap().is_empty());
    assert_eq!(r.body["next"], 1);
}

#[tokio::test]
async fn sends_and_logins_are_rate_limited_with_retry_after() {
    let app = app_with(&[("FEIGE_SEND_RATE_PER_SEC", "3"), ("FEIGE_LOGIN_RATE_PER_MIN", "4")]).await;
    let (_, ta, _) = app.user("quinn").await;
    let (b, _, _) = app.user("rosa").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(app.send(&ta, b, &format!("rl{i}"), "x").await);
    }
    let limited = statuses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).expect("some send was limited");
    assert_eq!(code(limited), "rate_limited");
    assert!(limited.headers.get(header::RETRY_AFTER).is_some());
    let mut last = StatusCode::OK;
    for _ in 0..6 {
        last = app
            .call("POST", "/v1/auth/login", None, Some(json!({"username": "quinn", "password": "wrong-one"})))
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = app().await;
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, StatusCode::OK);
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    for b in ["db", "timeline", "cache", "bus"] {
        assert_eq!(r.body["backends"][b], "ok");
    }
    app.call("GET", "/healthz", None, None).await;
    let m = app.call("GET", "/metrics", None, None).await;
    assert!(m.body.as_str().unwrap().contains("feige_http_requests_total"));
    let spec = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(spec.body["openapi"], "3.0.3");
    for p in ["/v1/auth/register", "/v1/messages", "/v1/sync", "/v1/conversations/{id}/messages", "/v1/ws"] {
        assert!(spec.body["paths"][p].is_object(), "{p} missing from the spec");
    }
}
