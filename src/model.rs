//! Two-layer networks (SPEC §3): first-layer directions on the unit sphere,
//! an input centre, random biases and a linear readout; and the Hermite
//! activations used while the directions learn.

use ndarray::{linalg::general_mat_mul, Array1, Array2, ArrayView2, Axis};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::config::Loss;
use crate::rng::Stream;

/// A polynomial activation sigma given by normalised Hermite coefficients,
/// evaluated through its monomial form (Horner) because that is what the
/// training loop does millions of times.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    monomial: Vec<f32>,
    derivative: Vec<f32>,
}

/// Monomial coefficients of sum_i c_i h_i(t), h_i = He_i / sqrt(i!).
pub fn hermite_to_monomial(coefficients: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; coefficients.len().max(1)];
    for (n, &c) in coefficients.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        // He_n(t) = sum_k (-1)^k n! / (k! (n-2k)! 2^k) t^(n-2k)
        let norm = (1..=n).map(|i| i as f64).product::<f64>().sqrt();
        let mut term = 1.0; // n!/(k!(n-2k)!2^k) for k = 0
        for k in 0..=n / 2 {
            if k > 0 {
                term *= ((n - 2 * k + 2) * (n - 2 * k + 1)) as f64 / (2 * k) as f64;
            }
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            out[n - 2 * k] += c * sign * term / norm;
        }
    }
    out
}

impl Activation {
    pub fn from_hermite(coefficients: &[f64]) -> Self {
        let mono = hermite_to_monomial(coefficients);
        let derivative: Vec<f32> = mono.iter().enumerate().skip(1).map(|(i, &a)| (i as f64 * a) as f32).collect();
        Activation {
            monomial: mono.iter().map(|&a| a as f32).collect(),
            derivative: if derivative.is_empty() { vec![0.0] } else { derivative },
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

    /// d loss / d pre-activation for one sample and one neuron.
    pub fn loss_slope(&self, loss: Loss, y: f32, t: f32) -> f32 {
        match loss {
            Loss::Correlation => -y * self.slope(t),
            Loss::Squared => -(y - self.value(t)) * self.slope(t),
        }
    }

    /// `out[j] = scale * d loss / d t` at pre-activations `t` of one sample
    /// with label `y`; `tmp` is scratch of the same length.
    fn loss_slopes(&self, loss: Loss, y: f32, scale: f32, t: &[f32], out: &mut [f32], tmp: &mut [f32]) {
        Self::horner_slice(&self.derivative, t, out);
        match loss {
            Loss::Correlation => out.iter_mut().for_each(|o| *o *= -y * scale),
            Loss::Squared => {
                Self::horner_slice(&self.monomial, t, tmp);
                for (o, &v) in out.iter_mut().zip(tmp.iter()) {
                    *o *= -(y - v) * scale;
                }
            }
        }
    }

    /// The loss itself, for gradient checks and logs.
    pub fn loss(&self, loss: Loss, y: f32, t: f32) -> f32 {
        match loss {
            Loss::Correlation => -y * self.value(t),
            Loss::Squared => 0.5 * (y - self.value(t)).powi(2),
        }
    }
}

/// `n` directions uniform on the unit sphere of R^d (rows).
pub fn random_directions(n: usize, d: usize, rng: &mut Stream) -> Array2<f32> {
    let mut w = Array2::<f32>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
    for mut row in w.rows_mut() {
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
    w
}

/// Scratch buffers of one spherical SGD step, kept across steps so the
/// training loop does not allocate.
#[derive(Debug, Default)]
pub struct SgdScratch {
    pre: Array2<f32>,
    coef: Array2<f32>,
    grad: Array2<f32>,
}

/// The mean loss gradient with respect to every row of `w` on the centred
/// inputs `xc`, with optional per-sample weights. Rows of the result are
/// Euclidean gradients (not yet projected on the sphere).
pub fn loss_gradient<'a>(
    w: &Array2<f32>,
    xc: ArrayView2<f32>,
    y: &[f32],
    weights: Option<&[f32]>,
    activation: &Activation,
    loss: Loss,
    scratch: &'a mut SgdScratch,
) -> &'a Array2<f32> {
    let (n, j) = (xc.nrows(), w.nrows());
    if scratch.pre.dim() != (n, j) {
        scratch.pre = Array2::zeros((n, j));
        scratch.coef = Array2::zeros((n, j));
    }
    if scratch.grad.dim() != w.dim() {
        scratch.grad = Array2::zeros(w.dim());
    }
    general_mat_mul(1.0, &xc, &w.t(), 0.0, &mut scratch.pre);
    let total: f32 = weights.map_or(n as f32, |ws| ws.iter().sum());
    let mut tmp = vec![0.0; j];
    let pre = scratch.pre.as_slice().expect("standard layout");
    let coef = scratch.coef.as_slice_mut().expect("standard layout");
    for (i, (t, out)) in pre.chunks_exact(j).zip(coef.chunks_exact_mut(j)).enumerate() {
        let scale = weights.map_or(1.0, |ws| ws[i]) / total;
        activation.loss_slopes(loss, y[i], scale, t, out, &mut tmp);
    }
    general_mat_mul(1.0, &scratch.coef.t(), &xc, 0.0, &mut scratch.grad);
    &scratch.grad
}

/// One spherical SGD step: project each gradient row on the tangent space
/// at its direction, step, renormalise. Returns false if a direction became
/// non-finite (the caller reports divergence).
pub fn spherical_step(w: &mut Array2<f32>, grad: &Array2<f32>, lr: f32) -> bool {
    let mut finite = true;
    for (mut row, g) in w.axis_iter_mut(Axis(0)).zip(grad.axis_iter(Axis(0))) {
        let radial = row.dot(&g);
        row.zip_mut_with(&g, |wi, &gi| *wi -= lr * (gi - radial * *wi));
        let norm = row.dot(&row).sqrt();
        finite &= norm.is_finite() && norm > 0.0;
        row /= norm;
    }
    finite
}

/// A trained two-layer network f(x) = sum_j a_j relu(<w_j, x - mu> + b_j) + a_0.
#[derive(Clone, Debug)]
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
        crate::task::centre_rows(xc.view_mut(), &self.centre);
        let pre = xc.dot(&self.w.t());
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
