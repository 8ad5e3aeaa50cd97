//! A simple send loop: the baseline cost of `POST /v1/messages` against a running server.
//! Not the load generator (issue 7): one recipient, `C` concurrent senders, sequential sends
//! each, then sends/s and latency percentiles.
//!
//! ```sh
//! cargo run --release -p local-runtime --example send_loop -- http://127.0.0.1:8080 2000 8
//! ```
//! Arguments: base URL, number of sends (default 2000), concurrent senders (default 8).

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

async fn user(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<(i64, String)> {
    post(http, format!("{base}/v1/auth/register"), None, json!({"username": name, "password": "password-1"})).await?;
    let v =
        post(http, format!("{base}/v1/auth/login"), None, json!({"username": name, "password": "password-1"})).await?;
    Ok((v["user_id"].as_i64().unwrap_or_default(), v["access_token"].as_str().unwrap_or_default().to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let total: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let senders: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8).max(1);
    let http = reqwest::Client::new();
    let run = std::process::id();
    let (to, _) = user(&http, &base, &format!("loop{run}rcpt")).await?;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for s in 0..senders {
        let (http, base) = (http.clone(), base.clone());
        let (_, token) = user(&http, &base, &format!("loop{run}s{s}")).await?;
        let n = total / senders + usize::from(s < total % senders);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                let body = json!({"client_msg_id": format!("{s}-{i}"), "to": {"kind": "user", "id": to}, "type": "text", "body": "benchmark message"});
                post(&http, format!("{base}/v1/messages"), Some(&token), body).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(total);
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{} sends by {senders} senders in {:.2}s: {:.0} sends/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
