//! The one swappable piece of state: the configuration snapshot in force, plus the few
//! process-wide flags the request path reads (draining) and the last reload's outcome.
//!
//! Every request loads the snapshot exactly once (`Shared::load`) and keeps that `Arc` to
//! the end, so a reload never changes the rules under a request already in flight, while
//! the next request, even on the same keep-alive connection, sees the new snapshot.
//! Only `reload` stores a new one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::{Config, Upstream};
use crate::state::access_log::AccessLogger;
use crate::state::canary::CanaryState;
use crate::state::metrics::Metrics;
use crate::state::upstream_health::HealthTable;

pub struct Snapshot {
    pub config: Config,
    /// Starts at 1 and increments on every successful reload.
    pub generation: u64,
    /// The colour `active` named before a switch, kept for its cookie holders a while.
    pub previous: Option<PreviousColour>,
    health_body: Bytes,
}

/// After a switch with cookie affinity, requests whose `switchyard_colour` cookie names
/// the previous colour go on to it until `until`, while it is healthy.
#[derive(Debug, Clone)]
pub struct PreviousColour {
    pub upstream: Arc<Upstream>,
    pub until: Instant,
}

impl Snapshot {
    pub fn new(config: Config, generation: u64) -> Self {
        let health_body = Bytes::from(health_json(&config, generation, None));
        Snapshot {
            config,
            generation,
            previous: None,
            health_body,
        }
    }

    pub fn with_previous(mut self, previous: Option<PreviousColour>) -> Self {
        self.previous = previous;
        self
    }

    /// The `health_path` body, rendered once per snapshot.
    pub fn health_body(&self) -> Bytes {
        self.health_body.clone()
    }

    /// The `ready_path` body: the health body plus the active upstream's state.
    pub fn ready_body(&self, status: &str, upstream_up: bool) -> Vec<u8> {
        let up = if upstream_up { "up" } else { "down" };
        health_json(&self.config, self.generation, Some((status, up)))
    }
}

fn health_json(config: &Config, generation: u64, ready: Option<(&str, &str)>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "status": ready.map_or("ok", |r| r.0),
        "active": config.active.name,
        "generation": generation,
        "config": config.digest,
    });
    if let Some((_, up)) = ready {
        v["upstream"] = serde_json::Value::from(up);
    }
    let mut body = v.to_string().into_bytes();
    body.push(b'\n');
    body
}

/// What the last reload did, for logs now and `/status` later.
#[derive(Debug, Clone)]
pub struct ReloadRecord {
    pub at: SystemTime,
    pub outcome: ReloadOutcome,
    pub message: String,
}

/// How a reload ended. A failed or refused one changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    Ok,
    /// The file could not be read or did not validate.
    Failed,
    /// The file was valid, but the switch it asked for was refused (its new active
    /// upstream failed the on-the-spot check).
    Refused,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Ok => "ok",
            ReloadOutcome::Failed => "failed",
            ReloadOutcome::Refused => "refused",
        }
    }
}

pub struct Shared {
    current: ArcSwap<Snapshot>,
    /// Results of the active upstream checks.
    pub health: HealthTable,
    pub canary: CanaryState,
    pub metrics: Metrics,
    pub access_log: Arc<AccessLogger>,
    pub started: SystemTime,
    draining: AtomicBool,
    last_reload: Mutex<Option<ReloadRecord>>,
}

impl Shared {
    pub fn new(snapshot: Snapshot, access_log: Arc<AccessLogger>) -> Self {
        Shared {
            current: ArcSwap::from_pointee(snapshot),
            health: HealthTable::default(),
            canary: CanaryState::default(),
            metrics: Metrics::default(),
            access_log,
            started: SystemTime::now(),
            draining: AtomicBool::new(false),
            last_reload: Mutex::new(None),
        }
    }

    /// The snapshot in force; hold the `Arc` for the whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub(crate) fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn record_reload(&self, record: ReloadRecord) {
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(record);
        }
    }

    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload.lock().ok().and_then(|r| r.clone())
    }
}
