//! The HTTP edge on raw sockets, one test per rule a conformance reviewer or an attacker
//! would try (RFC 9112 Host rules, forwarding headers spelled with underscores, traversal
//! aimed at routed upstreams, upgrade tokens other than WebSocket, CONNECT and TRACE,
//! broken upstream framings, requests pipelined behind one hyper serves).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Every response status in `text`, in order (a pipelined exchange).
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text[at + 9..at + 12].parse().ok())
        .collect()
}

/// Writes `raw` and reads until the server closes or `limit` passes.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn app_daemon(extra: &str) -> (Daemon, Upstream) {
    let app = Upstream::start("app").await;
    let conf = Conf::new("app").upstream("app", app.addr).extra(extra);
    (Daemon::start(&conf.build()), app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_be_present_once_and_valid_on_http_1_1() {
    let (d, app) = app_daemon("").await;
    for head in [
        "GET /api/x HTTP/1.1\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a/b\r\n",
        "GET /api/x HTTP/1.1\r\nHost:\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a..b\r\n",
        "GET /api/x HTTP/1.1\r\nHost: user@a.example\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.example:80x\r\n",
        // The same through hyper (a body hands the request over).
        "POST /api/x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
        "POST /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let raw = match head.ends_with("ab") {
            true => head.to_owned(),
            false => format!("{head}Connection: close\r\n\r\n"),
        };
        let text = raw_text(d.addr, &raw).await;
        assert_eq!(status_of(&text), 400, "{head:?}: {text}");
    }
    assert_eq!(app.hits(), 0, "nothing with a bad Host reaches the app");
    // HTTP/1.0 needs no Host; a port, an IPv6 literal and a trailing dot are fine.
    for ok in [
        "GET /api/x HTTP/1.0\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.example:8080\r\nConnection: close\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.example.\r\nConnection: close\r\n\r\n",
    ] {
        let text = raw_text(d.addr, ok).await;
        assert_eq!(status_of(&text), 200, "{ok:?}: {text}");
    }
}

