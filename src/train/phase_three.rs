//! Phase III: each routed expert's neurons learn the directions of its
//! cluster, on the samples the router sends it; and how the neurons are
//! shared among the experts.

use super::context::{tick, Prefetch, Run};
use super::phase_one::PhaseOne;
use super::phase_two::PhaseTwoState;
use super::{
    expert_groups, fill_cluster_overlaps, overlap_probe_due, probe_overlaps, MoeStage, Routing,
};
use crate::config::Allocation;
use crate::error::Result;
use crate::metrics;
use crate::metrics::samples_to::Target;
use crate::model;
use crate::model::gate::GateRule;
use crate::model::router::Router;
use crate::model::{NeuronStats, SphereStep};
use crate::numerics::rng::Stream;
use crate::phase::{ModelKind, Phase};
use crate::task::Batch;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
/// Phase III after `step` of its steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseThreeState {
    pub step: u64,
    /// What phase I left.
    pub one: PhaseOne,
    /// The noisy gate's stream.
    pub noise: Stream,
    /// The router phase II learned (frozen from here on).
    pub router: Router,
    /// Each routed expert's input centre.
    pub centres: Vec<Array1<f32>>,
    /// Each routed expert's neurons (rows).
    pub neurons: Vec<Array2<f32>>,
    /// Running correlation and sign of every neuron, per routed expert.
    pub stats: Vec<NeuronStats>,
    /// Per cluster, the routed expert that serves most of it (for the records).
    pub serving: Vec<usize>,
    /// Routing purity on the probe samples (for the records).
    pub purity: f64,
}

impl PhaseThreeState {
    /// Phase III before its first step, after phase II's `two`: the
    /// router it learned, per-expert centres from fresh routed samples,
    /// and fresh neurons shared among the experts as configured.
    pub(super) fn start(run: &mut Run<MoeStage>, routing: &Routing, two: PhaseTwoState) -> Self {
        let (cfg, task) = (run.cfg, run.task);
        let p3 = &cfg.phase_three;
        let PhaseTwoState {
            one,
            mut noise,
            theta,
            ..
        } = two;
        let router = Router { theta };
        let (expert_group, k) = expert_groups(cfg, &one.u);
        let (centres, load) = routed_centres(
            run,
            &router,
            &routing.rule,
            &mut noise,
            p3.centre_samples,
            &one.map.centre,
        );
        let sizes = match cfg.moe.allocation {
            Allocation::PerExpert => (0..k)
                .map(|g| cfg.moe.neurons * expert_group.iter().filter(|&&e| e == Some(g)).count())
                .collect(),
            Allocation::ByLoad => allocate_by_load(cfg.experts() * cfg.moe.neurons, &load),
        };
        let neurons: Vec<Array2<f32>> = sizes
            .iter()
            .map(|&j| model::random_directions(j, task.d, &mut run.init))
            .collect();
        let confusion = routing.confusion(&router, task.clusters(), &mut noise);
        let stats = neurons
            .iter()
            .map(|w| NeuronStats::new(p3.sign, w.nrows()))
            .collect();
        PhaseThreeState {
            step: 0,
            one,
            noise,
            router,
            centres,
            neurons,
            stats,
            serving: metrics::serving_expert(&confusion),
            purity: metrics::routing_purity(&confusion),
        }
    }
}

/// Per routed expert, the gate-weighted mean of `n` fresh routed inputs and
/// the total gate weight it received (its load); an expert that receives
/// nothing keeps `fallback` as its centre.
fn routed_centres(
    run: &mut Run<MoeStage>,
    router: &Router,
    rule: &GateRule,
    noise: &mut Stream,
    n: usize,
    fallback: &Array1<f32>,
) -> (Vec<Array1<f32>>, Vec<f64>) {
    let k = router.experts();
    let mut sum = Array2::<f64>::zeros((k, run.task.d));
    let mut load = vec![0.0f64; k];
    run.task.for_each_chunk(n, 4096, &mut run.data, |b| {
        let gates = router.gates(b.x.view(), rule, noise);
        for (row, g) in b.x.axis_iter(Axis(0)).zip(gates.axis_iter(Axis(0))) {
            for (e, &ge) in g.iter().enumerate().filter(|(_, &ge)| ge > 0.0) {
                load[e] += ge as f64;
                sum.row_mut(e)
                    .zip_mut_with(&row, |s, &v| *s += ge as f64 * v as f64);
            }
        }
    });
    run.samples += n as u64;
    let centres = (0..k)
        .map(|e| {
            if load[e] > 0.0 {
                sum.row(e).mapv(|s| (s / load[e]) as f32)
            } else {
                fallback.clone()
            }
        })
        .collect();
    (centres, load)
}

/// The samples of a batch routed to one expert, centred at the expert's
/// centre, with their gate weights; reused across steps and experts.
#[derive(Debug, Default)]
pub struct Routed {
    x: Vec<f32>,
    pub y: Vec<f32>,
    pub weights: Vec<f32>,
}

