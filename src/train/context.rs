//! The training context every phase shares (`Run`): the model's streams,
//! sample count, journal and monitor, its save points, and the spherical
//! SGD loop of phase I and the vanilla network. It is generic over the
//! model's stage type, so a phase can only ever save a stage of its own
//! model.

use super::{ModelState, Monitor, Sink, Stage};
use crate::config::{ValidConfig, ValidPhase};
use crate::error::{Error, Result};
use crate::metrics::samples_to::{SamplesTo, Target, Watch};
use crate::metrics::Record;
use crate::model::{InputMap, NeuronStats, SphereStep};
use crate::numerics::rng::{stream, Stream, StreamId};
use crate::phase::{ModelKind, Phase};
use crate::task::{Batch, Task};
use ndarray::Array2;
/// Shared state of one model's training: its data and initialisation
/// streams, sample count, metric journal and monitor.
pub(super) struct Run<'a, S: Stage> {
    pub(super) cfg: &'a ValidConfig,
    pub(super) task: &'a Task,
    pub(super) data: Stream,
    pub(super) init: Stream,
    pub(super) samples: u64,
    /// The probes of samples to learn so far.
    pub(super) watch: Watch,
    journal: Sink<'a, S>,
    pub(super) monitor: &'a dyn Monitor,
}

impl<'a, S: Stage> Run<'a, S> {
    /// A model's training from the start (the seed's `streams`: data,
    /// initialisation) or from a checkpoint's state; also returns the stage
    /// to go on from.
    pub(super) fn start(
        cfg: &'a ValidConfig,
        task: &'a Task,
        streams: (StreamId, StreamId),
        journal: Sink<'a, S>,
        monitor: &'a dyn Monitor,
        resume: Option<ModelState<S>>,
    ) -> (Self, Option<S>) {
        let (data, init, samples, watch, stage) = match resume {
            Some(s) => (s.data, s.init, s.samples, s.watch, Some(s.stage)),
            None => (
                stream(cfg.seed, streams.0),
                stream(cfg.seed, streams.1),
                0,
                Watch::default(),
                None,
            ),
        };
        let run = Run {
            cfg,
            task,
            data,
            init,
            samples,
            watch,
            journal,
            monitor,
        };
        (run, stage)
    }

    pub(super) fn draw(&mut self, batch: &mut Batch) {
        self.draw_centred(batch, None);
    }

    /// A fresh batch with its inputs centred at `centre`.
    pub(super) fn draw_centred(&mut self, batch: &mut Batch, centre: Option<&[f32]>) {
        self.task.sample_centred_into(batch, &mut self.data, centre);
        self.samples += batch.len() as u64;
    }

    pub(super) fn log_due(&self, step: u64, steps: u64) -> bool {
        let every = self.cfg.metrics.log_every;
        step == steps || (every > 0 && step.is_multiple_of(every))
    }

    pub(super) fn record(
        &mut self,
        phase: Phase,
        step: u64,
        fill: impl FnOnce(&mut Record),
    ) -> Result<()> {
        let mut rec = Record {
            model: S::MODEL,
            phase,
            step,
            samples: self.samples,
            ..Record::default()
        };
        fill(&mut rec);
        self.journal.record(&rec)
    }

    /// The model's state at `stage`.
    fn state(&self, stage: S) -> ModelState<S> {
        ModelState {
            model: S::MODEL,
            samples: self.samples,
            data: self.data.clone(),
            init: self.init.clone(),
            stage,
            watch: self.watch.clone(),
        }
    }

    /// A probe after step `step` of `phase` found `target` reached
    /// (`met`) or not; the first probe that finds it reached is a record
    /// of its own in `metrics.jsonl`.
    pub(super) fn probe(
        &mut self,
        phase: Phase,
        step: u64,
        target: Target,
        met: bool,
    ) -> Result<()> {
        if self.watch.observe(target, self.samples, met) {
            self.record(phase, step, |rec| rec.reached = Some(target))?;
        }
        Ok(())
    }

    /// With `targets.until`, whether training stops here: every one of
    /// `targets` reached (never for no targets).
    pub(super) fn stop_at(&self, targets: &[Target]) -> bool {
        self.cfg.targets.until
            && !targets.is_empty()
            && targets.iter().all(|&t| self.watch.reached(t))
    }

    /// The probes' `samples_to` section once training has ended after
    /// `trained` samples.
    pub(super) fn samples_to(&self, trained: u64, error: bool, staged_moe: bool) -> SamplesTo {
        let t = &self.cfg.targets;
        self.watch
            .samples_to(trained, t.until.then_some(t.cap), error, staged_moe)
    }

