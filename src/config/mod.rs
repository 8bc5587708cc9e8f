//! Hyper-parameters: a plain [`Config`] that a TOML file overrides field by
//! field, validated once by [`Config::check`] into a [`ValidConfig`] so the
//! training code never meets an invalid value.
//!
//! Why each default is what it is: see docs/configuration.md and docs/algorithm.md.

use serde::{Deserialize, Serialize};

pub use crate::model::gate::Gate;
pub use crate::model::optim::OptimizerKind;
pub use crate::model::{Loss, NeuronSign};

mod check;
pub mod memory;
mod overrides;
mod valid;

pub use valid::{LrSchedule, ValidConfig, ValidJoint, ValidPhase, ValidReadout, ValidTask};

/// Every knob of one run. `Config::default()` is the paper's default task
/// with the tuned staged algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seed of every random stream (directions, initialisation, data, test set).
    pub seed: u64,
    /// The data model (`[task]`).
    pub task: TaskConfig,
    /// The mixture of experts (`[moe]`).
    pub moe: MoeConfig,
    /// Phase I: each expert's direction by spherical SGD (`[phase_one]`).
    pub phase_one: PhaseConfig,
    /// Phase II: the router (`[phase_two]`).
    pub phase_two: RouterConfig,
    /// Phase III: the experts' neurons by spherical SGD (`[phase_three]`).
    pub phase_three: PhaseConfig,
    /// Phase IV: the ridge readouts of both models (`[readout]`).
    pub readout: ReadoutConfig,
    /// The vanilla two-layer network trained beside the MoE (`[vanilla]`).
    pub vanilla: VanillaConfig,
    /// Logging and evaluation (`[metrics]`).
    pub metrics: MetricsConfig,
    /// Joint training (`moe.training = "joint"`); left out of `config.toml`
    /// while it holds the defaults, so staged runs' files are unchanged.
    #[serde(skip_serializing_if = "JointConfig::is_default")]
    pub joint: JointConfig,
    /// Samples to learn: the targets and stopping at them (`[targets]`);
    /// left out of `config.toml` while it holds the defaults.
    #[serde(skip_serializing_if = "TargetsConfig::is_default")]
    pub targets: TargetsConfig,
}

/// The data model (docs/algorithm.md, "The task").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Input dimension d.
    pub d: usize,
    /// Number of clusters C.
    pub clusters: usize,
    /// Cluster separation: cluster c is centred at rho * v_c.
    pub rho: f64,
    /// Label noise standard deviation zeta.
    pub noise: f64,
    /// How the directions v_c, w*_c, w*_g are drawn.
    pub geometry: Geometry,
    /// Cluster coefficients s_c of the global task; empty means +1,-1,+1,...
    /// minus their mean, so that they sum to zero for any C >= 2.
    pub signs: Vec<f64>,
    /// Local links f*_c: one for all clusters, or one per cluster.
    pub local_link: Links,
    /// Global link g*.
    pub global_link: String,
}

/// A number, or "auto": chosen by the budget laws from the task
/// ([`crate::budget`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Auto<T> {
    /// The value given.
    Value(T),
    #[serde(with = "auto_word")]
    /// "auto": the budget laws choose.
    Auto,
}

impl<T: Copy> Auto<T> {
    /// The number given, or `auto` when "auto".
    pub fn or(self, auto: T) -> T {
        match self {
            Auto::Value(v) => v,
            Auto::Auto => auto,
        }
    }
}

impl<T> From<T> for Auto<T> {
    fn from(value: T) -> Self {
        Auto::Value(value)
    }
}

/// The unit variant `Auto` as the string "auto".
mod auto_word {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let word = String::deserialize(d)?;
        if word == "auto" {
            Ok(())
        } else {
            Err(D::Error::custom(format!(
                "expected a number or \"auto\", found {word:?}"
            )))
        }
    }
}

/// Geometry of the ground-truth directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Geometry {
    /// All 2C+1 directions mutually orthonormal (a random rotation of a basis).
    Orthonormal,
    /// Each direction independent and uniform on the sphere (overlaps ~ d^-1/2).
    Random,
}

/// One link string or one per cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Links {
    /// One link for every cluster.
    One(String),
    /// A link per cluster, C of them.
    PerCluster(Vec<String>),
}