impl Routed {
    /// The gathered inputs (rows x d).
    pub fn x(&self, d: usize) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.y.len(), d), &self.x).expect("gathered rows")
    }

    /// Gathers the rows with a positive gate; returns how many.
    pub fn gather(&mut self, batch: &Batch, gate: ArrayView1<f32>, centre: &Array1<f32>) -> usize {
        self.x.clear();
        self.y.clear();
        self.weights.clear();
        let centre = centre.as_slice().expect("contiguous centre");
        for ((row, &y), &g) in batch.x.rows().into_iter().zip(&batch.y).zip(gate) {
            if g > 0.0 {
                let row = row.to_slice().expect("contiguous batch rows");
                self.x.extend(row.iter().zip(centre).map(|(&v, &c)| v - c));
                self.y.push(y);
                self.weights.push(g);
            }
        }
        self.y.len()
    }
}

/// Phase III from `state` to its last step: spherical SGD of each routed
/// expert's neurons on the samples routed to it, centred at its centre.
pub(super) fn phase_three(
    run: &mut Run<MoeStage>,
    routing: &Routing,
    state: PhaseThreeState,
) -> Result<PhaseThreeState> {
    let (cfg, task) = (run.cfg, run.task);
    let p3 = &cfg.phase_three;
    let PhaseThreeState {
        step: done,
        one,
        mut noise,
        router,
        centres,
        mut neurons,
        stats,
        serving,
        purity,
    } = state;
    let k = router.experts();
    let mut sgd: Vec<SphereStep> = neurons
        .iter()
        .zip(stats)
        .map(|(w, stats)| {
            let mut sgd = SphereStep::new(&p3.activation, p3.loss, p3.sign, w.nrows())
                .with_max_step(p3.max_step);
            sgd.set_stats(stats);
            sgd
        })
        .collect();
    let mut batches = Prefetch::new(task, p3.batch, None);
    let mut gates = Array2::zeros((p3.batch, k));
    let mut routed: Vec<Routed> = (0..k).map(|_| Routed::default()).collect();
    // The experts step in parallel when their work is large enough to pay
    // for it (d = 256 and up with the default 64 neurons); each one's step
    // is the same computation either way.
    let total_neurons: usize = neurons.iter().map(|w| w.nrows()).sum();
    let parallel = p3.batch * task.d * total_neurons >= PARALLEL_EXPERTS_WORK;
    for target in [Target::PhaseThree, Target::Weak, Target::Strong] {
        run.watch.begin(target, run.samples);
    }
    run.monitor
        .phase(ModelKind::Moe, Phase::PhaseThree, p3.steps);
    run.monitor.advance(ModelKind::Moe, done);
    let mut steps = p3.steps;
    for step in done + 1..=p3.steps {
        if run.stop_at(&[Target::PhaseThree]) {
            steps = step - 1;
            break;
        }
        batches.next(run, p3.batch);
        router.gates_into(
            batches.current().x.view(),
            &routing.rule,
            &mut noise,
            &mut gates,
        );
        let lr = p3.schedule.at(step - 1, p3.steps) as f32;
        let experts = Experts {
            neurons: &mut neurons,
            sgd: &mut sgd,
            routed: &mut routed,
            centres: &centres,
        };
        let next = (step < p3.steps).then_some(p3.batch);
        let moved = batches.step_and_prefetch(&run.data, next, |batch| {
            experts.step(batch, &gates, lr, parallel)
        });
        if !moved {
            return Err(run.diverged(Phase::PhaseThree, step, "a first-layer weight"));
        }
        let serving_neurons = |c: usize| neurons[serving[c]].view();
        let also = [Target::PhaseThree];
        if overlap_probe_due(step, p3.steps) {
            probe_overlaps(run, Phase::PhaseThree, step, &serving_neurons, &also)?;
        }
        if run.log_due(step, p3.steps) {
            let serving_neurons: Vec<&Array2<f32>> = serving.iter().map(|&e| &neurons[e]).collect();
            run.record(Phase::PhaseThree, step, |rec| {
                rec.lr = Some(lr as f64);
                rec.routing_purity = Some(purity);
                fill_cluster_overlaps(rec, task, &serving_neurons, cfg.metrics.recovery_threshold);
            })?;
        }
        run.save_point(step, || {
            MoeStage::PhaseThree(Box::new(PhaseThreeState {
                step,
                one: one.clone(),
                noise: noise.clone(),
                router: router.clone(),
                centres: centres.clone(),
                neurons: neurons.clone(),
                stats: sgd.iter().map(|s| s.stats().clone()).collect(),
                serving: serving.clone(),
                purity,
            }))
        })?;
        tick(run.monitor, ModelKind::Moe, step, p3.steps);
    }
    Ok(PhaseThreeState {
        step: steps,
        one,
        noise,
        router,
        centres,
        neurons,
        stats: sgd.iter().map(|s| s.stats().clone()).collect(),
        serving,
        purity,
    })
}

