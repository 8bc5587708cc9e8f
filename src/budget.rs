//! The default budget: learning rates and phase lengths as functions of the
//! task (d, k*, the links, C, the signs), from the drift equations of
//! [`crate::theory`], so that a user who changes only the task still gets a
//! run that can succeed. Every value is a default: a number set in the
//! configuration wins over it.
//!
//! The laws (`docs/theory.md`, `docs/algorithm.md`), each calibrated so that the
//! default task (d = 32, k* = 3, h_3 links) keeps the rates and lengths that
//! were tuned on it:
//!
//! * **Learning rates.** Near a learned direction the renormalisation after
//!   each noisy step holds a neuron at `1 - m^2 = lr nu`, with
//!   `nu = (d - 1) sigma2(m = 1) / (2 B k |beta|)` (the noise floor per unit
//!   rate; `sigma2` the one-sample gradient variance of a neuron sitting on
//!   a direction, within one cluster). A phase-III or vanilla neuron whose
//!   floor is too high is knocked out of its basin and loses the direction
//!   it found (k* = 4 at lr 0.003: floor 0.16), so the plateau rate is
//!   `min(0.003, PLATEAU_FLOOR / nu, lr_crit / CRITICAL_MARGIN)` and the
//!   final rate `min(0.0003, END_FLOOR / nu)`, where `lr_crit` is the rate
//!   at which the noise's shrinkage cancels the signal at the typical
//!   starting overlap `d^(-1/2)` (it falls like `d^(-k*/2)`, faster than
//!   the floors' `1/d`: without it phase III planned no recovery beyond
//!   d = 2048 at k* = 4). Phase I only has to find directions; its rate is
//!   `min(0.003, lr_crit / CRITICAL_MARGIN)`.
//! * **The vanilla network's rates** are phase III's law for a neuron that
//!   sees all C clusters: its signal comes from a share 1/C of the samples
//!   and its noise from all of them (`nu` C times that of one cluster, the
//!   critical rate that of C clusters).
//! * **Phase I length.** The drift ODE's weak-recovery time `T1` (from
//!   overlap `d^(-1/2)` to 0.5 at the phase-I rate): a restarted expert gets
//!   `restart_every = max(2000, 2.2 T1)` steps, and phase I four of those.
//! * **Phase III length.** `max(24000, 21 T3)`, `T3` the recovery time
//!   within one cluster at the phase-III rate: a third of the phase at the
//!   plateau for the search, the rest for the decay to the floor.
//!
//! The vanilla network gets exactly the MoE's sample budget. A length
//! beyond any step count is kept as it is (`u64::MAX` when infinite), and
//! `Config::check` refuses it with the reason.
//!
//! A checked configuration says what it resolved to:
//!
//! ```
//! let valid = clustermoe::Config::default().check()?;
//! let budget = valid.resolved_budget();
//! assert_eq!(budget.phase_three_steps, 24_000);
//! assert_eq!(budget.theory.phase_three_steps, 24_000); // "auto": the laws' choice
//! println!("{}", budget.describe());
//! # Ok::<(), clustermoe::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::capacity::{ExpertsChoice, ReadoutChoice};
use crate::theory::{gradient_noise, typical_initial_overlap, DriftParams};

/// The tuned rates of the default task, which the laws never exceed.
const MAX_LR: f64 = 0.003;
const MAX_LR_END: f64 = 0.0003;
/// Noise floors `1 - m^2` allowed at the plateau and at the end.
const PLATEAU_FLOOR: f64 = 0.06;
const END_FLOOR: f64 = 0.0024;
/// Phase I's rate is at most this fraction of the critical rate.
const CRITICAL_MARGIN: f64 = 8.0;
/// Steps per restart and phase-III steps, in units of recovery times.
const RESTART_RECOVERIES: f64 = 2.2;
const PHASE_THREE_RECOVERIES: f64 = 21.0;
/// Lengths of the default task, the least any task gets.
const MIN_RESTART_EVERY: u64 = 2_000;
const MIN_PHASE_THREE_STEPS: u64 = 24_000;

/// What the task looks like to the budget laws (`Config::check` builds it
/// from the task section and its links).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskShape {
    /// Input dimension d.
    pub d: usize,
    /// Number of clusters C.
    pub clusters: usize,
    /// Information exponent k* (the activation's degree).
    pub k: usize,
    /// The smallest leading coefficient any expert must learn:
    /// min over clusters of |beta_{c,k*}| and |s_c gamma_{k*}| (non-zero ones).
    pub beta: f64,
    /// Hermite coefficients of the local link with the largest variance.
    pub local: Vec<f64>,
    /// Hermite coefficients of the global link times max_c |s_c|.
    pub global: Vec<f64>,
    /// Standard deviation zeta of the label noise.
    pub noise: f64,
}

