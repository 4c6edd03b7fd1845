//! The canary's plan, judgement and reload rules, tick by tick with made-up figures.

use std::time::Duration;

use super::*;
use crate::config;
use crate::state::latency;

fn config(canary: &str) -> Config {
    let text = format!(
        "active = \"blue\"\n[upstreams]\nblue = \"127.0.0.1:9\"\n\
         green = {{ url = \"127.0.0.1:9\", health = \"/healthz\" }}\n[canary]\n{canary}"
    );
    config::parse(std::path::Path::new("/tmp/switchyard.toml"), &text).expect("config")
}

fn canary_of(cfg: &Config) -> &Canary {
    cfg.canary.as_ref().expect("a [canary]")
}

/// `requests` answered in 1 ms, `errors` of them 5xx.
fn figures(requests: u64, errors: u64) -> Figures {
    let mut f = Figures {
        requests,
        errors,
        ..Figures::default()
    };
    f.latency = vec![0; latency::LEN];
    f.latency[latency::index(1000)] = requests;
    f
}

#[test]
fn a_healthy_plan_steps_up_each_interval_and_completes() {
    let cfg = config("upstream = \"green\"\nsteps = [10, 50, 100]\ninterval = \"10s\"");
    let state = CanaryState::default();
    let start = Instant::now();
    assert_eq!(
        state.configure(&cfg, |_| Figures::default()),
        Some(Event::Started { weight: 10 })
    );
    assert_eq!(state.weight(), 10);
    assert_eq!(
        state.tick(
            canary_of(&cfg),
            figures(200, 0),
            false,
            start + Duration::from_secs(5)
        ),
        None
    );
    let event = state.tick(
        canary_of(&cfg),
        figures(400, 1),
        false,
        start + Duration::from_secs(11),
    );
    assert_eq!(
        event,
        Some(Event::Advanced {
            step: 2,
            weight: 50
        })
    );
    let event = state.tick(
        canary_of(&cfg),
        figures(900, 2),
        false,
        start + Duration::from_secs(22),
    );
    assert_eq!(
        event,
        Some(Event::Advanced {
            step: 3,
            weight: 100
        })
    );
    let event = state.tick(
        canary_of(&cfg),
        figures(2000, 3),
        false,
        start + Duration::from_secs(33),
    );
    assert_eq!(event, Some(Event::Completed { weight: 100 }));
    let progress = state.progress().expect("progress");
    assert_eq!(
        (progress.phase, progress.weight, progress.step),
        (Phase::Complete, 100, Some(3))
    );
}

#[test]
fn the_active_colour_keeps_its_clients_one_interval_after_the_weight_reaches_100() {
    let cfg = config("upstream = \"green\"\nsteps = [50, 100]\ninterval = \"10s\"");
    let state = CanaryState::default();
    let start = Instant::now();
    state.configure(&cfg, |_| Figures::default());
    assert!(!state.active_keeps_its_clients());
    state.tick(
        canary_of(&cfg),
        figures(100, 0),
        false,
        start + Duration::from_secs(11),
    );
    assert_eq!(state.weight(), 100);
    assert!(state.active_keeps_its_clients());
    let short = config("upstream = \"green\"\nsteps = [100]\ninterval = \"1ms\"");
    let state = CanaryState::default();
    state.configure(&short, |_| Figures::default());
    std::thread::sleep(Duration::from_millis(5));
    assert!(!state.active_keeps_its_clients());
}