/// The routed experts during a step: each one's neurons, SGD state, buffer
/// of routed samples and input centre.
struct Experts<'a> {
    neurons: &'a mut [Array2<f32>],
    sgd: &'a mut [SphereStep],
    routed: &'a mut [Routed],
    centres: &'a [Array1<f32>],
}

impl Experts<'_> {
    /// One SGD step of every expert on the samples of `batch` routed to it
    /// (weighted by `gates`); false if an expert diverged.
    fn step(self, batch: &Batch, gates: &Array2<f32>, lr: f32, parallel: bool) -> bool {
        let d = batch.x.ncols();
        let centres = self.centres;
        // The batch and its gates are drawn before, in order; each expert's
        // step reads them and changes only its own neurons and statistics.
        let expert_step = |(e, ((w, sgd), routed)): (
            usize,
            ((&mut Array2<f32>, &mut SphereStep), &mut Routed),
        )| {
            // An expert without neurons has nothing to gather for.
            if w.nrows() == 0 || routed.gather(batch, gates.column(e), &centres[e]) == 0 {
                return true;
            }
            let hard = routed.weights.iter().all(|&g| g == 1.0);
            sgd.step(
                w,
                None,
                routed.x(d),
                &routed.y,
                (!hard).then_some(&routed.weights[..]),
                lr,
            )
        };
        // `all` stops at a diverged expert: the run ends with an error then.
        if parallel {
            use rayon::prelude::*;
            let experts = self.neurons.par_iter_mut().zip(self.sgd.par_iter_mut());
            experts
                .zip(self.routed.par_iter_mut())
                .enumerate()
                .all(expert_step)
        } else {
            let experts = self.neurons.iter_mut().zip(self.sgd.iter_mut());
            experts
                .zip(self.routed.iter_mut())
                .enumerate()
                .all(expert_step)
        }
    }
}

/// Phase III's experts step in parallel when batch x d x neurons (all the
/// experts' together) reaches this: d = 256 with the default 64 neurons.
const PARALLEL_EXPERTS_WORK: usize = 1 << 20;

/// Splits `total` neurons in proportion to `load` by largest remainders, so
/// the counts add up to `total` exactly.
pub fn allocate_by_load(total: usize, load: &[f64]) -> Vec<usize> {
    let sum: f64 = load.iter().sum();
    if sum <= 0.0 {
        let mut out = vec![0; load.len()];
        out[0] = total;
        return out;
    }
    let exact: Vec<f64> = load.iter().map(|&l| total as f64 * l / sum).collect();
    let mut out: Vec<usize> = exact.iter().map(|&e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..load.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = total - out.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// The router sends cluster c to expert c (Theta = rho V): inside its
    /// cluster an expert sees f*_c(<w*_c, x>) + s_c g*(<w*_g, x>), so its
    /// neurons find w*_c and w*_g, and never the other cluster's w*.
    #[test]
    fn phase_three_given_true_routing_learns_the_local_and_global_directions() {
        let steps = 3000;
        let (cfg, task) = small_task(|c| {
            c.moe.experts = 2.into();
            c.moe.neurons = 8;
            c.phase_three.steps = steps.into();
        });
        let mut journal = no_records;
        let mut run = context(&cfg, &task, &mut journal);
        let routing = Routing::new(&cfg, &task);
        let mut noise = run.init.clone();
        noise.jump();
        let two = PhaseTwoState {
            step: cfg.phase_two.steps,
            one: perfect_phase_one(&task),
            noise,
            theta: task.v.mapv(|v| (v * task.rho) as f32),
            gains: Vec::new(),
        };
        let start = PhaseThreeState::start(&mut run, &routing, two);
        assert!(start.purity >= 0.99, "purity {}", start.purity);
        assert_eq!(start.serving, vec![0, 1]);
        let sizes: Vec<usize> = start.neurons.iter().map(|w| w.nrows()).collect();
        assert!(
            sizes.iter().all(|&j| j >= 6),
            "neurons per expert {sizes:?}"
        );
        let end = phase_three(&mut run, &routing, start).unwrap();
        assert_eq!(end.step, steps);
        for (c, w) in end.neurons.iter().enumerate() {
            let local = metrics::best_overlap(w.view(), task.w.row(c));
            let global = metrics::best_overlap(w.view(), task.wg.view());
            let other = metrics::best_overlap(w.view(), task.w.row(1 - c));
            assert!(
                local >= 0.9 && global >= 0.9 && other < 0.5,
                "expert {c}: w*_c {local}, w*_g {global}, other w* {other}"
            );
        }
    }

    #[test]
    fn allocation_by_load_is_proportional_and_exact() {
        assert_eq!(allocate_by_load(64, &[100.0, 0.0, 100.0]), vec![32, 0, 32]);
        assert_eq!(allocate_by_load(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(allocate_by_load(7, &[0.0, 0.0]), vec![7, 0]);
        let a = allocate_by_load(100, &[0.3, 0.5, 0.2, 1e-9]);
        assert_eq!(a.iter().sum::<usize>(), 100);
        assert_eq!(a, vec![30, 50, 20, 0]);
    }
}
