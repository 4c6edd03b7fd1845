//! What every finished request reports: a metrics sample and, when enabled, an access log
//! line. Both are emitted when the response body is finished (or dropped, when the client
//! went away), so the byte count and the duration cover the whole response.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{header, HeaderValue, Method, Request, Uri, Version};

use crate::config::AccessLog;
use crate::http::tracked_body::Report;
use crate::http::upstream::failure::UpstreamFailure;
use crate::policy::dispatch::Served;
use crate::policy::forwarding::client_ip;
use crate::state::access_log::Entry;
use crate::state::metrics::{Sample, Shard};
use crate::state::snapshot::{Shared, Snapshot};

/// The request facts an access log line needs, taken before the request is consumed.
pub struct RequestFacts {
    time: SystemTime,
    client: IpAddr,
    method: Method,
    uri: Uri,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl RequestFacts {
    /// `None` when the access log is off: then nothing is copied.
    pub fn capture<B>(req: &Request<B>, peer: IpAddr, snap: &Snapshot) -> Option<Self> {
        let server = &snap.config.server;
        if server.access_log == AccessLog::Off {
            return None;
        }
        Some(RequestFacts {
            time: SystemTime::now(),
            client: client_ip(req.headers(), peer, &server.trusted_proxies),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            referer: req.headers().get(header::REFERER).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
        })
    }
}

/// Carried by the response body until it is done.
pub struct Completion {
    pub started: Instant,
    pub status: u16,
    pub served: Served,
    pub shard: Arc<Shard>,
    /// The request's snapshot (moved here, not cloned: it names the upstream).
    pub snap: Arc<Snapshot>,
    /// Boxed: with the access log off it is `None`, and unboxed it would make every
    /// response body (moved several times per request) 200 bytes larger.
    pub facts: Option<Box<(RequestFacts, Arc<Shared>)>>,
}

impl Report for Completion {
    /// The response body broke off after its head was sent: for a proxied response, the
    /// upstream cut it short or framed it wrong.
    fn body_failed(&mut self, failure: UpstreamFailure) {
        if self.served.upstream.is_some() && self.served.failure.is_none() {
            self.served.failure = Some(failure);
        }
    }

    fn finish(self, bytes: u64) {
        let took = self.started.elapsed();
        let snap = &self.snap;
        let upstream = self
            .served
            .upstream
            .and_then(|i| snap.config.upstreams.get(i))
            .map(|u| u.name.as_str());
        self.shard.record(Sample {
            kind: self.served.kind,
            upstream,
            status: self.status,
            took,
            failure: self.served.failure,
        });
        if let Some(logged) = self.facts {
            let (facts, shared) = *logged;
            let entry = Entry {
                time: facts.time,
                client: facts.client,
                method: &facts.method,
                uri: &facts.uri,
                version: facts.version,
                status: self.status,
                bytes,
                referer: facts.referer.as_ref(),
                user_agent: facts.user_agent.as_ref(),
                duration: took,
                upstream,
                kind: self.served.kind.as_str(),
            };
            shared
                .access_log
                .log(&entry.render(snap.config.server.access_log_format));
        }
    }
}
