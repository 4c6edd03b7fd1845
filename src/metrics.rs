//! Prometheus metrics. Each worker thread counts into its own shard (so the request path
//! never contends on a shared counter); a scrape of `/metrics` adds the shards up.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::snapshot::Shared;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How a request was answered, for the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// health_path / ready_path.
    Endpoint,
    /// A `[[routes]]` entry.
    Route,
    /// The web root (including 301/304/404 it answered itself).
    Static,
    /// `fallback`: proxied to `active`, or the SPA index, or 404.
    Fallback,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Endpoint => "endpoint",
            RouteKind::Route => "route",
            RouteKind::Static => "static",
            RouteKind::Fallback => "fallback",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    shards: Mutex<Vec<Arc<Shard>>>,
    pub open_connections: AtomicI64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub reloads_refused: AtomicU64,
}

/// One worker's counters.
#[derive(Default)]
pub struct Shard {
    requests: Mutex<Vec<RequestCount>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

struct RequestCount {
    kind: RouteKind,
    upstream: String,
    class: u16,
    count: u64,
}

impl Metrics {
    pub fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::default());
        if let Ok(mut shards) = self.shards.lock() {
            shards.push(Arc::clone(&shard));
        }
        shard
    }
}

impl Shard {
    pub fn record(&self, kind: RouteKind, upstream: Option<&str>, status: u16, took: Duration) {
        let class = status / 100;
        let upstream = upstream.unwrap_or("");
        if let Ok(mut counts) = self.requests.lock() {
            match counts
                .iter_mut()
                .find(|c| c.kind == kind && c.class == class && c.upstream == upstream)
            {
                Some(c) => c.count += 1,
                None => counts.push(RequestCount {
                    kind,
                    upstream: upstream.to_owned(),
                    class,
                    count: 1,
                }),
            }
        }
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The Prometheus text exposition of everything.
pub fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut out = String::with_capacity(4096);
    let shards: Vec<Arc<Shard>> = m.shards.lock().map(|s| s.clone()).unwrap_or_default();
    requests(&mut out, &shards);
    latency(&mut out, &shards);
    let snap = shared.load();
    gauge(
        &mut out,
        "switchyard_open_connections",
        "Client connections open now.",
        m.open_connections.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP switchyard_reloads_total Configuration reloads by result.\n# TYPE switchyard_reloads_total counter");
    let _ = writeln!(
        out,
        "switchyard_reloads_total{{result=\"ok\"}} {}",
        m.reloads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "switchyard_reloads_total{{result=\"failed\"}} {}",
        m.reloads_failed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "switchyard_reloads_total{{result=\"refused\"}} {}",
        m.reloads_refused.load(Ordering::Relaxed)
    );
    gauge(
        &mut out,
        "switchyard_config_generation",
        "Generation of the configuration in force.",
        snap.generation as i64,
    );
    let _ = writeln!(out, "# HELP switchyard_upstream_up 1 if the upstream passed its last check, 0 if it failed.\n# TYPE switchyard_upstream_up gauge");
    for u in &snap.config.upstreams {
        if let Some(state) = shared.health.get(u) {
            let active = u.name == snap.config.active.name;
            let _ = writeln!(
                out,
                "switchyard_upstream_up{{upstream=\"{}\",active=\"{active}\"}} {}",
                label(&u.name),
                u8::from(state.up)
            );
        }
    }
    let dropped = shared.access_log.dropped.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP switchyard_access_log_dropped_total Access log lines dropped because the writer fell behind.\n# TYPE switchyard_access_log_dropped_total counter\nswitchyard_access_log_dropped_total {dropped}");
    out
}

fn requests(out: &mut String, shards: &[Arc<Shard>]) {
    let mut totals: Vec<(RouteKind, String, u16, u64)> = Vec::new();
    for shard in shards {
        let Ok(counts) = shard.requests.lock() else {
            continue;
        };
        for c in counts.iter() {
            match totals
                .iter_mut()
                .find(|t| t.0 == c.kind && t.1 == c.upstream && t.2 == c.class)
            {
                Some(t) => t.3 += c.count,
                None => totals.push((c.kind, c.upstream.clone(), c.class, c.count)),
            }
        }
    }
    totals.sort_by(|a, b| (a.0.as_str(), &a.1, a.2).cmp(&(b.0.as_str(), &b.1, b.2)));
    let _ = writeln!(out, "# HELP switchyard_requests_total Requests answered, by route kind, upstream and status class.\n# TYPE switchyard_requests_total counter");
    for (kind, upstream, class, count) in totals {
        let _ = writeln!(
            out,
            "switchyard_requests_total{{route=\"{}\",upstream=\"{}\",status=\"{class}xx\"}} {count}",
            kind.as_str(),
            label(&upstream)
        );
    }
}

fn latency(out: &mut String, shards: &[Arc<Shard>]) {
    let _ = writeln!(out, "# HELP switchyard_request_duration_seconds Time from request headers to the end of the response.\n# TYPE switchyard_request_duration_seconds histogram");
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += shards
            .iter()
            .map(|s| s.buckets[i].load(Ordering::Relaxed))
            .sum::<u64>();
        let _ = writeln!(
            out,
            "switchyard_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let count: u64 = shards
        .iter()
        .map(|s| s.latency_count.load(Ordering::Relaxed))
        .sum();
    let sum_us: u64 = shards
        .iter()
        .map(|s| s.latency_sum_us.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(
        out,
        "switchyard_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "switchyard_request_duration_seconds_sum {}",
        sum_us as f64 / 1e6
    );
    let _ = writeln!(out, "switchyard_request_duration_seconds_count {count}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Label values escape `\`, `"` and newlines.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
