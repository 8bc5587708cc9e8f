//! Two-layer networks (SPEC §3): first-layer directions on the unit sphere,
//! an input centre, random biases and a linear readout; and the Hermite
//! activations used while the directions learn.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis};

use crate::numerics::hermite::hermite_to_monomial;
use crate::numerics::linalg::{dot, matmul};
use crate::numerics::normal;
use crate::numerics::rng::Stream;

pub mod router;
use router::{GateRule, Router};

/// A polynomial activation sigma given by normalised Hermite coefficients,
/// evaluated through its monomial form (Horner) because that is what the
/// training loop does millions of times.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    monomial: Vec<f32>,
    derivative: Vec<f32>,
}

impl Activation {
    pub fn from_hermite(coefficients: &[f64]) -> Self {
        let mono = hermite_to_monomial(coefficients);
        let derivative: Vec<f32> = mono
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &a)| (i as f64 * a) as f32)
            .collect();
        Activation {
            monomial: mono.iter().map(|&a| a as f32).collect(),
            derivative: if derivative.is_empty() {
                vec![0.0]
            } else {
                derivative
            },
        }
    }

    /// Horner's rule over a whole slice; the loop over elements is innermost
    /// so it vectorises.
    fn horner_slice(coefficients: &[f32], t: &[f32], out: &mut [f32]) {
        let (last, rest) = coefficients.split_last().expect("non-empty coefficients");
        out.fill(*last);
        for &a in rest.iter().rev() {
            for (o, &ti) in out.iter_mut().zip(t) {
                *o = *o * ti + a;
            }
        }
    }

    fn horner(coefficients: &[f32], t: f32) -> f32 {
        coefficients.iter().rev().fold(0.0, |acc, &a| acc * t + a)
    }

    pub fn value(&self, t: f32) -> f32 {
        Self::horner(&self.monomial, t)
    }

    pub fn slope(&self, t: f32) -> f32 {
        Self::horner(&self.derivative, t)
    }

    /// `out[i j] = scale_i * d loss / d t` at the pre-activations `t` (rows
    /// of `j` neurons, one per sample `i` with label `y[i]`), each neuron
    /// with its second-layer sign `signs[j]`; `tmp` is scratch of the same
    /// length. The polynomial runs over the whole block at once: one long
    /// vectorised loop, not one short one per sample.
    #[allow(clippy::too_many_arguments)]
    fn loss_slopes(
        &self,
        loss: Loss,
        y: &[f32],
        scale: impl Fn(usize) -> f32,
        signs: &[f32],
        t: &[f32],
        out: &mut [f32],
        tmp: &mut [f32],
    ) {
        let j = signs.len();
        if j == 0 {
            return;
        }
        Self::horner_slice(&self.derivative, t, out);
        let rows = out.chunks_exact_mut(j).enumerate();
        match loss {
            Loss::Correlation => {
                for (i, row) in rows {
                    let factor = -y[i] * scale(i);
                    for (o, &a) in row.iter_mut().zip(signs) {
                        *o *= factor * a;
                    }
                }
            }
            Loss::Squared => {
                // (y - a sigma)^2 / 2 with a = +-1 has slope -(a y - sigma) sigma'.
                Self::horner_slice(&self.monomial, t, tmp);
                for ((i, row), values) in rows.zip(tmp.chunks_exact(j)) {
                    let (yi, si) = (y[i], scale(i));
                    for ((o, &v), &a) in row.iter_mut().zip(values).zip(signs) {
                        *o *= -(a * yi - v) * si;
                    }
                }
            }
        }
    }

    /// The loss of one neuron with second-layer sign `sign` (+-1), for
    /// gradient checks and logs.
    pub fn loss(&self, loss: Loss, sign: f32, y: f32, t: f32) -> f32 {
        match loss {
            Loss::Correlation => -sign * y * self.value(t),
            Loss::Squared => 0.5 * (y - sign * self.value(t)).powi(2),
        }
    }
}

/// The input map x -> W (x - mu) of phases I and II: a centre and an
/// optional symmetric whitening matrix W = Sigma^(-1/2).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct InputMap {
    pub centre: Array1<f32>,
    pub whiten: Option<Array2<f32>>,
}

