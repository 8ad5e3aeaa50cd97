//! What a run measured: every number, as a human summary ([`std::fmt::Display`]) and as JSON
//! ([`serde::Serialize`]).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Percentiles of a latency histogram recorded in microseconds, reported in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// None for an empty histogram.
    pub fn from_micros(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }
}

/// A process's memory and CPU over the measured phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProcStats {
    pub pid: u32,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    /// Highest RSS seen (sampled every 250 ms).
    pub rss_peak_kb: u64,
    /// utime + stime spent during the phase.
    pub cpu_s: f64,
    /// `cpu_s / wall_s` in percent (200 = two cores busy).
    pub cpu_percent: f64,
    pub wall_s: f64,
}

/// The `idle` scenario's memory account.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IdleStats {
    pub sockets: usize,
    pub hold_s: f64,
    /// Server RSS before any socket was opened (users logged in).
    pub server_rss_before_kb: Option<u64>,
    /// Server RSS once every socket was connected and `--settle` passed.
    pub server_rss_connected_kb: Option<u64>,
    /// Server RSS at the end of the hold.
    pub server_rss_end_kb: Option<u64>,
    /// (end − before) / sockets.
    pub server_bytes_per_socket: Option<f64>,
    /// The load generator's own (end − before) / sockets: the client side of a socket.
    pub loadgen_bytes_per_socket: Option<f64>,
    /// Heartbeats the server answered during the run.
    pub pongs: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub url: String,
    pub started_unix_ms: u64,
    // The load.
    pub users: usize,
    pub sockets: usize,
    pub groups: usize,
    pub group_size: usize,
    pub concurrency: usize,
    /// Target sends/s; 0 = as fast as possible.
    pub target_rate: f64,
    pub duration_s: f64,
    pub source_ips: usize,
    pub nofile_limit: u64,
    // Timing.
    /// Registering, logging in, creating groups, connecting sockets.
    pub setup_s: f64,
    /// The sending phase (or, for reconnect/catchup, the offline batch).
    pub send_phase_s: f64,
    /// The measured phase: sending until every delivery arrived (or the grace ran out); for
    /// `idle` the hold; for reconnect/catchup the catch-up.
    pub run_s: f64,
    /// reconnect/catchup: from the storm's start until every socket/user had every message.
    pub caught_up_s: Option<f64>,
    // Counts.
    pub send_attempts: u64,
    /// Sends acked with 201.
    pub sends: u64,
    pub sends_per_s: f64,
    /// Deliveries owed: for every acked message, every socket (or sync reader) of every member.
    pub expected_deliveries: u64,
    /// Owed deliveries that arrived (first copy).
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// Owed deliveries that never arrived within the grace period.
    pub lost: u64,
    /// A message delivered twice to the same socket/reader (across its reconnects too).
    pub duplicates: u64,
    /// A message delivered to a socket of a user who is not a member of its conversation.
    pub misdelivered: u64,
    /// An event whose seq was not above the socket's cursor (other than a duplicate message).
    pub out_of_order: u64,
    /// Seqs skipped between consecutive events (informational: a failed write may leave one).
    pub seq_gaps: u64,
    /// Deliveries of this run's messages whose send was not acked (after a send error).
    pub unacked_deliveries: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub ws_connects: u64,
    /// Sockets the server closed (or that broke) while they should have stayed open; each one
    /// is an error and reconnects with `since`.
    pub ws_unexpected_closes: u64,
    pub sync_requests: u64,
    // Latencies (ms).
    /// POST /v1/messages, request to response (from the scheduled time when --rate is set).
    pub send_latency_ms: Option<Latency>,
    /// Send (scheduled time) to arrival on a recipient's socket; not measured for
    /// reconnect/catchup, whose messages wait for their users on purpose.
    pub e2e_latency_ms: Option<Latency>,
    /// TCP connect + WebSocket upgrade until the Hello frame.
    pub ws_connect_ms: Option<Latency>,
    /// Connect until the Synced frame (replay done).
    pub ws_synced_ms: Option<Latency>,
    /// One GET /v1/sync page (catchup).
    pub sync_request_ms: Option<Latency>,
    pub idle: Option<IdleStats>,
    pub server: Option<ProcStats>,
    pub loadgen: Option<ProcStats>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    pub passed: bool,
}

impl Report {
    /// Fills `failures` and `passed`.
    pub fn judge(&mut self, allow_errors: bool) {
        let mut f = Vec::new();
        if self.lost > 0 {
            f.push(format!("{} deliveries lost", self.lost));
        }
        if self.duplicates > 0 {
            f.push(format!("{} duplicate deliveries", self.duplicates));
        }
        if self.misdelivered > 0 {
            f.push(format!("{} deliveries to non-members", self.misdelivered));
        }
        if self.out_of_order > 0 {
            f.push(format!("{} events out of seq order", self.out_of_order));
        }
        if self.errors > 0 && !allow_errors {
            f.push(format!("{} errors", self.errors));
        }
        if self.expected_deliveries > 0 && self.deliveries == 0 {
            f.push("nothing was delivered".into());
        }
        self.passed = f.is_empty();
        self.failures = f;
    }
}

