//! `switchyard reload`: validate the file, SIGHUP the daemon (`$MAINPID` under systemd,
//! else `server.pid_file`) and wait for the outcome, so that `ExecReload=switchyard reload`
//! makes `systemctl reload` return when the reload is done, and fail when it was refused,
//! on every systemd version (`Type=notify-reload` needs 253).

use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use super::running::{await_generation, daemon_pid, report, sighup, unix_now, PidError, Waited};
use crate::config::{self, ConfigError};

/// A switching reload may probe the new active upstream first (`health_timeout`).
const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Pid(#[from] PidError),
    #[error("cannot signal pid {pid}: {source}")]
    Signal { pid: i32, source: std::io::Error },
    #[error("cannot ask the daemon for its generation (neither admin_listen's /status nor the health endpoint answers)")]
    Unreachable,
    #[error("reload refused by the daemon: {0}")]
    Refused(String),
    #[error("the daemon still reports generation {0} after {WAIT:?}")]
    Timeout(u64),
}

pub fn run(path: &Path) -> Result<String, ReloadError> {
    let file = path.display().to_string();
    let next = config::load(path)?;
    let pid = daemon_pid(&next, &file)?;
    let before = report(&next).ok_or(ReloadError::Unreachable)?;
    let since = unix_now();
    sighup(pid).map_err(|source| ReloadError::Signal { pid, source })?;
    match await_generation(&next, before.generation + 1, since, WAIT) {
        Waited::Done(now) => Ok(format!(
            "reloaded {file}: generation {}, active {} (pid {pid})",
            now.generation, now.active
        )),
        Waited::Refused(message) => Err(ReloadError::Refused(message)),
        Waited::Silent(_) => Err(ReloadError::Timeout(before.generation)),
    }
}
