//! The staged algorithm (SPEC §4): phase I (experts specialise), phase II
//! (the router learns), phase III (experts learn their cluster), phase IV
//! (readout); and the vanilla baseline on the same sample budget.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Allocation, Merge, ReadoutConfig, ValidConfig, ValidPhase};
use crate::error::{Error, Result};
use crate::linalg::matmul;
use crate::metrics::{self, Record};
use crate::model::{self, Activation, InputMap, Moe, NeuronStats, SphereStep, TwoLayer, Vanilla};
use crate::phase::{ModelKind, Phase};
use crate::readout;
use crate::rng::{stream, Stream, StreamId};
use crate::router::{router_gradient, GateRule, Router};
use crate::task::{Batch, Task};

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

/// Phase III in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseThree {
    pub step: u64,
    pub one: PhaseOne,
    pub noise: Stream,
    pub router: Router,
    pub centres: Vec<Array1<f32>>,
    pub neurons: Vec<Array2<f32>>,
    /// Running correlation and sign of every neuron, per routed expert.
    pub stats: Vec<NeuronStats>,
    pub serving: Vec<usize>,
    pub purity: f64,
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
            crate::linalg::centre_rows(batch.x.view_mut(), &map.centre);
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

/// Restarts of phase-I experts, decided without ground truth from each
/// expert's running gain a_m R_m = a_m E[y sigma(<u_m, x>)] (about
/// |beta| m^k* / C once an expert has found a cluster, about 0 while it is
/// stuck), which the SGD step keeps.
struct Restarts {
    merge_threshold: f64,
}

impl Restarts {
    /// An expert has found a direction when its gain is at least this
    /// share of the best expert's: with h_3 links, overlap m gives m^3 of the
    /// full correlation, so 0.1 spares every expert past m = 0.46, which then
    /// recovers on its own, while the running mean's noise (about 0.01)
    /// stays below the bar.
    const FOUND_SHARE: f64 = 0.1;
    /// Below this best gain nobody has found anything yet.
    const NOTHING_FOUND: f64 = 0.02;

    /// Keeps the best expert of every distinct direction among those that
    /// found one; redraws the others orthogonally to the kept directions.
    fn restart(&self, u: &mut Array2<f32>, sgd: &mut SphereStep, rng: &mut Stream) {
        let gain: Vec<f64> = (0..u.nrows()).map(|m| sgd.gain(m)).collect();
        let best = gain.iter().copied().fold(0.0, f64::max);
        if best < Self::NOTHING_FOUND {
            return; // nothing to tell apart
        }
        let mut order: Vec<usize> = (0..u.nrows()).collect();
        order.sort_by(|&a, &b| gain[b].total_cmp(&gain[a]));
        let mut kept: Vec<usize> = Vec::new();
        let mut redraw = Vec::new();
        for m in order {
            let found = gain[m] >= Self::FOUND_SHARE * best;
            let redundant = kept
                .iter()
                .any(|&k| (u.row(m).dot(&u.row(k)) as f64).abs() >= self.merge_threshold);
            if found && !redundant {
                kept.push(m);
            } else {
                redraw.push(m);
            }
        }
        let d = u.ncols();
        for m in redraw {
            let mut g = model::random_directions(1, d, rng).row(0).to_owned();
            for &k in &kept {
                let proj = g.dot(&u.row(k));
                g.scaled_add(-proj, &u.row(k));
            }
            let norm = g.dot(&g).sqrt();
            if norm > 1e-3 {
                u.row_mut(m).assign(&(g / norm));
                sgd.restart(m);
            }
        }
    }
}

