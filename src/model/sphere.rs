//! One step of spherical online SGD (docs/algorithm.md): the tangent gradient, a
//! step of bounded length, the retraction to the sphere, and each neuron's
//! running correlation, which sets its sign and tells whether it found a
//! direction.

use ndarray::{Array2, ArrayView2};

use super::activation::{loss_gradient, Activation, Loss, NeuronSign, SgdScratch};
use super::times_whitening;
use crate::numerics::kernels::{vectorised, Vectorised};
use crate::numerics::linalg::dot;

/// What a [`SphereStep`] knows of its neurons beside their directions:
/// each one's running correlation R_j = E[y sigma(<w_j, x>)] and its
/// second-layer sign a_j (checkpointed with the directions).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NeuronStats {
    /// R_j, one per neuron.
    pub correlation: Vec<f64>,
    /// a_j (+-1), one per neuron.
    pub signs: Vec<f32>,
}

impl NeuronStats {
    /// `neurons` neurons with correlation 0 and the rule's starting signs.
    pub fn new(rule: NeuronSign, neurons: usize) -> Self {
        let signs = (0..neurons)
            .map(|j| match rule {
                NeuronSign::Alternating if j % 2 == 1 => -1.0,
                NeuronSign::Alternating | NeuronSign::Learned | NeuronSign::Positive => 1.0,
            })
            .collect();
        NeuronStats {
            correlation: vec![0.0; neurons],
            signs,
        }
    }
}

/// Weight of the newest batch in a neuron's running correlation (a time
/// constant of 256 steps: long enough to average the batch noise, short
/// enough to follow a neuron across its escape from the equator).
pub const CORRELATION_RATE: f64 = 1.0 / 256.0;

/// One step of spherical online SGD with its buffers, reused across steps,
/// and each neuron's running correlation R_j = E[y sigma(<w_j, x>)], which
/// sets its sign (when learned) and tells whether it found a direction.
#[derive(Debug)]
pub struct SphereStep {
    activation: Activation,
    loss: Loss,
    rule: NeuronSign,
    stats: NeuronStats,
    scratch: SgdScratch,
    seen: Array2<f32>,
    grad_seen: Array2<f32>,
    max_step: f32,
}

impl SphereStep {
    /// A step for `neurons` neurons, with running correlations starting at 0.
    pub fn new(activation: &[f64], loss: Loss, rule: NeuronSign, neurons: usize) -> Self {
        SphereStep {
            activation: Activation::from_hermite(activation),
            loss,
            rule,
            stats: NeuronStats::new(rule, neurons),
            scratch: SgdScratch::default(),
            seen: Array2::zeros((0, 0)),
            grad_seen: Array2::zeros((0, 0)),
            max_step: f32::INFINITY,
        }
    }

    /// No step turns a neuron by more than `radians` (default: unbounded).
    pub fn with_max_step(mut self, radians: f32) -> Self {
        self.max_step = radians;
        self
    }

    /// The neurons' running correlations and signs.
    pub fn stats(&self) -> &NeuronStats {
        &self.stats
    }

    /// Restores the running correlations and signs of a checkpoint.
    pub fn set_stats(&mut self, stats: NeuronStats) {
        self.stats = stats;
    }

    /// Neuron `j` restarts from a new direction: its correlation goes back
    /// to 0 and, with alternating signs, it tries the other sign.
    pub fn restart(&mut self, j: usize) {
        self.stats.correlation[j] = 0.0;
        match self.rule {
            NeuronSign::Alternating => self.stats.signs[j] = -self.stats.signs[j],
            NeuronSign::Learned => self.stats.signs[j] = 1.0,
            NeuronSign::Positive => {}
        }
    }

    /// Each neuron's second-layer sign a_j.
    pub fn signs(&self) -> &[f32] {
        &self.stats.signs
    }

    /// a_j R_j: how much neuron j's own objective has been gained, about
    /// |beta| m^k once it overlaps a direction by m, about 0 while it is lost.
    pub fn gain(&self, j: usize) -> f64 {
        self.stats.signs[j] as f64 * self.stats.correlation[j]
    }

