//! The one executor behind [`Experiment::run`](super::Experiment::run):
//! draw the task and the test set, train both models (staged or joint, each
//! from the start or from its checkpoint's state, in parallel on independent
//! streams), evaluate them on the same test set, and summarise; for a run
//! in a directory, the store opens the journals first and writes the
//! results after.

use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::metrics::{self, Record};
use crate::numerics::link::LinkInfo;
use crate::numerics::rng::{stream, StreamId};
use crate::phase::{ModelKind, MoeTag, VanillaTag};
use crate::results::{
    JointSummary, ModelSummary, Models, MoeSummary, RunOutput, Samples, Summary, TaskLinks,
};
use crate::store::{Control, DirJournal};
use crate::task::{Batch, Task};
use crate::train::{
    self, JointModelState, JointStage, Journal, ModelState, MoeStage, MoeState, Monitor, Stage,
    Start, VanillaStage, VanillaState,
};

use super::summarise::{summarise_joint, summarise_moe, summarise_vanilla, test_record};
use super::{best_linear_router_purity, DirRun, RecordSink};

/// A journal for every stage type: what the executor hands each model's
/// training, whichever training the configuration asks for.
pub(crate) trait AnyJournal:
    Journal<MoeStage>
    + Journal<VanillaStage>
    + Journal<JointStage<MoeTag>>
    + Journal<JointStage<VanillaTag>>
{
}

impl<J> AnyJournal for J where
    J: Journal<MoeStage>
        + Journal<VanillaStage>
        + Journal<JointStage<MoeTag>>
        + Journal<JointStage<VanillaTag>>
{
}

/// A run without a directory: records go to the sinks, a stop ends it.
pub(super) fn in_memory(
    cfg: &ValidConfig,
    (moe, vanilla): (RecordSink, RecordSink),
    control: Control,
    monitor: &dyn Monitor,
) -> Result<RunOutput> {
    let (mut moe, mut vanilla) = (
        Sink {
            records: moe,
            control: &control,
        },
        Sink {
            records: vanilla,
            control: &control,
        },
    );
    train_and_evaluate(cfg, (&mut moe, &mut vanilla), monitor, Start::fresh(cfg))
}

/// A run in a directory: the store opens the journals (a new run's
/// files, or a resumed run's part files cut back to its checkpoints), the
/// models train, and the store writes what they produced (or, on failure,
/// the metrics so far, keeping the checkpoints).
pub(super) fn in_dir(
    cfg: &ValidConfig,
    DirRun {
        writer,
        checkpoints,
    }: DirRun,
    (moe, vanilla): (RecordSink, RecordSink),
    control: Control,
    monitor: &dyn Monitor,
) -> Result<RunOutput> {
    let (mut journals, start) = match checkpoints {
        None => (writer.begin(cfg, &control)?, Start::fresh(cfg)),
        Some(checkpoints) => writer.reopen(cfg, checkpoints, control)?,
    };
    let result = {
        let [moe_dir, vanilla_dir] = &mut journals;
        let mut moe = Tee {
            journal: moe_dir,
            records: moe,
        };
        let mut vanilla = Tee {
            journal: vanilla_dir,
            records: vanilla,
        };
        train_and_evaluate(cfg, (&mut moe, &mut vanilla), monitor, start)
    };
    writer.finish(journals, result)
}

/// The journal of a run without a directory: records to a sink, no
/// checkpoints, and the stop of its control.
struct Sink<'r, 'c> {
    records: RecordSink<'r>,
    control: &'c Control,
}

impl<S: Stage> Journal<S> for Sink<'_, '_> {
    fn record(&mut self, rec: &Record) -> Result<()> {
        (self.records)(rec)
    }
    fn stop_requested(&self) -> Option<i32> {
        self.control.stop_signal()
    }
}

/// A directory's journal that also hands each record to a sink.
struct Tee<'j, 'r> {
    journal: &'j mut DirJournal,
    records: RecordSink<'r>,
}

