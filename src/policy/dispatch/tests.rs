//! The dispatcher in process: a request in, a response out, no socket. Each request goes
//! through the same `handle` the servers call, with a real snapshot built from TOML text
//! and a real web root on disk; only routes that would open an upstream connection are
//! left to the integration tests.

use std::path::Path;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use super::{handle, Answer, DispatchContext};
use crate::config::{self, AccessLog};
use crate::http::body::Body;
use crate::http::client_body::ClientBody;
use crate::policy::context::{ConnPermit, Peer};
use crate::policy::worker::Worker;
use crate::state::access_log::AccessLogger;
use crate::state::metrics::RouteKind;
use crate::state::snapshot::{Shared, Snapshot};

const CONFIG: &str = r#"
active = "blue"
[static]
root = "www"
fallback = "index"
[upstreams]
blue = "127.0.0.1:9"
grafana = "127.0.0.1:9"
[[routes]]
path_prefix = "/grafana/"
upstream = "grafana"
"#;

/// A daemon's state without its threads or sockets: the snapshot of `CONFIG` over a web
/// root in `dir`.
struct Daemon {
    shared: Arc<Shared>,
    worker: Worker,
    peer: Peer,
    permit: ConnPermit,
}

impl Daemon {
    fn new(dir: &Path) -> Self {
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("assets")).expect("mkdir");
        std::fs::write(www.join("index.html"), "<html>app</html>").expect("write");
        std::fs::write(www.join("assets/app.js"), "console.log(1)").expect("write");
        let config = config::parse(&dir.join("switchyard.toml"), CONFIG).expect("config");
        let worker_settings = config.proxy;
        let logger = AccessLogger::start(&AccessLog::Off).expect("logger");
        let shared = Arc::new(Shared::new(Snapshot::new(config, 1), logger));
        let worker = Worker::new(&worker_settings, shared.metrics.shard());
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("permit");
        Daemon {
            shared,
            worker,
            peer: Peer::new("127.0.0.1".parse().expect("ip")),
            permit: ConnPermit::new(permit),
        }
    }

    async fn send(&self, method: Method, uri: &str, host: &str) -> (Answer, Option<String>) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(ClientBody::Empty)
            .expect("request");
        let snap = self.shared.load();
        let ctx = DispatchContext {
            peer: &self.peer,
            shared: &self.shared,
            worker: &self.worker,
            snap: &snap,
            permit: &self.permit,
        };
        let mut answer = handle(req, &ctx).await;
        let body = match &mut answer.response {
            Ok(res) => Some(text(std::mem::replace(res.body_mut(), Body::empty())).await),
            Err(_) => None,
        };
        (answer, body)
    }
}

async fn text(body: Body) -> String {
    let bytes = body.collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn status(answer: &Answer) -> StatusCode {
    match &answer.response {
        Ok(res) => res.status(),
        Err(e) => e.status(),
    }
}

#[tokio::test]
async fn endpoints_answer_with_the_snapshot_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::new(dir.path());
    let (answer, body) = daemon
        .send(Method::GET, "/healthz", "app.example.com")
        .await;
    assert_eq!(status(&answer), StatusCode::OK);
    assert_eq!(answer.served.kind, RouteKind::Endpoint);
    let body = body.expect("body");
    assert!(body.contains(r#""active":"blue""#), "{body}");
    assert!(body.contains(r#""generation":1"#), "{body}");
}

#[tokio::test]
async fn files_come_from_the_web_root_and_pages_fall_back_to_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::new(dir.path());
    let (answer, body) = daemon
        .send(Method::GET, "/assets/app.js", "a.example")
        .await;
    assert_eq!(status(&answer), StatusCode::OK);
    assert_eq!(answer.served.kind, RouteKind::Static);
    assert_eq!(body.as_deref(), Some("console.log(1)"));
    // A page the app routes itself gets the index; a missing asset stays a 404.
    let (answer, body) = daemon
        .send(Method::GET, "/settings/profile", "a.example")
        .await;
    assert_eq!(status(&answer), StatusCode::OK);
    assert_eq!(answer.served.kind, RouteKind::Fallback);
    assert_eq!(body.as_deref(), Some("<html>app</html>"));
    let (answer, _) = daemon
        .send(Method::GET, "/assets/gone.js", "a.example")
        .await;
    assert_eq!(status(&answer), StatusCode::NOT_FOUND);
    assert_eq!(answer.served.upstream, None);
}

#[tokio::test]
async fn a_route_prefix_without_its_slash_is_redirected_keeping_the_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::new(dir.path());
    let (answer, _) = daemon.send(Method::GET, "/grafana?x=1", "a.example").await;
    assert_eq!(status(&answer), StatusCode::MOVED_PERMANENTLY);
    let location = answer
        .response
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get("location"));
    assert_eq!(location.map(|v| v.as_bytes()), Some(&b"/grafana/?x=1"[..]));
    let (answer, _) = daemon.send(Method::POST, "/grafana", "a.example").await;
    assert_eq!(status(&answer), StatusCode::PERMANENT_REDIRECT);
}

#[tokio::test]
async fn checks_refuse_before_anything_is_routed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::new(dir.path());
    // Each of these would otherwise reach the `/grafana/` route or the web root.
    for (method, uri, host, expected) in [
        (
            Method::GET,
            "/grafana/../admin",
            "a.example",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/grafana/%2e%2e/admin",
            "a.example",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::TRACE,
            "/grafana/",
            "a.example",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "/index.html",
            "bad host",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (answer, _) = daemon.send(method.clone(), uri, host).await;
        assert_eq!(status(&answer), expected, "{method} {uri} Host: {host}");
        assert_eq!(answer.served.kind, RouteKind::Endpoint, "{method} {uri}");
        assert_eq!(answer.served.upstream, None);
    }
}
