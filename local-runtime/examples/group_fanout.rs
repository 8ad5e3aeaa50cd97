//! Times sends to one large group against a running server: the cost of write diffusion.
//!
//! ```sh
//! cargo run --release -p local-runtime --example group_fanout -- http://127.0.0.1:8080 500 50
//! ```
//! Arguments: base URL, group size including the sender (default 500), sends (default 50).
//! Each send is one history row plus one timeline entry and one push per member.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "{status}: {v}");
    Ok(v)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let size: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500).clamp(2, 500);
    let sends: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(50).max(1);
    let http = reqwest::Client::new();
    let run = std::process::id();
    let t = Instant::now();
    let mut ids = Vec::with_capacity(size);
    for i in 0..size {
        let v = post(
            &http,
            format!("{base}/v1/auth/register"),
            None,
            json!({"username": format!("fan{run}u{i}"), "password": "password-1"}),
        )
        .await?;
        ids.push(v["user_id"].as_i64().unwrap_or_default());
    }
    let login = post(
        &http,
        format!("{base}/v1/auth/login"),
        None,
        json!({"username": format!("fan{run}u0"), "password": "password-1"}),
    )
    .await?;
    let token = login["access_token"].as_str().unwrap_or_default().to_owned();
    let group =
        post(&http, format!("{base}/v1/groups"), Some(&token), json!({"name": "fanout", "members": ids[1..]})).await?;
    let gid = group["group_id"].as_i64().unwrap_or_default();
    println!(
        "set-up: {size} users and a group of {} in {:.1}s",
        group["members"].as_array().map_or(0, Vec::len),
        t.elapsed().as_secs_f64()
    );
    let mut lat: Vec<Duration> = Vec::with_capacity(sends);
    let start = Instant::now();
    for i in 0..sends {
        let t = Instant::now();
        let body = json!({"client_msg_id": format!("g{i}"), "to": {"kind": "group", "id": gid}, "type": "text", "body": "to everyone"});
        post(&http, format!("{base}/v1/messages"), Some(&token), body).await?;
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{sends} sends to a {size}-member group in {:.2}s: {:.1} sends/s = {:.0} timeline writes/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        sends as f64 / elapsed.as_secs_f64(),
        (sends * size) as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
