//! Linear algebra of the training loop: matrix products of `ndarray` views
//! through `faer`'s kernels, a fixed-order dot product and row centring.
//!
//! faer's products are 2–3 times faster than `matrixmultiply` (ndarray's
//! default) at the training loop's shapes, e.g. (8 x 256)(256 x 256) and
//! (64 x 256)(256 x 512) on one core, because it packs less at small sizes.
//! Views of any strides (transposes included) are passed without copies.
//! Every kernel call is sequential (`Par::Seq`). A large product (at least
//! [`SPLIT_WORK`] multiply-adds) run inside a rayon pool of several threads
//! is split into blocks of output rows or columns, each computed by the same
//! sequential kernel over the full inner dimension: faer's kernel sums every
//! output element over k in the same fixed chunks (512) whatever the output's
//! shape, so the blocks give the same bits as the whole product, and results
//! do not depend on the thread count (`tests/threads.rs`, and the tests
//! below, check it).

use faer::{Accum, MatMut, MatRef, Par};
use ndarray::{Array1, ArrayView2, ArrayViewMut2, Axis};

use crate::numerics::kernels::clean_upper_state;

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

/// Products of at least this many multiply-adds (m n k) are split into
/// blocks of output rows or columns when the current rayon pool has more
/// than one thread: e.g. phase I's whitening products (8 x d)(d x d) from
/// d = 256 on, the vanilla network's (64 x d)(d x 64) from d = 128, the
/// readouts' features.
pub const SPLIT_WORK: usize = 1 << 19;
/// The least work (m n k) of one block.
const BLOCK_WORK: usize = 1 << 18;
/// Blocks are a multiple of this many rows or columns wide (the last one
/// takes the rest).
const BLOCK_ALIGN: usize = 16;

/// `c = alpha a b` (or `c += alpha a b` with `accumulate`). Inside a rayon
/// pool of several threads a large product is split into blocks of output
/// rows or columns computed in parallel, with the same bits as one kernel
/// call (see the module's description).
pub fn matmul<T: faer::traits::ComplexField + Copy + Send + Sync>(
    c: &mut ArrayViewMut2<T>,
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    alpha: T,
    accumulate: bool,
) {
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!(c.dim(), (a.nrows(), b.ncols()), "output shape");
    let blocks = split_blocks(
        a.nrows(),
        b.ncols(),
        a.ncols(),
        rayon::current_num_threads(),
    );
    split_matmul(c.view_mut(), *a, *b, alpha, accumulate, blocks);
}

/// Into how many blocks a product of m x n outputs over k terms is split on
/// `threads` threads (1: not split). Never below two rows, columns or
/// terms, where faer would switch to other kernels (matrix-vector, rank
/// one), nor under 16^3 multiply-adds a block (faer's small-matrix kernel).
fn split_blocks(m: usize, n: usize, k: usize, threads: usize) -> usize {
    let work = m.saturating_mul(n).saturating_mul(k);
    if threads < 2 || work < SPLIT_WORK || m < 2 || n < 2 || k < 2 {
        return 1;
    }
    // The least block (BLOCK_ALIGN of the longer side) stays above faer's
    // small-matrix threshold.
    if work / m.max(n) * BLOCK_ALIGN <= 16 * 16 * 16 {
        return 1;
    }
    (work / BLOCK_WORK)
        .min(m.max(n) / BLOCK_ALIGN)
        .min(threads)
        .max(1)
}

