//! One run: draw the task, train the MoE and the vanilla network (in
//! parallel, on independent streams), evaluate both on the same fresh test
//! set, and summarise. A run uses the threads of the rayon pool it runs in
//! (see [`crate::threads`]); its results do not depend on their number.

use serde::{Deserialize, Serialize};

use crate::config::{Training, ValidConfig};
use crate::error::{Error, Result};
use crate::metrics::{self, JointRouting, Record, TestError};
use crate::model::joint::JointModel;
use crate::model::{Moe, Vanilla};
use crate::numerics::rng::{stream, StreamId};
use crate::phase::{ModelKind, Phase};
use crate::task::{Batch, Task};
use crate::train::{self, Journal, MoeStage, MoeState, Monitor, VanillaStage, VanillaState};

pub mod predict;
mod summarise;
use summarise::{summarise_joint, summarise_moe, summarise_vanilla, test_record};

/// What `summary.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seed: u64,
    /// Variance of y on the test samples (the denominator of every relative MSE).
    pub var_y: f64,
    pub information_exponent: usize,
    /// Every link of the task with its information exponent and degree.
    pub links: TaskLinks,
    /// Purity of the best linear router (Bayes-optimal for two clusters:
    /// 1 - Phi(-rho |v_1 - v_2| / 2)); null for other cluster counts.
    pub best_linear_router_purity: Option<f64>,
    /// Assumptions of the paper's theorem this task violates.
    pub warnings: Vec<String>,
    /// Every rate and length the run used, and the budget laws' choice.
    pub budget: crate::budget::ResolvedBudget,
    pub samples: Samples,
    pub moe: MoeSummary,
    /// Absent when `vanilla.enabled = false`.
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
    /// Steps of each model, and samples each drew (the same samples).
    pub steps: u64,
    pub samples: u64,
    /// The MoE's routing on the test samples (noise-free gates; a sample
    /// counts for its largest gate): confusion, purity, expert load,
    /// router entropy, dead experts.
    pub routing: JointRouting,
    /// Per expert and cluster: best |<w, w*_c>| among its neurons (M x C).
    pub expert_local_overlap: Vec<Vec<f64>>,
    /// Per expert: best |<w, w*_g>| among its neurons.
    pub expert_global_overlap: Vec<f64>,
    /// The squared loss (y - F)^2 / 2 of each model on the test samples.
    pub moe_test_loss: f64,
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

pub use crate::numerics::link::LinkInfo;

/// The links f*_c (per cluster) and g*.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskLinks {
    pub local: Vec<LinkInfo>,
    pub global: LinkInfo,
}

/// Purity of the Bayes-optimal router for two equally likely clusters
/// N(rho v_1, I) and N(rho v_2, I): its boundary is a hyperplane through the
/// origin, so a linear router without bias attains it.
pub fn best_linear_router_purity(task: &Task) -> Option<f64> {
    if task.clusters() != 2 {
        return None;
    }
    let gap = &task.v.row(0) - &task.v.row(1);
    let half_distance = task.rho * gap.dot(&gap).sqrt() / 2.0;
    // 1 - Phi(-a) = Phi(a) = erfc(-a / sqrt 2) / 2
    Some(0.5 * libm::erfc(-half_distance / std::f64::consts::SQRT_2))
}

/// Samples drawn by each model (training and readout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub moe: u64,
    pub vanilla: Option<u64>,
}

/// Final metrics common to both models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    #[serde(flatten)]
    pub error: TestError,
    /// Per cluster, best |<w, w*_c>| among the neurons serving that cluster.
    pub local_overlap_per_cluster: Vec<f64>,
    /// Per cluster, best |<w, w*_g>| among the neurons serving that cluster.
    pub global_overlap_per_cluster: Vec<f64>,
}

/// Final metrics of the MoE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeSummary {
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
    pub task: Task,
    /// The MoE of staged training (None for joint training).
    pub moe: Option<Moe>,
    /// The vanilla network of staged training (None when disabled, or for
    /// joint training).
    pub vanilla: Option<Vanilla>,
    /// The models of joint training.
    pub joint: Option<JointModels>,
    pub summary: Summary,
}

/// The jointly trained models.
#[derive(Clone, Debug)]
pub struct JointModels {
    pub moe: JointModel,
    pub vanilla: Option<JointModel>,
}

/// The most samples `generate` draws at once (2^28, 8 GiB of f32 at d = 8).
pub const MAX_GENERATE: usize = 1 << 28;

/// Draws the task of `cfg` (stream `Task`, as a run does) and `n` samples of
/// it from the stream `Generate`, which no run uses.
pub fn generate(cfg: &ValidConfig, n: usize) -> Result<(Task, Batch)> {
    if n == 0 || n > MAX_GENERATE {
        return Err(Error::invalid(
            "n",
            n,
            format!("a number of samples from 1 to {MAX_GENERATE}"),
        ));
    }
    let task = Task::new(cfg, &mut stream(cfg.seed, StreamId::Task));
    let data = task.sample(n, &mut stream(cfg.seed, StreamId::Generate));
    Ok((task, data))
}