impl<S: Stage> Journal<S> for Tee<'_, '_> {
    fn record(&mut self, rec: &Record) -> Result<()> {
        Journal::<S>::record(self.journal, rec)?;
        (self.records)(rec)
    }
    fn checkpointing(&self) -> bool {
        Journal::<S>::checkpointing(self.journal)
    }
    fn checkpoint_due(&self, step: u64) -> bool {
        Journal::<S>::checkpoint_due(self.journal, step)
    }
    fn checkpoint(&mut self, state: &ModelState<S>) -> Result<()> {
        self.journal.checkpoint(state)
    }
    fn stop_requested(&self) -> Option<i32> {
        Journal::<S>::stop_requested(self.journal)
    }
}

/// The trained models and their evaluations, before the summary.
struct Evaluated {
    models: Models,
    samples: Samples,
    moe: MoeSummary,
    vanilla: Option<ModelSummary>,
    joint: Option<JointSummary>,
}

/// Trains both models of `cfg` from `start`, reporting to `journals`
/// (MoE, vanilla), and evaluates them.
fn train_and_evaluate<J: AnyJournal>(
    cfg: &ValidConfig,
    journals: (&mut J, &mut J),
    monitor: &dyn Monitor,
    start: Start,
) -> Result<RunOutput> {
    let task = Task::new(cfg, &mut stream(cfg.seed, StreamId::Task));
    let test = test_set(&task, cfg.metrics.test_samples, cfg.seed);
    let var_y = metrics::label_variance(&test.y);
    let (moe_journal, vanilla_journal) = journals;
    let eval = Evaluation {
        cfg,
        task: &task,
        test: &test,
        var_y,
        monitor,
    };
    let evaluated = match start {
        Start::Staged(moe, vanilla) => {
            eval.staged((&mut *moe_journal, &mut *vanilla_journal), (moe, vanilla))?
        }
        Start::Joint(moe, vanilla) => {
            eval.joint((&mut *moe_journal, &mut *vanilla_journal), (moe, vanilla))?
        }
    };
    let (summary, models) = summary(cfg, &task, var_y, evaluated);
    if let Some((field, value)) = summary.first_non_finite() {
        return Err(Error::NonFinite { field, value });
    }
    let moe_test = test_record(ModelKind::Moe, summary.samples.moe, &summary.moe.model);
    Journal::<MoeStage>::record(moe_journal, &moe_test)?;
    if let (Some(v), Some(n)) = (&summary.vanilla, summary.samples.vanilla) {
        Journal::<VanillaStage>::record(vanilla_journal, &test_record(ModelKind::Vanilla, n, v))?;
    }
    Ok(RunOutput {
        task,
        models,
        summary,
    })
}

/// Test samples drawn by one task of [`test_set`].
const TEST_CHUNK: usize = 4096;

/// The test set of `n` samples, in chunks of [`TEST_CHUNK`] drawn in
/// parallel: chunk i from the seed's test stream moved on by i long jumps
/// (2^192 draws each), so the samples do not depend on the thread count.
pub(super) fn test_set(task: &Task, n: usize, seed: u64) -> Batch {
    use rayon::prelude::*;
    let mut test = Batch::new(n, task.d);
    let Batch { x, y, c, .. } = &mut test;
    let chunks: Vec<_> = x
        .axis_chunks_iter_mut(ndarray::Axis(0), TEST_CHUNK)
        .zip(y.chunks_mut(TEST_CHUNK))
        .zip(c.chunks_mut(TEST_CHUNK))
        .enumerate()
        .collect();
    chunks.into_par_iter().for_each(|(i, ((mut xs, ys), cs))| {
        let mut rng = stream(seed, StreamId::Test);
        for _ in 0..i {
            rng.long_jump();
        }
        let chunk = task.sample(ys.len(), &mut rng);
        xs.assign(&chunk.x);
        ys.copy_from_slice(&chunk.y);
        cs.copy_from_slice(&chunk.c);
    });
    test
}

