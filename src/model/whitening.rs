//! Phase I's whitening W = Sigma^(-1/2), in low-rank form.
//!
//! The inputs are x = rho v_c + z with z ~ N(0, sigma^2 I): their covariance
//! is the noise level sigma^2 times the identity plus at most C - 1 spikes,
//! the spread of the cluster centres. From n samples in d dimensions the
//! sample eigenvalues of the noise spread over the Marchenko–Pastur bulk
//! sigma^2 [(1 - sqrt(d/n))^2, (1 + sqrt(d/n))^2] around a true value of
//! sigma^2: inverting them, as a full Sigma^(-1/2) of the estimate would,
//! distorts the inputs by up to a factor 1 / (1 -+ sqrt(d/n)) (0.67 to 2
//! at d = 1024 from 4,096 samples), and costs d^2 a direction. So the
//! estimate keeps only the eigen-directions whose sample eigenvalue lies
//! above the bulk's edge (with a margin, [`EDGE_MARGIN`]): the data decide
//! how many. The rest of the space is the bulk, rescaled by 1 / sigma:
//!
//!   W = (1/sigma) (I - U'U) + U' diag(lambda^(-1/2)) U,
//!
//! with the k spike directions as the rows of U. Applying it to M
//! directions costs 2 M d k multiply-adds instead of M d^2, and it is kept
//! in k d + k + 1 numbers instead of d^2.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::numerics::linalg::{self, dot};

/// Sample eigenvalues at least this factor above the noise bulk's edge
/// sigma^2 (1 + sqrt(d/n))^2 are spikes. The largest eigenvalue of pure
/// noise exceeds the edge by Tracy–Widom fluctuations of about
/// sigma^2 n^(-2/3) (0.01 sigma^2 at n = 4,096, for every d up to n): the
/// margin is several of them.
pub const EDGE_MARGIN: f64 = 1.05;

/// The leading eigen-directions searched at first; more when nearly all
/// of them turn out to be spikes.
const FIRST_BLOCK: usize = 32;
/// Spikes must leave at least this many of the block's directions in the
/// bulk, so that none is missed.
const BULK_GUARD: usize = 4;

/// W = Sigma^(-1/2) as the noise bulk's scale and the spikes (see the
/// module's description).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Whitening {
    /// 1 / sigma: the scale of every direction orthogonal to the spikes.
    pub bulk: f32,
    /// The spikes' eigen-directions (k x d, orthonormal rows), largest
    /// eigenvalue first.
    pub directions: Array2<f32>,
    /// lambda^(-1/2) of each spike: the scale along its direction.
    pub scales: Vec<f32>,
}

impl Whitening {
    /// The whitening of the centred samples `xc` (n x d, rows).
    pub fn estimate(xc: ArrayView2<f32>) -> Self {
        let (n, d) = xc.dim();
        let variance = linalg::mean_square(xc);
        let mut block = FIRST_BLOCK;
        loop {
            let eigen = linalg::leading_eigen(xc, block, |values| spikes(values, variance, n, d).0);
            let (k, sigma2) = spikes(&eigen.values, variance, n, d);
            if k + BULK_GUARD <= eigen.values.len() || eigen.complete {
                // Inputs without variance (never the task's) are left as they are.
                let bulk = if sigma2 > 1e-12 {
                    1.0 / sigma2.sqrt()
                } else {
                    1.0
                };
                return Whitening {
                    bulk: bulk as f32,
                    directions: eigen.vectors.slice(ndarray::s![..k, ..]).mapv(|v| v as f32),
                    scales: eigen.values[..k]
                        .iter()
                        .map(|&l| (1.0 / l.sqrt()) as f32)
                        .collect(),
                };
            }
            block *= 2;
        }
    }

    /// The number of spikes k.
    pub fn spikes(&self) -> usize {
        self.scales.len()
    }

    /// `out = a W` row by row: bulk a + ((a U') (scales - bulk)) U.
    pub fn apply(&self, a: &Array2<f32>, out: &mut Array2<f32>) {
        if out.dim() != a.dim() {
            *out = Array2::zeros(a.dim());
        }
        let a = a.as_standard_layout();
        for (row, mut seen) in a.rows().into_iter().zip(out.rows_mut()) {
            let row = row.as_slice().expect("standard layout");
            let seen = seen.as_slice_mut().expect("a new array is contiguous");
            for (s, &v) in seen.iter_mut().zip(row) {
                *s = self.bulk * v;
            }
            for (u, &scale) in self.directions.rows().into_iter().zip(&self.scales) {
                let u = u.to_slice().expect("standard layout");
                let coef = dot(row, u) * (scale - self.bulk);
                for (s, &ui) in seen.iter_mut().zip(u) {
                    *s += coef * ui;
                }
            }
        }
    }

    /// W as a d x d matrix (d^2 numbers: for tests and small d only).
    pub fn dense(&self, d: usize) -> Array2<f64> {
        let mut w = Array2::<f64>::eye(d) * self.bulk as f64;
        for (u, &scale) in self.directions.rows().into_iter().zip(&self.scales) {
            let u = u.mapv(|v| v as f64);
            let extra = scale as f64 - self.bulk as f64;
            for i in 0..d {
                for j in 0..d {
                    w[[i, j]] += extra * u[i] * u[j];
                }
            }
        }
        w
    }
}