/// Redraws at random every untied neuron that is stuck: its gain is below
/// [`Restarts::FOUND_SHARE`] of the best neuron's. A neuron that starts
/// nearly orthogonal to every direction needs a time that grows like
/// m0^-(k*-2) to escape, longer than training at k* = 4 for a few of them;
/// a fresh draw usually starts higher. No ground truth is used.
fn restart_stuck(w: &mut Array2<f32>, sgd: &mut SphereStep, rng: &mut Stream) {
    let gain: Vec<f64> = (0..w.nrows()).map(|j| sgd.gain(j)).collect();
    let best = gain.iter().copied().fold(0.0, f64::max);
    if best < Restarts::NOTHING_FOUND {
        return;
    }
    for (j, &g) in gain.iter().enumerate() {
        if g < Restarts::FOUND_SHARE * best {
            let fresh = model::random_directions(1, w.ncols(), rng);
            w.row_mut(j).assign(&fresh.row(0));
            sgd.restart(j);
        }
    }
}

/// Groups experts whose phase-I directions satisfy |<u_m, u_k>| >= threshold
/// (no ground truth used): returns for each expert its routed index, or
/// None when dropped, and the number of routed experts.
pub fn merge_experts(u: &Array2<f32>, merge: Merge, threshold: f64) -> (Vec<Option<usize>>, usize) {
    let m = u.nrows();
    if merge == Merge::None {
        return ((0..m).map(Some).collect(), m);
    }
    let mut leads: Vec<usize> = Vec::new();
    let mut group = vec![None; m];
    for (e, slot) in group.iter_mut().enumerate() {
        // The most similar kept expert, if similar enough.
        let found = leads
            .iter()
            .map(|&l| (u.row(e).dot(&u.row(l)) as f64).abs())
            .enumerate()
            .filter(|&(_, o)| o >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(g, _)| g);
        match found {
            Some(g) => {
                if merge == Merge::Pool {
                    *slot = Some(g);
                }
            }
            None => {
                *slot = Some(leads.len());
                leads.push(e);
            }
        }
    }
    (group, leads.len())
}

/// What phase I leaves: the input map of phases I-II, one direction per
/// expert, and when each cluster was first weakly recovered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseOne {
    map: InputMap,
    u: Array2<f32>,
    /// Each expert's second-layer sign a_m at the end of phase I.
    signs: Vec<f32>,
    recovery: Vec<Option<u64>>,
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

/// Phase I: one tied direction per expert, every sample to every expert,
/// with restarts of stuck and redundant experts.
fn phase_one(run: &mut Run, resume: Option<(u64, PhaseOne, NeuronStats)>) -> Result<PhaseOne> {
    let (cfg, task) = (run.cfg, run.task);
    let p1 = &cfg.phase_one;
    let threshold = cfg.metrics.recovery_threshold;
    let restarts = Restarts {
        merge_threshold: cfg.moe.merge_threshold,
    };
    let (
        stats,
        done,
        PhaseOne {
            map,
            mut u,
            mut recovery,
            ..
        },
    ) = match resume {
        Some((step, one, stats)) => (Some(stats), step, one),
        None => {
            let map = run.input_map(p1.centre_samples, cfg.moe.whiten);
            let u = model::random_directions(cfg.moe.experts, task.d, &mut run.init);
            let recovery = vec![None; task.clusters()];
            let signs = Vec::new();
            (
                None,
                0,
                PhaseOne {
                    map,
                    u,
                    signs,
                    recovery,
                },
            )
        }
    };
    let sgd = run.sphere_sgd(
        Phase::PhaseOne,
        p1,
        p1.steps * p1.batch as u64,
        done,
        &mut u,
        stats,
        &map,
        |run, step, u, lr, _, sgd| {
            let every = cfg.restart_every;
            if every > 0 && step.is_multiple_of(every) && step + every <= p1.steps {
                restarts.restart(u, sgd, &mut run.init);
            }
            for (c, r) in recovery.iter_mut().enumerate() {
                if r.is_none() && metrics::best_overlap(u.view(), task.w.row(c)) >= threshold {
                    *r = Some(run.samples);
                }
            }
            if run.log_due(step, p1.steps) {
                run.record(Phase::PhaseOne, step, |rec| {
                    rec.lr = Some(lr);
                    rec.expert_local_overlap =
                        Some(metrics::overlap_matrix(u.view(), task.w.view()));
                    rec.expert_global_overlap = Some(metrics::overlaps(u.view(), task.wg.view()));
                    rec.expert_centre_overlap =
                        Some(metrics::overlap_matrix(u.view(), task.v.view()));
                })?;
            }
            run.save_point(step, || Stage::PhaseOne {
                step,
                one: PhaseOne {
                    map: map.clone(),
                    u: u.clone(),
                    signs: sgd.signs().to_vec(),
                    recovery: recovery.clone(),
                },
                neurons: sgd.stats().clone(),
            })
        },
    )?;
    let signs = sgd.signs().to_vec();
    Ok(PhaseOne {
        map,
        u,
        signs,
        recovery,
    })
}

