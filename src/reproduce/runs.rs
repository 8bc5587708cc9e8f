//! The step every experiment starts with: a grid of runs over seeds 1 to
//! n, run (or resumed) through [`crate::sweep`] under `out/sweeps/NAME`,
//! and read back, run by run, as the experiment reduces them.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use serde_json::Value;

use super::Options;
use crate::error::Result;
use crate::experiment::Summary;
use crate::store::{lock, RunDir, SweepDir};
use crate::sweep::{self, GridFile, Shard};

/// One run of a sweep, read back.
pub(super) struct Run {
    /// Its directory (E2 and E6 read its metric records).
    pub(super) dir: RunDir,
    /// The grid values that made it, by dotted field name.
    pub(super) values: BTreeMap<String, Value>,
    pub(super) summary: Summary,
}

impl Run {
    /// The grid value of `key` as a number; NaN when it has none.
    pub(super) fn value(&self, key: &str) -> f64 {
        self.values
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }
}

/// A sweep's runs, in grid order (seeds innermost).
pub(super) struct Runs {
    pub(super) rows: Vec<Run>,
}

impl Runs {
    /// One value of each run's summary, in grid order.
    pub(super) fn per_run<T>(&self, value: impl Fn(&Summary) -> T) -> Vec<T> {
        self.rows.iter().map(|r| value(&r.summary)).collect()
    }

    /// The runs at one point of the grid (every seed): those whose grid
    /// values equal `point`'s.
    pub(super) fn at(&self, point: &[(&str, f64)]) -> Vec<&Run> {
        self.rows
            .iter()
            .filter(|r| point.iter().all(|&(key, v)| r.value(key) == v))
            .collect()
    }

    /// The run of seed 1, if the sweep has one.
    pub(super) fn seed_one(&self) -> Option<&Run> {
        self.rows.iter().find(|r| r.summary.seed == 1)
    }
}

/// Seeds 1 to `seeds` of the default configuration with `set` fixed and
/// `axes` varied: run (or resumed) under `out/sweeps/name`, then read back.
pub(super) fn run_seeds(
    opts: &Options,
    name: &str,
    seeds: i64,
    set: &[(&str, Value)],
    axes: &[(&str, Vec<Value>)],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Runs> {
    run(opts, name, &grid(1..=seeds, set, axes), progress)
}

/// The grid file of those runs: the JSON values as TOML.
fn grid(
    seeds: RangeInclusive<i64>,
    set: &[(&str, Value)],
    axes: &[(&str, Vec<Value>)],
) -> GridFile {
    let to_toml = |v: &Value| toml::Value::try_from(v).expect("JSON scalars and arrays are TOML");
    GridFile {
        base: None,
        seeds: Some(sweep::Axis::List(seeds.map(toml::Value::Integer).collect())),
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), to_toml(v)))
            .collect(),
        grid: axes
            .iter()
            .map(|(k, vs)| {
                (
                    k.to_string(),
                    sweep::Axis::List(vs.iter().map(to_toml).collect()),
                )
            })
            .collect(),
    }
}

/// Runs (or resumes) a grid under `out/sweeps/name` and reads back every run.
fn run(
    opts: &Options,
    name: &str,
    grid: &GridFile,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Runs> {
    let dir = SweepDir::new(opts.out.join("sweeps").join(name));
    let runs = grid.expand(Path::new("."))?;
    let control = &opts.control;
    // Another process reproducing into the same directory trains some runs
    // itself: wait for it to let go of them, then sweep again (which redoes
    // any it left unfinished, as when it was killed).
    loop {
        let report = sweep::run_grid(
            grid,
            Path::new("."),
            dir.path(),
            opts.jobs,
            Shard::ALL,
            control,
            &|done, planned, _| progress(&format!("{name}: run {done}/{planned}")),
        )?;
        for (id, e) in &report.failed {
            progress(&format!("{name}: run {id} failed: {e}"));
        }
        report.outcome(control)?;
        if report.busy.is_empty() {
            break;
        }
        progress(&format!(
            "{name}: waiting for another process to finish {} runs",
            report.busy.len()
        ));
        for id in &report.busy {
            lock::wait_until_free(dir.run(id).path())?;
        }
    }
    let rows = runs
        .into_iter()
        .map(|(run, values)| {
            let dir = dir.run(&run.id);
            let summary = dir.read_complete()?.summary;
            Ok(Run {
                dir,
                values,
                summary,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Runs { rows })
}
