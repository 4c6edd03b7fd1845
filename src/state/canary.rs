//! A canary's progress: the share of clients it gets now (read on every request that
//! would go to `active`), where it is in its plan, and the judgement that moves it on or
//! rolls it back. The controller (`control::canary`) calls `tick`; a reload calls
//! `configure`. The daemon never edits the file: a finished or rolled-back canary stays as
//! it is until its `[canary]` table changes (or goes).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::config::{self, Canary, Config};
use crate::state::judgement::{judge, Verdict};
use crate::state::metrics::Figures;

/// Where a canary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Following `steps`: the weight rises after each interval without a breach.
    Running,
    /// No steps: the weight is held as configured, and still judged.
    Holding,
    /// The last step was held for one interval without a breach; the weight stays there
    /// until an operator promotes the canary (`switch`, or the `canary` command does).
    Complete,
    /// A figure breached its bound: the weight is 0 until `[canary]` changes.
    RolledBack,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Running,
        Phase::Holding,
        Phase::Complete,
        Phase::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Holding => "holding",
            Phase::Complete => "complete",
            Phase::RolledBack => "rolled back",
        }
    }
}

/// What `/status` and `/metrics` show of the canary.
#[derive(Debug, Clone)]
pub struct Progress {
    pub upstream: String,
    pub weight: u8,
    /// 1-based position in `steps`; `None` without steps.
    pub step: Option<usize>,
    pub steps: Vec<u8>,
    pub phase: Phase,
    /// Why it was rolled back, or why the current interval is being extended.
    pub reason: Option<String>,
    pub since: SystemTime,
    /// The canary's figures over the interval so far.
    pub window: Figures,
}

/// What a tick or a reload changed, to be logged once.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started { weight: u8 },
    Advanced { step: usize, weight: u8 },
    Completed { weight: u8 },
    Extended { requests: u64, needed: u64 },
    RolledBack { reason: String },
}

/// One canary's run through its plan.
struct Run {
    canary: Canary,
    step: usize,
    phase: Phase,
    reason: Option<String>,
    since: SystemTime,
    window_start: Instant,
    /// When the plan started (or was restored).
    started: Instant,
    /// The canary's figures when the interval began.
    base: Figures,
    last: Figures,
    /// When the weight reached 100: `active`'s cookie holders keep their colour one more
    /// interval from then, so their sessions end where they began.
    full_since: Option<Instant>,
}

impl Run {
    fn start(canary: &Canary, figures: Figures) -> Self {
        Run {
            canary: canary.clone(),
            step: 0,
            phase: match canary.steps.is_empty() {
                true => Phase::Holding,
                false => Phase::Running,
            },
            reason: None,
            since: SystemTime::now(),
            window_start: Instant::now(),
            started: Instant::now(),
            base: figures.clone(),
            last: figures,
            full_since: None,
        }
        .noting_full(Instant::now())
    }

    fn noting_full(mut self, now: Instant) -> Self {
        self.note_full(now);
        self
    }

    fn note_full(&mut self, now: Instant) {
        if self.weight() == 100 && self.full_since.is_none() {
            self.full_since = Some(now);
        }
    }

    fn weight(&self) -> u8 {
        match self.phase {
            Phase::RolledBack => 0,
            _ => self
                .canary
                .steps
                .get(self.step)
                .copied()
                .unwrap_or(self.canary.weight),
        }
    }

    fn new_interval(&mut self, figures: Figures, now: Instant) {
        self.window_start = now;
        self.base = figures;
        self.reason = None;
    }

    fn tick(&mut self, figures: Figures, canary_down: bool, now: Instant) -> Option<Event> {
        self.last = figures.clone();
        if self.phase == Phase::RolledBack {
            return None;
        }
        // At 0 % the canary gets no clients of its own (it only gives out cookies): what
        // reaches its upstream is a previous colour's cookie holders, nothing to judge.
        if self.weight() == 0 {
            self.new_interval(figures, now);
            return None;
        }
        let window = figures.since(&self.base);
        let verdict = match canary_down {
            true => Verdict::Breach(format!(
                "upstream {} is down (health checks)",
                self.canary.upstream.name
            )),
            false => judge(&self.canary, &window, now.duration_since(self.window_start)),
        };
        match verdict {
            Verdict::Wait => None,
            Verdict::Breach(reason) => {
                self.phase = Phase::RolledBack;
                self.reason = Some(reason.clone());
                self.since = SystemTime::now();
                Some(Event::RolledBack { reason })
            }
            Verdict::TooFew { requests, needed } => {
                // The interval goes on until it has enough to judge; said once (the count
                // so far is in the interval's figures).
                let first = self.reason.is_none();
                self.reason = Some(format!(
                    "interval extended: {needed} requests needed to judge"
                ));
                first.then_some(Event::Extended { requests, needed })
            }
            Verdict::Pass => self.pass(figures, now),
        }
    }

