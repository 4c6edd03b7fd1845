//! `switchyard canary NAME`: writes `[canary]` (comments kept, atomic, reload), follows the
//! daemon's plan step by step from `/status`, and when it completes makes NAME `active`
//! and removes `[canary]`; when the daemon rolls it back, removes `[canary]` and fails
//! with the reason. `--abort` removes `[canary]` at once. The daemon runs the plan itself:
//! if this command dies, the canary still finishes or rolls back.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;
use toml_edit::{value, Array, DocumentMut, Item, Table};

use super::running::{await_generation, daemon_pid, report, sighup, status, unix_now, Waited};
use super::switch::{await_switch, set_active, write_atomically, SwitchError};
use crate::config::{self, Config, ConfigError};

/// How long the daemon may take to show a reload.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
/// How long the daemon may stay silent while a plan is followed.
const SILENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum CanaryError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Switch(#[from] SwitchError),
    #[error("{0}")]
    Plan(String),
    #[error("{file}: cannot edit: {reason}")]
    Edit { file: String, reason: String },
    #[error("server.admin_listen is not set in {0}: the canary is followed on the admin /status endpoint (or use --no-wait)")]
    NoAdmin(String),
    #[error("the daemon did not show the canary within {0:?}: {1}")]
    NotApplied(Duration, String),
    #[error("canary {name} rolled back: {reason}; [canary] removed from {file}")]
    RolledBack {
        name: String,
        reason: String,
        file: String,
    },
    #[error("canary {name} complete, but the switch to it was refused: {reason}; {file} restored to the canary, which keeps running (`switchyard switch {name}` to try again)")]
    NotPromoted {
        name: String,
        reason: String,
        file: String,
    },
    #[error("canary {name} no longer in force: {why}")]
    Lost { name: String, why: String },
}

/// The plan as given on the command line.
pub struct Plan {
    pub steps: Vec<u8>,
    pub interval: String,
    pub max_error_ratio: f64,
    pub max_p99: Option<String>,
}

/// Starts a canary of `name` and, with `wait`, follows it to the end, telling `say`
/// each step.
pub fn run(
    path: &Path,
    name: &str,
    plan: &Plan,
    wait: bool,
    say: &mut dyn FnMut(String),
) -> Result<String, CanaryError> {
    let file = path.display().to_string();
    check_plan(plan)?;
    let edit_err = edit_error(&file);
    let mut original = read(path)?;
    let affinity = affinity_of(&original);
    // The new table is validated against the file as it is, before anything changes.
    let edited = with_canary(&original, name, plan, affinity.as_deref()).map_err(&edit_err)?;
    let next = config::parse(path, &edited)?;
    if wait && next.server.admin_listen.is_none() {
        return Err(CanaryError::NoAdmin(file.clone()));
    }
    if let Some(old) = config::parse(path, &original)?.canary {
        // A plan always starts at its first step: the canary in the file (running,
        // complete or rolled back) goes first, with its own reload.
        say(format!(
            "removing the canary already in {file} ({}) so that this one starts afresh",
            old.upstream.name
        ));
        abort(path)?;
        original = read(path)?;
    }
    let edited = with_canary(&original, name, plan, affinity.as_deref()).map_err(&edit_err)?;
    let next = config::parse(path, &edited)?;
    let before = report(&next).map_or(0, |r| r.generation);
    apply(path, &next, &edited, &file)?;
    if !wait {
        return Ok(format!(
            "{file}: [canary] upstream = \"{name}\"; sent SIGHUP (not waiting)"
        ));
    }
    let outcome = follow(path, &next, name, before, say);
    // The daemon never showed this canary: the file goes back to what it said before, so
    // file and daemon agree.
    if let Err(CanaryError::NotApplied(..)) = &outcome {
        write_atomically(path, &original)?;
    }
    outcome
}

/// The `affinity` of the `[canary]` in `text`, if it sets one: a new plan keeps it.
fn affinity_of(text: &str) -> Option<String> {
    let doc: DocumentMut = text.parse().ok()?;
    let affinity = doc.get("canary")?.get("affinity")?.as_str()?;
    Some(affinity.to_owned())
}

