//! Blue/green for the layouts people run: a single-page app whose API is routed with
//! `upstream = "active"` follows the switch; `check` warns about a layout no switch can
//! change; health checks need `health_fall` failures to go down and `health_rise` passes to
//! come back; a refused switch changes nothing and says so; a bare route prefix keeps the
//! method (308).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn spa(bg: &BlueGreen, active: &str, www: &std::path::Path, api: &str) -> String {
    bg.conf(active)
        .extra(&format!(
            "[static]\nroot = \"{}\"\nfallback = \"index\"\n\n[[routes]]\npath_prefix = \"/api/\"\nupstream = \"{api}\"\n",
            www.display()
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_routed_to_active_follows_the_switch_and_back() {
    let bg = BlueGreen::start().await;
    let dir = scratch();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "<html>app</html>").unwrap();
    let mut d = Daemon::start_in(dir, &spa(&bg, "blue", &www, "active"));
    assert_eq!(
        fetch(d.addr, "/api/orders").await.json()["upstream"],
        "blue"
    );
    assert_eq!(fetch(d.addr, "/users/42").await.text(), "<html>app</html>");
    d.reload_with(&spa(&bg, "green", &www, "active"));
    assert_eq!(
        fetch(d.addr, "/api/orders").await.json()["upstream"],
        "green"
    );
    d.reload_with(&spa(&bg, "blue", &www, "active"));
    assert_eq!(
        fetch(d.addr, "/api/orders").await.json()["upstream"],
        "blue"
    );
    let (code, out, _) = run_cli(&["check", "--config", d.config.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("active (now blue)"), "{out}");
    assert!(!out.contains("no request can reach"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_when_no_request_can_reach_active_and_active_is_reserved() {
    let bg = BlueGreen::start().await;
    let dir = scratch();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, spa(&bg, "blue", &www, "blue")).unwrap();
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        format!("{out}{err}").contains("no request can reach active = \"blue\""),
        "{out}{err}"
    );
    let reserved = "active = \"active\"\n[upstreams]\nactive = \"127.0.0.1:1\"\n";
    std::fs::write(&path, reserved).unwrap();
    let (code, _, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("switchyard.toml:3:1") && err.contains("reserved"),
        "{err}"
    );
}

fn checked(bg: &BlueGreen) -> Conf {
    Conf::new("blue").extra(&format!(
        "[proxy]\nhealth_interval = \"100ms\"\nhealth_timeout = \"150ms\"\nhealth_fall = 3\nhealth_rise = 2\n\
         [upstreams.blue]\nurl = \"http://{}\"\nhealth = \"/health\"\n[upstreams.green]\nurl = \"http://{}\"\nhealth = \"/health\"\n",
        bg.blue.addr, bg.green.addr
    ))
}

async fn ready(d: &Daemon) -> u16 {
    fetch(d.addr, "/readyz").await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_probe_never_flips_ready_but_health_fall_failures_do_and_health_rise_passes_undo_it(
) {
    let bg = BlueGreen::start().await;
    let d = Daemon::start(&checked(&bg).build());
    let until = |secs| Instant::now() + Duration::from_secs(secs);
    let deadline = until(5);
    while ready(&d).await != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One probe slower than health_timeout: one failure, fewer than health_fall.
    let probes = bg.blue.health_probes();
    bg.blue.set_health_delay(Duration::from_millis(400));
    while bg.blue.health_probes() == probes {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bg.blue.set_health_delay(Duration::ZERO);
    let watch_until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < watch_until {
        assert_eq!(ready(&d).await, 200, "one slow probe flipped /readyz");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It stops answering well: down only after health_fall failed probes.
    let before = bg.blue.health_probes();
    bg.blue.set_health(500);
    let deadline = until(5);
    while ready(&d).await == 200 {
        assert!(Instant::now() < deadline, "never went down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failed = bg.blue.health_probes() - before;
    assert!(
        failed >= 3,
        "down after {failed} failed probes (health_fall = 3)"
    );
    // And back only after health_rise passing probes.
    let before = bg.blue.health_probes();
    bg.blue.set_health(200);
    let deadline = until(5);
    while ready(&d).await != 200 {
        assert!(Instant::now() < deadline, "never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let passed = bg.blue.health_probes() - before;
    assert!(
        passed >= 2,
        "up after {passed} passing probes (health_rise = 2)"
    );
    let logs = d.logs().join("\n");
    assert!(
        logs.contains("INFO upstream blue") && logs.contains("is up again"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_switch_changes_nothing_and_says_so() {
    let bg = BlueGreen::start().await;
    let admin = dead_addr();
    let conf = |active: &str| {
        checked(&bg)
            .active(active)
            .server(&format!("admin_listen = \"{admin}\""))
            .build()
    };
    let mut d = Daemon::start(&conf("blue"));
    bg.green.set_health(503);
    let line = d.reload_with(&conf("green"));
    assert!(line.contains("reload refused"), "{line}");
    let status = send(admin, get("/status")).await.json();
    assert_eq!(status["generation"], 1, "{status}");
    assert_eq!(status["active"], "blue");
    assert_eq!(status["last_reload"]["result"], "refused", "{status}");
    assert!(status["last_reload"]["message"]
        .as_str()
        .unwrap()
        .contains("green"));
    let metrics = send(admin, get("/metrics")).await.text();
    assert!(
        metrics.contains("switchyard_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_reloads_total{result=\"failed\"} 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_route_prefix_redirects_keeping_the_method() {
    let bg = BlueGreen::start().await;
    let text = bg
        .conf("blue")
        .extra("[[routes]]\npath_prefix = \"/grafana/\"\nupstream = \"green\"\n")
        .build();
    let d = Daemon::start(&text);
    let r = fetch(d.addr, "/grafana?x=1").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/grafana/?x=1"));
    let r = send(d.addr, request("POST", "/grafana", "a=1")).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/grafana/"));
}