    fn pass(&mut self, figures: Figures, now: Instant) -> Option<Event> {
        self.new_interval(figures, now);
        match self.phase {
            Phase::Running if self.step + 1 < self.canary.steps.len() => {
                self.step += 1;
                self.note_full(now);
                self.since = SystemTime::now();
                Some(Event::Advanced {
                    step: self.step + 1,
                    weight: self.weight(),
                })
            }
            Phase::Running => {
                self.phase = Phase::Complete;
                self.since = SystemTime::now();
                Some(Event::Completed {
                    weight: self.weight(),
                })
            }
            _ => None,
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            upstream: self.canary.upstream.name.clone(),
            weight: self.weight(),
            step: (!self.canary.steps.is_empty()).then_some(self.step + 1),
            steps: self.canary.steps.clone(),
            phase: self.phase,
            reason: self.reason.clone(),
            since: self.since,
            window: self.last.since(&self.base),
        }
    }
}

/// The canary of the snapshot in force, if it has one.
#[derive(Default)]
pub struct CanaryState {
    /// The weight requests read: kept apart from the run so the request path takes no lock
    /// (but for the active colour's cookie holders at 100 %, `active_keeps_its_clients`).
    weight: AtomicU8,
    /// Draws for clients without a colour yet.
    draws: AtomicU64,
    run: Mutex<Option<Run>>,
}

impl CanaryState {
    /// A number from 0 to 99 for a client that has no colour yet. Consecutive draws walk
    /// all 100 values (stride 37, coprime to 100), so every 100 new clients split exactly
    /// by the weight, whatever their timing.
    pub fn draw(&self) -> u8 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        ((n.wrapping_mul(37)) % 100) as u8
    }

    /// Percent of clients the canary gets now (0 without a canary).
    pub fn weight(&self) -> u8 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Follows a new configuration (before it is swapped in). A run goes on, rolled back
    /// or not, while `[canary]` is the same table (other edits and plain reloads change
    /// nothing); a changed or new table starts the plan afresh from its first step.
    pub fn configure(
        &self,
        config: &Config,
        figures: impl FnOnce(&str) -> Figures,
    ) -> Option<Event> {
        let Ok(mut run) = self.run.lock() else {
            return None;
        };
        let Some(canary) = &config.canary else {
            *run = None;
            self.weight.store(0, Ordering::Relaxed);
            return None;
        };
        let keep = run.as_ref().is_some_and(|r| r.canary.same_plan(canary));
        let event = match keep {
            true => None,
            false => {
                let started = Run::start(canary, figures(&canary.upstream.name));
                let weight = started.weight();
                *run = Some(started);
                Some(Event::Started { weight })
            }
        };
        if let Some(r) = run.as_ref() {
            self.weight.store(r.weight(), Ordering::Relaxed);
        }
        event
    }

    /// Puts the run back to rolled back, as it was before a restart: the daemon's memory
    /// of a rollback outlives the process while `[canary]` stays the same table.
    pub fn restore_rollback(&self, reason: &str) {
        let Ok(mut run) = self.run.lock() else {
            return;
        };
        if let Some(r) = run.as_mut() {
            r.phase = Phase::RolledBack;
            r.reason = Some(format!("rolled back before a restart: {reason}"));
            self.weight.store(0, Ordering::Relaxed);
        }
    }

    /// Judges `canary`'s figures so far; moves the plan on or rolls it back. Figures read
    /// for another plan (a reload came in between) are not judged.
    pub fn tick(
        &self,
        canary: &Canary,
        figures: Figures,
        canary_down: bool,
        now: Instant,
    ) -> Option<Event> {
        let mut run = self.run.lock().ok()?;
        let r = run.as_mut().filter(|r| r.canary.same_plan(canary))?;
        let event = r.tick(figures, canary_down, now);
        self.weight.store(r.weight(), Ordering::Relaxed);
        event
    }

    /// Whether `active`'s cookie holders still keep their colour although the canary has
    /// all the new clients: within one interval of the weight reaching 100.
    pub fn active_keeps_its_clients(&self) -> bool {
        let Ok(run) = self.run.lock() else {
            return false;
        };
        run.as_ref().is_some_and(|r| {
            r.phase != Phase::RolledBack
                && r.full_since
                    .is_some_and(|t| t.elapsed() < r.canary.interval)
        })
    }

    /// When the current plan started: health states older than that are not its own.
    pub fn started(&self) -> Option<Instant> {
        self.run.lock().ok()?.as_ref().map(|r| r.started)
    }

    pub fn progress(&self) -> Option<Progress> {
        self.run.lock().ok()?.as_ref().map(Run::progress)
    }
}

#[cfg(test)]
mod tests;

/// What identifies a `[canary]` plan across restarts: a digest of the values `same_plan`
/// compares.
pub fn table_key(canary: &Canary) -> String {
    config::digest(&format!(
        "{}|{}|{:?}|{:?}|{}|{:?}|{}",
        canary.upstream.name,
        canary.weight,
        canary.steps,
        canary.interval,
        canary.max_error_ratio,
        canary.max_p99,
        canary.affinity.as_str()
    ))
}
