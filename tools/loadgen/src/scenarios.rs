//! Setting up (users, groups, sockets) and the five scenarios.

use crate::monitor::{Monitor, bar};
use crate::report::{IdleStats, Latency, Report};
use crate::state::{Group, Shared, To, User, lock};
use crate::{Options, Scenario, http, proc, target, ws};
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long closing every socket may take before the stragglers are aborted.
const CLOSE_ALL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(opts: Options, root: CancellationToken) -> anyhow::Result<Report> {
    let started_unix_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let setup_started = Instant::now();
    let setup_deadline = tokio::time::Instant::now() + opts.setup_timeout;
    let sh = Arc::new(prepare(opts, root, setup_deadline).await?);
    let mut r = Report {
        scenario: sh.opts.scenario.name().into(),
        url: sh.opts.url.clone(),
        started_unix_ms,
        users: sh.users.len(),
        sockets: sh.opts.socket_count(),
        groups: sh.groups.len(),
        group_size: sh.groups.first().map_or(0, |g| g.members.len()),
        concurrency: sh.opts.concurrency.max(1),
        target_rate: sh.opts.rate.max(0.0),
        duration_s: sh.opts.duration.as_secs_f64(),
        source_ips: sh.sources.len(),
        nofile_limit: sh.nofile_limit,
        ..Report::default()
    };
    let window = match sh.opts.scenario {
        Scenario::Direct | Scenario::Group => traffic(&sh, &mut r, setup_started, setup_deadline).await?,
        Scenario::Idle => idle(&sh, &mut r, setup_started, setup_deadline).await?,
        Scenario::Reconnect => reconnect(&sh, &mut r, setup_started, setup_deadline).await?,
        Scenario::Catchup => catchup(&sh, &mut r, setup_started).await?,
    };
    finish(&sh, &mut r, window);
    Ok(r)
}

/// A random run tag: the username prefix and the marker of this run's messages.
fn tag(opts: &Options) -> anyhow::Result<String> {
    match &opts.prefix {
        Some(p) if (2..=16).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok(p.clone()),
        Some(p) => bail!("--prefix {p:?}: 2-16 ASCII letters or digits"),
        None => Ok(format!("lg{}", (0..8).map(|_| fastrand::alphanumeric().to_ascii_lowercase()).collect::<String>())),
    }
}

async fn prepare(opts: Options, root: CancellationToken, deadline: tokio::time::Instant) -> anyhow::Result<Shared> {
    let target = target::loopback(&opts.url)?;
    let nofile = target::raise_nofile();
    let n = opts.user_count();
    let sockets = opts.socket_count();
    if nofile < sockets as u64 + 256 {
        bail!("the open-file limit is {nofile}, too low for {sockets} sockets (raise it with `ulimit -n`)");
    }
    if sockets == 0 && opts.scenario != Scenario::Catchup {
        bail!("{} needs at least one socket", opts.scenario.name());
    }
    if let Some(pid) = opts.server_pid
        && proc::sample(pid).is_none()
    {
        bail!("--server-pid {pid}: cannot read /proc/{pid} (no such process?)");
    }
    let sources = target::sources(opts.source_ips, sockets);
    let http = http::client()?;
    let tag = tag(&opts)?;
    let base = target.http_base.clone();
    let health = tokio::time::timeout(Duration::from_secs(10), http.get(format!("{base}/healthz")).send()).await;
    match health {
        Ok(Ok(resp)) if resp.status().is_success() => {}
        Ok(Ok(resp)) => bail!("{base}/healthz answered {}", resp.status()),
        Ok(Err(e)) => bail!("no Feige server at {base}: {}", e.without_url()),
        Err(_) => bail!("no answer from {base}/healthz within 10 s"),
    }

    let pb = bar(opts.quiet, Some(n as u64), "users");
    let register = futures::stream::iter(0..n)
        .map(|i| {
            let (http, base, pb) = (&http, &base, &pb);
            let name = format!("{tag}_{i}");
            async move {
                let u = http::user(http, base, &name).await;
                pb.inc(1);
                u
            }
        })
        .buffered(opts.setup_concurrency.max(1))
        .try_collect::<Vec<User>>();
    let users = tokio::time::timeout_at(deadline, register)
        .await
        .context("registering users took longer than --setup-timeout")??;
    pb.finish_and_clear();

    let groups = if opts.scenario == Scenario::Group {
        let size = opts.group_size.clamp(2, 500);
        let count = (n / size).max(1);
        let pb = bar(opts.quiet, Some(count as u64), "groups");
        let create = futures::stream::iter(0..count)
            .map(|g| {
                let (http, base, users, pb, tag) = (&http, &base, &users, &pb, &tag);
                async move {
                    let members: Vec<usize> = (g * size..(g + 1) * size).collect();
                    let others: Vec<i64> = members[1..].iter().map(|&m| users[m].id).collect();
                    let id = http::group(http, base, &users[members[0]], &others, &format!("{tag} {g}")).await?;
                    pb.inc(1);
                    anyhow::Ok(Group { id, member_set: members.iter().copied().collect(), members })
                }
            })
            .buffered(4)
            .try_collect::<Vec<Group>>();
        let groups = tokio::time::timeout_at(deadline, create)
            .await
            .context("creating groups took longer than --setup-timeout")??;
        pb.finish_and_clear();
        groups
    } else {
        Vec::new()
    };

    let receiver_users: Vec<usize> = match opts.scenario {
        Scenario::Catchup => (0..n).collect(),
        _ => (0..sockets).map(|r| r % n).collect(),
    };
    Ok(Shared::new(opts, target, http, tag, users, groups, receiver_users, sources, root, nofile))
}

