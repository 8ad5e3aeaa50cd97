//! Groups, recall and read positions through the router in-process, on SQLite and on MySQL
//! (`FEIGE_TEST_MYSQL_URL`, a fresh database per test): every
//! permission rule both ways, the 500-member limit (also under concurrent invitations), the
//! events each member sees, history from the join on, the recall window.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{App, Db, app_on, code, kinds};
use serde_json::{Value, json};

/// A group of the owner and members; returns (group_id, conversation_id).
async fn group(app: &App, owner: &str, members: &[i64]) -> (i64, String) {
    let r = app.call("POST", "/v1/groups", Some(owner), Some(json!({"name": "team", "members": members}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (r.body["group_id"].as_i64().unwrap(), r.body["conversation_id"].as_str().unwrap().to_owned())
}

async fn group_send(app: &App, token: &str, gid: i64, cmid: &str) -> common::Resp {
    app.call(
        "POST",
        "/v1/messages",
        Some(token),
        Some(json!({"client_msg_id": cmid, "to": {"kind": "group", "id": gid}, "type": "text", "body": cmid})),
    )
    .await
}

async fn create_list_info_and_the_events_every_member_sees(db: Db) {
    let app = app_on(db, &[]).await;
    let (o, to, _) = app.user("owner").await;
    let (a, ta, _) = app.user("amy").await;
    let (b, _, _) = app.user("ben").await;
    let (_, tx, _) = app.user("xeno").await;
    let r = app.call("POST", "/v1/groups", Some(&to), Some(json!({"name": "  Crew ", "members": [a, b, a, o]}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!((r.body["name"].as_str(), r.body["owner_id"].as_i64()), (Some("Crew"), Some(o)));
    let mut members: Vec<i64> = r.body["members"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    members.sort();
    assert_eq!(members, {
        let mut m = vec![o, a, b];
        m.sort();
        m
    });
    let gid = r.body["group_id"].as_i64().unwrap();
    let conv = r.body["conversation_id"].as_str().unwrap().to_owned();

    let list = app.call("GET", "/v1/groups", Some(&ta), None).await;
    assert_eq!(list.body["groups"][0]["group_id"].as_i64(), Some(gid));
    let info = app.call("GET", &format!("/v1/groups/{gid}"), Some(&ta), None).await;
    assert_eq!((info.body["my_role"].as_str(), info.body["member_count"].as_u64()), (Some("member"), Some(3)));
    let roles = app.call("GET", &format!("/v1/groups/{gid}/members"), Some(&ta), None).await;
    assert_eq!(roles.body["members"].as_array().unwrap().iter().filter(|m| m["role"] == "owner").count(), 1);
    // Strangers see nothing; unknown groups are 404.
    assert_eq!(app.call("GET", &format!("/v1/groups/{gid}"), Some(&tx), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.call("GET", &format!("/v1/groups/{gid}/members"), Some(&tx), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.call("GET", "/v1/groups/987654", Some(&ta), None).await.status, StatusCode::NOT_FOUND);
    assert!(app.call("GET", "/v1/groups", Some(&tx), None).await.body["groups"].as_array().unwrap().is_empty());
    // Bad input.
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "ok", "members": [999999]}),
        json!({"name": "ok", "members": ["a"]}),
    ] {
        let r = app.call("POST", "/v1/groups", Some(&to), Some(bad)).await;
        assert!(r.status.is_client_error(), "{:?}", r.body);
    }

    // A message: one history row, one timeline entry per member (sender included).
    let sent = group_send(&app, &ta, gid, "hello-all").await;
    assert_eq!(sent.status, StatusCode::CREATED);
    assert_eq!(sent.body["conversation_id"].as_str(), Some(conv.as_str()));
    let hist = app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&to), None).await;
    assert_eq!(hist.body["messages"].as_array().unwrap().len(), 1);
    for tok in [&to, &ta] {
        let ev = app.events(tok).await;
        assert_eq!(kinds(&ev), vec!["group_created", "message"]);
        assert_eq!(ev[0]["group_id"].as_i64(), Some(gid));
        assert!(ev.windows(2).all(|w| w[1]["seq"].as_u64() > w[0]["seq"].as_u64()));
    }
    assert!(app.events(&tx).await.is_empty());
    let conversations = app.call("GET", "/v1/conversations", Some(&to), None).await;
    let c = &conversations.body["conversations"][0];
    assert_eq!((c["kind"].as_str(), c["group_id"].as_i64(), c["unread"].as_u64()), (Some("group"), Some(gid), Some(1)));
    assert!(c.get("peer_id").is_none());
}

async fn every_permission_rule_both_ways(db: Db) {
    let app = app_on(db, &[]).await;
    let (_, to, _) = app.user("boss").await;
    let (a, ta, _) = app.user("adminx").await;
    let (m, tm, _) = app.user("memb").await;
    let (n, tn, _) = app.user("newbie").await;
    let (x, _, _) = app.user("extra").await;
    let (gid, _) = group(&app, &to, &[a, m]).await;
    let g = format!("/v1/groups/{gid}");

    // Only the owner grants admin.
    let r = app.call("POST", &format!("{g}/admins"), Some(&tm), Some(json!({"user_id": a}))).await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "not_allowed"));
    assert_eq!(
        app.call("POST", &format!("{g}/admins"), Some(&to), Some(json!({"user_id": a}))).await.status,
        StatusCode::NO_CONTENT
    );
    // A member cannot invite; an admin can; the owner can.
    assert_eq!(
        app.call("POST", &format!("{g}/members"), Some(&tm), Some(json!({"user_ids": [n]}))).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app.call("POST", &format!("{g}/members"), Some(&ta), Some(json!({"user_ids": [n]}))).await;
    assert_eq!((r.status, r.body["added"].clone()), (StatusCode::OK, json!([n])));
    let r = app.call("POST", &format!("{g}/members"), Some(&to), Some(json!({"user_ids": [n, x]}))).await;
    assert_eq!(r.body["added"], json!([x]), "current members are skipped");
    // Rename/announce: member no, admin yes.
    assert_eq!(app.call("PATCH", &g, Some(&tm), Some(json!({"name": "mine"}))).await.status, StatusCode::FORBIDDEN);
    let r = app.call("PATCH", &g, Some(&ta), Some(json!({"announcement": "standup at 9"}))).await;
    assert_eq!((r.status, r.body["announcement"].as_str()), (StatusCode::OK, Some("standup at 9")));
    // Kicks: a member cannot; an admin kicks members but not the owner nor other admins.
    assert_eq!(app.call("DELETE", &format!("{g}/members/{x}"), Some(&tm), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.call("DELETE", &format!("{g}/members/{x}"), Some(&ta), None).await.status, StatusCode::NO_CONTENT);
    let owner_id = app.call("GET", "/v1/users/me", Some(&to), None).await.body["user_id"].as_i64().unwrap();
    assert_eq!(
        app.call("DELETE", &format!("{g}/members/{owner_id}"), Some(&ta), None).await.status,
        StatusCode::FORBIDDEN
    );
    app.call("POST", &format!("{g}/admins"), Some(&to), Some(json!({"user_id": m}))).await;
    assert_eq!(
        app.call("DELETE", &format!("{g}/members/{m}"), Some(&ta), None).await.status,
        StatusCode::FORBIDDEN,
        "admin vs admin"
    );
    // Only the owner revokes admin; the owner can kick an admin.
    assert_eq!(app.call("DELETE", &format!("{g}/admins/{m}"), Some(&ta), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.call("DELETE", &format!("{g}/admins/{m}"), Some(&to), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.call("DELETE", &format!("{g}/members/{a}"), Some(&to), None).await.status, StatusCode::NO_CONTENT);
    // Leaving: anyone but the owner, who must transfer or disband first.
    assert_eq!(app.call("DELETE", &format!("{g}/members/{n}"), Some(&tn), None).await.status, StatusCode::NO_CONTENT);
    let r = app.call("DELETE", &format!("{g}/members/{owner_id}"), Some(&to), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::CONFLICT, "owner_cannot_leave"));
    // Transfer: only the owner, only to a member.
    assert_eq!(
        app.call("POST", &format!("{g}/owner"), Some(&tm), Some(json!({"user_id": m}))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("POST", &format!("{g}/owner"), Some(&to), Some(json!({"user_id": x}))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("POST", &format!("{g}/owner"), Some(&to), Some(json!({"user_id": m}))).await.status,
        StatusCode::NO_CONTENT
    );
    let info = app.call("GET", &g, Some(&tm), None).await;
    assert_eq!((info.body["owner_id"].as_i64(), info.body["my_role"].as_str()), (Some(m), Some("owner")));
    assert_eq!(app.call("GET", &g, Some(&to), None).await.body["my_role"], "admin");
    // Disband: an admin cannot, the owner can; then the group is gone.
    assert_eq!(app.call("DELETE", &g, Some(&to), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.call("DELETE", &g, Some(&tm), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.call("GET", &g, Some(&tm), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(group_send(&app, &tm, gid, "late").await.status, StatusCode::NOT_FOUND);

    let ev = kinds(&app.events(&to).await);
    for k in ["group_created", "role_changed", "member_joined", "group_updated", "member_left", "group_disbanded"] {
        assert!(ev.contains(&k.to_owned()), "owner missed {k}: {ev:?}");
    }
}

async fn leavers_stop_receiving_and_joiners_read_from_their_join_on(db: Db) {
    let app = app_on(db, &[]).await;
    let (_, to, _) = app.user("own1").await;
    let (a, ta, _) = app.user("amb1").await;
    let (l, tl, _) = app.user("late1").await;
    let (gid, conv) = group(&app, &to, &[a]).await;
    group_send(&app, &to, gid, "before-join").await;
    app.call("POST", &format!("/v1/groups/{gid}/members"), Some(&to), Some(json!({"user_ids": [l]}))).await;
    group_send(&app, &ta, gid, "after-join").await;
    let h = app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&tl), None).await;
    let bodies: Vec<&str> =
        h.body["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["after-join"], "a joiner reads history from the join on");
    let late_events = kinds(&app.events(&tl).await);
    assert_eq!(late_events, vec!["member_joined", "message"]);
    let unread =
        app.call("GET", "/v1/conversations", Some(&tl), None).await.body["conversations"][0]["unread"].as_u64();
    assert_eq!(unread, Some(1));

    // Kicked: sees member_left about themselves, then nothing more; cannot send or read.
    app.call("DELETE", &format!("/v1/groups/{gid}/members/{a}"), Some(&to), None).await;
    group_send(&app, &to, gid, "after-kick").await;
    let ev = app.events(&ta).await;
    let last = ev.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["user_id"].as_i64(), last["reason"].as_str()),
        (Some("member_left"), Some(a), Some("kicked"))
    );
    let r = group_send(&app, &ta, gid, "still-here").await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "not_member"));
    assert_eq!(
        app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&ta), None).await.status,
        StatusCode::FORBIDDEN
    );
    // Leaving works the same, with reason "left"; rejoining later reads from the new join on.
    app.call("DELETE", &format!("/v1/groups/{gid}/members/{l}"), Some(&tl), None).await;
    let ev = app.events(&tl).await;
    assert_eq!(ev.last().unwrap()["reason"], "left");
    app.call("POST", &format!("/v1/groups/{gid}/members"), Some(&to), Some(json!({"user_ids": [l]}))).await;
    group_send(&app, &to, gid, "welcome-back").await;
    let h = app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&tl), None).await;
    let bodies: Vec<&str> =
        h.body["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["welcome-back"]);
}

async fn five_hundred_members_and_no_more_even_concurrently(db: Db) {
    let app = std::sync::Arc::new(app_on(db, &[]).await);
    let (_, to, _) = app.user("bigboss").await;
    let others = app.bulk_users("m", 503).await;
    // 1 owner + 500 others is one too many.
    let r = app.call("POST", "/v1/groups", Some(&to), Some(json!({"name": "big", "members": others[..500]}))).await;
    assert_eq!((r.status, code(&r)), (StatusCode::CONFLICT, "group_full"));
    let (gid, _) = group(&app, &to, &others[..495]).await;
    // Eight concurrent invitations of one user each: exactly four fit.
    let mut tasks = Vec::new();
    for (i, uid) in others[495..503].iter().enumerate() {
        let (app, to, uid) = (app.clone(), to.clone(), *uid);
        tasks.push(tokio::spawn(async move {
            let _ = i;
            app.call("POST", &format!("/v1/groups/{gid}/members"), Some(&to), Some(json!({"user_ids": [uid]})))
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 4, "{statuses:?}");
    let info = app.call("GET", &format!("/v1/groups/{gid}"), Some(&to), None).await;
    assert_eq!(info.body["member_count"], 500);
    let members = app.call("GET", &format!("/v1/groups/{gid}/members"), Some(&to), None).await;
    assert_eq!(members.body["members"].as_array().unwrap().len(), 500);

    // A send to 500 members: 201, and each member's timeline holds it.
    let sent = group_send(&app, &to, gid, "to-everyone").await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let page = app.feige.ports.timeline.read(feige_core::UserId(others[0]), 0, 10).await.unwrap();
    assert!(page.iter().any(|e| e.event.as_ref().and_then(|e| e.msg_id.as_deref()) == sent.body["msg_id"].as_str()));
}

async fn recall_within_the_window_by_sender_or_admin(db: Db) {
    let app = app_on(db, &[("FEIGE_RECALL_WINDOW_SECS", "2")]).await;
    let (_, to, _) = app.user("rown").await;
    let (a, ta, _) = app.user("ramy").await;
    let (m, tm, _) = app.user("rmem").await;
    let (gid, conv) = group(&app, &to, &[a, m]).await;
    app.call("POST", &format!("/v1/groups/{gid}/admins"), Some(&to), Some(json!({"user_id": a}))).await;
    let mine = group_send(&app, &tm, gid, "oops").await.body["msg_id"].as_str().unwrap().to_owned();
    let owners = group_send(&app, &to, gid, "boss-msg").await.body["msg_id"].as_str().unwrap().to_owned();
    // A plain member cannot recall someone else's message; strangers get 404.
    let r = app.call("POST", &format!("/v1/messages/{owners}/recall"), Some(&tm), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "not_allowed"));
    let (_, tx, _) = app.user("rstranger").await;
    assert_eq!(
        app.call("POST", &format!("/v1/messages/{mine}/recall"), Some(&tx), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.call("POST", "/v1/messages/nope/recall", Some(&tm), None).await.status, StatusCode::NOT_FOUND);
    // The sender recalls; twice is harmless.
    for _ in 0..2 {
        let r = app.call("POST", &format!("/v1/messages/{mine}/recall"), Some(&tm), None).await;
        assert_eq!((r.status, r.body["recalled"].as_bool()), (StatusCode::OK, Some(true)), "{:?}", r.body);
    }
    // An admin recalls another member's message.
    assert_eq!(
        app.call("POST", &format!("/v1/messages/{owners}/recall"), Some(&ta), None).await.status,
        StatusCode::OK
    );
    let h = app.call("GET", &format!("/v1/conversations/{conv}/messages"), Some(&to), None).await;
    for msg in h.body["messages"].as_array().unwrap() {
        assert_eq!((msg["recalled"].as_bool(), &msg["body"]), (Some(true), &Value::Null), "body removed from history");
    }
    for tok in [&to, &ta, &tm] {
        let ev = app.events(tok).await;
        let recalls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "recall").collect();
        assert_eq!(recalls.len(), 2, "one recall event per message, not per call: {ev:?}");
        assert!(recalls.iter().any(|e| e["msg_id"].as_str() == Some(mine.as_str())));
    }
    // Past the window: refused.
    let late = group_send(&app, &tm, gid, "too-late").await.body["msg_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let r = app.call("POST", &format!("/v1/messages/{late}/recall"), Some(&tm), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "recall_window_passed"));
    // One-to-one recall: the peer gets the event, the peer cannot recall it.
    let (p, _, _) = app.user("rpeer").await;
    let d = app.send(&tm, p, "dm-1", "secret").await.body["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(app.call("POST", &format!("/v1/messages/{d}/recall"), Some(&tm), None).await.status, StatusCode::OK);
}

async fn read_positions_of_a_group(db: Db) {
    let app = app_on(db, &[]).await;
    let (o, to, _) = app.user("pown").await;
    let (a, ta, _) = app.user("pamy").await;
    let (_, tx, _) = app.user("pxen").await;
    let (gid, conv) = group(&app, &to, &[a]).await;
    for i in 0..3 {
        group_send(&app, &to, gid, &format!("p{i}")).await;
    }
    let r = app.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&ta), Some(json!({"seq": 2}))).await;
    assert_eq!(r.body["unread"], 1);
    let pos = app.call("GET", &format!("/v1/conversations/{conv}/read-positions"), Some(&ta), None).await;
    let mut got: Vec<(i64, u64)> = pos.body["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["user_id"].as_i64().unwrap(), p["read_seq"].as_u64().unwrap()))
        .collect();
    got.sort();
    let mut want = vec![(o, 3), (a, 2)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        app.call("GET", &format!("/v1/conversations/{conv}/read-positions"), Some(&tx), None).await.status,
        StatusCode::FORBIDDEN
    );
    // In a group the read event goes to the reader's own devices only.
    assert!(!kinds(&app.events(&to).await).contains(&"read".to_owned()));
    assert!(kinds(&app.events(&ta).await).contains(&"read".to_owned()));
}

/// Each scenario on SQLite (`sqlite::name`) and on MySQL (`mysql::name`).
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Sqlite).await } )*
        }
        mod mysql {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Db::Mysql).await } )*
        }
    };
}

on_both_databases!(
    create_list_info_and_the_events_every_member_sees,
    every_permission_rule_both_ways,
    leavers_stop_receiving_and_joiners_read_from_their_join_on,
    five_hundred_members_and_no_more_even_concurrently,
    recall_within_the_window_by_sender_or_admin,
    read_positions_of_a_group
);
