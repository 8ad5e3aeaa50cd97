//! The push tier as a cluster, end to end: a Kafka-compatible broker (tansu), MySQL, MongoDB
//! (jongodb) and Redis at the `FEIGE_TEST_*_URL` addresses `scripts/services` starts; the API
//! as `local-runtime` with `FEIGE_ROLE=api` publishing to Kafka; and several `push-tier`
//! processes sharing one consumer group, each test with its own database, key prefix, topic
//! and group. A missing service fails the test.
//!
//! Clients behave like real ones: every device keeps one cursor, and when its socket dies it
//! reconnects to another node with `since=cursor`. Each device records every event it was
//! sent; a seq seen twice is a duplicate, a seq that skips one is a loss.

#![allow(clippy::unwrap_used)]

use feige_proto::v1::{ServerFrame, server_frame::Payload};
use feige_testkit::http::Api;
use futures::StreamExt;
use prost::Message as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// Generous bound for "everything arrived", which may include a consumer-group rebalance
/// after a node was killed (`FEIGE_KAFKA_SESSION_TIMEOUT_MS` below).
const SETTLE: Duration = Duration::from_secs(60);
const SESSION_TIMEOUT_MS: &str = "6000";

fn test_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A sibling binary of this package's (local-runtime is built by `cargo nextest run --workspace`).
fn sibling_binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_push-tier")).with_file_name(name);
    assert!(path.exists(), "{} is missing: build it first (cargo build -p local-runtime)", path.display());
    path
}

/// One spawned process, killed when dropped.
struct Proc {
    child: Child,
    /// Kept open: the mock broker serves until its stdin closes.
    _stdin: Option<std::process::ChildStdin>,
    /// `host:port` from its banner.
    addr: String,
}

impl Proc {
    fn spawn(bin: &std::path::Path, args: &[&str], env: &[(String, String)]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::piped());
        // FEIGE_TEST_CHILD_LOG=info shows what the processes do (rebalances, forwards).
        let log = std::env::var("FEIGE_TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into());
        cmd.env("FEIGE_LISTEN", "127.0.0.1:0").env("RUST_LOG", log).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .expect("process exited before listening (is every backend up? see stderr)")
            .unwrap();
        let stdin = child.stdin.take();
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("odd banner: {line}"))
            .to_owned();
        Proc { child, _stdin: stdin, addr }
    }

    fn signal(&self, sig: &str) {
        Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
    }

    /// Waits for the exit after SIGTERM; panics past 15 s.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("process did not stop within 15 s");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which Kafka-compatible broker a cluster runs on.
#[derive(Clone, Copy)]
enum Broker {
    /// tansu, at `FEIGE_TEST_KAFKA_URL` (a real broker process).
    Tansu,
    /// librdkafka's mock cluster in its own process (`feige-kafka-mock`): the crash test needs
    /// a group coordinator that hands a dead member's partitions to the survivors.
    Mock,
}

