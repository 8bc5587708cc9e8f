//! Phase II: the router learns to send each cluster to its expert.

use super::context::{tick, Run};
use super::{expert_groups, MoeStage, Routing};
use crate::config::ValidConfig;
use crate::error::Result;
use crate::metrics;
use crate::metrics::samples_to::Target;
use crate::model::router::{router_gradient_into, Router, RouterBuffers};
use crate::model::Activation;
use crate::numerics::linalg::matmul;
use crate::numerics::rng::Stream;
use crate::phase::{ModelKind, Phase};
use crate::task::Batch;
use crate::train::PhaseOne;
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};
/// Phase II after `step` of its steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseTwoState {
    pub step: u64,
    /// What phase I left (frozen from here on).
    pub one: PhaseOne,
    /// The noisy gate's stream.
    pub noise: Stream,
    /// The router's weights Theta, one row per routed expert.
    pub theta: Array2<f32>,
    /// Each phase-I expert's running gain a_m R_m at the end of phase I,
    /// which picks each routed expert's lead (empty in checkpoints written
    /// before it was kept: the first member leads, as then).
    #[serde(default)]
    pub gains: Vec<f64>,
}

impl PhaseTwoState {
    /// Phase II before its first step: the router at 0 over the routed
    /// experts of `one`, whose experts ended phase I with running gains
    /// `gains` (a_m R_m).
    pub(super) fn start(cfg: &ValidConfig, one: PhaseOne, gains: Vec<f64>, init: &Stream) -> Self {
        let (_, k) = expert_groups(cfg, &one.u);
        // Gate noise gets its own stream (a jump ahead of the initialisation's).
        let mut noise = init.clone();
        noise.jump();
        PhaseTwoState {
            step: 0,
            theta: Router::zeros(k, one.u.ncols()).theta,
            one,
            noise,
            gains,
        }
    }
}

/// Phase II's target is probed every this many steps (and at its last),
/// on the first this many probe samples (purity to 0.2 %): routing them
/// costs about as many steps as they fill batches.
const PHASE_TWO_PROBE_EVERY: u64 = 16;
const PHASE_TWO_PROBE_SAMPLES: usize = 512;

/// Each routed expert's lead: the member whose direction stands for the
/// group in phase II's reward, the one with the largest phase-I gain a_m R_m
/// (the first among equals, and the first member where no gains are kept).
/// Pooling is greedy in expert order, so the first member can be one that
/// only half found the group's direction (overlap 0.5 gives 1/8 of the
/// reward of an h_3 link); the router then learns its cluster from an
/// eighth of the signal and loses it to the other experts' noise.
fn group_leads(expert_group: &[Option<usize>], k: usize, gains: &[f64]) -> Vec<usize> {
    let mut leads: Vec<Option<usize>> = vec![None; k];
    for (e, g) in expert_group.iter().enumerate() {
        let Some(g) = *g else { continue };
        let better = match leads[g] {
            None => true,
            Some(l) => gains.len() == expert_group.len() && gains[e] > gains[l],
        };
        if better {
            leads[g] = Some(e);
        }
    }
    leads
        .into_iter()
        .map(|l| l.expect("every group has a member"))
        .collect()
}

