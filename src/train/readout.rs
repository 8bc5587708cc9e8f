//! Phase IV: the second layers by ridge regression on fresh samples, one
//! Cholesky solve (faer) of the normal equations of all gated features;
//! for the MoE and the vanilla network alike, on neurons with random biases.

use faer::Mat;
use ndarray::{s, Array1, Array2, Axis};
use rand::Rng;

use crate::numerics::linalg::gram_lower_add;

use super::context::Run;
use super::{expert_groups, MoeStage, PhaseThreeState, Routing};
use crate::capacity::ReadoutPlan;
use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::model::gate::Gate;
use crate::model::Moe;
use crate::model::{FeatureBuffers, TwoLayer};
use crate::numerics::rng::Stream;
use crate::phase::{ModelKind, Phase};
use crate::task::{Batch, Task};

const CHUNK: usize = 4096;

/// Normal equations of a least-squares problem, accumulated chunk by chunk
/// so memory does not grow with the number of samples; the Gram matrix is
/// symmetric, so only its lower triangle is computed.
struct NormalEquations {
    gram: Array2<f64>,
    rhs: Array1<f64>,
    n: usize,
}

impl NormalEquations {
    fn new(p: usize) -> Self {
        NormalEquations {
            gram: Array2::zeros((p, p)),
            rhs: Array1::zeros(p),
            n: 0,
        }
    }

    fn add(&mut self, features: &Array2<f64>, y: &[f32]) {
        gram_lower_add(&mut self.gram.view_mut(), &features.view());
        let y = Array1::from_iter(y.iter().map(|&v| v as f64));
        self.rhs += &features.t().dot(&y);
        self.n += features.nrows();
    }

    /// Solves (G/n + lambda I) a = r/n.
    fn solve(&self, ridge: f64, model: ModelKind) -> Result<Array1<f64>> {
        let p = self.rhs.len();
        if self.n == 0 {
            // An expert that receives no samples keeps a zero readout.
            return Ok(Array1::zeros(p));
        }
        let n = self.n as f64;
        // Only the lower triangle of the Gram matrix is accumulated.
        let a = Mat::<f64>::from_fn(p, p, |i, j| {
            self.gram[[i.max(j), i.min(j)]] / n + if i == j { ridge } else { 0.0 }
        });
        let b = Mat::<f64>::from_fn(p, 1, |i, _| self.rhs[i] / n);
        let x = crate::numerics::linalg::cholesky_solve(a, b).ok_or_else(|| Error::Readout {
            model,
            message: "the ridge system is not positive definite".into(),
        })?;
        let out = Array1::from_shape_fn(p, |i| x[(i, 0)]);
        if out.iter().any(|v| !v.is_finite()) {
            return Err(Error::Readout {
                model,
                message: "the solution is not finite".into(),
            });
        }
        Ok(out)
    }
}

/// Where a readout's samples come from: a function that hands each chunk
/// of them to its argument (fresh task samples, or in tests planted labels).
type Chunks<'a> = &'a mut dyn FnMut(&mut dyn FnMut(&Batch));

/// Fits a single network's readout on `cfg.readout.samples` fresh samples.
pub fn fit_single(
    net: &mut TwoLayer,
    task: &Task,
    cfg: &ValidConfig,
    data: &mut Stream,
) -> Result<()> {
    fit_single_on(net, cfg.readout.ridge, &mut |add| {
        task.for_each_chunk(cfg.readout.samples, CHUNK, data, add)
    })
}

fn fit_single_on(net: &mut TwoLayer, ridge: f64, chunks: Chunks) -> Result<()> {
    let mut eq = NormalEquations::new(net.neurons() + 1);
    let mut buffers = FeatureBuffers::default();
    chunks(&mut |b: &Batch| {
        eq.add(net.features_into(b.x.view(), &mut buffers), &b.y);
    });
    let a = eq.solve(ridge, ModelKind::Vanilla)?;
    let j = net.neurons();
    net.a = a.slice(s![..j]).to_owned();
    net.a0 = a[j];
    Ok(())
}

