//! Test helpers shared by the HTTP test files: an in-process app on a fresh data directory.

#![allow(clippy::unwrap_used, dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use feige_core::Config;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use tempfile::TempDir;
use tower::ServiceExt;

pub struct App {
    pub router: Router,
    pub feige: feige_core::Feige,
    _dir: TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

pub async fn app_with(extra: &[(&str, &str)]) -> App {
    let dir = TempDir::new().unwrap();
    let mut env: HashMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.insert("FEIGE_DATA_DIR".into(), dir.path().display().to_string());
    env.entry("FEIGE_SEND_RATE_PER_SEC".into()).or_insert("0".into());
    env.entry("FEIGE_LOGIN_RATE_PER_MIN".into()).or_insert("0".into());
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let (feige, _bus) = feige_store::build(config).await.unwrap();
    App { router: feige_api::app(feige.clone()), feige, _dir: dir }
}

pub async fn app() -> App {
    app_with(&[]).await
}

impl App {
    pub async fn raw(&self, method: &str, path: &str, token: Option<&str>, body: Body) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp { status, headers, body }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
        self.raw(method, path, token, body).await
    }

    /// Registers and logs in; returns (user_id, access_token, refresh_token).
    pub async fn user(&self, name: &str) -> (i64, String, String) {
        self.user_on(name, "dev-1").await
    }

    pub async fn user_on(&self, name: &str, device: &str) -> (i64, String, String) {
        let r = self
            .call("POST", "/v1/auth/register", None, Some(json!({"username": name, "password": "password-1"})))
            .await;
        assert!(r.status == StatusCode::CREATED || r.body["error"]["code"] == "username_taken", "{:?}", r.body);
        self.login(name, device).await
    }

    pub async fn login(&self, name: &str, device: &str) -> (i64, String, String) {
        let r = self
            .call(
                "POST",
                "/v1/auth/login",
                None,
                Some(json!({"username": name, "password": "password-1", "device_id": device})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        (
            r.body["user_id"].as_i64().unwrap(),
            r.body["access_token"].as_str().unwrap().into(),
            r.body["refresh_token"].as_str().unwrap().into(),
        )
    }

    pub async fn send(&self, token: &str, to: i64, cmid: &str, text: &str) -> Resp {
        self.call(
            "POST",
            "/v1/messages",
            Some(token),
            Some(json!({"client_msg_id": cmid, "to": {"kind": "user", "id": to}, "type": "text", "body": text})),
        )
        .await
    }

    /// Syncs from `since` until has_more is false.
    pub async fn sync_all(&self, token: &str, since: u64) -> (Vec<Value>, u64) {
        let mut cursor = since;
        let mut events = Vec::new();
        loop {
            let r = self.call("GET", &format!("/v1/sync?since={cursor}&limit=50"), Some(token), None).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            events.extend(r.body["events"].as_array().unwrap().iter().cloned());
            cursor = r.body["next"].as_u64().unwrap();
            if !r.body["has_more"].as_bool().unwrap() {
                return (events, cursor);
            }
        }
    }
}

pub fn code(r: &Resp) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("<no error code>")
}

impl App {
    /// Creates users straight in the store (no password hashing): for tests that need hundreds.
    pub async fn bulk_users(&self, prefix: &str, n: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let u = self.feige.ports.users.create_user(&format!("{prefix}{i}"), "bulk", "not-a-hash", 0).await.unwrap();
            ids.push(u.user_id.0);
        }
        ids
    }

    /// Every event of a user from seq 0.
    pub async fn events(&self, token: &str) -> Vec<Value> {
        self.sync_all(token, 0).await.0
    }
}

/// The kinds of a list of events, in order.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_owned()).collect()
}
