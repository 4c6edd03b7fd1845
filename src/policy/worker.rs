//! Per-worker state. switchyard runs one single-threaded tokio runtime per core (like
//! nginx's worker processes) rather than one work-stealing runtime: a proxied request,
//! its client connection and its pooled upstream connection then live on the same thread,
//! and no request pays for a cross-thread wake-up. The profile of the work-stealing
//! version spent most of its time in futex wake-ups between threads.
//!
//! What a worker owns is private to its thread in practice, so the locks below are never
//! contended; they exist only because hyper wants `Send` services.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::ProxySettings;
use crate::http::upstream::pool::UpstreamClient;
use crate::policy::static_files::cache::FileCache;
use crate::state::log_budget::LogBudget;
use crate::state::metrics::Shard;
use crate::sys::deadlines::Deadlines;

pub struct Worker {
    client: ArcSwap<UpstreamClient>,
    pub files: FileCache,
    /// This worker's metrics counters.
    pub metrics: Arc<Shard>,
    /// `response_timeout` of this worker's upstream exchanges.
    pub deadlines: Deadlines,
    /// How many request-error lines this worker may still write this second.
    pub errors_logged: LogBudget,
}

impl Worker {
    pub fn new(settings: &ProxySettings, metrics: Arc<Shard>) -> Self {
        Worker {
            client: ArcSwap::from_pointee(UpstreamClient::new(settings)),
            files: FileCache::default(),
            metrics,
            deadlines: Deadlines::default(),
            errors_logged: LogBudget::default(),
        }
    }

    /// This worker's upstream client for `settings`. The client (and its warm pool) is
    /// kept across reloads and rebuilt only when its own settings changed; the old pool's
    /// idle connections close with it.
    pub fn client(&self, settings: &ProxySettings) -> Arc<UpstreamClient> {
        let current = self.client.load_full();
        if current.fits(settings) {
            return current;
        }
        let fresh = Arc::new(UpstreamClient::new(settings));
        self.client.store(Arc::clone(&fresh));
        fresh
    }

    /// Closes pooled upstream connections idle past `pool_idle_timeout`; run every second.
    pub fn reap_idle_connections(&self) {
        self.client.load().reap();
    }
}
