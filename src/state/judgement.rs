//! The judgement of a canary's figures over one interval: a breach of `max_error_ratio`
//! or `max_p99` once there are enough requests to judge, a pass at the interval's end, or
//! an interval too thin to judge.

use std::time::Duration;

use crate::config::Canary;
use crate::state::metrics::Figures;

/// The judgement of one interval's figures.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// A bound was crossed: roll back, for this reason.
    Breach(String),
    /// The interval is over with enough requests and no breach.
    Pass,
    /// The interval is over with too few requests to judge.
    TooFew { requests: u64, needed: u64 },
    /// Still within the interval.
    Wait,
}

/// Requests an interval needs before its figures are judged: at least 20, and enough
/// that one error more or less cannot swing the ratio past `max_error_ratio` by itself.
pub fn needed_requests(canary: &Canary) -> u64 {
    let by_ratio = match canary.max_error_ratio {
        r if r > 0.0 => (1.0 / r).ceil() as u64,
        _ => 100,
    };
    by_ratio.clamp(20, 1000)
}

pub fn judge(canary: &Canary, window: &Figures, elapsed: Duration) -> Verdict {
    let needed = needed_requests(canary);
    if window.requests >= needed {
        let ratio = window.error_ratio();
        if ratio > canary.max_error_ratio {
            return Verdict::Breach(format!(
                "error ratio {:.2} % over the limit of {:.2} % ({} errors in {} requests)",
                ratio * 100.0,
                canary.max_error_ratio * 100.0,
                window.errors,
                window.requests
            ));
        }
        if let Some(max) = canary.max_p99 {
            match window.quantile(0.99) {
                Some(p99) if p99 <= max => {}
                p99 => {
                    let p99 = p99.map_or("over 10s".to_owned(), |d| format!("{d:.3?}"));
                    return Verdict::Breach(format!(
                        "p99 latency {p99} over the limit of {max:?} ({} requests)",
                        window.requests
                    ));
                }
            }
        }
    }
    match (elapsed >= canary.interval, window.requests >= needed) {
        (false, _) => Verdict::Wait,
        (true, true) => Verdict::Pass,
        (true, false) => Verdict::TooFew {
            requests: window.requests,
            needed,
        },
    }
}
