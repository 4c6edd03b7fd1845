//! Blue/green done right: active health checks, the safe switch, `switchyard switch`,
//! zero failed requests while switching under load, and the systemd notify protocol.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

async fn status(admin: std::net::SocketAddr) -> serde_json::Value {
    fetch(admin, "/status").await.json()
}

fn upstream_state(status: &serde_json::Value, name: &str) -> String {
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .map(|u| u["health"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_drive_ready_and_status_and_log_changes_once() {
    let bg = BlueGreen::start().await;
    let admin = dead_addr();
    let conf = bg
        .checked_conf("blue")
        .server(&format!("admin_listen = \"{admin}\""))
        .build();
    let mut d = Daemon::start(&conf);
    d.wait_for_log("upstream green", Duration::from_secs(5));
    let s = status(admin).await;
    assert_eq!(
        (s["active"].as_str(), s["generation"].as_u64()),
        (Some("blue"), Some(1))
    );
    assert_eq!(upstream_state(&s, "blue"), "up");
    assert_eq!(upstream_state(&s, "green"), "up");
    assert_eq!(fetch(d.addr, "/readyz").await.status, 200);

    bg.blue.set_health(500);
    d.wait_for_log("upstream blue", Duration::from_secs(1)); // the "is up" line
    let down = d.wait_for_log("is down", Duration::from_secs(5));
    assert!(
        down.contains("upstream blue") && down.contains("answered 500"),
        "{down}"
    );
    let r = fetch(d.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["upstream"], "down");
    assert_eq!(upstream_state(&status(admin).await, "blue"), "down");
    // Several more check rounds: still exactly one "down" line.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        d.logs()
            .iter()
            .filter(|l| l.contains("blue") && l.contains("is down"))
            .count(),
        1
    );

    bg.blue.set_health(200);
    d.wait_for_log("is up again", Duration::from_secs(5));
    assert_eq!(fetch(d.addr, "/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_to_an_unhealthy_color_is_refused_and_visible_in_status() {
    let bg = BlueGreen::start().await;
    let admin = dead_addr();
    let conf = |active: &str| {
        bg.checked_conf(active)
            .server(&format!("admin_listen = \"{admin}\""))
            .build()
    };
    let mut d = Daemon::start(&conf("blue"));
    bg.green.set_health(503); // accepts TCP, but its health path says no
    let line = d.reload_with(&conf("green"));
    assert!(
        line.contains("switch to green refused") && line.contains("answered 503"),
        "{line}"
    );
    let s = status(admin).await;
    assert_eq!(
        (s["active"].as_str(), s["generation"].as_u64()),
        (Some("blue"), Some(1))
    );
    assert_eq!(s["last_reload"]["ok"], false);
    assert!(s["last_reload"]["message"]
        .as_str()
        .unwrap()
        .contains("refused"));
    assert_eq!(
        fetch(d.addr, "/api/x").await.header("x-upstream"),
        Some("blue")
    );
}

const COMMENTED: &str = "# production blue/green\n";

fn switch_conf(
    bg: &BlueGreen,
    dir: &std::path::Path,
    admin: Option<std::net::SocketAddr>,
) -> String {
    let mut c = bg.checked_conf("blue").server(&format!(
        "pid_file = \"{}\"",
        dir.join("switchyard.pid").display()
    ));
    if let Some(a) = admin {
        c = c.server(&format!("admin_listen = \"{a}\""));
    }
    let text = c.build().replace(
        "active = \"blue\"",
        "active = \"blue\"   # flip with switchyard switch",
    );
    format!("{COMMENTED}{text}")
}

fn listen_fixed(text: &str, port: u16) -> String {
    text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_command_flips_keeps_comments_and_restores_on_refusal() {
    for with_admin in [true, false] {
        let bg = BlueGreen::start().await;
        let dir = scratch();
        let admin = with_admin.then(dead_addr);
        // `switch` reads the listen address from the file, so it must be a real port.
        let text = listen_fixed(&switch_conf(&bg, dir.path(), admin), dead_addr().port());
        let d = Daemon::start_in(dir, &text);
        let cfg = d.config.to_str().unwrap().to_owned();

        let (code, stdout, stderr) = run_cli(&["switch", "green", "--config", &cfg]);
        assert_eq!(code, 0, "admin {with_admin}: {stdout} {stderr}");
        assert!(
            stdout.contains("switched to green: generation 2"),
            "{stdout}"
        );
        let now = std::fs::read_to_string(&d.config).unwrap();
        assert_eq!(
            now,
            text.replace("active = \"blue\"", "active = \"green\""),
            "layout changed"
        );
        assert_eq!(
            fetch(d.addr, "/api/x").await.header("x-upstream"),
            Some("green")
        );

        bg.blue.set_health(500);
        let started = Instant::now();
        let (code, _, stderr) = run_cli(&["switch", "blue", "--config", &cfg]);
        assert_eq!(code, 1);
        assert!(stderr.contains("switch to blue refused"), "{stderr}");
        if with_admin {
            assert!(
                stderr.contains("answered 500"),
                "the reason comes from /status: {stderr}"
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        assert_eq!(
            std::fs::read_to_string(&d.config).unwrap(),
            now,
            "file not restored"
        );
        assert_eq!(
            fetch(d.addr, "/api/x").await.header("x-upstream"),
            Some("green")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_command_errors_change_nothing() {
    let bg = BlueGreen::start().await;
    let dir = scratch();
    let text = listen_fixed(&switch_conf(&bg, dir.path(), None), dead_addr().port());
    let d = Daemon::start_in(dir, &text);
    let cfg = d.config.to_str().unwrap().to_owned();
    let (code, _, stderr) = run_cli(&["switch", "purple", "--config", &cfg]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(":2:10: active = \"purple\" names no upstream"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&d.config).unwrap(), text);
    let (code, stdout, _) = run_cli(&["switch", "blue", "--config", &cfg]);
    assert_eq!(code, 0);
    assert!(stdout.contains("already active"), "{stdout}");
    let (code, stdout, _) = run_cli(&["switch", "green", "--no-wait", "--config", &cfg]);
    assert_eq!(code, 0, "{stdout}");
    let d_addr = d.addr;
    let deadline = Instant::now() + Duration::from_secs(5);
    while fetch(d_addr, "/healthz").await.json()["active"] != "green" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _, _) = run_cli(&["switch"]);
    assert_eq!(code, 2, "missing NAME is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_failed_requests_while_switching_twenty_times_under_load() {
    const CLIENTS: usize = 24;
    const SWITCHES: usize = 20;
    let bg = BlueGreen::start().await;
    let mut d = Daemon::start(&bg.checked_conf("blue").build());
    let addr = d.addr;
    let running = Arc::new(AtomicBool::new(true));
    let (ok_blue, ok_green, errors) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (running, b, g, e) = (
            running.clone(),
            ok_blue.clone(),
            ok_green.clone(),
            errors.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            while running.load(Ordering::Relaxed) {
                match conn.try_get("/api/load").await {
                    Ok(r) if r.status == 200 && r.header("x-upstream") == Some("blue") => {
                        b.fetch_add(1, Ordering::Relaxed)
                    }
                    Ok(r) if r.status == 200 && r.header("x-upstream") == Some("green") => {
                        g.fetch_add(1, Ordering::Relaxed)
                    }
                    Ok(r) => {
                        eprintln!("unexpected response {} {}", r.status, r.text());
                        e.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(err) => {
                        eprintln!("request failed: {err}");
                        e.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(addr).await;
                        0
                    }
                };
            }
        }));
    }
    let started = Instant::now();
    let mut visible_ms = Vec::new();
    for i in 0..SWITCHES {
        tokio::time::sleep(Duration::from_millis(10_000 / SWITCHES as u64 - 50)).await;
        let color = if i % 2 == 0 { "green" } else { "blue" };
        std::fs::write(&d.config, bg.checked_conf(color).build()).unwrap();
        let t = Instant::now();
        d.signal(libc::SIGHUP);
        let want = i as u64 + 2;
        while fetch(addr, "/healthz").await.json()["generation"].as_u64() != Some(want) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "generation {want} never appeared"
            );
        }
        visible_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rest = Duration::from_secs(10).saturating_sub(started.elapsed());
    tokio::time::sleep(rest.max(Duration::from_millis(200))).await;
    running.store(false, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (b, g, e) = (
        ok_blue.load(Ordering::Relaxed),
        ok_green.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    visible_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "zero-error switch test: {} requests over {:.1} s ({b} blue, {g} green), {e} errors, {SWITCHES} switches; \
         SIGHUP -> new generation visible: median {:.2} ms, max {:.2} ms",
        b + g + e,
        started.elapsed().as_secs_f64(),
        visible_ms[SWITCHES / 2],
        visible_ms[SWITCHES - 1],
    );
    assert_eq!(e, 0, "failed requests during switches");
    assert!(
        b > 1000 && g > 1000,
        "load too small to mean anything: {b} blue, {g} green"
    );
    assert!(d.logs().iter().filter(|l| l.contains("reload ok")).count() == SWITCHES);
    let _ = d.wait_for_log("reload ok: generation 21", Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_protocol() {
    let app = Upstream::start("app").await;
    let dir = scratch();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let conf = Conf::new("app").upstream("app", app.addr).build();
    let d = Daemon::start_with_env(
        dir,
        &conf,
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next().trim(), "READY=1");
    d.signal(libc::SIGHUP);
    let reloading = next();
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC");
    assert!(usec > 0);
    assert_eq!(next().trim(), "READY=1");
    d.signal(libc::SIGTERM);
    assert_eq!(next().trim(), "STOPPING=1");
}