/// The mixture of experts (docs/algorithm.md) and how redundant experts are handled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoeConfig {
    /// Number of experts M trained in phase I. "auto": the fewest (at least
    /// 8) with which phase I finds every cluster with probability 0.999,
    /// restarts counted ([`crate::capacity::experts_for`]).
    pub experts: Auto<usize>,
    /// Neurons J per expert in phase III.
    pub neurons: usize,
    /// Gate used from phase III on (routing of training, readout and test samples).
    pub gate: Gate,
    /// k of the `top_k` gate.
    pub top_k: usize,
    /// Standard deviation of the logit noise of the `noisy_top1` gate.
    pub gate_noise: f64,
    /// What to do with experts that specialised in the same direction.
    pub merge: Merge,
    /// Two experts are redundant when |<u_m, u_k>| >= this after phase I.
    pub merge_threshold: f64,
    /// How the phase-III neurons are shared among the routed experts.
    pub allocation: Allocation,
    /// Whiten the inputs of phases I and II with the estimated input
    /// covariance (symmetric inverse square root), which shrinks the
    /// gradient noise that the cluster means inject along v_c.
    pub whiten: bool,
    /// Every this many phase-I steps, experts that are stuck (correlation
    /// below a tenth of the best expert's) or redundant with a better one
    /// restart orthogonally to the directions already found; 0 disables.
    /// "auto": from the budget laws ([`crate::budget`]).
    pub restart_every: Auto<u64>,
    /// How the MoE (and the vanilla network) are trained: the staged
    /// algorithm, or every parameter at once ([`JointConfig`]).
    #[serde(skip_serializing_if = "Training::is_staged")]
    pub training: Training,
}

/// How the models are trained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Training {
    /// The staged algorithm of the paper (docs/algorithm.md).
    #[default]
    Staged,
    /// Every parameter at once by SGD or Adam on the squared loss (docs/joint-training.md),
    /// both models the same way on the same samples.
    Joint,
}

impl Training {
    /// Whether this is the default, staged training.
    pub fn is_staged(&self) -> bool {
        *self == Training::Staged
    }
}

/// Joint training (docs/joint-training.md): the MoE's router, first layers, biases and
/// second layers all at once, and the vanilla network of M x J neurons the
/// same way, by minibatch SGD or Adam on (y - F(x))^2 / 2 over fresh samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JointConfig {
    /// SGD (with momentum) or Adam.
    pub optimizer: OptimizerKind,
    /// Learning rate until `decay_start`; "auto": 1e-3 (C - 1) for C
    /// clusters (docs/joint-training.md, "More clusters").
    pub lr: Auto<f64>,
    /// Learning rate at the last step.
    pub lr_end: f64,
    /// Fraction of the steps after which the rate decays from `lr` to `lr_end`.
    pub decay_start: f64,
    /// How the rate decays after `decay_start`.
    pub schedule: Schedule,
    /// SGD's momentum (0: plain SGD).
    pub momentum: f64,
    /// Adam's decay rate of the first moment.
    pub beta1: f64,
    /// Adam's decay rate of the second moment.
    pub beta2: f64,
    /// Adam's denominator floor.
    pub eps: f64,
    /// Samples per step.
    pub batch: usize,
    /// Steps; "auto": as many samples as the staged algorithm's whole budget
    /// (training and readout), so the joint and staged runs are comparable.
    pub steps: Auto<u64>,
    /// Samples (counted in the budget) that estimate the input centre c.
    pub centre_samples: usize,
    /// Weight of the load-balancing loss M sum_m f_m P_m (Switch Transformer).
    pub lambda_bal: f64,
    /// Weight of the router z-loss mean logsumexp(h)^2 (ST-MoE).
    pub lambda_z: f64,
    /// top-k gates: weigh the kept experts by the softmax among them
    /// (GShard) rather than by their softmax over all experts (Switch).
    pub renormalise: bool,
    /// Keep first-layer rows on the unit sphere (projected gradient and
    /// retraction) rather than free.
    pub sphere: bool,
    /// Any link with a derivative: "relu", "tanh", "h3", "auto" (h_k*) ...
    pub activation: String,
    /// Norm of each first-layer row at initialisation.
    pub init_first: f64,
    /// Standard deviation of the initial biases.
    pub init_bias: f64,
    /// Second-layer weights start N(0, init_second^2 / J) (J: neurons per
    /// expert, or the vanilla network's).
    pub init_second: f64,
    /// Router weights start N(0, init_router^2 / d).
    pub init_router: f64,
}

impl JointConfig {
    /// Whether every field holds its default.
    pub fn is_default(&self) -> bool {
        *self == JointConfig::default()
    }
}

impl Default for JointConfig {
    fn default() -> Self {
        JointConfig {
            optimizer: OptimizerKind::Adam,
            lr: Auto::Auto,
            lr_end: 1e-5,
            decay_start: 0.5,
            schedule: Schedule::Cosine,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            batch: 64,
            steps: Auto::Auto,
            centre_samples: 4_096,
            lambda_bal: 0.01,
            lambda_z: 0.0,
            renormalise: false,
            sphere: false,
            activation: "relu".into(),
            init_first: 1.0,
            init_bias: 0.0,
            init_second: 1.0,
            init_router: 0.1,
        }
    }
}