/// Phase II: the router ascends E[sum_k pi_k(x) y sigma(<u_k, W(x - mu)>)],
/// where u_k is the direction of the first member of routed expert k.
fn phase_two(
    run: &mut Run,
    one: &PhaseOne,
    expert_group: &[Option<usize>],
    k: usize,
    routing: &mut Routing,
    resume: Option<(u64, Stream, Array2<f32>)>,
) -> Result<Router> {
    let (cfg, task) = (run.cfg, run.task);
    let p2 = &cfg.phase_two;
    let leads: Vec<usize> = (0..k)
        .map(|g| {
            expert_group
                .iter()
                .position(|&e| e == Some(g))
                .expect("every group has a lead")
        })
        .collect();
    let lead_u = one.u.select(Axis(0), &leads);
    // An expert with sign a_k gains a_k y sigma(<u_k, x>) from its samples.
    let lead_sign: Array1<f32> = leads.iter().map(|&l| one.signs[l]).collect();
    // <u_k, W (x - mu)> = <W u_k, x> - <W u_k, mu>: the map moves onto the
    // K lead directions once, and the batch stays as drawn.
    let lead_seen = one.map.seen_directions(&lead_u);
    let offset = lead_seen.dot(&one.map.centre);
    let activation = Activation::from_hermite(&cfg.phase_one.activation);
    let mut router = Router::zeros(k, task.d);
    let mut done = 0;
    if let Some((step, _, theta)) = resume {
        (done, router.theta) = (step, theta);
    }
    let mut batch = Batch::new(p2.batch, task.d);
    let mut rewards = Array2::<f32>::zeros((p2.batch, k));
    run.monitor.phase(run.model, Phase::PhaseTwo, p2.steps);
    run.monitor.advance(run.model, done);
    for step in done + 1..=p2.steps {
        run.draw(&mut batch);
        matmul(
            &mut rewards.view_mut(),
            &batch.x.view(),
            &lead_seen.t(),
            1.0,
            false,
        );
        for (mut row, &y) in rewards.axis_iter_mut(Axis(0)).zip(&batch.y) {
            for ((t, &o), &a) in row.iter_mut().zip(&offset).zip(&lead_sign) {
                *t = a * y * activation.value(*t - o);
            }
        }
        let grad = router_gradient(&router.theta, batch.x.view(), &rewards);
        router.theta.scaled_add(p2.lr as f32, &grad);
        if router.theta.iter().any(|v| !v.is_finite()) {
            return Err(run.diverged(Phase::PhaseTwo, step, "a router weight"));
        }
        if run.log_due(step, p2.steps) {
            let cosine = metrics::router_cosines(&router.theta, &task.v);
            let purity = metrics::routing_purity(&routing.confusion(&router, task.clusters()));
            run.record(Phase::PhaseTwo, step, |rec| {
                rec.lr = Some(p2.lr);
                rec.router_cosine = Some(cosine);
                rec.routing_purity = Some(purity);
            })?;
        }
        run.save_point(step, || Stage::PhaseTwo {
            step,
            one: one.clone(),
            noise: routing.noise.clone(),
            theta: router.theta.clone(),
        })?;
        tick(run.monitor, run.model, step, p2.steps);
    }
    Ok(router)
}

