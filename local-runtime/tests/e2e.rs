//! End to end: the built `local-runtime` binary on a free port, driven by a real HTTP client
//! and real WebSocket clients that decode the protobuf frames.

#![allow(clippy::unwrap_used)]

use feige_proto::v1::{ClientFrame, Heartbeat, ServerFrame, client_frame, server_frame::Payload};
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
    base: String,
    http: reqwest::Client,
}

impl Runtime {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Runtime {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-runtime"));
        cmd.env("FEIGE_LISTEN", "127.0.0.1:0")
            .env("FEIGE_DATA_DIR", dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("runtime printed nothing").unwrap();
        let base = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("odd banner: {line}"));
        Runtime {
            child,
            base: format!("http://{base}"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn user(&self, name: &str, device: &str) -> (i64, String) {
        let (s, _) = self
            .call(
                "POST",
                "/v1/auth/register",
                None,
                Some(json!({"username": name, "password": "password-1"})),
            )
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
        (
            b["user_id"].as_i64().unwrap(),
            b["access_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn send(&self, token: &str, to: i64, cmid: &str) -> Value {
        let (s, b) = self
            .call("POST", "/v1/messages", Some(token), Some(json!({"client_msg_id": cmid, "to": {"kind": "user", "id": to}, "type": "text", "body": cmid})))
            .await;
        assert_eq!(s, 201, "{b:?}");
        b
    }

    /// Opens a socket; auth by header (or by query when `by_query`).
    async fn ws(&self, token: &str, since: Option<u64>, by_query: bool) -> Ws {
        let host = self.base.trim_start_matches("http://");
        let mut url = format!("ws://{host}/v1/ws?");
        if let Some(s) = since {
            url.push_str(&format!("since={s}&"));
        }
        if by_query {
            url.push_str(&format!("access_token={token}"));
        }
        let mut req = url.into_client_request().unwrap();
        if !by_query {
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
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
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame within 10 s")?;
        match msg {
            Ok(Message::Binary(b)) => {
                return Some(Ok(ServerFrame::decode(b.as_ref())
                    .unwrap()
                    .payload
                    .unwrap()));
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

#[tokio::test]
async fn chat_end_to_end_over_http_and_websocket() {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &[]);
    let (a, a_phone) = rt.user("alice", "phone").await;
    let (_, a_laptop) = rt.user("alice", "laptop").await;
    let (b, b_tok) = rt.user("bob", "phone").await;
    let mut bob = rt.ws(&b_tok, Some(0), false).await;
    let mut laptop = rt.ws(&a_laptop, Some(0), true).await;
    assert!(handshake(&mut bob).await.is_empty());
    assert!(handshake(&mut laptop).await.is_empty());

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
        assert_eq!(
            e.body_json.as_deref(),
            Some(format!("\"hello-{i}\"").as_str())
        );
        // The sender's other device gets it too, at the sender's own seq.
        let e = next_event(&mut laptop).await;
        assert_eq!(Some(e.seq), s["seq"].as_u64());
        assert_eq!(e.msg_id.as_deref(), s["msg_id"].as_str());
    }

    // Heartbeat → Pong.
    let hb = ClientFrame {
        payload: Some(client_frame::Payload::Heartbeat(Heartbeat { ts: 42 })),
    };
    bob.send(Message::Binary(hb.encode_to_vec().into()))
        .await
        .unwrap();
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
    assert_eq!(
        next_event(&mut laptop).await.msg_id.as_deref(),
        live["msg_id"].as_str()
    );
    // Read receipts are pushed too.
    let conv = live["conversation_id"].as_str().unwrap();
    let (s, _) = rt
        .call(
            "POST",
            &format!("/v1/conversations/{conv}/read"),
            Some(&b_tok),
            Some(json!({"seq": 6})),
        )
        .await;
    assert_eq!(s, 200);
    let e = next_event(&mut laptop).await;
    assert_eq!(e.kind, "read");
    assert!(e.extra_json.contains("\"read_seq\":6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_stream_without_gap_or_duplicate() {
    let dir = TempDir::new().unwrap();
    let rt = std::sync::Arc::new(Runtime::start(dir.path(), &[]));
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
                ids.push(
                    rt.send(&tok, b, &format!("w{s}-{i}")).await["msg_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
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
        assert_eq!(
            e.seq, expected,
            "push must stream in seq order without gaps"
        );
        assert!(seen.insert(e.msg_id.unwrap()), "duplicate delivery");
    }
    assert_eq!(seen, acked);
}

#[tokio::test]
async fn logout_closes_that_devices_sockets_only() {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &[]);
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
    let host = rt.base.trim_start_matches("http://");
    let err = tokio_tungstenite::connect_async(format!("ws://{host}/v1/ws?access_token={b1}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("ws://{host}/v1/ws"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn silent_sockets_time_out_and_heartbeats_keep_them_open() {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::start(dir.path(), &[("FEIGE_WS_IDLE_SECS", "2")]);
    let (_, tok) = rt.user("sleepy", "d").await;
    let mut silent = rt.ws(&tok, None, false).await;
    let mut chatty = rt.ws(&tok, None, false).await;
    handshake(&mut silent).await;
    handshake(&mut chatty).await;
    let start = std::time::Instant::now();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hb = ClientFrame {
            payload: Some(client_frame::Payload::Heartbeat(Heartbeat { ts: i })),
        };
        chatty
            .send(Message::Binary(hb.encode_to_vec().into()))
            .await
            .unwrap();
        assert!(matches!(
            expect_payload(&mut chatty).await,
            Payload::Pong(_)
        ));
    }
    let (reason, code) = expect_close(&mut silent).await;
    assert_eq!(
        (reason.as_deref(), code),
        (Some("idle_timeout"), Some(CloseCode::from(4000)))
    );
    assert!(
        start.elapsed() >= Duration::from_millis(2900),
        "the heartbeating socket outlived the timeout"
    );
}

#[tokio::test]
async fn data_survives_a_restart_and_sigterm_drains_sockets() {
    let dir = TempDir::new().unwrap();
    let mut rt = Runtime::start(dir.path(), &[]);
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
    assert_eq!(
        (reason.as_deref(), code),
        (Some("shutdown"), Some(CloseCode::Restart))
    );
    drop(rt);

    let rt = Runtime::start(dir.path(), &[]);
    let (s, me) = rt.call("GET", "/v1/users/me", Some(&b_tok), None).await;
    assert_eq!(
        (s, me["username"].as_str()),
        (200, Some("persist-b")),
        "tokens survive a restart"
    );
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
