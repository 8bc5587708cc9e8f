//! What is measured (docs/algorithm.md, "What is measured"): overlaps,
//! weak recovery, router quality, test error; and the records written to
//! `metrics.jsonl`.
//!
//! An *overlap* is |<w, w*>| between a unit first-layer row w and a task
//! direction (a random direction has about d^(-1/2); `metrics.recovery_threshold`,
//! 0.5 by default, counts as weak recovery). Routing is measured through a
//! *confusion* matrix, samples of cluster c (rows) sent to expert m
//! (columns), from which come the routing purity and, for each cluster, the
//! expert that serves it:
//!
//! ```
//! use clustermoe::metrics::{confusion, routing_purity, serving_expert};
//!
//! // Six samples of clusters 0 and 1, sent to experts 1, 1, 0, 0, 0, 1.
//! let clusters = [0, 0, 0, 1, 1, 1];
//! let assigned = [1, 1, 0, 0, 0, 1];
//! let m = confusion(&clusters, &assigned, 2, 2);
//! assert_eq!(m, vec![vec![1, 2], vec![2, 1]]);
//! // Expert 0's majority is cluster 1 and expert 1's cluster 0: 4 of 6.
//! assert!((routing_purity(&m) - 4.0 / 6.0).abs() < 1e-12);
//! assert_eq!(serving_expert(&m), vec![1, 0]);
//! ```

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::phase::{ModelKind, Phase};
use crate::task::{Batch, Task};

pub mod samples_to;

/// The overlap |<row, target>| of every row of `dirs` (unit rows, in f32)
/// with `target` (a unit task direction, in f64), summed in f64.
pub fn overlaps(dirs: ArrayView2<f32>, target: ArrayView1<f64>) -> Vec<f64> {
    dirs.axis_iter(Axis(0))
        .map(|row| overlap(row, target))
        .collect()
}

/// |<row, target>| in f64, in eight partial sums: a single chain of adds
/// would wait on each one (phase I checks M C of these every step).
fn overlap(row: ArrayView1<f32>, target: ArrayView1<f64>) -> f64 {
    let (a, b) = (row.as_standard_layout(), target.as_standard_layout());
    let (a, b) = (
        a.as_slice().expect("standard"),
        b.as_slice().expect("standard"),
    );
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = (ca.remainder().iter().zip(cb.remainder()))
        .map(|(&x, &y)| x as f64 * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] as f64 * y[k];
        }
    }
    (acc.iter().sum::<f64>() + tail).abs()
}

/// The largest |<row, target>| over the rows of `dirs` (0 when there are
/// none). Allocates nothing: phase I checks it every step.
pub fn best_overlap(dirs: ArrayView2<f32>, target: ArrayView1<f64>) -> f64 {
    dirs.axis_iter(Axis(0))
        .map(|row| overlap(row, target))
        .fold(0.0, f64::max)
}

/// The overlaps |<row_m, target_c>| of every row of `dirs` (outer index m)
/// with every row of `targets` (inner index c): for phase-I experts against
/// the w*_c, an M x C matrix.
pub fn overlap_matrix(dirs: ArrayView2<f32>, targets: ArrayView2<f64>) -> Vec<Vec<f64>> {
    let per_target: Vec<Vec<f64>> = targets
        .axis_iter(Axis(0))
        .map(|t| overlaps(dirs, t))
        .collect();
    (0..dirs.nrows())
        .map(|m| per_target.iter().map(|o| o[m]).collect())
        .collect()
}