/// Per routed expert, the gate-weighted mean of `n` fresh routed inputs and
/// the total gate weight it received (its load); an expert that receives
/// nothing keeps `fallback` as its centre.
fn routed_centres(
    run: &mut Run,
    router: &Router,
    routing: &mut Routing,
    n: usize,
    fallback: &Array1<f32>,
) -> (Vec<Array1<f32>>, Vec<f64>) {
    let k = router.experts();
    let mut sum = Array2::<f64>::zeros((k, run.task.d));
    let mut load = vec![0.0f64; k];
    run.task.for_each_chunk(n, 4096, &mut run.data, |b| {
        let gates = router.gates(b.x.view(), &routing.rule, &mut routing.noise);
        for (row, g) in b.x.axis_iter(Axis(0)).zip(gates.axis_iter(Axis(0))) {
            for (e, &ge) in g.iter().enumerate().filter(|(_, &ge)| ge > 0.0) {
                load[e] += ge as f64;
                sum.row_mut(e)
                    .zip_mut_with(&row, |s, &v| *s += ge as f64 * v as f64);
            }
        }
    });
    run.samples += n as u64;
    let centres = (0..k)
        .map(|e| {
            if load[e] > 0.0 {
                sum.row(e).mapv(|s| (s / load[e]) as f32)
            } else {
                fallback.clone()
            }
        })
        .collect();
    (centres, load)
}

/// The samples of a batch routed to one expert, centred at the expert's
/// centre, with their gate weights; reused across steps and experts.
#[derive(Debug, Default)]
pub struct Routed {
    x: Vec<f32>,
    pub y: Vec<f32>,
    pub weights: Vec<f32>,
}

impl Routed {
    /// The gathered inputs (rows x d).
    pub fn x(&self, d: usize) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.y.len(), d), &self.x).expect("gathered rows")
    }

    /// Gathers the rows with a positive gate; returns how many.
    pub fn gather(&mut self, batch: &Batch, gate: ArrayView1<f32>, centre: &Array1<f32>) -> usize {
        self.x.clear();
        self.y.clear();
        self.weights.clear();
        let centre = centre.as_slice().expect("contiguous centre");
        for ((row, &y), &g) in batch.x.rows().into_iter().zip(&batch.y).zip(gate) {
            if g > 0.0 {
                let row = row.to_slice().expect("contiguous batch rows");
                self.x.extend(row.iter().zip(centre).map(|(&v, &c)| v - c));
                self.y.push(y);
                self.weights.push(g);
            }
        }
        self.y.len()
    }
}

