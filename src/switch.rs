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
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::config::{self, Config, ConfigError};
use crate::proxy::probe;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum SwitchError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error(
        "{file}: active is not a plain `active = \"...\"` line at the top of the file: {reason}"
    )]
    Edit { file: String, reason: String },
    #[error("server.pid_file is not set in {0}: cannot tell which daemon to reload")]
    NoPidFile(String),
    #[error("cannot read pid file {path}: {reason} (is switchyard running?)")]
    Pid { path: PathBuf, reason: String },
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

/// What the daemon reports about itself.
#[derive(Debug, Clone, PartialEq)]
struct Reported {
    active: String,
    generation: u64,
    /// From `/status` only: (unix seconds, ok, message) of the last reload.
    last_reload: Option<(f64, bool, String)>,
}

pub fn run(path: &Path, name: &str, wait: bool) -> Result<String, SwitchError> {
    let file = path.display().to_string();
    let original = fs::read_to_string(path)
        .map_err(|e| ConfigError::file(&file, format!("cannot read configuration: {e}")))?;
    let current = config::parse(path, &original)?;
    if current.active.name == name {
        return Ok(format!("{name} is already active in {file}; nothing to do"));
    }
    let edited = set_active(&original, name).map_err(|reason| SwitchError::Edit {
        file: file.clone(),
        reason,
    })?;
    let next = config::parse(path, &edited)?;
    let pid = read_pid(&next, &file)?;
    let before = wait.then(|| report(&next)).flatten();
    write_atomically(path, &edited)?;
    let signalled_at = unix_now();
    // SAFETY: kill(2) with a pid read from the daemon's pid file; no memory is involved.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let reason = std::io::Error::last_os_error();
        restore(path, &original)?;
        return Err(SwitchError::Pid {
            path: next.server.pid_file.clone().unwrap_or_default(),
            reason: format!("cannot signal pid {pid}: {reason}"),
        });
    }
    if !wait {
        return Ok(format!(
            "{file}: active = \"{name}\"; sent SIGHUP to {pid} (not waiting)"
        ));
    }
    let min_generation = before.as_ref().map_or(0, |b| b.generation + 1);
    match await_switch(&next, name, min_generation, signalled_at) {
        Ok(r) => Ok(format!(
            "switched to {name}: generation {} (pid {pid})",
            r.generation
        )),
        Err(reason) => {
            restore(path, &original)?;
            // Let the daemon re-read the restored file too, so file and daemon agree even
            // if the refused reload is still in progress.
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            Err(SwitchError::Refused {
                name: name.to_owned(),
                reason,
                file,
            })
        }
    }
}

/// Rewrites the top-level `active` key, keeping every comment and the layout.
fn set_active(text: &str, name: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let item = doc.get_mut("active").ok_or("no `active` key")?;
    let value = item.as_value_mut().ok_or("`active` is not a value")?;
    let decor = value.decor().clone();
    let mut fresh = toml_edit::Value::from(name);
    *fresh.decor_mut() = decor;
    *value = fresh;
    Ok(doc.to_string())
}

fn read_pid(config: &Config, file: &str) -> Result<i32, SwitchError> {
    let path = config
        .server
        .pid_file
        .clone()
        .ok_or_else(|| SwitchError::NoPidFile(file.to_owned()))?;
    let text = fs::read_to_string(&path).map_err(|e| SwitchError::Pid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let pid: i32 = text.trim().parse().map_err(|_| SwitchError::Pid {
        path: path.clone(),
        reason: format!("{:?} is not a pid", text.trim()),
    })?;
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return Err(SwitchError::Pid {
            path,
            reason: format!("no process {pid}"),
        });
    }
    Ok(pid)
}

/// Temp file beside the original (same filesystem, so rename is atomic), same mode,
/// fsynced before the rename and the directory after it.
fn write_atomically(path: &Path, text: &str) -> Result<(), SwitchError> {
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

fn await_switch(
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
            if let Some((at, false, message)) = &r.last_reload {
                if *at >= since {
                    return Err(message.clone());
                }
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

/// Asks the daemon: `/status` on `admin_listen` when configured and answering (it tells
/// why a reload failed), else `health_path` on the first listener.
fn report(cfg: &Config) -> Option<Reported> {
    let from_status = cfg
        .server
        .admin_listen
        .and_then(|admin| http_get(loopback(admin), "/status"));
    let body = match from_status {
        Some(body) => body,
        None => {
            let listen = *cfg.server.listen.first()?;
            http_get(loopback(listen), &cfg.server.health_path)?
        }
    };
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let last_reload = v.get("last_reload").and_then(|r| {
        Some((
            r.get("at_unix")?.as_f64()?,
            r.get("ok")?.as_bool()?,
            r.get("message")?.as_str()?.to_owned(),
        ))
    });
    Some(Reported {
        active: v.get("active")?.as_str()?.to_owned(),
        generation: v.get("generation")?.as_u64()?,
        last_reload,
    })
}

/// A wildcard listen address is reached on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// A GET of one of the daemon's own endpoints (the proxy's client, `probe`): the body of
/// a 200, or `None`.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let answer = probe::get_blocking(addr, &addr.to_string(), path, 1 << 20)?;
    (answer.status == http::StatusCode::OK)
        .then(|| String::from_utf8_lossy(&answer.body).into_owned())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