/// `c = alpha a b` in `blocks` blocks along the longer side of `c`, halved
/// recursively with `rayon::join`.
fn split_matmul<T: faer::traits::ComplexField + Copy + Send + Sync>(
    mut c: ArrayViewMut2<T>,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    alpha: T,
    accumulate: bool,
    blocks: usize,
) {
    if blocks <= 1 {
        kernel(&mut c, &a, &b, alpha, accumulate);
        return;
    }
    let (m, n) = c.dim();
    let left = blocks / 2;
    // Every block is at least BLOCK_ALIGN wide: a side of len >= BLOCK_ALIGN
    // blocks is cut at a multiple of BLOCK_ALIGN at or below its share.
    let cut = |len: usize| len * left / blocks / BLOCK_ALIGN * BLOCK_ALIGN;
    if n >= m {
        let at = cut(n);
        let (c1, c2) = c.split_at(Axis(1), at);
        let (b1, b2) = b.split_at(Axis(1), at);
        rayon::join(
            || split_matmul(c1, a, b1, alpha, accumulate, left),
            || split_matmul(c2, a, b2, alpha, accumulate, blocks - left),
        );
    } else {
        let at = cut(m);
        let (c1, c2) = c.split_at(Axis(0), at);
        let (a1, a2) = a.split_at(Axis(0), at);
        rayon::join(
            || split_matmul(c1, a1, b, alpha, accumulate, left),
            || split_matmul(c2, a2, b, alpha, accumulate, blocks - left),
        );
    }
}

/// One sequential faer kernel call, on whichever thread runs it.
fn kernel<T: faer::traits::ComplexField + Copy>(
    c: &mut ArrayViewMut2<T>,
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    alpha: T,
    accumulate: bool,
) {
    let (lhs, rhs) = (faer_ref(a), faer_ref(b));
    faer::linalg::matmul::matmul(faer_mut(c), accum(accumulate), lhs, rhs, alpha, Par::Seq);
    clean_upper_state();
}

/// The eigendecomposition (eigenvectors as columns, eigenvalues ascending)
/// of the symmetric matrix `a`, of which only the lower triangle is read.
///
/// faer's convenience methods take their parallelism from the rayon pool
/// they run in, so their bits could depend on the run's thread count; here
/// every decomposition is sequential (`Par::Seq`), like every product.
pub fn symmetric_eigen(a: MatRef<'_, f64>) -> Option<(faer::Mat<f64>, Vec<f64>)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
    let n = a.nrows();
    let mut u = faer::Mat::<f64>::zeros(n, n);
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let scratch =
        self_adjoint_evd_scratch::<f64>(n, ComputeEigenvectors::Yes, Par::Seq, Default::default());
    let done = self_adjoint_evd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut MemBuffer::new(scratch)),
        Default::default(),
    );
    clean_upper_state();
    done.ok()?;
    let values = (0..n).map(|k| s.column_vector()[k]).collect();
    Some((u, values))
}

/// Solves `a x = b` for the symmetric positive definite `a` (lower
/// triangle read) by a sequential Cholesky factorisation; None when `a` is
/// not positive definite.
pub fn cholesky_solve(mut a: faer::Mat<f64>, mut b: faer::Mat<f64>) -> Option<faer::Mat<f64>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::{factor, solve};
    let n = a.nrows();
    let mut mem = MemBuffer::new(factor::cholesky_in_place_scratch::<f64>(
        n,
        Par::Seq,
        Default::default(),
    ));
    let factored = factor::cholesky_in_place(
        a.as_mut(),
        Default::default(),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    );
    if factored.is_ok() {
        let mut mem = MemBuffer::new(solve::solve_in_place_scratch::<f64>(n, b.ncols(), Par::Seq));
        solve::solve_in_place_with_conj(
            a.as_ref(),
            faer::Conj::No,
            b.as_mut(),
            Par::Seq,
            MemStack::new(&mut mem),
        );
    }
    clean_upper_state();
    factored.ok().map(|_| b)
}

