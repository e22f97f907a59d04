//! What `bench --gateway` reports per step: counters, latency, the
//! server's CPU and RSS, and the time both waited for a CPU.

use std::time::Instant;

use hdrhistogram::Histogram;

use super::super::{cpu_ticks, group, runqueue_wait_ns};

#[derive(Debug, Default, Clone, Copy)]
pub struct Errors {
    /// Error events from the gateway.
    pub events: u64,
    /// Connects or handshakes that failed.
    pub connects: u64,
    /// Connections the server closed.
    pub closes: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.events + self.connects + self.closes
    }
}

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} error events, {} failed connects, {} closed by the server",
            self.events, self.connects, self.closes
        )
    }
}

/// What one step measured.
#[derive(Debug, Clone)]
pub struct Row {
    pub step: usize,
    pub secs: f64,
    pub members: usize,
    pub offered: f64,
    pub publishes: u64,
    pub deliveries: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub errors: Errors,
    pub attempts: u64,
    pub server_cpu_pct: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub bench_cpu_pct: Option<f64>,
    /// Time the server's and the bench's loop threads waited for a CPU
    /// (other processes had it), % of the step.
    pub server_wait_pct: Option<f64>,
    pub bench_wait_pct: Option<f64>,
}

impl Row {
    pub fn error_rate(&self) -> f64 {
        self.errors.total() as f64 / self.attempts.max(1) as f64
    }

    pub const HEADER: &'static str =
        "step  members  offered/s  publishes/s  deliveries/s    p50 us    p99 us  errors  server cpu  server rss  waited (server, bench)";

    pub fn line(&self) -> String {
        format!(
            "{:>4} {:>8} {:>10} {:>12} {:>13} {:>9.0} {:>9.0} {:>6.2}% {:>10} {:>11}  {}, {}",
            self.step,
            group(self.members as u64),
            group(self.offered.round() as u64),
            group((self.publishes as f64 / self.secs).round() as u64),
            group((self.deliveries as f64 / self.secs).round() as u64),
            self.p50_us,
            self.p99_us,
            self.error_rate() * 100.0,
            self.server_cpu_pct
                .map_or("n/a".into(), |p| format!("{p:.0}%")),
            self.server_rss_kib
                .map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            self.server_wait_pct
                .map_or("n/a".into(), |p| format!("{p:.1}%")),
            self.bench_wait_pct
                .map_or("n/a".into(), |p| format!("{p:.1}%")),
        )
    }

    pub fn json(&self) -> String {
        let num = |x: Option<f64>| x.map_or("null".to_string(), |v| format!("{v:.1}"));
        format!(
            concat!(
                "{{\"step\":{},\"secs\":{:.3},\"members\":{},\"offered_per_s\":{:.1},",
                "\"publishes_per_s\":{:.1},\"deliveries_per_s\":{:.1},\"publishes\":{},",
                "\"deliveries\":{},\"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}},",
                "\"error_events\":{},\"failed_connects\":{},\"closes\":{},\"attempts\":{},",
                "\"error_rate\":{:.6},\"server_cpu_pct\":{},\"server_rss_kib\":{},",
                "\"bench_cpu_pct\":{},\"server_wait_pct\":{},\"bench_wait_pct\":{}}}"
            ),
            self.step,
            self.secs,
            self.members,
            self.offered,
            self.publishes as f64 / self.secs,
            self.deliveries as f64 / self.secs,
            self.publishes,
            self.deliveries,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.errors.events,
            self.errors.connects,
            self.errors.closes,
            self.attempts,
            self.error_rate(),
            num(self.server_cpu_pct),
            self.server_rss_kib
                .map_or("null".to_string(), |k| k.to_string()),
            num(self.bench_cpu_pct),
            num(self.server_wait_pct),
            num(self.bench_wait_pct),
        )
    }
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second in /proc/PID/stat (USER_HZ).
const CLK_TCK: f64 = 100.0;

pub fn histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// One step's counters while it runs.
pub struct StepMeter {
    start: Instant,
    pub publishes: u64,
    pub deliveries: u64,
    pub hist: Histogram<u64>,
    pub errors: Errors,
    pub attempts: u64,
    cpu_server: Option<u64>,
    cpu_self: Option<u64>,
    wait_server: Option<u64>,
    wait_self: Option<u64>,
}

fn server_wait(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| runqueue_wait_ns(&format!("{p}/task/{p}")))
}

impl StepMeter {
    pub fn new(now: Instant, server_pid: Option<u32>) -> Self {
        Self {
            start: now,
            publishes: 0,
            deliveries: 0,
            hist: histogram(),
            errors: Errors::default(),
            attempts: 0,
            cpu_server: server_pid.and_then(|p| cpu_ticks(&p.to_string())),
            cpu_self: cpu_ticks("self"),
            wait_server: server_wait(server_pid),
            wait_self: runqueue_wait_ns("thread-self"),
        }
    }

    pub fn row(
        &self,
        step: usize,
        members: usize,
        offered: f64,
        now: Instant,
        pid: Option<u32>,
    ) -> Row {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let pct = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / CLK_TCK / secs * 100.0),
            _ => None,
        };
        let wait = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / 1e9 / secs * 100.0),
            _ => None,
        };
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        Row {
            step,
            secs,
            members,
            offered,
            publishes: self.publishes,
            deliveries: self.deliveries,
            p50_us: us(0.5),
            p99_us: us(0.99),
            max_us: self.hist.max() as f64 / 1000.0,
            errors: self.errors,
            attempts: self.attempts,
            server_cpu_pct: pct(self.cpu_server, pid.and_then(|p| cpu_ticks(&p.to_string()))),
            server_rss_kib: pid.and_then(rss_kib),
            bench_cpu_pct: pct(self.cpu_self, cpu_ticks("self")),
            server_wait_pct: wait(self.wait_server, server_wait(pid)),
            bench_wait_pct: wait(self.wait_self, runqueue_wait_ns("thread-self")),
        }
    }
}
