//! Active health checks of upstreams, and the probe a switching reload runs.
//!
//! Every upstream with a `health` path is checked every `health_interval` with an HTTP
//! GET on a fresh connection (2xx = up); the active upstream, if it has no health path, by
//! a TCP connect. State changes are logged once, not on every probe. `ready_path` and
//! `/status` read the table; they never probe on the request path unless the table has
//! nothing recent for the active upstream (just after startup or a switch).
//!
//! The check is a hand-written `GET ... HTTP/1.1` + `Connection: close` on a new socket:
//! it needs only the status code, and using the pooled client would test a warm
//! connection instead of the app's ability to accept a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::config::{ProxySettings, Upstream};
use crate::snapshot::Shared;

/// A probe waits no longer than a connection attempt would, and never long enough to make
/// a load balancer's health check time out.
pub fn probe_timeout(proxy: &ProxySettings) -> Duration {
    proxy.connect_timeout.min(Duration::from_secs(2))
}

/// Checks `upstream` once: its health path if it has one, else a TCP connect.
pub async fn check(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let addr = upstream.authority.as_str();
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr} failed: {e}"))?;
        let Some(path) = &upstream.health else {
            return Ok(());
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: switchyard-health-check\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
        let status = read_status(&mut stream)
            .await
            .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
        match status {
            200..=299 => Ok(()),
            other => Err(format!("GET {path} on {addr} answered {other}")),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {addr} within {timeout:?}")),
    }
}

async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut buf[len..]).await {
            Ok(0) => return Err("connection closed before a status line".into()),
            Ok(n) => len += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = std::str::from_utf8(&buf[..len]).map_err(|_| "status line is not text")?;
    line.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                line.lines().next().unwrap_or("")
            )
        })
}

/// The last known state of one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamState {
    pub up: bool,
    /// When it last changed between up and down.
    pub since: SystemTime,
    pub checked: Instant,
    pub error: Option<String>,
}

/// Upstream states by name (and URL, so a renamed or moved upstream starts fresh).
#[derive(Default)]
pub struct HealthTable {
    states: Mutex<HashMap<(String, String), UpstreamState>>,
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

    /// Records a check result, logging only a change of state.
    pub fn record(&self, upstream: &Upstream, result: Result<(), String>) {
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        let up = result.is_ok();
        let previous = states.get(&key(upstream)).map(|s| (s.up, s.since));
        let since = match previous {
            Some((was_up, since)) if was_up == up => since,
            _ => {
                log_change(upstream, previous.map(|p| p.0), &result);
                SystemTime::now()
            }
        };
        states.insert(
            key(upstream),
            UpstreamState {
                up,
                since,
                checked: Instant::now(),
                error: result.err(),
            },
        );
    }
}

fn key(upstream: &Upstream) -> (String, String) {
    (upstream.name.clone(), upstream.url.clone())
}

fn log_change(upstream: &Upstream, was: Option<bool>, result: &Result<(), String>) {
    match (was, result) {
        (None, Ok(())) => tracing::info!("upstream {} ({}) is up", upstream.name, upstream.url),
        (_, Ok(())) => tracing::warn!("upstream {} ({}) is up again", upstream.name, upstream.url),
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
        let mut round = JoinSet::new();
        for upstream in &snap.config.upstreams {
            if upstream.health.is_some() || *upstream == snap.config.active {
                let upstream = Arc::clone(upstream);
                round.spawn(async move {
                    let result = check(&upstream, timeout).await;
                    (upstream, result)
                });
            }
        }
        while let Some(joined) = round.join_next().await {
            if let Ok((upstream, result)) = joined {
                shared.health.record(&upstream, result);
            }
        }
        tokio::time::sleep(snap.config.proxy.health_interval).await;
    }
}
