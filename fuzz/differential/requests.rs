//! Differential harness for the client side of the HTTP edge: the same bytes, in the same
//! pieces, go into switchyard's connection loop (`connection::serve`: its own HTTP/1.1
//! path, hyper for one request or the rest, the smuggling scan, the request checks) and
//! into hyper's server alone, each over an in-memory pipe. Each records the messages it
//! would hand the application: method, target, version, headers in order, body bytes.
//!
//! The rule: switchyard hands over exactly hyper's messages, or a prefix of them (it
//! refused or closed earlier: stricter), never a message hyper would not have produced and
//! never different fields or body bytes. Shared by the cargo-fuzz target and the proptest
//! run in `cargo test` (`#[path]`-included, so there is one copy).

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use switchyard::parts::{connection, request_checks, Respond};
use switchyard::parts::{Body, ClientBody, ConnClock, TrackedBody};

/// A request as the application would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// `None`: the body could not be read whole (malformed, cut short).
    pub body: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Outcome {
    pub ours: Vec<Message>,
    pub hyper: Vec<Message>,
    /// Switchyard's connection did not end within the time limit.
    pub hung: bool,
}

impl Outcome {
    /// `Err` with what differs when switchyard was looser than hyper or hung.
    pub fn verdict(&self) -> Result<(), String> {
        if self.hung {
            return Err(format!("switchyard hung; hyper saw {:#?}", self.hyper));
        }
        if self.ours.len() > self.hyper.len() {
            return Err(format!(
                "switchyard handed over more requests than hyper: {:#?} vs {:#?}",
                self.ours, self.hyper
            ));
        }
        for (i, (ours, theirs)) in self.ours.iter().zip(&self.hyper).enumerate() {
            let last = i + 1 == self.ours.len();
            let same_head = (&ours.method, &ours.target, &ours.version, &ours.headers)
                == (
                    &theirs.method,
                    &theirs.target,
                    &theirs.version,
                    &theirs.headers,
                );
            // A body switchyard could not read whole ends its connection: stricter, if last.
            let same_body = ours.body == theirs.body || (ours.body.is_none() && last);
            if !same_head || !same_body {
                return Err(format!(
                    "request {i} differs:\nswitchyard {ours:#?}\nhyper {theirs:#?}"
                ));
            }
        }
        Ok(())
    }
}

/// Runs `pieces` through both servers.
pub fn run(pieces: &[&[u8]]) -> Outcome {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let ours = Arc::new(Recorder::default());
            let hung = drive(pieces, |io| {
                let ours = Arc::clone(&ours);
                async move {
                    let (_stop, stop) = watch::channel(false);
                    let builder = connection::http_builder();
                    connection::serve(io, ours, &builder, stop).await;
                }
            })
            .await;
            let theirs = Arc::new(Mutex::new(Vec::new()));
            let hyper_hung = drive(pieces, |io| serve_with_hyper(io, Arc::clone(&theirs))).await;
            assert!(!hyper_hung, "hyper itself hung on {pieces:?}");
            let ours = ours.seen.lock().map(|s| s.clone()).unwrap_or_default();
            let hyper = theirs.lock().map(|s| s.clone()).unwrap_or_default();
            Outcome { ours, hyper, hung }
        })
    })
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the harness");
}

/// Writes `pieces` (yielding between them, so each arrives as a read of its own), shuts
/// the write side, and reads every response until the server closes. True when the
/// server did not finish within the limit.
async fn drive<F, Fut>(pieces: &[&[u8]], server: F) -> bool
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let (client, io) = tokio::io::duplex(1 << 20);
    let (mut rd, mut wr) = tokio::io::split(client);
    let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
    let write = async move {
        for piece in pieces {
            if wr.write_all(&piece).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        let _ = wr.shutdown().await;
    };
    let read = async move {
        let mut sink = vec![0u8; 16 * 1024];
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let all = async { tokio::join!(server(io), write, read) };
    tokio::time::timeout(Duration::from_secs(5), all)
        .await
        .is_err()
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Message>>,
}

impl Respond for Recorder {
    type Report = ();

    fn respond(
        &self,
        clock: &Arc<ConnClock>,
        req: Request<ClientBody>,
        ambiguous: bool,
    ) -> impl Future<Output = Response<TrackedBody>> + Send {
        let guard = clock.begin_request();
        async move {
            let mut head = Request::new(());
            *head.method_mut() = req.method().clone();
            *head.uri_mut() = req.uri().clone();
            *head.version_mut() = req.version();
            *head.headers_mut() = req.headers().clone();
            if ambiguous || request_checks::check(&mut head).is_err() {
                let mut res = Response::new(Body::full("refused"));
                *res.status_mut() = StatusCode::BAD_REQUEST;
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                return res.map(|b| TrackedBody::new(b, guard, ()));
            }
            let message = record(req).await;
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(message);
            }
            ok().map(|b| TrackedBody::new(b, guard, ()))
        }
    }

    fn timeouts(&self) -> (Duration, Duration) {
        (Duration::from_secs(60), Duration::from_secs(60))
    }
}

fn ok() -> Response<Body> {
    Response::new(Body::full("ok"))
}

async fn record<B>(req: Request<B>) -> Message
where
    B: hyper::body::Body,
{
    let (parts, body) = req.into_parts();
    let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
    Message {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
    }
}

/// hyper's own server, as switchyard configures it for the connections it hands over.
async fn serve_with_hyper(io: tokio::io::DuplexStream, seen: Arc<Mutex<Vec<Message>>>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            let message = record(req).await;
            if let Ok(mut seen) = seen.lock() {
                seen.push(message);
            }
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from("ok"))))
        }
    });
    let builder = {
        let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // Half-close: every request the client sent before its FIN is answered (without
        // it hyper drops pipelined requests still in its buffer when it reads the FIN).
        b.http1().max_buf_size(64 * 1024).half_close(true);
        b
    };
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}
