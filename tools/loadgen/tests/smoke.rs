//! Each scenario for a second or two against an in-process Feige server on embedded backends,
//! started the way local-runtime does: nothing lost, duplicated or misdelivered, no errors,
//! and something delivered.

#![allow(clippy::unwrap_used)]

use feige_core::Config;
use feige_loadgen::{Options, Report, Scenario};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running server: its base URL; stops when dropped.
struct Server {
    url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn server() -> Server {
    server_with(true).await
}

/// `deliver`: whether bus pushes reach the sockets (false: a broken server that never pushes).
async fn server_with(deliver: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let config = Config::from_lookup(|k| match k {
        "FEIGE_LISTEN" => Some("127.0.0.1:0".into()),
        "FEIGE_DATA_DIR" => Some(data.clone()),
        "FEIGE_NODE_ID" => Some("loadgen-smoke".into()),
        "FEIGE_SEND_RATE_PER_SEC" | "FEIGE_LOGIN_RATE_PER_MIN" => Some("0".into()),
        // Short enough that sockets that did not heartbeat would be closed during the test.
        "FEIGE_WS_IDLE_SECS" => Some("3".into()),
        _ => None,
    })
    .unwrap();
    let (feige, backends) = feige_backends::build(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let ctx = feige_push::start(&feige, backends.bus_is_shared(), shutdown.clone()).await.unwrap();
    let feed = if deliver {
        Some(feige_backends::deliver_pushes_to(&backends, ctx.sink.clone(), shutdown.clone()).await.unwrap())
    } else {
        None
    };
    let router = feige_api::all_actions().merge(feige_push::router(ctx));
    let app = feige_api::finish(router, feige);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _keep = (feed, backends);
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    });
    Server { url: format!("http://{addr}"), shutdown, _dir: dir }
}

/// Small defaults: 20 users, 40 sockets over two source addresses, a second of load.
fn options(scenario: Scenario, url: &str) -> Options {
    let mut o = Options::new(scenario, url);
    o.users = 20;
    o.sockets = Some(40);
    o.source_ips = 2;
    o.concurrency = 4;
    o.duration = Duration::from_millis(1500);
    o.group_size = 10;
    o.messages = 200;
    o.grace = Duration::from_secs(5);
    o.settle = Duration::from_millis(200);
    o.setup_timeout = Duration::from_secs(30);
    o.timeout = Duration::from_secs(60);
    o.quiet = true;
    o.server_pid = Some(std::process::id());
    o
}

fn assert_clean(r: &Report) {
    println!("{r}");
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.errors, 0, "{:?}", r.error_kinds);
    assert_eq!(r.lost, 0);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.misdelivered, 0);
    assert_eq!(r.out_of_order, 0);
    assert!(r.sends > 0);
    assert!(r.deliveries > 0);
    assert_eq!(r.deliveries, r.expected_deliveries);
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["lost"], 0);
    assert!(json["send_latency_ms"]["p99"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct() {
    let s = server().await;
    let r = feige_loadgen::run(options(Scenario::Direct, &s.url)).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.source_ips, 2);
    // Every direct message is owed to every socket of sender and recipient (2 each).
    assert_eq!(r.expected_deliveries, r.sends * 4);
    assert!(r.e2e_latency_ms.is_some());
    assert!(r.server.as_ref().unwrap().cpu_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_at_a_fixed_rate() {
    let s = server().await;
    let mut o = options(Scenario::Direct, &s.url);
    o.rate = 100.0;
    o.concurrency = 16;
    o.duration = Duration::from_secs(1);
    let r = feige_loadgen::run(o).await.unwrap();
    assert_clean(&r);
    // Never above the rate; below it only if the (shared, busy) machine cannot keep up.
    assert!((10..=101).contains(&r.sends), "{} sends at 100/s for 1 s", r.sends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group() {
    let s = server().await;
    let r = feige_loadgen::run(options(Scenario::Group, &s.url)).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.groups, 2);
    assert_eq!(r.group_size, 10);
    // 10 members with 2 sockets each.
    assert_eq!(r.expected_deliveries, r.sends * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle() {
    let s = server().await;
    let mut o = options(Scenario::Idle, &s.url);
    // Past the server's 3 s idle timeout: only heartbeats keep the sockets open.
    o.duration = Duration::from_secs(4);
    let r = feige_loadgen::run(o).await.unwrap();
    assert_clean(&r);
    let idle = r.idle.as_ref().unwrap();
    assert_eq!(idle.sockets, 40);
    assert!(idle.pongs >= 40, "{} heartbeats answered", idle.pongs);
    assert!(idle.server_bytes_per_socket.is_some());
    assert_eq!(r.ws_unexpected_closes, 0);
    assert_eq!(r.ws_connects, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect() {
    let s = server().await;
    let r = feige_loadgen::run(options(Scenario::Reconnect, &s.url)).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.sends, 200);
    assert!(r.caught_up_s.is_some());
    assert_eq!(r.ws_connects, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup() {
    let s = server().await;
    let r = feige_loadgen::run(options(Scenario::Catchup, &s.url)).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.sends, 200);
    // One sync reader per user, owed each message as sender and as recipient.
    assert_eq!(r.expected_deliveries, 400);
    assert!(r.caught_up_s.is_some());
    assert!(r.sync_requests >= 20);
}

/// The checks can fail: against a server whose sockets never get live pushes, every owed
/// delivery is lost and the run fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_pushes_fails_the_run() {
    let s = server_with(false).await;
    let mut o = options(Scenario::Direct, &s.url);
    o.duration = Duration::from_millis(500);
    o.grace = Duration::from_millis(500);
    let r = feige_loadgen::run(o).await.unwrap();
    println!("{r}");
    assert!(!r.passed);
    assert!(r.sends > 0);
    assert_eq!(r.deliveries, 0);
    assert_eq!(r.lost, r.expected_deliveries);
    assert!(r.failures.iter().any(|f| f.contains("lost")), "{:?}", r.failures);
}

#[tokio::test]
async fn refuses_other_hosts() {
    for url in ["http://10.1.2.3:8080", "http://example.com", "http://192.168.0.1"] {
        let err = feige_loadgen::run(Options::new(Scenario::Direct, url)).await.unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}

#[tokio::test]
async fn no_server_is_an_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut o = Options::new(Scenario::Direct, &url);
    o.quiet = true;
    let err = tokio::time::timeout(Duration::from_secs(20), feige_loadgen::run(o)).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("no Feige server"), "{err}");
}