impl InputMap {
    /// Estimates the centre (and, if `whiten`, Sigma^(-1/2)) from samples.
    pub fn estimate(x: ArrayView2<f32>, whiten: bool) -> Self {
        let n = x.nrows() as f64;
        let x64 = x.mapv(|v| v as f64);
        let mean = x64.sum_axis(Axis(0)) / n;
        let centre = mean.mapv(|v| v as f32);
        if !whiten {
            return InputMap {
                centre,
                whiten: None,
            };
        }
        let xc = &x64 - &mean;
        let cov = xc.t().dot(&xc) / n;
        let d = cov.nrows();
        let eig = faer::Mat::<f64>::from_fn(d, d, |i, j| cov[[i, j]])
            .self_adjoint_eigen(faer::Side::Lower)
            .ok();
        let whiten = eig.map(|eig| {
            let (u, s) = (eig.U(), eig.S().column_vector());
            // Eigenvalues below a floor (fewer samples than d) are not inverted.
            let scale: Vec<f64> = (0..d).map(|k| 1.0 / s[k].max(1e-3).sqrt()).collect();
            Array2::from_shape_fn((d, d), |(i, j)| {
                (0..d)
                    .map(|k| u[(i, k)] * scale[k] * u[(j, k)])
                    .sum::<f64>() as f32
            })
        });
        InputMap { centre, whiten }
    }

    /// Directions `u` (rows) as centred raw inputs see them: rows of u W,
    /// since <u, W (x - mu)> = <W u, x - mu> for the symmetric W.
    pub fn seen_directions(&self, u: &Array2<f32>) -> Array2<f32> {
        let mut out = Array2::zeros((0, 0));
        times_whitening(u, self.whiten.as_ref(), &mut out).clone()
    }
}

/// `n` directions uniform on the unit sphere of R^d (rows).
pub fn random_directions(n: usize, d: usize, rng: &mut Stream) -> Array2<f32> {
    let mut w = Array2::<f32>::zeros((n, d));
    normal::fill(rng, w.as_slice_mut().expect("a new array is contiguous"));
    for mut row in w.rows_mut() {
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
    w
}

/// Scratch buffers of one spherical SGD step, kept across steps so the
/// training loop does not allocate (phase III's routed batches change size
/// every step, so the buffers are flat vectors viewed at the current size).
#[derive(Debug, Default)]
pub struct SgdScratch {
    pre: Vec<f32>,
    coef: Vec<f32>,
    tmp: Vec<f32>,
    grad: Array2<f32>,
    rows: usize,
}

impl SgdScratch {
    /// The pre-activations <w_j, x_i> of the last [`loss_gradient`] call (n x J).
    pub fn pre_activations(&self) -> ArrayView2<'_, f32> {
        let j = self.grad.nrows();
        ArrayView2::from_shape((self.rows, j), &self.pre[..self.rows * j])
            .expect("scratch sized by loss_gradient")
    }
}

/// The mean loss gradient with respect to every row of `w` on the centred
/// inputs `xc`, with optional per-sample weights and each neuron's
/// second-layer sign `signs[j]` (+-1). Rows of the result are Euclidean
/// gradients (not yet projected on the sphere).
#[allow(clippy::too_many_arguments)]
pub fn loss_gradient<'a>(
    w: &Array2<f32>,
    xc: ArrayView2<f32>,
    y: &[f32],
    weights: Option<&[f32]>,
    signs: &[f32],
    activation: &Activation,
    loss: Loss,
    scratch: &'a mut SgdScratch,
) -> &'a Array2<f32> {
    let (n, j) = (xc.nrows(), w.nrows());
    assert_eq!(signs.len(), j, "one sign per neuron");
    for buffer in [&mut scratch.pre, &mut scratch.coef, &mut scratch.tmp] {
        if buffer.len() < n * j {
            buffer.resize(n * j, 0.0);
        }
    }
    if scratch.grad.dim() != w.dim() {
        scratch.grad = Array2::zeros(w.dim());
    }
    scratch.rows = n;
    let mut pre = ArrayViewMut2::from_shape((n, j), &mut scratch.pre[..n * j]).expect("sized");
    matmul(&mut pre, &xc, &w.t(), 1.0, false);
    let total: f32 = weights.map_or(n as f32, |ws| ws.iter().sum());
    activation.loss_slopes(
        loss,
        y,
        |i| weights.map_or(1.0, |ws| ws[i]) / total,
        signs,
        &scratch.pre[..n * j],
        &mut scratch.coef[..n * j],
        &mut scratch.tmp[..n * j],
    );
    let coef = ArrayView2::from_shape((n, j), &scratch.coef[..n * j]).expect("sized");
    matmul(&mut scratch.grad.view_mut(), &coef.t(), &xc, 1.0, false);
    &scratch.grad
}