/// Sharing of the M x J phase-III neurons among routed experts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// J neurons per phase-I expert: a routed expert gets J times its members.
    PerExpert,
    /// All M x J neurons shared in proportion to the samples each routed
    /// expert receives; an expert the router never selects gets none.
    ByLoad,
}

/// Handling of redundant experts after phase I.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Redundant experts become one routed expert with all their neurons.
    Pool,
    /// Keep the first expert of each group, discard the rest (as an earlier trial did).
    Drop,
    /// Keep every expert; the router chooses among all M.
    None,
}

/// Learning-rate schedule shape after `decay_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` throughout (`lr_end` unused).
    Constant,
    /// A straight line from `lr` to `lr_end`.
    Linear,
    /// Half a cosine from `lr` down to `lr_end`.
    Cosine,
    /// Geometric: `lr (lr_end / lr)^f` at the fraction f of the decay.
    Exponential,
}

/// Spherical online SGD of first-layer directions (phases I and III).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseConfig {
    /// SGD steps; "auto" from the budget laws ([`crate::budget`]).
    pub steps: Auto<u64>,
    /// Samples per step.
    pub batch: usize,
    /// Learning rate until `decay_start`; "auto" from the budget laws.
    pub lr: Auto<f64>,
    /// Learning rate at the last step; "auto" from the budget laws.
    pub lr_end: Auto<f64>,
    /// Fraction of the steps after which the rate decays from `lr` to `lr_end`.
    pub decay_start: f64,
    /// How the rate decays after `decay_start`.
    pub schedule: Schedule,
    /// Samples drawn (and counted in the budget) to estimate the input centre(s).
    pub centre_samples: usize,
    /// "auto" (h_k* of the task) or a Hermite link such as "h3".
    pub activation: String,
    /// Each neuron's loss: correlation or squared ([`Loss`]).
    pub loss: Loss,
    /// Each neuron's second-layer sign in the loss: learned or always +1.
    pub sign: NeuronSign,
    /// Longest tangent step lr |g_t| (about the angle, in radians, it turns
    /// a neuron: atan of it) one SGD step may take; longer steps
    /// are shortened to it (clipping the heavy tails of y sigma'(t)).
    pub max_step: f64,
}

/// SGD ascent of the router (phase II).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// SGD steps (0: the router keeps its initialisation).
    pub steps: u64,
    /// Samples per step.
    pub batch: usize,
    /// Learning rate (constant).
    pub lr: f64,
}

/// Phase IV: random-bias ReLU features and a ridge readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadoutConfig {
    /// Fresh samples for the ridge regression (the same count for both
    /// models). "auto": 40,000, more where a link's tails need them
    /// ([`crate::capacity::readout_plan`]).
    pub samples: Auto<usize>,
    /// Ridge penalty lambda on the mean squared loss.
    pub ridge: f64,
    /// Biases are drawn from U[-bias_max, bias_max]. "auto": from the
    /// links, per model ([`crate::capacity::readout_plan`]).
    pub bias_max: Auto<f64>,
    /// Random biases per first-layer direction: each learned direction
    /// becomes this many ReLU features. "auto": from the links, per model.
    pub biases: Auto<usize>,
}

/// The vanilla two-layer baseline; its sample budget equals the MoE's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VanillaConfig {
    /// Whether to train the baseline at all.
    pub enabled: bool,
    /// Neurons N; 0 means M * J, as many as all experts together.
    pub neurons: usize,
    /// Samples per step.
    pub batch: usize,
    /// "auto": phase three's.
    pub lr: Auto<f64>,
    /// "auto": phase three's.
    pub lr_end: Auto<f64>,
    /// Fraction of the steps after which the rate decays from `lr` to `lr_end`.
    pub decay_start: f64,
    /// How the rate decays after `decay_start`.
    pub schedule: Schedule,
    /// "auto" (h_k* of the task) or a Hermite link such as "h3".
    pub activation: String,
    /// Each neuron's loss: correlation or squared ([`Loss`]).
    pub loss: Loss,
    /// Each neuron's second-layer sign in the loss: learned or always +1.
    pub sign: NeuronSign,
    /// Longest tangent step of one SGD step (see [`PhaseConfig::max_step`]).
    pub max_step: f64,
    /// Times, evenly spaced over training, that stuck neurons (running
    /// correlation gain below a tenth of the best neuron's) are redrawn at
    /// random, as phase I restarts stuck experts; 0 disables.
    pub restarts: u32,
}

