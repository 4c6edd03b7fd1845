//! The pooled keep-alive HTTP/1.1 client that carries proxied requests to upstreams.
//!
//! One client serves every upstream (the pool is keyed by authority). It is rebuilt only
//! when `connect_timeout` or `pool_idle_timeout` change on reload; otherwise the new
//! snapshot shares it and the warm connections survive the reload.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::request_body::RequestBody;
use crate::config::ProxySettings;

pub struct UpstreamClient {
    pub(super) http: Client<HttpConnector, RequestBody>,
    /// Keeps no idle connections, so every request on it gets a new one: for the retry
    /// after a stale pooled connection, which must not pick another stale one.
    pub(super) fresh: Client<HttpConnector, RequestBody>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(settings: &ProxySettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            // A request whose pooled connection turned out to be closed before anything was
            // written is sent again on a fresh one: the classic 502 right after an app restart.
            .retry_canceled_requests(true)
            .build(connector.clone());
        let fresh = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        UpstreamClient {
            http,
            fresh,
            connect_timeout: settings.connect_timeout,
            pool_idle_timeout: settings.pool_idle_timeout,
        }
    }

    /// Whether this client can serve `settings` unchanged.
    pub fn fits(&self, settings: &ProxySettings) -> bool {
        self.connect_timeout == settings.connect_timeout
            && self.pool_idle_timeout == settings.pool_idle_timeout
    }
}