/// `out = a W` row by row, or `a` itself when there is no whitening W.
fn times_whitening<'a>(
    a: &'a Array2<f32>,
    whiten: Option<&Array2<f32>>,
    out: &'a mut Array2<f32>,
) -> &'a Array2<f32> {
    match whiten {
        None => a,
        Some(w) => {
            if out.dim() != a.dim() {
                *out = Array2::zeros(a.dim());
            }
            matmul(&mut out.view_mut(), &a.view(), &w.view(), 1.0, false);
            out
        }
    }
}

/// Loss whose gradient moves the first-layer directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// -y sigma(<w, x - mu>).
    Correlation,
    /// (y - a sigma(<w, x - mu>))^2 / 2 per neuron, a its second-layer sign.
    Squared,
}

/// How each neuron's second-layer sign a_j (the loss is -a_j y sigma(t),
/// or (y - a_j sigma(t))^2 / 2) is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronSign {
    /// a_j = sign of the neuron's running correlation R_j = E[y sigma(t_j)]:
    /// the neuron climbs |R_j|, so it can learn a direction whose leading
    /// Hermite coefficient is negative, for even k* as for odd.
    Learned,
    /// a_j = +1, -1, +1, ... by neuron index, fixed; a restarted phase-I
    /// expert flips its sign (it was stuck, perhaps for want of the other
    /// sign). Unlike `learned`, the sign needs no running correlation to
    /// settle first, which at odd k* would slow the escape from the equator.
    Alternating,
    /// a_j = +1 always: with an even k* the neuron is repelled by every
    /// direction whose leading coefficient is negative.
    Positive,
}

/// What a [`SphereStep`] knows of its neurons beside their directions:
/// each one's running correlation R_j = E[y sigma(<w_j, x>)] and its
/// second-layer sign a_j (checkpointed with the directions).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NeuronStats {
    pub correlation: Vec<f64>,
    pub signs: Vec<f32>,
}