/// Every receiver's socket task.
struct Sockets {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Sockets {
    /// Opens every receiver's socket (with `since=<cursor>` once it has one). `gated`: at
    /// most `--setup-concurrency × 4` connects in flight; otherwise all at once.
    fn open(sh: &Arc<Shared>, gated: bool) -> Sockets {
        let stop = sh.root.child_token();
        let gate = gated.then(|| Arc::new(Semaphore::new(sh.opts.setup_concurrency.max(1) * 4)));
        let tasks = (0..sh.receivers.len())
            .map(|rid| tokio::spawn(ws::session(sh.clone(), rid, stop.clone(), gate.clone())))
            .collect();
        Sockets { stop, tasks }
    }

    /// Closes every socket (a normal close handshake) and waits for the tasks, bounded.
    async fn close(mut self) {
        self.stop.cancel();
        let all = futures::future::join_all(self.tasks.iter_mut());
        if tokio::time::timeout(CLOSE_ALL_TIMEOUT, all).await.is_err() {
            for t in &self.tasks {
                t.abort();
            }
        }
    }
}

/// Waits until every socket got its Synced frame; fails at `deadline`.
async fn all_synced(sh: &Shared, deadline: tokio::time::Instant) -> anyhow::Result<()> {
    let want = sh.receivers.len() as i64;
    let pb = bar(sh.opts.quiet, Some(want as u64), "sockets");
    loop {
        let n = sh.c.synced.load(Ordering::Relaxed);
        pb.set_position(n.max(0) as u64);
        if n >= want {
            pb.finish_and_clear();
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline || sh.root.is_cancelled() {
            pb.finish_and_clear();
            let kinds = lock(&sh.error_kinds).iter().map(|(k, v)| format!("{v} x {k}")).collect::<Vec<_>>().join("; ");
            bail!("only {n} of {want} sockets connected within --setup-timeout (errors: {kinds})");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Who sends what during a timed phase.
#[derive(Clone, Copy)]
enum Pick {
    Direct,
    Group,
}

fn pick(sh: &Shared, how: Pick, rng: &mut fastrand::Rng, task: usize, j: usize) -> (usize, To) {
    let n = sh.users.len();
    match how {
        Pick::Direct => {
            let sender = (task + j * sh.opts.concurrency.max(1)) % n;
            let mut to = rng.usize(0..n - 1);
            if to >= sender {
                to += 1;
            }
            (sender, To::User(to))
        }
        Pick::Group => {
            let g = rng.usize(0..sh.groups.len());
            let members = &sh.groups[g].members;
            (members[rng.usize(0..members.len())], To::Group(g))
        }
    }
}

/// `--concurrency` senders until `until`, paced to `--rate` if set (latency then counts from
/// each send's scheduled time, so falling behind shows).
async fn timed_sends(sh: &Arc<Shared>, how: Pick, until: Instant) {
    let k = sh.opts.concurrency.max(1);
    let rate = sh.opts.rate;
    let start = tokio::time::Instant::now();
    let senders: Vec<JoinHandle<()>> = (0..k)
        .map(|task| {
            let sh = sh.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::new();
                let mut pace = (rate > 0.0).then(|| {
                    let first = start + Duration::from_secs_f64(task as f64 / rate);
                    let mut iv = tokio::time::interval_at(first, Duration::from_secs_f64(k as f64 / rate));
                    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    iv
                });
                for j in 0.. {
                    let scheduled = match pace.as_mut() {
                        Some(iv) => tokio::select! {
                            t = iv.tick() => t.into_std(),
                            _ = sh.root.cancelled() => return,
                        },
                        None => Instant::now(),
                    };
                    if scheduled >= until || Instant::now() >= until || sh.root.is_cancelled() {
                        return;
                    }
                    let (sender, to) = pick(&sh, how, &mut rng, task, j);
                    http::send(&sh, sender, to, scheduled).await;
                }
            })
        })
        .collect();
    for s in senders {
        let _ = s.await;
    }
}

/// Sends `messages` between random pairs of users, `--concurrency` at a time.
async fn batch_sends(sh: &Arc<Shared>, messages: usize) {
    let n = sh.users.len();
    let pb = bar(sh.opts.quiet, Some(messages as u64), "offline");
    futures::stream::iter(0..messages)
        .for_each_concurrent(sh.opts.concurrency.max(1), |i| {
            let pb = &pb;
            async move {
                let sender = i % n;
                let mut to = fastrand::usize(0..n - 1);
                if to >= sender {
                    to += 1;
                }
                if !sh.root.is_cancelled() {
                    http::send(sh, sender, To::User(to), Instant::now()).await;
                }
                pb.inc(1);
            }
        })
        .await;
    pb.finish_and_clear();
}

/// direct and group: sockets up, `--duration` of sends, then up to `--grace` for the
/// deliveries. Returns the delivery window in seconds.
async fn traffic(
    sh: &Arc<Shared>,
    r: &mut Report,
    setup_started: Instant,
    deadline: tokio::time::Instant,
) -> anyhow::Result<f64> {
    let sockets = Sockets::open(sh, true);
    all_synced(sh, deadline).await?;
    r.setup_s = setup_started.elapsed().as_secs_f64();
    let how = if sh.opts.scenario == Scenario::Group { Pick::Group } else { Pick::Direct };
    let mon = Monitor::start(sh, sh.opts.scenario.name(), Some(sh.opts.duration));
    let start = Instant::now();
    timed_sends(sh, how, start + sh.opts.duration).await;
    r.send_phase_s = start.elapsed().as_secs_f64();
    mon.phase("draining");
    sh.await_deliveries(sh.opts.grace).await;
    r.run_s = start.elapsed().as_secs_f64();
    (r.server, r.loadgen) = mon.finish(sh.opts.server_pid).await;
    sockets.close().await;
    Ok(r.run_s)
}

/// idle: sockets up and held for `--duration`; server memory per socket; then one probe
/// message per pair of users, which every socket must receive.
async fn idle(
    sh: &Arc<Shared>,
    r: &mut Report,
    setup_started: Instant,
    deadline: tokio::time::Instant,
) -> anyhow::Result<f64> {
    let pid = sh.opts.server_pid;
    let me = std::process::id();
    let server_before = pid.and_then(proc::sample);
    let self_before = proc::sample(me);
    let sockets = Sockets::open(sh, true);
    all_synced(sh, deadline).await?;
    tokio::select! {
        _ = tokio::time::sleep(sh.opts.settle) => {}
        _ = sh.root.cancelled() => {}
    }
    let server_connected = pid.and_then(proc::sample);
    r.setup_s = setup_started.elapsed().as_secs_f64();

    let mon = Monitor::start(sh, "idle", Some(sh.opts.duration));
    let start = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep(sh.opts.duration) => {}
        _ = sh.root.cancelled() => {}
    }
    let server_end = pid.and_then(proc::sample);
    let self_end = proc::sample(me);
    r.run_s = start.elapsed().as_secs_f64();
    let pongs = sh.c.pongs.load(Ordering::Relaxed);

    mon.phase("probe");
    let probe = Instant::now();
    let n = sh.users.len();
    futures::stream::iter((0..n).step_by(2))
        .for_each_concurrent(sh.opts.concurrency.max(1), |u| async move {
            let to = if u + 1 < n { u + 1 } else { 0 };
            http::send(sh, u, To::User(to), Instant::now()).await;
        })
        .await;
    r.send_phase_s = probe.elapsed().as_secs_f64();
    sh.await_deliveries(sh.opts.grace).await;
    let window = probe.elapsed().as_secs_f64();
    (r.server, r.loadgen) = mon.finish(pid).await;
    sockets.close().await;

    let count = sh.receivers.len();
    let per_socket = |a: Option<proc::Sample>, b: Option<proc::Sample>| match (a, b) {
        (Some(a), Some(b)) if count > 0 => Some((b.rss_kb as f64 - a.rss_kb as f64) * 1024.0 / count as f64),
        _ => None,
    };
    r.idle = Some(IdleStats {
        sockets: count,
        hold_s: r.run_s,
        server_rss_before_kb: server_before.map(|s| s.rss_kb),
        server_rss_connected_kb: server_connected.map(|s| s.rss_kb),
        server_rss_end_kb: server_end.map(|s| s.rss_kb),
        server_bytes_per_socket: per_socket(server_before, server_end),
        loadgen_bytes_per_socket: per_socket(self_before, self_end),
        pongs,
    });
    Ok(window)
}

/// Waits until every socket is synced and every owed delivery arrived, until `deadline`.
async fn caught_up(sh: &Shared, need_synced: bool, deadline: tokio::time::Instant) -> bool {
    let want = sh.receivers.len() as i64;
    loop {
        let synced = !need_synced || sh.c.synced.load(Ordering::Relaxed) >= want;
        if synced
            && sh.c.delivered.load(Ordering::Relaxed) >= sh.c.expected.load(Ordering::Relaxed)
            && sh.verdict().lost == 0
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline || sh.root.is_cancelled() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// reconnect: sockets up, all closed, `--messages` sent while offline, then all reconnect
/// at once with `since=<cursor>`: time until every socket has every message.
async fn reconnect(
    sh: &Arc<Shared>,
    r: &mut Report,
    setup_started: Instant,
    deadline: tokio::time::Instant,
) -> anyhow::Result<f64> {
    let sockets = Sockets::open(sh, true);
    all_synced(sh, deadline).await?;
    sockets.close().await;
    r.setup_s = setup_started.elapsed().as_secs_f64();
    let t = Instant::now();
    batch_sends(sh, sh.opts.messages).await;
    r.send_phase_s = t.elapsed().as_secs_f64();

    let mon = Monitor::start(sh, "reconnect", None);
    let start = Instant::now();
    let sockets = Sockets::open(sh, false);
    let done = caught_up(sh, true, tokio::time::Instant::now() + sh.opts.catchup_timeout).await;
    r.run_s = start.elapsed().as_secs_f64();
    r.caught_up_s = done.then_some(r.run_s);
    (r.server, r.loadgen) = mon.finish(sh.opts.server_pid).await;
    sockets.close().await;
    Ok(r.run_s)
}

/// catchup: `--messages` accumulate for offline users, then every user pages
/// `GET /v1/sync` from 0 until caught up, `--concurrency` users at a time.
async fn catchup(sh: &Arc<Shared>, r: &mut Report, setup_started: Instant) -> anyhow::Result<f64> {
    for rc in &sh.receivers {
        lock(&rc.state).cursor = Some(0);
    }
    r.setup_s = setup_started.elapsed().as_secs_f64();
    let t = Instant::now();
    batch_sends(sh, sh.opts.messages).await;
    r.send_phase_s = t.elapsed().as_secs_f64();

    let mon = Monitor::start(sh, "catchup", None);
    let start = Instant::now();
    let readers = futures::stream::iter(0..sh.receivers.len())
        .map(|rid| http::sync_all(sh, rid))
        .buffer_unordered(sh.opts.concurrency.max(1))
        .collect::<Vec<bool>>();
    let all_ok = match tokio::time::timeout(sh.opts.catchup_timeout, readers).await {
        Ok(done) => done.iter().all(|ok| *ok),
        Err(_) => {
            sh.error("catchup: not every user caught up within --catchup-timeout");
            false
        }
    };
    r.run_s = start.elapsed().as_secs_f64();
    r.caught_up_s = (all_ok && sh.verdict().lost == 0).then_some(r.run_s);
    (r.server, r.loadgen) = mon.finish(sh.opts.server_pid).await;
    Ok(r.run_s)
}

/// The final account: ledger against receivers, counters, histograms, verdict.
fn finish(sh: &Shared, r: &mut Report, window_s: f64) {
    let v = sh.verdict();
    let c = &sh.c;
    r.expected_deliveries = v.expected;
    r.deliveries = v.received;
    r.lost = v.lost;
    r.misdelivered = v.misdelivered;
    r.unacked_deliveries = v.unacked;
    r.duplicates = c.duplicates.load(Ordering::Relaxed);
    r.out_of_order = c.out_of_order.load(Ordering::Relaxed);
    r.seq_gaps = c.gaps.load(Ordering::Relaxed);
    r.errors = c.errors.load(Ordering::Relaxed);
    r.error_kinds = lock(&sh.error_kinds).clone();
    r.ws_connects = c.connects.load(Ordering::Relaxed);
    r.ws_unexpected_closes = c.unexpected_closes.load(Ordering::Relaxed);
    r.sync_requests = c.sync_requests.load(Ordering::Relaxed);
    r.send_attempts = c.send_attempts.load(Ordering::Relaxed);
    r.sends = c.sends.load(Ordering::Relaxed);
    if r.send_phase_s > 0.0 {
        r.sends_per_s = r.sends as f64 / r.send_phase_s;
    }
    if window_s > 0.0 {
        r.deliveries_per_s = r.deliveries as f64 / window_s;
    }
    r.send_latency_ms = Latency::from_micros(&lock(&sh.send_lat));
    r.e2e_latency_ms = Latency::from_micros(&sh.e2e());
    r.ws_connect_ms = Latency::from_micros(&lock(&sh.connect_lat));
    r.ws_synced_ms = Latency::from_micros(&lock(&sh.synced_lat));
    r.sync_request_ms = Latency::from_micros(&lock(&sh.sync_lat));
    r.judge(sh.opts.allow_errors);
}
