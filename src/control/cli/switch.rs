//! `switchyard switch NAME`: the blue/green switch as one command that cannot leave the
//! file and the daemon disagreeing.
//!
//! 1. set `active = "NAME"` with toml_edit, so comments and layout survive;
//! 2. validate the result with the daemon's own validation (nothing is written on error);
//! 3. replace the file atomically (temp file in the same directory, fsync, rename, keeping
//!    the file's mode);
//! 4. SIGHUP the pid in `server.pid_file`;
//! 5. wait until the daemon reports the new active upstream in a new generation (from
//!    `admin_listen`'s `/status` when configured, else `health_path`). If `/status` says the
//!    reload failed, or nothing changes within 10 s, put the old file back and fail.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::running::{daemon_pid, report, sighup, unix_now, PidError, Reported};
use crate::config::{self, Config, ConfigError};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum SwitchError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "{file}: active is not a plain `active = \"...\"` line at the top of the file: {reason}"
    )]
    Edit { file: String, reason: String },
    #[error("{0}")]
    Pid(#[from] PidError),
    #[error("cannot signal pid {pid}: {source}")]
    Signal { pid: i32, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("switch to {name} refused by the daemon: {reason}; {file} restored")]
    Refused {
        name: String,
        reason: String,
        file: String,
    },
}

pub fn run(path: &Path, name: &str, wait: bool) -> Result<String, SwitchError> {
    let file = path.display().to_string();
    let original = fs::read_to_string(path)
        .map_err(|e| ConfigError::file(&file, format!("cannot read configuration: {e}")))?;
    let current = config::parse(path, &original)?;
    if current.active.name == name {
        return Ok(format!("{name} is already active in {file}; nothing to do"));
    }
    let edit_err = |reason| SwitchError::Edit {
        file: file.clone(),
        reason,
    };
    let mut edited = set_active(&original, name).map_err(edit_err)?;
    let mut note = String::new();
    if let Some(canary) = current.canary.as_ref().filter(|c| c.upstream.name == name) {
        let previous = &current.active;
        // A canary at 0 % with no plan only gives out colour cookies: it moves to the
        // colour now idle, so the next switch keeps sessions too. Any other canary of
        // the new active upstream is promoted by this switch and goes.
        let affinity_only = canary.weight == 0 && canary.steps.is_empty();
        if affinity_only && previous.health.is_some() {
            edited = super::canary::retarget(&edited, &previous.name).map_err(edit_err)?;
            note = format!("; [canary] at 0 % now names {}", previous.name);
        } else if affinity_only {
            edited = super::canary::without_canary(&edited).map_err(edit_err)?;
            note = format!(
                "; [canary] at 0 % removed: {} has no health path, so its cookie holders cannot be kept on it",
                previous.name
            );
        } else {
            edited = super::canary::without_canary(&edited).map_err(edit_err)?;
            note = format!("; the canary of {name} is promoted: [canary] removed");
        }
    }
    let next = config::parse(path, &edited)?;
    let pid = daemon_pid(&next, &file)?;
    let before = wait.then(|| report(&next)).flatten();
    write_atomically(path, &edited)?;
    let signalled_at = unix_now();
    if let Err(source) = sighup(pid) {
        restore(path, &original)?;
        return Err(SwitchError::Signal { pid, source });
    }
    if !wait {
        return Ok(format!(
            "{file}: active = \"{name}\"{note}; sent SIGHUP to {pid} (not waiting)"
        ));
    }
    let min_generation = before.as_ref().map_or(0, |b| b.generation + 1);
    match await_switch(&next, name, min_generation, signalled_at) {
        Ok(r) => Ok(format!(
            "switched to {name}: generation {} (pid {pid}){note}",
            r.generation
        )),
        Err(reason) => {
            restore(path, &original)?;
            Err(SwitchError::Refused {
                name: name.to_owned(),
                reason,
                file,
            })
        }
    }
}

/// Rewrites the top-level `active` key, keeping every comment and the layout.
pub(super) fn set_active(text: &str, name: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let item = doc.get_mut("active").ok_or("no `active` key")?;
    let value = item.as_value_mut().ok_or("`active` is not a value")?;
    let decor = value.decor().clone();
    let mut fresh = toml_edit::Value::from(name);
    *fresh.decor_mut() = decor;
    *value = fresh;
    Ok(doc.to_string())
}

/// Temp file beside the original (same filesystem, so rename is atomic), same mode,
/// fsynced before the rename and the directory after it.
pub(super) fn write_atomically(path: &Path, text: &str) -> Result<(), SwitchError> {
    let err = |source| SwitchError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.switch-{}", std::process::id()));
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

fn restore(path: &Path, original: &str) -> Result<(), SwitchError> {
    write_atomically(path, original)
}

pub(super) fn await_switch(
    cfg: &Config,
    name: &str,
    min_generation: u64,
    since: f64,
) -> Result<Reported, String> {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(r) = report(cfg) {
            if r.active == name && r.generation >= min_generation {
                return Ok(r);
            }
            if let Some(last) = r
                .last_reload
                .as_ref()
                .filter(|l| !l.ok && l.at_unix >= since)
            {
                return Err(last.message.clone());
            }
            last = Some(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(match last {
        Some(r) => format!(
            "the daemon still reports active {} in generation {} after {WAIT:?}",
            r.active, r.generation
        ),
        None => {
            format!("the daemon did not answer on its health or status endpoint within {WAIT:?}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_active_keeps_comments_and_layout() {
        let text = "# the app\nactive = \"blue\"   # flip me\n\n[upstreams]\nblue = \"127.0.0.1:1\" # b\ngreen = \"127.0.0.1:2\"\n";
        let out = set_active(text, "green").unwrap();
        assert_eq!(out, text.replace("active = \"blue\"", "active = \"green\""));
    }
}