impl NeuronStats {
    /// `neurons` neurons with correlation 0 and the rule's starting signs.
    pub fn new(rule: NeuronSign, neurons: usize) -> Self {
        let signs = (0..neurons)
            .map(|j| match rule {
                NeuronSign::Alternating if j % 2 == 1 => -1.0,
                _ => 1.0,
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
    batch_mean: Vec<f64>,
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
            batch_mean: Vec::new(),
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
        whiten: Option<&Array2<f32>>,
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
        self.observe(y, weights);
        finite
    }

    /// Folds the batch's mean y sigma(t_j) into the running correlations.
    fn observe(&mut self, y: &[f32], weights: Option<&[f32]>) {
        let (n, j) = (self.scratch.rows, self.stats.correlation.len());
        if n == 0 || j == 0 {
            return;
        }
        let values = &mut self.scratch.tmp[..n * j];
        // The squared loss's slopes left sigma(t) in `tmp` already.
        if self.loss != Loss::Squared {
            Activation::horner_slice(
                &self.activation.monomial,
                &self.scratch.pre[..n * j],
                values,
            );
        }
        let mean = &mut self.batch_mean;
        mean.clear();
        mean.resize(j, 0.0);
        let mut total = 0.0f64;
        for (i, row) in values.chunks_exact(j).enumerate() {
            let weight = weights.map_or(1.0, |ws| ws[i]);
            let wy = (weight * y[i]) as f64;
            total += weight as f64;
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += wy * v as f64;
            }
        }
        let stats = &mut self.stats;
        for ((r, a), &m) in stats
            .correlation
            .iter_mut()
            .zip(&mut stats.signs)
            .zip(mean.iter())
        {
            *r += CORRELATION_RATE * (m / total - *r);
            if self.rule == NeuronSign::Learned {
                *a = if *r < 0.0 { -1.0 } else { 1.0 };
            }
        }
    }

    /// The pre-activations <w_j, W x_i> of the last step, before it moved w.
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
    let mut finite = true;
    // Rows as slices: the fixed-order vectorised dot, not ndarray's
    // element-by-element iteration (this step runs on every neuron each step).
    let rows = w
        .as_slice_mut()
        .expect("standard layout")
        .chunks_exact_mut(d);
    for (row, g) in rows.zip(grad.as_slice().expect("standard layout").chunks_exact(d)) {
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

/// A trained two-layer network f(x) = sum_j a_j relu(<w_j, x - mu> + b_j) + a_0.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TwoLayer {
    /// First-layer directions, unit rows (J x d).
    pub w: Array2<f32>,
    /// Input centre mu.
    pub centre: Array1<f32>,
    /// Biases b_j.
    pub bias: Array1<f32>,
    /// Second layer a_j.
    pub a: Array1<f64>,
    /// Constant a_0.
    pub a0: f64,
}

impl TwoLayer {
    /// Readout features relu(<w_j, x - mu> + b_j) of a batch, then a column of ones.
    pub fn features(&self, x: ArrayView2<f32>) -> Array2<f64> {
        let mut xc = x.to_owned();
        crate::numerics::linalg::centre_rows(xc.view_mut(), &self.centre);
        let mut pre = Array2::zeros((xc.nrows(), self.w.nrows()));
        matmul(&mut pre.view_mut(), &xc.view(), &self.w.t(), 1.0, false);
        let (n, j) = pre.dim();
        let mut out = Array2::<f64>::ones((n, j + 1));
        for (mut row, pre_row) in out.axis_iter_mut(Axis(0)).zip(pre.axis_iter(Axis(0))) {
            for ((o, &p), &b) in row.iter_mut().zip(pre_row).zip(&self.bias) {
                *o = (p + b).max(0.0) as f64;
            }
        }
        out
    }

    /// Network outputs on a batch.
    pub fn predict(&self, x: ArrayView2<f32>) -> Array1<f64> {
        let f = self.features(x);
        let j = self.a.len();
        f.slice(ndarray::s![.., ..j]).dot(&self.a) + self.a0
    }

    /// Number of hidden neurons J.
    pub fn neurons(&self) -> usize {
        self.w.nrows()
    }
}

/// A trained mixture of experts.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Moe {
    /// Phase-I direction u_m of every expert (M x d).
    pub phase_one_directions: Array2<f32>,
    /// Input map (global centre, whitening) of phases I and II.
    pub input_map: InputMap,
    /// For every phase-I expert, the routed expert it became (None: dropped).
    pub expert_group: Vec<Option<usize>>,
    pub router: Router,
    pub gate: GateRule,
    /// Routed experts (K of them, K <= M).
    pub experts: Vec<TwoLayer>,
    /// Per cluster: samples seen when some expert first reached the recovery threshold in phase I.
    pub phase1_weak_recovery_samples: Vec<Option<u64>>,
    /// Samples drawn in all.
    pub samples: u64,
}

impl Moe {
    /// F(x) = sum over selected experts of pi_m(x) f_m(x).
    pub fn predict(&self, x: ndarray::ArrayView2<f32>, rng: &mut Stream) -> Array1<f64> {
        let gates = self.router.gates(x, &self.gate, rng);
        let mut out = Array1::zeros(x.nrows());
        for (k, expert) in self.experts.iter().enumerate() {
            let g = gates.column(k);
            if g.iter().all(|&v| v == 0.0) {
                continue;
            }
            let f = expert.predict(x);
            out.zip_mut_with(&(f * &g.mapv(|v| v as f64)), |o, &v| *o += v);
        }
        out
    }
}

/// A trained vanilla two-layer network.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Vanilla {
    pub net: TwoLayer,
    pub samples: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::hermite::hermite_series;
    use crate::numerics::rng::{stream, StreamId};
    use ndarray::ArrayView1;
    use rand::Rng;
    use rand_distr::StandardNormal;

