//! What every finished request reports: a metrics sample and, when enabled, an access log
//! line. Both are emitted when the response body is finished (or dropped, when the client
//! went away), so the byte count and the duration cover the whole response.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{header, HeaderValue, Method, Request, Uri, Version};

use crate::access_log::Entry;
use crate::config::{AccessLog, Upstream};
use crate::metrics::{RouteKind, Sample, Shard, UpstreamFailure};
use crate::proxy::client_ip;
use crate::snapshot::{Shared, Snapshot};

/// How the handler answered a request.
pub struct Served {
    pub kind: RouteKind,
    /// Index into the snapshot's `upstreams`.
    pub upstream: Option<usize>,
    /// What went wrong on the upstream's side, if anything did.
    pub failure: Option<UpstreamFailure>,
}

impl Served {
    pub fn by(kind: RouteKind) -> Self {
        Served {
            kind,
            upstream: None,
            failure: None,
        }
    }

    pub fn proxied(kind: RouteKind, upstream: &Upstream) -> Self {
        Served {
            kind,
            upstream: Some(upstream.index),
            failure: None,
        }
    }

    /// Counted only for a request that went to an upstream.
    pub fn failed(mut self, failure: Option<UpstreamFailure>) -> Self {
        if self.upstream.is_some() {
            self.failure = failure;
        }
        self
    }
}

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

impl Completion {
    /// The response body broke off after its head was sent: for a proxied response, the
    /// upstream cut it short or framed it wrong.
    pub fn body_failed(&mut self, failure: UpstreamFailure) {
        if self.served.upstream.is_some() && self.served.failure.is_none() {
            self.served.failure = Some(failure);
        }
    }

    pub fn finish(self, bytes: u64) {
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
