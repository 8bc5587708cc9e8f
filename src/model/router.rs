//! The linear router h(x) = Theta x and its gates (docs/algorithm.md), and the
//! phase-II objective it ascends.

use ndarray::{Array2, ArrayView2, Axis};

use super::gate::{argmax, GateRule};
use crate::numerics::kernels::exp_in_place;
use crate::numerics::linalg::matmul;
use crate::numerics::normal;
use crate::numerics::rng::Stream;

/// Router weights Theta (K x d), one row per routed expert.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Router {
    /// Theta, one row per routed expert (K x d).
    pub theta: Array2<f32>,
}

impl Router {
    /// A router over `experts` experts in dimension `d`, starting at 0.
    pub fn zeros(experts: usize, d: usize) -> Self {
        Router {
            theta: Array2::zeros((experts, d)),
        }
    }

    /// Routed experts K.
    pub fn experts(&self) -> usize {
        self.theta.nrows()
    }

    /// Logits Theta x for each row of `x` (n x K).
    pub fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        x.dot(&self.theta.t())
    }

    /// Gate weights (n x K) of the rule (see [`super::gate`]), 0 off the
    /// kept experts; renormalised rows sum to 1. `rng` drives the noisy
    /// gates.
    pub fn gates(&self, x: ArrayView2<f32>, rule: &GateRule, rng: &mut Stream) -> Array2<f32> {
        let mut g = Array2::zeros((x.nrows(), self.experts()));
        self.gates_into(x, rule, rng, &mut g);
        g
    }

    /// [`Router::gates`] into `g`, reallocated only if its shape differs.
    pub fn gates_into(
        &self,
        x: ArrayView2<f32>,
        rule: &GateRule,
        rng: &mut Stream,
        g: &mut Array2<f32>,
    ) {
        if g.dim() != (x.nrows(), self.experts()) {
            *g = Array2::zeros((x.nrows(), self.experts()));
        }
        matmul(&mut g.view_mut(), &x, &self.theta.t(), 1.0, false);
        let experts = self.experts();
        if experts == 0 {
            return;
        }
        let all = g.as_slice_mut().expect("a new array is contiguous");
        // A noisy kind draws its noise row by row, even at scale 0.
        let (noisy, scale) = (rule.kind.is_noisy(), rule.noise as f32);
        let add_noise = |row: &mut [f32], rng: &mut Stream| {
            if noisy {
                for v in row.iter_mut() {
                    *v += scale * normal::sample(rng);
                }
            }
        };
        let kept = rule.kept(experts);
        if kept == 1 && rule.renormalise {
            // One expert weighing 1, as `GateRule::dense_row` gives it.
            // Every row's winner first, the one-hot rows after: a store of
            // 1.0 at a data-dependent place would make the next row's loads
            // wait for it, one row at a time.
            for block in all.chunks_mut(64 * experts) {
                let mut best = [0usize; 64];
                for (b, row) in best.iter_mut().zip(block.chunks_exact_mut(experts)) {
                    add_noise(row, rng);
                    *b = argmax(row);
                }
                for (&b, row) in best.iter().zip(block.chunks_exact_mut(experts)) {
                    row.fill(0.0);
                    row[b] = 1.0;
                }
            }
            return;
        }
        // The kept experts of a row: on the stack for the usual few.
        let (mut stack, mut heap) = ([0usize; 16], Vec::new());
        let selected = if kept <= stack.len() {
            &mut stack[..kept]
        } else {
            heap.resize(kept, 0);
            &mut heap[..]
        };
        for row in all.chunks_exact_mut(experts) {
            add_noise(row, rng);
            rule.dense_row(row, selected);
        }
    }

    /// The expert with the largest gate for each row.
    pub fn assign(&self, x: ArrayView2<f32>, rule: &GateRule, rng: &mut Stream) -> Vec<usize> {
        self.gates(x, rule, rng)
            .axis_iter(Axis(0))
            .map(|row| argmax(row.as_slice().expect("contiguous gates")))
            .collect()
    }
}

/// Phase-II objective: mean over the batch of sum_m pi_m(x) r_m(x), with
/// pi = softmax(Theta x) and r_m = y sigma(<u_m, x - mu>) the reward of expert m.
pub fn router_objective(theta: &Array2<f32>, x: ArrayView2<f32>, rewards: &Array2<f32>) -> f64 {
    let mut pi = x.dot(&theta.t());
    softmax_rows(&mut pi);
    let mut total = 0.0;
    for (p, r) in pi.axis_iter(Axis(0)).zip(rewards.axis_iter(Axis(0))) {
        total += p.iter().zip(r).map(|(a, b)| (a * b) as f64).sum::<f64>();
    }
    total / x.nrows() as f64
}

/// Gradient of [`router_objective`] with respect to Theta:
/// mean_i pi_im (r_im - sum_k pi_ik r_ik) x_i.
pub fn router_gradient(
    theta: &Array2<f32>,
    x: ArrayView2<f32>,
    rewards: &Array2<f32>,
) -> Array2<f32> {
    let mut buffers = RouterBuffers::default();
    router_gradient_into(theta, x, rewards, &mut buffers);
    buffers.grad
}

/// The buffers of [`router_gradient_into`], kept across phase II's steps.
#[derive(Debug, Default)]
pub struct RouterBuffers {
    coef: Array2<f32>,
    grad: Array2<f32>,
}