    #[test]
    fn monomial_form_matches_hermite_series() {
        let coefficients = [0.3, -0.2, 0.0, 1.0, 0.5, -0.7];
        let act = Activation::from_hermite(&coefficients);
        for &t in &[-2.5f32, -1.0, 0.0, 0.4, 1.7, 3.0] {
            let exact = hermite_series(&coefficients, t as f64);
            assert!(
                (act.value(t) as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()),
                "t = {t}"
            );
        }
        // h3 = (t^3 - 3t)/sqrt 6
        let h3 = hermite_to_monomial(&[0.0, 0.0, 0.0, 1.0]);
        let s6 = 6f64.sqrt();
        for (a, b) in h3.iter().zip([0.0, -3.0 / s6, 0.0, 1.0 / s6]) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// The mean loss over a batch, in f64 from the f32 model.
    fn mean_loss(
        w: &Array2<f32>,
        x: &Array2<f32>,
        y: &[f32],
        weights: &[f32],
        signs: &[f32],
        act: &Activation,
        loss: Loss,
    ) -> f64 {
        let pre = x.dot(&w.t());
        let total: f64 = weights.iter().map(|&v| v as f64).sum();
        let mut sum = 0.0;
        for (i, row) in pre.axis_iter(Axis(0)).enumerate() {
            for (&t, &a) in row.iter().zip(signs) {
                sum += weights[i] as f64 * act.loss(loss, a, y[i], t) as f64;
            }
        }
        sum / total
    }

    #[test]
    fn loss_gradient_matches_finite_differences() {
        let mut rng = stream(3, StreamId::Test);
        let (n, d, j) = (16, 6, 3);
        let x = Array2::<f32>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
        let y: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let weights: Vec<f32> = (0..n).map(|_| rng.gen_range(0.1..1.0)).collect();
        let act = Activation::from_hermite(&[0.0, 0.0, 0.0, 1.0, 0.2]);
        // Both second-layer signs: a negative one flips the correlation
        // loss and the squared loss's target.
        let signs = [1.0f32, -1.0, -1.0];
        for loss in [Loss::Correlation, Loss::Squared] {
            for weighted in [false, true] {
                let w = random_directions(j, d, &mut rng) * 0.8;
                let ws = if weighted {
                    weights.clone()
                } else {
                    vec![1.0; n]
                };
                let mut scratch = SgdScratch::default();
                let grad = loss_gradient(
                    &w,
                    x.view(),
                    &y,
                    weighted.then_some(&ws[..]),
                    &signs,
                    &act,
                    loss,
                    &mut scratch,
                )
                .clone();
                let h = 1e-2f32;
                for r in 0..j {
                    for c in 0..d {
                        let (mut up, mut down) = (w.clone(), w.clone());
                        up[[r, c]] += h;
                        down[[r, c]] -= h;
                        let fd = (mean_loss(&up, &x, &y, &ws, &signs, &act, loss)
                            - mean_loss(&down, &x, &y, &ws, &signs, &act, loss))
                            / (2.0 * h as f64);
                        let g = grad[[r, c]] as f64;
                        assert!(
                            (fd - g).abs() < 2e-3 * (1.0 + fd.abs()),
                            "{loss:?} weighted={weighted} [{r},{c}]: fd {fd} vs {g}"
                        );
                    }
                }
            }
        }
    }

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

    #[test]
    fn features_are_relu_of_centred_inputs_plus_constant() {
        let net = TwoLayer {
            w: ndarray::array![[1.0f32, 0.0], [0.0, 1.0]],
            centre: ndarray::array![1.0f32, 1.0],
            bias: ndarray::array![0.5f32, -0.5],
            a: ndarray::array![2.0, -1.0],
            a0: 0.25,
        };
        let x = ndarray::array![[1.0f32, 3.0], [0.0, 0.0]];
        let f = net.features(x.view());
        assert_eq!(f, ndarray::array![[0.5, 1.5, 1.0], [0.0, 0.0, 1.0]]);
        assert_eq!(
            net.predict(x.view()),
            ndarray::array![2.0 * 0.5 - 1.5 + 0.25, 0.25]
        );
    }
}
