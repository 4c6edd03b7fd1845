//! Prometheus metrics. Each worker thread counts into its own shard (so the request path
//! never contends on a shared counter); a scrape of `/metrics` adds the shards up.
//!
//! Requests are counted per series of route kind and upstream: answers by status class,
//! the latency histogram and upstream failures by cause all live in one entry, so a
//! request costs one lookup under its worker's (uncontended) lock. Upstream names come
//! from the configuration only, which bounds the number of series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::upstream::failure::UpstreamFailure;
use crate::state::latency;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Status classes 1xx to 9xx, indexed by `status / 100` (`http` allows 100 to 999).
const CLASSES: usize = 10;

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
    series: Mutex<Vec<Series>>,
}

/// Everything counted for one route kind and upstream (`""`: answered by switchyard).
#[derive(Clone)]
struct Series {
    kind: RouteKind,
    upstream: String,
    classes: [u64; CLASSES],
    /// Per bucket, not cumulative; above the last bound only the total (`count`) grows.
    buckets: [u64; BUCKETS.len()],
    /// The same latencies, finely (`latency`): what a canary's p99 is read from.
    fine: Box<[u64; latency::LEN]>,
    sum_us: u64,
    failures: [u64; UpstreamFailure::ALL.len()],
}

impl Series {
    fn new(kind: RouteKind, upstream: &str) -> Self {
        Series {
            kind,
            upstream: upstream.to_owned(),
            classes: [0; CLASSES],
            buckets: [0; BUCKETS.len()],
            fine: Box::new([0; latency::LEN]),
            sum_us: 0,
            failures: [0; UpstreamFailure::ALL.len()],
        }
    }

    fn count(&self) -> u64 {
        self.classes.iter().sum()
    }

    fn add(&mut self, other: &Series) {
        let pairs = self.classes.iter_mut().zip(&other.classes);
        let pairs = pairs.chain(self.buckets.iter_mut().zip(&other.buckets));
        let pairs = pairs.chain(self.fine.iter_mut().zip(other.fine.iter()));
        let pairs = pairs.chain(self.failures.iter_mut().zip(&other.failures));
        for (mine, theirs) in pairs {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
    }
}

/// One finished request, as counted.
pub struct Sample<'a> {
    pub kind: RouteKind,
    /// The upstream it was proxied to, if any.
    pub upstream: Option<&'a str>,
    pub status: u16,
    pub took: Duration,
    pub failure: Option<UpstreamFailure>,
}

/// One upstream's requests so far, every route kind together: what a canary is judged on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub requests: u64,
    /// 5xx answers, plus answers whose body the upstream cut short.
    pub errors: u64,
    /// Per fine latency bucket (`latency`), not cumulative.
    pub latency: Vec<u64>,
}

impl Figures {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Figures) -> Figures {
        let mut latency = self.latency.clone();
        for (b, e) in latency.iter_mut().zip(&earlier.latency) {
            *b = b.saturating_sub(*e);
        }
        Figures {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency,
        }
    }

    pub fn error_ratio(&self) -> f64 {
        match self.requests {
            0 => 0.0,
            n => self.errors as f64 / n as f64,
        }
    }

    /// The `q` quantile of latency, interpolated within its fine bucket; `None` without
    /// requests.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0.0;
        for (i, n) in self.latency.iter().enumerate().filter(|(_, n)| **n > 0) {
            let n = *n as f64;
            if below + n >= rank {
                let (low, high) = latency::bounds(i);
                let within = ((rank - below) / n).clamp(0.0, 1.0);
                let micros = low as f64 + (high - low) as f64 * within;
                return Some(Duration::from_secs_f64(micros / 1e6));
            }
            below += n;
        }
        None
    }
}

impl Metrics {
    /// `upstream`'s figures so far, added up over every worker and route kind.
    pub fn figures(&self, upstream: &str) -> Figures {
        let shards: Vec<Arc<Shard>> = self.shards.lock().map(|s| s.clone()).unwrap_or_default();
        let mut figures = Figures {
            latency: vec![0; latency::LEN],
            ..Figures::default()
        };
        for shard in shards {
            let Ok(series) = shard.series.lock() else {
                continue;
            };
            for s in series.iter().filter(|s| s.upstream == upstream) {
                figures.requests += s.count();
                figures.errors += s.classes[5] + s.failures[UpstreamFailure::Truncated.index()];
                for (total, n) in figures.latency.iter_mut().zip(s.fine.iter()) {
                    *total += n;
                }
            }
        }
        figures
    }

    pub fn shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::default());
        if let Ok(mut shards) = self.shards.lock() {
            shards.push(Arc::clone(&shard));
        }
        shard
    }
}

