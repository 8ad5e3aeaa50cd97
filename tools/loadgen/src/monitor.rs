//! Progress bar (stderr, only on a terminal and without --quiet) and the server's and the
//! load generator's /proc readings over a measured phase.

use crate::proc::{self, Sample};
use crate::report::ProcStats;
use crate::state::Shared;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A progress bar, hidden unless stderr is a terminal and not `quiet`.
pub(crate) fn bar(quiet: bool, len: Option<u64>, prefix: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{prefix:>10} [{elapsed_precise}] {bar:24} {pos}/{len} {msg}"
    } else {
        "{prefix:>10} [{elapsed_precise}] {spinner} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.set_prefix(prefix.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Watches a measured phase: updates the bar with live rates and samples the server's RSS
/// for its peak.
pub(crate) struct Monitor {
    pb: ProgressBar,
    stop: CancellationToken,
    task: JoinHandle<(u64, u64)>,
    server0: Option<Sample>,
    self0: Option<Sample>,
    started: Instant,
}

impl Monitor {
    /// Starts watching; `len` is the phase's planned length (shown as a bar in seconds).
    pub fn start(sh: &Arc<Shared>, label: &str, len: Option<Duration>) -> Monitor {
        let pb = bar(sh.opts.quiet, len.map(|d| d.as_secs().max(1)), label);
        let server0 = sh.opts.server_pid.and_then(proc::sample);
        let self0 = proc::sample(std::process::id());
        let stop = CancellationToken::new();
        let task = {
            let (sh, pb, stop) = (sh.clone(), pb.clone(), stop.clone());
            let mut peaks = (server0.map_or(0, |s| s.rss_kb), self0.map_or(0, |s| s.rss_kb));
            tokio::spawn(async move {
                let started = Instant::now();
                let mut last = (0u64, 0u64, started);
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.cancelled() => return peaks,
                    }
                    if let Some(s) = sh.opts.server_pid.and_then(proc::sample) {
                        peaks.0 = peaks.0.max(s.rss_kb);
                    }
                    if let Some(s) = proc::sample(std::process::id()) {
                        peaks.1 = peaks.1.max(s.rss_kb);
                    }
                    if pb.is_hidden() {
                        continue;
                    }
                    let sends = sh.c.sends.load(Ordering::Relaxed);
                    let deliveries = sh.c.delivered.load(Ordering::Relaxed);
                    let dt = last.2.elapsed().as_secs_f64().max(1e-3);
                    pb.set_message(format!(
                        "sends {sends} ({:.0}/s) deliveries {deliveries} ({:.0}/s) synced {} errors {}",
                        (sends - last.0.min(sends)) as f64 / dt,
                        (deliveries - last.1.min(deliveries)) as f64 / dt,
                        sh.c.synced.load(Ordering::Relaxed),
                        sh.c.errors.load(Ordering::Relaxed),
                    ));
                    pb.set_position(started.elapsed().as_secs());
                    last = (sends, deliveries, Instant::now());
                }
            })
        };
        Monitor { pb, stop, task, server0, self0, started: Instant::now() }
    }

    /// Changes the bar's label.
    pub fn phase(&self, label: &str) {
        self.pb.set_prefix(label.to_owned());
    }

    /// Ends the phase: `(server, load generator)` readings over it.
    pub async fn finish(self, server_pid: Option<u32>) -> (Option<ProcStats>, Option<ProcStats>) {
        self.stop.cancel();
        let (server_peak, self_peak) = self.task.await.unwrap_or((0, 0));
        self.pb.finish_and_clear();
        let wall = self.started.elapsed().as_secs_f64();
        let server = match (server_pid, self.server0, server_pid.and_then(proc::sample)) {
            (Some(pid), Some(a), Some(b)) => Some(stats(pid, a, b, server_peak, wall)),
            _ => None,
        };
        let me = match (self.self0, proc::sample(std::process::id())) {
            (Some(a), Some(b)) => Some(stats(std::process::id(), a, b, self_peak, wall)),
            _ => None,
        };
        (server, me)
    }
}

fn stats(pid: u32, a: Sample, b: Sample, peak: u64, wall: f64) -> ProcStats {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(wall.min(1e-3)).max(1e-3);
    let cpu = (b.cpu_s - a.cpu_s).max(0.0);
    ProcStats {
        pid,
        rss_start_kb: a.rss_kb,
        rss_end_kb: b.rss_kb,
        rss_peak_kb: peak.max(a.rss_kb).max(b.rss_kb),
        cpu_s: cpu,
        cpu_percent: cpu / wall * 100.0,
        wall_s: wall,
    }
}