/// The lower triangle (diagonal included) of `g += f' f`: half the work of
/// the full Gram matrix, and all a Cholesky solve reads. The strict upper
/// triangle of `g` is left as it was. Inside a rayon pool of several
/// threads a large one is cut in two (see [`gram_halves`]); the bits are
/// those of one call (a test below checks it).
pub fn gram_lower_add(g: &mut ArrayViewMut2<f64>, f: &ArrayView2<f64>) {
    let p = f.ncols();
    assert_eq!(g.dim(), (p, p), "Gram shape");
    let work = f.nrows().saturating_mul(p).saturating_mul(p) / 2;
    match gram_halves(p) {
        Some(h) if work >= SPLIT_WORK && rayon::current_num_threads() > 1 => {
            // Rows 0..h (a triangle) beside rows h.. (a rectangle left of
            // the diagonal block, then that block's triangle): halves of
            // equal work.
            let (top, mut bottom) = g.view_mut().split_at(Axis(0), h);
            let (left, right) = (f.slice(ndarray::s![.., ..h]), f.slice(ndarray::s![.., h..]));
            rayon::join(
                || gram_triangle(&mut top.slice_move(ndarray::s![.., ..h]), &left),
                || {
                    let (mut rect, mut triangle) = bottom.view_mut().split_at(Axis(1), h);
                    kernel(&mut rect, &right.t(), &left, 1.0, true);
                    gram_triangle(&mut triangle, &right);
                },
            );
        }
        _ => gram_triangle(g, f),
    }
}

/// Where [`gram_lower_add`] cuts a p x p triangle: the top triangle of
/// side h holds half the area at h = p / sqrt 2 (a multiple of 16, as the
/// kernels' blocks); None when p is too small to cut.
fn gram_halves(p: usize) -> Option<usize> {
    let h = (p as f64 / std::f64::consts::SQRT_2) as usize / BLOCK_ALIGN * BLOCK_ALIGN;
    (h >= BLOCK_ALIGN && h < p).then_some(h)
}

/// One sequential call of faer's triangular product: the lower triangle of
/// `g += f' f`.
fn gram_triangle(g: &mut ArrayViewMut2<f64>, f: &ArrayView2<f64>) {
    use faer::linalg::matmul::triangular::{self, BlockStructure};
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
#[inline]
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

/// Rows summed together by one task of [`column_means`] and
/// [`mean_square`]: the partial sums are combined in a fixed order, so the
/// results do not depend on the thread count.
const ROWS_PER_TASK: usize = 256;

/// The mean of each column of `x` (n x d), summed in f64.
pub fn column_means(x: ArrayView2<f32>) -> Array1<f64> {
    use rayon::prelude::*;
    let (n, d) = x.dim();
    let partial: Vec<Array1<f64>> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let mut sum = Array1::<f64>::zeros(d);
            let rows = x.slice(ndarray::s![
                t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n),
                ..
            ]);
            for row in rows.rows() {
                sum.zip_mut_with(&row, |s, &v| *s += v as f64);
            }
            sum
        })
        .collect();
    let total = partial
        .into_iter()
        .fold(Array1::<f64>::zeros(d), |acc, p| acc + p);
    total / n.max(1) as f64
}

/// The mean of the squared entries of `x`: the trace of its rows' second
/// moment over d.
pub fn mean_square(x: ArrayView2<f32>) -> f64 {
    use rayon::prelude::*;
    let (n, d) = x.dim();
    let partial: Vec<f64> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            x.slice(ndarray::s![
                t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(n),
                ..
            ])
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
        })
        .collect();
    partial.iter().sum::<f64>() / (n * d).max(1) as f64
}

/// Leading eigenpairs of a sample covariance (see [`leading_eigen`]).
#[derive(Clone, Debug)]
pub struct Eigen {
    /// Eigenvalues, largest first.
    pub values: Vec<f64>,
    /// The eigenvectors as rows, in the order of `values`.
    pub vectors: ndarray::Array2<f64>,
    /// Whether every eigenpair of nonzero eigenvalue is here.
    pub complete: bool,
}

/// A Ritz vector is converged when |C u - theta u| <= this times theta.
const EIGEN_TOLERANCE: f64 = 1e-4;
/// Subspace iterations at most.
const EIGEN_ROUNDS: usize = 300;