async fn raw_text(addr: std::net::SocketAddr, raw: &str) -> String {
    exchange(addr, raw.as_bytes(), Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_replaces_host_for_routing_and_upstream() {
    let grafana = Upstream::start("grafana").await;
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .upstream("grafana", grafana.addr)
        .extra("[[routes]]\nhost = \"grafana.example.com\"\nupstream = \"grafana\"\n");
    let d = Daemon::start(&conf.build());
    let text = raw_text(
        d.addr,
        "GET http://grafana.example.com/d/x?y=1 HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        seen["upstream"], "grafana",
        "routed by the target's authority"
    );
    assert_eq!(seen["headers"]["host"], "grafana.example.com");
    assert_eq!(seen["uri"], "/d/x?y=1", "origin-form upstream");
    assert_eq!(app.hits(), 0);
}

async fn h2_send(
    addr: std::net::SocketAddr,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, bytes::Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let res = sender.send_request(req).await.expect("h2 response");
    let status = res.status().as_u16();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_host_must_agree_with_authority_and_cookies_are_joined() {
    let (d, app) = app_daemon("").await;
    let req = http::Request::builder()
        .uri("http://a.example/api/h2")
        .header("host", "b.example")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(h2_send(d.addr, req).await.0, 400);
    assert_eq!(app.hits(), 0);
    let req = http::Request::builder()
        .uri("http://a.example/api/h2")
        .header("host", "A.example")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, body) = h2_send(d.addr, req).await;
    assert_eq!(status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["headers"]["cookie"], "a=1; b=2", "RFC 9113 8.2.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_spelled_with_underscores_never_reach_the_app() {
    let (d, _app) = app_daemon("").await;
    let text = raw_text(
        d.addr,
        "GET /api/u HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n\
         X_Forwarded_Proto: https\r\nx_forwarded_host: evil.example\r\nX-Forwarded_Port: 1\r\n\
         X_App_Token: kept\r\nConnection: close\r\n\r\n",
    )
    .await;
    let seen: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    for (name, value) in headers {
        assert!(
            !(name.contains('_') && name.replace('_', "-").starts_with("x-forwarded"))
                && name != "x_real_ip",
            "{name}: {value} reached the app"
        );
    }
    assert_eq!(
        headers["x_app_token"], "kept",
        "other underscore names pass"
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_aimed_at_a_routed_upstream_is_refused_before_routing() {
    let green = Upstream::start("green").await;
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .upstream("green", green.addr)
        .extra("[[routes]]\npath_prefix = \"/green/\"\nupstream = \"green\"\n");
    let d = Daemon::start(&conf.build());
    for path in [
        "/green/..%2fsecret",
        "/green/..%2Fsecret",
        "/green/..;/secret",
        "/green/..;jsessionid=1/secret",
        "/green/.;/secret",
        "/green/..%5csecret",
        "/green/..%5Csecret",
        "/green/..%00/secret",
        "/green/a%00b",
        "/green/%2e%2e;/secret",
        "/green/..\\secret",
        "/green/a\\b",
        "/..;/green/x",
        "/x/..%2f..%2fetc/passwd",
    ] {
        let (status, text) = raw_get(d.addr, path).await;
        assert!(matches!(status, 400 | 404), "{path}: {text}");
    }
    assert_eq!(green.hits() + app.hits(), 0, "nothing was forwarded");
    // An encoded slash inside a name is forwarded untouched (GitLab-style project ids).
    let (status, text) = raw_get(d.addr, "/green/projects/group%2Fproject").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("/green/projects/group%2Fproject"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_is_tunnelled_other_upgrades_are_proxied_as_plain_http() {
    let (d, _app) = app_daemon("").await;
    let text = raw_text(
        d.addr,
        "GET /api/h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    let seen: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    let headers = seen["headers"].as_object().unwrap();
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(headers.get(name).is_none(), "{name} forwarded: {headers:?}");
    }
    // A request body with such an upgrade goes through too.
    let text = raw_text(
        d.addr,
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: h2c\r\n\
         Content-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(text.ends_with("hello"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_trace_are_405_and_never_forwarded() {
    let (d, app) = app_daemon("").await;
    for raw in [
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        "TRACE /api/t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "TRACE /api/t HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    ] {
        let text = raw_text(d.addr, raw).await;
        assert_eq!(status_of(&text), 405, "{raw:?}: {text}");
    }
    assert_eq!(app.hits(), 0);
}

/// An upstream that answers every request with `bytes` and closes at once.
async fn answering(bytes: &'static [u8]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(bytes).await;
            });
        }
    });
    addr
}

fn proxy_to(addr: std::net::SocketAddr) -> Daemon {
    Daemon::start(&Conf::new("app").upstream("app", addr).build())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_the_upstream_reaches_the_client_as_far_as_it_came() {
    let d = proxy_to(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await);
    for raw in [
        "GET /short HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /short HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    ] {
        let text = raw_text(d.addr, raw).await;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{raw:?}: {text:?}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: 10"),
            "{head}"
        );
        assert_eq!(body, "abc", "{raw:?}");
    }
    let d = proxy_to(
        answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n").await,
    );
    let text = raw_text(d.addr, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(text.contains("abc"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "no clean end: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_answer_with_a_repeated_length_is_relayed_with_one() {
    let d = proxy_to(
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n")
            .await,
    );
    for raw in [
        "HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        // Through hyper: an absolute-form target is handed over.
        "HEAD http://x/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let text = raw_text(d.addr, raw).await;
        let lower = text.to_ascii_lowercase();
        assert_eq!(status_of(&text), 200, "{raw:?}: {text}");
        assert_eq!(
            lower.matches("content-length").count(),
            1,
            "{raw:?}: {text}"
        );
        assert!(lower.contains("content-length: 5\r\n"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_pipelined_behind_a_body_is_refused() {
    let (d, app) = app_daemon("").await;
    let text = exchange(
        d.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(statuses(&text), [200, 400], "{text}");
    assert_eq!(app.hits(), 1, "the second request was not forwarded");
    // The same with Transfer-Encoding first.
    let text = exchange(
        d.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(statuses(&text), [200, 400], "{text}");
    assert_eq!(app.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_after_a_body_stay_keep_alive_and_in_order() {
    let (d, app) = app_daemon("").await;
    let text = exchange(
        d.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /api/one HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /api/two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(statuses(&text), [200, 200, 200, 200], "{text}");
    let one = text.find("/api/one").expect("first GET answered");
    let abc = text.find("abc").expect("chunked echo answered");
    let two = text.find("/api/two").expect("second GET answered");
    assert!(
        text.find("hello").unwrap() < one && one < abc && abc < two,
        "{text}"
    );
    assert_eq!(app.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_head_behind_a_body_is_under_header_read_timeout() {
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server("header_read_timeout = \"500ms\"")
        .server("idle_timeout = \"75s\"");
    let d = Daemon::start(&conf.build());
    let started = Instant::now();
    let text = exchange(
        d.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(statuses(&text), [200], "{text}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_chunk_sizes_cut_the_response() {
    for bytes in [
        // An empty size line is not the last chunk.
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n+0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0x0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10000000000000000\r\n\r\n",
    ] {
        let d = proxy_to(answering(bytes).await);
        let text = raw_text(d.addr, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{:?} became a complete response: {text:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Lines end with CRLF, as hyper requires: a bare LF, a control byte in a trailer or a
    // malformed trailer line cut the response too.
    for bytes in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: \x01\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nnot a field\r\n\r\n",
    ] {
        let d = proxy_to(answering(bytes).await);
        let text = raw_text(d.addr, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!text.ends_with("0\r\n\r\n"), "{text:?}");
    }
    let good =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: t\r\n\r\n";
    let d = proxy_to(answering(good).await);
    let text = raw_text(d.addr, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(text.ends_with("3\r\nabc\r\n0\r\n\r\n"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_length_with_leading_zeros_goes_upstream_canonical() {
    let (d, _app) = app_daemon("").await;
    let text = raw_text(
        d.addr,
        "POST /api/cl HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    let seen: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(seen["headers"]["content-length"], "5");
    assert_eq!(seen["body_len"], 5);
}

/// The targets the test upstream answered on one connection, from its JSON answers.
fn answered_targets(text: &str) -> Vec<String> {
    text.match_indices("\"uri\":\"")
        .map(|(at, m)| {
            let rest = &text[at + m.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_whose_end_is_unknown_never_lets_its_bytes_become_a_request() {
    let (d, _app) = app_daemon("").await;
    // A chunk extension longer than switchyard tracks (hyper would accept it): the body
    // fails; the next request and the bytes after it are never served as requests.
    let ext = "a".repeat(5000);
    let first = format!(
        "POST /api/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;{ext}\r\nabc\r\n0\r\n\r\n\
         POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 38\r\n\r\n"
    );
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = s
        .write_all(b"GET /api/smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let targets = answered_targets(&text);
    assert!(!targets.iter().any(|t| t == "/api/smuggled"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_read_differently_by_switchyard_and_hyper_never_leave_a_request_waiting() {
    let (d, _app) = app_daemon("").await;
    for trailers in ["0\r\nX: y\n\n", "0\r\n\n", "0\r\nX: y\r\n\n"] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n{trailers}\
             GET /api/next HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        // Answered at once (hyper reads up to the CRLF CRLF, as switchyard's tracker
        // does), never left for response_timeout to end with a 504.
        let text = exchange(d.addr, raw.as_bytes(), Duration::from_secs(2)).await;
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{trailers:?}: {text}");
        assert!(!text.contains(" 504 "), "{trailers:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_behind_any_first_request_is_refused() {
    let (d, app) = app_daemon("").await;
    let smuggle = "POST /api/smug HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\
                   Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    for first in [
        "GET http://h/api/a HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /api/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /api/a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let before = app.hits();
        let raw = format!("{first}{smuggle}");
        let text = exchange(d.addr, raw.as_bytes(), Duration::from_secs(3)).await;
        assert!(!text.contains("/api/smug"), "{first:?}: {text}");
        assert!(app.hits() <= before + 1, "{first:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_head_behind_any_first_request_is_under_header_read_timeout() {
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server("header_read_timeout = \"500ms\"")
        .server("idle_timeout = \"75s\"");
    let d = Daemon::start(&conf.build());
    for first in [
        "GET http://h/api/a HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /api/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let started = Instant::now();
        let raw = format!("{first}GET /api/partial HTTP/1.1\r\nHo");
        let text = exchange(d.addr, raw.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(text.matches(" 200 OK").count(), 1, "{first:?}: {text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{first:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transfer_codings_are_501_and_expect_stays_on_this_hop() {
    let (d, app) = app_daemon("").await;
    let text = raw_text(
        d.addr,
        "POST /api/z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), 501, "{text}");
    assert_eq!(app.hits(), 0);
    let text = raw_text(
        d.addr,
        "POST /api/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\
         Connection: close\r\n\r\nabc",
    )
    .await;
    assert!(text.contains("200 OK"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("\"expect\""), "{text}");
}