/// Phase III: per-expert centres, fresh neurons shared as configured, and
/// spherical SGD of each expert on the samples routed to it. Returns each
/// routed expert's neurons and centre.
fn phase_three(
    run: &mut Run,
    router: &Router,
    expert_group: &[Option<usize>],
    one: &PhaseOne,
    routing: &mut Routing,
    resume: Option<PhaseThree>,
) -> Result<Vec<(Array2<f32>, Array1<f32>)>> {
    let (cfg, task) = (run.cfg, run.task);
    let p3 = &cfg.phase_three;
    let k = router.experts();
    let (done, centres, mut neurons, stats, serving, purity) = match resume {
        Some(p) => (p.step, p.centres, p.neurons, p.stats, p.serving, p.purity),
        None => {
            let (centres, load) =
                routed_centres(run, router, routing, p3.centre_samples, &one.map.centre);
            let sizes = match cfg.moe.allocation {
                Allocation::PerExpert => (0..k)
                    .map(|g| {
                        cfg.moe.neurons * expert_group.iter().filter(|&&e| e == Some(g)).count()
                    })
                    .collect(),
                Allocation::ByLoad => allocate_by_load(cfg.moe.experts * cfg.moe.neurons, &load),
            };
            let neurons: Vec<Array2<f32>> = sizes
                .iter()
                .map(|&j| model::random_directions(j, task.d, &mut run.init))
                .collect();
            let confusion = routing.confusion(router, task.clusters());
            let serving = metrics::serving_expert(&confusion);
            let purity = metrics::routing_purity(&confusion);
            let stats = neurons
                .iter()
                .map(|w| NeuronStats::new(p3.sign, w.nrows()))
                .collect();
            (0, centres, neurons, stats, serving, purity)
        }
    };
    let mut sgd: Vec<SphereStep> = neurons
        .iter()
        .zip(stats)
        .map(|(w, stats)| {
            let mut sgd = SphereStep::new(&p3.activation, p3.loss, p3.sign, w.nrows())
                .with_max_step(p3.max_step);
            sgd.set_stats(stats);
            sgd
        })
        .collect();
    let mut batch = Batch::new(p3.batch, task.d);
    let mut gates = Array2::zeros((p3.batch, k));
    let mut routed = Routed::default();
    run.monitor.phase(run.model, Phase::PhaseThree, p3.steps);
    run.monitor.advance(run.model, done);
    for step in done + 1..=p3.steps {
        run.draw(&mut batch);
        router.gates_into(
            batch.x.view(),
            &routing.rule,
            &mut routing.noise,
            &mut gates,
        );
        let lr = p3.schedule.at(step - 1, p3.steps) as f32;
        for (e, w) in neurons.iter_mut().enumerate() {
            let rows = routed.gather(&batch, gates.column(e), &centres[e]);
            if rows == 0 || w.nrows() == 0 {
                continue;
            }
            let hard = routed.weights.iter().all(|&g| g == 1.0);
            let moved = sgd[e].step(
                w,
                None,
                routed.x(task.d),
                &routed.y,
                (!hard).then_some(&routed.weights[..]),
                lr,
            );
            if !moved {
                return Err(run.diverged(Phase::PhaseThree, step, "a first-layer weight"));
            }
        }
        if run.log_due(step, p3.steps) {
            let serving_neurons: Vec<&Array2<f32>> = serving.iter().map(|&e| &neurons[e]).collect();
            run.record(Phase::PhaseThree, step, |rec| {
                rec.lr = Some(lr as f64);
                rec.routing_purity = Some(purity);
                fill_cluster_overlaps(rec, task, &serving_neurons, cfg.metrics.recovery_threshold);
            })?;
        }
        run.save_point(step, || {
            Stage::PhaseThree(Box::new(PhaseThree {
                step,
                one: one.clone(),
                noise: routing.noise.clone(),
                router: router.clone(),
                centres: centres.clone(),
                neurons: neurons.clone(),
                stats: sgd.iter().map(|s| s.stats().clone()).collect(),
                serving: serving.clone(),
                purity,
            }))
        })?;
        tick(run.monitor, run.model, step, p3.steps);
    }
    Ok(neurons.into_iter().zip(centres).collect())
}

