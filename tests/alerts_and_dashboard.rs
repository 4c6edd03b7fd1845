//! The monitoring that ships in `config/`: the Prometheus alert rules (checked and unit
//! tested by promtool) and the metric names they use, which must be ones the daemon
//! really exports.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

fn shipped(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const RULES: &str = "prometheus/switchyard-rules.yml";

fn rule_tests() -> Vec<PathBuf> {
    let dir = shipped("prometheus/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule tests in {}", dir.display());
    files
}

/// Every `switchyard_*` metric name in `text` (PromQL, or a whole rules file).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let word_start = at == 0 || !is_name_byte(rest.as_bytes()[at - 1]);
        let len = rest[at..].bytes().take_while(|b| is_name_byte(*b)).count();
        if word_start {
            names.insert(rest[at..at + len].to_owned());
        }
        rest = &rest[at + len..];
    }
    names
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The sample names in a Prometheus text exposition.
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = shipped(RULES);
    let (ok, report) = promtool(&["check", "rules", &rules.to_string_lossy()], None);
    assert!(ok, "promtool check rules:\n{report}");
    let tests = rule_tests();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(tests.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, report) = promtool(&args, None);
    assert!(ok, "promtool test rules:\n{report}");
    assert!(report.contains("SUCCESS"), "{report}");
}

/// Alert names, and for each whether some test expects it to fire and some that it does not.
#[derive(Default, Debug)]
struct Coverage {
    fires: bool,
    quiet: bool,
}

#[test]
fn every_alert_has_a_test_where_it_fires_and_one_where_it_stays_quiet() {
    let alerts: Vec<String> = read(&shipped(RULES))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    let mut seen: std::collections::BTreeMap<String, Coverage> = Default::default();
    for file in rule_tests() {
        let text = read(&file);
        let mut lines = text.lines().map(str::trim).peekable();
        let mut current = None;
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix("alertname:") {
                current = Some(name.trim().to_owned());
            }
            let Some(expected) = line.strip_prefix("exp_alerts:") else {
                continue;
            };
            let name = current.take().expect("exp_alerts after an alertname");
            let entry = seen.entry(name).or_default();
            match expected.trim() {
                "[]" => entry.quiet = true,
                "" if lines.peek().is_some_and(|l| l.starts_with("- exp_labels:")) => {
                    entry.fires = true
                }
                other => panic!("unexpected exp_alerts: {other:?} in {}", file.display()),
            }
        }
    }
    for alert in &alerts {
        let coverage = seen.get(alert);
        assert!(
            coverage.is_some_and(|c| c.fires && c.quiet),
            "{alert} needs a test where it fires and one where it does not: {coverage:?}"
        );
    }
    let unknown: Vec<&String> = seen.keys().filter(|k| !alerts.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "tests for alerts that do not exist: {unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_use_is_one_the_daemon_exports() {
    let ex = exercised_daemon().await;
    let exported = exported(&scrape(ex.admin).await);
    let used = metric_names(&read(&shipped(RULES)));
    assert!(used.len() >= 4, "{used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}; exported: {exported:?}"
    );
}
