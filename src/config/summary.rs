//! The one-screen summary printed by `switchyard check` and logged at startup.

use std::fmt::Write;

use super::model::{Config, Fallback, HostMatch, Route, RouteUpstream};

pub fn summary(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "configuration {} (sha256 {}) is valid",
        c.file.display(),
        c.digest
    );
    let listen: Vec<String> = c.server.listen.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(s, "  listen:    {}", listen.join(", "));
    let _ = writeln!(
        s,
        "  endpoints: health {}  ready {}  admin {}",
        c.server.health_path,
        c.server.ready_path,
        c.server
            .admin_listen
            .map_or("off".to_owned(), |a| a.to_string())
    );
    match &c.static_files {
        Some(st) => {
            let fallback = match st.fallback {
                Fallback::Upstream => "upstream",
                Fallback::Index => "index",
                Fallback::NotFound => "404",
            };
            let _ = writeln!(
                s,
                "  web root:  {} (fallback: {fallback})",
                st.root.display()
            );
        }
        None => {
            let _ = writeln!(s, "  web root:  none (everything is proxied)");
        }
    }
    let _ = writeln!(s, "  upstreams:");
    for u in &c.upstreams {
        let marker = if u.name == c.active.name { "*" } else { " " };
        let health = u
            .health
            .as_ref()
            .map_or(String::new(), |h| format!(" health {h}"));
        let _ = writeln!(s, "   {marker} {:<12} {}{health}", u.name, u.url);
    }
    let _ = writeln!(s, "  active:    {}", c.active.name);
    let _ = writeln!(
        s,
        "  routes:    {}",
        if c.routes.is_empty() { "none" } else { "" }
    );
    for (i, r) in c.routes.iter().enumerate() {
        let target = match &r.upstream {
            RouteUpstream::Active => format!("active (now {})", c.active.name),
            RouteUpstream::Named(u) => u.name.clone(),
        };
        let _ = writeln!(s, "    {i}: {} -> {target}", describe(r));
    }
    if let Some(canary) = &c.canary {
        let plan = match canary.steps.is_empty() {
            true => format!("{} % held", canary.weight),
            false => format!("steps {:?} %", canary.steps),
        };
        let p99 = canary
            .max_p99
            .map_or(String::new(), |d| format!(", p99 <= {d:?}"));
        let _ = writeln!(
            s,
            "  canary:    {} ({plan}, every {:?}; errors <= {} %{p99}; affinity {})",
            canary.upstream.name,
            canary.interval,
            canary.max_error_ratio * 100.0,
            canary.affinity.as_str()
        );
    }
    for w in &c.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

fn describe(r: &Route) -> String {
    let host = match &r.host {
        Some(HostMatch::Exact(h)) => format!("host {h}"),
        Some(HostMatch::Suffix(h)) => format!("host *{h}"),
        None => String::new(),
    };
    let path = match &r.path_prefix {
        Some(p) => format!(
            "path {}{}{}",
            p.base,
            if p.redirect_bare || p.base.is_empty() {
                "/"
            } else {
                ""
            },
            if r.strip_prefix { " (stripped)" } else { "" }
        ),
        None => String::new(),
    };
    [host, path]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}
