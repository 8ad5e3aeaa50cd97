//! `feige-loadgen`: a load generator for Feige, run against a server on this machine.
//!
//! It registers and logs in fresh users, opens push sockets (`GET /v1/ws`, protobuf frames,
//! heartbeats, `since` replay) spread over several loopback source addresses, drives one of
//! the [`Scenario`]s and returns a [`Report`]: send and end-to-end latency histograms
//! (hdrhistogram), sends/s and deliveries/s, errors, and an exact account of every acked
//! message — which sockets (or sync readers) had to receive it, which did, which got it twice
//! — plus the server's RSS and CPU when its pid is given.
//!
//! Only loopback targets are accepted (`127.0.0.0/8`, `localhost`). Every phase is bounded in
//! time, and the whole run by `--timeout`.
//!
//! The binary is a thin wrapper over [`run`]; tests call [`run`] directly.

mod http;
mod monitor;
mod proc;
pub mod report;
mod scenarios;
mod state;
mod target;
mod ws;

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

pub use report::{IdleStats, Latency, ProcStats, Report};

/// What to measure.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One-to-one sends between random users at `--rate` (0 = as fast as `--concurrency`
    /// senders go) for `--duration`; every socket of sender and recipient must get each one.
    Direct,
    /// Sends to groups of `--group-size` members (≤ 500) for `--duration`: fan-out
    /// deliveries/s to every member's sockets.
    Group,
    /// Holds `--sockets` idle sockets (heartbeating) for `--duration` and reports the
    /// server's memory per socket; a probe message per user at the end checks they are alive.
    Idle,
    /// All sockets connected, then closed; `--messages` are sent while they are offline;
    /// then all reconnect at once with `since=<cursor>`: time until every one caught up.
    Reconnect,
    /// Users offline while `--messages` accumulate, then every user pages
    /// `GET /v1/sync?since=…` until caught up: time until all are.
    Catchup,
}

impl Scenario {
    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Group => "group",
            Scenario::Idle => "idle",
            Scenario::Reconnect => "reconnect",
            Scenario::Catchup => "catchup",
        }
    }
}

/// Every knob of a run. Build it with [`Options::new`] (the command-line defaults) and
/// change fields, or parse it from arguments.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "feige-loadgen",
    version,
    about = "Load generator for Feige (HTTP sends, WebSocket fan-out, idle sockets, reconnect storms, sync catch-up)",
    after_help = "Exit status: 0 when nothing was lost, duplicated or misdelivered and there were no errors \
                  (or --allow-errors); 1 when a check failed; 2 when the run could not be carried out."
)]
pub struct Options {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Base URL of the server (loopback only: 127.x.y.z or localhost).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Users to register and log in (raised to --group-size for `group`).
    #[arg(long, short = 'n', default_value_t = 100)]
    pub users: usize,
    /// WebSocket connections, spread round-robin over the users [default: --users].
    #[arg(long, short = 'm')]
    pub sockets: Option<usize>,
    /// Target sends per second over all senders; 0 = as fast as --concurrency senders go.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Concurrent senders (and concurrent sync readers for `catchup`).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// How long to send (direct, group) or hold the sockets (idle), e.g. 10s, 500ms, 2m.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Members per group for `group` (owner included; at most 500).
    #[arg(long, short = 'g', default_value_t = 100)]
    pub group_size: usize,
    /// Messages sent while the users are offline (reconnect, catchup).
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// After the last send: how long every acked message has to reach every socket before
    /// the missing ones count as lost.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Bound on the catch-up of `reconnect` and `catchup`; whatever is missing then is lost.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub catchup_timeout: Duration,
    /// Bound on setting up (registering users, creating groups, connecting every socket).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub setup_timeout: Duration,
    /// Bound on the whole run; past it the run fails.
    #[arg(long, default_value = "20m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Concurrent requests while registering and logging in, and concurrent socket connects
    /// while setting up.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// Client source addresses 127.0.0.1..=127.0.0.K to spread sockets over (more than one
    /// ephemeral-port range); 0 = one per 20,000 sockets.
    #[arg(long, default_value_t = 0)]
    pub source_ips: usize,
    /// Longest interval between a socket's heartbeats (it also heartbeats at a third of the
    /// server's announced timeout, whichever is shorter).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// `idle`: pause after every socket connected before reading the server's memory.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Pid of the server process: its RSS and CPU time are read from /proc before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Exit 0 despite errors (lost, duplicated and misdelivered messages still fail).
    #[arg(long)]
    pub allow_errors: bool,
    /// Prefix of the usernames this run registers [default: random].
    #[arg(long)]
    pub prefix: Option<String>,
}

impl Options {
    /// The command-line defaults for `scenario` against `url`.
    pub fn new(scenario: Scenario, url: &str) -> Options {
        Options::parse_from(["feige-loadgen", scenario.name(), "--url", url])
    }

    /// Sockets to open (0 for `catchup`, which reads over HTTP).
    pub fn socket_count(&self) -> usize {
        match self.scenario {
            Scenario::Catchup => 0,
            _ => self.sockets.unwrap_or(self.user_count()),
        }
    }

    /// Users to register.
    pub fn user_count(&self) -> usize {
        let n = self.users.max(2);
        match self.scenario {
            Scenario::Group => n.max(self.group_size.clamp(2, 500)),
            _ => n,
        }
    }
}

/// Parses `10`, `10s`, `250ms`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `opts.scenario` and returns its report. Fails (rather than reporting) when the run
/// could not be carried out: a non-loopback URL, a server that is not there, setup that did
/// not finish within `--setup-timeout`, or the whole run past `--timeout`.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let root = tokio_util::sync::CancellationToken::new();
    // Whatever way this returns (timeout included), every socket and sender task stops.
    let _stop_everything = root.clone().drop_guard();
    let limit = opts.timeout;
    match tokio::time::timeout(limit, scenarios::run(opts, root.clone())).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the run did not finish within --timeout {limit:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn defaults_and_counts() {
        let o = Options::new(Scenario::Group, "http://127.0.0.1:1");
        assert_eq!(o.user_count(), 100);
        assert_eq!(o.socket_count(), 100);
        let mut o = Options::new(Scenario::Group, "http://127.0.0.1:1");
        o.group_size = 500;
        o.users = 20;
        assert_eq!(o.user_count(), 500);
        let o = Options::new(Scenario::Catchup, "http://127.0.0.1:1");
        assert_eq!(o.socket_count(), 0);
    }
}
