//! The canary controller: a few times per interval, reads the canary's figures and has
//! `state::canary` judge them; logs every step, extension and rollback once. Also what a
//! reload or startup tells the canary state, and what a switch leaves for the previous
//! colour's cookie holders.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Affinity, Config};
use crate::state::canary::Event;
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
            let down = shared.health.is_down(&canary.upstream);
            if let Some(event) = shared.canary.tick(figures, down, Instant::now()) {
                log(&canary.upstream.name, &event);
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Tells the canary state about a configuration about to go into force.
pub fn configure(shared: &Shared, config: &Config) {
    if let Some(event) = shared
        .canary
        .configure(config, |name| shared.metrics.figures(name))
    {
        if let Some(canary) = &config.canary {
            log(&canary.upstream.name, &event);
        }
    }
}

/// The previous colour to keep for its cookie holders after `current` gives way to
/// `next`: set when `active` changes while cookies were given out (a canary with cookie
/// affinity), for that canary's interval; carried over by a reload that does not switch.
pub fn previous_colour(current: &Snapshot, next: &Config) -> Option<PreviousColour> {
    if next.active.name == current.config.active.name {
        return current
            .previous
            .clone()
            .filter(|p| Instant::now() < p.until && p.upstream.name != next.active.name);
    }
    let canary = current.config.canary.as_ref()?;
    (canary.affinity == Affinity::Cookie).then(|| PreviousColour {
        upstream: Arc::clone(&current.config.active),
        until: Instant::now() + canary.interval,
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
