//! What the systemd units rely on, driven the way systemd drives it: `switchyard reload`
//! as `ExecReload=` (exit codes, `$MAINPID`, generations), `switchyard status`, and socket
//! activation (`LISTEN_FDS`), including a restart under load that refuses nothing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Blue and green with health checks, a pid file and the admin listener.
fn conf(bg: &BlueGreen, active: &str, admin: std::net::SocketAddr) -> Conf {
    bg.checked_conf(active)
        .server("pid_file = \"PIDFILE\"")
        .server(&format!("admin_listen = \"{admin}\""))
}

fn free_port() -> std::net::SocketAddr {
    dead_addr()
}

/// Writes `conf` into `d`'s file, with its pid file inside the scratch directory.
fn write(d: &Daemon, conf: &Conf) {
    let pid = d.path().join("switchyard.pid");
    let text = conf.build().replace("PIDFILE", &pid.display().to_string());
    std::fs::write(&d.config, text).unwrap();
}

fn start(conf: &Conf) -> Daemon {
    let dir = scratch();
    let pid = dir.path().join("switchyard.pid");
    let text = conf.build().replace("PIDFILE", &pid.display().to_string());
    Daemon::start_in(dir, &text)
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn generation(d: &Daemon) -> u64 {
    let (_, out, _) = cli(
        &["status", "--json", "--config", d.config.to_str().unwrap()],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v["generation"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_waits_for_the_new_generation_and_fails_on_a_refusal_or_a_broken_file() {
    let bg = BlueGreen::start().await;
    let admin = free_port();
    let mut d = start(&conf(&bg, "blue", admin));
    let config = d.config.to_str().unwrap().to_owned();
    d.wait_for_log_after(0, "upstream green", Duration::from_secs(5));
    // An ordinary edit: done when the command returns.
    write(&d, &conf(&bg, "green", admin));
    let (code, out, err) = cli(&["reload", "--config", &config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("generation 2") && out.contains("active green"),
        "{out}"
    );
    assert_eq!(fetch(d.addr, "/api/x").await.json()["upstream"], "green");
    // A refusal (the new active is down and switch_requires_healthy): exit 1 with why,
    // nothing changed.
    bg.blue.set_health(503);
    write(&d, &conf(&bg, "blue", admin));
    let (code, out, err) = cli(&["reload", "--config", &config], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("refused") && err.contains("blue"), "{err}");
    assert_eq!(fetch(d.addr, "/api/x").await.json()["upstream"], "green");
    // A broken file: refused before any signal, with its position.
    std::fs::write(&d.config, "active = \n").unwrap();
    let before = generation(&d);
    let (code, _, err) = cli(&["reload", "--config", &config], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("switchyard.toml:1:"), "{err}");
    assert_eq!(generation(&d), before, "no reload happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_signals_mainpid_under_systemd() {
    let bg = BlueGreen::start().await;
    let admin = free_port();
    // No pid_file: only $MAINPID can tell which process to signal.
    let text = bg
        .checked_conf("blue")
        .server(&format!("admin_listen = \"{admin}\""))
        .build();
    let d = Daemon::start(&text);
    let config = d.config.to_str().unwrap().to_owned();
    let (code, _, err) = cli(&["reload", "--config", &config], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("pid_file"), "{err}");
    let pid = d.pid().to_string();
    let (code, out, err) = cli(&["reload", "--config", &config], &[("MAINPID", &pid)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("generation 2"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_one_screen_or_json_and_exits_3_when_the_active_upstream_is_down() {
    let bg = BlueGreen::start().await;
    let admin = free_port();
    let mut d = start(&conf(&bg, "blue", admin));
    let config = d.config.to_str().unwrap().to_owned();
    d.wait_for_log_after(0, "upstream green", Duration::from_secs(5));
    let (code, out, err) = cli(&["status", "--config", &config], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "generation 1",
        "active: blue (up)",
        "blue",
        "green",
        "<- active",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let (code, out, _) = cli(&["status", "--json", "--config", &config], &[]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["active"], "blue");
    bg.blue.set_health(500);
    let mut code = 0;
    for _ in 0..50 {
        code = cli(&["status", "--config", &config], &[]).0;
        if code == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, 3, "an unhealthy active upstream is exit 3");
    // No admin listener: a clear error, exit 1.
    let plain = Daemon::start(&bg.conf("blue").build());
    let (code, _, err) = cli(&["status", "--config", plain.config.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("admin_listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_socket_is_served_and_must_match_the_file() {
    let app = Upstream::start("app").await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let text = Conf::new("app")
        .upstream("app", app.addr)
        .listen(&addr.to_string())
        .build();
    let d = Daemon::start_activated(scratch(), &text, &listener);
    assert_eq!(d.addr, addr);
    assert!(d.logs().iter().any(|l| l.contains("socket-activated")));
    assert_eq!(fetch(addr, "/api/x").await.status, 200);
    drop(d);
    // The file names another address: the daemon refuses to start and says why.
    let other = free_port();
    let text = Conf::new("app")
        .upstream("app", app.addr)
        .listen(&other.to_string())
        .build();
    let dir = scratch();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    let out = activated(&path, &listener).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&other.to_string()) && err.contains(&addr.to_string()),
        "{err}"
    );
}

/// The restart systemd does for `systemctl restart` (a binary upgrade) with the socket
/// held: the old process stops accepting and finishes, the new one takes the same
/// socket; clients opening connections all along see no refusal and no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_socket_held_refuses_no_connection() {
    let app = Upstream::start("app").await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let text = Conf::new("app")
        .upstream("app", app.addr)
        .listen(&addr.to_string())
        .build();
    let mut old = Daemon::start_activated(scratch(), &text, &listener);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new connection each time: exactly what a restart could refuse.
                let text = raw(
                    addr,
                    b"GET /api/r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .await;
                match text.starts_with("HTTP/1.1 200") {
                    true => ok.fetch_add(1, Ordering::Relaxed),
                    false => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        old.signal(libc::SIGTERM);
        old.wait_exit(Duration::from_secs(10));
        old = Daemon::start_activated(scratch(), &text, &listener);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("restarts under load: {ok} requests answered, {failed} failed");
    assert!(ok > 50, "the load ran: {ok}");
    assert_eq!(failed, 0);
}
