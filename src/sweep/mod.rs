//! Sweeps: a grid over configuration fields, expanded into independent runs
//! with stable ids, split into deterministic shards, run in parallel and
//! resumed run by run.
//!
//! A grid file is TOML:
//!
//! ```toml
//! base = "base.toml"          # optional: a config file the runs start from
//! seeds = { from = 1, to = 10 }   # or a list: seeds = [1, 2, 3]
//!
//! [set]                       # optional: fields fixed for every run
//! "phase_three.steps" = 16000
//!
//! [grid]                      # the Cartesian product of these axes
//! "task.d" = [16, 32, 64]
//! "task.rho" = { from = 1.0, to = 5.0, step = 1.0 }
//! "moe.gate" = ["top1", "softmax"]
//! ```
//!
//! [`run_sweep`] runs a grid file into a sweep directory ([`crate::store::SweepDir`]:
//! `sweep.json`, one run directory per run under `runs/`), and
//! [`collect::merge`] gathers its complete runs into `results.csv` and
//! `results.jsonl`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::config::ValidConfig;
use crate::error::{Error, Result, RunOption};
use crate::store::output;
use crate::store::{Control, RunDir, SweepDir};

pub mod collect;
mod grid;

use crate::experiment::Experiment;
pub use grid::{run_id, Axis, GridFile, Manifest, ManifestRun, PlannedRun, Range, MAX_RUNS};
/// Which part of a sweep this process runs: shard `index` (from 0) of `count`.
/// Shard `I/N` owns the runs at grid positions p with p mod N = I, so the N
/// shards of a grid partition its runs.
///
/// ```
/// use clustermoe::sweep::Shard;
///
/// let shard = Shard::parse("1/3")?;
/// assert_eq!(shard, Shard { index: 1, count: 3 });
/// assert!(shard.owns(4) && !shard.owns(5));
/// assert!(Shard::parse("3/3").is_err());
/// // Without a Slurm job array, the whole grid.
/// let env = |_: &str| None;
/// assert_eq!(Shard::from_env(env)?.unwrap_or(Shard::ALL), Shard::ALL);
/// # Ok::<(), clustermoe::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, from 0 to `count - 1`.
    pub index: usize,
    /// How many shards the grid is split into (at least 1).
    pub count: usize,
}

impl Shard {
    /// The whole grid: shard 0 of 1.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (I from 0 to N-1).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::invalid_option(RunOption::Shard, text, "I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Slurm job array: `SLURM_ARRAY_TASK_ID` minus
    /// `SLURM_ARRAY_TASK_MIN` (default 0) of `SLURM_ARRAY_TASK_COUNT`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let (Some(id), Some(count)) = (get("SLURM_ARRAY_TASK_ID"), get("SLURM_ARRAY_TASK_COUNT"))
        else {
            return Ok(None);
        };
        let parse = |name: &str, v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| Error::invalid(name, v, "a non-negative integer"))
        };
        let min =
            get("SLURM_ARRAY_TASK_MIN").map_or(Ok(0), |v| parse("SLURM_ARRAY_TASK_MIN", &v))?;
        let (id, count) = (
            parse("SLURM_ARRAY_TASK_ID", &id)?,
            parse("SLURM_ARRAY_TASK_COUNT", &count)?,
        );
        if id < min {
            return Err(Error::invalid(
                "SLURM_ARRAY_TASK_ID",
                id,
                format!("at least SLURM_ARRAY_TASK_MIN = {min}"),
            ));
        }
        Shard::parse(&format!("{}/{count}", id - min)).map(Some)
    }

    /// Whether the run at position `position` of the grid belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Runs in this shard.
    pub planned: usize,
    /// Runs found complete and skipped.
    pub skipped: usize,
    /// Runs trained now.
    pub trained: usize,
    /// Runs continued from their checkpoints.
    pub resumed: usize,
    /// Runs that failed: each run's id and its error message.
    pub failed: Vec<(String, String)>,
    /// Runs a stop signal left unfinished (checkpointed or not started).
    pub stopped: usize,
    /// Ids of the runs another process was writing when this one came to
    /// them: left to it (a sweep started again later picks up any it did
    /// not finish).
    pub busy: Vec<String>,
}

impl SweepReport {
    /// The sweep's outcome as a result: stopped by a signal (its runs in
    /// progress checkpointed), some runs failed (each is in `failed`), or done.
    pub fn outcome(&self, control: &Control) -> Result<()> {
        if let Some(signal) = control.stop_signal() {
            return Err(Error::SweepStopped {
                signal,
                unfinished: self.stopped,
            });
        }
        if !self.failed.is_empty() {
            return Err(Error::RunsFailed {
                failed: self.failed.len(),
                planned: self.planned,
            });
        }
        Ok(())
    }
}