/// Fits every expert's readout: F(x) = sum_m pi_m(x) (a_m . phi_m(x)) is
/// linear in all a_m together, so one ridge over the gated features. With a
/// hard gate (top-1) that system is block diagonal: one ridge per expert on
/// the samples routed to it, which is what is solved then.
pub fn fit_moe(
    moe: &mut Moe,
    task: &Task,
    cfg: &ValidConfig,
    data: &mut Stream,
    noise: &mut Stream,
) -> Result<()> {
    fit_moe_on(moe, cfg.readout.ridge, noise, &mut |add| {
        task.for_each_chunk(cfg.readout.samples, CHUNK, data, add)
    })
}

fn fit_moe_on(moe: &mut Moe, ridge: f64, noise: &mut Stream, chunks: Chunks) -> Result<()> {
    // A gate that keeps one expert per sample gives block-diagonal equations.
    let hard = match moe.gate.kind {
        Gate::Top1 | Gate::NoisyTop1 => true,
        Gate::Softmax | Gate::TopK | Gate::NoisyTopK => false,
    };
    let widths: Vec<usize> = moe.experts.iter().map(|e| e.neurons() + 1).collect();
    let mut blocks: Vec<NormalEquations> = if hard {
        widths.iter().map(|&w| NormalEquations::new(w)).collect()
    } else {
        vec![NormalEquations::new(widths.iter().sum())]
    };
    let mut buffers: Vec<FeatureBuffers> = moe
        .experts
        .iter()
        .map(|_| FeatureBuffers::default())
        .collect();
    chunks(&mut |b: &Batch| {
        let gates = moe.router.gates(b.x.view(), &moe.gate, noise);
        if hard {
            for (e, (expert, eq)) in moe.experts.iter().zip(blocks.iter_mut()).enumerate() {
                let rows: Vec<usize> = (0..b.len()).filter(|&i| gates[[i, e]] > 0.0).collect();
                let y: Vec<f32> = rows.iter().map(|&i| b.y[i]).collect();
                let x = b.x.select(Axis(0), &rows);
                eq.add(expert.features_into(x.view(), &mut buffers[e]), &y);
            }
        } else {
            let mut phi = Array2::<f64>::zeros((b.len(), widths.iter().sum()));
            let mut start = 0;
            for (e, expert) in moe.experts.iter().enumerate() {
                let mut block = phi.slice_mut(s![.., start..start + widths[e]]);
                block.assign(expert.features_into(b.x.view(), &mut buffers[e]));
                for (mut row, &g) in block.axis_iter_mut(Axis(0)).zip(gates.column(e)) {
                    row *= g as f64;
                }
                start += widths[e];
            }
            blocks[0].add(&phi, &b.y);
        }
    });
    let a: Vec<f64> = blocks
        .iter()
        .map(|eq| eq.solve(ridge, ModelKind::Moe))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut start = 0;
    for expert in moe.experts.iter_mut() {
        let j = expert.neurons();
        expert.a = Array1::from(a[start..start + j].to_vec());
        expert.a0 = a[start + j];
        start += j + 1;
    }
    Ok(())
}

/// Phase IV after phase III's `three`: each routed expert's neurons with
/// random biases, and the readout of the whole mixture.
pub(super) fn phase_four(
    run: &mut Run<MoeStage>,
    routing: &Routing,
    three: PhaseThreeState,
) -> Result<Moe> {
    let (cfg, task) = (run.cfg, run.task);
    let PhaseThreeState {
        one,
        mut noise,
        router,
        centres,
        neurons,
        ..
    } = three;
    let experts: Vec<TwoLayer> = neurons
        .into_iter()
        .zip(centres)
        .map(|(w, centre)| random_bias_network(w, centre, &cfg.readout.moe, &mut run.init))
        .collect();
    let (expert_group, _) = expert_groups(cfg, &one.u);
    let mut moe = Moe {
        phase_one_directions: one.u,
        input_map: one.map,
        expert_group,
        router,
        gate: routing.rule,
        experts,
        phase1_weak_recovery_samples: one.recovery,
        samples: 0,
    };
    run.monitor.phase(ModelKind::Moe, Phase::PhaseFour, 1);
    fit_moe(&mut moe, task, cfg, &mut run.data, &mut noise)?;
    run.samples += cfg.readout.samples as u64;
    run.monitor.advance(ModelKind::Moe, 1);
    moe.samples = run.samples;
    Ok(moe)
}

