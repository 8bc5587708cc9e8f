//! What a run produces: its trained models ([`RunOutput`], [`Models`]) and
//! what `summary.json` holds ([`Summary`]). Plain data, below both the
//! executor ([`crate::experiment`]) that makes them and the run directory
//! ([`crate::store`]) that writes and reads them.

use serde::{Deserialize, Serialize};

use crate::metrics::samples_to::SamplesTo;
use crate::metrics::{JointRouting, TestError};
use crate::model::joint::JointModel;
use crate::model::{Moe, Vanilla};
pub use crate::numerics::link::LinkInfo;
use crate::task::Task;

/// What `summary.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The run's seed: every random stream derives from it.
    pub seed: u64,
    /// Variance of y on the test samples (the denominator of every relative MSE).
    pub var_y: f64,
    /// k*: the smallest information exponent among the task's links.
    pub information_exponent: usize,
    /// Every link of the task with its information exponent and degree.
    pub links: TaskLinks,
    /// Purity of the best linear router (Bayes-optimal; two clusters:
    /// 1 - Phi(-rho |v_1 - v_2| / 2), C orthonormal centres:
    /// E[Phi(rho + z)^(C-1)]); null for more than two clusters on random
    /// centres ([`crate::metrics::best_linear_router_purity`]).
    pub best_linear_router_purity: Option<f64>,
    /// Assumptions of the paper's theorem this task violates.
    pub warnings: Vec<String>,
    /// Every rate and length the run used, and the budget laws' choice.
    pub budget: crate::budget::ResolvedBudget,
    /// Samples each model drew (training and readout).
    pub samples: Samples,
    /// The MoE's final metrics.
    pub moe: MoeSummary,
    /// The vanilla network's final metrics; absent when
    /// `vanilla.enabled = false`.
    pub vanilla: Option<ModelSummary>,
    /// Joint training's own measures; absent for staged runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<JointSummary>,
}

/// What a jointly trained run adds to its summary. (Its `moe` section has
/// the test error, the overlaps of the neurons of the expert serving each
/// cluster, the purity and the confusion; the phase-I fields are empty.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JointSummary {
    /// Steps of each model.
    pub steps: u64,
    /// Samples each model drew (the same samples for both).
    pub samples: u64,
    /// The MoE's routing on the test samples (noise-free gates; a sample
    /// counts for its largest gate): confusion, purity, expert load,
    /// router entropy, dead experts.
    pub routing: JointRouting,
    /// Per expert and cluster: best |<w, w*_c>| among its neurons (M x C).
    pub expert_local_overlap: Vec<Vec<f64>>,
    /// Per expert: best |<w, w*_g>| among its neurons.
    pub expert_global_overlap: Vec<f64>,
    /// The MoE's squared loss (y - F)^2 / 2 on the test samples.
    pub moe_test_loss: f64,
    /// The vanilla network's, when it trained.
    pub vanilla_test_loss: Option<f64>,
}

impl Summary {
    /// The dotted path and value of the first non-finite number, if any
    /// (`moe.model.error.test_rel_mse`; list entries by index).
    pub fn first_non_finite(&self) -> Option<(String, f64)> {
        // TOML keeps NaN and infinities (JSON would turn them into null),
        // and leaves out absent options.
        let value = toml::Value::try_from(self).expect("a summary serialises to TOML");
        first_non_finite(&value, String::new())
    }
}

fn first_non_finite(value: &toml::Value, path: String) -> Option<(String, f64)> {
    let child = |key: &dyn std::fmt::Display| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some((path, *f)),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| first_non_finite(v, child(k))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_non_finite(v, child(&i))),
        _ => None,
    }
}

/// The links f*_c (per cluster) and g*.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskLinks {
    /// f*_c of each cluster c.
    pub local: Vec<LinkInfo>,
    /// g*, shared by every cluster.
    pub global: LinkInfo,
}

/// Samples drawn by each model (training and readout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// The MoE's.
    pub moe: u64,
    /// The vanilla network's; None when it did not train.
    pub vanilla: Option<u64>,
}

/// Final metrics common to both models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Test errors, overall and per cluster.
    #[serde(flatten)]
    pub error: TestError,
    /// Per cluster, best |<w, w*_c>| among the neurons serving that cluster.
    pub local_overlap_per_cluster: Vec<f64>,
    /// Per cluster, best |<w, w*_g>| among the neurons serving that cluster.
    pub global_overlap_per_cluster: Vec<f64>,
    /// Samples to learn: when the probes first saw each target reached,
    /// or that they did not ([`crate::metrics::samples_to`]).
    pub samples_to: SamplesTo,
}

/// Final metrics of the MoE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeSummary {
    /// What every model's summary holds.
    #[serde(flatten)]
    pub model: ModelSummary,
    /// Share of test samples sent to an expert whose majority cluster is theirs.
    pub routing_purity: f64,
    /// Test samples of cluster c (rows) sent to routed expert k (columns).
    pub confusion: Vec<Vec<u64>>,
    /// For each phase-I expert, the cluster whose w*_c it reached (overlap >= threshold), or null.
    pub expert_cluster: Vec<Option<usize>>,
    /// For each phase-I expert, the routed expert it became after merging, or null if dropped.
    pub expert_group: Vec<Option<usize>>,
    /// Per cluster, best |<u_m, w*_c>| over the experts after phase I.
    pub phase1_local_overlap_per_cluster: Vec<f64>,
    /// Per cluster, samples seen when some expert first reached the threshold, or null.
    pub phase1_weak_recovery_samples: Vec<Option<u64>>,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The task the models learned (its directions, links and clusters).
    pub task: Task,
    /// The trained models, by the training they had.
    pub models: Models,
    /// What `summary.json` holds.
    pub summary: Summary,
}

/// The trained models of a run: which training they had is their type.
// Built once per run: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Models {
    /// The staged algorithm (`moe.training = "staged"`).
    Staged {
        /// The mixture of experts after phases I to IV.
        moe: Moe,
        /// The vanilla network; None when `vanilla.enabled = false`.
        vanilla: Option<Vanilla>,
    },
    /// Joint training (`moe.training = "joint"`).
    Joint {
        /// The jointly trained mixture of experts.
        moe: JointModel,
        /// The jointly trained vanilla network; None when disabled.
        vanilla: Option<JointModel>,
    },
}
