//! Hyper-parameters: a plain [`Config`] that a TOML file overrides field by
//! field, validated once by [`Config::check`] into a [`ValidConfig`] so the
//! training code never meets an invalid value.
//!
//! Why each default is what it is: see the README's configuration reference.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Input, Result};
pub use crate::model::router::Gate;
pub use crate::model::{Loss, NeuronSign};
use crate::numerics::link::Link;

mod check;

/// Every knob of one run. `Config::default()` is the paper's default task
/// with the tuned staged algorithm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seed of every random stream (directions, initialisation, data, test set).
    pub seed: u64,
    pub task: TaskConfig,
    pub moe: MoeConfig,
    pub phase_one: PhaseConfig,
    pub phase_two: RouterConfig,
    pub phase_three: PhaseConfig,
    pub readout: ReadoutConfig,
    pub vanilla: VanillaConfig,
    pub metrics: MetricsConfig,
}

/// The data model (SPEC §2).
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
    Value(T),
    #[serde(with = "auto_word")]
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
    One(String),
    PerCluster(Vec<String>),
}

/// The mixture of experts (SPEC §3) and how redundant experts are handled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoeConfig {
    /// Number of experts M trained in phase I.
    pub experts: usize,
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
    /// Keep the first expert of each group, discard the rest (SPEC §6 trial).
    Drop,
    /// Keep every expert; the router chooses among all M.
    None,
}

/// Learning-rate schedule shape after `decay_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
    Exponential,
}

/// Spherical online SGD of first-layer directions (phases I and III).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseConfig {
    /// SGD steps; "auto" from the budget laws ([`crate::budget`]).
    pub steps: Auto<u64>,
    pub batch: usize,
    /// Learning rate until `decay_start`; "auto" from the budget laws.
    pub lr: Auto<f64>,
    /// Learning rate at the last step; "auto" from the budget laws.
    pub lr_end: Auto<f64>,
    /// Fraction of the steps after which the rate decays from `lr` to `lr_end`.
    pub decay_start: f64,
    pub schedule: Schedule,
    /// Samples drawn (and counted in the budget) to estimate the input centre(s).
    pub centre_samples: usize,
    /// "auto" (h_k* of the task) or a Hermite link such as "h3".
    pub activation: String,
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
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
}

/// Phase IV: random-bias ReLU features and a ridge readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadoutConfig {
    /// Fresh samples for the ridge regression (the same count for both models).
    pub samples: usize,
    /// Ridge penalty lambda on the mean squared loss.
    pub ridge: f64,
    /// Biases are drawn from U[-bias_max, bias_max].
    pub bias_max: f64,
    /// Random biases per first-layer direction: each learned direction
    /// becomes this many ReLU features.
    pub biases: usize,
}

/// The vanilla two-layer baseline; its sample budget equals the MoE's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VanillaConfig {
    /// Whether to train the baseline at all.
    pub enabled: bool,
    /// Neurons N; 0 means M * J, as many as all experts together.
    pub neurons: usize,
    pub batch: usize,
    /// "auto": phase three's.
    pub lr: Auto<f64>,
    /// "auto": phase three's.
    pub lr_end: Auto<f64>,
    pub decay_start: f64,
    pub schedule: Schedule,
    pub activation: String,
    pub loss: Loss,
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
            experts: 8,
            neurons: 8,
            gate: Gate::Top1,
            top_k: 2,
            gate_noise: 1.0,
            merge: Merge::Pool,
            merge_threshold: 0.5,
            allocation: Allocation::ByLoad,
            whiten: true,
            restart_every: Auto::Auto,
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
            samples: 40_000,
            ridge: 1e-6,
            bias_max: 3.0,
            biases: 4,
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