/// One run of a configuration: draw the task, train both models, evaluate
/// them. By default it reports nothing; a [`Monitor`] sees its progress and
/// [`Journal`]s receive each model's metric records (and checkpoints).
///
/// ```
/// use clustermoe::{Config, Experiment};
///
/// // A small, fast task: d = 16, and short phases.
/// let mut config = Config::default();
/// config.task.d = 16;
/// config.phase_one.steps = 500.into();
/// config.phase_two.steps = 100;
/// config.phase_three.steps = 500.into();
/// config.readout.samples = 2_000;
/// config.metrics.test_samples = 2_000;
/// let valid = config.check()?;
///
/// let mut records = Vec::new();
/// let mut moe_log = |r: &clustermoe::metrics::Record| Ok(records.push(r.clone()));
/// let mut vanilla_log = |_: &clustermoe::metrics::Record| Ok(());
/// let out = Experiment::new(&valid)
///     .journals(&mut moe_log, &mut vanilla_log)
///     .run()?;
/// // Both models see exactly the same number of samples.
/// assert_eq!(out.summary.samples.moe, out.summary.samples.vanilla.unwrap());
/// assert!(out.summary.moe.model.error.test_rel_mse.is_finite());
/// assert!(!records.is_empty());
/// # Ok::<(), clustermoe::Error>(())
/// ```
pub struct Experiment<'a> {
    config: &'a ValidConfig,
    monitor: &'a dyn Monitor,
    journals: Option<(
        &'a mut dyn Journal<MoeStage>,
        &'a mut dyn Journal<VanillaStage>,
    )>,
    threads: Option<usize>,
}

impl<'a> Experiment<'a> {
    /// A run of `config`, silent until told otherwise.
    pub fn new(config: &'a ValidConfig) -> Self {
        Experiment {
            config,
            monitor: &train::Silent,
            journals: None,
            threads: None,
        }
    }

    /// Runs on a pool of `threads` threads of its own (1 to
    /// [`crate::threads::MAX_THREADS`]; checked by [`Experiment::run`]).
    /// Without it the run uses the caller's rayon pool (the global pool:
    /// all cores). The results are bit-identical for every thread count.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Reports the phases and steps to `monitor` (progress bars, timings).
    pub fn monitor(mut self, monitor: &'a dyn Monitor) -> Self {
        self.monitor = monitor;
        self
    }

    /// Sends the MoE's and the vanilla network's metric records (and, if
    /// they ask for them, checkpoints) to these journals; a closure
    /// `|record| -> Result<()>` is a journal.
    pub fn journals(
        mut self,
        moe: &'a mut dyn Journal<MoeStage>,
        vanilla: &'a mut dyn Journal<VanillaStage>,
    ) -> Self {
        self.journals = Some((moe, vanilla));
        self
    }

    /// Trains both models and evaluates them.
    pub fn run(self) -> Result<RunOutput> {
        let ignore = |_: &Record| Ok(());
        let (mut moe_ignore, mut vanilla_ignore) = (ignore, ignore);
        let (moe, vanilla): (&mut dyn Journal<MoeStage>, &mut dyn Journal<VanillaStage>) =
            match self.journals {
                Some(journals) => journals,
                None => (&mut moe_ignore, &mut vanilla_ignore),
            };
        let (config, monitor) = (self.config, self.monitor);
        crate::threads::install(self.threads, || {
            run_from(config, moe, vanilla, monitor, (None, None))
        })
    }
}