fn lat_line(f: &mut fmt::Formatter<'_>, name: &str, l: &Option<Latency>) -> fmt::Result {
    match l {
        Some(l) => writeln!(
            f,
            "  {name:<14} p50 {:>8.2}  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2} ms  (n={})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.count
        ),
        None => Ok(()),
    }
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn proc_line(f: &mut fmt::Formatter<'_>, name: &str, p: &Option<ProcStats>) -> fmt::Result {
    match p {
        Some(p) => writeln!(
            f,
            "  {name:<14} pid {}: CPU {:.0}% ({:.2} s in {:.1} s), RSS {:.1} -> {:.1} MiB (peak {:.1})",
            p.pid,
            p.cpu_percent,
            p.cpu_s,
            p.wall_s,
            mib(p.rss_start_kb),
            mib(p.rss_end_kb),
            mib(p.rss_peak_kb)
        ),
        None => Ok(()),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = if self.target_rate > 0.0 { format!("{}/s", self.target_rate) } else { "max".into() };
        writeln!(
            f,
            "feige-loadgen {} against {}: {} users, {} sockets over {} source IP(s), concurrency {}, rate {}",
            self.scenario, self.url, self.users, self.sockets, self.source_ips, self.concurrency, rate
        )?;
        if self.groups > 0 {
            writeln!(f, "  groups         {} of {} members", self.groups, self.group_size)?;
        }
        writeln!(
            f,
            "  time           setup {:.1} s, sending {:.2} s, measured {:.2} s{}",
            self.setup_s,
            self.send_phase_s,
            self.run_s,
            self.caught_up_s.map(|s| format!(", all caught up after {s:.3} s")).unwrap_or_default()
        )?;
        writeln!(
            f,
            "  sends          {} acked of {} attempts: {:.1}/s",
            self.sends, self.send_attempts, self.sends_per_s
        )?;
        writeln!(
            f,
            "  deliveries     {} of {} owed: {:.1}/s",
            self.deliveries, self.expected_deliveries, self.deliveries_per_s
        )?;
        if self.sync_requests > 0 {
            writeln!(f, "  sync requests  {}", self.sync_requests)?;
        }
        lat_line(f, "send", &self.send_latency_ms)?;
        lat_line(f, "end-to-end", &self.e2e_latency_ms)?;
        lat_line(f, "ws connect", &self.ws_connect_ms)?;
        lat_line(f, "ws synced", &self.ws_synced_ms)?;
        lat_line(f, "sync page", &self.sync_request_ms)?;
        writeln!(
            f,
            "  checks         lost {}, duplicates {}, misdelivered {}, out of order {}, seq gaps {}, unacked deliveries {}",
            self.lost, self.duplicates, self.misdelivered, self.out_of_order, self.seq_gaps, self.unacked_deliveries
        )?;
        writeln!(f, "  sockets        {} connects, {} unexpected closes", self.ws_connects, self.ws_unexpected_closes)?;
        writeln!(f, "  errors         {}", self.errors)?;
        for (kind, n) in &self.error_kinds {
            writeln!(f, "    {n:>8} x {kind}")?;
        }
        if let Some(i) = &self.idle {
            let per = |b: Option<f64>| b.map(|b| format!("{:.1} KiB", b / 1024.0)).unwrap_or_else(|| "n/a".into());
            writeln!(
                f,
                "  idle           {} sockets held {:.1} s: server {} per socket, load generator {} per socket, {} heartbeats answered",
                i.sockets,
                i.hold_s,
                per(i.server_bytes_per_socket),
                per(i.loadgen_bytes_per_socket),
                i.pongs
            )?;
        }
        proc_line(f, "server", &self.server)?;
        proc_line(f, "load generator", &self.loadgen)?;
        if self.passed { write!(f, "  PASS") } else { write!(f, "  FAIL: {}", self.failures.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging() {
        let mut r = Report { expected_deliveries: 10, deliveries: 10, ..Report::default() };
        r.judge(false);
        assert!(r.passed, "{:?}", r.failures);
        r.errors = 1;
        r.judge(false);
        assert!(!r.passed);
        r.judge(true);
        assert!(r.passed);
        r.lost = 1;
        r.judge(true);
        assert!(!r.passed);
        let mut r = Report { duplicates: 1, ..Report::default() };
        r.judge(true);
        assert!(!r.passed);
        let mut r = Report { expected_deliveries: 3, ..Report::default() };
        r.judge(true);
        assert!(!r.passed);
        assert!(r.to_string().contains("FAIL"));
    }

    #[test]
    fn latency_in_milliseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
        assert_eq!(Latency::from_micros(&h), None);
        for us in 1..=1000 {
            h.record(us * 1000).expect("record");
        }
        let l = Latency::from_micros(&h).expect("latency");
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
    }
}
