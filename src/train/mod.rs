//! The staged algorithm (docs/algorithm.md): phase I (experts specialise), phase II
//! (the router learns), phase III (experts learn their cluster), phase IV
//! (readout); and the vanilla baseline on the same sample budget.
//!
//! Training is a stage machine. Each model has its own stage type
//! ([`MoeStage`], [`VanillaStage`]), each phase its own state struct, and a
//! checkpoint is the model's state at a stage ([`ModelState`], generic over
//! the stage type), so a vanilla checkpoint cannot even be handed to the
//! MoE. `train_moe` and `train_vanilla` start at the first stage (or a
//! checkpoint's) and move from stage to stage: each phase runs its state
//! to the end, and the next stage's state starts from what it left.
//!
//! This file holds the stage types, what the phases share (the journal and
//! monitor traits, the router's probe) and `train_moe`; `context.rs` the
//! training context (`Run`: streams, sample count, save points, the
//! spherical SGD loop); one file per phase: `phase_one.rs` (with restarts
//! and merging), `phase_two.rs`, `phase_three.rs` (with the sharing of
//! neurons), `readout.rs` (phase IV, and the vanilla readout), and
//! `vanilla.rs`. Each phase's unit tests, on a small task where its outcome
//! is known, sit beside it.

use ndarray::{Array2, ArrayView2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{Training, ValidConfig};
use crate::error::Result;
use crate::metrics::samples_to::{Target, Watch};
use crate::metrics::{self, Record};
use crate::model::gate::GateRule;
use crate::model::router::Router;
use crate::model::{Moe, Vanilla};
use crate::numerics::rng::{stream, Stream, StreamId};
use crate::phase::{ModelKind, MoeTag, Phase, VanillaTag};
use crate::task::{Batch, Task};

mod context;
pub mod joint;
mod phase_one;
mod phase_three;
mod phase_two;
#[cfg(test)]
mod precision;
pub(crate) mod readout;
mod vanilla;

use context::Run;
use phase_one::phase_one;
use phase_three::phase_three;
use phase_two::phase_two;
use readout::phase_four;

pub use crate::metrics::samples_to::SamplesTo;
pub use joint::{train_joint, JointModelState, JointStage};
pub(crate) use phase_one::merge_experts;
pub use phase_one::{PhaseOne, PhaseOneState};
pub use phase_three::PhaseThreeState;
#[cfg(feature = "internals")]
pub use phase_three::Routed;
pub use phase_two::PhaseTwoState;
pub use vanilla::{train_vanilla, VanillaTrainState};

/// Receives progress of the training loops (progress bars in the CLI).
pub trait Monitor: Sync {
    /// A phase of `steps` steps starts.
    fn phase(&self, _model: ModelKind, _phase: Phase, _steps: u64) {}
    /// `steps` more steps are done.
    fn advance(&self, _model: ModelKind, _steps: u64) {}
}

/// A monitor that ignores everything.
pub struct Silent;

impl Monitor for Silent {}

/// Where the records and checkpoints of the model with stages `S` go.
pub type Sink<'a, S> = &'a mut dyn Journal<S>;

/// Where one model's training reports: metric records as they come and,
/// if asked for, checkpoints of its complete state (a model with stages `S`).
pub trait Journal<S>: Send {
    fn record(&mut self, rec: &Record) -> Result<()>;
    /// Whether checkpoints are written at all.
    fn checkpointing(&self) -> bool {
        false
    }
    /// Whether to save a checkpoint after `step` of a phase.
    fn checkpoint_due(&self, _step: u64) -> bool {
        false
    }
    /// Saves `state`; a resumed run continues from it exactly.
    fn checkpoint(&mut self, _state: &ModelState<S>) -> Result<()> {
        Ok(())
    }
    /// The signal that asked the run to stop, if one did: training then
    /// saves a checkpoint and returns [`Error::Interrupted`].
    fn stop_requested(&self) -> Option<i32> {
        None
    }
}

impl<S, F: FnMut(&Record) -> Result<()> + Send> Journal<S> for F {
    fn record(&mut self, rec: &Record) -> Result<()> {
        self(rec)
    }
}

/// The stages of one model's training: where it is, with everything needed
/// to go on from there.
pub trait Stage: Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send {
    /// The model these are the stages of.
    const MODEL: ModelKind;
    /// The phase in progress and the step done in it; None once trained.
    fn position(&self) -> Option<(Phase, u64)>;
}

/// Everything one model's training needs to go on exactly where it was:
/// sample count, generator states, and the state of the current stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelState<S> {
    /// Always `S::MODEL`. Written into checkpoints so that a file of the
    /// other model is refused by name before its stage is read.
    pub model: ModelKind,
    pub samples: u64,
    pub data: Stream,
    pub init: Stream,
    pub stage: S,
    /// What the probes of samples to learn have seen (empty in
    /// checkpoints written before they existed).
    #[serde(default)]
    pub watch: Watch,
}

