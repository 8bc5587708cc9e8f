//! Phase I: tied experts find directions, with restarts of stuck and
//! redundant experts; then redundant experts are merged.

use super::context::Run;
use super::MoeStage;
use crate::config::Merge;
use crate::error::Result;
use crate::metrics;
use crate::metrics::samples_to::Target;
use crate::model;
use crate::model::{InputMap, NeuronStats, SphereStep};
use crate::numerics::rng::Stream;
use crate::phase::Phase;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
/// Restarts of phase-I experts, decided without ground truth from each
/// expert's running gain a_m R_m = a_m E[y sigma(<u_m, x>)] (about
/// |beta| m^k* / C once an expert has found a cluster, about 0 while it is
/// stuck), which the SGD step keeps.
struct Restarts {
    merge_threshold: f64,
}

impl Restarts {
    /// An expert has found a direction when its gain is at least this
    /// share of the best expert's: with h_3 links, overlap m gives m^3 of the
    /// full correlation, so 0.1 spares every expert past m = 0.46, which then
    /// recovers on its own, while the running mean's noise (about 0.01)
    /// stays below the bar.
    const FOUND_SHARE: f64 = 0.1;
    /// Below this best gain nobody has found anything yet.
    const NOTHING_FOUND: f64 = 0.02;

    /// Keeps the best expert of every distinct direction among those that
    /// found one; redraws the others orthogonally to the kept directions.
    fn restart(&self, u: &mut Array2<f32>, sgd: &mut SphereStep, rng: &mut Stream) {
        let gain: Vec<f64> = (0..u.nrows()).map(|m| sgd.gain(m)).collect();
        let best = gain.iter().copied().fold(0.0, f64::max);
        if best < Self::NOTHING_FOUND {
            return; // nothing to tell apart
        }
        let mut order: Vec<usize> = (0..u.nrows()).collect();
        order.sort_by(|&a, &b| gain[b].total_cmp(&gain[a]));
        let mut kept: Vec<usize> = Vec::new();
        let mut redraw = Vec::new();
        for m in order {
            let found = gain[m] >= Self::FOUND_SHARE * best;
            let redundant = kept
                .iter()
                .any(|&k| (u.row(m).dot(&u.row(k)) as f64).abs() >= self.merge_threshold);
            if found && !redundant {
                kept.push(m);
            } else {
                redraw.push(m);
            }
        }
        let d = u.ncols();
        for m in redraw {
            let mut g = model::random_directions(1, d, rng).row(0).to_owned();
            for &k in &kept {
                let proj = g.dot(&u.row(k));
                g.scaled_add(-proj, &u.row(k));
            }
            let norm = g.dot(&g).sqrt();
            if norm > 1e-3 {
                u.row_mut(m).assign(&(g / norm));
                sgd.restart(m);
            }
        }
    }
}

/// Redraws at random every untied neuron that is stuck: its gain is below
/// [`Restarts::FOUND_SHARE`] of the best neuron's. A neuron that starts
/// nearly orthogonal to every direction needs a time that grows like
/// m0^-(k*-2) to escape, longer than training at k* = 4 for a few of them;
/// a fresh draw usually starts higher. No ground truth is used.
pub(super) fn restart_stuck(w: &mut Array2<f32>, sgd: &mut SphereStep, rng: &mut Stream) {
    let gain: Vec<f64> = (0..w.nrows()).map(|j| sgd.gain(j)).collect();
    let best = gain.iter().copied().fold(0.0, f64::max);
    if best < Restarts::NOTHING_FOUND {
        return;
    }
    for (j, &g) in gain.iter().enumerate() {
        if g < Restarts::FOUND_SHARE * best {
            let fresh = model::random_directions(1, w.ncols(), rng);
            w.row_mut(j).assign(&fresh.row(0));
            sgd.restart(j);
        }
    }
}

/// Groups experts whose phase-I directions satisfy |<u_m, u_k>| >= threshold
/// (no ground truth used): returns for each expert its routed index, or
/// None when dropped, and the number of routed experts.
pub fn merge_experts(u: &Array2<f32>, merge: Merge, threshold: f64) -> (Vec<Option<usize>>, usize) {
    let m = u.nrows();
    if merge == Merge::None {
        return ((0..m).map(Some).collect(), m);
    }
    let mut leads: Vec<usize> = Vec::new();
    let mut group = vec![None; m];
    for (e, slot) in group.iter_mut().enumerate() {
        // The most similar kept expert, if similar enough.
        let found = leads
            .iter()
            .map(|&l| (u.row(e).dot(&u.row(l)) as f64).abs())
            .enumerate()
            .filter(|&(_, o)| o >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(g, _)| g);
        match found {
            Some(g) => {
                if merge == Merge::Pool {
                    *slot = Some(g);
                }
            }
            None => {
                *slot = Some(leads.len());
                leads.push(e);
            }
        }
    }
    (group, leads.len())
}

/// What phase I leaves: the input map of phases I-II, one direction per
/// expert, and when each cluster was first weakly recovered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseOne {
    pub(super) map: InputMap,
    pub(super) u: Array2<f32>,
    /// Each expert's second-layer sign a_m at the end of phase I.
    pub(super) signs: Vec<f32>,
    pub(super) recovery: Vec<Option<u64>>,
}

/// Phase I after `step` of its steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseOneState {
    pub step: u64,
    /// The experts so far (`signs` as of `step`).
    pub one: PhaseOne,
    /// The experts' running correlations and signs.
    pub neurons: NeuronStats,
}

