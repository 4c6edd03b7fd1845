//! The Prometheus text exposition served on the admin listener's `/metrics`: the request
//! counters (`metrics`) and the state beside them (generation, upstream health, dropped
//! access-log lines), read at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::state::canary::Phase;
use crate::state::metrics::{gauge, label};
use crate::state::snapshot::Shared;

/// Everything, as one scrape.
pub fn render(shared: &Shared) -> String {
    let mut out = String::with_capacity(4096);
    let snap = shared.load();
    let configured = snap.config.upstreams.iter().map(|u| u.name.as_str());
    shared.metrics.write_text(&mut out, configured);
    gauge(
        &mut out,
        "switchyard_config_generation",
        "Generation of the configuration in force.",
        snap.generation as i64,
    );
    let _ = writeln!(out, "# HELP switchyard_upstream_up 1 if the upstream passed its last check, 0 if it failed.\n# TYPE switchyard_upstream_up gauge");
    for u in &snap.config.upstreams {
        // A state that no longer moves would hold an alert on it for ever.
        if !snap.config.is_checked(u) {
            continue;
        }
        let active = u.name == snap.config.active.name;
        if let Some(state) = shared.health.get(u) {
            let _ = writeln!(
                out,
                "switchyard_upstream_up{{upstream=\"{}\",active=\"{active}\"}} {}",
                label(&u.name),
                u8::from(state.up)
            );
        }
    }
    canary(&mut out, shared);
    let dropped = shared.access_log.dropped.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP switchyard_access_log_dropped_total Access log lines dropped because the writer fell behind.\n# TYPE switchyard_access_log_dropped_total counter\nswitchyard_access_log_dropped_total {dropped}");
    out
}

/// The canary's weight and state; nothing without a canary, so an alert on the state
/// clears once the canary is promoted or removed.
fn canary(out: &mut String, shared: &Shared) {
    let _ = writeln!(out, "# HELP switchyard_canary_weight Percent of clients the canary upstream gets now.\n# TYPE switchyard_canary_weight gauge");
    let _ = writeln!(out, "# HELP switchyard_canary_state 1 for the state the canary is in (running, holding, complete, rolled_back).\n# TYPE switchyard_canary_state gauge");
    let Some(progress) = shared.canary.progress() else {
        return;
    };
    let upstream = label(&progress.upstream);
    let _ = writeln!(
        out,
        "switchyard_canary_weight{{upstream=\"{upstream}\"}} {}",
        progress.weight
    );
    for phase in Phase::ALL {
        let _ = writeln!(
            out,
            "switchyard_canary_state{{upstream=\"{upstream}\",state=\"{}\"}} {}",
            phase.as_str().replace(' ', "_"),
            u8::from(phase == progress.phase)
        );
    }
}