/// [`router_gradient`] into reused buffers, with the library's products.
pub fn router_gradient_into<'b>(
    theta: &Array2<f32>,
    x: ArrayView2<f32>,
    rewards: &Array2<f32>,
    buffers: &'b mut RouterBuffers,
) -> &'b Array2<f32> {
    let RouterBuffers { coef, grad } = buffers;
    let (n, k) = (x.nrows(), theta.nrows());
    if coef.dim() != (n, k) {
        *coef = Array2::zeros((n, k));
    }
    if grad.dim() != theta.dim() {
        *grad = Array2::zeros(theta.dim());
    }
    matmul(&mut coef.view_mut(), &x, &theta.t(), 1.0, false);
    softmax_rows(coef);
    let scale = 1.0 / n as f32;
    for (mut p, r) in coef.axis_iter_mut(Axis(0)).zip(rewards.axis_iter(Axis(0))) {
        let p = p.as_slice_mut().expect("contiguous");
        let mean: f32 = p.iter().zip(r).map(|(a, b)| a * b).sum();
        for (pm, &rm) in p.iter_mut().zip(r) {
            *pm *= (rm - mean) * scale;
        }
    }
    matmul(&mut grad.view_mut(), &coef.t(), &x, 1.0, false);
    grad
}

/// softmax of every row of `logits`, in place: each row less its maximum,
/// then one vector exp over the whole block (`kernels::exp_in_place`, the
/// same bits on every CPU; glibc's `expf` one element at a time was most of
/// a phase-II step), then each row over its sum.
fn softmax_rows(logits: &mut Array2<f32>) {
    let k = logits.ncols();
    let all = logits.as_slice_mut().expect("contiguous logits");
    if k == 0 {
        return;
    }
    for row in all.chunks_exact_mut(k) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in row.iter_mut() {
            *v -= max;
        }
    }
    exp_in_place(all);
    for row in all.chunks_exact_mut(k) {
        let sum: f32 = row.iter().sum();
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gate::Gate;
    use crate::numerics::rng::{stream, StreamId};
    use rand::Rng;
    use rand_distr::StandardNormal;

    #[test]
    fn router_gradient_matches_finite_differences() {
        let mut rng = stream(5, StreamId::Test);
        let (n, d, k) = (32, 5, 3);
        let x = Array2::<f32>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
        let rewards = Array2::<f32>::from_shape_simple_fn((n, k), || rng.sample(StandardNormal));
        let theta = Array2::<f32>::from_shape_simple_fn((k, d), || {
            0.5 * rng.sample::<f32, _>(StandardNormal)
        });
        let grad = router_gradient(&theta, x.view(), &rewards);
        let h = 1e-2f32;
        for m in 0..k {
            for j in 0..d {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[[m, j]] += h;
                down[[m, j]] -= h;
                let fd = (router_objective(&up, x.view(), &rewards)
                    - router_objective(&down, x.view(), &rewards))
                    / (2.0 * h as f64);
                assert!(
                    (fd - grad[[m, j]] as f64).abs() < 1e-3,
                    "[{m},{j}]: fd {fd} vs {}",
                    grad[[m, j]]
                );
            }
        }
    }

    #[test]
    fn gates_sum_to_one_and_select_as_documented() {
        let mut rng = stream(6, StreamId::Test);
        let router = Router {
            theta: Array2::from_shape_simple_fn((4, 3), || rng.sample(StandardNormal)),
        };
        let x = Array2::<f32>::from_shape_simple_fn((50, 3), || rng.sample(StandardNormal));
        let logits = router.logits(x.view());
        for kind in [
            Gate::Softmax,
            Gate::Top1,
            Gate::TopK,
            Gate::NoisyTop1,
            Gate::NoisyTopK,
        ] {
            let rule = GateRule {
                kind,
                k: 2,
                noise: 0.5,
                renormalise: true,
            };
            let g = router.gates(x.view(), &rule, &mut rng);
            for (row, l) in g.axis_iter(Axis(0)).zip(logits.axis_iter(Axis(0))) {
                assert!((row.sum() - 1.0).abs() < 1e-5, "{kind:?}");
                let nonzero = row.iter().filter(|&&v| v > 0.0).count();
                let best = argmax(l.as_slice().unwrap());
                match kind {
                    Gate::Softmax => assert_eq!(nonzero, 4),
                    Gate::Top1 => assert_eq!(row[best], 1.0),
                    Gate::TopK => {
                        assert_eq!(nonzero, 2);
                        assert!(row[best] >= 0.5);
                    }
                    Gate::NoisyTop1 => assert_eq!(nonzero, 1),
                    Gate::NoisyTopK => assert_eq!(nonzero, 2),
                }
            }
        }
        // Noise flips some choices, but not most of them at this scale.
        let noisy = router.assign(
            x.view(),
            &GateRule {
                kind: Gate::NoisyTop1,
                k: 1,
                noise: 0.5,
                renormalise: true,
            },
            &mut rng,
        );
        let clean = router.assign(
            x.view(),
            &GateRule {
                kind: Gate::Top1,
                k: 1,
                noise: 0.0,
                renormalise: true,
            },
            &mut rng,
        );
        let same = noisy.iter().zip(&clean).filter(|(a, b)| a == b).count();
        assert!(same > 25 && same < 50, "{same} of 50 unchanged");
    }
}
