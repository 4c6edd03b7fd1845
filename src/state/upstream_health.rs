//! The last known health of every upstream, with HAProxy's fall/rise thresholds: what
//! `ready_path`, `/status`, `/metrics` and a switching reload read, and what the prober
//! (`control::prober`) writes. State, not behaviour: it probes nothing itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ProxySettings, Upstream};

/// The last known state of one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamState {
    pub up: bool,
    /// When it last changed between up and down.
    pub since: SystemTime,
    pub checked: Instant,
    /// The last check's failure (also while still up, before `health_fall` of them).
    pub error: Option<String>,
    /// Consecutive checks that disagreed with `up`.
    streak: u32,
}

/// Upstream states by name (and URL, so a renamed or moved upstream starts fresh).
#[derive(Default)]
pub struct HealthTable {
    states: Mutex<HashMap<(String, String), UpstreamState>>,
}

/// How many checks in a row change an upstream's state (HAProxy's fall and rise).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub fall: u32,
    pub rise: u32,
}

impl Thresholds {
    pub fn of(proxy: &ProxySettings) -> Self {
        Thresholds {
            fall: proxy.health_fall,
            rise: proxy.health_rise,
        }
    }
}

impl HealthTable {
    /// The state of `upstream` if it was checked within `max_age`.
    pub fn recent(&self, upstream: &Upstream, max_age: Duration) -> Option<UpstreamState> {
        let states = self.states.lock().ok()?;
        let state = states.get(&key(upstream))?;
        (state.checked.elapsed() <= max_age).then(|| state.clone())
    }

    /// Whether `upstream`'s last known state is down (never checked counts as not down).
    pub fn is_down(&self, upstream: &Upstream) -> bool {
        let Ok(states) = self.states.lock() else {
            return false;
        };
        states.get(&key(upstream)).is_some_and(|s| !s.up)
    }

    pub fn get(&self, upstream: &Upstream) -> Option<UpstreamState> {
        self.states.lock().ok()?.get(&key(upstream)).cloned()
    }

    /// Records a check result and returns whether the upstream counts as up now. The first
    /// check of an upstream decides its state; after that it takes `fall` failures in a row
    /// to go down and `rise` passes in a row to come back, so one slow answer under load
    /// does not flip `ready_path` (a load balancer would deregister a busy host). Only
    /// changes are logged.
    pub fn record(&self, upstream: &Upstream, result: Result<(), String>, t: Thresholds) -> bool {
        let Ok(mut states) = self.states.lock() else {
            return result.is_ok();
        };
        let passed = result.is_ok();
        let next = match states.get(&key(upstream)) {
            None => {
                log_change(upstream, None, &result);
                fresh_state(passed, 0)
            }
            Some(s) if s.up == passed => UpstreamState {
                streak: 0,
                ..s.clone()
            },
            Some(s) => {
                let streak = s.streak + 1;
                let needed = if s.up { t.fall } else { t.rise };
                match streak >= needed.max(1) {
                    true => {
                        log_change(upstream, Some(s.up), &result);
                        fresh_state(passed, 0)
                    }
                    false => UpstreamState {
                        streak,
                        ..s.clone()
                    },
                }
            }
        };
        let up = next.up;
        states.insert(
            key(upstream),
            UpstreamState {
                checked: Instant::now(),
                error: result.err(),
                ..next
            },
        );
        up
    }
}

fn fresh_state(up: bool, streak: u32) -> UpstreamState {
    UpstreamState {
        up,
        since: SystemTime::now(),
        checked: Instant::now(),
        error: None,
        streak,
    }
}

fn key(upstream: &Upstream) -> (String, String) {
    (upstream.name.clone(), upstream.url.clone())
}

fn log_change(upstream: &Upstream, was: Option<bool>, result: &Result<(), String>) {
    match (was, result) {
        (None, Ok(())) => tracing::info!("upstream {} ({}) is up", upstream.name, upstream.url),
        (_, Ok(())) => tracing::info!("upstream {} ({}) is up again", upstream.name, upstream.url),
        (_, Err(e)) => {
            tracing::error!("upstream {} ({}) is down: {e}", upstream.name, upstream.url)
        }
    }
}
