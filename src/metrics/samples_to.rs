//! Samples to learn: how many training samples a model had drawn when its
//! probes (ground truth and fresh samples, never trained on) first showed a
//! target reached. A target not reached is *censored*: "not within N
//! samples", never a number.
//!
//! The targets (docs/algorithm.md, "Samples to learn"):
//! * `weak` / `strong`: every cluster's w*_c and w*_g overlap, best over
//!   the neurons serving that cluster, at least `metrics.recovery_threshold`
//!   (0.5) / `targets.learned_overlap` (0.9);
//! * `error` (joint training, whose models predict while they train): the
//!   probe's relative error at most `targets.relative_error` (0.2);
//! * `learned`: `strong`, and `error` where the model has it: what
//!   `targets.until` stops at;
//! * the staged MoE's phases, each counted from the run's start and from
//!   the phase's: phase I, every cluster has an expert with local overlap
//!   at least 0.5 (`one_weak`) / 0.9 (`one_strong`); phase II, routing purity
//!   within `targets.purity_margin` of the best linear router; phase III,
//!   every cluster's w*_c and w*_g overlaps >= 0.9.
//!
//! ```
//! use clustermoe::metrics::samples_to::Crossing;
//!
//! let reached = Crossing::Reached { samples: 51_200, since: 50_944 };
//! assert_eq!(reached.samples(), Some(51_200));
//! // Censored: a lower bound, never a number.
//! let censored = Crossing::Censored { within: 4_000_000 };
//! assert_eq!(censored.samples(), None);
//! assert_eq!(censored.bound(), 4_000_000);
//! let json = serde_json::to_string(&censored).unwrap();
//! assert_eq!(json, r#"{"status":"censored","within":4000000}"#);
//! ```

use serde::{Deserialize, Serialize};

/// A target a model's probes watch for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every cluster's w*_c and w*_g overlap >= the recovery threshold.
    Weak,
    /// Every cluster's w*_c and w*_g overlap >= the learned overlap.
    Strong,
    /// The probe's relative error <= the target (joint training).
    Error,
    /// Phase I: every cluster has an expert with w*_c overlap >= the recovery threshold.
    PhaseOneWeak,
    /// Phase I: every cluster has an expert with w*_c overlap >= the learned overlap.
    PhaseOneStrong,
    /// Phase II: routing purity within the margin of the best linear router.
    PhaseTwo,
    /// Phase III: every cluster's w*_c and w*_g overlap >= the learned overlap.
    PhaseThree,
}

/// When a target was first seen reached, or that it was not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Crossing {
    /// The first probe that showed it reached came after `samples`
    /// training samples; the probe before it, after `since` (still not
    /// reached then): the crossing lies in (since, samples].
    Reached {
        /// Samples at the first probe that showed it.
        samples: u64,
        /// Samples at the probe before.
        since: u64,
    },
    /// Not reached within this many samples.
    Censored {
        /// Samples drawn while the target was watched.
        within: u64,
    },
}

impl Crossing {
    /// The samples to reach the target; None when censored.
    pub fn samples(&self) -> Option<u64> {
        match *self {
            Crossing::Reached { samples, .. } => Some(samples),
            Crossing::Censored { .. } => None,
        }
    }

    /// The samples, or for a censored target its lower bound.
    pub fn bound(&self) -> u64 {
        match *self {
            Crossing::Reached { samples, .. } => samples,
            Crossing::Censored { within } => within,
        }
    }

    /// Whether the target was reached.
    pub fn reached(&self) -> bool {
        matches!(self, Crossing::Reached { .. })
    }

    /// The same crossing counted from `start` samples on.
    fn after(self, start: u64) -> Crossing {
        match self {
            Crossing::Reached { samples, since } => Crossing::Reached {
                samples: samples - start,
                since: since.max(start) - start,
            },
            Crossing::Censored { within } => Crossing::Censored {
                within: within.saturating_sub(start),
            },
        }
    }

