//! A real HTTP upstream on an ephemeral loopback port, in the test's runtime.
//!
//! Every response carries `x-upstream: NAME` and a JSON body describing the request it saw
//! (method, path, headers, body length), so tests can assert what the proxy forwarded.
//! Paths: `/slow/MS` answers after MS milliseconds; `/echo` answers with the request body;
//! `/hop` answers with hop-by-hop headers the proxy must strip; `/health` answers with the
//! status set by `set_health` (200 at first); `/ws` is a WebSocket that echoes every text
//! message as `NAME: text`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections that carried at least one request (other than `/health`), so that the
    /// daemon's TCP health checks do not count.
    pub conns: Arc<AtomicUsize>,
    health: Arc<AtomicU16>,
    /// How long `/health` takes to answer, in milliseconds, and how often it was asked.
    health_delay_ms: Arc<AtomicU64>,
    pub health_probes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(AtomicU16::new(200));
        let health_delay_ms = Arc::new(AtomicU64::new(0));
        let health_probes = Arc::new(AtomicUsize::new(0));
        let (n, h, c) = (name.to_owned(), Arc::clone(&hits), Arc::clone(&conns));
        let hs = Arc::clone(&health);
        let (hd, hp) = (Arc::clone(&health_delay_ms), Arc::clone(&health_probes));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, h, hs, c) = (n.clone(), Arc::clone(&h), Arc::clone(&hs), Arc::clone(&c));
                let (hd, hp) = (Arc::clone(&hd), Arc::clone(&hp));
                let used = Arc::new(std::sync::atomic::AtomicBool::new(false));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        if req.uri().path() != "/health" && !used.swap(true, Ordering::SeqCst) {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        let probe = HealthProbe {
                            status: hs.load(Ordering::SeqCst),
                            delay: Duration::from_millis(hd.load(Ordering::SeqCst)),
                            probes: Arc::clone(&hp),
                        };
                        respond(n.clone(), Arc::clone(&h), probe, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            name: name.to_owned(),
            addr,
            hits,
            conns,
            health,
            health_delay_ms,
            health_probes,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The status `/health` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// How long `/health` takes to answer from now on.
    pub fn set_health_delay(&self, delay: Duration) {
        self.health_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many times `/health` was asked.
    pub fn health_probes(&self) -> usize {
        self.health_probes.load(Ordering::SeqCst)
    }
}

/// What `/health` does for one request.
struct HealthProbe {
    status: u16,
    delay: Duration,
    probes: Arc<AtomicUsize>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    name: String,
    hits: Arc<AtomicUsize>,
    health: HealthProbe,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        return Ok(websocket_echo(name, &mut req));
    }
    if path == "/health" {
        health.probes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(health.delay).await;
        return Ok(Response::builder()
            .status(health.status)
            .header("x-upstream", &name)
            .body(Full::new(Bytes::from("health")))
            .unwrap());
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|m| m.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
        .collect();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut builder = Response::builder().header("x-upstream", &name);
    if path == "/echo" {
        return Ok(builder.body(Full::new(body)).unwrap());
    }
    if path == "/hop" {
        builder = builder
            .header("connection", "x-upstream-private")
            .header("x-upstream-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "yes");
    }
    let json = serde_json::json!({
        "upstream": name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
    });
    Ok(builder
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}

/// Accepts a WebSocket upgrade and echoes text messages prefixed with the upstream's name.
fn websocket_echo(name: String, req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return Response::builder()
            .status(400)
            .body(Full::new(Bytes::new()))
            .unwrap();
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::text(format!("{name}: {t}")),
                Message::Close(_) => return,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// An upstream that answers the first request on each connection with keep-alive, then
/// closes the connection when the next request arrives, without answering: the race a
/// proxy loses when it reuses a pooled connection the app is just closing (Node's 5 s
/// keep-alive timeout, an app restart).
pub struct ClosingUpstream {
    pub addr: SocketAddr,
    /// Request lines received, including the ones answered by a close.
    pub received: Arc<std::sync::Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl ClosingUpstream {
    pub async fn start() -> ClosingUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut served = 0;
                    let mut buf = vec![0u8; 65536];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        // The body (Content-Length only) belongs to this request.
                        let body_len = head
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())
                                    .flatten()
                            })
                            .unwrap_or(0);
                        if pending.len() < end + 4 + body_len {
                            continue;
                        }
                        pending.drain(..end + 4 + body_len);
                        log.lock()
                            .unwrap()
                            .push(head.lines().next().unwrap_or("").to_owned());
                        if served == 1 {
                            return; // closes the socket: no response
                        }
                        served += 1;
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-upstream: fresh\r\n\r\nfresh")
                            .await;
                    }
                });
            }
        });
        ClosingUpstream {
            addr,
            received,
            task,
        }
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for ClosingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two colors of the same app, for blue/green tests.
pub struct BlueGreen {
    pub blue: Upstream,
    pub green: Upstream,
}

impl BlueGreen {
    pub async fn start() -> BlueGreen {
        BlueGreen {
            blue: Upstream::start("blue").await,
            green: Upstream::start("green").await,
        }
    }

    /// Both colors as plain `host:port` upstreams.
    pub fn conf(&self, active: &str) -> super::Conf {
        super::Conf::new(active)
            .upstream("blue", self.blue.addr)
            .upstream("green", self.green.addr)
    }

    /// Both colors with a `/health` path, checked every 200 ms.
    pub fn checked_conf(&self, active: &str) -> super::Conf {
        super::Conf::new(active)
            .extra("[proxy]\nhealth_interval = \"200ms\"\n")
            .extra(&format!(
                "[upstreams.blue]\nurl = \"http://{}\"\nhealth = \"/health\"\n[upstreams.green]\nurl = \"http://{}\"\nhealth = \"/health\"\n",
                self.blue.addr, self.green.addr
            ))
    }
}

/// An upstream that answers each request with scripted raw bytes, for response framings a
/// real app may produce that a well-behaved test server would not: `script(path)` gives
/// the pieces to write (with a short pause between them, so the proxy sees them arrive
/// separately) and whether to close the connection afterwards.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

pub type Script = fn(&str) -> (Vec<&'static [u8]>, bool);

impl ScriptedUpstream {
    pub async fn start(script: Script) -> ScriptedUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (counter, open_now) = (Arc::clone(&conns), Arc::clone(&open));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = Arc::clone(&counter);
                let open_now = Arc::clone(&open_now);
                tokio::spawn(async move {
                    open_now.fetch_add(1, Ordering::SeqCst);
                    let _open = Decrement(open_now);
                    let mut first = true;
                    let mut pending = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        pending.drain(..end + 4);
                        if std::mem::take(&mut first) {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        let (pieces, close) = script(&path);
                        for piece in pieces {
                            if stream.write_all(piece).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        ScriptedUpstream {
            addr,
            conns,
            open,
            task,
        }
    }

    /// Connections open right now (including probes).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections that carried at least one request (health probes that only connect
    /// are not counted).
    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
