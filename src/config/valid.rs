//! The checked form of a configuration, which only [`Config::check`] makes.

use super::{Config, Geometry, MetricsConfig, MoeConfig, RouterConfig, Schedule, Training};
use crate::capacity::{ExpertsChoice, ReadoutPlan};
use crate::model::gate::{Gate, GateRule};
use crate::model::joint::{JointInit, JointLoss};
use crate::model::optim::OptimizerRule;
use crate::model::{Loss, NeuronSign};
use crate::numerics::link::Link;

/// A learning-rate schedule that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    /// Learning rate until `decay_start`.
    pub lr: f64,
    /// Learning rate at the last step.
    pub lr_end: f64,
    /// Fraction of the steps after which the rate decays.
    pub decay_start: f64,
    /// How it decays.
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
    /// SGD steps (resolved from "auto").
    pub steps: u64,
    /// Samples per step.
    pub batch: usize,
    /// The learning rate at each step.
    pub schedule: LrSchedule,
    /// Samples drawn to estimate the input centre(s).
    pub centre_samples: usize,
    /// Normalised Hermite coefficients of the activation.
    pub activation: Vec<f64>,
    /// Correlation or squared loss of each neuron.
    pub loss: Loss,
    /// Each neuron's second-layer sign in the loss.
    pub sign: NeuronSign,
    /// Longest tangent step (the turn is atan of it).
    pub max_step: f32,
}

/// The data model of a checked configuration: the signs filled in (+1, -1,
/// +1, ... when none were given) and the links parsed.
#[derive(Clone, Debug)]
pub struct ValidTask {
    /// Input dimension d.
    pub d: usize,
    /// Number of clusters C.
    pub clusters: usize,
    /// Cluster separation rho.
    pub rho: f64,
    /// Label noise standard deviation zeta.
    pub noise: f64,
    /// How the directions are drawn.
    pub geometry: Geometry,
    /// s_c, one per cluster.
    pub signs: Vec<f64>,
    /// f*_c, one per cluster.
    pub local_links: Vec<Link>,
    /// g*, parsed.
    pub global_link: Link,
}

/// The readouts of a checked configuration: one sample count for both
/// models, each model's features ("auto" resolved by
/// [`crate::capacity::readout_plan`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidReadout {
    /// Fresh samples of each model's ridge regression.
    pub samples: usize,
    /// Ridge penalty lambda on the mean squared loss.
    pub ridge: f64,
    /// The MoE's features per learned neuron and their range.
    pub moe: ReadoutPlan,
    /// The vanilla network's.
    pub vanilla: ReadoutPlan,
}

impl ValidReadout {
    /// A warning for each model whose predicted readout error stays above
    /// `relative_error / 10` with the features chosen.
    pub fn warnings(&self, relative_error: f64) -> Vec<String> {
        [("MoE", &self.moe), ("vanilla", &self.vanilla)]
            .into_iter()
            .filter(|(_, p)| p.predicted_error > relative_error / 10.0)
            .map(|(model, p)| {
                format!(
                    "readout: the {model} readout's predicted relative error once every direction is learned is {:.3} ({} biases in [-{}, {}] on {} neurons per direction, {} samples), above a tenth of targets.relative_error = {relative_error}; set readout.samples, readout.biases or readout.bias_max, or more neurons",
                    p.predicted_error, p.biases, p.bias_max, p.bias_max, p.neurons_per_direction, self.samples
                )
            })
            .collect()
    }
}

/// Validated settings of joint training.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidJoint {
    /// Optimiser steps (resolved from "auto").
    pub steps: u64,
    /// Samples per step.
    pub batch: usize,
    /// The learning rate at each step.
    pub schedule: LrSchedule,
    /// SGD with its momentum, or Adam with its rates.
    pub optimizer: OptimizerRule,
    /// Samples drawn to estimate the input centre.
    pub centre_samples: usize,
    /// The MoE's loss (activation, gate, auxiliary weights).
    pub loss: JointLoss,
    /// Whether first-layer rows stay on the unit sphere.
    pub sphere: bool,
    /// How the parameters start.
    pub init: JointInit,
    /// Samples each model draws: the centre's and `steps` batches (the
    /// last one takes what is left).
    pub samples: u64,
}

impl ValidJoint {
    /// The vanilla network's loss: the same activation, gate 1, no
    /// auxiliary terms.
    pub fn vanilla_loss(&self) -> JointLoss {
        JointLoss {
            activation: self.loss.activation.clone(),
            gate: GateRule {
                kind: Gate::Softmax,
                k: 1,
                noise: 0.0,
                renormalise: false,
            },
            balance: 0.0,
            z: 0.0,
        }
    }

