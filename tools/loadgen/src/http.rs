//! The HTTP side: register and log in, create groups, send, sync.

use crate::state::{Shared, To, User, lock};
use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Password of every load-generator user.
const PASSWORD: &str = "loadgen-password-1";
/// Device id of every load-generator login.
const DEVICE: &str = "loadgen";

/// An HTTP client for a local server.
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let mut req = http.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| anyhow!("POST {url}: {}", request_error(&e)))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| anyhow!("POST {url}: reading the answer: {}", request_error(&e)))?;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, v))
}

/// `post`, retried twice after a transport error (a keep-alive connection the server closed
/// just as the request went out). Only for set-up requests.
async fn post_retried(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<(u16, Value, u32)> {
    let mut attempt = 0;
    loop {
        match post(http, url, None, body).await {
            Ok((status, v)) => return Ok((status, v, attempt)),
            Err(e) if attempt >= 2 => return Err(e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
}

/// Registers `username` and logs it in on the load generator's device.
pub(crate) async fn user(http: &reqwest::Client, base: &str, username: &str) -> anyhow::Result<User> {
    let (status, v, retried) =
        post_retried(http, &format!("{base}/v1/auth/register"), &json!({"username": username, "password": PASSWORD}))
            .await?;
    // A retried register whose first attempt went through finds the name taken.
    if status != 201 && !(retried > 0 && status == 409) {
        bail!("register {username}: HTTP {status}: {v}");
    }
    let (status, v, _) = post_retried(
        http,
        &format!("{base}/v1/auth/login"),
        &json!({"username": username, "password": PASSWORD, "device_id": DEVICE, "platform": "loadgen"}),
    )
    .await?;
    if status != 200 {
        bail!("login {username}: HTTP {status}: {v}");
    }
    let id = v["user_id"].as_i64().ok_or_else(|| anyhow!("login {username}: no user_id in {v}"))?;
    let token = v["access_token"].as_str().ok_or_else(|| anyhow!("login {username}: no access_token in {v}"))?;
    Ok(User { id, token: token.to_owned() })
}

/// Creates a group owned by `owner` with `others`; returns its id.
pub(crate) async fn group(
    http: &reqwest::Client,
    base: &str,
    owner: &User,
    others: &[i64],
    name: &str,
) -> anyhow::Result<i64> {
    let (status, v) =
        post(http, &format!("{base}/v1/groups"), Some(&owner.token), &json!({"name": name, "members": others})).await?;
    if status != 201 {
        bail!("create group: HTTP {status}: {v}");
    }
    let members = v["members"].as_array().map_or(0, Vec::len);
    if members != others.len() + 1 {
        bail!("create group: {members} members instead of {}: {v}", others.len() + 1);
    }
    v["group_id"].as_i64().ok_or_else(|| anyhow!("create group: no group_id in {v}"))
}

/// Sends one message from `sender` to `to`, timed from `scheduled` (the run's clock, so that
/// a late start under `--rate` counts as latency). Counts it in the ledger when acked (201),
/// as an error otherwise.
pub(crate) async fn send(sh: &Shared, sender: usize, to: To, scheduled: Instant) {
    let key = sh.next_key.fetch_add(1, Ordering::Relaxed);
    let at_us = scheduled.saturating_duration_since(sh.origin).as_micros() as u64;
    let (kind, id) = match to {
        To::User(u) => ("user", sh.users[u].id),
        To::Group(g) => ("group", sh.groups[g].id),
    };
    let body = json!({
        "client_msg_id": format!("{}-{key}", sh.tag),
        "to": {"kind": kind, "id": id},
        "type": "text",
        "body": sh.body(key, at_us),
    });
    sh.c.send_attempts.fetch_add(1, Ordering::Relaxed);
    let res = sh.http.post(sh.target.send_url.clone()).bearer_auth(&sh.users[sender].token).json(&body).send().await;
    let resp = match res {
        Ok(r) => r,
        Err(e) => return sh.error(format!("send: {}", request_error(&e))),
    };
    let status = resp.status().as_u16();
    let answer = resp.bytes().await;
    let took = scheduled.elapsed();
    match (status, answer) {
        (201, Ok(_)) => {
            lock(&sh.send_lat).saturating_record((took.as_micros() as u64).max(1));
            sh.acked(key, sender, to);
        }
        // Each key is sent once: a 200 (idempotent replay) would mean a client_msg_id clash.
        (200, Ok(_)) => sh.error("send: HTTP 200 (client_msg_id already used)"),
        (status, Ok(b)) => {
            let code = serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            sh.error(format!("send: HTTP {status} {code}"));
        }
        (_, Err(e)) => sh.error(format!("send: reading the answer: {}", request_error(&e))),
    }
}

fn request_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connect failed".into()
    } else {
        // The whole cause chain ("error sending request" alone says little), without the URL.
        let mut s =
            e.to_string().replace(&format!(" for url ({})", e.url().map(|u| u.as_str()).unwrap_or_default()), "");
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            s = format!("{s}: {c}");
            cause = c.source();
        }
        s
    }
}

#[derive(Deserialize)]
struct SyncPage {
    events: Vec<SyncEvent>,
    next: u64,
    has_more: bool,
}

#[derive(Deserialize)]
struct SyncEvent {
    seq: u64,
    kind: String,
    #[serde(default)]
    body: Value,
}

/// Pages `GET /v1/sync` for receiver `rid` from its cursor until `has_more` is false. False
/// when a request failed (counted as an error) or the run was cancelled.
pub(crate) async fn sync_all(sh: &Shared, rid: usize) -> bool {
    let token = &sh.users[sh.receivers[rid].user].token;
    let mut since = lock(&sh.receivers[rid].state).cursor.unwrap_or(0);
    loop {
        if sh.root.is_cancelled() {
            return false;
        }
        let url = format!("{}/v1/sync?since={since}&limit=500", sh.target.http_base);
        let t = Instant::now();
        sh.c.sync_requests.fetch_add(1, Ordering::Relaxed);
        let resp = match sh.http.get(&url).bearer_auth(token).send().await {
            Ok(r) => r,
            Err(e) => {
                sh.error(format!("sync: {}", request_error(&e)));
                return false;
            }
        };
        let status = resp.status().as_u16();
        let page = match resp.bytes().await {
            Ok(b) if status == 200 => serde_json::from_slice::<SyncPage>(&b),
            Ok(_) => {
                sh.error(format!("sync: HTTP {status}"));
                return false;
            }
            Err(e) => {
                sh.error(format!("sync: reading the answer: {}", request_error(&e)));
                return false;
            }
        };
        lock(&sh.sync_lat).saturating_record((t.elapsed().as_micros() as u64).max(1));
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                sh.error(format!("sync: undecodable page: {e}"));
                return false;
            }
        };
        for e in &page.events {
            sh.on_event(rid, e.seq, &e.kind, e.body.as_str());
        }
        if page.next < since {
            sh.error("sync: next went backwards");
            return false;
        }
        since = page.next;
        if !page.has_more {
            return true;
        }
    }
}