/// Minibatch sizes of the searching phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batches {
    /// Phase I's batch.
    pub one: usize,
    /// Phase III's batch.
    pub three: usize,
    /// The vanilla network's batch.
    pub vanilla: usize,
}

impl Default for Batches {
    /// The default configuration's: 64 samples per step everywhere.
    fn default() -> Self {
        Batches {
            one: 64,
            three: 64,
            vanilla: 64,
        }
    }
}

/// The budget the laws choose, recorded in `summary.json` (as
/// `budget.theory`). Rates are learning rates per SGD step, lengths counts
/// of SGD steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Phase I's learning rate, at most 0.003.
    pub phase_one_lr: f64,
    /// Phase-I steps between restarts of stuck or redundant experts, at
    /// least 2000.
    pub restart_every: u64,
    /// Phase I's length: four times `restart_every`.
    pub phase_one_steps: u64,
    /// Phase III's learning rate on the plateau, at most 0.003.
    pub phase_three_lr: f64,
    /// Phase III's learning rate at the last step, at most 0.0003 and at
    /// most `phase_three_lr`.
    pub phase_three_lr_end: f64,
    /// Phase III's length, at least 24000.
    pub phase_three_steps: u64,
    /// The vanilla network's learning rate on the plateau, at most 0.003:
    /// the law of phase III for a neuron that sees all C clusters.
    #[serde(default)]
    pub vanilla_lr: f64,
    /// The vanilla network's learning rate at the last step.
    #[serde(default)]
    pub vanilla_lr_end: f64,
    /// Predicted phase-I weak-recovery steps at the phase-I rate.
    pub phase_one_recovery_steps: f64,
    /// Predicted phase-III recovery steps (one cluster) at the phase-III rate.
    pub phase_three_recovery_steps: f64,
    /// The noise floor per unit rate, `nu`, within one cluster.
    pub noise_floor_per_lr: f64,
}

impl Budget {
    /// The laws of the module documentation for a task, with phase batches
    /// `batch_one` and `batch_three`.
    ///
    /// ```
    /// use clustermoe::budget::{Batches, Budget, TaskShape};
    ///
    /// // The default task: d = 32, two clusters, h_3 links, noise 0.1.
    /// let h3 = vec![0.0, 0.0, 0.0, 1.0];
    /// let task = TaskShape {
    ///     d: 32,
    ///     clusters: 2,
    ///     k: 3,
    ///     beta: 1.0,
    ///     local: h3.clone(),
    ///     global: h3,
    ///     noise: 0.1,
    /// };
    /// let b = Budget::for_task(&task, Batches::default());
    /// assert_eq!((b.phase_one_lr, b.phase_one_steps), (0.003, 8000));
    /// assert_eq!((b.phase_three_lr_end, b.phase_three_steps), (0.0003, 24000));
    ///
    /// // k* = 4 is harder: a smaller rate and a longer phase III.
    /// let h4 = vec![0.0, 0.0, 0.0, 0.0, 1.0];
    /// let hard = Budget::for_task(&TaskShape { k: 4, local: h4.clone(), global: h4, ..task }, Batches::default());
    /// assert!(hard.phase_three_lr < b.phase_three_lr);
    /// assert!(hard.phase_three_steps > b.phase_three_steps);
    /// ```
    pub fn for_task(task: &TaskShape, batches: Batches) -> Budget {
        let Batches {
            one: batch_one,
            three: batch_three,
            vanilla: batch_vanilla,
        } = batches;
        let k = task.k.max(1);
        let beta = task.beta.abs().max(1e-12);
        let m0 = typical_initial_overlap(task.d);
        let d1 = task.d.saturating_sub(1).max(1) as f64;

        let equator = |clusters: usize| {
            gradient_noise(k, &task.local, &task.global, task.noise, clusters, 0.0)
                .noise_variance(task.d)
        };
        let drift = |lr: f64, clusters: usize, batch: usize| DriftParams {
            k,
            beta,
            clusters,
            lr,
            batch,
            d: task.d,
            noise_variance: equator(clusters),
        };
        // Each searching phase's rate: below its noise floors and a margin
        // below the critical rate at the starting overlap, so that its
        // recovery exists wherever the drift allows one.
        let rates = |clusters: usize, batch: usize| {
            let at_one = gradient_noise(k, &task.local, &task.global, task.noise, clusters, 1.0);
            // A neuron on one cluster's direction gets its signal from a
            // share 1 / C of the samples and its noise from all of them.
            let nu = clusters as f64 * d1 * at_one.noise_variance(task.d)
                / (2.0 * batch as f64 * k as f64 * beta);
            let critical = drift(1.0, clusters, batch).critical_lr(m0) / CRITICAL_MARGIN;
            let lr = MAX_LR.min(PLATEAU_FLOOR / nu).min(critical);
            let lr_end = MAX_LR_END.min(END_FLOOR / nu).min(lr);
            (lr, lr_end, nu)
        };
        // Phase III searches within one cluster; the vanilla network's
        // neurons see all C.
        let (phase_three_lr, phase_three_lr_end, nu) = rates(1, batch_three);
        let (vanilla_lr, vanilla_lr_end, _) = rates(task.clusters, batch_vanilla);
        let critical = drift(1.0, task.clusters, batch_one).critical_lr(m0);
        let phase_one_lr = MAX_LR.min(critical / CRITICAL_MARGIN);
        let recovery = |p: DriftParams| {
            if k < 2 {
                return 0.0; // k* = 1: the signal is first order, no search
            }
            p.recovery_step(m0, 0.5).unwrap_or(f64::INFINITY)
        };
        let t1 = recovery(drift(phase_one_lr, task.clusters, batch_one));
        let t3 = recovery(drift(phase_three_lr, 1, batch_three));
        // Lengths in whole hundreds; an unreachable recovery (infinite) or
        // one beyond any step count stays so, for `Config::check` to refuse.
        let steps = |recoveries: f64, t: f64, floor: u64| -> f64 {
            ((recoveries * t / 100.0).ceil() * 100.0).max(floor as f64)
        };
        let restart_every = steps(RESTART_RECOVERIES, t1, MIN_RESTART_EVERY);
        Budget {
            phase_one_lr,
            restart_every: saturate(restart_every),
            phase_one_steps: saturate(4.0 * restart_every),
            phase_three_lr,
            phase_three_lr_end,
            phase_three_steps: saturate(steps(PHASE_THREE_RECOVERIES, t3, MIN_PHASE_THREE_STEPS)),
            vanilla_lr,
            vanilla_lr_end,
            phase_one_recovery_steps: t1,
            phase_three_recovery_steps: t3,
            noise_floor_per_lr: nu,
        }
    }
}