/// Runs the shard `shard` of the grid `grid_path` into `out`, `jobs` runs
/// at a time; `on_done(done, planned, label)` is called after each run,
/// with the run's id and grid values (`3f2a… (seed=1, task.d=16)`).
///
/// Each run holds its directory's lock while it trains, so several sweeps
/// of one grid on one `out` share the work; a run found complete is
/// skipped, one with checkpoints of its configuration resumed. A run that
/// fails does not stop the others: the report lists it, and
/// [`SweepReport::outcome`] turns the report into an error.
///
/// ```
/// use clustermoe::store::Control;
/// use clustermoe::sweep::{collect, run_sweep, Shard};
///
/// let dir = tempfile::tempdir().unwrap();
/// let grid = dir.path().join("grid.toml");
/// // Two seeds of a small, fast task (d = 16, short phases).
/// std::fs::write(
///     &grid,
///     r#"
/// seeds = [1, 2]
///
/// [set]
/// "task.d" = 16
/// "phase_one.steps" = 500
/// "phase_two.steps" = 100
/// "phase_three.steps" = 500
/// "readout.samples" = 2000
/// "metrics.test_samples" = 2000
/// "#,
/// )
/// .unwrap();
/// let out = dir.path().join("sweep");
/// let control = Control::default();
/// let progress = |done: usize, planned: usize, label: &str| println!("{done}/{planned} {label}");
///
/// let report = run_sweep(&grid, &out, 2, Shard::ALL, &control, &progress)?;
/// assert_eq!((report.planned, report.trained), (2, 2));
/// report.outcome(&control)?;
/// // Again: every run is complete, none is trained twice.
/// let again = run_sweep(&grid, &out, 2, Shard::ALL, &control, &progress)?;
/// assert_eq!((again.skipped, again.trained), (2, 0));
///
/// let merged = collect::merge(&out)?;
/// assert!(merged.is_whole());
/// assert_eq!(merged.rows, 2);
/// assert!(out.join("results.csv").is_file());
/// # Ok::<(), clustermoe::Error>(())
/// ```
pub fn run_sweep(
    grid_path: &Path,
    out: &Path,
    jobs: usize,
    shard: Shard,
    control: &Control,
    on_done: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<SweepReport> {
    let grid = GridFile::from_file(grid_path)?;
    run_grid(
        &grid,
        grid_path.parent().unwrap_or(Path::new(".")),
        out,
        jobs,
        shard,
        control,
        on_done,
    )
}

/// What became of one run of a sweep.
enum Outcome {
    Skipped,
    Trained,
    Resumed,
    Failed(String),
    Stopped,
    Busy,
}

/// Runs one run of a sweep, holding its directory's lock throughout: left
/// alone if another process holds it, skipped if complete, continued from
/// its checkpoints if it has usable ones of this configuration, trained from
/// the start otherwise (runs are deterministic, so starting over gives the
/// same result).
fn sweep_one(config: &ValidConfig, dir: &RunDir, control: &Control) -> Outcome {
    let writer = match dir.writer() {
        Ok(w) => w,
        Err(Error::InUse { .. }) => return Outcome::Busy,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if dir.is_complete() {
        writer.remove_leftovers();
        return Outcome::Skipped;
    }
    if control.stop_signal().is_some() {
        return Outcome::Stopped;
    }
    // Checkpoints count only under this run's own configuration: a
    // config.toml of another run makes the directory one to redo.
    let planned = config.config.to_toml();
    let same_config = std::fs::read_to_string(dir.config_file()).is_ok_and(|t| t == planned);
    let resume = || -> Result<()> {
        let mut inspection = writer.inspect()?;
        match Experiment::resume(&mut inspection) {
            Some(experiment) => experiment.control(control).run().map(drop),
            None => Ok(()),
        }
    };
    let resumed = (same_config && dir.has_checkpoints())
        .then(resume)
        .filter(|r| !matches!(r, Err(Error::Checkpoint { .. })));
    let result = match resumed {
        Some(r) => r.map(|_| Outcome::Resumed),
        None => Experiment::new(config)
            .write_to(&writer)
            .control(control)
            .run()
            .map(|_| Outcome::Trained),
    };
    match result {
        Ok(outcome) => outcome,
        Err(Error::Interrupted { .. }) => Outcome::Stopped,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Runs the shard `shard` of `grid` (whose `base` is relative to `dir`)
/// into `out`, `jobs` runs at a time: [`run_sweep`] for a grid already
/// read (with [`GridFile::from_file`]).
pub fn run_grid(
    grid: &GridFile,
    dir: &Path,
    out: &Path,
    jobs: usize,
    shard: Shard,
    control: &Control,
    on_done: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<SweepReport> {
    let runs = grid.expand(dir)?;
    let sweep_dir = SweepDir::new(out);
    std::fs::create_dir_all(sweep_dir.runs()).map_err(|e| crate::store::unusable_out(out, e))?;
    let manifest = Manifest {
        runs: runs
            .iter()
            .map(|(r, values)| ManifestRun {
                id: r.id.clone(),
                values: values.clone(),
            })
            .collect(),
    };
    {
        let _bookkeeping = sweep_dir.bookkeeping_lock()?;
        output::write_json(&sweep_dir.manifest_file(), &manifest)?;
    }
    // Each run with its label for progress: its id and grid values.
    let mine: Vec<(&PlannedRun, String)> = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.owns(*i))
        .map(|(_, (r, values))| {
            let values: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (r, format!("{} ({})", r.id, values.join(", ")))
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .map_err(|e| {
            Error::invalid_option(
                RunOption::Jobs,
                jobs,
                format!("a usable thread count ({e})"),
            )
        })?;
    let done = AtomicUsize::new(0);
    let outcomes: Vec<(String, Outcome)> = pool.install(|| {
        mine.par_iter()
            .map(|(run, label)| {
                let outcome = sweep_one(&run.config, &sweep_dir.run(&run.id), control);
                on_done(done.fetch_add(1, Ordering::SeqCst) + 1, mine.len(), label);
                (run.id.clone(), outcome)
            })
            .collect()
    });
    let mut report = SweepReport {
        planned: mine.len(),
        ..SweepReport::default()
    };
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Skipped => report.skipped += 1,
            Outcome::Trained => report.trained += 1,
            Outcome::Resumed => report.resumed += 1,
            Outcome::Failed(e) => report.failed.push((id, e)),
            Outcome::Stopped => report.stopped += 1,
            Outcome::Busy => report.busy.push(id),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_runs() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for position in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(position)).count(), 1);
        }
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::parse("1").is_err());
        assert!(Shard::parse("0/0").is_err());
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            Shard::from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "1")
            ]))
            .unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert!(Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "4")
        ]))
        .is_err());
    }
}
