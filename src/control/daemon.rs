//! The daemon's life: load the configuration, bind, serve, react to signals, drain, exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::config::{self, ConfigError};
use crate::control::admin;
use crate::control::canary;
use crate::control::prober;
use crate::control::reload;
use crate::control::signals::{notify, Intent, Signals};
use crate::serve::listeners;
use crate::serve::workers::Workers;
use crate::state::access_log::AccessLogger;
use crate::state::snapshot::Shared;
use crate::sys::socket_activation::{ActivationError, Passed};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start threads: {0}")]
    Workers(std::io::Error),
    #[error("socket activation: {0}")]
    Activation(#[from] ActivationError),
}

/// Runs until SIGTERM/SIGINT and a graceful shutdown; errors are startup failures.
pub async fn run(config_path: &Path) -> Result<(), StartError> {
    let config = config::load(config_path)?;
    let mut signals = Signals::install().map_err(StartError::Signals)?;
    let mut passed = Passed::from_env()?;
    let listeners = match passed.as_mut() {
        Some(passed) => {
            let listeners = passed.take_listen(&config.server.listen)?;
            tracing::info!("socket-activated: serving on the passed sockets");
            listeners
        }
        None => listeners::bind(&config.server.listen)
            .map_err(|(addr, source)| StartError::Bind { addr, source })?,
    };
    let admin_passed = config
        .server
        .admin_listen
        .and_then(|addr| passed.as_mut()?.take(addr));
    if let Some(passed) = passed {
        passed.finish()?;
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let server_cfg = config.server.clone();
    let access_log = AccessLogger::start(&config.server.access_log).map_err(StartError::Workers)?;
    let shared = Arc::new(Shared::new(reload::initial(config), access_log));
    if let Some(path) = &server_cfg.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            StartError::PidFile {
                path: path.clone(),
                source,
            }
        })?;
    }
    if let Some(addr) = server_cfg.admin_listen {
        let admin = admin_passed
            .map_or_else(
                || admin::bind(addr),
                |l| l.set_nonblocking(true).map(|()| l),
            )
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| StartError::Bind { addr, source })?;
        tracing::info!("admin interface on {addr}: /status, /metrics");
        tokio::spawn(admin::serve(admin, Arc::clone(&shared)));
    }
    log_startup(&shared, &listeners);
    tokio::spawn(prober::run(Arc::clone(&shared)));
    canary::start(&shared, &shared.load().config);
    tokio::spawn(canary::run(Arc::clone(&shared)));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = Workers::start(&listeners, &shared, server_cfg.max_connections, workers)
        .map_err(StartError::Workers)?;
    // The workers hold duplicates; the originals must close so that shutdown really
    // stops accepting.
    drop(listeners);
    notify::ready();

    loop {
        match signals.next().await {
            Intent::Reload => {
                tracing::info!("SIGHUP: reloading configuration");
                notify::reloading();
                let _ = reload::reload(&shared).await;
                notify::ready();
            }
            Intent::ReopenLogs => {
                tracing::info!("SIGUSR1: reopening the access log");
                shared.access_log.reopen();
            }
            Intent::Shutdown => break,
        }
    }
    notify::stopping();
    shutdown(&shared, server).await;
    if let Some(path) = &server_cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn log_startup(shared: &Shared, listeners: &[std::net::TcpListener]) {
    let snap = shared.load();
    let c = &snap.config;
    for l in listeners {
        if let Ok(addr) = l.local_addr() {
            tracing::info!("listening on {addr}");
        }
    }
    tracing::info!(
        "switchyard {} started: config {} ({}), active {} ({}), {} upstreams, {} routes, web root {}",
        env!("CARGO_PKG_VERSION"),
        c.file.display(),
        c.digest,
        c.active.name,
        c.active.url,
        c.upstreams.len(),
        c.routes.len(),
        c.static_files.as_ref().map_or("none".to_owned(), |s| s.root.display().to_string()),
    );
}

/// SIGTERM: fail `ready_path` for `drain_delay` while still serving, so the load balancer
/// deregisters the host; then stop accepting and let in-flight requests finish.
async fn shutdown(shared: &Shared, server: Workers) {
    let settings = shared.load().config.server.clone();
    shared.start_draining();
    if !settings.drain_delay.is_zero() {
        tracing::info!(
            "shutting down: draining for {:?} (ready_path answers 503)",
            settings.drain_delay
        );
        tokio::time::sleep(settings.drain_delay).await;
    }
    tracing::info!(
        "shutting down: no longer accepting; waiting up to {:?} for in-flight requests",
        settings.shutdown_timeout
    );
    let left = server.shutdown(settings.shutdown_timeout).await;
    if left > 0 {
        tracing::warn!("shutdown_timeout reached with {left} connections still open; closing them");
    } else {
        tracing::info!("shutdown complete");
    }
}