    /// Moves the rows of `w` one step down the mean loss on centred inputs
    /// `xc` seen through the symmetric whitening `whiten` (W): since
    /// <w, W x> = <W w, x>, the whitening moves onto the N directions
    /// (N d^2 a step) instead of the B inputs (B d^2), and the gradient in
    /// whitened coordinates is the raw one times W. The signs used are those
    /// from before the batch; the running correlations then take it in.
    /// Returns false if a direction became non-finite.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        w: &mut Array2<f32>,
        whiten: Option<&super::Whitening>,
        xc: ArrayView2<f32>,
        y: &[f32],
        weights: Option<&[f32]>,
        lr: f32,
    ) -> bool {
        let w_seen = times_whitening(w, whiten, &mut self.seen);
        let grad = loss_gradient(
            w_seen,
            xc,
            y,
            weights,
            &self.stats.signs,
            &self.activation,
            self.loss,
            &mut self.scratch,
        );
        let grad = times_whitening(grad, whiten, &mut self.grad_seen);
        let finite = spherical_step(w, grad, lr, self.max_step);
        self.observe(weights);
        finite
    }

    /// Folds the batch's mean y sigma(t_j) into the running correlations
    /// (the sums of y sigma(t_j) came with the gradient).
    fn observe(&mut self, weights: Option<&[f32]>) {
        let (n, sums) = (self.scratch.rows, &self.scratch.sums);
        if n == 0 || sums.is_empty() {
            return;
        }
        let total = weights.map_or(n as f64, |ws| ws.iter().map(|&w| w as f64).sum());
        let stats = &mut self.stats;
        for ((r, a), &sum) in stats
            .correlation
            .iter_mut()
            .zip(&mut stats.signs)
            .zip(sums.iter())
        {
            *r += CORRELATION_RATE * (sum / total - *r);
            if self.rule == NeuronSign::Learned {
                *a = if *r < 0.0 { -1.0 } else { 1.0 };
            }
        }
    }

    /// The pre-activations <w_j, W x_i> of the last step, before it moved w.
    #[cfg(test)]
    pub fn pre_activations(&self) -> ArrayView2<'_, f32> {
        self.scratch.pre_activations()
    }
}

/// One spherical SGD step: project each gradient row on the tangent space
/// at its direction, step (a step longer than `max_step` radians is
/// shortened to it), renormalise. Returns false if a direction became
/// non-finite (the caller reports divergence).
pub fn spherical_step(w: &mut Array2<f32>, grad: &Array2<f32>, lr: f32, max_step: f32) -> bool {
    if !w.is_standard_layout() {
        *w = w.as_standard_layout().into_owned();
    }
    let grad = grad.as_standard_layout();
    let d = w.ncols();
    if d == 0 {
        return true;
    }
    vectorised(StepRows {
        w: w.as_slice_mut().expect("standard layout"),
        grad: grad.as_slice().expect("standard layout"),
        d,
        lr,
        max_step,
    })
}

/// [`spherical_step`] on rows of length `d`, a loop that
/// [`vectorised`] compiles for each instruction set (the same operations,
/// so the same bits, on each).
pub(crate) struct StepRows<'a> {
    /// The directions, row-major.
    pub w: &'a mut [f32],
    /// Their gradients, row-major.
    pub grad: &'a [f32],
    /// The length of a row.
    pub d: usize,
    /// The learning rate.
    pub lr: f32,
    /// The longest step, in radians.
    pub max_step: f32,
}