impl Shard {
    pub fn record(&self, sample: Sample<'_>) {
        let upstream = sample.upstream.unwrap_or("");
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let s = match series
            .iter()
            .position(|s| s.kind == sample.kind && s.upstream == upstream)
        {
            Some(i) => &mut series[i],
            None => {
                series.push(Series::new(sample.kind, upstream));
                let last = series.len() - 1;
                &mut series[last]
            }
        };
        s.classes[usize::from(sample.status / 100).min(CLASSES - 1)] += 1;
        let secs = sample.took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i] += 1;
        }
        s.fine[latency::index(sample.took.as_micros() as u64)] += 1;
        s.sum_us += sample.took.as_micros() as u64;
        if let (Some(failure), false) = (sample.failure, upstream.is_empty()) {
            s.failures[failure.index()] += 1;
        }
    }
}

impl Metrics {
    /// The Prometheus text of the counters: requests, latency and upstream failures (every
    /// upstream in `configured` at 0 from the start), open connections, reloads.
    pub fn write_text<'a>(&self, out: &mut String, configured: impl Iterator<Item = &'a str>) {
        let shards: Vec<Arc<Shard>> = self.shards.lock().map(|s| s.clone()).unwrap_or_default();
        let series = merged(&shards);
        requests(out, &series);
        latency(out, &series);
        failures(out, &series, configured);
        gauge(
            out,
            "switchyard_open_connections",
            "Client connections open now.",
            self.open_connections.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP switchyard_reloads_total Configuration reloads by result.\n# TYPE switchyard_reloads_total counter");
        for (result, count) in [
            ("ok", &self.reloads_ok),
            ("failed", &self.reloads_failed),
            ("refused", &self.reloads_refused),
        ] {
            let _ = writeln!(
                out,
                "switchyard_reloads_total{{result=\"{result}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// The shards added up, one entry per route kind and upstream, in a stable order.
fn merged(shards: &[Arc<Shard>]) -> Vec<Series> {
    let mut totals: Vec<Series> = Vec::new();
    for shard in shards {
        let Ok(series) = shard.series.lock() else {
            continue;
        };
        for s in series.iter() {
            match totals
                .iter_mut()
                .find(|t| t.kind == s.kind && t.upstream == s.upstream)
            {
                Some(t) => t.add(s),
                None => totals.push(s.clone()),
            }
        }
    }
    totals.sort_by(|a, b| (a.kind.as_str(), &a.upstream).cmp(&(b.kind.as_str(), &b.upstream)));
    totals
}

fn requests(out: &mut String, series: &[Series]) {
    let _ = writeln!(out, "# HELP switchyard_requests_total Requests answered, by route kind, upstream and status class.\n# TYPE switchyard_requests_total counter");
    for s in series {
        for (class, count) in s.classes.iter().enumerate().filter(|(_, c)| **c > 0) {
            let _ = writeln!(
                out,
                "switchyard_requests_total{{route=\"{}\",upstream=\"{}\",status=\"{class}xx\"}} {count}",
                s.kind.as_str(),
                label(&s.upstream)
            );
        }
    }
}

fn latency(out: &mut String, series: &[Series]) {
    let name = "switchyard_request_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time from request headers to the end of the response, by route kind and upstream.\n# TYPE {name} histogram");
    for s in series {
        let labels = format!(
            "route=\"{}\",upstream=\"{}\"",
            s.kind.as_str(),
            label(&s.upstream)
        );
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&s.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = s.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", s.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Every configured upstream has every cause from its first scrape, at zero: `rate()`
/// and `increase()` only see a failure that raises an existing series.
fn failures<'a>(out: &mut String, series: &[Series], configured: impl Iterator<Item = &'a str>) {
    let mut by_upstream: Vec<(&str, [u64; UpstreamFailure::ALL.len()])> = configured
        .map(|name| (name, [0; UpstreamFailure::ALL.len()]))
        .collect();
    for s in series.iter().filter(|s| !s.upstream.is_empty()) {
        let entry = match by_upstream.iter().position(|(n, _)| *n == s.upstream) {
            Some(i) => &mut by_upstream[i].1,
            None => {
                by_upstream.push((&s.upstream, [0; UpstreamFailure::ALL.len()]));
                let last = by_upstream.len() - 1;
                &mut by_upstream[last].1
            }
        };
        for (total, n) in entry.iter_mut().zip(&s.failures) {
            *total += n;
        }
    }
    by_upstream.sort_by(|a, b| a.0.cmp(b.0));
    let _ = writeln!(out, "# HELP switchyard_upstream_failures_total Proxied requests that failed on the upstream's side, by upstream and cause.\n# TYPE switchyard_upstream_failures_total counter");
    for (upstream, counts) in by_upstream {
        for (cause, n) in UpstreamFailure::ALL.iter().zip(counts) {
            let _ = writeln!(
                out,
                "switchyard_upstream_failures_total{{upstream=\"{}\",cause=\"{}\"}} {n}",
                label(upstream),
                cause.as_str()
            );
        }
    }
}

pub fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Label values escape `\`, `"` and newlines.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: RouteKind, upstream: Option<&str>, status: u16, ms: u64) -> Sample<'_> {
        Sample {
            kind,
            upstream,
            status,
            took: Duration::from_millis(ms),
            failure: None,
        }
    }

    fn lines(out: &str, prefix: &str) -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn latency_is_one_cumulative_histogram_per_route_kind_and_upstream() {
        let (a, b) = (Shard::default(), Shard::default());
        a.record(sample(RouteKind::Fallback, Some("blue"), 200, 3));
        b.record(sample(RouteKind::Fallback, Some("blue"), 502, 300));
        b.record(sample(RouteKind::Fallback, Some("green"), 200, 20_000));
        a.record(sample(RouteKind::Static, None, 200, 1));
        let series = merged(&[Arc::new(a), Arc::new(b)]);
        let mut out = String::new();
        latency(&mut out, &series);
        let blue =
            r#"switchyard_request_duration_seconds_bucket{route="fallback",upstream="blue","#;
        assert_eq!(
            lines(&out, blue)[2..],
            [
                format!("{blue}le=\"0.005\"}} 1"),
                format!("{blue}le=\"0.01\"}} 1"),
                format!("{blue}le=\"0.025\"}} 1"),
                format!("{blue}le=\"0.05\"}} 1"),
                format!("{blue}le=\"0.1\"}} 1"),
                format!("{blue}le=\"0.25\"}} 1"),
                format!("{blue}le=\"0.5\"}} 2"),
                format!("{blue}le=\"1\"}} 2"),
                format!("{blue}le=\"2.5\"}} 2"),
                format!("{blue}le=\"10\"}} 2"),
                format!("{blue}le=\"+Inf\"}} 2"),
            ]
        );
        // Slower than the last bound: only +Inf and the count see it.
        let green = r#"{route="fallback",upstream="green""#;
        assert!(out.contains(&format!(
            "switchyard_request_duration_seconds_bucket{green},le=\"10\"}} 0\n"
        )));
        assert!(out.contains(&format!(
            "switchyard_request_duration_seconds_count{green}}} 1\n"
        )));
        assert!(out.contains(&format!(
            "switchyard_request_duration_seconds_sum{green}}} 20\n"
        )));
        assert!(out.contains(
            "switchyard_request_duration_seconds_count{route=\"static\",upstream=\"\"} 1\n"
        ));
    }

    #[test]
    fn failures_start_at_zero_for_every_configured_upstream_and_count_by_cause() {
        let shard = Shard::default();
        let mut failed = sample(RouteKind::Route, Some("green"), 502, 1);
        failed.failure = Some(UpstreamFailure::Refused);
        shard.record(failed);
        let mut cut = sample(RouteKind::Fallback, Some("green"), 200, 1);
        cut.failure = Some(UpstreamFailure::Truncated);
        shard.record(cut);
        // Renamed away by a reload: still reported, so its counter never goes back.
        let mut old = sample(RouteKind::Fallback, Some("old"), 504, 1);
        old.failure = Some(UpstreamFailure::ResponseTimeout);
        shard.record(old);
        let mut out = String::new();
        failures(
            &mut out,
            &merged(&[Arc::new(shard)]),
            ["green", "blue"].into_iter(),
        );
        let series = lines(&out, "switchyard_upstream_failures_total{");
        assert_eq!(series.len(), 3 * UpstreamFailure::ALL.len(), "{out}");
        for expected in [
            r#"{upstream="blue",cause="refused"} 0"#,
            r#"{upstream="green",cause="refused"} 1"#,
            r#"{upstream="green",cause="truncated"} 1"#,
            r#"{upstream="green",cause="reset"} 0"#,
            r#"{upstream="old",cause="response_timeout"} 1"#,
        ] {
            assert!(out.contains(expected), "{expected} missing from:\n{out}");
        }
    }

    #[test]
    fn answers_are_counted_by_status_class_per_series() {
        let shard = Shard::default();
        for status in [200, 204, 404, 503] {
            shard.record(sample(RouteKind::Route, Some("grafana"), status, 1));
        }
        let mut out = String::new();
        requests(&mut out, &merged(&[Arc::new(shard)]));
        assert_eq!(
            lines(&out, "switchyard_requests_total{"),
            [
                r#"switchyard_requests_total{route="route",upstream="grafana",status="2xx"} 2"#,
                r#"switchyard_requests_total{route="route",upstream="grafana",status="4xx"} 1"#,
                r#"switchyard_requests_total{route="route",upstream="grafana",status="5xx"} 1"#,
            ]
        );
    }
}
