//! Polynomial activations given by Hermite coefficients, the losses and
//! each neuron's second-layer sign, and the mean loss gradient of the
//! first layer that every spherical SGD phase takes.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::numerics::hermite::hermite_to_monomial;
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

    pub fn value(&self, t: f32) -> f32 {
        Self::horner(&self.monomial, t)
    }

    pub fn slope(&self, t: f32) -> f32 {
        Self::horner(&self.derivative, t)
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

/// Horner's rule over a slice, the loop over elements innermost so that
/// it vectorises (`out = c_n`, then `out = out * t + c_k` from the top
/// coefficient down: the scalar rule's operations, element by element).
#[inline(always)]
fn horner_slice(coefficients: &[f32], t: &[f32], out: &mut [f32]) {
    let (last, rest) = coefficients.split_last().expect("non-empty coefficients");
    out.fill(*last);
    for &a in rest.iter().rev() {
        for (o, &ti) in out.iter_mut().zip(t) {
            *o = *o * ti + a;
        }
    }
}

/// What a pass of [`slopes_and_sums`] reads: the activation (monomial
/// coefficients of sigma and sigma'), the loss, the batch's labels and
/// weights (summing to `total`), the neurons' signs and the pre-activations
/// `t` (rows of `signs.len()` neurons).
#[derive(Clone, Copy)]
struct SlopeBlock<'a> {
    monomial: &'a [f32],
    derivative: &'a [f32],
    squared: bool,
    y: &'a [f32],
    weights: Option<&'a [f32]>,
    total: f32,
    signs: &'a [f32],
    t: &'a [f32],
}

impl SlopeBlock<'_> {
    /// Sample i's label y_i, its slope scale weight_i / total, and its
    /// weight times label in f64 (its share of the sums).
    #[inline(always)]
    fn sample(&self, i: usize) -> (f32, f32, f64) {
        let weight = self.weights.map_or(1.0, |ws| ws[i]);
        let y = self.y[i];
        (y, weight / self.total, (weight * y) as f64)
    }
}

/// `out[i j] = scale_i * d loss / d t` at the pre-activations (`scale_i =
/// weight_i / total`), each neuron with its second-layer sign; and, in the
/// same pass, `sums[j] += weight_i y_i sigma(t_ij)` in f64, the batch's
/// share of the running correlations. One pass computes both polynomials
/// while `t` sits in registers, as wide as the CPU has; each element sees
/// the same operations in the same order as the scalar Horner rule, so the
/// bits do not depend on the path.
fn slopes_and_sums(block: SlopeBlock, out: &mut [f32], sums: &mut [f64]) {
    if block.signs.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { x86::slopes_avx512(block, out, sums) };
        return;
    }
    slopes_kernel(block, out, sums);
}

/// Neurons of a row that [`slopes_kernel`] takes at a time.
const COLUMNS: usize = 64;

/// [`slopes_and_sums`] as vectorised slices, compiled for AVX-512, AVX2 and
/// the baseline and chosen at run time. No operation is fused or reordered
/// by the wider paths (Rust never contracts a * b + c), so every path gives
/// the same bits.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
fn slopes_kernel(block: SlopeBlock, out: &mut [f32], sums: &mut [f64]) {
    let j = block.signs.len();
    let rows = block.t.chunks_exact(j).zip(out.chunks_exact_mut(j));
    for (i, (t_row, out_row)) in rows.enumerate() {
        let (yi, si, wy) = block.sample(i);
        let columns = t_row
            .chunks(COLUMNS)
            .zip(out_row.chunks_mut(COLUMNS))
            .zip(block.signs.chunks(COLUMNS).zip(sums.chunks_mut(COLUMNS)));
        for ((t, out), (signs, sums)) in columns {
            // sigma'(t) goes straight into `out`, sigma(t) into `values`.
            let values = &mut [0.0f32; COLUMNS][..t.len()];
            horner_slice(block.derivative, t, out);
            horner_slice(block.monomial, t, values);
            if block.squared {
                // (y - a sigma)^2 / 2 with a = +-1 has slope -(a y - sigma) sigma'.
                for ((o, &v), &a) in out.iter_mut().zip(&*values).zip(signs) {
                    *o *= -(a * yi - v) * si;
                }
            } else {
                // -a y sigma has slope -a y sigma'.
                let factor = -yi * si;
                for (o, &a) in out.iter_mut().zip(signs) {
                    *o *= factor * a;
                }
            }
            for (m, &v) in sums.iter_mut().zip(&*values) {
                *m += wy * v as f64;
            }
        }
    }
}