/// The plan's own rules, named by their flags (the file's validation would name a line of
/// a file that is not written yet).
fn check_plan(plan: &Plan) -> Result<(), CanaryError> {
    let bad = |flag: &str, why: String| Err(CanaryError::Plan(format!("{flag}: {why}")));
    let rising = plan.steps.windows(2).all(|w| w[0] < w[1]);
    if plan.steps.is_empty() || !rising || plan.steps.iter().any(|s| *s == 0 || *s > 100) {
        return bad(
            "--steps",
            format!(
                "{:?} must rise, each from 1 to 100 (e.g. 5,25,50,100)",
                plan.steps
            ),
        );
    }
    for (flag, value) in [
        ("--interval", Some(&plan.interval)),
        ("--max-p99", plan.max_p99.as_ref()),
    ] {
        if let Some(value) = value {
            match config::parse_duration(value) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(24 * 3600) => {}
                Ok(_) => {
                    return bad(
                        flag,
                        format!("{value:?} must be above zero and at most 24h"),
                    )
                }
                Err(e) => return bad(flag, e.to_string()),
            }
        }
    }
    Ok(())
}

/// Removes `[canary]` and reloads: every client goes back to `active` at once.
pub fn abort(path: &Path) -> Result<String, CanaryError> {
    let file = path.display().to_string();
    let original = read(path)?;
    let current = config::parse(path, &original)?;
    let Some(canary) = &current.canary else {
        return Ok(format!("no [canary] in {file}; nothing to do"));
    };
    let name = canary.upstream.name.clone();
    let edited = without_canary(&original).map_err(edit_error(&file))?;
    let next = config::parse(path, &edited)?;
    match report(&next) {
        Some(before) => apply_and_wait(path, &next, &edited, &file, before.generation + 1)?,
        None => apply(path, &next, &edited, &file)?,
    }
    Ok(format!(
        "canary {name} aborted: [canary] removed from {file}, every client on {}",
        next.active.name
    ))
}

/// Writes `text` (validated as `next`), signals the daemon and waits until it reports
/// `generation`: the file and the daemon agree when this returns.
fn apply_and_wait(
    path: &Path,
    next: &Config,
    text: &str,
    file: &str,
    generation: u64,
) -> Result<(), CanaryError> {
    let since = unix_now();
    apply(path, next, text, file)?;
    match await_generation(next, generation, since, RELOAD_WAIT) {
        Waited::Done(_) => Ok(()),
        Waited::Refused(why) => Err(CanaryError::NotApplied(RELOAD_WAIT, why)),
        Waited::Silent(last) => {
            let why = last
                .and_then(|r| r.last_reload)
                .map_or("the daemon did not answer".to_owned(), |l| l.message);
            Err(CanaryError::NotApplied(RELOAD_WAIT, why))
        }
    }
}

/// Why the file could not be edited, naming it.
fn edit_error(file: &str) -> impl Fn(String) -> CanaryError + '_ {
    move |reason| CanaryError::Edit {
        file: file.to_owned(),
        reason,
    }
}

fn read(path: &Path) -> Result<String, CanaryError> {
    let file = path.display().to_string();
    fs::read_to_string(path)
        .map_err(|e| ConfigError::file(&file, format!("cannot read configuration: {e}")).into())
}

/// Writes `text` (already validated as `next`) and signals the daemon.
fn apply(path: &Path, next: &Config, text: &str, file: &str) -> Result<(), CanaryError> {
    let pid = daemon_pid(next, file).map_err(SwitchError::from)?;
    write_atomically(path, text)?;
    sighup(pid).map_err(|source| SwitchError::Signal { pid, source })?;
    Ok(())
}

/// The file with a fresh `[canary]` table for `name`, with `affinity` if given.
fn with_canary(
    text: &str,
    name: &str,
    plan: &Plan,
    affinity: Option<&str>,
) -> Result<String, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut table = Table::new();
    table.insert("upstream", value(name));
    let mut steps = Array::new();
    for step in &plan.steps {
        steps.push(i64::from(*step));
    }
    table.insert("steps", value(steps));
    table.insert("interval", value(plan.interval.as_str()));
    table.insert("max_error_ratio", value(plan.max_error_ratio));
    if let Some(p99) = &plan.max_p99 {
        table.insert("max_p99", value(p99.as_str()));
    }
    if let Some(affinity) = affinity {
        table.insert("affinity", value(affinity));
    }
    doc.insert("canary", Item::Table(table));
    Ok(doc.to_string())
}

/// The file with `[canary]`'s upstream set to `name`, everything else kept.
pub(super) fn retarget(text: &str, name: &str) -> Result<String, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let canary = doc
        .get_mut("canary")
        .and_then(Item::as_table_like_mut)
        .ok_or("no [canary] table")?;
    canary.insert("upstream", value(name));
    Ok(doc.to_string())
}

pub(super) fn without_canary(text: &str) -> Result<String, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    doc.remove("canary");
    Ok(doc.to_string())
}

/// What the command last printed, so each change is printed once.
#[derive(PartialEq)]
struct Seen {
    weight: u64,
    step: Option<u64>,
    state: String,
    reason: Option<String>,
}

