//! One request, whichever server read it (`h1` or hyper): the snapshot loaded once, the
//! dispatcher, and what reports the request when its response is done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};

use crate::http::client_body::ClientBody;
use crate::http::conn_clock::ConnClock;
use crate::http::connection::Respond;
use crate::http::tracked_body::TrackedBody;
use crate::policy::context::{ConnPermit, Peer};
use crate::policy::dispatch;
use crate::policy::errors::RequestError;
use crate::policy::worker::Worker;
use crate::serve::reporting::{Completion, RequestFacts};
use crate::state::metrics::RouteKind;
use crate::state::snapshot::Shared;

/// What every request on one connection shares.
pub(super) struct ConnContext {
    pub(super) shared: Arc<Shared>,
    pub(super) worker: Arc<Worker>,
    pub(super) peer: Peer,
    /// The connection's slot under `max_connections`, released when the connection ends,
    /// or handed to the tunnel when the connection is upgraded (a WebSocket outlives the
    /// HTTP connection it started on and must keep counting, so shutdown waits for it).
    pub(super) permit: ConnPermit,
}

impl Respond for ConnContext {
    type Report = Completion;

    fn respond(
        &self,
        clock: &Arc<ConnClock>,
        req: Request<ClientBody>,
        ambiguous: bool,
    ) -> impl std::future::Future<Output = Response<TrackedBody<Completion>>> + Send {
        respond(self, clock, req, ambiguous)
    }

    fn timeouts(&self) -> (Duration, Duration) {
        let server = &self.shared.load().config.server;
        (server.header_read_timeout, server.idle_timeout)
    }
}

/// One request, whichever server read it: the snapshot loaded once, the dispatcher, and
/// what will report the request when its response is done. Counted as in progress (for
/// the idle clock) until then.
async fn respond(
    conn: &ConnContext,
    clock: &Arc<ConnClock>,
    req: Request<ClientBody>,
    ambiguous: bool,
) -> Response<TrackedBody<Completion>> {
    let guard = clock.begin_request();
    let started = Instant::now();
    let snap = conn.shared.load();
    let facts = RequestFacts::capture(&req, conn.peer.ip, &snap);
    let (res, served) = match ambiguous {
        true => (
            RequestError::AmbiguousFraming.into_response(),
            dispatch::Served::by(RouteKind::Endpoint),
        ),
        false => {
            let ctx = dispatch::DispatchContext {
                peer: &conn.peer,
                shared: &conn.shared,
                worker: &conn.worker,
                snap: &snap,
                permit: &conn.permit,
            };
            let dispatch::Answer { response, served } = dispatch::handle(req, &ctx).await;
            let failure = response
                .as_ref()
                .err()
                .and_then(RequestError::upstream_failure);
            let served = served.failed(failure);
            if let Err(e) = &response {
                e.log(&conn.worker.errors_logged);
            }
            (response.unwrap_or_else(RequestError::into_response), served)
        }
    };
    let completion = Completion {
        started,
        status: res.status().as_u16(),
        served,
        shard: Arc::clone(&conn.worker.metrics),
        facts: facts.map(|f| Box::new((f, Arc::clone(&conn.shared)))),
        snap,
    };
    res.map(|body| TrackedBody::new(body, guard, completion))
}