/// Horner's rule at one point, with the slice rule's operations (the
/// reference of the tests).
#[cfg(test)]
fn horner_one(coefficients: &[f32], t: f32) -> f32 {
    let (last, rest) = coefficients.split_last().expect("non-empty coefficients");
    rest.iter().rev().fold(*last, |acc, &a| acc * t + a)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::SlopeBlock;
    use std::arch::x86_64::*;

    /// Horner's rule on 16 lanes: multiply, then add (never fused).
    #[inline(always)]
    unsafe fn horner(coefficients: &[f32], t: __m512) -> __m512 {
        let (last, rest) = coefficients.split_last().expect("non-empty coefficients");
        let mut acc = _mm512_set1_ps(*last);
        for &a in rest.iter().rev() {
            acc = _mm512_add_ps(_mm512_mul_ps(acc, t), _mm512_set1_ps(a));
        }
        acc
    }

    /// [`super::slopes_and_sums`] with each 16 neurons of a row in one
    /// register from t to the slope and the f64 sums; the same operations
    /// element by element, so the same bits.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn slopes_avx512(block: SlopeBlock, out: &mut [f32], sums: &mut [f64]) {
        let (signs, squared) = (block.signs, block.squared);
        let (monomial, derivative) = (block.monomial, block.derivative);
        let j = signs.len();
        let sign_bit = _mm512_set1_epi32(i32::MIN);
        let rows = block.t.chunks_exact(j).zip(out.chunks_exact_mut(j));
        for (i, (t_row, out_row)) in rows.enumerate() {
            let (yi, si, wy) = block.sample(i);
            let factor = -yi * si;
            let (vy, vsi, vfactor, vwy) = (
                _mm512_set1_ps(yi),
                _mm512_set1_ps(si),
                _mm512_set1_ps(factor),
                _mm512_set1_pd(wy),
            );
            for k in (0..j).step_by(16) {
                // Lanes k.. of the row that exist: all 16 but in the last
                // chunk of a row whose length is not a multiple of 16.
                let lanes = (j - k).min(16);
                let mask: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
                // SAFETY (loads and stores): the mask covers only lanes
                // k..k + lanes, inside every row slice, `signs` and `sums`.
                let tk = _mm512_maskz_loadu_ps(mask, t_row.as_ptr().add(k));
                let d = horner(derivative, tk);
                let v = horner(monomial, tk);
                let a = _mm512_maskz_loadu_ps(mask, signs.as_ptr().add(k));
                let scale = if squared {
                    // -(a y - v) * scale
                    let diff = _mm512_sub_ps(_mm512_mul_ps(a, vy), v);
                    let negated =
                        _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(diff), sign_bit));
                    _mm512_mul_ps(negated, vsi)
                } else {
                    _mm512_mul_ps(vfactor, a)
                };
                _mm512_mask_storeu_ps(out_row.as_mut_ptr().add(k), mask, _mm512_mul_ps(d, scale));
                let halves = [
                    _mm512_castps512_ps256(v),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)),
                ];
                for (h, half) in halves.into_iter().enumerate() {
                    let m = sums.as_mut_ptr().add(k + 8 * h);
                    let mask = (mask >> (8 * h)) as __mmask8;
                    let sum = _mm512_add_pd(
                        _mm512_maskz_loadu_pd(mask, m),
                        _mm512_mul_pd(vwy, _mm512_cvtps_pd(half)),
                    );
                    _mm512_mask_storeu_pd(m, mask, sum);
                }
            }
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
        squared: loss == Loss::Squared,
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

    /// The slopes and sums of every path (AVX-512 registers, the
    /// vectorised slices, one element at a time) agree bit for bit, for
    /// both losses, with and without weights, at widths with and without a
    /// remainder beyond whole registers, and wider than one chunk of columns.
    #[test]
    fn every_slope_path_gives_the_same_bits() {
        let mut rng = stream(8, StreamId::Test);
        let act = Activation::from_hermite(&[0.1, -0.3, 0.2, 1.0, 0.4]);
        for j in [1usize, 16, 37, 64, 100] {
            let n = 9;
            let t: Vec<f32> = (0..n * j)
                .map(|_| 1.5 * rng.sample::<f32, _>(StandardNormal))
                .collect();
            let y: Vec<f32> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
            let ws: Vec<f32> = (0..n).map(|_| rng.gen_range(0.1..1.0)).collect();
            let signs: Vec<f32> = (0..j)
                .map(|k| if k % 3 == 0 { -1.0 } else { 1.0 })
                .collect();
            for squared in [false, true] {
                for weights in [None, Some(&ws[..])] {
                    let total = weights.map_or(n as f32, |w| w.iter().sum());
                    let run = |path: &dyn Fn(&mut [f32], &mut [f64])| {
                        let (mut out, mut sums) = (vec![0.0f32; n * j], vec![0.5f64; j]);
                        path(&mut out, &mut sums);
                        (out, sums)
                    };
                    let (mono, deriv) = (&act.monomial[..], &act.derivative[..]);
                    let block = SlopeBlock {
                        monomial: mono,
                        derivative: deriv,
                        squared,
                        y: &y,
                        weights,
                        total,
                        signs: &signs,
                        t: &t,
                    };
                    let slices = run(&|out, sums| slopes_kernel(block, out, sums));
                    let one_by_one = run(&|out, sums| {
                        for i in 0..n {
                            let w = weights.map_or(1.0, |ws| ws[i]);
                            let si = w / total;
                            for k in 0..j {
                                let (tk, a) = (t[i * j + k], signs[k]);
                                let (d, v) = (horner_one(deriv, tk), horner_one(mono, tk));
                                out[i * j + k] = if squared {
                                    d * (-(a * y[i] - v) * si)
                                } else {
                                    d * (-y[i] * si * a)
                                };
                                sums[k] += (w * y[i]) as f64 * v as f64;
                            }
                        }
                    });
                    assert_eq!(slices, one_by_one, "slices, j = {j}, squared = {squared}");
                    #[cfg(target_arch = "x86_64")]
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        let registers =
                            run(&|out, sums| unsafe { x86::slopes_avx512(block, out, sums) });
                        assert_eq!(
                            registers, one_by_one,
                            "AVX-512, j = {j}, squared = {squared}"
                        );
                    }
                }
            }
        }
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