/// A checkpoint of the mixture of experts.
pub type MoeState = ModelState<MoeStage>;
/// A checkpoint of the vanilla network.
pub type VanillaState = ModelState<VanillaStage>;

/// Where each model's training starts, for the training the configuration
/// asks for: from the beginning (None) or from a checkpoint's state.
// Made once per run: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Start {
    /// The staged algorithm: the MoE's and the vanilla network's states.
    Staged(Option<MoeState>, Option<VanillaState>),
    /// Joint training: the MoE's and the vanilla network's states.
    Joint(
        Option<JointModelState<MoeTag>>,
        Option<JointModelState<VanillaTag>>,
    ),
}

impl Start {
    /// Both models from the beginning.
    pub(crate) fn fresh(cfg: &ValidConfig) -> Self {
        match cfg.training {
            Training::Staged => Start::Staged(None, None),
            Training::Joint => Start::Joint(None, None),
        }
    }
}

/// Where the mixture of experts is: inside a phase, or trained. (Phase IV,
/// the readout, is one solve and has no stage of its own.)
///
/// The serialised names are those the checkpoint format has always had.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MoeStage {
    PhaseOne(Box<PhaseOneState>),
    PhaseTwo(Box<PhaseTwoState>),
    PhaseThree(Box<PhaseThreeState>),
    #[serde(rename = "MoeTrained")]
    Trained(Box<Moe>),
}

impl Stage for MoeStage {
    const MODEL: ModelKind = ModelKind::Moe;

    fn position(&self) -> Option<(Phase, u64)> {
        match self {
            MoeStage::PhaseOne(s) => Some((Phase::PhaseOne, s.step)),
            MoeStage::PhaseTwo(s) => Some((Phase::PhaseTwo, s.step)),
            MoeStage::PhaseThree(s) => Some((Phase::PhaseThree, s.step)),
            MoeStage::Trained(_) => None,
        }
    }
}

/// Where the vanilla network is: training its first layer, or trained.
// A stage moves a handful of times per run: its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum VanillaStage {
    #[serde(rename = "VanillaTrain")]
    Train(VanillaTrainState),
    #[serde(rename = "VanillaTrained")]
    Trained(Box<Vanilla>),
}

impl Stage for VanillaStage {
    const MODEL: ModelKind = ModelKind::Vanilla;

    fn position(&self) -> Option<(Phase, u64)> {
        match self {
            VanillaStage::Train(s) => Some((Phase::Train, s.step)),
            VanillaStage::Trained(_) => None,
        }
    }
}

/// A trained model and what its probes saw on the way.
#[derive(Clone, Debug)]
pub struct Trained<T> {
    pub model: T,
    pub samples_to: SamplesTo,
}

/// Trains the mixture of experts through phases I to IV, from the start or
/// from a checkpoint's `resume` state.
pub fn train_moe(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink<MoeStage>,
    monitor: &dyn Monitor,
    resume: Option<MoeState>,
) -> Result<Trained<Moe>> {
    let streams = (StreamId::MoeData, StreamId::MoeInit);
    let (mut run, stage) = Run::start(cfg, task, streams, journal, monitor, resume);
    let mut stage = match stage {
        Some(stage) => stage,
        None => MoeStage::PhaseOne(Box::new(PhaseOneState::start(&mut run))),
    };
    let routing = Routing::new(cfg, task);
    loop {
        stage = match stage {
            MoeStage::PhaseOne(s) => {
                let one = phase_one(&mut run, *s)?;
                let gains = (one.neurons.signs.iter().zip(&one.neurons.correlation))
                    .map(|(&a, &r)| a as f64 * r)
                    .collect();
                let start = PhaseTwoState::start(cfg, one.one, gains, &run.init);
                MoeStage::PhaseTwo(Box::new(start))
            }
            MoeStage::PhaseTwo(s) => {
                let two = phase_two(&mut run, &routing, *s)?;
                let three = PhaseThreeState::start(&mut run, &routing, two);
                MoeStage::PhaseThree(Box::new(three))
            }
            MoeStage::PhaseThree(s) => {
                let three = phase_three(&mut run, &routing, *s)?;
                let moe = phase_four(&mut run, &routing, three)?;
                run.save_trained(|| MoeStage::Trained(Box::new(moe.clone())))?;
                MoeStage::Trained(Box::new(moe))
            }
            MoeStage::Trained(moe) => {
                let trained = run.samples - cfg.readout.samples as u64;
                return Ok(Trained {
                    model: *moe,
                    samples_to: run.samples_to(trained, false, true),
                });
            }
        }
    }
}