#[test]
fn a_breach_rolls_back_at_once_and_stays_until_the_canary_table_changes() {
    let cfg = config(
        "upstream = \"green\"\nsteps = [10, 50]\ninterval = \"60s\"\nmax_error_ratio = 0.05",
    );
    let state = CanaryState::default();
    let start = Instant::now();
    state.configure(&cfg, |_| figures(1000, 0));
    // 20 % errors, judged as soon as there are enough requests, not at the interval's end.
    let event = state.tick(
        canary_of(&cfg),
        figures(1100, 20),
        false,
        start + Duration::from_secs(1),
    );
    match event {
        Some(Event::RolledBack { reason }) => {
            assert!(reason.contains("error ratio 20.00 %"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state.weight(), 0);
    // The same file reloaded: still rolled back.
    assert_eq!(state.configure(&cfg, |_| Figures::default()), None);
    assert_eq!(state.weight(), 0);
    // Another edit of the file (the same table): still rolled back.
    let mut edited = config(
        "upstream = \"green\"\nsteps = [10, 50]\ninterval = \"60s\"\nmax_error_ratio = 0.05",
    );
    edited.digest = "another".into();
    assert_eq!(state.configure(&edited, |_| Figures::default()), None);
    assert_eq!(state.weight(), 0);
    // A changed table starts the plan again.
    let changed = config(
        "upstream = \"green\"\nsteps = [10, 50]\ninterval = \"60s\"\nmax_error_ratio = 0.02",
    );
    assert_eq!(
        state.configure(&changed, |_| Figures::default()),
        Some(Event::Started { weight: 10 })
    );
}

#[test]
fn a_canary_at_weight_0_is_never_judged() {
    let cfg = config("upstream = \"green\"\nweight = 0\ninterval = \"1s\"");
    let state = CanaryState::default();
    let start = Instant::now();
    state.configure(&cfg, |_| Figures::default());
    // Its colour stopped, and a previous colour's cookie holders meeting 502s there.
    assert_eq!(
        state.tick(canary_of(&cfg), Figures::default(), true, start),
        None
    );
    assert_eq!(
        state.tick(
            canary_of(&cfg),
            figures(1717, 1717),
            false,
            start + Duration::from_secs(2)
        ),
        None
    );
    let progress = state.progress().expect("progress");
    assert_eq!((progress.phase, progress.reason), (Phase::Holding, None));
    assert_eq!(progress.window.requests, 0);
}

#[test]
fn a_reload_with_the_same_table_keeps_the_progress() {
    let cfg = config("upstream = \"green\"\nsteps = [10, 50]\ninterval = \"10s\"");
    let state = CanaryState::default();
    let start = Instant::now();
    state.configure(&cfg, |_| Figures::default());
    state.tick(
        canary_of(&cfg),
        figures(100, 0),
        false,
        start + Duration::from_secs(11),
    );
    assert_eq!(state.weight(), 50);
    let mut edited = config("upstream = \"green\"\nsteps = [10, 50]\ninterval = \"10s\"");
    edited.digest = "other edit".into();
    assert_eq!(state.configure(&edited, |_| Figures::default()), None);
    assert_eq!(state.weight(), 50);
    let other = config("upstream = \"green\"\nsteps = [5, 50]\ninterval = \"10s\"");
    assert_eq!(
        state.configure(&other, |_| Figures::default()),
        Some(Event::Started { weight: 5 })
    );
}

#[test]
fn too_few_requests_extend_the_interval_and_say_so_once() {
    let cfg = config(
        "upstream = \"green\"\nsteps = [10, 50]\ninterval = \"10s\"\nmax_error_ratio = 0.01",
    );
    let state = CanaryState::default();
    let start = Instant::now();
    state.configure(&cfg, |_| Figures::default());
    let event = state.tick(
        canary_of(&cfg),
        figures(30, 0),
        false,
        start + Duration::from_secs(11),
    );
    assert_eq!(
        event,
        Some(Event::Extended {
            requests: 30,
            needed: 100
        })
    );
    assert_eq!(
        state.tick(
            canary_of(&cfg),
            figures(60, 0),
            false,
            start + Duration::from_secs(12)
        ),
        None
    );
    let reason = state.progress().and_then(|p| p.reason).unwrap_or_default();
    // The reason stays the same while the interval waits (so it is printed once); the
    // count so far is in the interval's figures.
    assert_eq!(reason, "interval extended: 100 requests needed to judge");
    assert_eq!(state.progress().map(|p| p.window.requests), Some(60));
    let event = state.tick(
        canary_of(&cfg),
        figures(100, 0),
        false,
        start + Duration::from_secs(13),
    );
    assert_eq!(
        event,
        Some(Event::Advanced {
            step: 2,
            weight: 50
        })
    );
}

#[test]
fn slow_answers_and_a_down_canary_are_breaches() {
    let cfg =
        config("upstream = \"green\"\nweight = 20\nmax_p99 = \"200ms\"\nmax_error_ratio = 0.05");
    let state = CanaryState::default();
    let start = Instant::now();
    state.configure(&cfg, |_| Figures::default());
    assert_eq!(state.progress().map(|p| p.phase), Some(Phase::Holding));
    let mut slow = figures(100, 0);
    slow.latency[latency::index(1000)] = 90;
    slow.latency[latency::index(300_000)] = 10;
    match state.tick(canary_of(&cfg), slow, false, start + Duration::from_secs(1)) {
        Some(Event::RolledBack { reason }) => {
            assert!(reason.contains("p99 latency"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let cfg = config("upstream = \"green\"\nweight = 20");
    let state = CanaryState::default();
    state.configure(&cfg, |_| Figures::default());
    match state.tick(canary_of(&cfg), Figures::default(), true, start) {
        Some(Event::RolledBack { reason }) => assert!(reason.contains("is down"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn quantiles_are_read_within_an_eighth_of_the_truth() {
    // The outside trial's case: every answer in 50-55 ms, judged against 80 ms.
    let mut f = figures(0, 0);
    for ms in 50..55 {
        f.latency[latency::index(ms * 1000)] += 20;
    }
    f.requests = 100;
    let p99 = f.quantile(0.99).expect("p99");
    assert!(
        p99 >= Duration::from_millis(54) && p99 <= Duration::from_millis(62),
        "{p99:?}"
    );
    let cfg =
        config("upstream = \"green\"\nweight = 20\nmax_p99 = \"80ms\"\nmax_error_ratio = 0.05");
    let state = CanaryState::default();
    state.configure(&cfg, |_| Figures::default());
    assert_eq!(
        state.tick(canary_of(&cfg), f, false, Instant::now()),
        None,
        "54 ms is not over 80 ms"
    );
    assert_eq!(Figures::default().quantile(0.99), None);
}

#[test]
fn an_unrelated_upstream_added_keeps_the_rollback() {
    let cfg = config("upstream = \"green\"\nsteps = [10, 50]\nmax_error_ratio = 0.05");
    let state = CanaryState::default();
    state.configure(&cfg, |_| Figures::default());
    state.tick(canary_of(&cfg), figures(100, 50), false, Instant::now());
    assert_eq!(state.weight(), 0);
    // "admin" sorts before "green": green's position among the upstreams changes.
    let text = "active = \"blue\"\n[upstreams]\nadmin = \"127.0.0.1:7\"\nblue = \"127.0.0.1:9\"\n\
                green = { url = \"127.0.0.1:9\", health = \"/healthz\" }\n[canary]\n\
                upstream = \"green\"\nsteps = [10, 50]\nmax_error_ratio = 0.05";
    let more = config::parse(std::path::Path::new("/tmp/switchyard.toml"), text).expect("config");
    assert_eq!(state.configure(&more, |_| Figures::default()), None);
    assert_eq!(state.weight(), 0);
    assert_eq!(table_key(canary_of(&cfg)), table_key(canary_of(&more)));
    // Figures read for another plan are not judged against this one.
    let other = config("upstream = \"green\"\nweight = 30");
    assert_eq!(
        state.tick(canary_of(&other), figures(100, 100), true, Instant::now()),
        None
    );
}