/// Bytes in the largest binary unit that keeps them above 1 (the budget
/// line's estimated peak memory, `clustermoe::memory`'s messages).
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A step count as u64, `u64::MAX` when beyond it (or infinite).
fn saturate(steps: f64) -> u64 {
    if steps < u64::MAX as f64 {
        steps as u64
    } else {
        u64::MAX
    }
}

/// The budget a run uses: every rate and length after "auto" was resolved
/// (a number set in the configuration wins), the samples per model, and
/// what the laws predicted. `summary.json` holds it as `budget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedBudget {
    /// Phase I's learning rate (`phase_one.lr`).
    pub phase_one_lr: f64,
    /// Phase I's SGD steps (`phase_one.steps`).
    pub phase_one_steps: u64,
    /// Phase-I steps between restarts (`phase_one.restart_every`; 0: none).
    pub restart_every: u64,
    /// Phase II's router steps (`phase_two.steps`).
    pub phase_two_steps: u64,
    /// Phase III's learning rate until its decay starts (`phase_three.lr`).
    pub phase_three_lr: f64,
    /// Phase III's learning rate at the last step (`phase_three.lr_end`).
    pub phase_three_lr_end: f64,
    /// Phase III's SGD steps (`phase_three.steps`).
    pub phase_three_steps: u64,
    /// The vanilla network's learning rate until its decay starts (`vanilla.lr`).
    pub vanilla_lr: f64,
    /// The vanilla network's learning rate at the last step (`vanilla.lr_end`).
    pub vanilla_lr_end: f64,
    /// The vanilla network's SGD steps, so that it draws as many training
    /// samples as the MoE (the last batch partial when needed).
    pub vanilla_steps: u64,
    /// Samples each model sees (training and readout): the same for both.
    pub samples_per_model: u64,
    /// The laws' choice for this task, used wherever a field is "auto".
    pub theory: Budget,
    /// The number of experts M and the probability, by the coverage law,
    /// that phase I finds every cluster ([`crate::capacity::experts_for`];
    /// absent in runs made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<ExpertsChoice>,
    /// The readout samples and each model's features
    /// ([`crate::capacity::readout_plan`]; absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readout: Option<ReadoutChoice>,
    /// The run's estimated peak memory in bytes ((`clustermoe::memory::estimate`);
    /// absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
}