/// The router's gate, and the probe samples that measure routing purity
/// while logging (their own stream, so logging never changes training).
/// The noisy gate's stream is part of the phases' states: it moves on.
struct Routing {
    rule: GateRule,
    probe: Batch,
}

impl Routing {
    fn new(cfg: &ValidConfig, task: &Task) -> Self {
        Routing {
            rule: GateRule {
                kind: cfg.moe.gate,
                k: cfg.moe.top_k,
                noise: cfg.moe.gate_noise,
                renormalise: true,
            },
            probe: task.sample(
                cfg.metrics.probe_samples,
                &mut stream(cfg.seed, StreamId::Probe),
            ),
        }
    }

    /// Probe samples of cluster c (rows) routed to expert k (columns).
    fn confusion(&self, router: &Router, clusters: usize, noise: &mut Stream) -> Vec<Vec<u64>> {
        self.confusion_of(self.probe.len(), router, clusters, noise)
    }

    /// The same on the first `n` probe samples only.
    fn confusion_of(
        &self,
        n: usize,
        router: &Router,
        clusters: usize,
        noise: &mut Stream,
    ) -> Vec<Vec<u64>> {
        let n = n.min(self.probe.len());
        let x = self.probe.x.slice(ndarray::s![..n, ..]);
        let assigned = router.assign(x, &self.rule, noise);
        metrics::confusion(&self.probe.c[..n], &assigned, clusters, router.experts())
    }
}

/// The routed experts of phase-I directions `u` (see [`merge_experts`]).
/// Each stage recomputes them from `u` rather than keeping them: they are
/// a pure function of it, and the checkpoint format stays as it was.
fn expert_groups(cfg: &ValidConfig, u: &Array2<f32>) -> (Vec<Option<usize>>, usize) {
    merge_experts(u, cfg.moe.merge, cfg.moe.merge_threshold)
}

/// Probes of samples to learn look at overlaps every this many steps (and
/// at a phase's last): 2 C d products per neuron, in f64, against a step's
/// 3 B d in f32 SIMD; measured, every 4 steps cost 5 % of a default run,
/// every 16 about 1 %.
const OVERLAP_PROBE_EVERY: u64 = 16;

/// Whether the overlap probes look after `step` of `steps`.
fn overlap_probe_due(step: u64, steps: u64) -> bool {
    step.is_multiple_of(OVERLAP_PROBE_EVERY) || step == steps
}

/// The overlap probes after `step` of a phase: `weak` and
/// `strong` (and `also`, on the `strong` bar) from the best overlap with
/// w*_c and w*_g of the neurons serving each cluster c (`serving(c)`).
fn probe_overlaps<'w, S: Stage>(
    run: &mut Run<S>,
    phase: Phase,
    step: u64,
    serving: &dyn Fn(usize) -> ArrayView2<'w, f32>,
    also: &[Target],
) -> Result<()> {
    let task = run.task;
    let worst = (0..task.clusters())
        .flat_map(|c| {
            let w = serving(c);
            [
                metrics::best_overlap(w, task.w.row(c)),
                metrics::best_overlap(w, task.wg.view()),
            ]
        })
        .fold(f64::INFINITY, f64::min);
    let (weak, strong) = (
        run.cfg.metrics.recovery_threshold,
        run.cfg.targets.learned_overlap,
    );
    run.probe(phase, step, Target::Weak, worst >= weak)?;
    for &target in std::iter::once(&Target::Strong).chain(also) {
        run.probe(phase, step, target, worst >= strong)?;
    }
    Ok(())
}

fn fill_cluster_overlaps(rec: &mut Record, task: &Task, serving: &[&Array2<f32>], threshold: f64) {
    let per = |f: &dyn Fn(&Array2<f32>, usize) -> f64| -> Vec<f64> {
        serving.iter().enumerate().map(|(c, w)| f(w, c)).collect()
    };
    rec.local_overlap_per_cluster =
        Some(per(&|w, c| metrics::best_overlap(w.view(), task.w.row(c))));
    rec.global_overlap_per_cluster =
        Some(per(&|w, _| metrics::best_overlap(w.view(), task.wg.view())));
    rec.local_aligned_share = Some(per(&|w, c| {
        metrics::aligned_share(w.view(), task.w.row(c), threshold)
    }));
    rec.global_aligned_share = Some(per(&|w, _| {
        metrics::aligned_share(w.view(), task.wg.view(), threshold)
    }));
}

