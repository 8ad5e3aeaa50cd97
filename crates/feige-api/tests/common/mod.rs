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
    /// (server URL, database) of a MySQL database to drop with the app.
    mysql: Option<(String, String)>,
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
    App { router: feige_api::app(feige.clone()), feige, mysql: None, _dir: dir }
}

/// Which relational database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Mysql,
}

/// An app on SQLite (embedded) or on a fresh MySQL database (`FEIGE_TEST_MYSQL_URL`).
pub async fn app_on(db: Db, extra: &[(&str, &str)]) -> App {
    match db {
        Db::Sqlite => app_with(extra).await,
        Db::Mysql => {
            let server = std::env::var("FEIGE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
            let name = format!("feige_t_api{}", uuid_like());
            let url = format!("{server}/{name}");
            let mut all: Vec<(&str, &str)> = extra.to_vec();
            all.push(("FEIGE_DB_URL", &url));
            let mut app = app_with(&all).await;
            app.mysql = Some((server, name));
            app
        }
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}{}{}", std::process::id(), t.as_secs() % 100_000, t.subsec_nanos())
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some((server, db)) = &self.mysql {
            let host_port = server.trim_start_matches("mysql://").rsplit('@').next().unwrap_or("127.0.0.1:3306");
            let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
            let _ = std::process::Command::new("mariadb")
                .args(["-uroot", "-h", host, "-P", port, "-e", &format!("DROP DATABASE IF EXISTS `{db}`")])
                .status();
        }
    }
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