/// The `block` leading eigenpairs of the sample covariance C = X'X / n of
/// the rows of `x` (n x d, centred), of which the first `wanted(values)`
/// are converged. A block of at least d / 2 directions costs about as
/// much as C itself: C is formed (n d^2) and decomposed exactly. Otherwise
/// (the block at most n: C's rank) subspace iteration from the span of the
/// first `block` samples, exact at once when they are all n: each
/// round two products with X (2 n d block multiply-adds, never a d x d
/// matrix), Rayleigh–Ritz on the block, until the wanted Ritz vectors'
/// residuals are below [`EIGEN_TOLERANCE`]. A spike of eigenvalue lambda
/// converges like (lambda_(block+1) / lambda)^rounds.
pub fn leading_eigen(x: ArrayView2<f32>, block: usize, wanted: impl Fn(&[f64]) -> usize) -> Eigen {
    let (n, d) = x.dim();
    let block = block.min(n);
    if 2 * block >= d || block == 0 {
        return full_eigen(x);
    }
    let inv_n = 1.0 / n as f32;
    // The rows of q span the block.
    let mut q = x.slice(ndarray::s![..block, ..]).mapv(|v| v as f64);
    let mut z = ndarray::Array2::<f32>::zeros((n, block));
    let mut y = ndarray::Array2::<f32>::zeros((block, d));
    for round in 0.. {
        orthonormalise_rows(&mut q);
        let q32 = q.mapv(|v| v as f32);
        matmul(&mut z.view_mut(), &x, &q32.t(), 1.0, false);
        // y = q C, row by row.
        matmul(&mut y.view_mut(), &z.t(), &x, inv_n, false);
        let cq = y.mapv(|v| v as f64);
        let mut t = ndarray::Array2::<f64>::zeros((block, block));
        matmul(&mut t.view_mut(), &q.view(), &cq.t(), 1.0, false);
        let t = (&t + &t.t()) * 0.5;
        let t = faer::Mat::<f64>::from_fn(block, block, |i, j| t[[i, j]]);
        let Some((v, s)) = symmetric_eigen(t.as_ref()) else {
            break;
        };
        // Largest first.
        let v = ndarray::Array2::from_shape_fn((block, block), |(i, j)| v[(j, block - 1 - i)]);
        let values: Vec<f64> = (0..block).map(|j| s[block - 1 - j]).collect();
        let mut ritz = ndarray::Array2::<f64>::zeros((block, d));
        matmul(&mut ritz.view_mut(), &v.view(), &q.view(), 1.0, false);
        let mut c_ritz = ndarray::Array2::<f64>::zeros((block, d));
        matmul(&mut c_ritz.view_mut(), &v.view(), &cq.view(), 1.0, false);
        let converged = (0..wanted(&values).min(block)).all(|j| {
            let residual = (&c_ritz.row(j) - &(&ritz.row(j) * values[j]))
                .iter()
                .map(|r| r * r)
                .sum::<f64>()
                .sqrt();
            residual <= EIGEN_TOLERANCE * values[j].abs()
        });
        if converged || round + 1 == EIGEN_ROUNDS {
            return Eigen {
                values,
                vectors: ritz,
                // The n samples span every direction of nonzero variance.
                complete: block == n,
            };
        }
        q = c_ritz;
    }
    full_eigen(x)
}

/// Every eigenpair of X'X / n, from C itself.
fn full_eigen(x: ArrayView2<f32>) -> Eigen {
    let (n, d) = x.dim();
    let x64 = x.mapv(|v| v as f64);
    let mut c = ndarray::Array2::<f64>::zeros((d, d));
    matmul(
        &mut c.view_mut(),
        &x64.t(),
        &x64.view(),
        1.0 / n.max(1) as f64,
        false,
    );
    let c = faer::Mat::<f64>::from_fn(d, d, |i, j| c[[i, j]]);
    let (values, vectors) = match symmetric_eigen(c.as_ref()) {
        Some((v, s)) => (
            (0..d).map(|j| s[d - 1 - j]).collect(),
            ndarray::Array2::from_shape_fn((d, d), |(i, j)| v[(j, d - 1 - i)]),
        ),
        None => (vec![0.0; d], ndarray::Array2::eye(d)),
    };
    Eigen {
        values,
        vectors,
        complete: true,
    }
}