impl Vectorised for StepRows<'_> {
    /// Whether every direction stayed finite.
    type Output = bool;

    #[inline(always)]
    fn run(self) -> bool {
        let StepRows {
            w,
            grad,
            d,
            lr,
            max_step,
        } = self;
        let mut finite = true;
        // Rows as slices: the fixed-order vectorised dot, not ndarray's
        // element-by-element iteration (this step runs on every neuron each step).
        for (row, g) in w.chunks_exact_mut(d).zip(grad.chunks_exact(d)) {
            let radial = dot(row, g);
            // The tangent step turns the row by about lr |g_t| radians; a rare
            // batch whose y sigma'(t) sits far in its tails (degree 2k*-1 in
            // Gaussians) would throw a learned neuron out of its basin.
            let tangent = (dot(g, g) - radial * radial).max(0.0).sqrt();
            let lr = if lr * tangent > max_step {
                max_step / tangent
            } else {
                lr
            };
            for (wi, &gi) in row.iter_mut().zip(g) {
                *wi -= lr * (gi - radial * *wi);
            }
            let norm = dot(row, row).sqrt();
            finite &= norm.is_finite() && norm > 0.0;
            let inverse = 1.0 / norm;
            row.iter_mut().for_each(|wi| *wi *= inverse);
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random_directions;
    use crate::numerics::rng::{stream, StreamId};
    use ndarray::ArrayView1;
    use ndarray::Axis;
    use rand::Rng;
    use rand_distr::StandardNormal;

    #[test]
    fn spherical_step_stays_on_sphere_and_moves_against_the_tangent_gradient() {
        let mut rng = stream(4, StreamId::Test);
        let mut w = random_directions(4, 5, &mut rng);
        let before = w.clone();
        let grad = Array2::<f32>::from_shape_simple_fn((4, 5), || rng.sample(StandardNormal));
        assert!(spherical_step(&mut w, &grad, 0.01, f32::INFINITY));
        for (row, (b, g)) in w
            .axis_iter(Axis(0))
            .zip(before.axis_iter(Axis(0)).zip(grad.axis_iter(Axis(0))))
        {
            assert!((row.dot(&row) - 1.0).abs() < 1e-5);
            let tangent = &g - &(&b * b.dot(&g));
            assert!((&row - &b).dot(&tangent) < 0.0, "the step descends");
        }
        let mut w = before.clone();
        assert!(
            !spherical_step(&mut w, &(grad * f32::INFINITY), 1.0, f32::INFINITY),
            "non-finite steps are reported"
        );
    }

    #[test]
    fn running_correlations_take_in_the_batch_mean_of_y_sigma_for_both_losses() {
        let mut rng = stream(6, StreamId::Test);
        let (n, d, j) = (32, 5, 3);
        let x = Array2::<f32>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
        let y: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let h3 = [0.0, 0.0, 0.0, 1.0];
        for loss in [Loss::Correlation, Loss::Squared] {
            let mut w = random_directions(j, d, &mut rng);
            let mut sgd = SphereStep::new(&h3, loss, NeuronSign::Learned, j);
            assert!(sgd.step(&mut w, None, x.view(), &y, None, 0.01));
            let pre = sgd.pre_activations().to_owned();
            let sigma = Activation::from_hermite(&h3);
            for k in 0..j {
                let mean: f64 = (0..n)
                    .map(|i| (y[i] * sigma.value(pre[[i, k]])) as f64)
                    .sum::<f64>()
                    / n as f64;
                let r = sgd.stats().correlation[k];
                assert!((r - CORRELATION_RATE * mean).abs() < 1e-6, "{loss:?}: {r}");
                assert_eq!(sgd.signs()[k], if r < 0.0 { -1.0 } else { 1.0 });
            }
        }
    }

    #[test]
    fn a_step_turns_each_row_by_at_most_max_step() {
        let mut rng = stream(5, StreamId::Test);
        let before = random_directions(6, 8, &mut rng);
        let grad = Array2::<f32>::from_shape_simple_fn((6, 8), || rng.sample(StandardNormal));
        let angle = |a: ArrayView1<f32>, b: ArrayView1<f32>| a.dot(&b).clamp(-1.0, 1.0).acos();
        for (lr, max_step) in [(10.0f32, 0.05f32), (1e-4, 0.05), (10.0, 0.5)] {
            let mut w = before.clone();
            assert!(spherical_step(&mut w, &grad, lr, max_step));
            let mut free = before.clone();
            spherical_step(&mut free, &grad, lr, f32::INFINITY);
            for j in 0..6 {
                let turned = angle(w.row(j), before.row(j));
                let tangent = &grad.row(j) - &(&before.row(j) * before.row(j).dot(&grad.row(j)));
                let wanted = lr * tangent.dot(&tangent).sqrt();
                if wanted <= max_step {
                    // Short steps are left exactly as they were.
                    assert_eq!(w.row(j), free.row(j));
                } else {
                    // tan(turn) = step length, so the turn is atan(max_step).
                    assert!(
                        (turned - max_step.atan()).abs() < 1e-4,
                        "{turned} vs {max_step}"
                    );
                }
            }
        }
    }
}