impl Config {
    /// Reads a TOML file whose fields override the defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with_overrides(path, &[])
    }

    /// Reads a TOML file, then applies `FIELD=VALUE` overrides (see
    /// [`Config::from_toml_with_overrides`]).
    pub fn from_file_with_overrides(path: &Path, sets: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_overrides(&text, sets).map_err(|e| match e {
            // The file is to blame unless the value came from a `--set`.
            Error::Parse {
                input: Input::Text,
                message,
            } => Error::parse(path, message),
            other => other,
        })
    }

    /// Parses TOML text whose fields override the defaults.
    pub fn from_toml(text: &str) -> Result<Self> {
        Self::from_toml_with_overrides(text, &[])
    }

    /// Parses TOML text over the defaults, then applies `FIELD=VALUE`
    /// overrides (dotted field paths, TOML values; a bare word is taken as a
    /// string). Merging happens on the TOML tables, field by field, so a
    /// section given in part keeps its own defaults for the rest.
    pub fn from_toml_with_overrides(text: &str, sets: &[String]) -> Result<Self> {
        let parse_error = |message: String| Error::Parse {
            input: Input::Text,
            message: message.trim_end().replace('\n', " "),
        };
        // The `--set` behind each field it gave, to blame it for a type error.
        let mut set_fields: Vec<(String, &String)> = Vec::new();
        let mut table = toml::Table::try_from(Config::default()).expect("the defaults serialise");
        let file: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        check_known_fields(&table, &file, "")?;
        merge_tables(&mut table, file);
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .ok_or_else(|| Error::invalid("--set", set, "FIELD=VALUE, e.g. task.d=64"))?;
            // One TOML value, or else the raw text as a string: `1\nseed = 5`
            // is the string "1\nseed = 5", never two assignments.
            let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .filter(|t| t.len() == 1)
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
            let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
            // No field is deeper than `section.field`; a longer path is
            // malformed (and would build a needlessly deep table).
            if path.len() > MAX_SET_DEPTH || path.iter().any(|p| p.is_empty()) {
                return Err(Error::invalid(
                    "--set",
                    format!("{set:?}"),
                    "FIELD=VALUE with FIELD a dotted field name such as task.d",
                ));
            }
            let mut over = toml::Table::new();
            let (last, parents) = path.split_last().expect("split yields one part");
            let mut node = &mut over;
            for part in parents {
                node = node
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .expect("a table just inserted");
            }
            node.insert(last.to_string(), value);
            check_known_fields(&table, &over, "")?;
            merge_tables(&mut table, over);
            set_fields.push((path.join("."), set));
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                let error = parse_error(e.to_string());
                // Blame the last `--set` of the field the error names, if any.
                let named = |(field, _): &&(String, &String)| {
                    e.to_string().contains(&format!("in `{field}`"))
                };
                match (error, set_fields.iter().rev().find(named)) {
                    (Error::Parse { message, .. }, Some((_, set))) => Error::Parse {
                        input: Input::Set(set.to_string()),
                        message,
                    },
                    (error, _) => error,
                }
            })
    }

    /// The full configuration as TOML (what `config.toml` of a run holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serialises to TOML")
    }

    /// Validates every field once; the result is what training consumes.
    pub fn check(&self) -> Result<ValidConfig> {
        check::check(self)
    }
}

/// Most parts of a `--set` field name: `section.field`, with room for the
/// type error of one level too deep (`task.d.x` names `task.d`).
const MAX_SET_DEPTH: usize = 4;

/// Rejects a field that the defaults do not have, naming the closest valid one.
fn check_known_fields(known: &toml::Table, given: &toml::Table, prefix: &str) -> Result<()> {
    for (key, value) in given {
        let path = format!("{prefix}{}", key_text(key));
        match known.get(key) {
            Some(toml::Value::Table(k)) => {
                if let toml::Value::Table(g) = value {
                    check_known_fields(k, g, &format!("{path}."))?;
                }
            }
            Some(_) => {}
            None => {
                let closest = known
                    .keys()
                    .min_by_key(|k| strsim::levenshtein(k, key))
                    .filter(|k| strsim::levenshtein(k, key) <= key.len().max(3) / 2 + 1);
                let valid = known
                    .keys()
                    .map(|k| format!("`{prefix}{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let hint = match closest {
                    Some(c) => format!("; did you mean `{prefix}{c}`? (valid here: {valid})"),
                    None => format!(" (valid here: {valid})"),
                };
                return Err(Error::UnknownField { field: path, hint });
            }
        }
    }
    Ok(())
}

/// A key as TOML writes it in a dotted name: bare, or quoted if it is
/// empty or holds other characters than letters, digits, `_` and `-`.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return key.to_string();
    }
    let mut out = String::from('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Overrides `base` with `over`, recursing into tables present in both.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A learning-rate schedule that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub lr_end: f64,
    pub decay_start: f64,
    pub shape: Schedule,
}

impl LrSchedule {
    /// Learning rate at `step` of `steps`.
    pub fn at(&self, step: u64, steps: u64) -> f64 {
        let start = (self.decay_start * steps as f64).floor();
        let span = steps as f64 - start;
        let t = step as f64;
        if self.shape == Schedule::Constant || t < start || span <= 1.0 {
            return self.lr;
        }
        let frac = ((t - start) / (span - 1.0)).clamp(0.0, 1.0);
        match self.shape {
            Schedule::Constant => self.lr,
            Schedule::Linear => self.lr + (self.lr_end - self.lr) * frac,
            Schedule::Cosine => {
                self.lr_end
                    + 0.5 * (self.lr - self.lr_end) * (1.0 + (std::f64::consts::PI * frac).cos())
            }
            Schedule::Exponential => self.lr * (self.lr_end / self.lr).powf(frac),
        }
    }
}

/// Validated settings of one spherical-SGD phase.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidPhase {
    pub steps: u64,
    pub batch: usize,
    pub schedule: LrSchedule,
    pub centre_samples: usize,
    /// Normalised Hermite coefficients of the activation.
    pub activation: Vec<f64>,
    pub loss: Loss,
    pub sign: NeuronSign,
    /// Longest tangent step (the turn is atan of it).
    pub max_step: f32,
}

