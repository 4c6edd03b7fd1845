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