impl ResolvedBudget {
    /// One line for the terminal: what the run uses and why.
    pub fn describe(&self) -> String {
        let experts = self.experts.as_ref().map_or(String::new(), |e| {
            format!(
                "{} experts (P(phase I finds every cluster) = {:.3} with {} restarts); ",
                e.experts, e.p_all_found, e.restart_rounds
            )
        });
        let readout = self.readout.as_ref().map_or(String::new(), |r| {
            format!(
                "; readout {} samples, MoE {} biases in [-{b}, {b}], vanilla {} in [-{v}, {v}] (predicted error {:.3} / {:.3})",
                r.samples,
                r.moe.biases,
                r.vanilla.biases,
                r.moe.predicted_error,
                r.vanilla.predicted_error,
                b = r.moe.bias_max,
                v = r.vanilla.bias_max,
            )
        });
        let memory = self.peak_memory_bytes.map_or(String::new(), |b| {
            format!("; estimated peak memory {}", bytes(b))
        });
        format!(
            "budget: {} samples per model; {experts}phase I lr {:.2e} x {} steps (restarts every {}, \
             predicted recovery {:.0} steps); phase III lr {:.2e} -> {:.2e} x {} steps \
             (noise floor 1-m^2 = {:.1} x lr); vanilla lr {:.2e} -> {:.2e} x {} steps{readout}{memory} \
             [theory: clustermoe::budget, clustermoe::capacity; set a field to override]",
            self.samples_per_model,
            self.phase_one_lr,
            self.phase_one_steps,
            self.restart_every,
            self.theory.phase_one_recovery_steps,
            self.phase_three_lr,
            self.phase_three_lr_end,
            self.phase_three_steps,
            self.theory.noise_floor_per_lr,
            self.vanilla_lr,
            self.vanilla_lr_end,
            self.vanilla_steps,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(d: usize, k: usize) -> TaskShape {
        let mut h = vec![0.0; k + 1];
        h[k] = 1.0;
        TaskShape {
            d,
            clusters: 2,
            k,
            beta: 1.0,
            local: h.clone(),
            global: h,
            noise: 0.1,
        }
    }

    #[test]
    fn the_default_task_keeps_its_tuned_budget() {
        let b = Budget::for_task(&shape(32, 3), Batches::default());
        assert_eq!(b.phase_one_lr, 0.003);
        assert_eq!(b.phase_three_lr, 0.003);
        assert_eq!(b.phase_three_lr_end, 0.0003);
        assert_eq!(b.restart_every, 2000);
        assert_eq!(b.phase_one_steps, 8000);
        assert_eq!(b.phase_three_steps, 24000);
        // The vanilla network's own law: the same plateau rate; its end
        // rate a little lower, as its neurons see both clusters' noise.
        assert_eq!(b.vanilla_lr, 0.003);
        assert!(b.vanilla_lr_end < b.phase_three_lr_end && b.vanilla_lr_end > 0.00025);
    }

    #[test]
    fn every_searching_rate_stays_below_its_critical_rate() {
        use crate::theory::gradient_noise;
        for (d, k) in [(32, 3), (256, 4), (1024, 4), (128, 5)] {
            let task = shape(d, k);
            let b = Budget::for_task(&task, Batches::default());
            let m0 = typical_initial_overlap(d);
            let critical = |clusters: usize| {
                DriftParams {
                    k,
                    beta: 1.0,
                    clusters,
                    lr: 1.0,
                    batch: 64,
                    d,
                    noise_variance: gradient_noise(
                        k,
                        &task.local,
                        &task.global,
                        0.1,
                        clusters,
                        0.0,
                    )
                    .noise_variance(d),
                }
                .critical_lr(m0)
            };
            assert!(
                b.phase_three_lr <= critical(1) / CRITICAL_MARGIN * (1.0 + 1e-12),
                "{b:?}"
            );
            assert!(
                b.vanilla_lr <= critical(2) / CRITICAL_MARGIN * (1.0 + 1e-12),
                "{b:?}"
            );
            assert!(b.phase_three_recovery_steps.is_finite(), "{b:?}");
        }
    }

    #[test]
    fn harder_tasks_get_smaller_rates_and_longer_phases() {
        let base = Budget::for_task(&shape(32, 3), Batches::default());
        for b in [
            Budget::for_task(&shape(32, 4), Batches::default()),
            Budget::for_task(&shape(256, 3), Batches::default()),
        ] {
            assert!(b.phase_three_lr < base.phase_three_lr, "{b:?}");
            assert!(b.phase_three_lr_end < base.phase_three_lr_end, "{b:?}");
            assert!(b.phase_three_steps > base.phase_three_steps, "{b:?}");
            assert!(b.phase_one_steps >= base.phase_one_steps, "{b:?}");
        }
        // A weaker coefficient to learn means a longer search.
        let mut weak = shape(32, 3);
        weak.beta = 0.5;
        assert!(Budget::for_task(&weak, Batches::default()).phase_one_steps > base.phase_one_steps);
    }
}
