//! The running daemon as the command-line tools see it: which process to signal, and what
//! it reports about itself (from `admin_listen`'s `/status` when configured, else the
//! health endpoint), asked with the proxy's own client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::config::Config;
use crate::http::upstream::probe;

#[derive(Debug, Error)]
pub enum PidError {
    #[error("server.pid_file is not set in {0} (and MAINPID is not set): cannot tell which daemon to signal")]
    NoPidFile(String),
    #[error("cannot read pid file {path}: {reason} (is switchyard running?)")]
    Unreadable { path: PathBuf, reason: String },
    #[error("no switchyard process {pid} ({source})")]
    Gone { pid: i32, source: std::io::Error },
}

/// What the daemon reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub active: String,
    pub generation: u64,
    /// From `/status` only.
    pub last_reload: Option<LastReload>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastReload {
    pub at_unix: f64,
    pub ok: bool,
    pub message: String,
}

/// The daemon's pid: `$MAINPID` when systemd runs the command (`ExecReload=`), else
/// `server.pid_file`. Checked to exist.
pub fn daemon_pid(config: &Config, file: &str) -> Result<i32, PidError> {
    let from_systemd = std::env::var("MAINPID")
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|&p| p > 0);
    let pid = match from_systemd {
        Some(pid) => pid,
        None => pid_from_file(config, file)?,
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    match unsafe { libc::kill(pid, 0) } {
        0 => Ok(pid),
        _ => Err(PidError::Gone {
            pid,
            source: std::io::Error::last_os_error(),
        }),
    }
}

fn pid_from_file(config: &Config, file: &str) -> Result<i32, PidError> {
    let path = config
        .server
        .pid_file
        .clone()
        .ok_or_else(|| PidError::NoPidFile(file.to_owned()))?;
    let text = std::fs::read_to_string(&path).map_err(|e| PidError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| PidError::Unreadable {
            path,
            reason: format!("{:?} is not a pid", text.trim()),
        })
}

/// Sends SIGHUP to `pid`.
pub fn sighup(pid: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid checked by `daemon_pid`; no memory is involved.
    match unsafe { libc::kill(pid, libc::SIGHUP) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Asks the daemon: `/status` on `admin_listen` when configured and answering (it tells
/// why a reload failed), else `health_path` on the first listener.
pub fn report(cfg: &Config) -> Option<Reported> {
    let body = match status(cfg) {
        Some(v) => v,
        None => {
            let listen = *cfg.server.listen.first()?;
            let body = http_get(loopback(listen), &cfg.server.health_path)?;
            serde_json::from_str(&body).ok()?
        }
    };
    let last_reload = body.get("last_reload").and_then(|r| {
        Some(LastReload {
            at_unix: r.get("at_unix")?.as_f64()?,
            ok: r.get("ok")?.as_bool()?,
            message: r.get("message")?.as_str()?.to_owned(),
        })
    });
    Some(Reported {
        active: body.get("active")?.as_str()?.to_owned(),
        generation: body.get("generation")?.as_u64()?,
        last_reload,
    })
}

/// How waiting for a reload ended.
pub enum Waited {
    /// The daemon reports the generation waited for (or a later one).
    Done(Reported),
    /// A reload since the signal was refused or failed: its message.
    Refused(String),
    /// Neither, within the wait: the last report, if the daemon answered at all.
    Silent(Option<Reported>),
}

/// Waits up to `wait` until the daemon reports `generation` or later, or a failed reload
/// recorded at or after `since` (unix seconds: when the signal was sent).
pub fn await_generation(
    cfg: &Config,
    generation: u64,
    since: f64,
    wait: std::time::Duration,
) -> Waited {
    let deadline = std::time::Instant::now() + wait;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        if let Some(now) = report(cfg) {
            if now.generation >= generation {
                return Waited::Done(now);
            }
            let refused = now
                .last_reload
                .as_ref()
                .filter(|l| !l.ok && l.at_unix >= since);
            if let Some(refused) = refused {
                return Waited::Refused(refused.message.clone());
            }
            last = Some(now);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Waited::Silent(last)
}

/// The admin `/status` document, when `admin_listen` is configured and answers.
pub fn status(cfg: &Config) -> Option<serde_json::Value> {
    let admin = cfg.server.admin_listen?;
    serde_json::from_str(&http_get(loopback(admin), "/status")?).ok()
}

/// A wildcard listen address is reached on loopback.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
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

/// A GET of one of the daemon's own endpoints: the body of a 200, or `None`.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let answer = probe::get_blocking(addr, &addr.to_string(), path, 1 << 20)?;
    (answer.status == http::StatusCode::OK)
        .then(|| String::from_utf8_lossy(&answer.body).into_owned())
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