/// What every model's training and evaluation shares.
struct Evaluation<'a> {
    cfg: &'a ValidConfig,
    task: &'a Task,
    test: &'a Batch,
    var_y: f64,
    monitor: &'a dyn Monitor,
}

impl Evaluation<'_> {
    /// The staged algorithm: each model is evaluated on its own thread as
    /// soon as it is trained, while the other may still train.
    fn staged<J: AnyJournal>(
        &self,
        (moe_journal, vanilla_journal): (&mut J, &mut J),
        (moe, vanilla): (Option<MoeState>, Option<VanillaState>),
    ) -> Result<Evaluated> {
        let Evaluation {
            cfg,
            task,
            test,
            var_y,
            monitor,
        } = *self;
        let (moe, vanilla) = rayon::join(
            || {
                train::train_moe(cfg, task, moe_journal, monitor, moe).map(|m| {
                    let summary = summarise_moe(cfg, task, &m.model, test, var_y, m.samples_to);
                    (m.model, summary)
                })
            },
            || {
                cfg.vanilla_enabled
                    .then(|| {
                        train::train_vanilla(cfg, task, vanilla_journal, monitor, vanilla).map(
                            |v| {
                                let summary =
                                    summarise_vanilla(task, &v.model, test, var_y, v.samples_to);
                                (v.model, summary)
                            },
                        )
                    })
                    .transpose()
            },
        );
        let ((moe, moe_summary), vanilla) = (moe?, vanilla?);
        let (vanilla, vanilla_summary) = vanilla.unzip();
        Ok(Evaluated {
            samples: Samples {
                moe: moe.samples,
                vanilla: vanilla.as_ref().map(|v| v.samples),
            },
            moe: moe_summary,
            vanilla: vanilla_summary,
            joint: None,
            models: Models::Staged { moe, vanilla },
        })
    }

    /// Joint training: both models train in parallel, then are evaluated.
    fn joint<J: AnyJournal>(
        &self,
        (moe_journal, vanilla_journal): (&mut J, &mut J),
        (moe, vanilla): (
            Option<JointModelState<MoeTag>>,
            Option<JointModelState<VanillaTag>>,
        ),
    ) -> Result<Evaluated> {
        let Evaluation {
            cfg,
            task,
            test,
            var_y,
            monitor,
        } = *self;
        let (moe, vanilla) = rayon::join(
            || train::train_joint(cfg, task, moe_journal, monitor, moe),
            || {
                cfg.vanilla_enabled
                    .then(|| train::train_joint(cfg, task, vanilla_journal, monitor, vanilla))
                    .transpose()
            },
        );
        let (moe, vanilla) = (moe?, vanilla?);
        let (m, v, j) = summarise_joint(cfg, task, &moe, vanilla.as_ref(), test, var_y);
        let (moe, vanilla) = (moe.model, vanilla.map(|v| v.model));
        // With `targets.until` each model drew what it trained on; else
        // both drew the configured samples.
        let (n, n_vanilla) = (
            m.model.samples_to.trained,
            v.as_ref().map(|v| v.samples_to.trained),
        );
        Ok(Evaluated {
            samples: Samples {
                moe: n,
                vanilla: n_vanilla,
            },
            moe: m,
            vanilla: v,
            joint: Some(j),
            models: Models::Joint { moe, vanilla },
        })
    }
}

/// What `summary.json` holds, and the models.
fn summary(cfg: &ValidConfig, task: &Task, var_y: f64, evaluated: Evaluated) -> (Summary, Models) {
    let summary = Summary {
        seed: cfg.seed,
        var_y,
        information_exponent: cfg.information_exponent,
        links: TaskLinks {
            local: task.local_links.iter().map(LinkInfo::from).collect(),
            global: LinkInfo::from(&task.global_link),
        },
        best_linear_router_purity: best_linear_router_purity(task),
        warnings: cfg.warnings.clone(),
        budget: cfg.resolved_budget(),
        samples: evaluated.samples,
        moe: evaluated.moe,
        vanilla: evaluated.vanilla,
        joint: evaluated.joint,
    };
    (summary, evaluated.models)
}