/// A configuration that passed [`Config::check`]: links parsed, signs and
/// budgets resolved. Only `check` makes one, so training never meets an
/// invalid value; its fields are read through the methods below.
#[derive(Clone, Debug)]
pub struct ValidConfig {
    pub(crate) seed: u64,
    /// The data model as configured; `signs` and the links below are its
    /// resolved forms.
    pub(crate) task: TaskConfig,
    pub(crate) signs: Vec<f64>,
    pub(crate) local_links: Vec<Link>,
    pub(crate) global_link: Link,
    /// Information exponent of the task (smallest over its links).
    pub(crate) information_exponent: usize,
    /// Assumptions of the paper's theorem that this task violates.
    pub(crate) warnings: Vec<String>,
    /// The mixture of experts (every field checked).
    pub(crate) moe: MoeConfig,
    /// Phase-I steps between restarts (`moe.restart_every` resolved).
    pub(crate) restart_every: u64,
    /// What the budget laws chose for this task (used where a field is "auto").
    pub(crate) budget: crate::budget::Budget,
    pub(crate) phase_one: ValidPhase,
    pub(crate) phase_two: RouterConfig,
    pub(crate) phase_three: ValidPhase,
    pub(crate) readout: ReadoutConfig,
    pub(crate) vanilla_enabled: bool,
    pub(crate) vanilla_neurons: usize,
    pub(crate) vanilla: ValidPhase,
    /// Stuck-neuron restarts of the vanilla network (`vanilla.restarts`).
    pub(crate) vanilla_restarts: u32,
    pub(crate) metrics: MetricsConfig,
    /// Training samples of each model (readout excluded).
    pub(crate) train_samples: u64,
    /// The original configuration, for `config.toml`.
    pub(crate) config: Config,
}

impl ValidConfig {
    /// The seed of every random stream.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The data model as configured.
    pub fn task(&self) -> &TaskConfig {
        &self.task
    }

    /// The signs s_c of the global term, resolved.
    pub fn signs(&self) -> &[f64] {
        &self.signs
    }

    /// The local links f*_c, parsed.
    pub fn local_links(&self) -> &[Link] {
        &self.local_links
    }

    /// The global link g*, parsed.
    pub fn global_link(&self) -> &Link {
        &self.global_link
    }

    /// Information exponent of the task (smallest over its links).
    pub fn information_exponent(&self) -> usize {
        self.information_exponent
    }

    /// Assumptions of the paper's theorem that this task violates.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The mixture of experts' settings.
    pub fn moe(&self) -> &MoeConfig {
        &self.moe
    }

    /// Phase-I steps between restarts.
    pub fn restart_every(&self) -> u64 {
        self.restart_every
    }

    /// What the budget laws chose for this task.
    pub fn budget(&self) -> &crate::budget::Budget {
        &self.budget
    }

    pub fn phase_one(&self) -> &ValidPhase {
        &self.phase_one
    }

    pub fn phase_two(&self) -> &RouterConfig {
        &self.phase_two
    }

    pub fn phase_three(&self) -> &ValidPhase {
        &self.phase_three
    }

    pub fn readout(&self) -> &ReadoutConfig {
        &self.readout
    }

    /// The vanilla network's training, if it is trained at all.
    pub fn vanilla(&self) -> Option<&ValidPhase> {
        self.vanilla_enabled.then_some(&self.vanilla)
    }

    /// Neurons of the vanilla network.
    pub fn vanilla_neurons(&self) -> usize {
        self.vanilla_neurons
    }

    /// Stuck-neuron restarts of the vanilla network.
    pub fn vanilla_restarts(&self) -> u32 {
        self.vanilla_restarts
    }

    pub fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }

    /// Training samples of each model (readout excluded).
    pub fn train_samples(&self) -> u64 {
        self.train_samples
    }

    /// The configuration as given, which `config.toml` holds.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every rate and length this configuration resolved to, beside the
    /// budget laws' own choice (`summary.json`'s `budget`).
    pub fn resolved_budget(&self) -> crate::budget::ResolvedBudget {
        crate::budget::ResolvedBudget {
            phase_one_lr: self.phase_one.schedule.lr,
            phase_one_steps: self.phase_one.steps,
            restart_every: self.restart_every,
            phase_two_steps: self.phase_two.steps,
            phase_three_lr: self.phase_three.schedule.lr,
            phase_three_lr_end: self.phase_three.schedule.lr_end,
            phase_three_steps: self.phase_three.steps,
            vanilla_lr: self.vanilla.schedule.lr,
            vanilla_lr_end: self.vanilla.schedule.lr_end,
            vanilla_steps: self.vanilla.steps,
            samples_per_model: self.total_samples(),
            theory: self.budget.clone(),
        }
    }

    /// Samples each model sees in all: training plus readout.
    pub fn total_samples(&self) -> u64 {
        self.train_samples + self.readout.samples as u64
    }
}
