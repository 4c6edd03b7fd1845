//! `switchyard status`: the admin `/status` document as one screen for a person, or as
//! JSON for scripts. Exits 0 when the active upstream is up, 3 otherwise (as `systemctl
//! status` does for a unit that is not running), 1 when the daemon cannot be asked.

use std::path::Path;

use serde_json::Value;
use thiserror::Error;

use super::running::{status, unix_now};
use crate::config::{self, ConfigError};

/// The exit status for "running, but the active upstream is not healthy".
pub const UNHEALTHY: u8 = 3;

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("server.admin_listen is not set in {0}: status reads the admin /status endpoint")]
    NoAdmin(String),
    #[error("the daemon does not answer on {0}/status (is switchyard running?)")]
    Unreachable(String),
}

/// The report to print and whether the active upstream is up.
pub fn run(path: &Path, json: bool) -> Result<(String, bool), StatusError> {
    let file = path.display().to_string();
    let cfg = config::load(path)?;
    let admin = cfg.server.admin_listen.ok_or(StatusError::NoAdmin(file))?;
    let doc = status(&cfg).ok_or_else(|| StatusError::Unreachable(admin.to_string()))?;
    let healthy = active_is_up(&doc);
    let text = match json {
        true => serde_json::to_string_pretty(&doc).unwrap_or_default(),
        false => render(&doc),
    };
    Ok((text, healthy))
}

fn active_is_up(doc: &Value) -> bool {
    upstreams(doc)
        .iter()
        .any(|u| u["active"] == true && u["health"] == "up")
}

fn upstreams(doc: &Value) -> Vec<Value> {
    doc["upstreams"].as_array().cloned().unwrap_or_default()
}

fn render(doc: &Value) -> String {
    let now = unix_now();
    let mut out = format!(
        "switchyard {}, up {}, generation {}, config {} ({})\n",
        text(&doc["version"]),
        ago(doc["uptime_seconds"].as_f64().unwrap_or(0.0)),
        doc["generation"],
        text(&doc["config"]),
        text(&doc["config_file"]),
    );
    let state = match active_is_up(doc) {
        true => "up",
        false => "NOT UP",
    };
    out.push_str(&format!("active: {} ({state})\n", text(&doc["active"])));
    if doc["draining"] == true {
        out.push_str("draining: shutting down, ready_path answers 503\n");
    }
    out.push_str("upstreams:\n");
    for u in upstreams(doc) {
        let since = u["since_unix"]
            .as_f64()
            .map(|t| format!(" for {}", ago(now - t)))
            .unwrap_or_default();
        let mark = if u["active"] == true {
            "  <- active"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:<12} {:<28} {:<9}{since}{mark}\n",
            text(&u["name"]),
            text(&u["url"]),
            text(&u["health"]),
        ));
        if let Some(error) = u["error"].as_str() {
            out.push_str(&format!("  {:<12} last check: {error}\n", ""));
        }
    }
    out.push_str(&canary(&doc["canary"], now));
    if let Some(previous) = doc["previous"].as_object() {
        let left = previous
            .get("seconds_left")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let name = previous.get("upstream").map(text).unwrap_or_default();
        match previous.get("up").and_then(Value::as_bool) {
            Some(false) => out.push_str(&format!(
                "previous colour: {name} is down: its cookie holders go to the active one\n"
            )),
            _ => out.push_str(&format!(
                "previous colour: {name} keeps its cookie holders for {} more\n",
                ago(left)
            )),
        }
    }
    match doc["last_reload"].as_object() {
        Some(r) => {
            let outcome = match r.get("result").and_then(Value::as_str) {
                Some("ok") => "ok",
                Some("refused") => "REFUSED",
                _ => "FAILED",
            };
            let at = r.get("at_unix").and_then(Value::as_f64).unwrap_or(now);
            let message = r.get("message").and_then(Value::as_str).unwrap_or("");
            out.push_str(&format!(
                "last reload: {outcome}, {} ago: {message}\n",
                ago(now - at)
            ));
        }
        None => out.push_str("last reload: none since start\n"),
    }
    out
}

/// `canary: green, step 2 of 4, 25 % of clients, running for 3m 2s` and the interval's figures.
fn canary(c: &Value, now: f64) -> String {
    if c.is_null() {
        return "canary: none\n".to_owned();
    }
    let steps = c["steps"].as_array().map_or(0, Vec::len);
    let step = c["step"]
        .as_u64()
        .map_or(String::new(), |s| format!(", step {s} of {steps}"));
    let since = c["since_unix"]
        .as_f64()
        .map_or(String::new(), |t| format!(" for {}", ago(now - t)));
    let mut out = format!(
        "canary: {}{step}, {} % of clients, {}{since}\n",
        text(&c["upstream"]),
        c["weight"],
        text(&c["state"]),
    );
    let figures = &c["interval"];
    let p99 = figures["p99_seconds"]
        .as_f64()
        .map_or("-".to_owned(), |p| format!("{:.0} ms", p * 1000.0));
    out.push_str(&format!(
        "  this interval: {} requests, {} errors ({:.2} %), p99 {p99}\n",
        figures["requests"],
        figures["errors"],
        figures["error_ratio"].as_f64().unwrap_or(0.0) * 100.0,
    ));
    if let Some(reason) = c["reason"].as_str() {
        out.push_str(&format!("  {reason}\n"));
    }
    if c["state"] == "complete" {
        out.push_str(&format!(
            "  complete: serving it until `switchyard switch {}` promotes it\n",
            text(&c["upstream"])
        ));
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
fn ago(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(ago(12.4), "12s");
        assert_eq!(ago(250.0), "4m 10s");
        assert_eq!(ago(7500.0), "2h 5m");
        assert_eq!(ago(273_600.0), "3d 4h");
    }
}
