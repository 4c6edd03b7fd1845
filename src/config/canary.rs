//! The `[canary]` table: which upstream gets a share of `active`'s clients, the plan of
//! shares, and the bounds that roll it back.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::model::{Canary, Upstream};
use super::raw::RawCanary;
use super::settings::positive;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_ERROR_RATIO: f64 = 0.01;

/// Validates `[canary]`, given the upstreams and the one `active` names.
pub(super) fn canary(
    src: &Source,
    raw: &Spanned<RawCanary>,
    upstreams: &[Arc<Upstream>],
    active: &Upstream,
) -> Result<Canary, ConfigError> {
    let table = raw.get_ref();
    let name = &table.upstream;
    let Some(upstream) = upstreams.iter().find(|u| u.name == *name.get_ref()) else {
        return Err(src.err(
            name,
            format!("canary.upstream = {:?} names no upstream", name.get_ref()),
        ));
    };
    if **upstream == *active {
        let why = format!(
            "canary.upstream = {:?} is the active upstream: a canary is another upstream",
            name.get_ref()
        );
        return Err(src.err(name, why));
    }
    if upstream.health.is_none() {
        let why = format!(
            "canary.upstream = {:?} has no health path: a canary must be health-checked \
             (upstreams.{} = {{ url = \"...\", health = \"/healthz\" }})",
            name.get_ref(),
            name.get_ref()
        );
        return Err(src.err(name, why));
    }
    let steps = steps(src, table)?;
    let weight = weight(src, table, &steps)?;
    Ok(Canary {
        upstream: Arc::clone(upstream),
        weight,
        steps,
        interval: positive(src, "canary.interval", &table.interval, DEFAULT_INTERVAL)?,
        max_error_ratio: error_ratio(src, &table.max_error_ratio)?,
        max_p99: match &table.max_p99 {
            None => None,
            Some(_) => Some(positive(
                src,
                "canary.max_p99",
                &table.max_p99,
                Duration::ZERO,
            )?),
        },
        affinity: table.affinity.unwrap_or_default(),
    })
}

fn percent(src: &Source, key: &str, n: &Spanned<i64>) -> Result<u8, ConfigError> {
    match u8::try_from(*n.get_ref()) {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(src.err(n, format!("{key} must be a percentage from 0 to 100"))),
    }
}

fn steps(src: &Source, table: &RawCanary) -> Result<Vec<u8>, ConfigError> {
    let Some(raw) = &table.steps else {
        return Ok(Vec::new());
    };
    let mut steps: Vec<u8> = Vec::new();
    for step in raw.get_ref() {
        let p = percent(src, "canary.steps", step)?;
        if p == 0 || steps.last().is_some_and(|last| p <= *last) {
            let why = "canary.steps must rise, each above 0 (e.g. [10, 25, 50, 100])";
            return Err(src.err(step, why));
        }
        steps.push(p);
    }
    if steps.is_empty() {
        return Err(src.err(raw, "canary.steps is empty: leave it out to hold `weight`"));
    }
    Ok(steps)
}

/// Without steps, `weight` (default 0: the canary is set up but gets no clients); with
/// steps, the first step, which `weight` may repeat.
fn weight(src: &Source, table: &RawCanary, steps: &[u8]) -> Result<u8, ConfigError> {
    let weight = table
        .weight
        .as_ref()
        .map(|w| percent(src, "canary.weight", w).map(|p| (w, p)))
        .transpose()?;
    match (weight, steps.first()) {
        (Some((w, p)), Some(first)) if p != *first => Err(src.err(
            w,
            format!("canary.weight = {p} but the first of canary.steps is {first}: the plan starts at its first step"),
        )),
        (_, Some(first)) => Ok(*first),
        (Some((_, p)), None) => Ok(p),
        (None, None) => Ok(0),
    }
}

fn error_ratio(src: &Source, raw: &Option<Spanned<f64>>) -> Result<f64, ConfigError> {
    match raw {
        None => Ok(DEFAULT_MAX_ERROR_RATIO),
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => Ok(*r.get_ref()),
        Some(r) => Err(src.err(
            r,
            "canary.max_error_ratio is a fraction from 0 to 1 (0.01 is 1 %)",
        )),
    }
}
