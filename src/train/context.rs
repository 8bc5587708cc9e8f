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
        InputMap::estimate(batch.x.view(), whiten)
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
        let mut batch = Batch::new(p.batch, self.task.d);
        // Batches of p.batch samples; the last one takes what is left.
        let steps = samples.div_ceil(p.batch as u64);
        let last_batch = (samples - (steps - 1) * p.batch as u64) as usize;
        self.monitor.phase(S::MODEL, phase, steps);
        self.monitor.advance(S::MODEL, done);
        for step in done + 1..=steps {
            // Checked before the step, so that a run resumed from the
            // step's checkpoint stops where the uninterrupted run did.
            if self.stop_at(until) {
                return Ok((sgd, step - 1));
            }
            if step == steps && last_batch != batch.len() {
                batch = Batch::new(last_batch, self.task.d);
            }
            self.draw_centred(&mut batch, map.centre.as_slice());
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
            tick(self.monitor, S::MODEL, step, steps);
        }
        Ok((sgd, steps))
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