/// The readout network on learned directions: each direction repeated
/// `plan.biases` times, each copy with its own bias from U[-b_max, b_max].
pub(super) fn random_bias_network(
    w: Array2<f32>,
    centre: Array1<f32>,
    readout: &ReadoutPlan,
    rng: &mut Stream,
) -> TwoLayer {
    let rows: Vec<usize> = (0..w.nrows())
        .flat_map(|j| std::iter::repeat_n(j, readout.biases))
        .collect();
    let w = w.select(Axis(0), &rows);
    let b = readout.bias_max;
    let bias = Array1::from_shape_simple_fn(rows.len(), || {
        if b > 0.0 {
            rng.gen_range(-b..=b) as f32
        } else {
            0.0
        }
    });
    TwoLayer {
        a: Array1::zeros(rows.len()),
        w,
        centre,
        bias,
        a0: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::model::gate::GateRule;
    use crate::model::router::Router;
    use crate::model::{random_directions, InputMap};
    use crate::numerics::rng::{stream, StreamId};
    use rand_distr::StandardNormal;

    /// A fixed network on random directions, centred at `centre`, with
    /// biases in [-3, 3] and a planted second layer.
    fn planted(d: usize, neurons: usize, centre: Array1<f32>, rng: &mut Stream) -> TwoLayer {
        TwoLayer {
            w: random_directions(neurons, d, rng),
            centre,
            bias: Array1::from_shape_simple_fn(neurons, || rng.gen_range(-3.0..=3.0)),
            a: Array1::from_shape_simple_fn(neurons, || rng.sample(StandardNormal)),
            a0: rng.sample(StandardNormal),
        }
    }

    /// The same first layer with the second layer zeroed.
    fn unfitted(net: &TwoLayer) -> TwoLayer {
        TwoLayer {
            a: Array1::zeros(net.neurons()),
            a0: 0.0,
            ..net.clone()
        }
    }

    /// Chunks of task inputs whose labels are `label(x)` instead of the task's.
    fn relabelled<'a>(
        task: &'a Task,
        rng: &'a mut Stream,
        mut label: impl FnMut(&Batch) -> Array1<f64> + 'a,
    ) -> impl FnMut(&mut dyn FnMut(&Batch)) + 'a {
        move |add| {
            task.for_each_chunk(20_000, CHUNK, rng, |b| {
                let mut b = b.clone();
                b.y = label(&b).iter().map(|&v| v as f32).collect();
                add(&b)
            })
        }
    }

    fn assert_recovered(fitted: &TwoLayer, planted: &TwoLayer) {
        let error = (&fitted.a - &planted.a)
            .iter()
            .chain([&(fitted.a0 - planted.a0)])
            .fold(0.0f64, |m, e| m.max(e.abs()));
        assert!(
            error < 1e-3,
            "off by {error}: {} vs {}",
            fitted.a,
            planted.a
        );
    }

    /// Labels from a fixed network with 12 neurons: the ridge recovers its
    /// second layer.
    #[test]
    fn the_readout_recovers_the_second_layer_of_a_fixed_network() {
        let (_, task) = small_task(|_| {});
        let mut rng = stream(5, StreamId::Test);
        let target = planted(task.d, 12, Array1::zeros(task.d), &mut rng);
        let mut net = unfitted(&target);
        let mut chunks = relabelled(&task, &mut rng, |b| target.predict(b.x.view()));
        fit_single_on(&mut net, 1e-9, &mut chunks).unwrap();
        assert_recovered(&net, &target);
    }

    /// Labels from a fixed mixture of two experts, each centred at its
    /// cluster: the readout recovers both second layers, with the hard gate
    /// (one ridge per expert) and with the soft one (one joint ridge).
    #[test]
    fn the_moe_readout_recovers_every_experts_second_layer() {
        let (_, task) = small_task(|_| {});
        let mut rng = stream(6, StreamId::Test);
        for (kind, scale) in [(Gate::Top1, 1.0), (Gate::Softmax, 0.1)] {
            let experts: Vec<TwoLayer> = (0..2)
                .map(|c| {
                    let centre = task.v.row(c).mapv(|v| (v * task.rho) as f32);
                    planted(task.d, 8, centre, &mut rng)
                })
                .collect();
            let target = Moe {
                phase_one_directions: Array2::zeros((2, task.d)),
                input_map: InputMap {
                    centre: Array1::zeros(task.d),
                    whiten: None,
                },
                expert_group: vec![Some(0), Some(1)],
                router: Router {
                    theta: task.v.mapv(|v| (v * task.rho * scale) as f32),
                },
                gate: GateRule {
                    kind,
                    k: 1,
                    noise: 0.0,
                    renormalise: true,
                },
                experts,
                phase1_weak_recovery_samples: vec![None; 2],
                samples: 0,
            };
            let mut moe = target.clone();
            moe.experts = target.experts.iter().map(unfitted).collect();
            let mut noise = stream(7, StreamId::Test);
            let mut label_noise = noise.clone();
            let mut chunks = relabelled(&task, &mut rng, |b| {
                target.predict(b.x.view(), &mut label_noise)
            });
            fit_moe_on(&mut moe, 1e-9, &mut noise, &mut chunks).unwrap();
            for (fitted, planted) in moe.experts.iter().zip(&target.experts) {
                assert_recovered(fitted, planted);
            }
        }
    }

    fn objective(phi: &Array2<f64>, y: &[f32], a: &Array1<f64>, ridge: f64) -> f64 {
        let n = phi.nrows() as f64;
        let r = phi.dot(a) - Array1::from_iter(y.iter().map(|&v| v as f64));
        r.dot(&r) / (2.0 * n) + 0.5 * ridge * a.dot(a)
    }

    #[test]
    fn ridge_solution_zeroes_the_objective_gradient_and_recovers_a_planted_readout() {
        let mut rng = crate::numerics::rng::stream(11, crate::numerics::rng::StreamId::Test);
        let (n, p) = (3000, 6);
        let planted = Array1::from(vec![1.5, -2.0, 0.5, 0.0, 3.0, -1.0]);
        let mut eq = NormalEquations::new(p);
        let mut all_phi = Array2::<f64>::zeros((0, p));
        let mut all_y = Vec::new();
        for _ in 0..3 {
            // Chunks, as the readout accumulates them.
            let phi =
                Array2::<f64>::from_shape_simple_fn((n / 3, p), || rng.sample(StandardNormal));
            let y: Vec<f32> = phi
                .dot(&planted)
                .iter()
                .map(|&v| (v + 0.01 * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect();
            eq.add(&phi, &y);
            all_phi.append(Axis(0), phi.view()).unwrap();
            all_y.extend(y);
        }
        let ridge = 1e-3;
        let a = eq.solve(ridge, ModelKind::Moe).unwrap();
        assert!(
            (&a - &planted).iter().all(|e| e.abs() < 0.01),
            "{a} vs {planted}"
        );
        // Finite differences of the ridge objective vanish at its minimiser.
        for i in 0..p {
            let h = 1e-5;
            let (mut up, mut down) = (a.clone(), a.clone());
            up[i] += h;
            down[i] -= h;
            let g = (objective(&all_phi, &all_y, &up, ridge)
                - objective(&all_phi, &all_y, &down, ridge))
                / (2.0 * h);
            assert!(g.abs() < 1e-6, "gradient {g} at coordinate {i}");
        }
        // An expert that received no samples keeps a zero readout.
        assert_eq!(
            NormalEquations::new(3)
                .solve(ridge, ModelKind::Moe)
                .unwrap(),
            Array1::<f64>::zeros(3)
        );
    }
}