/// The API and N push nodes on shared real backends.
/// Fields drop in order: push nodes first, then the API, the broker last.
struct Cluster {
    /// Push nodes' addresses; None once stopped. Devices pick their node from here.
    nodes: Arc<Mutex<Vec<Option<String>>>>,
    procs: Mutex<Vec<Option<Proc>>>,
    /// The API process (kept alive; killed on drop).
    _api_proc: Proc,
    api: Api,
    http: reqwest::Client,
    mysql_db: (String, String),
    _broker: Option<Proc>,
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Cluster {
    fn start(nodes: usize, broker: Broker, extra: &[(&str, &str)]) -> Cluster {
        let id = format!(
            "{}{:04}{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_micros() % 10_000,
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mysql = test_url("FEIGE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306");
        let mongo = test_url("FEIGE_TEST_MONGO_URL", "mongodb://127.0.0.1:27217");
        let db = format!("feige_e2e_c{id}");
        let topic = format!("feige-cluster-{id}");
        let (bus, broker) = match broker {
            Broker::Tansu => (test_url("FEIGE_TEST_KAFKA_URL", "kafka://127.0.0.1:19092"), None),
            Broker::Mock => {
                let mock = Proc::spawn(&sibling_binary("feige-kafka-mock"), &[&topic, "12"], &[]);
                (format!("kafka://{}", mock.addr), Some(mock))
            }
        };
        let mut env: Vec<(String, String)> = vec![
            ("FEIGE_DB_URL".into(), format!("{mysql}/{db}")),
            ("FEIGE_TIMELINE_URL".into(), format!("{mongo}/{db}?serverSelectionTimeoutMS=3000")),
            ("FEIGE_CACHE_URL".into(), test_url("FEIGE_TEST_REDIS_URL", "redis://127.0.0.1:6379")),
            ("FEIGE_CACHE_PREFIX".into(), format!("cluster-{id}:")),
            ("FEIGE_BUS_URL".into(), bus),
            ("FEIGE_KAFKA_TOPIC".into(), topic),
            ("FEIGE_KAFKA_GROUP".into(), format!("feige-cluster-{id}")),
            ("FEIGE_KAFKA_SESSION_TIMEOUT_MS".into(), SESSION_TIMEOUT_MS.into()),
            // Every process of a deployment shares the token secret.
            ("FEIGE_TOKEN_SECRET".into(), format!("cluster-test-secret-{id}")),
            ("FEIGE_SEND_RATE_PER_SEC".into(), "0".into()),
            ("FEIGE_WS_IDLE_SECS".into(), "300".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut api_env = env.clone();
        api_env.push(("FEIGE_ROLE".into(), "api".into()));
        let api = Proc::spawn(&sibling_binary("local-runtime"), &[], &api_env);
        let mut procs = Vec::new();
        for i in 0..nodes {
            let mut node_env = env.clone();
            node_env.push(("FEIGE_NODE_ID".into(), format!("node-{i}")));
            node_env.push(("FEIGE_INTERNAL_LISTEN".into(), "127.0.0.1:0".into()));
            procs.push(Some(Proc::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_push-tier")), &[], &node_env)));
        }
        let nodes = Arc::new(Mutex::new(procs.iter().map(|p| p.as_ref().map(|p| p.addr.clone())).collect()));
        let procs = Mutex::new(procs);
        let api_client = Api::new(format!("http://{}", api.addr));
        Cluster {
            _api_proc: api,
            api: api_client,
            nodes,
            procs,
            http: reqwest::Client::new(),
            mysql_db: (mysql, db),
            _broker: broker,
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.api.call(method, path, token, body).await
    }

    /// Registers `name` (once) and logs in a device; returns (user id, access token).
    async fn login(&self, name: &str, device: &str, platform: &str) -> (i64, String) {
        let (s, _) = self
            .call("POST", "/v1/auth/register", None, Some(json!({"username": name, "password": "password-1"})))
            .await;
        assert!(s == 201 || s == 409, "register {name}: {s}");
        let body = json!({"username": name, "password": "password-1", "device_id": device, "platform": platform});
        let (s, b) = self.call("POST", "/v1/auth/login", None, Some(body)).await;
        assert_eq!(s, 200, "{b:?}");
        (b["user_id"].as_i64().unwrap(), b["access_token"].as_str().unwrap().to_owned())
    }

    async fn send(&self, token: &str, to: Value, text: &str) {
        let body = json!({"client_msg_id": text, "to": to, "type": "text", "body": text});
        let (s, b) = self.call("POST", "/v1/messages", Some(token), Some(body)).await;
        assert_eq!(s, 201, "{b:?}");
    }

    /// The user's newest seq, from sync (the truth).
    async fn max_seq(&self, token: &str) -> u64 {
        let mut since = 0;
        loop {
            let (s, b) = self.call("GET", &format!("/v1/sync?since={since}&limit=500"), Some(token), None).await;
            assert_eq!(s, 200, "{b:?}");
            since = b["next"].as_u64().unwrap();
            if !b["has_more"].as_bool().unwrap() {
                return since;
            }
        }
    }

    /// Stops node `i` with a signal (`KILL` or `TERM`); devices reconnect elsewhere.
    fn stop_node(&self, i: usize, sig: &str) -> Option<std::process::ExitStatus> {
        self.nodes.lock().unwrap()[i] = None;
        let mut proc = self.procs.lock().unwrap()[i].take().unwrap();
        proc.signal(sig);
        (sig == "TERM").then(|| proc.wait_exit())
    }

    /// Sum of a Prometheus counter over every live push node (all label sets).
    async fn node_metric(&self, name: &str) -> f64 {
        let mut total = 0.0;
        let nodes: Vec<String> = self.nodes.lock().unwrap().iter().flatten().cloned().collect();
        for addr in nodes {
            let text = self.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
            total += text
                .lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let (server, db) = &self.mysql_db;
        let host_port = server.trim_start_matches("mysql://").split('@').next_back().unwrap_or("127.0.0.1:3306");
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h", host, "-P", port, "-e", &format!("DROP DATABASE IF EXISTS `{db}`")])
            .status();
    }
}

/// What one device saw over all its sockets.
#[derive(Default, Debug)]
struct Seen {
    seqs: Vec<u64>,
    duplicates: Vec<u64>,
    /// (expected, got) where a seq was skipped.
    gaps: Vec<(u64, u64)>,
    /// Nodes it connected to, in order.
    connects: Vec<String>,
    /// Replays completed (`Synced` frames): the socket is registered, presence included.
    synced: usize,
    /// Close codes (0 = connection dropped without a close frame) and kicked reasons.
    closes: Vec<(u16, String)>,
    /// Set when the device stopped for good (logged out or replaced).
    ended: bool,
}

impl Seen {
    fn last(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }
}

/// A device: keeps one socket open to its preferred node (or the next live one), and
/// reconnects with `since=cursor` whenever the socket dies, until logged out or replaced.
struct Device {
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    fn connect(cluster: &Cluster, token: &str, node: usize) -> Device {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(device_loop(seen.clone(), token.to_owned(), node, cluster.nodes.clone(), stop.clone()));
        Device { seen, stop, task }
    }

    /// Waits until this device has seen everything up to `seq` (or has ended).
    async fn wait_for(&self, seq: u64, what: &str) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while self.seen.lock().unwrap().last() < seq && !self.seen.lock().unwrap().ended {
            assert!(tokio::time::Instant::now() < deadline, "{what}: stuck at {:?}", self.seen.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the device stopped for good; returns its last close.
    async fn wait_ended(&self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !self.seen.lock().unwrap().ended {
            assert!(tokio::time::Instant::now() < deadline, "still open: {:?}", self.seen.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.seen.lock().unwrap().closes.last().cloned().unwrap()
    }

    /// Exactly 1..=max, once each, in order, and nothing else.
    fn assert_exactly(&self, max: u64, what: &str) {
        let seen = self.seen.lock().unwrap();
        assert!(seen.duplicates.is_empty(), "{what}: duplicates {:?}", seen.duplicates);
        assert!(seen.gaps.is_empty(), "{what}: gaps {:?}", seen.gaps);
        assert_eq!(seen.seqs, (1..=max).collect::<Vec<_>>(), "{what}");
    }

    async fn stop(self) -> Seen {
        self.stop.cancel();
        let _ = self.task.await;
        Arc::try_unwrap(self.seen).map(|m| m.into_inner().unwrap()).unwrap_or_default()
    }
}

async fn device_loop(
    seen: Arc<Mutex<Seen>>,
    token: String,
    mut node: usize,
    nodes: Arc<Mutex<Vec<Option<String>>>>,
    stop: CancellationToken,
) {
    loop {
        let target = {
            let nodes = nodes.lock().unwrap();
            (0..nodes.len()).map(|k| (node + k) % nodes.len()).find_map(|i| nodes[i].clone().map(|a| (i, a)))
        };
        let Some((index, addr)) = target else { return };
        node = index;
        let cursor = seen.lock().unwrap().last();
        let mut req = format!("ws://{addr}/v1/ws?since={cursor}").into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let mut ws = match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => ws,
            Err(_) => {
                // That node is going away: try the next one.
                node += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        seen.lock().unwrap().connects.push(addr.clone());
        let mut kicked = String::new();
        let close = loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = ws.next() => m,
            };
            match msg {
                Some(Ok(Message::Binary(b))) => match ServerFrame::decode(b.as_ref()).unwrap().payload.unwrap() {
                    Payload::Event(e) => {
                        let mut s = seen.lock().unwrap();
                        let last = s.last();
                        if e.seq <= last {
                            s.duplicates.push(e.seq);
                        } else {
                            if e.seq != last + 1 {
                                s.gaps.push((last + 1, e.seq));
                            }
                            s.seqs.push(e.seq);
                        }
                    }
                    Payload::Kicked(k) => kicked = k.reason,
                    Payload::Synced(_) => seen.lock().unwrap().synced += 1,
                    _ => {}
                },
                Some(Ok(Message::Close(c))) => break c.map_or(0, |c| u16::from(c.code)),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break 0,
            }
        };
        let mut s = seen.lock().unwrap();
        s.closes.push((close, kicked));
        if close == 4001 || close == 4002 {
            s.ended = true;
            return;
        }
        drop(s);
        // The node died or is restarting: go elsewhere.
        node += 1;
    }
}

/// Three nodes on tansu; three users with two devices each on different nodes; one-to-one and
/// group sends from several senders at once; a rolling restart (SIGTERM) of one node while
/// messages keep flowing; then a logout through the API closes that device's socket on
/// whichever node holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_device_gets_every_event_once_across_a_rolling_restart() {
    let cluster = Arc::new(Cluster::start(3, Broker::Tansu, &[]));
    let (users, devices) = three_users_on_three_nodes(&cluster).await;
    let status = node_failure_scenario(&cluster, &users, &devices, "TERM").await;
    assert!(status.is_some_and(|s| s.success()), "node 1 did not exit cleanly: {status:?}");
    // Node 1's sockets were told to reconnect (1012) rather than dropped.
    let restarted = devices.iter().filter(|d| d.seen.lock().unwrap().closes.iter().any(|c| c.0 == 1012)).count();
    assert_eq!(restarted, 2, "SIGTERM should close node 1's two sockets with 1012");

    // Logout across nodes: ann's laptop logs out through the API; its socket is on a push node.
    let (s, _) = cluster.call("POST", "/v1/auth/logout", Some(&users[0].2), None).await;
    assert_eq!(s, 204);
    assert_eq!(devices[1].wait_ended().await, (4001, "logged_out".to_owned()));
    assert!(!devices[0].seen.lock().unwrap().ended, "the other device stays connected");
    for d in devices {
        d.stop().await;
    }
}

/// The same with a crash: node 1 is SIGKILLed mid-stream. Its clients reconnect elsewhere with
/// since=cursor, its partitions move to the survivors after the session timeout, and still
/// every device ends with every event exactly once. On librdkafka's mock broker (see
/// `Broker::Mock` for why not tansu).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_device_gets_every_event_once_when_a_node_is_killed() {
    let cluster = Arc::new(Cluster::start(3, Broker::Mock, &[]));
    let (users, devices) = three_users_on_three_nodes(&cluster).await;
    node_failure_scenario(&cluster, &users, &devices, "KILL").await;
    let dropped = devices.iter().filter(|d| d.seen.lock().unwrap().closes.iter().any(|c| c.0 == 0)).count();
    assert_eq!(dropped, 2, "node 1's two sockets should have dropped");
    for d in devices {
        d.stop().await;
    }
}

type Users = Vec<(i64, String, String)>;

/// ann, bob and cyd, each with a phone and a laptop; device i of user u sits on node
/// (u + i) % 3, so every user spans two nodes. Returns the users (id, phone token, laptop
/// token) and the devices in the same order (ann's phone, ann's laptop, bob's phone, ...).
async fn three_users_on_three_nodes(cluster: &Cluster) -> (Users, Vec<Device>) {
    let mut users = Vec::new();
    for name in ["ann", "bob", "cyd"] {
        let (id, t1) = cluster.login(name, "phone", "ios").await;
        let (_, t2) = cluster.login(name, "laptop", "web").await;
        users.push((id, t1, t2));
    }
    let mut devices = Vec::new();
    for (u, (_, t1, t2)) in users.iter().enumerate() {
        devices.push(Device::connect(cluster, t1, u % 3));
        devices.push(Device::connect(cluster, t2, (u + 1) % 3));
    }
    (users, devices)
}

/// Sends in bursts (each user to the next and to a group of all three, concurrently), checks
/// that every device got exactly its user's events, stops node 1 with `sig` in the middle of a
/// burst, and checks again. Returns node 1's exit status for SIGTERM.
async fn node_failure_scenario(
    cluster: &Arc<Cluster>,
    users: &Users,
    devices: &[Device],
    sig: &str,
) -> Option<std::process::ExitStatus> {
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    let (s, g) =
        cluster.call("POST", "/v1/groups", Some(&users[0].1), Some(json!({"name": "trio", "members": ids}))).await;
    assert_eq!(s, 201, "{g:?}");
    let group = g["group_id"].as_i64().unwrap();
    let burst = |round: usize, count: usize| {
        let (cluster, users) = (cluster.clone(), users.clone());
        async move {
            let mut tasks = Vec::new();
            for (u, (_, token, _)) in users.iter().enumerate() {
                let cluster = cluster.clone();
                let (token, next) = (token.clone(), users[(u + 1) % users.len()].0);
                tasks.push(tokio::spawn(async move {
                    for k in 0..count {
                        let to = if k % 3 == 0 {
                            json!({"kind": "group", "id": group})
                        } else {
                            json!({"kind": "user", "id": next})
                        };
                        cluster.send(&token, to, &format!("r{round}-u{u}-k{k}")).await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    let check = |what: &'static str| async move {
        for (u, (_, token, _)) in users.iter().enumerate() {
            let max = cluster.max_seq(token).await;
            for d in &devices[2 * u..2 * u + 2] {
                d.wait_for(max, what).await;
                d.assert_exactly(max, what);
            }
        }
    };
    burst(0, 15).await;
    check("before the failure").await;
    let forwarded = cluster.node_metric("feige_push_forwarded_total{outcome=\"ok\"}").await;
    assert!(forwarded > 0.0, "no push crossed nodes: the routing was not exercised");

    let sending = tokio::spawn(burst(1, 15));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = cluster.stop_node(1, sig);
    sending.await.unwrap();
    check("after the failure").await;
    for d in devices {
        let seen = d.seen.lock().unwrap();
        assert!(seen.connects.len() <= 2, "reconnect loop: {seen:?}");
    }
    status
}

/// `FEIGE_KICK_POLICY=per_platform` across nodes: a second iOS socket on another node replaces
/// the first (kicked `replaced`, close 4002); the web socket stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_platform_kick_reaches_the_older_socket_on_another_node() {
    let cluster = Cluster::start(2, Broker::Tansu, &[("FEIGE_KICK_POLICY", "per_platform")]);
    let (_, ios_1) = cluster.login("kim", "iphone", "ios").await;
    let (_, web) = cluster.login("kim", "browser", "web").await;
    let (_, ios_2) = cluster.login("kim", "ipad", "ios").await;
    let first = Device::connect(&cluster, &ios_1, 0);
    let browser = Device::connect(&cluster, &web, 1);
    // A socket sends Synced after its presence entry is written: from then on a kick from
    // another node can find it. Then open the replacing socket on the *other* node.
    for d in [&first, &browser] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while d.seen.lock().unwrap().synced == 0 {
            assert!(tokio::time::Instant::now() < deadline, "device never synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let second = Device::connect(&cluster, &ios_2, 1);
    assert_eq!(first.wait_ended().await, (4002, "replaced".to_owned()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!browser.seen.lock().unwrap().ended, "another platform is not kicked");
    assert!(!second.seen.lock().unwrap().ended, "the new socket is not kicked");
    for d in [first, browser, second] {
        d.stop().await;
    }
}