/// The signed cosine of every router row theta_k with every cluster centre
/// v_c (`v` holds unit centres as rows): a K x C matrix in [-1, 1]; 0 for a
/// zero router row.
pub fn router_cosines(theta: &Array2<f32>, v: &Array2<f64>) -> Vec<Vec<f64>> {
    theta
        .axis_iter(Axis(0))
        .map(|row| {
            let norm = row.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
            v.axis_iter(Axis(0))
                .map(|vc| {
                    let dot: f64 = row.iter().zip(vc).map(|(&a, &b)| a as f64 * b).sum();
                    if norm > 0.0 {
                        dot / norm
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// The confusion matrix: how many samples of each cluster (`c` rows) were
/// sent to each expert (`k` columns), from each sample's cluster in
/// `clusters` and expert in `assigned`.
///
/// # Panics
/// If a cluster is not below `c` or an expert not below `k`.
pub fn confusion(clusters: &[usize], assigned: &[usize], c: usize, k: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; k]; c];
    for (&ci, &e) in clusters.iter().zip(assigned) {
        m[ci][e] += 1;
    }
    m
}

/// The routing purity, in [0, 1]: the share of samples sent to an expert
/// whose majority cluster is their own (each expert's largest entry in its
/// column of the confusion matrix, summed, over all samples); 0 for no
/// samples. With C clusters a perfect router scores 1.
pub fn routing_purity(confusion: &[Vec<u64>]) -> f64 {
    let k = confusion.first().map_or(0, Vec::len);
    let total: u64 = confusion.iter().flatten().sum();
    let majority: u64 = (0..k)
        .map(|e| confusion.iter().map(|row| row[e]).max().unwrap_or(0))
        .sum();
    if total == 0 {
        0.0
    } else {
        majority as f64 / total as f64
    }
}

/// Purity of the best linear router, Bayes-optimal for equally likely
/// clusters N(rho v_c, I): for two clusters its boundary is a hyperplane
/// through the origin, so a linear router without bias attains
/// Phi(rho |v_1 - v_2| / 2); for more clusters on orthonormal centres it
/// routes to the largest <v_c, x> and is right with probability
/// E[Phi(rho + z)^(C-1)], z ~ N(0, 1). None for more than two clusters
/// on centres that are not orthonormal.
pub fn best_linear_router_purity(task: &Task) -> Option<f64> {
    let c = task.clusters();
    let phi = |a: f64| 0.5 * libm::erfc(-a / std::f64::consts::SQRT_2);
    if c == 2 {
        let gap = &task.v.row(0) - &task.v.row(1);
        return Some(phi(task.rho * gap.dot(&gap).sqrt() / 2.0));
    }
    let gram = task.v.dot(&task.v.t());
    let orthonormal = gram
        .indexed_iter()
        .all(|((i, j), &g)| (g - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
    if c < 2 || !orthonormal {
        return if c == 1 { Some(1.0) } else { None };
    }
    // E[Phi(rho + z)^(C-1)] by the trapezoid rule on [-12, 12]: the
    // integrand is smooth and its tails are below 1e-30 there.
    let n = 24_000;
    let h = 24.0 / n as f64;
    let sum: f64 = (0..=n)
        .map(|i| {
            let z = -12.0 + i as f64 * h;
            let weight = if i == 0 || i == n { 0.5 } else { 1.0 };
            let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
            weight * density * phi(task.rho + z).powi(c as i32 - 1)
        })
        .sum();
    Some(sum * h)
}

/// For each cluster (row of the confusion matrix), the expert that receives
/// most of its samples (the lowest index among ties; 0 for an empty row).
pub fn serving_expert(confusion: &[Vec<u64>]) -> Vec<usize> {
    confusion
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by_key(|&(i, &n)| (n, std::cmp::Reverse(i)))
                .map_or(0, |(i, _)| i)
        })
        .collect()
}

/// Test error of predictions on a labelled batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestError {
    /// Mean squared error (prediction - y)^2 over the batch.
    pub test_mse: f64,
    /// Relative MSE: `test_mse` divided by Var(y), the variance of the
    /// labels; predicting the mean of y scores 1.
    pub test_rel_mse: f64,
    /// Per cluster: mean squared error on that cluster's samples divided by Var(y).
    pub per_cluster_rel_mse: Vec<f64>,
}

/// Var(y): the variance of the labels (the mean squared deviation from
/// their mean, divided by n, in f64), the denominator of every relative MSE.
pub fn label_variance(y: &[f32]) -> f64 {
    let n = y.len() as f64;
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n
}

/// The test error of `prediction` (one value per sample of `test`), with
/// Var(y) given as `var_y` (see [`label_variance`]) and the per-cluster
/// errors over `clusters` clusters (a cluster without samples gets 0).
pub fn test_error(
    prediction: &Array1<f64>,
    test: &Batch,
    clusters: usize,
    var_y: f64,
) -> TestError {
    let mut sum = vec![0.0; clusters];
    let mut count = vec![0usize; clusters];
    for ((&p, &y), &c) in prediction.iter().zip(&test.y).zip(&test.c) {
        sum[c] += (p - y as f64).powi(2);
        count[c] += 1;
    }
    let mse = sum.iter().sum::<f64>() / test.len() as f64;
    TestError {
        test_mse: mse,
        test_rel_mse: mse / var_y,
        per_cluster_rel_mse: sum
            .iter()
            .zip(&count)
            .map(|(s, &n)| s / n.max(1) as f64 / var_y)
            .collect(),
    }
}

/// The best overlap of the neuron rows `w` with each local direction w*_c
/// (one per cluster) and with the global direction w*_g of `task`.
pub fn neuron_overlaps(task: &Task, w: ArrayView2<f32>) -> (Vec<f64>, f64) {
    let local = (0..task.clusters())
        .map(|c| best_overlap(w, task.w.row(c)))
        .collect();
    (local, best_overlap(w, task.wg.view()))
}

/// One line of `metrics.jsonl`. Fields that do not apply are omitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The model the record is of (`"moe"` or `"vanilla"`).
    pub model: ModelKind,
    /// Phases I to IV for the MoE, train and readout for the vanilla
    /// network, test at the end.
    pub phase: Phase,
    /// Step within the phase (after the step).
    pub step: u64,
    /// Samples this model has drawn so far.
    pub samples: u64,
    /// The learning rate of the step, where the phase has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Phase I: |<u_m, w*_c>| per expert (M x C).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_local_overlap: Option<Vec<Vec<f64>>>,
    /// Phase I: |<u_m, w*_g>| per expert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_global_overlap: Option<Vec<f64>>,
    /// Phase I: |<u_m, v_c>| per expert (M x C).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_centre_overlap: Option<Vec<Vec<f64>>>,
    /// Phase II: cosine(theta_k, v_c) per routed expert (K x C).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_cosine: Option<Vec<Vec<f64>>>,
    /// Phase II on: routing purity on the probe samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_purity: Option<f64>,
    /// Per cluster: best |<w, w*_c>| among the neurons serving it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_overlap_per_cluster: Option<Vec<f64>>,
    /// Per cluster: best |<w, w*_g>| among the neurons serving it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_overlap_per_cluster: Option<Vec<f64>>,
    /// Per cluster: share of the serving neurons with |<w, w*_c>| >= the recovery threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_aligned_share: Option<Vec<f64>>,
    /// Per cluster: share of the serving neurons with |<w, w*_g>| >= the recovery threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_aligned_share: Option<Vec<f64>>,
    /// Test records: the test mean squared error ([`TestError::test_mse`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_mse: Option<f64>,
    /// Test records: the test MSE over Var(y) ([`TestError::test_rel_mse`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_rel_mse: Option<f64>,
    /// Test records: per cluster, its test MSE over Var(y).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_cluster_rel_mse: Option<Vec<f64>>,
    /// Joint training: the mean total loss since the last record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Joint training: the squared loss (y - F)^2 / 2 since the last record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_main: Option<f64>,
    /// Joint training: the weighted load-balancing loss since the last record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_balance: Option<f64>,
    /// Joint training: the weighted router z-loss since the last record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_z: Option<f64>,
    /// Joint training: probe samples of cluster c (rows) whose largest gate is expert m (columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<u64>>>,
    /// Joint training: share of the probe samples whose largest gate is each expert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert_load: Option<Vec<f64>>,
    /// Joint training: mean entropy (nats) of the router's softmax on the probe samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_entropy: Option<f64>,
    /// Joint training: experts that are the largest gate of no probe sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_experts: Option<Vec<usize>>,
    /// Joint training: the relative error (MSE over Var(y)) on the probe samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_rel_mse: Option<f64>,
    /// A record of its own: the first probe that found this target of
    /// samples to learn reached ([`samples_to::Target`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<samples_to::Target>,
}

/// The routing of a jointly trained MoE on a batch (noise-free gates):
/// each sample counts for the expert with its largest gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JointRouting {
    /// Samples of cluster c (rows) sent to expert m (columns).
    pub confusion: Vec<Vec<u64>>,
    /// The routing purity of `confusion` ([`routing_purity`]).
    pub purity: f64,
    /// Share of the samples sent to each expert.
    pub expert_load: Vec<f64>,
    /// Mean entropy (nats) of softmax(Theta (x - c)); ln M is uniform.
    pub router_entropy: f64,
    /// Experts sent no sample.
    pub dead_experts: Vec<usize>,
}

impl JointRouting {
    /// Measures the routing of a forward pass over samples of `clusters`.
    pub(crate) fn measure(
        fwd: &crate::model::joint::Forward,
        clusters: &[usize],
        c: usize,
    ) -> Self {
        let m = fwd.probs.ncols();
        let confusion = confusion(clusters, &fwd.assigned, c, m);
        let n = fwd.assigned.len().max(1) as f64;
        let expert_load: Vec<f64> = (0..m)
            .map(|e| confusion.iter().map(|r| r[e]).sum::<u64>() as f64 / n)
            .collect();
        let router_entropy = fwd
            .probs
            .axis_iter(Axis(0))
            .map(|p| {
                -p.iter()
                    .filter(|&&v| v > 0.0)
                    .map(|&v| v * v.ln())
                    .sum::<f64>()
            })
            .sum::<f64>()
            / n;
        JointRouting {
            purity: routing_purity(&confusion),
            dead_experts: (0..m).filter(|&e| expert_load[e] == 0.0).collect(),
            confusion,
            expert_load,
            router_entropy,
        }
    }

    /// Writes the routing into a metric record.
    pub(crate) fn fill(self, rec: &mut Record) {
        rec.routing_purity = Some(self.purity);
        rec.confusion = Some(self.confusion);
        rec.expert_load = Some(self.expert_load);
        rec.router_entropy = Some(self.router_entropy);
        rec.dead_experts = Some(self.dead_experts);
    }
}

/// The share of rows of `w` whose overlap |<w, target>| reaches
/// `threshold` (0 when `w` has no rows).
pub fn aligned_share(w: ArrayView2<f32>, target: ArrayView1<f64>, threshold: f64) -> f64 {
    let o = overlaps(w, target);
    if o.is_empty() {
        0.0
    } else {
        o.iter().filter(|&&v| v >= threshold).count() as f64 / o.len() as f64
    }
}

/// The chance level of a best overlap: the `t` that the best of `n`
/// independent uniformly random unit directions in R^`d` exceeds, in its
/// overlap |<w, w*>| with a fixed unit w*, with probability `p`.
///
/// A network whose neurons never learned w* keeps overlaps of about this
/// law, so a best overlap below `chance_overlap(d, n, 0.01)` is what chance
/// gives in 99 % of draws, and one far above it (0.9, say) is learning.
/// `|<w, w*>|^2` of a uniform unit w is Beta(1/2, (d - 1)/2), so
/// `P(|<w, w*>| > t) = I_(1 - t^2)((d - 1)/2, 1/2)` (the regularised
/// incomplete beta), `P(max_j |<w_j, w*>| > t) = 1 - (1 - P(|<w, w*>| > t))^n`,
/// and `t` is found by bisection to about 1e-12.
///
/// # Panics
/// If `d < 2`, `n == 0` or `p` is not in (0, 1).
///
/// ```
/// use clustermoe::metrics::chance_overlap;
///
/// // One direction in R^2: |cos| of a uniform angle exceeds cos(pi p / 2)
/// // with probability p.
/// let t = chance_overlap(2, 1, 0.1);
/// assert!((t - (std::f64::consts::FRAC_PI_2 * 0.1).cos()).abs() < 1e-9);
/// // The best of 64 neurons in R^32 passes 0.5 by chance in about a sixth
/// // of draws (a fixed bar of 0.5 is partly a bar on chance): its 1 % level
/// // is higher.
/// let level = chance_overlap(32, 64, 0.01);
/// assert!(level > 0.5 && level < 0.7);
/// ```
pub fn chance_overlap(d: usize, n: usize, p: f64) -> f64 {
    assert!(d >= 2 && n > 0, "d >= 2 and n >= 1 (got d = {d}, n = {n})");
    assert!(p > 0.0 && p < 1.0, "p in (0, 1) (got {p})");
    // The one-direction tail probability that makes the best of n exceed t
    // with probability p: 1 - (1 - q)^n = p, written to keep small p exact.
    let q = -(-p).ln_1p() / n as f64;
    let q = -(-q).exp_m1();
    let tail = |t: f64| regularised_incomplete_beta(1.0 - t * t, (d as f64 - 1.0) / 2.0, 0.5);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while hi - lo > 1e-13 {
        let mid = 0.5 * (lo + hi);
        // The tail falls as t grows.
        if tail(mid) > q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The regularised incomplete beta function `I_x(a, b)`, by the continued
/// fraction of Numerical Recipes (Lentz's method), taken on the side where
/// it converges fast (`x < (a + 1) / (a + b + 2)`, else `1 - I_(1-x)(b, a)`).
fn regularised_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front =
        libm::lgamma(a + b) - libm::lgamma(a) - libm::lgamma(b) + a * x.ln() + b * (-x).ln_1p();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction of `I_x(a, b)` (converges for `x < (a+1)/(a+b+2)`).
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut dd = 1.0 - qab * x / qap;
    if dd.abs() < TINY {
        dd = TINY;
    }
    dd = 1.0 / dd;
    let mut h = dd;
    for m in 1..=500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            dd = 1.0 + aa * dd;
            if dd.abs() < TINY {
                dd = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            dd = 1.0 / dd;
            h *= dd * c;
        }
        if (dd * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn incomplete_beta_matches_closed_forms() {
        for x in [0.01, 0.2, 0.5, 0.77, 0.99] {
            // I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1/2, 1/2) = (2/pi) asin(sqrt x).
            assert!((regularised_incomplete_beta(x, 1.0, 1.0) - x).abs() < 1e-12);
            assert!((regularised_incomplete_beta(x, 3.5, 1.0) - x.powf(3.5)).abs() < 1e-12);
            let arcsine = 2.0 / std::f64::consts::PI * x.sqrt().asin();
            assert!((regularised_incomplete_beta(x, 0.5, 0.5) - arcsine).abs() < 1e-12);
            // I_x(a, b) = 1 - I_(1-x)(b, a).
            let (a, b) = (15.5, 0.5);
            let sum =
                regularised_incomplete_beta(x, a, b) + regularised_incomplete_beta(1.0 - x, b, a);
            assert!((sum - 1.0).abs() < 1e-12);
        }
    }

    /// The fraction of draws of n random unit directions in R^d whose best
    /// overlap with e_0 exceeds `chance_overlap(d, n, p)` is p, within four
    /// standard errors (a level off by 5 % of itself fails).
    #[test]
    fn chance_overlap_matches_random_directions() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let reps = 20_000;
        for (d, n, p) in [
            (8, 4, 0.05),
            (32, 16, 0.05),
            (32, 64, 0.01),
            (128, 32, 0.05),
        ] {
            let level = chance_overlap(d, n, p);
            let mut above = 0;
            let mut z = vec![0.0f64; d];
            for _ in 0..reps {
                let mut best = 0.0f64;
                for _ in 0..n {
                    z.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
                    let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
                    best = best.max(z[0].abs() / norm);
                }
                above += usize::from(best > level);
            }
            let frac = above as f64 / reps as f64;
            let se = (p * (1.0 - p) / reps as f64).sqrt();
            assert!(
                (frac - p).abs() < 4.0 * se,
                "d {d}, n {n}: {frac} above {level}, want {p}"
            );
        }
        // More neurons, a higher level; a higher dimension, a lower one.
        assert!(chance_overlap(32, 64, 0.01) > chance_overlap(32, 16, 0.01));
        assert!(chance_overlap(128, 64, 0.01) < chance_overlap(32, 64, 0.01));
    }
}
