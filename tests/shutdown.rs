//! SIGTERM/SIGINT: in-flight requests finish, then the process exits 0; drain_delay fails
//! the ready endpoint first; the pid file comes and goes with the process.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_after_sigterm_then_exit_0() {
    let app = Upstream::start("app").await;
    let mut d = Daemon::start(&Conf::new("app").upstream("app", app.addr).build());
    let addr = d.addr;
    let slow = tokio::spawn(async move { fetch(addr, "/slow/1000").await });
    while app.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.signal(libc::SIGTERM);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("app"));
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", d.logs().join("\n"));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_an_idle_daemon_promptly() {
    let app = Upstream::start("app").await;
    let mut d = Daemon::start(&Conf::new("app").upstream("app", app.addr).build());
    // An idle keep-alive connection must not hold shutdown up.
    let mut conn = Conn::open(d.addr).await;
    assert_eq!(conn.get("/healthz").await.status, 200);
    let started = Instant::now();
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_shutdown_up() {
    use tokio::io::AsyncWriteExt;
    let app = Upstream::start("app").await;
    let conf = Conf::new("app").upstream("app", app.addr);
    let mut d = Daemon::start(&conf.server("shutdown_timeout = \"20s\"").build());
    // One connection with a partial head behind a whole request, one with a partial
    // head only: neither has a request in progress.
    let mut behind = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    behind
        .write_all(b"GET /api/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/2 HT")
        .await
        .unwrap();
    let mut alone = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    alone.write_all(b"GET /api/3 HTTP/1.1\r\nHo").await.unwrap();
    while app.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for connections with no request in progress",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delay_fails_ready_while_still_serving() {
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server("drain_delay = \"1500ms\"")
        .build();
    let mut d = Daemon::start(&conf);
    assert_eq!(fetch(d.addr, "/readyz").await.status, 200);
    d.signal(libc::SIGTERM);
    d.wait_for_log("draining", Duration::from_secs(5));
    let r = fetch(d.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
    assert_eq!(fetch(d.addr, "/healthz").await.status, 200);
    assert_eq!(fetch(d.addr, "/api/x").await.status, 200);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_wait() {
    let app = Upstream::start("app").await;
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server("shutdown_timeout = \"500ms\"")
        .build();
    let mut d = Daemon::start(&conf);
    let addr = d.addr;
    let _slow = tokio::spawn(async move { fetch(addr, "/slow/20000").await });
    while app.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(d
        .logs()
        .iter()
        .any(|l| l.contains("shutdown_timeout reached with 1 connections")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_file_is_written_and_removed() {
    let app = Upstream::start("app").await;
    let dir = scratch();
    let pid_path = dir.path().join("switchyard.pid");
    let conf = Conf::new("app")
        .upstream("app", app.addr)
        .server(&format!("pid_file = \"{}\"", pid_path.display()))
        .build();
    let mut d = Daemon::start_in(dir, &conf);
    let written = std::fs::read_to_string(&pid_path).unwrap();
    assert_eq!(written.trim(), d.pid().to_string());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(!pid_path.exists());
}
