//! The canary controller: a few times per interval, reads the canary's figures and has
//! `state::canary` judge them; logs every step, extension and rollback once. Also what a
//! reload or startup tells the canary state, and what a switch leaves for the previous
//! colour's cookie holders.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use crate::config::{Affinity, Canary, Config};
use crate::state::canary::{table_key, Event};
use crate::state::snapshot::{PreviousColour, Shared, Snapshot};

/// How often the figures are looked at: a breach is acted on as soon as an interval has
/// enough requests to judge, not at the interval's end, so the bad colour's clients see
/// errors for at most this long once that many came. Each look adds up a few counters.
const TICK: Duration = Duration::from_millis(100);

/// Judges the canary of the snapshot in force until the process ends.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let snap = shared.load();
        if let Some(canary) = &snap.config.canary {
            let figures = shared.metrics.figures(&canary.upstream.name);
            let down = down_since_start(&shared, canary);
            if let Some(event) = shared.canary.tick(canary, figures, down, Instant::now()) {
                log(&canary.upstream.name, &event);
                if let Event::RolledBack { reason } = &event {
                    remember_rollback(&snap.config, canary, reason);
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Whether the canary's upstream failed a health check made since its plan started: a
/// state recorded before (a colour stopped until its deploy) is not held against it.
fn down_since_start(shared: &Shared, canary: &Canary) -> bool {
    let Some(started) = shared.canary.started() else {
        return false;
    };
    shared
        .health
        .get(&canary.upstream)
        .is_some_and(|s| !s.up && s.checked >= started)
}

/// Tells the canary state about a configuration about to go into force. A new or
/// changed `[canary]` (or none) forgets a rollback remembered for an earlier one.
pub fn configure(shared: &Shared, config: &Config) {
    let event = shared
        .canary
        .configure(config, |name| shared.metrics.figures(name));
    let fresh = matches!(event, Some(Event::Started { .. }));
    if let (Some(event), Some(canary)) = (&event, &config.canary) {
        log(&canary.upstream.name, event);
    }
    if fresh || config.canary.is_none() {
        if let Some(path) = memo_path(config) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// At startup: a canary rolled back before the restart stays rolled back, if `[canary]`
/// is the same table (remembered beside the pid file; without one, a restart starts the
/// plan again).
pub fn start(shared: &Shared, config: &Config) {
    let remembered = memo_path(config).and_then(|p| std::fs::read_to_string(p).ok());
    let still = config
        .canary
        .as_ref()
        .zip(remembered)
        .and_then(|(canary, memo)| {
            let (key, reason) = memo.split_once('\n')?;
            (key == table_key(canary)).then(|| (canary, reason.trim_end().to_owned()))
        });
    let Some((canary, reason)) = still else {
        configure(shared, config);
        return;
    };
    // The remembered rollback stands: the memo stays as it is.
    shared
        .canary
        .configure(config, |name| shared.metrics.figures(name));
    shared.canary.restore_rollback(&reason);
    tracing::warn!(
        "canary {}: still rolled back (before the restart: {reason}); change or remove [canary] to start again",
        canary.upstream.name
    );
}

/// Where a rollback is remembered: beside the pid file.
fn memo_path(config: &Config) -> Option<PathBuf> {
    let pid_file = config.server.pid_file.as_ref()?;
    Some(pid_file.with_file_name("switchyard.canary-rolled-back"))
}

fn remember_rollback(config: &Config, canary: &Canary, reason: &str) {
    let Some(path) = memo_path(config) else {
        return;
    };
    let memo = format!("{}\n{reason}\n", table_key(canary));
    if let Err(e) = std::fs::write(&path, memo) {
        tracing::warn!(
            "cannot remember the canary's rollback in {}: {e}",
            path.display()
        );
    }
}

/// The previous colour to keep for its cookie holders after `current` gives way to
/// `next`: set when `active` changes while cookies were given out (a canary with cookie
/// affinity), for that canary's interval; carried over by a reload that does not switch.
///
/// Only an upstream with a health path qualifies: its cookie holders are kept on it "while
/// it is healthy", which only its checks can tell. It is looked up by name in `next`, so a
/// reload that removes it ends the window.
pub fn previous_colour(current: &Snapshot, next: &Config) -> Option<PreviousColour> {
    let (name, until) = match next.active.name == current.config.active.name {
        true => {
            let p = current.previous.as_ref()?;
            (p.upstream.name.as_str(), p.until)
        }
        false => {
            let canary = current.config.canary.as_ref()?;
            if canary.affinity != Affinity::Cookie {
                return None;
            }
            (
                current.config.active.name.as_str(),
                Instant::now() + canary.interval,
            )
        }
    };
    let upstream = next.upstreams.iter().find(|u| u.name == name)?;
    let keep = Instant::now() < until && name != next.active.name && upstream.health.is_some();
    keep.then(|| PreviousColour {
        upstream: Arc::clone(upstream),
        until,
    })
}

fn log(upstream: &str, event: &Event) {
    match event {
        Event::Started { weight } => {
            tracing::info!("canary {upstream}: started at {weight} % of clients")
        }
        Event::Advanced { step, weight } => {
            tracing::info!("canary {upstream}: step {step}, {weight} % of clients")
        }
        Event::Completed { weight } => tracing::info!(
            "canary {upstream}: complete at {weight} % of clients; it stays there until `switchyard switch {upstream}` (or `switchyard canary`) promotes it"
        ),
        Event::Extended { requests, needed } => tracing::info!(
            "canary {upstream}: interval extended, {requests} requests so far and {needed} needed to judge"
        ),
        Event::RolledBack { reason } => tracing::error!(
            "canary {upstream}: rolled back to 0 % of clients: {reason}; it stays at 0 until [canary] changes (`switchyard canary --abort` removes it)"
        ),
    }
}
