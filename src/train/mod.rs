//! The staged algorithm (SPEC §4): phase I (experts specialise), phase II
//! (the router learns), phase III (experts learn their cluster), phase IV
//! (readout); and the vanilla baseline on the same sample budget.
//!
//! This file holds what every phase shares: the training context (`Run`:
//! streams, sample count, journal, monitor, checkpoints), the checkpointable
//! `Stage`s and `train_moe`, which runs the phases in order. One file per
//! phase: `phase_one.rs` (with restarts and merging), `phase_two.rs`,
//! `phase_three.rs` (with the sharing of neurons), and `vanilla.rs`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Allocation, Merge, ReadoutConfig, ValidConfig, ValidPhase};
use crate::error::{Error, Result};
use crate::metrics::{self, Record};
use crate::model::router::{router_gradient, GateRule, Router};
use crate::model::{self, Activation, InputMap, Moe, NeuronStats, SphereStep, TwoLayer, Vanilla};
use crate::numerics::linalg::matmul;
use crate::numerics::rng::{stream, Stream, StreamId};
use crate::phase::{ModelKind, Phase};
use crate::task::{Batch, Task};

mod phase_one;
mod phase_three;
mod phase_two;
pub mod readout;
mod vanilla;

use phase_one::phase_one;
use phase_three::phase_three;
use phase_two::phase_two;

pub use phase_one::{merge_experts, PhaseOne};
pub use phase_three::{allocate_by_load, PhaseThree, Routed};
pub use vanilla::train_vanilla;

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

/// Where the metric records of one model go.
pub type Sink<'a> = &'a mut dyn Journal;

/// Where one model's training reports: metric records as they come and,
/// if asked for, checkpoints of its complete state.
pub trait Journal: Send {
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
    fn checkpoint(&mut self, _state: &ModelState) -> Result<()> {
        Ok(())
    }
    /// The signal that asked the run to stop, if one did: training then
    /// saves a checkpoint and returns [`Error::Interrupted`].
    fn stop_requested(&self) -> Option<i32> {
        None
    }
}

impl<F: FnMut(&Record) -> Result<()> + Send> Journal for F {
    fn record(&mut self, rec: &Record) -> Result<()> {
        self(rec)
    }
}

/// Everything one model's training needs to go on exactly where it was:
/// sample count, generator states, and the state of the current stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelState {
    pub model: ModelKind,
    pub samples: u64,
    pub data: Stream,
    pub init: Stream,
    pub stage: Stage,
}

/// Where a model is: inside a phase (after `step` of its steps), or done.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Stage {
    PhaseOne {
        step: u64,
        one: PhaseOne,
        neurons: NeuronStats,
    },
    PhaseTwo {
        step: u64,
        one: PhaseOne,
        noise: Stream,
        theta: Array2<f32>,
    },
    PhaseThree(Box<PhaseThree>),
    MoeTrained(Box<Moe>),
    VanillaTrain {
        step: u64,
        map: InputMap,
        w: Array2<f32>,
        neurons: NeuronStats,
    },
    VanillaTrained(Box<Vanilla>),
}

impl Stage {
    /// The phase in progress and the step done in it; None once trained.
    pub fn position(&self) -> Option<(Phase, u64)> {
        match self {
            Stage::PhaseOne { step, .. } => Some((Phase::PhaseOne, *step)),
            Stage::PhaseTwo { step, .. } => Some((Phase::PhaseTwo, *step)),
            Stage::PhaseThree(p) => Some((Phase::PhaseThree, p.step)),
            Stage::MoeTrained(_) | Stage::VanillaTrained(_) => None,
            Stage::VanillaTrain { step, .. } => Some((Phase::Train, *step)),
        }
    }
}

/// Shared state of one model's training: its data stream, sample count,
/// metric sink and monitor.
struct Run<'a> {
    cfg: &'a ValidConfig,
    task: &'a Task,
    model: ModelKind,
    data: Stream,
    init: Stream,
    samples: u64,
    journal: Sink<'a>,
    monitor: &'a dyn Monitor,
}

impl<'a> Run<'a> {
    /// A model's training from the start (the seed's `streams`: data,
    /// initialisation) or from a checkpoint's state; also returns the stage
    /// to go on from.
    fn start(
        cfg: &'a ValidConfig,
        task: &'a Task,
        model: ModelKind,
        streams: (StreamId, StreamId),
        journal: Sink<'a>,
        monitor: &'a dyn Monitor,
        resume: Option<ModelState>,
    ) -> (Self, Option<Stage>) {
        let (data, init, samples, stage) = match resume {
            Some(s) => (s.data, s.init, s.samples, Some(s.stage)),
            None => (
                stream(cfg.seed, streams.0),
                stream(cfg.seed, streams.1),
                0,
                None,
            ),
        };
        let run = Run {
            cfg,
            task,
            model,
            data,
            init,
            samples,
            journal,
            monitor,
        };
        (run, stage)
    }

    fn draw(&mut self, batch: &mut Batch) {
        self.task.sample_into(batch, &mut self.data);
        self.samples += batch.len() as u64;
    }