/// Splits `total` neurons in proportion to `load` by largest remainders, so
/// the counts add up to `total` exactly.
pub fn allocate_by_load(total: usize, load: &[f64]) -> Vec<usize> {
    let sum: f64 = load.iter().sum();
    if sum <= 0.0 {
        let mut out = vec![0; load.len()];
        out[0] = total;
        return out;
    }
    let exact: Vec<f64> = load.iter().map(|&l| total as f64 * l / sum).collect();
    let mut out: Vec<usize> = exact.iter().map(|&e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..load.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = total - out.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        out[i] += 1;
    }
    out
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

/// Trains the vanilla network: N untied neurons by phase-I SGD on all data
/// for the MoE's whole training budget, then the same readout.
pub fn train_vanilla(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink,
    monitor: &dyn Monitor,
    resume: Option<ModelState>,
) -> Result<Vanilla> {
    let streams = (StreamId::VanillaData, StreamId::VanillaInit);
    let (mut run, stage) = Run::start(
        cfg,
        task,
        ModelKind::Vanilla,
        streams,
        journal,
        monitor,
        resume,
    );
    let p = &cfg.vanilla;
    let threshold = cfg.metrics.recovery_threshold;
    let (done, map, mut w, stats) = match stage {
        None => {
            let map = run.input_map(p.centre_samples, false);
            let w = model::random_directions(cfg.vanilla_neurons, task.d, &mut run.init);
            (0, map, w, None)
        }
        Some(Stage::VanillaTrain {
            step,
            map,
            w,
            neurons,
        }) => (step, map, w, Some(neurons)),
        Some(Stage::VanillaTrained(vanilla)) => return Ok(*vanilla),
        Some(other) => return Err(wrong_stage(ModelKind::Vanilla, &other)),
    };
    let remaining = cfg.train_samples - p.centre_samples as u64;
    let restart_every = remaining.div_ceil(p.batch as u64) / (cfg.vanilla_restarts as u64 + 1);
    run.sphere_sgd(
        Phase::Train,
        p,
        remaining,
        done,
        &mut w,
        stats,
        &map,
        |run, step, w, lr, _, sgd| {
            if restart_every > 0
                && step.is_multiple_of(restart_every)
                && step / restart_every <= cfg.vanilla_restarts as u64
            {
                restart_stuck(w, sgd, &mut run.init);
            }
            if run.log_due(step, p.steps) {
                let all = vec![&*w; task.clusters()];
                run.record(Phase::Train, step, |rec| {
                    rec.lr = Some(lr);
                    fill_cluster_overlaps(rec, task, &all, threshold);
                })?;
            }
            run.save_point(step, || Stage::VanillaTrain {
                step,
                map: map.clone(),
                w: w.clone(),
                neurons: sgd.stats().clone(),
            })
        },
    )?;
    let mut net = random_bias_network(w, map.centre, &cfg.readout, &mut run.init);
    monitor.phase(ModelKind::Vanilla, Phase::Readout, 1);
    readout::fit_single(&mut net, task, cfg, &mut run.data)?;
    run.samples += cfg.readout.samples as u64;
    monitor.advance(ModelKind::Vanilla, 1);
    let vanilla = Vanilla {
        net,
        samples: run.samples,
    };
    run.save_trained(Stage::VanillaTrained(Box::new(vanilla.clone())))?;
    Ok(vanilla)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_groups_experts_by_direction() {
        let u = ndarray::array![
            [1.0f32, 0.0],
            [0.0, 1.0],
            [0.8, 0.6],
            [-0.6, 0.8],
            [0.0, -1.0]
        ];
        assert_eq!(
            merge_experts(&u, Merge::Pool, 0.5),
            (vec![Some(0), Some(1), Some(0), Some(1), Some(1)], 2)
        );
        assert_eq!(
            merge_experts(&u, Merge::Drop, 0.5),
            (vec![Some(0), Some(1), None, None, None], 2)
        );
        assert_eq!(merge_experts(&u, Merge::None, 0.5).1, 5);
        assert_eq!(merge_experts(&u, Merge::Pool, 0.9).1, 4);
    }

    #[test]
    fn allocation_by_load_is_proportional_and_exact() {
        assert_eq!(allocate_by_load(64, &[100.0, 0.0, 100.0]), vec![32, 0, 32]);
        assert_eq!(allocate_by_load(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(allocate_by_load(7, &[0.0, 0.0]), vec![7, 0]);
        let a = allocate_by_load(100, &[0.3, 0.5, 0.2, 1e-9]);
        assert_eq!(a.iter().sum::<usize>(), 100);
        assert_eq!(a, vec![30, 50, 20, 0]);
    }
}
