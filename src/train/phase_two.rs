//! Phase II: the router learns to send each cluster to its expert.

use super::context::{tick, Run};
use super::{expert_groups, MoeStage, Routing};
use crate::config::ValidConfig;
use crate::error::Result;
use crate::metrics;
use crate::metrics::samples_to::Target;
use crate::model::router::{router_gradient, Router};
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
}

impl PhaseTwoState {
    /// Phase II before its first step: the router at 0 over the routed
    /// experts of `one`.
    pub(super) fn start(cfg: &ValidConfig, one: PhaseOne, init: &Stream) -> Self {
        let (_, k) = expert_groups(cfg, &one.u);
        // Gate noise gets its own stream (a jump ahead of the initialisation's).
        let mut noise = init.clone();
        noise.jump();
        PhaseTwoState {
            step: 0,
            theta: Router::zeros(k, one.u.ncols()).theta,
            one,
            noise,
        }
    }
}

/// Phase II's target is probed every this many steps (and at its last),
/// on the first this many probe samples (purity to 0.2 %): routing them
/// costs about as many steps as they fill batches.
const PHASE_TWO_PROBE_EVERY: u64 = 16;
const PHASE_TWO_PROBE_SAMPLES: usize = 512;

/// Phase II from `state` to its last step: the router ascends
/// E[sum_k pi_k(x) y sigma(<u_k, W(x - mu)>)], where u_k is the direction
/// of the first member of routed expert k.
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
    } = state;
    let (expert_group, k) = expert_groups(cfg, &one.u);
    let leads: Vec<usize> = (0..k)
        .map(|g| {
            expert_group
                .iter()
                .position(|&e| e == Some(g))
                .expect("every group has a lead")
        })
        .collect();
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
        let grad = router_gradient(&router.theta, batch.x.view(), &rewards);
        router.theta.scaled_add(p2.lr as f32, &grad);
        if router.theta.iter().any(|v| !v.is_finite()) {
            return Err(run.diverged(Phase::PhaseTwo, step, "a router weight"));
        }
        let probe_due = step.is_multiple_of(PHASE_TWO_PROBE_EVERY) || step == p2.steps;
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
            }))
        })?;
        tick(run.monitor, ModelKind::Moe, step, p2.steps);
    }
    Ok(PhaseTwoState {
        step: steps,
        one,
        noise,
        theta: router.theta,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::numerics::rng::{stream, StreamId};

    /// Experts on the true directions: the router learns to send cluster c
    /// to expert c (the one on w*_c), nearly as well as the best linear
    /// router (purity 0.998 at rho = 4).
    #[test]
    fn phase_two_sends_each_cluster_to_the_expert_of_its_direction() {
        let (cfg, task) = small_task(|c| c.phase_two.steps = 500);
        let mut journal = no_records;
        let mut run = context(&cfg, &task, &mut journal);
        let routing = Routing::new(&cfg, &task);
        let start = PhaseTwoState::start(&cfg, perfect_phase_one(&task), &run.init);
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