    fn log_due(&self, step: u64, steps: u64) -> bool {
        let every = self.cfg.metrics.log_every;
        step == steps || (every > 0 && step.is_multiple_of(every))
    }

    fn record(&mut self, phase: Phase, step: u64, fill: impl FnOnce(&mut Record)) -> Result<()> {
        let mut rec = Record {
            model: self.model,
            phase,
            step,
            samples: self.samples,
            ..Record::default()
        };
        fill(&mut rec);
        self.journal.record(&rec)
    }

    /// The model's state at `stage`.
    fn state(&self, stage: Stage) -> ModelState {
        ModelState {
            model: self.model,
            samples: self.samples,
            data: self.data.clone(),
            init: self.init.clone(),
            stage,
        }
    }

    /// After `step` of a phase: a checkpoint if one is due or a stop was
    /// requested, and then the stop.
    fn save_point(&mut self, step: u64, stage: impl FnOnce() -> Stage) -> Result<()> {
        let stop = self.journal.stop_requested();
        if stop.is_none() && !self.journal.checkpoint_due(step) {
            return Ok(());
        }
        let state = self.state(stage());
        self.journal.checkpoint(&state)?;
        match stop {
            Some(signal) => {
                let (phase, step) = state
                    .stage
                    .position()
                    .expect("save points lie inside a phase");
                Err(Error::Interrupted {
                    signal,
                    model: self.model,
                    phase,
                    step: Some(step),
                })
            }
            None => Ok(()),
        }
    }

    /// Saves the trained model, so a resumed run does not train it again.
    fn save_trained(&mut self, stage: Stage) -> Result<()> {
        if self.journal.checkpointing() {
            let state = self.state(stage);
            self.journal.checkpoint(&state)?;
        }
        Ok(())
    }

    fn diverged(&self, phase: Phase, step: u64, quantity: &'static str) -> Error {
        Error::Diverged {
            model: self.model,
            phase,
            step,
            quantity,
        }
    }

    /// The input map (centre, optional whitening) estimated from `n` fresh inputs.
    fn input_map(&mut self, n: usize, whiten: bool) -> InputMap {
        let mut batch = Batch::new(n, self.task.d);
        self.draw(&mut batch);
        InputMap::estimate(batch.x.view(), whiten)
    }

    /// Spherical online SGD of the rows of `w` on all samples, through the
    /// input map (phase I with tied experts, and the vanilla network),
    /// from step `done + 1` on.
    /// `stats` is the neurons' running correlations and signs to go on
    /// from (None: from the start). `on_step` sees the directions after the step and
    /// the step's state (the batch's pre-activations before it, the running
    /// correlations after it).
    #[allow(clippy::too_many_arguments)]
    fn sphere_sgd(
        &mut self,
        phase: Phase,
        p: &ValidPhase,
        samples: u64,
        done: u64,
        w: &mut Array2<f32>,
        stats: Option<NeuronStats>,
        map: &InputMap,
        mut on_step: impl FnMut(
            &mut Self,
            u64,
            &mut Array2<f32>,
            f64,
            &Batch,
            &mut SphereStep,
        ) -> Result<()>,
    ) -> Result<SphereStep> {
        let mut sgd =
            SphereStep::new(&p.activation, p.loss, p.sign, w.nrows()).with_max_step(p.max_step);
        if let Some(stats) = stats {
            sgd.set_stats(stats);
        }
        let mut batch = Batch::new(p.batch, self.task.d);
        // Batches of p.batch samples; the last one takes what is left.
        let steps = samples.div_ceil(p.batch as u64);
        let last_batch = (samples - (steps - 1) * p.batch as u64) as usize;
        self.monitor.phase(self.model, phase, steps);
        self.monitor.advance(self.model, done);
        for step in done + 1..=steps {
            if step == steps && last_batch != batch.len() {
                batch = Batch::new(last_batch, self.task.d);
            }
            self.draw(&mut batch);
            crate::numerics::linalg::centre_rows(batch.x.view_mut(), &map.centre);
            let lr = p.schedule.at(step - 1, steps);
            let moved = sgd.step(
                w,
                map.whiten.as_ref(),
                batch.x.view(),
                &batch.y,
                None,
                lr as f32,
            );
            if !moved {
                return Err(self.diverged(phase, step, "a first-layer weight"));
            }
            on_step(self, step, w, lr, &batch, &mut sgd)?;
            tick(self.monitor, self.model, step, steps);
        }
        Ok(sgd)
    }
}

/// Reports progress to the monitor every 64 steps and at the last step.
fn tick(monitor: &dyn Monitor, model: ModelKind, step: u64, steps: u64) {
    const EVERY: u64 = 64;
    if step.is_multiple_of(EVERY) {
        monitor.advance(model, EVERY);
    } else if step == steps {
        monitor.advance(model, step % EVERY);
    }
}

fn gate_rule(cfg: &ValidConfig) -> GateRule {
    GateRule {
        kind: cfg.moe.gate,
        top_k: cfg.moe.top_k,
        noise: cfg.moe.gate_noise as f32,
    }
}

