//! Polynomial activations given by Hermite coefficients, the losses and
//! each neuron's second-layer sign, and the mean loss gradient of the
//! first layer that every spherical SGD phase takes.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::numerics::hermite::hermite_to_monomial;
use crate::numerics::kernels::{slopes_and_sums, Residual, SlopeBlock};
use crate::numerics::linalg::matmul;

/// A polynomial activation sigma given by normalised Hermite coefficients,
/// evaluated through its monomial form (Horner) because that is what the
/// training loop does millions of times.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    monomial: Vec<f32>,
    derivative: Vec<f32>,
}

impl Activation {
    /// sigma = sum_i c_i h_i, from the normalised Hermite coefficients
    /// `coefficients` (c_0 first).
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

    fn horner(coefficients: &[f32], t: f32) -> f32 {
        coefficients.iter().rev().fold(0.0, |acc, &a| acc * t + a)
    }

    /// sigma(t).
    pub fn value(&self, t: f32) -> f32 {
        Self::horner(&self.monomial, t)
    }

    /// The loss of one neuron with second-layer sign `sign` (+-1), for
    /// gradient checks.
    #[cfg(test)]
    pub fn loss(&self, loss: Loss, sign: f32, y: f32, t: f32) -> f32 {
        match loss {
            Loss::Correlation => -sign * y * self.value(t),
            Loss::Squared => 0.5 * (y - sign * self.value(t)).powi(2),
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

impl Loss {
    /// The loss as the slope kernel takes it: the coefficients of the
    /// residual `r = a (label y) + output sigma(t)` whose slope is
    /// `d loss / d t = -r sigma'(t)`, a the neuron's sign (+-1). A new loss
    /// adds its coefficients here, not a kernel.
    pub(crate) const fn residual(self) -> Residual {
        match self {
            // -a y sigma: slope -a y sigma'.
            Loss::Correlation => Residual {
                label: 1.0,
                output: 0.0,
            },
            // (y - a sigma)^2 / 2 with a^2 = 1: slope -(a y - sigma) sigma'.
            Loss::Squared => Residual {
                label: 1.0,
                output: -1.0,
            },
        }
    }
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

/// Scratch buffers of one spherical SGD step, kept across steps so the
/// training loop does not allocate (phase III's routed batches change size
/// every step, so the buffers are flat vectors viewed at the current size).
#[derive(Debug, Default)]
pub struct SgdScratch {
    pub(super) pre: Vec<f32>,
    pub(super) coef: Vec<f32>,
    /// sum_i weight_i y_i sigma(t_ij) of the last call, per neuron j.
    pub(super) sums: Vec<f64>,
    pub(super) grad: Array2<f32>,
    pub(super) rows: usize,
}

impl SgdScratch {
    /// The pre-activations <w_j, x_i> of the last [`loss_gradient`] call (n x J).
    #[cfg(test)]
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
    for buffer in [&mut scratch.pre, &mut scratch.coef] {
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
    scratch.sums.clear();
    scratch.sums.resize(j, 0.0);
    let block = SlopeBlock {
        monomial: &activation.monomial,
        derivative: &activation.derivative,
        residual: loss.residual(),
        y,
        weights,
        total,
        signs,
        t: &scratch.pre[..n * j],
    };
    slopes_and_sums(block, &mut scratch.coef[..n * j], &mut scratch.sums);
    let coef = ArrayView2::from_shape((n, j), &scratch.coef[..n * j]).expect("sized");
    matmul(&mut scratch.grad.view_mut(), &coef.t(), &xc, 1.0, false);
    &scratch.grad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random_directions;
    use crate::numerics::hermite::hermite_series;
    use crate::numerics::rng::{stream, StreamId};
    use ndarray::Axis;
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
}
