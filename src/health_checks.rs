//! Active health checks of upstreams, and the probe a switching reload runs.
//!
//! Every upstream with a `health` path is checked every `health_interval` with an HTTP
//! GET on a fresh connection (2xx = up); the active upstream, if it has no health path, by
//! a TCP connect. State changes are logged once, not on every probe. `ready_path` and
//! `/status` read the table; they never probe on the request path unless the table has
//! nothing recent for the active upstream (just after startup or a switch).
//!
//! The check is a `GET` with `Connection: close` on a new socket, by the proxy's own client
//! (`proxy::probe`): the pooled connections would test a warm connection instead of the
//! app's ability to accept a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::config::{ProxySettings, Upstream};
use crate::proxy::probe;
use crate::snapshot::Shared;

/// How long one check may take (`health_timeout`): the periodic ones, the one `ready_path`
/// runs when the table has nothing recent, and a switching reload's.
pub fn probe_timeout(proxy: &ProxySettings) -> Duration {
    proxy.health_timeout
}

/// Checks `upstream` once: its health path if it has one, else a TCP connect.
pub async fn check(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let addr = upstream.authority.as_str();
    let Some(path) = &upstream.health else {
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
            Err(_) => Err(format!("no answer from {addr} within {timeout:?}")),
        };
    };
    let answer = probe::get(addr, addr, path.as_str(), PROBE_BODY_LIMIT, timeout).await?;
    match answer.status.is_success() {
        true => Ok(()),
        false => Err(format!(
            "GET {path} on {addr} answered {}",
            answer.status.as_u16()
        )),
    }
}

/// A health answer's body is read (so the connection ends cleanly) but not kept.
const PROBE_BODY_LIMIT: usize = 64 * 1024;

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

/// Checks every upstream that has a health path, plus the active one, every
/// `health_interval` of the snapshot in force, until the process ends. The checks of one
/// round run concurrently, so one black-holed upstream does not delay the others.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let snap = shared.load();
        let timeout = probe_timeout(&snap.config.proxy);
        let thresholds = Thresholds::of(&snap.config.proxy);
        let mut round = JoinSet::new();
        for upstream in &snap.config.upstreams {
            if snap.config.is_checked(upstream) {
                let upstream = Arc::clone(upstream);
                round.spawn(async move {
                    let result = check(&upstream, timeout).await;
                    (upstream, result)
                });
            }
        }
        while let Some(joined) = round.join_next().await {
            if let Ok((upstream, result)) = joined {
                shared.health.record(&upstream, result, thresholds);
            }
        }
        tokio::time::sleep(snap.config.proxy.health_interval).await;
    }
}
