//! SIGHUP reloads: the blue/green switch by editing the file, requests in flight during a
//! switch, keep-alive connections across it, and bad files that must change nothing.

mod common;

use std::time::Duration;

use common::*;

async fn health(d: &Daemon) -> serde_json::Value {
    fetch(d.addr, "/healthz").await.json()
}

async fn served_by(d: &Daemon) -> String {
    fetch(d.addr, "/api/who")
        .await
        .header("x-upstream")
        .unwrap_or("-")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_active_and_sighup_switches_blue_to_green() {
    let bg = BlueGreen::start().await;
    let mut d = Daemon::start(&bg.conf("blue").build());
    assert_eq!(served_by(&d).await, "blue");
    let before = health(&d).await;

    let line = d.reload_with(&bg.conf("green").build());
    assert!(
        line.contains("reload ok: generation 2 active green"),
        "{line}"
    );
    assert_eq!(served_by(&d).await, "green");
    let after = health(&d).await;
    assert_eq!(after["active"], "green");
    assert_eq!(after["generation"], 2);
    assert_ne!(
        after["config"], before["config"],
        "config digest did not change"
    );

    let line = d.reload_with(&bg.conf("blue").build());
    assert!(line.contains("generation 3 active blue"), "{line}");
    assert_eq!(served_by(&d).await, "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_upstream_it_started_on() {
    let bg = BlueGreen::start().await;
    let mut d = Daemon::start(&bg.conf("blue").build());
    let addr = d.addr;
    let slow = tokio::spawn(async move { fetch(addr, "/slow/1500").await });
    while bg.blue.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.reload_with(&bg.conf("green").build());
    assert_eq!(served_by(&d).await, "green");
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_keep_alive_connection_sees_the_new_snapshot() {
    let bg = BlueGreen::start().await;
    let mut d = Daemon::start(&bg.conf("blue").build());
    let mut conn = Conn::open(d.addr).await;
    assert_eq!(conn.get("/api/a").await.header("x-upstream"), Some("blue"));
    d.reload_with(&bg.conf("green").build());
    assert_eq!(conn.get("/api/b").await.header("x-upstream"), Some("green"));
    assert_eq!(conn.get("/healthz").await.json()["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_old_snapshot_and_generation() {
    let bg = BlueGreen::start().await;
    let mut d = Daemon::start(&bg.conf("blue").build());
    let good = health(&d).await;

    let broken = bg.conf("green").server("idle_timout = \"75s\"").build();
    let line = d.reload_with(&broken);
    assert!(
        line.contains("reload failed, still serving generation 1 (active blue)"),
        "{line}"
    );
    assert!(
        line.contains("switchyard.toml:4:1: unknown field `idle_timout`"),
        "{line}"
    );
    assert_eq!(health(&d).await, good);
    assert_eq!(served_by(&d).await, "blue");

    let line = d.reload_with("active = \"green\"\n[upstreams\n");
    assert!(
        line.contains("reload failed") && line.contains("switchyard.toml:2:"),
        "{line}"
    );
    assert_eq!(health(&d).await, good);

    // Deleting the file is just another bad file.
    std::fs::remove_file(&d.config).unwrap();
    let line = d.reload();
    assert!(
        line.contains("reload failed") && line.contains("cannot read configuration"),
        "{line}"
    );
    assert_eq!(served_by(&d).await, "blue");

    // And a good file afterwards takes the next generation.
    let line = d.reload_with(&bg.conf("green").build());
    assert!(
        line.contains("reload ok: generation 2 active green"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_a_dead_upstream_is_refused() {
    let bg = BlueGreen::start().await;
    let conf = |active: &str, extra: &str| {
        bg.conf(active)
            .upstream("dead", dead_addr())
            .extra(extra)
            .build()
    };
    let mut d = Daemon::start(&conf("blue", ""));
    let line = d.reload_with(&conf("dead", ""));
    assert!(
        line.contains("reload refused") && line.contains("switch to dead refused"),
        "{line}"
    );
    assert_eq!(health(&d).await["generation"], 1);
    assert_eq!(served_by(&d).await, "blue");

    let line = d.reload_with(&conf("dead", "[proxy]\nswitch_requires_healthy = false\n"));
    assert!(
        line.contains("reload ok: generation 2 active dead"),
        "{line}"
    );
    assert_eq!(fetch(d.addr, "/api/x").await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_in_a_loop_under_load_loses_nothing() {
    let bg = BlueGreen::start().await;
    let d = Daemon::start(&bg.conf("blue").build());
    let addr = d.addr;
    let load = tokio::spawn(async move {
        let mut conn = Conn::open(addr).await;
        let mut ok = 0;
        for _ in 0..300 {
            let r = conn.get("/api/x").await;
            assert_eq!(r.status, 200, "{}", r.text());
            ok += 1;
        }
        ok
    });
    for _ in 0..50 {
        d.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(load.await.unwrap(), 300);
    assert_eq!(fetch(d.addr, "/healthz").await.status, 200);
    assert!(!d.logs().iter().any(|l| l.contains("reload failed")));
}