fn follow(
    path: &Path,
    cfg: &Config,
    name: &str,
    before: u64,
    say: &mut dyn FnMut(String),
) -> Result<String, CanaryError> {
    let file = path.display().to_string();
    let started = Instant::now();
    let mut heard = Instant::now();
    let mut seen: Option<Seen> = None;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(doc) = status(cfg) else {
            if heard.elapsed() > SILENCE {
                return Err(CanaryError::Lost {
                    name: name.to_owned(),
                    why: format!("the daemon has not answered for {SILENCE:?}"),
                });
            }
            continue;
        };
        heard = Instant::now();
        let generation = doc["generation"].as_u64().unwrap_or(0);
        let canary = &doc["canary"];
        if generation <= before || canary["upstream"] != name {
            if started.elapsed() > RELOAD_WAIT {
                let why = doc["last_reload"]["message"]
                    .as_str()
                    .unwrap_or("no reload");
                return Err(CanaryError::NotApplied(RELOAD_WAIT, why.to_owned()));
            }
            if generation > before && canary.is_null() {
                return Err(CanaryError::Lost {
                    name: name.to_owned(),
                    why: "[canary] was removed from the file".to_owned(),
                });
            }
            continue;
        }
        let now = Seen {
            weight: canary["weight"].as_u64().unwrap_or(0),
            step: canary["step"].as_u64(),
            state: canary["state"].as_str().unwrap_or("").to_owned(),
            reason: canary["reason"].as_str().map(str::to_owned),
        };
        if seen.as_ref() != Some(&now) {
            say(describe(name, &now, canary));
        }
        match now.state.as_str() {
            "complete" => return promote(path, name, &file),
            "rolled back" => {
                let reason = now.reason.clone().unwrap_or_default();
                let edited = without_canary(&read(path)?).map_err(edit_error(&file))?;
                let next = config::parse(path, &edited)?;
                apply_and_wait(path, &next, &edited, &file, generation + 1)?;
                return Err(CanaryError::RolledBack {
                    name: name.to_owned(),
                    reason,
                    file,
                });
            }
            _ => {}
        }
        seen = Some(now);
    }
}

fn describe(name: &str, seen: &Seen, canary: &Value) -> String {
    let steps = canary["steps"].as_array().map_or(0, Vec::len);
    let step = seen
        .step
        .map_or(String::new(), |s| format!(", step {s} of {steps}"));
    let reason = seen
        .reason
        .as_ref()
        .map_or(String::new(), |r| format!(": {r}"));
    format!(
        "canary {name}: {}{step}, {} % of clients{reason}",
        seen.state, seen.weight
    )
}

/// The plan is done: `active = NAME`, `[canary]` removed, one reload, confirmed.
fn promote(path: &Path, name: &str, file: &str) -> Result<String, CanaryError> {
    let edit_err = edit_error(file);
    let original = read(path)?;
    let edited = without_canary(&original).map_err(&edit_err)?;
    let edited = set_active(&edited, name).map_err(&edit_err)?;
    let next = config::parse(path, &edited)?;
    let before = report(&next).map_or(0, |r| r.generation);
    let signalled_at = super::running::unix_now();
    apply(path, &next, &edited, file)?;
    let r = match await_switch(&next, name, before + 1, signalled_at) {
        Ok(r) => r,
        Err(reason) => {
            // The daemon kept the canary (say NAME failed its on-the-spot check): the file
            // goes back to the canary, so that a later reload does not switch by surprise.
            write_atomically(path, &original)?;
            return Err(CanaryError::NotPromoted {
                name: name.to_owned(),
                reason,
                file: file.to_owned(),
            });
        }
    };
    Ok(format!(
        "canary {name} complete: {name} is active, [canary] removed from {file} (generation {})",
        r.generation
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_written_and_removed_keeping_comments() {
        let text = "# app\nactive = \"blue\" # live\n\n[upstreams]\nblue = \"127.0.0.1:1\"\n";
        let plan = Plan {
            steps: vec![10, 50, 100],
            interval: "30s".into(),
            max_error_ratio: 0.02,
            max_p99: Some("800ms".into()),
        };
        let with = with_canary(text, "green", &plan, None).expect("edit");
        assert!(with.starts_with(text), "{with}");
        assert!(with.contains("[canary]\nupstream = \"green\"\nsteps = [10, 50, 100]\ninterval = \"30s\"\nmax_error_ratio = 0.02\nmax_p99 = \"800ms\"\n"), "{with}");
        assert_eq!(without_canary(&with).expect("edit"), text);
    }
}
