//! The slopes of the first-layer loss at a batch's pre-activations and, in
//! the same pass, the batch's share of the running correlations
//! (`model::activation::loss_gradient` calls it on every SGD step): in
//! AVX-512 registers where the CPU has them, else as vectorised slices.

use super::{vectorised, Vectorised};

/// A loss as [`slopes_and_sums`] reads it: the coefficients of its
/// residual `r = a (label y) + output sigma(t)` (a the neuron's
/// second-layer sign, y the label, sigma(t) the neuron's output), whose
/// slope at the pre-activation is `d loss / d t = -r sigma'(t)`. Each loss
/// gives its coefficients (`model::activation::Loss::residual`); a new
/// loss is new coefficients, not a new kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Residual {
    /// The coefficient of the signed label `a y`.
    pub label: f32,
    /// The coefficient of the neuron's output `sigma(t)`.
    pub output: f32,
}

/// What a pass of [`slopes_and_sums`] reads: the activation (monomial
/// coefficients of sigma and sigma'), the loss, the batch's labels and
/// weights (summing to `total`), the neurons' signs and the pre-activations
/// `t` (rows of `signs.len()` neurons).
#[derive(Clone, Copy)]
pub(crate) struct SlopeBlock<'a> {
    /// Monomial coefficients of sigma, constant term first.
    pub monomial: &'a [f32],
    /// Monomial coefficients of sigma', constant term first.
    pub derivative: &'a [f32],
    /// The loss, as its residual's coefficients.
    pub residual: Residual,
    /// One label per sample.
    pub y: &'a [f32],
    /// One weight per sample, or `None` for weights of 1.
    pub weights: Option<&'a [f32]>,
    /// The sum of the weights.
    pub total: f32,
    /// One second-layer sign (+-1) per neuron.
    pub signs: &'a [f32],
    /// The pre-activations, sample-major: `t[i * signs.len() + j]`.
    pub t: &'a [f32],
}

impl SlopeBlock<'_> {
    /// Sample i's signed-label coefficient `label * y_i`, its slope scale
    /// `-weight_i / total`, and its weight times label in f64 (its share of
    /// the sums).
    #[inline(always)]
    fn sample(&self, i: usize) -> (f32, f32, f64) {
        let weight = self.weights.map_or(1.0, |ws| ws[i]);
        let y = self.y[i];
        let scale = weight / self.total;
        (self.residual.label * y, -scale, (weight * y) as f64)
    }
}

/// `out[i j] = scale_i * d loss / d t` at the pre-activations (`scale_i =
/// weight_i / total`), each neuron with its second-layer sign: `sigma'(t)
/// ((a (label y_i) + output sigma(t)) (-scale_i))`; and, in the same pass,
/// `sums[j] += weight_i y_i sigma(t_ij)` in f64, the batch's share of the
/// running correlations. One pass computes both polynomials while `t` sits
/// in registers, as wide as the CPU has; each element sees the same
/// operations in the same order as the scalar Horner rule, so the bits do
/// not depend on the path.
pub(crate) fn slopes_and_sums(block: SlopeBlock, out: &mut [f32], sums: &mut [f64]) {
    if block.signs.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::Simd::Avx512.available() {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { x86::slopes_avx512(block, out, sums) };
        return;
    }
    vectorised(SlopeRows { block, out, sums });
}

/// Neurons of a row that [`SlopeRows`] takes at a time.
const COLUMNS: usize = 64;

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

/// [`slopes_and_sums`] as vectorised slices (the portable path), compiled
/// for each instruction set by [`vectorised`].
pub(super) struct SlopeRows<'a> {
    /// What the pass reads.
    pub block: SlopeBlock<'a>,
    /// The slopes, shaped as `block.t`.
    pub out: &'a mut [f32],
    /// The sums, one per neuron.
    pub sums: &'a mut [f64],
}

impl Vectorised for SlopeRows<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let SlopeRows { block, out, sums } = self;
        let j = block.signs.len();
        let output = block.residual.output;
        let rows = block.t.chunks_exact(j).zip(out.chunks_exact_mut(j));
        for (i, (t_row, out_row)) in rows.enumerate() {
            let (ly, scale, wy) = block.sample(i);
            let columns = t_row
                .chunks(COLUMNS)
                .zip(out_row.chunks_mut(COLUMNS))
                .zip(block.signs.chunks(COLUMNS).zip(sums.chunks_mut(COLUMNS)));
            for ((t, out), (signs, sums)) in columns {
                // sigma'(t) goes straight into `out`, sigma(t) into `values`.
                let values = &mut [0.0f32; COLUMNS][..t.len()];
                horner_slice(block.derivative, t, out);
                horner_slice(block.monomial, t, values);
                for ((o, &v), &a) in out.iter_mut().zip(&*values).zip(signs) {
                    *o *= (a * ly + output * v) * scale;
                }
                for (m, &v) in sums.iter_mut().zip(&*values) {
                    *m += wy * v as f64;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! [`super::slopes_and_sums`] with each 16 neurons of a row in one
    //! AVX-512 register from t to the slope and the f64 sums.
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

    /// [`super::slopes_and_sums`] in AVX-512 registers: the same operations
    /// element by element as [`super::SlopeRows`], so the same bits.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX-512F; `out` must be as long as `block.t`, a
    /// whole number of rows of `block.signs.len()`, and `sums` as long as
    /// `block.signs`.
    #[target_feature(enable = "avx512f")]
    pub(in crate::numerics::kernels) unsafe fn slopes_avx512(
        block: SlopeBlock,
        out: &mut [f32],
        sums: &mut [f64],
    ) {
        let (signs, output) = (block.signs, block.residual.output);
        let (monomial, derivative) = (block.monomial, block.derivative);
        let j = signs.len();
        let voutput = _mm512_set1_ps(output);
        let rows = block.t.chunks_exact(j).zip(out.chunks_exact_mut(j));
        for (i, (t_row, out_row)) in rows.enumerate() {
            let (ly, scale, wy) = block.sample(i);
            let (vly, vscale, vwy) = (
                _mm512_set1_ps(ly),
                _mm512_set1_ps(scale),
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
                // (a ly + output v) * scale
                let residual = _mm512_add_ps(_mm512_mul_ps(a, vly), _mm512_mul_ps(voutput, v));
                let slope = _mm512_mul_ps(d, _mm512_mul_ps(residual, vscale));
                _mm512_mask_storeu_ps(out_row.as_mut_ptr().add(k), mask, slope);
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
