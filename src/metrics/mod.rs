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

/// |<row, target>| in f64.
fn overlap(row: ArrayView1<f32>, target: ArrayView1<f64>) -> f64 {
    row.iter()
        .zip(target)
        .map(|(&a, &b)| a as f64 * b)
        .sum::<f64>()
        .abs()
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