/// Orthonormalises the rows of `q` in order (modified Gram–Schmidt, twice
/// for accuracy); a row in the span of the earlier ones becomes zero.
fn orthonormalise_rows(q: &mut ndarray::Array2<f64>) {
    for _ in 0..2 {
        for i in 0..q.nrows() {
            let (done, mut rest) = q.view_mut().split_at(Axis(0), i);
            let mut row = rest.row_mut(0);
            for prev in done.rows() {
                let proj = row.dot(&prev);
                row.scaled_add(-proj, &prev);
            }
            let norm = row.dot(&row).sqrt();
            if norm > 1e-12 {
                row /= norm;
            } else {
                row.fill(0.0);
            }
        }
    }
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

    /// Samples (n x d) with variance 1 plus `spikes` along the first axes,
    /// from a fixed pattern of pseudo-random numbers.
    fn spiked_samples(n: usize, d: usize, spikes: &[f32]) -> Array2<f32> {
        let mut rng = crate::numerics::rng::stream(2, crate::numerics::rng::StreamId::Test);
        let mut x = Array2::<f32>::zeros((n, d));
        crate::numerics::normal::fill(&mut rng, x.as_slice_mut().unwrap());
        for (j, &s) in spikes.iter().enumerate() {
            x.column_mut(j).mapv_inplace(|v| v * (1.0 + s).sqrt());
        }
        x
    }

    /// Subspace iteration finds the wanted eigenpairs of the full
    /// decomposition, with the same bits on any thread count.
    #[test]
    fn leading_eigenpairs_match_the_full_decomposition_on_any_thread_count() {
        let x = spiked_samples(1500, 120, &[9.0, 4.0, 2.0]);
        let full = full_eigen(x.view());
        let leading = |threads: usize| {
            crate::threads::install(Some(threads), || Ok(leading_eigen(x.view(), 16, |_| 3)))
                .unwrap()
        };
        let one = leading(1);
        assert!(!one.complete && one.values.len() == 16);
        for j in 0..3 {
            let gap = (one.values[j] - full.values[j]).abs() / full.values[j];
            assert!(
                gap < 1e-6,
                "eigenvalue {j}: {} vs {}",
                one.values[j],
                full.values[j]
            );
            let along = one.vectors.row(j).dot(&full.vectors.row(j)).abs();
            assert!(along > 1.0 - 1e-6, "eigenvector {j}: {along}");
        }
        let three = leading(3);
        assert_eq!(one.values, three.values);
        assert_eq!(one.vectors, three.vectors);
        let sums = |threads: usize| {
            crate::threads::install(Some(threads), || {
                Ok((column_means(x.view()), mean_square(x.view())))
            })
            .unwrap()
        };
        assert_eq!(sums(1), sums(3));
        let (means, square) = sums(2);
        let exact = x.mapv(|v| v as f64).mean_axis(Axis(0)).unwrap();
        assert!((&means - &exact).iter().all(|e| e.abs() < 1e-12));
        let exact_square = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        assert!((square - exact_square).abs() < 1e-12);
    }

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

    /// Values with full mantissas, so that any change in the order of the
    /// sums would show in the last bits.
    fn noisy<T: From<f32>>(rows: usize, cols: usize, seed: u64) -> Array2<T> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Array2::from_shape_simple_fn((rows, cols), || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            T::from((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        })
    }

    /// Every block split of the training loop's shapes (and k beyond faer's
    /// 512-term chunks) gives the bits of one kernel call, for row-major and
    /// transposed operands, replacing and accumulating.
    #[test]
    fn block_split_products_are_bit_identical_to_one_kernel_call() {
        fn check<T>(m: usize, k: usize, n: usize)
        where
            T: faer::traits::ComplexField + Copy + Send + Sync + From<f32> + PartialEq,
            T: std::fmt::Debug + ndarray::LinalgScalar,
        {
            let a = noisy::<T>(m, k, 1);
            let b = noisy::<T>(k, n, 2);
            let bt = b.t().as_standard_layout().into_owned();
            let at = a.t().as_standard_layout().into_owned();
            let start = noisy::<T>(m, n, 3);
            let alpha = T::from(0.75);
            for accumulate in [false, true] {
                for (a, b) in [(a.view(), b.view()), (at.t(), bt.t()), (a.view(), bt.t())] {
                    let mut whole = start.clone();
                    kernel(&mut whole.view_mut(), &a, &b, alpha, accumulate);
                    for blocks in 2..=5 {
                        if m.max(n) < BLOCK_ALIGN * blocks {
                            continue;
                        }
                        let mut split = start.clone();
                        split_matmul(split.view_mut(), a, b, alpha, accumulate, blocks);
                        assert!(
                            split == whole,
                            "({m} x {k})({k} x {n}) in {blocks} blocks, accumulate {accumulate}"
                        );
                        // A transposed output.
                        let mut split_t = start.t().as_standard_layout().into_owned();
                        split_matmul(
                            split_t.view_mut().reversed_axes(),
                            a,
                            b,
                            alpha,
                            accumulate,
                            blocks,
                        );
                        assert!(split_t.t() == whole, "transposed output, {blocks} blocks");
                    }
                }
            }
        }
        // Phase I's whitening, the step's two products (phase I, vanilla),
        // the readout's features, and long inner sums.
        for (m, k, n) in [
            (8, 256, 256),
            (8, 1024, 1024),
            (64, 1024, 8),
            (8, 64, 1024),
            (64, 512, 64),
            (64, 64, 512),
            (4096, 32, 64),
            (33, 1500, 47),
            (2, 700, 300),
        ] {
            check::<f32>(m, k, n);
            check::<f64>(m, k, n);
        }
    }

    #[test]
    fn only_large_products_are_split_and_blocks_stay_wide() {
        assert_eq!(split_blocks(8, 1024, 1024, 1), 1);
        assert_eq!(split_blocks(8, 32, 32, 4), 1);
        assert_eq!(split_blocks(8, 1024, 1024, 4), 4);
        assert_eq!(split_blocks(8, 1024, 1024, 64), 32);
        assert_eq!(split_blocks(1, 1 << 20, 8, 4), 1);
        assert_eq!(split_blocks(1 << 20, 4, 1, 4), 1);
        // matmul splits in a pool of several threads, with the same bits.
        let a = noisy::<f32>(8, 1024, 4);
        let w = noisy::<f32>(1024, 1024, 5);
        let mut one = Array2::zeros((8, 1024));
        matmul(&mut one.view_mut(), &a.view(), &w.view(), 1.0, false);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut three = Array2::zeros((8, 1024));
        pool.install(|| matmul(&mut three.view_mut(), &a.view(), &w.view(), 1.0, false));
        assert!(one == three);
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

    /// In a pool of two threads a large Gram matrix is computed in two
    /// halves side by side, with the bits of one call: the readouts' shapes
    /// (4,096 rows, 129 and 257 features, chunks accumulated) and a wide one.
    #[test]
    fn the_split_gram_triangle_has_the_bits_of_one_call() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (n, p) in [(4096, 129), (4096, 257), (1000, 1025)] {
            let f = noisy::<f64>(n, p, p as u64);
            let (mut one, mut two) = (Array2::zeros((p, p)), Array2::zeros((p, p)));
            for _ in 0..2 {
                gram_triangle(&mut one.view_mut(), &f.view());
                pool.install(|| gram_lower_add(&mut two.view_mut(), &f.view()));
            }
            assert!(gram_halves(p).is_some(), "p = {p} is cut");
            let same = one
                .iter()
                .zip(&two)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "n = {n}, p = {p}");
        }
    }
}