/// Runs both models of `cfg`, each from the start or from a checkpoint's
/// state (`resume`: MoE, vanilla), reporting to journals, and evaluates them.
pub(crate) fn run_from(
    cfg: &ValidConfig,
    moe_journal: &mut dyn Journal<MoeStage>,
    vanilla_journal: &mut dyn Journal<VanillaStage>,
    monitor: &dyn Monitor,
    resume: (Option<MoeState>, Option<VanillaState>),
) -> Result<RunOutput> {
    let task = Task::new(cfg, &mut stream(cfg.seed, StreamId::Task));
    let (moe_resume, vanilla_resume) = resume;
    let staged = cfg.training == Training::Staged;
    let test = task.sample(
        cfg.metrics.test_samples,
        &mut stream(cfg.seed, StreamId::Test),
    );
    let var_y = metrics::label_variance(&test.y);
    // Each staged model is evaluated on its own thread as soon as it is
    // trained, while the other may still train.
    let (moe, vanilla) = rayon::join(
        || match staged {
            true => train::train_moe(cfg, &task, &mut *moe_journal, monitor, moe_resume).map(|m| {
                let summary = summarise_moe(cfg, &task, &m, &test, var_y);
                Trained::Staged(m, summary)
            }),
            false => train::train_joint(cfg, &task, &mut *moe_journal, monitor, moe_resume)
                .map(Trained::Joint),
        },
        || {
            cfg.vanilla_enabled
                .then(|| match staged {
                    true => train::train_vanilla(
                        cfg,
                        &task,
                        &mut *vanilla_journal,
                        monitor,
                        vanilla_resume,
                    )
                    .map(|v| {
                        let summary = summarise_vanilla(&task, &v, &test, var_y);
                        Trained::Staged(v, summary)
                    }),
                    false => train::train_joint(
                        cfg,
                        &task,
                        &mut *vanilla_journal,
                        monitor,
                        vanilla_resume,
                    )
                    .map(Trained::Joint),
                })
                .transpose()
        },
    );
    let (moe, vanilla) = (moe?, vanilla?);
    let (samples, moe_summary, vanilla_summary, joint_summary, (moe, vanilla, joint)) =
        match (moe, vanilla) {
            (Trained::Staged(moe, moe_summary), vanilla) => {
                let (vanilla, vanilla_summary) = match vanilla {
                    Some(Trained::Staged(v, summary)) => (Some(v), Some(summary)),
                    Some(Trained::Joint(_)) => unreachable!("both models train the same way"),
                    None => (None, None),
                };
                (
                    Samples {
                        moe: moe.samples,
                        vanilla: vanilla.as_ref().map(|v| v.samples),
                    },
                    moe_summary,
                    vanilla_summary,
                    None,
                    (Some(moe), vanilla, None),
                )
            }
            (Trained::Joint(moe), vanilla) => {
                let vanilla = vanilla.map(|v| match v {
                    Trained::Joint(v) => v,
                    Trained::Staged(..) => unreachable!("both models train the same way"),
                });
                let n = cfg.joint.samples;
                let (m, v, j) = summarise_joint(cfg, &task, &moe, vanilla.as_ref(), &test, var_y);
                (
                    Samples {
                        moe: n,
                        vanilla: vanilla.as_ref().map(|_| n),
                    },
                    m,
                    v,
                    Some(j),
                    (None, None, Some(JointModels { moe, vanilla })),
                )
            }
        };
    let summary = Summary {
        seed: cfg.seed,
        var_y,
        information_exponent: cfg.information_exponent,
        links: TaskLinks {
            local: task.local_links.iter().map(LinkInfo::from).collect(),
            global: LinkInfo::from(&task.global_link),
        },
        best_linear_router_purity: best_linear_router_purity(&task),
        warnings: cfg.warnings.clone(),
        budget: cfg.resolved_budget(),
        samples,
        moe: moe_summary,
        vanilla: vanilla_summary,
        joint: joint_summary,
    };
    if let Some((field, value)) = summary.first_non_finite() {
        return Err(Error::NonFinite { field, value });
    }
    moe_journal.record(&test_record(
        ModelKind::Moe,
        summary.samples.moe,
        &summary.moe.model,
    ))?;
    if let (Some(v), Some(n)) = (&summary.vanilla, summary.samples.vanilla) {
        vanilla_journal.record(&test_record(ModelKind::Vanilla, n, v))?;
    }
    Ok(RunOutput {
        task,
        moe,
        vanilla,
        joint,
        summary,
    })
}

/// A trained model of either training.
enum Trained<S, E> {
    /// A staged model and its evaluation.
    Staged(S, E),
    Joint(JointModel),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn best_linear_router_for_two_orthogonal_clusters_is_phi_of_rho_over_sqrt_2() {
        let valid = Config::default().check().unwrap();
        let task = Task::new(&valid, &mut stream(1, StreamId::Task));
        // Phi(4 / sqrt 2) = Phi(2.8284) = 0.997661
        assert!((best_linear_router_purity(&task).unwrap() - 0.997661).abs() < 1e-6);
        let mut four = Config::default();
        four.task.clusters = 4;
        let valid = four.check().unwrap();
        assert_eq!(
            best_linear_router_purity(&Task::new(&valid, &mut stream(1, StreamId::Task))),
            None
        );
    }

    #[test]
    fn a_non_finite_number_in_a_summary_is_found_with_its_path() {
        let mut config = Config::default();
        config.task.d = 8;
        config.phase_one.steps = 50.into();
        config.phase_two.steps = 10;
        config.phase_three.steps = 50.into();
        config.readout.samples = 500;
        config.metrics.test_samples = 500;
        let out = Experiment::new(&config.check().unwrap()).run().unwrap();
        let mut summary = out.summary;
        assert_eq!(summary.first_non_finite(), None);
        // Paths are those of summary.json (flattened structs included).
        summary.moe.model.error.per_cluster_rel_mse[1] = f64::INFINITY;
        assert_eq!(
            summary.first_non_finite(),
            Some(("moe.per_cluster_rel_mse.1".into(), f64::INFINITY))
        );
        summary.moe.model.error.per_cluster_rel_mse[1] = 0.5;
        summary.vanilla.as_mut().unwrap().error.test_rel_mse = f64::NAN;
        let (field, value) = summary.first_non_finite().unwrap();
        assert_eq!(field, "vanilla.test_rel_mse");
        assert!(value.is_nan());
        let error = Error::NonFinite { field, value };
        assert_eq!(error.exit_status(), 1);
        assert!(
            error.to_string().contains("`vanilla.test_rel_mse` is NaN"),
            "{error}"
        );
    }
}
