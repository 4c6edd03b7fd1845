//! Upgrade / WebSocket tunnelling through the proxy (tokio-tungstenite as the client).

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(addr: std::net::SocketAddr, path: &str) -> Ws {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://grafana.example.com{path}");
    let (ws, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time");
    match reply {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_fallback_and_host_route() {
    let app = Upstream::start("app").await;
    let grafana = Upstream::start("grafana").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .upstream("grafana", grafana.addr)
        .extra("[[routes]]\nhost = \"grafana.example.com\"\nupstream = \"grafana\"\n")
        .build();
    let d = Daemon::start(&conf);
    let mut ws = connect(d.addr, "/ws").await;
    assert_eq!(echo(&mut ws, "hello").await, "grafana: hello");
    for i in 0..50 {
        assert_eq!(
            echo(&mut ws, &format!("m{i}")).await,
            format!("grafana: m{i}")
        );
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_survives_a_switch_and_new_ones_follow_it() {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let conf = |active: &str| {
        Conf::new(active)
            .upstream("blue", blue.addr)
            .upstream("green", green.addr)
            .build()
    };
    let mut d = Daemon::start(&conf("blue"));
    let mut old = connect(d.addr, "/ws").await;
    assert_eq!(echo(&mut old, "before").await, "blue: before");
    d.reload_with(&conf("green"));
    assert_eq!(
        echo(&mut old, "after").await,
        "blue: after",
        "the switch broke an open socket"
    );
    let mut new = connect(d.addr, "/ws").await;
    assert_eq!(echo(&mut new, "new").await, "green: new");
    assert_eq!(echo(&mut old, "still").await, "blue: still");
}

/// Opens a WebSocket, sends SIGTERM, and checks that the tunnel keeps working while
/// shutdown waits for it, and that the daemon exits 0 once it closes.
async fn shutdown_waits_for_a_websocket(server_lines: &[&str]) {
    let app = Upstream::start("app").await;
    let mut conf = Conf::new("app")
        .upstream("app", app.addr)
        .server("shutdown_timeout = \"10s\"");
    for line in server_lines {
        conf = conf.server(line);
    }
    let mut d = Daemon::start(&conf.build());
    let mut ws = connect(d.addr, "/ws").await;
    assert_eq!(echo(&mut ws, "one").await, "app: one");
    d.signal(libc::SIGTERM);
    d.wait_for_log("no longer accepting", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo(&mut ws, "still here").await, "app: still here");
    ws.close(None).await.unwrap();
    drop(ws);
    assert_eq!(d.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_websocket_until_it_closes() {
    shutdown_waits_for_a_websocket(&[]).await;
}

/// The tunnel takes over its HTTP connection's slot under `max_connections`: even when
/// that was the last free slot, shutdown still waits for the WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_on_the_last_free_connection_slot_still_holds_shutdown() {
    shutdown_waits_for_a_websocket(&["max_connections = 1"]).await;
}