/// The router's gate and what it needs beside the weights: the probe
/// samples that measure purity, and the stream of the noisy gate.
struct Routing {
    rule: GateRule,
    probe: Batch,
    noise: Stream,
}

impl Routing {
    fn confusion(&mut self, router: &Router, clusters: usize) -> Vec<Vec<u64>> {
        let assigned = router.assign(self.probe.x.view(), &self.rule, &mut self.noise);
        metrics::confusion(&self.probe.c, &assigned, clusters, router.experts())
    }
}

/// Trains the mixture of experts through phases I to IV, from the start or
/// from a checkpoint's `resume` state.
pub fn train_moe(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink,
    monitor: &dyn Monitor,
    resume: Option<ModelState>,
) -> Result<Moe> {
    let streams = (StreamId::MoeData, StreamId::MoeInit);
    let (mut run, stage) = Run::start(cfg, task, ModelKind::Moe, streams, journal, monitor, resume);
    let (one, two, three) = match stage {
        None => (phase_one(&mut run, None)?, None, None),
        Some(Stage::PhaseOne { step, one, neurons }) => {
            (phase_one(&mut run, Some((step, one, neurons)))?, None, None)
        }
        Some(Stage::PhaseTwo {
            step,
            one,
            noise,
            theta,
        }) => (one, Some((step, noise, theta)), None),
        Some(Stage::PhaseThree(p)) => (p.one.clone(), None, Some(p)),
        Some(Stage::MoeTrained(moe)) => return Ok(*moe),
        Some(other) => return Err(wrong_stage(ModelKind::Moe, &other)),
    };
    let (expert_group, k) = merge_experts(&one.u, cfg.moe.merge, cfg.moe.merge_threshold);
    let probe = task.sample(
        cfg.metrics.probe_samples,
        &mut stream(cfg.seed, StreamId::Probe),
    );
    let mut routing = Routing {
        rule: gate_rule(cfg),
        probe,
        noise: match (&two, &three) {
            (Some((_, noise, _)), _) => noise.clone(),
            (_, Some(p)) => p.noise.clone(),
            _ => {
                // Gate noise gets its own stream (a jump ahead of the initialisation's).
                let mut noise = run.init.clone();
                noise.jump();
                noise
            }
        },
    };
    let (router, learned) = match three {
        Some(p) => {
            let router = p.router.clone();
            let learned = phase_three(
                &mut run,
                &router,
                &expert_group,
                &one,
                &mut routing,
                Some(*p),
            )?;
            (router, learned)
        }
        None => {
            let router = phase_two(&mut run, &one, &expert_group, k, &mut routing, two)?;
            let learned = phase_three(&mut run, &router, &expert_group, &one, &mut routing, None)?;
            (router, learned)
        }
    };

    // Phase IV: random biases, ReLU features, ridge readout.
    let experts: Vec<TwoLayer> = learned
        .into_iter()
        .map(|(w, centre)| random_bias_network(w, centre, &cfg.readout, &mut run.init))
        .collect();
    let mut moe = Moe {
        phase_one_directions: one.u,
        input_map: one.map,
        expert_group,
        router,
        gate: routing.rule,
        experts,
        phase1_weak_recovery_samples: one.recovery,
        samples: 0,
    };
    monitor.phase(ModelKind::Moe, Phase::PhaseFour, 1);
    readout::fit_moe(&mut moe, task, cfg, &mut run.data, &mut routing.noise)?;
    run.samples += cfg.readout.samples as u64;
    monitor.advance(ModelKind::Moe, 1);
    moe.samples = run.samples;
    run.save_trained(Stage::MoeTrained(Box::new(moe.clone())))?;
    Ok(moe)
}

/// A checkpoint of one model handed to the other.
fn wrong_stage(model: ModelKind, stage: &Stage) -> Error {
    Error::Checkpoint {
        path: std::path::PathBuf::new(),
        message: format!(
            "it holds a {} stage, not one of the {model} model",
            stage
                .position()
                .map_or("trained", |(phase, _)| phase.name())
        ),
    }
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

/// The readout network on learned directions: each direction repeated
/// `readout.biases` times, each copy with its own bias from U[-b_max, b_max].
fn random_bias_network(
    w: Array2<f32>,
    centre: Array1<f32>,
    readout: &ReadoutConfig,
    rng: &mut Stream,
) -> TwoLayer {
    let rows: Vec<usize> = (0..w.nrows())
        .flat_map(|j| std::iter::repeat_n(j, readout.biases))
        .collect();
    let w = w.select(Axis(0), &rows);
    let b = readout.bias_max;
    let bias = Array1::from_shape_simple_fn(rows.len(), || {
        if b > 0.0 {
            rng.gen_range(-b..=b) as f32
        } else {
            0.0
        }
    });
    TwoLayer {
        a: Array1::zeros(rows.len()),
        w,
        centre,
        bias,
        a0: 0.0,
    }
}