    /// After `step` of a phase: a checkpoint if one is due or a stop was
    /// requested, and then the stop. `stage` is only built when saved:
    /// copying a phase's state every step would cost more than the step.
    pub(super) fn save_point(&mut self, step: u64, stage: impl FnOnce() -> S) -> Result<()> {
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
                    model: S::MODEL,
                    phase,
                    step: Some(step),
                })
            }
            None => Ok(()),
        }
    }

    /// Saves the trained model, so a resumed run does not train it again.
    pub(super) fn save_trained(&mut self, stage: impl FnOnce() -> S) -> Result<()> {
        if self.journal.checkpointing() {
            let state = self.state(stage());
            self.journal.checkpoint(&state)?;
        }
        Ok(())
    }

    pub(super) fn diverged(&self, phase: Phase, step: u64, quantity: &'static str) -> Error {
        Error::Diverged {
            model: S::MODEL,
            phase,
            step,
            quantity,
        }
    }

    /// The input map (centre, optional whitening) estimated from `n` fresh inputs.
    pub(super) fn input_map(&mut self, n: usize, whiten: bool) -> InputMap {
        let mut batch = Batch::new(n, self.task.d);
        self.draw(&mut batch);
        InputMap::estimate(batch.x, whiten)
    }

    /// Spherical online SGD of the rows of `w` on all samples, through the
    /// input map (phase I with tied experts, and the vanilla network),
    /// from step `done + 1` on, with the neurons' running correlations and
    /// signs `stats` as they were after step `done`. `on_step` sees the
    /// directions after the step and the step's state (the batch's
    /// pre-activations before it, the running correlations after it).
    /// With `targets.until` it stops before a step once every one of
    /// `until` is reached; returns the SGD state and the steps done.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sphere_sgd(
        &mut self,
        phase: Phase,
        p: &ValidPhase,
        samples: u64,
        (done, until): (u64, &[Target]),
        w: &mut Array2<f32>,
        stats: NeuronStats,
        map: &InputMap,
        mut on_step: impl FnMut(
            &mut Self,
            u64,
            &mut Array2<f32>,
            f64,
            &Batch,
            &mut SphereStep,
        ) -> Result<()>,
    ) -> Result<(SphereStep, u64)> {
        let mut sgd =
            SphereStep::new(&p.activation, p.loss, p.sign, w.nrows()).with_max_step(p.max_step);
        sgd.set_stats(stats);
        // Batches of p.batch samples; the last one takes what is left.
        let steps = samples.div_ceil(p.batch as u64);
        let last_batch = (samples - (steps - 1) * p.batch as u64) as usize;
        let size = |step: u64| if step == steps { last_batch } else { p.batch };
        let mut batches = Prefetch::new(self.task, p.batch, map.centre.as_slice());
        self.monitor.phase(S::MODEL, phase, steps);
        self.monitor.advance(S::MODEL, done);
        for step in done + 1..=steps {
            // Checked before the step, so that a run resumed from the
            // step's checkpoint stops where the uninterrupted run did.
            if self.stop_at(until) {
                return Ok((sgd, step - 1));
            }
            batches.next(self, size(step));
            let lr = p.schedule.at(step - 1, steps);
            let next = (step < steps).then(|| size(step + 1));
            let moved = batches.step_and_prefetch(&self.data, next, |batch| {
                sgd.step(
                    w,
                    map.whiten.as_ref(),
                    batch.x.view(),
                    &batch.y,
                    None,
                    lr as f32,
                )
            });
            if !moved {
                return Err(self.diverged(phase, step, "a first-layer weight"));
            }
            on_step(self, step, w, lr, batches.current(), &mut sgd)?;
            tick(self.monitor, S::MODEL, step, steps);
        }
        Ok((sgd, steps))
    }
}

/// Batches of at least this many inputs (B d) are drawn while the step
/// before computes, when the run has a thread to spare: about 15 µs of
/// Gaussians, well above the cost of handing work to another thread.
const PREFETCH_INPUTS: usize = 1 << 14;

/// The batches of a training loop. With a free thread each batch is drawn
/// while the step before it computes; the run's data stream and sample
/// count move on only when a batch is used, so checkpoints, stops and
/// every thread count see the stream exactly where drawing batch by batch
/// leaves it (the same bits).
pub(super) struct Prefetch<'t> {
    task: &'t Task,
    centre: Option<&'t [f32]>,
    current: Batch,
    ahead: Batch,
    /// The data stream after `ahead` was drawn, when it was.
    after: Option<Stream>,
    parallel: bool,
}

impl<'t> Prefetch<'t> {
    pub(super) fn new(task: &'t Task, batch: usize, centre: Option<&'t [f32]>) -> Self {
        Prefetch {
            task,
            centre,
            current: Batch::new(batch, task.d),
            ahead: Batch::new(batch, task.d),
            after: None,
            parallel: rayon::current_num_threads() > 1 && batch * task.d >= PREFETCH_INPUTS,
        }
    }

    /// Makes the next step's batch of `size` samples current: the one drawn
    /// ahead, or one drawn now.
    pub(super) fn next<S: Stage>(&mut self, run: &mut Run<'_, S>, size: usize) {
        match self.after.take() {
            Some(after) if self.ahead.len() == size => {
                std::mem::swap(&mut self.current, &mut self.ahead);
                run.data = after;
                run.samples += size as u64;
            }
            _ => {
                if self.current.len() != size {
                    self.current = Batch::new(size, self.task.d);
                }
                run.draw_centred(&mut self.current, self.centre);
            }
        }
    }

    /// The current batch.
    pub(super) fn current(&self) -> &Batch {
        &self.current
    }

    /// Runs `step` on the current batch and meanwhile, when the loop has
    /// a `next` step, draws its batch from (a copy of) the run's stream
    /// `data` on another thread.
    pub(super) fn step_and_prefetch<T: Send>(
        &mut self,
        data: &Stream,
        next: Option<usize>,
        step: impl FnOnce(&Batch) -> T + Send,
    ) -> T {
        match next {
            Some(size) if self.parallel => {
                if self.ahead.len() != size {
                    self.ahead = Batch::new(size, self.task.d);
                }
                let mut stream = data.clone();
                let (task, centre, ahead) = (self.task, self.centre, &mut self.ahead);
                let current = &self.current;
                let (out, ()) = rayon::join(
                    || step(current),
                    || task.sample_centred_into(ahead, &mut stream, centre),
                );
                self.after = Some(stream);
                out
            }
            _ => step(&self.current),
        }
    }
}

/// Reports progress to the monitor every 64 steps and at the last step.
pub(super) fn tick(monitor: &dyn Monitor, model: ModelKind, step: u64, steps: u64) {
    const EVERY: u64 = 64;
    if step.is_multiple_of(EVERY) {
        monitor.advance(model, EVERY);
    } else if step == steps {
        monitor.advance(model, step % EVERY);
    }
}
