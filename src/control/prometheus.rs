//! The Prometheus text exposition served on the admin listener's `/metrics`: the request
//! counters (`metrics`) and the state beside them (generation, upstream health, dropped
//! access-log lines), read at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

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
    let dropped = shared.access_log.dropped.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP switchyard_access_log_dropped_total Access log lines dropped because the writer fell behind.\n# TYPE switchyard_access_log_dropped_total counter\nswitchyard_access_log_dropped_total {dropped}");
    out
}