/// How many of the leading sample eigenvalues `values` (descending) are
/// spikes, and the noise level sigma^2 they leave: the mean of the other
/// d - k eigenvalues, from the mean square `variance` (the trace / d).
/// Both are found together: sigma^2 sets the edge, the spikes leave sigma^2.
fn spikes(values: &[f64], variance: f64, n: usize, d: usize) -> (usize, f64) {
    let edge = (1.0 + (d as f64 / n as f64).sqrt()).powi(2) * EDGE_MARGIN;
    let (mut k, mut sigma2) = (0, variance);
    // sigma^2 only falls as spikes are taken out, so k only grows: at most
    // values.len() rounds.
    for _ in 0..=values.len() {
        let next = values.iter().take_while(|&&l| l > sigma2 * edge).count();
        if next == k && k > 0 || next == 0 {
            break;
        }
        k = next;
        if k >= d {
            break;
        }
        sigma2 = ((variance * d as f64 - values[..k].iter().sum::<f64>()) / (d - k) as f64)
            .max(f64::MIN_POSITIVE);
    }
    (k, sigma2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::normal;
    use crate::numerics::rng::{stream, StreamId};

    /// Samples of N(0, sigma^2 I) plus spikes along the first coordinates.
    fn spiked(n: usize, d: usize, sigma: f32, spikes: &[f32]) -> Array2<f32> {
        let mut x = Array2::<f32>::zeros((n, d));
        normal::fill(
            &mut stream(3, StreamId::Test),
            x.as_slice_mut().expect("contiguous"),
        );
        x *= sigma;
        for (j, &s) in spikes.iter().enumerate() {
            x.column_mut(j)
                .mapv_inplace(|v| v * (1.0 + s / (sigma * sigma)).sqrt());
        }
        let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
        x - &mean
    }

    /// The spikes above the edge are found, weak ones inside the bulk are
    /// not, and W Sigma W is the identity on the true covariance.
    #[test]
    fn finds_the_spikes_above_the_bulk_and_whitens_them() {
        for (d, sigma) in [(32, 1.0f32), (200, 1.0), (300, 2.0)] {
            // Spike strengths over sigma^2: 8, 3 and 1 are above the edge
            // (sqrt(d/n) <= 0.27 here), 0.02 is not.
            let strengths = [8.0, 3.0, 1.0, 0.02];
            let s2 = sigma * sigma;
            let spikes: Vec<f32> = strengths.iter().map(|&s| s * s2).collect();
            let x = spiked(4096, d, sigma, &spikes);
            let w = Whitening::estimate(x.view());
            assert_eq!(w.spikes(), 3, "d = {d}");
            assert!(
                (w.bulk - 1.0 / sigma).abs() < 0.02 / sigma,
                "bulk {}",
                w.bulk
            );
            for (j, &s) in strengths[..3].iter().enumerate() {
                let along = w.directions[[j, j]].abs();
                assert!(along > 0.9, "d = {d}: spike {j} direction {along}");
                let lambda = s2 as f64 * (1.0 + s as f64);
                let whitened = w.scales[j] as f64 * lambda.sqrt();
                // The sample eigenvalue of a spike ell sits above the true
                // one by about (1 + (d/n) / ell).
                assert!((whitened - 1.0).abs() < 0.1, "d = {d}: {whitened}");
            }
        }
    }

    /// `apply` is the product with the dense W.
    #[test]
    fn apply_is_the_dense_product() {
        let d = 40;
        let x = spiked(2048, d, 1.5, &[20.0, 6.0]);
        let w = Whitening::estimate(x.view());
        assert_eq!(w.spikes(), 2);
        let a = x.slice(ndarray::s![..5, ..]).to_owned();
        let mut out = Array2::zeros((0, 0));
        w.apply(&a, &mut out);
        let dense = a.mapv(|v| v as f64).dot(&w.dense(d));
        let gap = (&out.mapv(|v| v as f64) - &dense)
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(gap < 1e-5, "{gap}");
    }

    /// Fewer samples than the first block, in many dimensions: the block
    /// is the samples' span, exact at once, and no d x d matrix is formed.
    /// (With d / n = 100 the bulk's edge is only asymptotic, so noise
    /// directions may count as spikes too; the strong spike leads.)
    #[test]
    fn fewer_samples_than_the_block() {
        let x = spiked(30, 3000, 1.0, &[400.0]);
        let w = Whitening::estimate(x.view());
        assert!((1..30).contains(&w.spikes()), "{}", w.spikes());
        // With d / n = 100 the sample direction keeps about 0.9 of the true one.
        assert!(w.directions[[0, 0]].abs() > 0.8, "{}", w.directions[[0, 0]]);
        assert!(w.bulk.is_finite() && w.scales.iter().all(|s| s.is_finite()));
    }

    /// Pure noise has no spike: W is 1 / sigma.
    #[test]
    fn pure_noise_is_only_rescaled() {
        for d in [16, 100, 1000] {
            let x = spiked(1024, d, 0.5, &[]);
            let w = Whitening::estimate(x.view());
            assert_eq!(w.spikes(), 0, "d = {d}");
            assert!((w.bulk - 2.0).abs() < 0.02, "d = {d}: {}", w.bulk);
        }
    }
}
