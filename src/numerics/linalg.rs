//! Linear algebra of the training loop: matrix products of `ndarray` views
//! through `faer`'s kernels, a fixed-order dot product and row centring.
//!
//! faer's products are 2–3 times faster than `matrixmultiply` (ndarray's
//! default) at the training loop's shapes, e.g. (8 x 256)(256 x 256) and
//! (64 x 256)(256 x 512) on one core, because it packs less at small sizes.
//! Views of any strides (transposes included) are passed without copies.
//! Sequential (`Par::Seq`): parallelism is across runs and models, and a
//! fixed order of operations keeps results independent of the thread count.

use faer::{Accum, MatMut, MatRef, Par};
use ndarray::{Array1, ArrayView2, ArrayViewMut2};

/// A faer view of an ndarray view (any strides, in elements).
fn faer_ref<'a, T>(a: &ArrayView2<'a, T>) -> MatRef<'a, T> {
    let (m, n) = a.dim();
    // SAFETY: pointer, shape and strides come from a live ndarray view of
    // exactly this shape, borrowed for 'a.
    unsafe { MatRef::from_raw_parts(a.as_ptr(), m, n, a.strides()[0], a.strides()[1]) }
}

/// A mutable faer view of an ndarray view.
fn faer_mut<'a, T>(c: &'a mut ArrayViewMut2<'_, T>) -> MatMut<'a, T> {
    let (m, n) = c.dim();
    let strides = [c.strides()[0], c.strides()[1]];
    // SAFETY: as in `faer_ref`; `c` is borrowed mutably for the view's life,
    // so it aliases no input.
    unsafe { MatMut::from_raw_parts_mut(c.as_mut_ptr(), m, n, strides[0], strides[1]) }
}

fn accum(accumulate: bool) -> Accum {
    if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    }
}

/// `c = alpha a b` (or `c += alpha a b` with `accumulate`).
pub fn matmul<T: faer::traits::ComplexField + Copy>(
    c: &mut ArrayViewMut2<T>,
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    alpha: T,
    accumulate: bool,
) {
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!(c.dim(), (a.nrows(), b.ncols()), "output shape");
    let (lhs, rhs) = (faer_ref(a), faer_ref(b));
    faer::linalg::matmul::matmul(faer_mut(c), accum(accumulate), lhs, rhs, alpha, Par::Seq);
    clean_upper_state();
}

/// Zeroes the upper halves of the vector registers after a faer kernel.
/// faer's x86 kernels (AVX2 / AVX-512, in inline assembly) return without
/// `vzeroupper`, and while the upper state is dirty every call from this
/// crate's SSE code into a VEX-encoded libm routine (glibc's expf, logf,
/// exp, log, tanh ...) pays a state transition: measured 60 ns per expf
/// instead of 5 ns, for the rest of the thread's life. Results do not
/// change; only the transitions go.
#[inline]
fn clean_upper_state() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked above); vzeroupper clears
            // only bits 128 and up of the vector registers, which this
            // crate's (SSE) code never holds values in.
            unsafe { std::arch::x86_64::_mm256_zeroupper() }
        }
    }
}

/// The lower triangle (diagonal included) of `g += f' f`: half the work of
/// the full Gram matrix, and all a Cholesky solve reads. The strict upper
/// triangle of `g` is left as it was.
pub fn gram_lower_add(g: &mut ArrayViewMut2<f64>, f: &ArrayView2<f64>) {
    use faer::linalg::matmul::triangular::{self, BlockStructure};
    let p = f.ncols();
    assert_eq!(g.dim(), (p, p), "Gram shape");
    let ft = f.t();
    triangular::matmul(
        faer_mut(g),
        BlockStructure::TriangularLower,
        Accum::Add,
        faer_ref(&ft),
        BlockStructure::Rectangular,
        faer_ref(f),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    clean_upper_state();
}

/// Dot product with eight independent partial sums in a fixed order:
/// vectorisable, and the same result on every machine.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Subtracts `centre` from every row of `x`.
pub fn centre_rows(mut x: ArrayViewMut2<f32>, centre: &Array1<f32>) {
    for mut row in x.rows_mut() {
        row -= centre;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn products_match_ndarray_for_every_layout() {
        let a = Array2::from_shape_fn((7, 5), |(i, j)| (i * 5 + j) as f64 * 0.5 - 3.0);
        let b = Array2::from_shape_fn((6, 5), |(i, j)| ((i + 2 * j) % 7) as f64 - 2.0);
        let expected = a.dot(&b.t());
        let mut c = Array2::zeros((7, 6));
        matmul(&mut c.view_mut(), &a.view(), &b.t(), 1.0, false);
        assert_eq!(c, expected);
        // Accumulating into a transposed output.
        let mut ct = Array2::<f64>::ones((6, 7));
        matmul(
            &mut ct.view_mut().reversed_axes(),
            &a.view(),
            &b.t(),
            2.0,
            true,
        );
        assert_eq!(ct.t(), expected * 2.0 + 1.0);
        let a32 = a.mapv(|v| v as f32);
        let mut g = Array2::<f32>::zeros((5, 5));
        matmul(&mut g.view_mut(), &a32.t(), &a32.view(), 1.0, false);
        assert_eq!(g, a32.t().dot(&a32));
    }

    #[test]
    fn the_lower_gram_triangle_matches_the_full_product() {
        let f = Array2::from_shape_fn((40, 9), |(i, j)| ((i * 3 + j * 7) % 11) as f64 * 0.25 - 1.0);
        let mut g = Array2::<f64>::from_elem((9, 9), 2.0);
        gram_lower_add(&mut g.view_mut(), &f.view());
        let full = f.t().dot(&f);
        for i in 0..9 {
            for j in 0..9 {
                let expected = if j <= i { full[[i, j]] + 2.0 } else { 2.0 };
                assert!((g[[i, j]] - expected).abs() < 1e-12, "[{i},{j}]");
            }
        }
    }
}