/// What is logged during training and how the models are evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Log a metrics record every this many steps (0: only at phase ends).
    pub log_every: u64,
    /// Fresh samples used to measure routing purity while logging.
    pub probe_samples: usize,
    /// Fresh samples of the final evaluation.
    pub test_samples: usize,
    /// Overlap that counts as weak recovery.
    pub recovery_threshold: f64,
}

/// The targets every model's probes watch for, and stopping at them
/// (docs/algorithm.md, "Samples to learn"; weak recovery is
/// `metrics.recovery_threshold`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetsConfig {
    /// Overlap that counts as learned (every cluster's w*_c and w*_g).
    pub learned_overlap: f64,
    /// Probe relative error that counts as learned (joint training).
    pub relative_error: f64,
    /// Phase II's target: routing purity within this of the best linear router.
    pub purity_margin: f64,
    /// Stop each model, and each phase of the staged MoE, at its target
    /// (an oracle schedule that reads the ground truth: for measurement).
    pub until: bool,
    /// With `until`: every phase and model trains at most `cap` times its
    /// configured length (the budget laws' when "auto").
    pub cap: f64,
}

impl TargetsConfig {
    /// Whether every field holds its default.
    pub fn is_default(&self) -> bool {
        *self == TargetsConfig::default()
    }
}

impl Default for TargetsConfig {
    fn default() -> Self {
        TargetsConfig {
            learned_overlap: 0.9,
            relative_error: 0.2,
            purity_margin: 0.01,
            until: false,
            cap: 4.0,
        }
    }
}

/// Default step clip. Measured at d = 16 to 256, k* = 3 and 4: the median
/// step turns a neuron by 0.001 to 0.01 radians, 2-4 % of steps by more
/// than 0.05 and about 1 in 1000 by more than 0.3, enough (at k* = 4) to
/// throw a learned direction out of its basin in a long run.
const MAX_STEP: f64 = 0.05;

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            task: TaskConfig::default(),
            moe: MoeConfig::default(),
            phase_one: PhaseConfig {
                steps: Auto::Auto,
                batch: 64,
                lr: Auto::Auto,
                lr_end: Auto::Auto,
                decay_start: 0.5,
                schedule: Schedule::Constant,
                centre_samples: 4_096,
                activation: "auto".into(),
                loss: Loss::Correlation,
                sign: NeuronSign::Alternating,
                max_step: MAX_STEP,
            },
            phase_two: RouterConfig {
                steps: 3_000,
                batch: 64,
                lr: 0.02,
            },
            phase_three: PhaseConfig {
                steps: Auto::Auto,
                batch: 64,
                lr: Auto::Auto,
                lr_end: Auto::Auto,
                decay_start: 0.5,
                schedule: Schedule::Cosine,
                centre_samples: 4_096,
                activation: "auto".into(),
                loss: Loss::Correlation,
                sign: NeuronSign::Learned,
                max_step: MAX_STEP,
            },
            readout: ReadoutConfig::default(),
            vanilla: VanillaConfig::default(),
            metrics: MetricsConfig::default(),
            joint: JointConfig::default(),
            targets: TargetsConfig::default(),
        }
    }
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            d: 32,
            clusters: 2,
            rho: 4.0,
            noise: 0.1,
            geometry: Geometry::Orthonormal,
            signs: Vec::new(),
            local_link: Links::One("h3".into()),
            global_link: "h3".into(),
        }
    }
}

impl Default for MoeConfig {
    fn default() -> Self {
        MoeConfig {
            experts: Auto::Auto,
            neurons: 8,
            gate: Gate::Top1,
            top_k: 2,
            gate_noise: 1.0,
            merge: Merge::Pool,
            merge_threshold: 0.5,
            allocation: Allocation::ByLoad,
            whiten: true,
            restart_every: Auto::Auto,
            training: Training::Staged,
        }
    }
}

impl Default for PhaseConfig {
    fn default() -> Self {
        Config::default().phase_one
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Config::default().phase_two
    }
}

impl Default for ReadoutConfig {
    fn default() -> Self {
        ReadoutConfig {
            samples: Auto::Auto,
            ridge: 1e-6,
            bias_max: Auto::Auto,
            biases: Auto::Auto,
        }
    }
}

impl Default for VanillaConfig {
    fn default() -> Self {
        VanillaConfig {
            enabled: true,
            neurons: 0,
            batch: 64,
            lr: Auto::Auto,
            lr_end: Auto::Auto,
            decay_start: 0.5,
            schedule: Schedule::Cosine,
            activation: "auto".into(),
            loss: Loss::Correlation,
            sign: NeuronSign::Learned,
            max_step: MAX_STEP,
            restarts: 3,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            log_every: 250,
            probe_samples: 2_000,
            test_samples: 20_000,
            recovery_threshold: 0.5,
        }
    }
}
