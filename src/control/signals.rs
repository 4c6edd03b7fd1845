//! Unix signals as one stream of operator intents. Handlers are installed before the
//! listeners open, so a SIGHUP that arrives during startup is queued, not fatal.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// SIGHUP: re-read the configuration file.
    Reload,
    /// SIGTERM or SIGINT: drain, stop accepting, finish in-flight requests, exit 0.
    Shutdown,
    /// SIGUSR1: reopen the access log file (logrotate).
    ReopenLogs,
}

pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
    usr1: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    pub async fn next(&mut self) -> Intent {
        tokio::select! {
            _ = self.hup.recv() => Intent::Reload,
            _ = self.term.recv() => Intent::Shutdown,
            _ = self.int.recv() => Intent::Shutdown,
            _ = self.usr1.recv() => Intent::ReopenLogs,
        }
    }
}

/// The systemd readiness protocol (`Type=notify`; `RELOADING=1` also serves
/// `Type=notify-reload` on systemd 253+). Each call is a no-op when
/// `NOTIFY_SOCKET` is not set (not started by systemd).
pub mod notify {
    use sd_notify::NotifyState;

    fn send(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }

    /// Listening and serving (also: a reload finished, whatever its outcome).
    pub fn ready() {
        send(&[NotifyState::Ready]);
    }

    /// A reload begins; systemd wants the monotonic time to pair it with the request.
    pub fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping() {
        send(&[NotifyState::Stopping]);
    }
}
