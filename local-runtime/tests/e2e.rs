//! End to end: the built `local-runtime` binary on a free port, driven by a real HTTP client
//! and real WebSocket clients that decode the protobuf frames.
//!
//! Every scenario runs twice (see `both_profiles!` at the bottom): on the embedded defaults,
//! and on the real stack — MySQL/MariaDB, MongoDB (jongodb), Redis and Kafka (tansu), at the
//! `FEIGE_TEST_*_URL` addresses that `scripts/services` starts — each test with its own
//! database, key prefix, topic and consumer group. A missing service fails the test.

#![allow(clippy::unwrap_used)]

use feige_proto::v1::{ClientFrame, Heartbeat, ServerFrame, client_frame, server_frame::Payload};
use feige_testkit::http::Api;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running local-runtime process.
struct Runtime {
    child: Child,
    api: Api,
}

/// Which backends a runtime uses: the embedded defaults, or the real services with names of
/// this test's own.
struct Stack {
    env: Vec<(String, String)>,
    mysql_db: Option<(String, String)>,
}

fn test_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

impl Stack {
    fn embedded() -> Stack {
        Stack { env: Vec::new(), mysql_db: None }
    }

    fn real() -> Stack {
        let id = format!(
            "{}{:04}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_micros() % 10_000
        );
        let id = format!("{id}{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mysql = test_url("FEIGE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306");
        let mongo = test_url("FEIGE_TEST_MONGO_URL", "mongodb://127.0.0.1:27217");
        let redis = test_url("FEIGE_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        let kafka = test_url("FEIGE_TEST_KAFKA_URL", "kafka://127.0.0.1:19092");
        let db = format!("feige_e2e_{id}");
        let env = vec![
            ("FEIGE_DB_URL".into(), format!("{mysql}/{db}")),
            ("FEIGE_TIMELINE_URL".into(), format!("{mongo}/{db}?serverSelectionTimeoutMS=3000")),
            ("FEIGE_CACHE_URL".into(), redis),
            ("FEIGE_CACHE_PREFIX".into(), format!("e2e-{id}:")),
            ("FEIGE_BUS_URL".into(), kafka),
            ("FEIGE_KAFKA_TOPIC".into(), format!("feige-e2e-{id}")),
            ("FEIGE_KAFKA_GROUP".into(), format!("feige-e2e-{id}")),
        ];
        Stack { env, mysql_db: Some((mysql, db)) }
    }

    /// Replaces one variable (e.g. to route a backend through a proxy).
    fn with(mut self, key: &str, value: String) -> Stack {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value));
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for Stack {
    /// Drops this test's MySQL database (MongoDB is in memory; topics die with the broker).
    fn drop(&mut self) {
        if let Some((server, db)) = &self.mysql_db {
            let host_port = server.trim_start_matches("mysql://").split('@').next_back().unwrap_or("127.0.0.1:3306");
            let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
            let _ = Command::new("mariadb")
                .args(["-uroot", "-h", host, "-P", port, "-e", &format!("DROP DATABASE IF EXISTS `{db}`")])
                .status();
        }
    }
}

impl Runtime {
    fn start(dir: &std::path::Path, stack: &Stack, env: &[(&str, &str)]) -> Runtime {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-runtime"));
        cmd.env("FEIGE_LISTEN", "127.0.0.1:0")
            .env("FEIGE_NODE_ID", "e2e-node")
            .env("FEIGE_DATA_DIR", dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &stack.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line =
            lines.next().expect("local-runtime exited before listening (is every backend up? see stderr)").unwrap();
        let base = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("odd banner: {line}"));
        Runtime { child, api: Api::new(format!("http://{base}")) }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.api.call(method, path, token, body).await
    }

    async fn user(&self, name: &str, device: &str) -> (i64, String) {
        let (s, _) = self
            .call("POST", "/v1/auth/register", None, Some(json!({"username": name, "password": "password-1"})))
            .await;
        assert!(s == 201 || s == 409);
        let (s, b) = self
            .call(
                "POST",
                "/v1/auth/login",
                None,
                Some(json!({"username": name, "password": "password-1", "device_id": device})),
            )
            .await;
        assert_eq!(s, 200, "{b:?}");
        (b["user_id"].as_i64().unwrap(), b["access_token"].as_str().unwrap().to_owned())
    }

    async fn send(&self, token: &str, to: i64, cmid: &str) -> Value {
        let (s, b) = self
            .call(
                "POST",
                "/v1/messages",
                Some(token),
                Some(json!({"client_msg_id": cmid, "to": {"kind": "user", "id": to}, "type": "text", "body": cmid})),
            )
            .await;
        assert_eq!(s, 201, "{b:?}");
        b
    }

    /// Opens a socket; auth by header (or by query when `by_query`).
    async fn ws(&self, token: &str, since: Option<u64>, by_query: bool) -> Ws {
        let host = self.api.base.trim_start_matches("http://");
        let mut url = format!("ws://{host}/v1/ws?");
        if let Some(s) = since {
            url.push_str(&format!("since={s}&"));
        }
        if by_query {
            url.push_str(&format!("access_token={token}"));
        }
        let mut req = url.into_client_request().unwrap();
        if !by_query {
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("local-runtime did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Next server frame (skipping pings), or None when the socket closed.
async fn next_frame(ws: &mut Ws) -> Option<Result<Payload, Option<(CloseCode, String)>>> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("no frame within 10 s")?;
        match msg {
            Ok(Message::Binary(b)) => {
                return Some(Ok(ServerFrame::decode(b.as_ref()).unwrap().payload.unwrap()));
            }
            Ok(Message::Close(c)) => return Some(Err(c.map(|c| (c.code, c.reason.to_string())))),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

async fn expect_payload(ws: &mut Ws) -> Payload {
    match next_frame(ws).await {
        Some(Ok(p)) => p,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Reads Hello and replayed events up to Synced; returns the replayed events.
async fn handshake(ws: &mut Ws) -> Vec<feige_proto::v1::Event> {
    assert!(matches!(expect_payload(ws).await, Payload::Hello(_)));
    let mut replay = Vec::new();
    loop {
        match expect_payload(ws).await {
            Payload::Event(e) => replay.push(e),
            Payload::Synced(_) => return replay,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn next_event(ws: &mut Ws) -> feige_proto::v1::Event {
    match expect_payload(ws).await {
        Payload::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads frames until the close; returns the Kicked reason and the close code.
async fn expect_close(ws: &mut Ws) -> (Option<String>, Option<CloseCode>) {
    let mut reason = None;
    loop {
        match next_frame(ws).await {
            Some(Ok(Payload::Kicked(k))) => reason = Some(k.reason),
            Some(Ok(_)) => {}
            Some(Err(close)) => return (reason, close.map(|c| c.0)),
            None => return (reason, None),
        }
    }
}

async fn chat_end_to_end_over_http_and_websocket(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[]);
    let (a, a_phone) = rt.user("alice", "phone").await;
    let (_, a_laptop) = rt.user("alice", "laptop").await;
    let (b, b_tok) = rt.user("bob", "phone").await;
    let mut bob = rt.ws(&b_tok, Some(0), false).await;
    let mut laptop = rt.ws(&a_laptop, Some(0), true).await;
    assert!(handshake(&mut bob).await.is_empty());
    assert!(handshake(&mut laptop).await.is_empty());
    if let Some(prefix) = stack.get("FEIGE_CACHE_PREFIX") {
        // The presence registry in Redis knows which node holds bob's socket.
        let out = Command::new("redis-cli")
            .args([
                "-u",
                &test_url("FEIGE_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
                "ZRANGE",
                &format!("{prefix}presence:{b}"),
                "0",
                "-1",
            ])
            .output()
            .expect("redis-cli");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "e2e-node", "presence of bob: {out:?}");
    }

    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(rt.send(&a_phone, b, &format!("hello-{i}")).await);
    }
    for (i, s) in sent.iter().enumerate() {
        let e = next_event(&mut bob).await;
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.kind, "message");
        assert_eq!(e.msg_id.as_deref(), s["msg_id"].as_str());
        assert_eq!(e.sender_id, Some(a));
        assert_eq!(e.body_json.as_deref(), Some(format!("\"hello-{i}\"").as_str()));
        // The sender's other device gets it too, at the sender's own seq.
        let e = next_event(&mut laptop).await;
        assert_eq!(Some(e.seq), s["seq"].as_u64());
        assert_eq!(e.msg_id.as_deref(), s["msg_id"].as_str());
    }

    // Heartbeat → Pong.
    let hb = ClientFrame { payload: Some(client_frame::Payload::Heartbeat(Heartbeat { ts: 42 })) };
    bob.send(Message::Binary(hb.encode_to_vec().into())).await.unwrap();
    assert!(matches!(expect_payload(&mut bob).await, Payload::Pong(p) if p.ts == 42));

    // A second socket resuming from since=2 replays 3..=5, then streams live, no duplicate.
    let mut bob2 = rt.ws(&b_tok, Some(2), false).await;
    let replay: Vec<u64> = handshake(&mut bob2).await.iter().map(|e| e.seq).collect();
    assert_eq!(replay, vec![3, 4, 5]);
    let live = rt.send(&a_phone, b, "live").await;
    for ws in [&mut bob, &mut bob2] {
        let e = next_event(ws).await;
        assert_eq!((e.seq, e.msg_id.as_deref()), (6, live["msg_id"].as_str()));
    }
    assert_eq!(next_event(&mut laptop).await.msg_id.as_deref(), live["msg_id"].as_str());
    // Read receipts are pushed too.
    let conv = live["conversation_id"].as_str().unwrap();
    let (s, _) =
        rt.call("POST", &format!("/v1/conversations/{conv}/read"), Some(&b_tok), Some(json!({"seq": 6}))).await;
    assert_eq!(s, 200);
    let e = next_event(&mut laptop).await;
    assert_eq!(e.kind, "read");
    assert!(e.extra_json.contains("\"read_seq\":6"));
}

async fn concurrent_sends_stream_without_gap_or_duplicate(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = std::sync::Arc::new(Runtime::start(dir.path(), &stack, &[]));
    let (b, b_tok) = rt.user("target", "d").await;
    let mut ws = rt.ws(&b_tok, Some(0), false).await;
    handshake(&mut ws).await;
    let mut tasks = Vec::new();
    for s in 0..4 {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let (_, tok) = rt.user(&format!("writer{s}"), "d").await;
            let mut ids = Vec::new();
            for i in 0..15 {
                ids.push(rt.send(&tok, b, &format!("w{s}-{i}")).await["msg_id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let mut seen = HashSet::new();
    for expected in 1..=acked.len() as u64 {
        let e = next_event(&mut ws).await;
        assert_eq!(e.seq, expected, "push must stream in seq order without gaps");
        assert!(seen.insert(e.msg_id.unwrap()), "duplicate delivery");
    }
    assert_eq!(seen, acked);
}

async fn logout_closes_that_devices_sockets_only(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[]);
    let (a, a_tok) = rt.user("sender", "d").await;
    let (b, b1) = rt.user("multi", "one").await;
    let (_, b2) = rt.user("multi", "two").await;
    let _ = a;
    let mut s1 = rt.ws(&b1, Some(0), false).await;
    let mut s2 = rt.ws(&b2, Some(0), false).await;
    handshake(&mut s1).await;
    handshake(&mut s2).await;
    let (s, _) = rt.call("POST", "/v1/auth/logout", Some(&b1), None).await;
    assert_eq!(s, 204);
    let (reason, code) = expect_close(&mut s1).await;
    assert_eq!(reason.as_deref(), Some("logged_out"));
    assert_eq!(code, Some(CloseCode::from(4001)));
    rt.send(&a_tok, b, "still-here").await;
    assert_eq!(next_event(&mut s2).await.seq, 1);
    // The logged-out token can no longer open a socket.
    let host = rt.api.base.trim_start_matches("http://");
    let err = tokio_tungstenite::connect_async(format!("ws://{host}/v1/ws?access_token={b1}")).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("ws://{host}/v1/ws")).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

/// Backpressure: a device that stops reading is cut off (its queue overflows, or a frame
/// cannot be written for 5 s) while another device of the same user gets every event at once;
/// it then resumes with since=cursor and ends up with every event exactly once.
async fn a_slow_reader_is_cut_off_and_resumes_without_loss(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[("FEIGE_WS_QUEUE", "16"), ("FEIGE_SEND_RATE_PER_SEC", "0")]);
    let (_, a) = rt.user("firehose", "d").await;
    let (b, slow_tok) = rt.user("reader", "slow").await;
    let (_, fast_tok) = rt.user("reader", "fast").await;
    let mut slow = rt.ws(&slow_tok, Some(0), false).await;
    handshake(&mut slow).await;
    let mut fast = rt.ws(&fast_tok, Some(0), false).await;
    handshake(&mut fast).await;
    // 3,000 messages of 7.9 KB (24 MB) outgrow the loopback socket buffers and the 16-frame queue.
    const N: u64 = 3_000;
    let fast_reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < N {
            seqs.push(next_event(&mut fast).await.seq);
        }
        seqs
    });
    let started = std::time::Instant::now();
    let body = "x".repeat(7_900);
    for i in 0..N {
        let msg =
            json!({"client_msg_id": format!("m{i}"), "to": {"kind": "user", "id": b}, "type": "text", "body": body});
        let (s, r) = rt.call("POST", "/v1/messages", Some(&a), Some(msg)).await;
        assert_eq!(s, 201, "{r:?}");
    }
    let sent_in = started.elapsed();
    let fast_seqs = fast_reader.await.unwrap();
    let fast_done = started.elapsed();
    assert_eq!(fast_seqs, (1..=N).collect::<Vec<_>>());
    assert!(
        fast_done < sent_in + Duration::from_secs(3),
        "the fast reader was held up: sends took {sent_in:?}, it finished after {fast_done:?}"
    );
    // Now the slow one reads: a prefix of the events, then its socket ends.
    let mut got = Vec::new();
    let end = loop {
        match next_frame(&mut slow).await {
            Some(Ok(Payload::Event(e))) => got.push(e.seq),
            Some(Ok(_)) => {}
            Some(Err(close)) => break close.map(|c| c.0),
            None => break None,
        }
    };
    assert!((got.len() as u64) < N, "the slow reader was never cut off");
    assert!(end.is_none_or(|code| code == CloseCode::from(4008)), "unexpected close {end:?}");
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "what it got before the cut is in order");
    // It resumes from its cursor and loses nothing.
    let mut again = rt.ws(&slow_tok, Some(got.len() as u64), false).await;
    got.extend(handshake(&mut again).await.iter().map(|e| e.seq));
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
}

/// `FEIGE_KICK_POLICY=single`: a user's new socket replaces the older one, which gets
/// `kicked` (`replaced`) and close 4002; the new one keeps receiving.
async fn single_kick_policy_replaces_the_older_socket(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[("FEIGE_KICK_POLICY", "single")]);
    let (_, a) = rt.user("kicker-a", "d").await;
    let (b, web) = rt.user("kicked-b", "browser").await;
    let (_, phone) = rt.user("kicked-b", "phone").await;
    let mut old = rt.ws(&web, Some(0), false).await;
    handshake(&mut old).await;
    let mut new = rt.ws(&phone, Some(0), false).await;
    handshake(&mut new).await;
    let (reason, code) = expect_close(&mut old).await;
    assert_eq!(reason.as_deref(), Some("replaced"));
    assert_eq!(code, Some(CloseCode::from(4002)));
    let sent = rt.send(&a, b, "to-the-new-one").await;
    assert_eq!(next_event(&mut new).await.msg_id.as_deref(), sent["msg_id"].as_str());
}

async fn silent_sockets_time_out_and_heartbeats_keep_them_open(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[("FEIGE_WS_IDLE_SECS", "2")]);
    let (_, tok) = rt.user("sleepy", "d").await;
    let mut silent = rt.ws(&tok, None, false).await;
    let mut chatty = rt.ws(&tok, None, false).await;
    handshake(&mut silent).await;
    handshake(&mut chatty).await;
    let start = std::time::Instant::now();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hb = ClientFrame { payload: Some(client_frame::Payload::Heartbeat(Heartbeat { ts: i })) };
        chatty.send(Message::Binary(hb.encode_to_vec().into())).await.unwrap();
        assert!(matches!(expect_payload(&mut chatty).await, Payload::Pong(_)));
    }
    let (reason, code) = expect_close(&mut silent).await;
    assert_eq!((reason.as_deref(), code), (Some("idle_timeout"), Some(CloseCode::from(4000))));
    assert!(start.elapsed() >= Duration::from_millis(2900), "the heartbeating socket outlived the timeout");
}

async fn data_survives_a_restart_and_sigterm_drains_sockets(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let mut rt = Runtime::start(dir.path(), &stack, &[]);
    let (a, a_tok) = rt.user("persist-a", "d").await;
    let (b, b_tok) = rt.user("persist-b", "d").await;
    let _ = a;
    for i in 0..3 {
        rt.send(&a_tok, b, &format!("p{i}")).await;
    }
    let mut ws = rt.ws(&b_tok, Some(3), false).await;
    handshake(&mut ws).await;
    let status = rt.terminate();
    assert!(status.success(), "exit status {status:?}");
    let (reason, code) = expect_close(&mut ws).await;
    assert_eq!((reason.as_deref(), code), (Some("shutdown"), Some(CloseCode::Restart)));
    drop(rt);

    let rt = Runtime::start(dir.path(), &stack, &[]);
    let (s, me) = rt.call("GET", "/v1/users/me", Some(&b_tok), None).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("persist-b")), "tokens survive a restart");
    let (_, page) = rt.call("GET", "/v1/sync?since=0", Some(&b_tok), None).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let next = rt.send(&a_tok, b, "after-restart").await;
    assert_eq!(
        (next["seq"].as_u64(), next["conv_seq"].as_u64()),
        (Some(4), Some(4)),
        "sequences continue, never reset"
    );
    let mut ws = rt.ws(&b_tok, Some(0), false).await;
    assert_eq!(handshake(&mut ws).await.len(), 4);
}

/// A group over HTTP and WebSocket: every member's sockets get the group events and the
/// message at their own seq, a recall reaches everyone, and a kicked member hears nothing more.
async fn group_chat_fan_out_and_recall(stack: Stack) {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[]);
    let (_, owner) = rt.user("g-owner", "d").await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(rt.user(&format!("g-member{i}"), "d").await);
    }
    let ids: Vec<i64> = members.iter().map(|(id, _)| *id).collect();
    let mut sockets = Vec::new();
    for (_, tok) in &members {
        let mut ws = rt.ws(tok, Some(0), false).await;
        handshake(&mut ws).await;
        sockets.push(ws);
    }
    let (s, g) = rt.call("POST", "/v1/groups", Some(&owner), Some(json!({"name": "e2e", "members": ids}))).await;
    assert_eq!(s, 201, "{g:?}");
    let gid = g["group_id"].as_i64().unwrap();
    let (s, sent) = rt
        .call(
            "POST",
            "/v1/messages",
            Some(&members[0].1),
            Some(json!({"client_msg_id": "g1", "to": {"kind": "group", "id": gid}, "type": "text", "body": "hi all"})),
        )
        .await;
    assert_eq!(s, 201, "{sent:?}");
    let msg_id = sent["msg_id"].as_str().unwrap().to_owned();
    for ws in sockets.iter_mut() {
        let created = next_event(ws).await;
        assert_eq!((created.kind.as_str(), created.seq), ("group_created", 1));
        let m = next_event(ws).await;
        assert_eq!((m.kind.as_str(), m.seq, m.msg_id.as_deref()), ("message", 2, Some(msg_id.as_str())));
    }
    let (s, _) = rt.call("POST", &format!("/v1/messages/{msg_id}/recall"), Some(&members[0].1), None).await;
    assert_eq!(s, 200);
    for ws in sockets.iter_mut() {
        let r = next_event(ws).await;
        assert_eq!((r.kind.as_str(), r.msg_id.as_deref()), ("recall", Some(msg_id.as_str())));
    }
    let (s, _) = rt.call("DELETE", &format!("/v1/groups/{gid}/members/{}", ids[3]), Some(&owner), None).await;
    assert_eq!(s, 204);
    for ws in sockets.iter_mut() {
        assert_eq!(next_event(ws).await.kind, "member_left");
    }
    let (s, _) = rt
        .call(
            "POST",
            "/v1/messages",
            Some(&owner),
            Some(json!({"client_msg_id": "g2", "to": {"kind": "group", "id": gid}, "type": "text", "body": "after"})),
        )
        .await;
    assert_eq!(s, 201);
    for ws in sockets.iter_mut().take(3) {
        assert_eq!(next_event(ws).await.body_json.as_deref(), Some("\"after\""));
    }
    let (_, page) = rt.call("GET", "/v1/sync?since=4", Some(&members[3].1), None).await;
    assert!(page["events"].as_array().unwrap().is_empty(), "a kicked member receives nothing more: {page:?}");
}

/// A TCP proxy that can be switched off (existing connections cut, new ones refused) and on.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(tokio::sync::watch::channel(0u64).0);
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let target = target.clone();
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, generation }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// Redis is flushed while several users send to one: sequences keep rising (re-initialised
/// from the timeline's high-water mark), no seq is handed out twice, no message is lost.
async fn redis_flush_midway_keeps_sequences_rising(stack: Stack) {
    let redis = test_url("FEIGE_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    // A Redis database of this test's own, so the flush touches nobody else.
    let stack = stack.with("FEIGE_CACHE_URL", format!("{}/7", redis.trim_end_matches('/')));
    let dir = TempDir::new().unwrap();
    let rt = std::sync::Arc::new(Runtime::start(dir.path(), &stack, &[("FEIGE_GAP_GRACE_MS", "500")]));
    let (b, b_tok) = rt.user("flush-target", "d").await;
    let mut tasks = Vec::new();
    for s in 0..3 {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let (_, tok) = rt.user(&format!("flush-writer{s}"), "d").await;
            let mut acked = Vec::new();
            for i in 0..20 {
                let r = rt.send(&tok, b, &format!("f{s}-{i}")).await;
                acked.push((r["seq"].as_u64().unwrap(), r["msg_id"].as_str().unwrap().to_owned()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let flushed = Command::new("redis-cli")
        .args(["-u", &format!("{}/7", redis.trim_end_matches('/')), "FLUSHDB"])
        .output()
        .expect("redis-cli is needed for this test");
    assert!(String::from_utf8_lossy(&flushed.stdout).contains("OK"), "FLUSHDB failed: {flushed:?}");
    let mut acked = HashSet::new();
    for t in tasks {
        let sent = t.await.unwrap();
        assert!(sent.windows(2).all(|w| w[1].0 > w[0].0), "a sender's own seqs went backwards: {sent:?}");
        acked.extend(sent.into_iter().map(|(_, id)| id));
    }
    let (mut cursor, mut seen, mut seqs) = (0u64, Vec::new(), Vec::new());
    loop {
        let (s, page) = rt.call("GET", &format!("/v1/sync?since={cursor}&limit=100"), Some(&b_tok), None).await;
        assert_eq!(s, 200, "{page:?}");
        for e in page["events"].as_array().unwrap() {
            seqs.push(e["seq"].as_u64().unwrap());
            seen.push(e["msg_id"].as_str().unwrap().to_owned());
        }
        cursor = page["next"].as_u64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "seqs must rise strictly: {seqs:?}");
    assert_eq!(seen.len(), acked.len(), "every acked message exactly once");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), acked);
    // The flushed revocation set was re-seeded: a logged-out token stays dead.
    let (_, old) = rt.user("flush-target", "d2").await;
    rt.call("POST", "/v1/auth/logout", Some(&old), None).await;
    Command::new("redis-cli").args(["-u", &format!("{}/7", redis.trim_end_matches('/')), "FLUSHDB"]).output().unwrap();
    let (s, _) = rt.call("GET", "/v1/users/me", Some(&old), None).await;
    assert_eq!(s, 401, "logout must survive a Redis flush");
    let (s, _) = rt.call("GET", "/v1/users/me", Some(&b_tok), None).await;
    assert_eq!(s, 200);
}

/// The timeline store goes away mid-send: readiness says so, the send is a 503, and once the
/// store is back the client's retry completes the same message — once.
async fn a_backend_outage_is_a_503_and_the_retry_completes(stack: Stack) {
    let mongo = test_url("FEIGE_TEST_MONGO_URL", "mongodb://127.0.0.1:27217");
    let target = mongo.trim_start_matches("mongodb://").split('/').next().unwrap().to_owned();
    let proxy = Proxy::start(target).await;
    let db = stack.get("FEIGE_DB_URL").unwrap().rsplit('/').next().unwrap().to_owned();
    let stack = stack.with(
        "FEIGE_TIMELINE_URL",
        format!("mongodb://127.0.0.1:{}/{db}?directConnection=true&serverSelectionTimeoutMS=1500", proxy.port),
    );
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &stack, &[("FEIGE_GAP_GRACE_MS", "300")]);
    let (_, a_tok) = rt.user("outage-a", "d").await;
    let (b, b_tok) = rt.user("outage-b", "d").await;
    rt.send(&a_tok, b, "before").await;
    let (s, ready) = rt.call("GET", "/readyz", None, None).await;
    assert_eq!(s, 200, "{ready:?}");

    proxy.set_up(false);
    let (s, ready) = rt.call("GET", "/readyz", None, None).await;
    assert_eq!(s, 503, "{ready:?}");
    assert!(ready["backends"]["timeline"]["error"].is_string(), "{ready:?}");
    assert_eq!(ready["backends"]["db"], "ok");
    let body = json!({"client_msg_id": "during", "to": {"kind": "user", "id": b}, "type": "text", "body": "during"});
    let (s, err) = rt.call("POST", "/v1/messages", Some(&a_tok), Some(body.clone())).await;
    assert_eq!((s, err["error"]["code"].as_str()), (503, Some("backend_unavailable")), "{err:?}");

    proxy.set_up(true);
    let mut retry = (0, Value::Null);
    for _ in 0..20 {
        retry = rt.call("POST", "/v1/messages", Some(&a_tok), Some(body.clone())).await;
        if retry.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(retry.0, 200, "the retry returns the message the failed attempt recorded: {:?}", retry.1);
    assert_eq!(retry.1["conv_seq"], 2);
    let (mut cursor, mut bodies) = (0u64, Vec::new());
    loop {
        let (_, page) = rt.call("GET", &format!("/v1/sync?since={cursor}"), Some(&b_tok), None).await;
        bodies.extend(page["events"].as_array().unwrap().iter().map(|e| e["body"].as_str().unwrap().to_owned()));
        cursor = page["next"].as_u64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(bodies, vec!["before", "during"], "delivered once, in order");
    assert_eq!(rt.call("GET", "/readyz", None, None).await.0, 200);
}

/// A stand-in for the MSK API: answers GetBootstrapBrokers with the given plaintext brokers and
/// counts the (SigV4-signed) requests it saw.
async fn msk_stub(brokers: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            if req.starts_with("GET /v1/clusters/")
                && req.contains("/bootstrap-brokers")
                && req.to_lowercase().contains("authorization: aws4-hmac-sha256")
            {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let body = json!({"bootstrapBrokerString": brokers}).to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (port, seen)
}

/// On AWS the bus is MSK, found from the cluster ARN at start: here the MSK API is a local stub
/// whose answer points at the test broker, and pushes must flow through it.
async fn msk_discovery_finds_the_brokers(stack: Stack) {
    let kafka = test_url("FEIGE_TEST_KAFKA_URL", "kafka://127.0.0.1:19092");
    let (port, seen) = msk_stub(kafka.trim_start_matches("kafka://").to_owned()).await;
    let stack = stack.with("FEIGE_BUS_URL", String::new());
    let dir = TempDir::new().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let rt = Runtime::start(
        dir.path(),
        &stack,
        &[
            (
                "FEIGE_MSK_CLUSTER_ARN",
                "arn:aws:kafka:eu-west-1:123456789012:cluster/feige/0e4b5f1c-2c2a-4f4e-9a43-1a2b3c4d5e6f-3",
            ),
            ("FEIGE_MSK_AUTH", "plaintext"),
            ("FEIGE_MSK_ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the runtime never asked MSK for its brokers");
    let (_, a) = rt.user("msk-a", "d").await;
    let (b, tb) = rt.user("msk-b", "d").await;
    let mut ws = rt.ws(&tb, Some(0), false).await;
    handshake(&mut ws).await;
    let sent = rt.send(&a, b, "through-msk").await;
    assert_eq!(next_event(&mut ws).await.msg_id.as_deref(), sent["msg_id"].as_str());
}

/// Generates one `#[tokio::test]` per scenario and profile: `embedded::name` and `real::name`.
macro_rules! both_profiles {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Stack::embedded()).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Stack::real()).await
                }
            )*
        }
    };
}

both_profiles!(
    chat_end_to_end_over_http_and_websocket,
    concurrent_sends_stream_without_gap_or_duplicate,
    logout_closes_that_devices_sockets_only,
    silent_sockets_time_out_and_heartbeats_keep_them_open,
    data_survives_a_restart_and_sigterm_drains_sockets,
    group_chat_fan_out_and_recall,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_slow_reader_is_cut_off_and_resumes_without_loss() {
    a_slow_reader_is_cut_off_and_resumes_without_loss(Stack::embedded()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_single_kick_policy_replaces_the_older_socket() {
    single_kick_policy_replaces_the_older_socket(Stack::embedded()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_redis_flush_midway_keeps_sequences_rising() {
    redis_flush_midway_keeps_sequences_rising(Stack::real()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_msk_discovery_finds_the_brokers() {
    msk_discovery_finds_the_brokers(Stack::real()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_backend_outage_is_a_503_and_the_retry_completes() {
    a_backend_outage_is_a_503_and_the_retry_completes(Stack::real()).await
}