/// What the phases' unit tests share: a small task whose outcome is known.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::config::Config;
    use crate::model::InputMap;
    use ndarray::Axis;

    /// Keeps a copy of every checkpoint, one every `every` steps of a phase.
    pub struct Keep<S> {
        pub every: u64,
        pub states: Vec<ModelState<S>>,
    }

    impl<S: Stage> Journal<S> for Keep<S> {
        fn record(&mut self, _: &Record) -> Result<()> {
            Ok(())
        }
        fn checkpointing(&self) -> bool {
            true
        }
        fn checkpoint_due(&self, step: u64) -> bool {
            step.is_multiple_of(self.every)
        }
        fn checkpoint(&mut self, state: &ModelState<S>) -> Result<()> {
            self.states.push(state.clone());
            Ok(())
        }
    }

    /// The default task at d = 16 (two orthonormal clusters, h_3 links,
    /// rho = 4), with `edit` applied to its configuration.
    pub fn small_task(edit: impl FnOnce(&mut Config)) -> (ValidConfig, Task) {
        let mut config = Config::default();
        config.task.d = 16;
        edit(&mut config);
        let cfg = config.check().expect("a valid test configuration");
        let task = Task::new(&cfg, &mut stream(cfg.seed, StreamId::Task));
        (cfg, task)
    }

    /// A journal that drops every record.
    pub fn no_records(_: &Record) -> Result<()> {
        Ok(())
    }

    /// A model's training context from the start, on the model's streams.
    pub fn context<'a, S: Stage>(
        cfg: &'a ValidConfig,
        task: &'a Task,
        journal: Sink<'a, S>,
    ) -> Run<'a, S> {
        let streams = match S::MODEL {
            ModelKind::Moe => (StreamId::MoeData, StreamId::MoeInit),
            ModelKind::Vanilla => (StreamId::VanillaData, StreamId::VanillaInit),
        };
        Run::start(cfg, task, streams, journal, &Silent, None).0
    }

    /// What a perfect phase I leaves: one expert per cluster, on its w*_c
    /// (with sign +1: every link's leading coefficient is +1), and the
    /// exact global centre rho * mean(v_c).
    pub fn perfect_phase_one(task: &Task) -> PhaseOne {
        let c = task.clusters();
        let centre = task.v.mean_axis(Axis(0)).expect("clusters") * task.rho;
        PhaseOne {
            map: InputMap {
                centre: centre.mapv(|v| v as f32),
                whiten: None,
            },
            u: task.w.mapv(|v| v as f32),
            signs: vec![1.0; c],
            recovery: vec![None; c],
        }
    }

    /// For each cluster, the best |<w_j, w*_c>| over the rows of `w`.
    pub fn local_overlaps(task: &Task, w: &Array2<f32>) -> Vec<f64> {
        (0..task.clusters())
            .map(|c| metrics::best_overlap(w.view(), task.w.row(c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    /// Where the checkpoints were taken: (phase name or "trained", step).
    fn positions<S: Stage>(states: &[ModelState<S>]) -> Vec<(&'static str, u64)> {
        states
            .iter()
            .map(|s| {
                s.stage
                    .position()
                    .map_or(("trained", 0), |(p, s)| (p.name(), s))
            })
            .collect()
    }

    /// The stage machine's promise: from a checkpoint taken in any phase,
    /// or once trained, training ends at exactly the same model.
    #[test]
    fn training_resumed_from_any_stage_gives_the_same_model() {
        let (cfg, task) = small_task(|c| {
            c.task.d = 8;
            c.moe.experts = 4.into();
            c.moe.neurons = 4;
            c.phase_one.steps = 40.into();
            c.phase_two.steps = 20;
            c.phase_three.steps = 40.into();
            c.readout.samples = 2000.into();
        });
        let mut moe_journal = Keep {
            every: 20,
            states: Vec::new(),
        };
        let moe = train_moe(&cfg, &task, &mut moe_journal, &Silent, None).unwrap();
        assert_eq!(
            positions(&moe_journal.states),
            [
                ("phase_one", 20),
                ("phase_one", 40),
                ("phase_two", 20),
                ("phase_three", 20),
                ("phase_three", 40),
                ("trained", 0)
            ]
        );
        for state in moe_journal.states {
            let again = train_moe(&cfg, &task, &mut no_records, &Silent, Some(state)).unwrap();
            assert_eq!(json(&again.model), json(&moe.model));
            assert_eq!(again.samples_to, moe.samples_to);
        }
        let mut vanilla_journal = Keep {
            every: 40,
            states: Vec::new(),
        };
        let vanilla = train_vanilla(&cfg, &task, &mut vanilla_journal, &Silent, None).unwrap();
        let at = positions(&vanilla_journal.states);
        assert!(
            at.len() >= 3 && at.last() == Some(&("trained", 0)),
            "{at:?}"
        );
        for state in vanilla_journal.states {
            let again = train_vanilla(&cfg, &task, &mut no_records, &Silent, Some(state)).unwrap();
            assert_eq!(json(&again.model), json(&vanilla.model));
            assert_eq!(again.samples_to, vanilla.samples_to);
        }
    }
}