    /// The later of two crossings (a target that needs both): censored if
    /// either is.
    fn both(a: Crossing, b: Crossing) -> Crossing {
        match (a, b) {
            (Crossing::Reached { samples: s, since }, Crossing::Reached { samples: t, .. })
                if s >= t =>
            {
                Crossing::Reached { samples: s, since }
            }
            (Crossing::Reached { .. }, reached @ Crossing::Reached { .. }) => reached,
            (censored @ Crossing::Censored { .. }, _)
            | (_, censored @ Crossing::Censored { .. }) => censored,
        }
    }
}

/// A staged phase's target, counted from the run's start and from the
/// phase's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCrossing {
    /// Counted from the run's start.
    pub run: Crossing,
    /// Counted from the phase's start.
    pub phase: Crossing,
}

/// The staged MoE's phase targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTargets {
    /// Phase I: every cluster has an expert at w*_c overlap >= 0.5.
    pub one_weak: PhaseCrossing,
    /// Phase I: ... >= 0.9.
    pub one_strong: PhaseCrossing,
    /// Phase II: routing purity within the margin of the best linear
    /// router; absent when the best linear router's purity is not known
    /// (more than two clusters on random centres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two: Option<PhaseCrossing>,
    /// Phase III: every cluster's w*_c and w*_g overlap >= 0.9.
    pub three: PhaseCrossing,
}

/// `summary.json`'s `samples_to` section of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplesTo {
    /// Training samples the model drew (the readout's excluded): a
    /// censored target was not reached within them.
    pub trained: u64,
    /// With `targets.until`: each model (each staged phase) trained at
    /// most this multiple of its configured length, and stopped at its
    /// target (an oracle schedule, for measurement only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_cap: Option<f64>,
    /// Every cluster's w*_c and w*_g overlap >= 0.5.
    pub weak: Crossing,
    /// Every cluster's w*_c and w*_g overlap >= 0.9.
    pub strong: Crossing,
    /// The probe's relative error <= 0.2: joint training only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Crossing>,
    /// `strong`, and `error` where there is one.
    pub learned: Crossing,
    /// The staged MoE's phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseTargets>,
}

/// What the probes of one model's training have seen so far, per target:
/// kept in checkpoints, so a resumed run finds the same crossings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    targets: Vec<(Target, Progress)>,
}

/// One target's probes so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    /// Samples when watching began (a phase's start).
    start: u64,
    /// Samples at the last probe (or at the start).
    checked: u64,
    /// Samples at the first probe that showed it, and at the one before.
    reached: Option<(u64, u64)>,
}

