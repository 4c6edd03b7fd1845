//! SIGHUP: load -> validate -> (probe the new active upstream) -> swap, or keep everything.
//!
//! This is the only writer of the snapshot. A reload that fails at any step changes
//! nothing but a log line and the recorded last-reload result; one that succeeds stores a
//! new snapshot with the next generation. Listeners, connections and in-flight requests
//! are untouched either way; each worker's upstream client (with its warm pool) is carried
//! over unless its own settings changed (see `policy::worker`).

use std::time::SystemTime;

use crate::config::{self, Config, Server};
use crate::control::canary;
use crate::http::upstream::probe;
use crate::state::snapshot::{ReloadOutcome, ReloadRecord, Shared, Snapshot};

/// The first snapshot, at startup.
pub fn initial(config: Config) -> Snapshot {
    Snapshot::new(config, 1)
}

/// Re-reads the configuration file of the snapshot in force and swaps it in if it is
/// valid and safe. Returns the new generation, or why the reload was refused.
pub async fn reload(shared: &Shared) -> Result<u64, String> {
    let current = shared.load();
    let outcome = attempt(&current).await;
    let message = match &outcome {
        // Logged once the snapshot is in force (below): whoever reads the line may rely on it.
        Ok(next) => format!(
            "reload ok: generation {} active {} config {}",
            next.generation, next.config.active.name, next.config.digest
        ),
        Err(refusal) => {
            let message = format!(
                "reload {}, still serving generation {} (active {}): {}",
                refusal.outcome.as_str(),
                current.generation,
                current.config.active.name,
                refusal.why
            );
            tracing::error!("{message}");
            message
        }
    };
    let result = match &outcome {
        Ok(_) => ReloadOutcome::Ok,
        Err(refusal) => refusal.outcome,
    };
    let record = ReloadRecord {
        at: SystemTime::now(),
        outcome: result,
        message,
    };
    let counter = match result {
        ReloadOutcome::Ok => &shared.metrics.reloads_ok,
        ReloadOutcome::Failed => &shared.metrics.reloads_failed,
        ReloadOutcome::Refused => &shared.metrics.reloads_refused,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let next = match outcome {
        Ok(next) => next,
        Err(refusal) => {
            shared.record_reload(record);
            return Err(refusal.why);
        }
    };
    shared.access_log.configure(&next.config.server.access_log);
    canary::configure(shared, &next.config);
    let generation = next.generation;
    shared.store(next);
    tracing::info!("{}", record.message);
    shared.record_reload(record);
    Ok(generation)
}

/// Why a reload changed nothing.
struct NotReloaded {
    outcome: ReloadOutcome,
    why: String,
}

async fn attempt(current: &Snapshot) -> Result<Snapshot, NotReloaded> {
    let config = config::load(&current.config.file).map_err(|e| NotReloaded {
        outcome: ReloadOutcome::Failed,
        why: e.headline(),
    })?;
    warn_restart_needed(&current.config.server, &config.server);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if config.active != current.config.active && config.proxy.switch_requires_healthy {
        let timeout = config.proxy.health_timeout;
        probe::check(&config.active, timeout)
            .await
            .map_err(|e| NotReloaded {
                outcome: ReloadOutcome::Refused,
                why: format!(
                    "switch to {} refused: it is not healthy ({e}); switch_requires_healthy = true",
                    config.active.name
                ),
            })?;
    }
    let previous = canary::previous_colour(current, &config);
    Ok(Snapshot::new(config, current.generation + 1).with_previous(previous))
}

/// Settings bound at startup keep their old values until a restart; say so rather than
/// let an operator believe they took.
fn warn_restart_needed(old: &Server, new: &Server) {
    let changed = [
        ("server.listen", old.listen != new.listen),
        ("server.admin_listen", old.admin_listen != new.admin_listen),
        (
            "server.max_connections",
            old.max_connections != new.max_connections,
        ),
        ("server.pid_file", old.pid_file != new.pid_file),
    ];
    for (key, _) in changed.iter().filter(|(_, c)| *c) {
        tracing::warn!("{key} changed: it takes effect only after a restart");
    }
}