/// Phase II from `state` to its last step: the router ascends
/// E[sum_k pi_k(x) y sigma(<u_k, W(x - mu)>)], where u_k is the direction
/// of routed expert k's lead (see [`group_leads`]).
pub(super) fn phase_two(
    run: &mut Run<MoeStage>,
    routing: &Routing,
    state: PhaseTwoState,
) -> Result<PhaseTwoState> {
    let (cfg, task) = (run.cfg, run.task);
    let p2 = &cfg.phase_two;
    let PhaseTwoState {
        step: done,
        one,
        mut noise,
        theta,
        gains,
    } = state;
    let (expert_group, k) = expert_groups(cfg, &one.u);
    let leads = group_leads(&expert_group, k, &gains);
    let lead_u = one.u.select(Axis(0), &leads);
    // An expert with sign a_k gains a_k y sigma(<u_k, x>) from its samples.
    let lead_sign: Array1<f32> = leads.iter().map(|&l| one.signs[l]).collect();
    // <u_k, W (x - mu)> = <W u_k, x> - <W u_k, mu>: the map moves onto the
    // K lead directions once, and the batch stays as drawn.
    let lead_seen = one.map.seen_directions(&lead_u);
    let offset = lead_seen.dot(&one.map.centre);
    let activation = Activation::from_hermite(&cfg.phase_one.activation);
    let mut router = Router { theta };
    let mut batch = Batch::new(p2.batch, task.d);
    let mut rewards = Array2::<f32>::zeros((p2.batch, k));
    let mut buffers = RouterBuffers::default();
    // Phase II's target: purity within the margin of the best linear
    // router, where that is known.
    let target =
        metrics::best_linear_router_purity(task).map(|best| best - cfg.targets.purity_margin);
    if target.is_some() {
        run.watch.begin(Target::PhaseTwo, run.samples);
    }
    let until: &[Target] = if target.is_some() {
        &[Target::PhaseTwo]
    } else {
        &[]
    };
    run.monitor.phase(ModelKind::Moe, Phase::PhaseTwo, p2.steps);
    run.monitor.advance(ModelKind::Moe, done);
    let mut steps = p2.steps;
    for step in done + 1..=p2.steps {
        if run.stop_at(until) {
            steps = step - 1;
            break;
        }
        run.draw(&mut batch);
        matmul(
            &mut rewards.view_mut(),
            &batch.x.view(),
            &lead_seen.t(),
            1.0,
            false,
        );
        for (mut row, &y) in rewards.axis_iter_mut(Axis(0)).zip(&batch.y) {
            for ((t, &o), &a) in row.iter_mut().zip(&offset).zip(&lead_sign) {
                *t = a * y * activation.value(*t - o);
            }
        }
        let grad = router_gradient_into(&router.theta, batch.x.view(), &rewards, &mut buffers);
        router.theta.scaled_add(p2.lr as f32, grad);
        if router.theta.iter().any(|v| !v.is_finite()) {
            return Err(run.diverged(Phase::PhaseTwo, step, "a router weight"));
        }
        // Once reached, a probe would change nothing: skipped.
        let probe_due = (step.is_multiple_of(PHASE_TWO_PROBE_EVERY) || step == p2.steps)
            && run.watch.open(Target::PhaseTwo);
        if let (Some(bar), true) = (target, probe_due) {
            // A copy of the noise stream: probing must not move training's.
            let confusion = routing.confusion_of(
                PHASE_TWO_PROBE_SAMPLES,
                &router,
                task.clusters(),
                &mut noise.clone(),
            );
            let purity = metrics::routing_purity(&confusion);
            run.probe(Phase::PhaseTwo, step, Target::PhaseTwo, purity >= bar)?;
        }
        if run.log_due(step, p2.steps) {
            let cosine = metrics::router_cosines(&router.theta, &task.v);
            let purity =
                metrics::routing_purity(&routing.confusion(&router, task.clusters(), &mut noise));
            run.record(Phase::PhaseTwo, step, |rec| {
                rec.lr = Some(p2.lr);
                rec.router_cosine = Some(cosine);
                rec.routing_purity = Some(purity);
            })?;
        }
        run.save_point(step, || {
            MoeStage::PhaseTwo(Box::new(PhaseTwoState {
                step,
                one: one.clone(),
                noise: noise.clone(),
                theta: router.theta.clone(),
                gains: gains.clone(),
            }))
        })?;
        tick(run.monitor, ModelKind::Moe, step, p2.steps);
    }
    Ok(PhaseTwoState {
        step: steps,
        one,
        noise,
        theta: router.theta,
        gains,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::numerics::rng::{stream, StreamId};

    #[test]
    fn the_member_with_the_largest_gain_leads_its_group() {
        let group = [Some(0), Some(1), Some(0), Some(1), Some(2)];
        let gains = [0.1, 0.5, 0.9, 0.5, 0.0];
        assert_eq!(group_leads(&group, 3, &gains), vec![2, 1, 4]);
        // Without gains (an older checkpoint), the first member leads.
        assert_eq!(group_leads(&group, 3, &[]), vec![0, 1, 4]);
    }

    /// Four clusters, expert 0 half on w*_0 (overlap 0.55, an eighth of the
    /// reward) and pooled with expert 1 on w*_0: led by expert 1, the best
    /// by gain, the router learns cluster 0 as well as the others; led by
    /// expert 0, the first member, its row learns a third as much.
    #[test]
    fn phase_two_learns_a_pooled_cluster_from_its_best_member() {
        let (cfg, task) = small_task(|c| {
            c.task.clusters = 4;
            c.task.signs = vec![1.0, -1.0, 1.0, -1.0];
            c.phase_two.steps = 1000;
        });
        let perfect = perfect_phase_one(&task);
        // A unit direction off every w*_c, for the half-found expert.
        let mut off = Array1::<f32>::zeros(task.d);
        off[0] = 1.0;
        for w in perfect.u.rows() {
            let along = off.dot(&w);
            off.scaled_add(-along, &w);
        }
        off /= off.dot(&off).sqrt();
        let half = &perfect.u.row(0) * 0.55 + &off * (1.0f32 - 0.55 * 0.55).sqrt();
        let mut rows = vec![half.view()];
        rows.extend(perfect.u.rows());
        let one = PhaseOne {
            u: ndarray::stack(Axis(0), &rows).unwrap(),
            signs: vec![1.0; 5],
            ..perfect
        };
        // Each routed expert's learned margin on its cluster, theta_k . v_c.
        let margins = |gains: Vec<f64>| {
            let mut journal = no_records;
            let mut run = context(&cfg, &task, &mut journal);
            let routing = Routing::new(&cfg, &task);
            let start = PhaseTwoState::start(&cfg, one.clone(), gains, &run.init);
            assert_eq!(start.theta.nrows(), 4, "experts 0 and 1 are pooled");
            let end = phase_two(&mut run, &routing, start).unwrap();
            let theta = end.theta.mapv(f64::from);
            (0..4)
                .map(|c| theta.row(c).dot(&task.v.row(c)))
                .collect::<Vec<f64>>()
        };
        let best = margins(vec![0.17, 1.0, 1.0, 1.0, 1.0]);
        let others = best[1..].iter().sum::<f64>() / 3.0;
        assert!(best[0] >= 0.8 * others, "margins {best:?}");
        let first = margins(Vec::new());
        assert!(first[0] < 0.5 * others, "margins {first:?}");
    }

    /// Experts on the true directions: the router learns to send cluster c
    /// to expert c (the one on w*_c), nearly as well as the best linear
    /// router (purity 0.998 at rho = 4).
    #[test]
    fn phase_two_sends_each_cluster_to_the_expert_of_its_direction() {
        let (cfg, task) = small_task(|c| c.phase_two.steps = 500);
        let mut journal = no_records;
        let mut run = context(&cfg, &task, &mut journal);
        let routing = Routing::new(&cfg, &task);
        let start = PhaseTwoState::start(&cfg, perfect_phase_one(&task), vec![1.0; 2], &run.init);
        assert_eq!(start.theta.dim(), (task.clusters(), task.d));
        let mut end = phase_two(&mut run, &routing, start).unwrap();
        assert_eq!(end.step, 500);
        let router = Router { theta: end.theta };
        let test = task.sample(4000, &mut stream(cfg.seed, StreamId::Test));
        let assigned = router.assign(test.x.view(), &routing.rule, &mut end.noise);
        let confusion = metrics::confusion(&test.c, &assigned, task.clusters(), 2);
        let purity = metrics::routing_purity(&confusion);
        assert!(purity >= 0.9, "purity {purity}: {confusion:?}");
        assert_eq!(
            metrics::serving_expert(&confusion),
            vec![0, 1],
            "{confusion:?}"
        );
    }
}
