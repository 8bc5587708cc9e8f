//! The one executor: [`Experiment`] drives every run, new or resumed,
//! staged or joint, in memory or in a run directory, from the CLI, Python,
//! sweeps and `reproduce` alike. A run draws the task, trains the MoE and
//! the vanilla network (in parallel, on independent streams), evaluates both
//! on the same fresh test set and summarises ([`crate::results`]); in a
//! directory, [`crate::store`] opens the journals before and writes the
//! files after, and does nothing else. A run uses the threads of the rayon
//! pool it runs in (see [`crate::threads`]); its results do not depend on
//! their number.

use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::metrics::Record;
use crate::numerics::rng::{stream, StreamId};
use crate::store::{Checkpoints, Control, Inspection, RunWriter};
use crate::task::{Batch, Task};
use crate::train;

mod execute;
pub mod predict;
mod summarise;

pub use crate::results::{
    JointSummary, LinkInfo, ModelSummary, Models, MoeSummary, RunOutput, Samples, Summary,
    TaskLinks,
};
pub use crate::train::{Monitor, Silent};

pub use crate::metrics::best_linear_router_purity;

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
/// them; a new run or a resumed one ([`Experiment::resume`]), in memory or
/// in a run directory ([`Experiment::write_to`]). By default it reports
/// nothing; a [`Monitor`] sees its progress and record sinks
/// ([`Experiment::records`]) each model's metric records.
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
/// config.readout.samples = 2_000.into();
/// config.metrics.test_samples = 2_000;
/// let valid = config.check()?;
///
/// let mut records = Vec::new();
/// let mut moe_log = |r: &clustermoe::metrics::Record| Ok(records.push(r.clone()));
/// let mut vanilla_log = |_: &clustermoe::metrics::Record| Ok(());
/// let out = Experiment::new(&valid)
///     .records(&mut moe_log, &mut vanilla_log)
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
    records: Option<(RecordSink<'a>, RecordSink<'a>)>,
    threads: Option<usize>,
    control: Control,
    dir: Option<DirRun<'a>>,
}

/// Where one model's metric records go as they come: a closure
/// `|record| -> Result<()>`; an error stops the run with it.
pub type RecordSink<'a> = &'a mut (dyn FnMut(&Record) -> Result<()> + Send);

/// A run written to a directory: the directory held and, for a resumed
/// run, the checkpoints it goes on from.
struct DirRun<'a> {
    writer: &'a RunWriter,
    checkpoints: Option<Checkpoints>,
}

impl<'a> Experiment<'a> {
    /// A run of `config`, silent until told otherwise.
    pub fn new(config: &'a ValidConfig) -> Self {
        Experiment {
            config,
            monitor: &train::Silent,
            records: None,
            threads: None,
            control: Control::default(),
            dir: None,
        }
    }

    /// The run of a directory that was stopped or killed, going on from its
    /// checkpoints (a model without one starts over) with the inspected
    /// configuration; None when the run is complete. Without a checkpoint
    /// interval of its own ([`Experiment::control`]) it keeps the one it
    /// was started with. The resumed run writes the same bytes as one never
    /// interrupted.
    pub fn resume(inspection: &'a mut Inspection<'_>) -> Option<Self> {
        let checkpoints = inspection.take_checkpoints()?;
        let mut experiment = Experiment::new(&inspection.config);
        experiment.dir = Some(DirRun {
            writer: inspection.writer(),
            checkpoints: Some(checkpoints),
        });
        Some(experiment)
    }

    /// Writes the run into the directory `writer` holds, from the start:
    /// `config.toml` first, each model's records and checkpoints while it
    /// trains, then `metrics.jsonl`, `model.npz`, `summary.json` and, last,
    /// the completion record (see [`crate::store`]).
    pub fn write_to(mut self, writer: &'a RunWriter) -> Self {
        self.dir = Some(DirRun {
            writer,
            checkpoints: None,
        });
        self
    }

    /// How the run checkpoints (in a directory) and when it stops: a stop
    /// ends it with [`Error::Interrupted`], after a checkpoint if it has a
    /// directory.
    pub fn control(mut self, control: &Control) -> Self {
        self.control = control.clone();
        self
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

    /// Sends the MoE's and the vanilla network's metric records to these
    /// sinks as they come (as well as to the directory's files, for a run
    /// written to one).
    pub fn records(mut self, moe: RecordSink<'a>, vanilla: RecordSink<'a>) -> Self {
        self.records = Some((moe, vanilla));
        self
    }

    /// Trains both models (or goes on training them) and evaluates them;
    /// for a run in a directory, writes its files. A run whose estimated
    /// peak memory does not fit the memory available is refused first
    /// ([`Error::Memory`], see [`crate::memory::check`]).
    pub fn run(self) -> Result<RunOutput> {
        let Experiment {
            config,
            monitor,
            records,
            threads,
            control,
            dir,
        } = self;
        let (mut moe_ignore, mut vanilla_ignore) = (|_: &Record| Ok(()), |_: &Record| Ok(()));
        let (moe, vanilla): (RecordSink, RecordSink) = match records {
            Some((moe, vanilla)) => (moe, vanilla),
            None => (&mut moe_ignore, &mut vanilla_ignore),
        };
        crate::memory::check(config, threads.unwrap_or_else(rayon::current_num_threads))?;
        crate::threads::install(threads, || match dir {
            None => execute::in_memory(config, (moe, vanilla), control, monitor),
            Some(dir) => execute::in_dir(config, dir, (moe, vanilla), control, monitor),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn best_linear_router_purity_for_two_and_for_four_orthonormal_clusters() {
        let valid = Config::default().check().unwrap();
        let task = Task::new(&valid, &mut stream(1, StreamId::Task));
        // Phi(4 / sqrt 2) = Phi(2.8284) = 0.997661
        assert!((best_linear_router_purity(&task).unwrap() - 0.997661).abs() < 1e-6);
        // Four orthonormal centres: E[Phi(4 + z)^3] = 0.993470 (a Monte
        // Carlo of 400,000 samples of the argmax router: 0.99351).
        let mut four = Config::default();
        four.task.clusters = 4;
        let valid = four.check().unwrap();
        let task = Task::new(&valid, &mut stream(1, StreamId::Task));
        assert!((best_linear_router_purity(&task).unwrap() - 0.993470).abs() < 1e-6);
        // Random centres: not known.
        four.task.geometry = crate::config::Geometry::Random;
        let valid = four.check().unwrap();
        let task = Task::new(&valid, &mut stream(1, StreamId::Task));
        assert_eq!(best_linear_router_purity(&task), None);
    }

    #[test]
    fn a_non_finite_number_in_a_summary_is_found_with_its_path() {
        let mut config = Config::default();
        config.task.d = 8;
        config.phase_one.steps = 50.into();
        config.phase_two.steps = 10;
        config.phase_three.steps = 50.into();
        config.readout.samples = 500.into();
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