    /// Samples of training after the centre's.
    pub fn train_samples(&self) -> u64 {
        self.samples - self.centre_samples as u64
    }
}

/// A configuration that passed [`Config::check`]: links parsed, signs and
/// budgets resolved. Only `check` makes one, so training never meets an
/// invalid value; its fields are read through the methods below.
#[derive(Clone, Debug)]
pub struct ValidConfig {
    pub(crate) seed: u64,
    /// The data model as configured; `signs` and the links below are its
    /// resolved forms.
    pub(crate) task: ValidTask,
    /// Information exponent of the task (smallest over its links).
    pub(crate) information_exponent: usize,
    /// Assumptions of the paper's theorem that this task violates.
    pub(crate) warnings: Vec<String>,
    /// The mixture of experts (every field checked; `experts` as given).
    pub(crate) moe: MoeConfig,
    /// The number of experts M (`moe.experts` resolved) and why.
    pub(crate) experts: ExpertsChoice,
    /// Phase-I steps between restarts (`moe.restart_every` resolved).
    pub(crate) restart_every: u64,
    /// What the budget laws chose for this task (used where a field is "auto").
    pub(crate) budget: crate::budget::Budget,
    pub(crate) phase_one: ValidPhase,
    pub(crate) phase_two: RouterConfig,
    pub(crate) phase_three: ValidPhase,
    pub(crate) readout: ValidReadout,
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
    /// How the models are trained.
    pub(crate) training: Training,
    /// Joint training's settings (checked whatever `training` is).
    pub(crate) joint: ValidJoint,
    /// The targets of samples to learn, and whether to stop at them.
    pub(crate) targets: super::TargetsConfig,
}

impl ValidConfig {
    /// The seed of every random stream.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The data model, resolved.
    pub fn task(&self) -> &ValidTask {
        &self.task
    }

    /// The signs s_c of the global term, resolved.
    pub fn signs(&self) -> &[f64] {
        &self.task.signs
    }

    /// The local links f*_c, parsed.
    pub fn local_links(&self) -> &[Link] {
        &self.task.local_links
    }

    /// The global link g*, parsed.
    pub fn global_link(&self) -> &Link {
        &self.task.global_link
    }

    /// Information exponent of the task (smallest over its links).
    pub fn information_exponent(&self) -> usize {
        self.information_exponent
    }

    /// Assumptions of the paper's theorem that this task violates.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The mixture of experts' settings (`experts` as configured: see
    /// [`ValidConfig::experts`]).
    pub fn moe(&self) -> &MoeConfig {
        &self.moe
    }

    /// The number of experts M, "auto" resolved.
    pub fn experts(&self) -> usize {
        self.experts.experts
    }

    /// Phase-I steps between restarts.
    pub fn restart_every(&self) -> u64 {
        self.restart_every
    }

    /// What the budget laws chose for this task.
    pub fn budget(&self) -> &crate::budget::Budget {
        &self.budget
    }

    /// Phase I's training, resolved.
    pub fn phase_one(&self) -> &ValidPhase {
        &self.phase_one
    }

    /// Phase II's settings (the router).
    pub fn phase_two(&self) -> &RouterConfig {
        &self.phase_two
    }

    /// Phase III's training, resolved.
    pub fn phase_three(&self) -> &ValidPhase {
        &self.phase_three
    }

    /// The readouts' settings, "auto" resolved.
    pub fn readout(&self) -> &ValidReadout {
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

    /// What is logged and how the models are evaluated.
    pub fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }

    /// Training samples of each model (readout excluded).
    pub fn train_samples(&self) -> u64 {
        self.train_samples
    }

    /// How the models are trained.
    pub fn training(&self) -> Training {
        self.training
    }

    /// Joint training's settings.
    pub fn joint(&self) -> &ValidJoint {
        &self.joint
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
            experts: Some(self.experts.clone()),
            readout: Some(crate::capacity::ReadoutChoice {
                samples: self.readout.samples,
                moe: self.readout.moe.clone(),
                vanilla: self.readout.vanilla.clone(),
            }),
            peak_memory_bytes: Some(super::memory::estimate(self).peak_bytes),
        }
    }

    /// Samples each model sees in all: training plus readout.
    pub fn total_samples(&self) -> u64 {
        self.train_samples + self.readout.samples as u64
    }
}