impl PhaseOneState {
    /// Phase I before its first step: the global input map from fresh
    /// samples, and a random direction per expert.
    pub(super) fn start(run: &mut Run<MoeStage>) -> Self {
        let (cfg, task) = (run.cfg, run.task);
        let p1 = &cfg.phase_one;
        let map = run.input_map(p1.centre_samples, cfg.moe.whiten);
        let u = model::random_directions(cfg.experts(), task.d, &mut run.init);
        PhaseOneState {
            step: 0,
            one: PhaseOne {
                map,
                u,
                signs: Vec::new(),
                recovery: vec![None; task.clusters()],
            },
            neurons: NeuronStats::new(p1.sign, cfg.experts()),
        }
    }
}

/// Phase I from `state` to its last step: one tied direction per expert,
/// every sample to every expert, with restarts of stuck and redundant
/// experts.
pub(super) fn phase_one(run: &mut Run<MoeStage>, state: PhaseOneState) -> Result<PhaseOneState> {
    let (cfg, task) = (run.cfg, run.task);
    let p1 = &cfg.phase_one;
    let threshold = cfg.metrics.recovery_threshold;
    let restarts = Restarts {
        merge_threshold: cfg.moe.merge_threshold,
    };
    let PhaseOneState {
        step: done,
        one:
            PhaseOne {
                map,
                mut u,
                mut recovery,
                ..
            },
        neurons,
    } = state;
    let targets = [
        (Target::PhaseOneWeak, threshold),
        (Target::PhaseOneStrong, cfg.targets.learned_overlap),
    ];
    for (target, _) in targets {
        run.watch.begin(target, run.samples);
    }
    let (sgd, steps) = run.sphere_sgd(
        Phase::PhaseOne,
        p1,
        p1.steps * p1.batch as u64,
        (done, &[Target::PhaseOneStrong]),
        &mut u,
        neurons,
        &map,
        |run, step, u, lr, _, sgd| {
            let every = cfg.restart_every;
            if every > 0 && step.is_multiple_of(every) && step + every <= p1.steps {
                restarts.restart(u, sgd, &mut run.init);
            }
            // Every step until all are reached: M C overlaps, a small
            // part of the step's 2 B d M.
            let open = targets.iter().any(|&(t, _)| run.watch.open(t));
            if open || step == p1.steps || recovery.iter().any(Option::is_none) {
                let best: Vec<f64> = (0..task.clusters())
                    .map(|c| metrics::best_overlap(u.view(), task.w.row(c)))
                    .collect();
                for (r, &o) in recovery.iter_mut().zip(&best) {
                    if r.is_none() && o >= threshold {
                        *r = Some(run.samples);
                    }
                }
                if open || step == p1.steps {
                    let worst = best.iter().copied().fold(f64::INFINITY, f64::min);
                    for (target, bar) in targets {
                        run.probe(Phase::PhaseOne, step, target, worst >= bar)?;
                    }
                }
            }
            if run.log_due(step, p1.steps) {
                run.record(Phase::PhaseOne, step, |rec| {
                    rec.lr = Some(lr);
                    rec.expert_local_overlap =
                        Some(metrics::overlap_matrix(u.view(), task.w.view()));
                    rec.expert_global_overlap = Some(metrics::overlaps(u.view(), task.wg.view()));
                    rec.expert_centre_overlap =
                        Some(metrics::overlap_matrix(u.view(), task.v.view()));
                })?;
            }
            run.save_point(step, || {
                MoeStage::PhaseOne(Box::new(PhaseOneState {
                    step,
                    one: PhaseOne {
                        map: map.clone(),
                        u: u.clone(),
                        signs: sgd.signs().to_vec(),
                        recovery: recovery.clone(),
                    },
                    neurons: sgd.stats().clone(),
                }))
            })
        },
    )?;
    Ok(PhaseOneState {
        step: steps,
        one: PhaseOne {
            map,
            u,
            signs: sgd.signs().to_vec(),
            recovery,
        },
        neurons: sgd.stats().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// With sum_c s_c = 0 the global term cancels: each expert can only
    /// find a local direction, and with 8 experts (and restarts) each of
    /// the two clusters gets one.
    #[test]
    fn phase_one_finds_each_clusters_direction_and_not_the_global_one() {
        let steps = 2000;
        let (cfg, task) = small_task(|c| c.phase_one.steps = steps.into());
        let mut journal = no_records;
        let mut run = context(&cfg, &task, &mut journal);
        let start = PhaseOneState::start(&mut run);
        let before = local_overlaps(&task, &start.one.u);
        let end = phase_one(&mut run, start).unwrap();
        let after = local_overlaps(&task, &end.one.u);
        assert!(after.iter().all(|&o| o >= 0.9), "{before:?} -> {after:?}");
        let global = metrics::best_overlap(end.one.u.view(), task.wg.view());
        assert!(global < 0.5, "an expert found w*_g: {global}");
        assert!(end.one.recovery.iter().all(Option::is_some));
        assert_eq!(end.step, steps);
        assert_eq!(end.one.signs.len(), cfg.experts());
    }

    #[test]
    fn merging_groups_experts_by_direction() {
        let u = ndarray::array![
            [1.0f32, 0.0],
            [0.0, 1.0],
            [0.8, 0.6],
            [-0.6, 0.8],
            [0.0, -1.0]
        ];
        assert_eq!(
            merge_experts(&u, Merge::Pool, 0.5),
            (vec![Some(0), Some(1), Some(0), Some(1), Some(1)], 2)
        );
        assert_eq!(
            merge_experts(&u, Merge::Drop, 0.5),
            (vec![Some(0), Some(1), None, None, None], 2)
        );
        assert_eq!(merge_experts(&u, Merge::None, 0.5).1, 5);
        assert_eq!(merge_experts(&u, Merge::Pool, 0.9).1, 4);
    }
}