impl Watch {
    fn get(&self, target: Target) -> Option<&Progress> {
        self.targets
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, p)| p)
    }

    /// Starts watching `target` at `samples` (a phase's start), unless it
    /// already is (a resumed run).
    pub fn begin(&mut self, target: Target, samples: u64) {
        if self.get(target).is_none() {
            let progress = Progress {
                start: samples,
                checked: samples,
                reached: None,
            };
            self.targets.push((target, progress));
        }
    }

    /// A probe after `samples` samples found `target` reached (`met`) or
    /// not; true when this is the first probe that found it reached.
    pub fn observe(&mut self, target: Target, samples: u64, met: bool) -> bool {
        self.begin(target, samples);
        let progress = self
            .targets
            .iter_mut()
            .find(|(t, _)| *t == target)
            .map(|(_, p)| p)
            .expect("begun above");
        if progress.reached.is_some() {
            return false;
        }
        if met {
            progress.reached = Some((samples, progress.checked));
        } else {
            progress.checked = samples;
        }
        met
    }

    /// Whether a probe has found `target` reached.
    pub fn reached(&self, target: Target) -> bool {
        self.get(target).is_some_and(|p| p.reached.is_some())
    }

    /// Whether `target` is still to be reached (watched or not).
    pub fn open(&self, target: Target) -> bool {
        !self.reached(target)
    }

    /// `target`'s crossing counted from the run's start, censored at
    /// `end` samples if not reached.
    pub fn crossing(&self, target: Target, end: u64) -> Crossing {
        match self.get(target).and_then(|p| p.reached) {
            Some((samples, since)) => Crossing::Reached { samples, since },
            None => Crossing::Censored { within: end },
        }
    }

    /// A phase target's crossing from the run's and the phase's start;
    /// `end` is the samples drawn when the phase ended.
    fn phase_crossing(&self, target: Target, end: u64) -> PhaseCrossing {
        let start = self.get(target).map_or(end, |p| p.start);
        let run = match self.get(target) {
            Some(p) if p.reached.is_none() => Crossing::Censored {
                within: p.checked.max(start),
            },
            _ => self.crossing(target, end),
        };
        PhaseCrossing {
            run,
            phase: run.after(start),
        }
    }

    /// The `samples_to` section of a model that trained for `trained`
    /// samples (`until_cap`: stopped at its targets, under that cap);
    /// `error` whether it has an error target, `staged_moe` whether it has
    /// the staged phases' targets (phase II's only where it was watched).
    pub fn samples_to(
        &self,
        trained: u64,
        until_cap: Option<f64>,
        error: bool,
        staged_moe: bool,
    ) -> SamplesTo {
        let strong = self.crossing(Target::Strong, trained);
        let error = error.then(|| self.crossing(Target::Error, trained));
        SamplesTo {
            trained,
            until_cap,
            weak: self.crossing(Target::Weak, trained),
            strong,
            error,
            learned: error.map_or(strong, |e| Crossing::both(strong, e)),
            phases: staged_moe.then(|| PhaseTargets {
                one_weak: self.phase_crossing(Target::PhaseOneWeak, trained),
                one_strong: self.phase_crossing(Target::PhaseOneStrong, trained),
                two: self
                    .get(Target::PhaseTwo)
                    .map(|_| self.phase_crossing(Target::PhaseTwo, trained)),
                three: self.phase_crossing(Target::PhaseThree, trained),
            }),
        }
    }
}

/// Whether every cluster's local and global overlaps (best over the
/// neurons serving it) reach `threshold`.
pub fn every_cluster(local: &[f64], global: &[f64], threshold: f64) -> bool {
    local.iter().chain(global).all(|&o| o >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_reached_at_its_first_probe_and_censored_otherwise() {
        let mut w = Watch::default();
        w.begin(Target::PhaseTwo, 1000);
        assert!(!w.observe(Target::PhaseTwo, 1064, false));
        assert!(!w.observe(Target::PhaseTwo, 1128, false));
        assert!(w.observe(Target::PhaseTwo, 1192, true));
        // Later probes change nothing, reached or not.
        assert!(!w.observe(Target::PhaseTwo, 1256, false));
        assert!(!w.observe(Target::PhaseTwo, 1320, true));
        assert!(w.reached(Target::PhaseTwo));
        let p = w.phase_crossing(Target::PhaseTwo, 5000);
        assert_eq!(
            p.run,
            Crossing::Reached {
                samples: 1192,
                since: 1128
            }
        );
        assert_eq!(
            p.phase,
            Crossing::Reached {
                samples: 192,
                since: 128
            }
        );
        assert!(w.observe(Target::Strong, 3000, true));
        let s = w.samples_to(9000, None, true, false);
        assert_eq!(s.error, Some(Crossing::Censored { within: 9000 }));
        assert_eq!(s.learned, Crossing::Censored { within: 9000 });
        assert_eq!(s.weak, Crossing::Censored { within: 9000 });
        w.observe(Target::Error, 4000, true);
        let s = w.samples_to(9000, None, true, false);
        assert_eq!(s.learned.samples(), Some(4000));
        assert_eq!(s.strong.samples(), Some(3000));
    }

    #[test]
    fn a_phase_target_not_reached_is_censored_at_its_last_probe() {
        let mut w = Watch::default();
        w.begin(Target::PhaseOneStrong, 4096);
        w.observe(Target::PhaseOneStrong, 10_000, false);
        let p = w.phase_crossing(Target::PhaseOneStrong, 90_000);
        assert_eq!(p.run, Crossing::Censored { within: 10_000 });
        assert_eq!(p.phase, Crossing::Censored { within: 5904 });
    }
}
