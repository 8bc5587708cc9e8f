//! `clustermoe reproduce`: the paper's claims as experiments run through the
//! sweep machinery, written as a report (Markdown and self-contained HTML),
//! figures (SVG and PNG), tables (CSV) and `claims.json`.
//!
//! One file per experiment, each a function from [`Options`] to a section
//! of the report (its text, figures, tables and claims), so that an
//! experiment can be read, and changed, without the others:
//! `separation.rs` (E1), `dynamics.rs` (E2), `sample_complexity.rs` (E3),
//! `experts_needed.rs` (E4), `routing.rs` (E5), `joint.rs` (E6). This file holds what they
//! share: the options, the claim and section types, building a grid and
//! running it through [`crate::sweep`], and the entry point [`reproduce`].
//! How a section is shown to a reader (Markdown, HTML, the figure and
//! table files beside them) is [`crate::report::page`]'s; the claims are
//! measured here, so the page can change without changing `claims.json`.

mod dynamics;
mod experts_needed;
mod joint;
mod routing;
mod sample_complexity;
mod separation;

pub use experts_needed::coupon_collector;
pub use sample_complexity::fit_line;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::experiment::Summary;
pub use crate::report::page::Claim;
use crate::report::page::{Section, Table};
use crate::store::{lock, Control, RunDir, SweepDir};
use crate::sweep::{self, GridFile, Shard};

/// How to reproduce.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer seeds and smaller grids: minutes on a laptop.
    pub quick: bool,
    pub out: PathBuf,
    /// Runs at a time.
    pub jobs: usize,
    /// Checkpoints and stops for every run: a stop flag set to a signal
    /// number stops the reproduction with [`Error::SweepStopped`] after the
    /// runs in progress are checkpointed; running it again resumes them.
    pub control: Control,
}

/// A sweep's runs: run directory, grid values and summary, in grid order.
struct Runs {
    rows: Vec<(RunDir, BTreeMap<String, Value>, Summary)>,
}

impl Runs {
    fn value(&self, i: usize, key: &str) -> f64 {
        self.rows[i]
            .1
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }
}

fn grid(
    seeds: std::ops::RangeInclusive<i64>,
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

/// Runs (or resumes) a grid under `out/name` and reads back every run.
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
            let run_dir = dir.run(&run.id);
            let summary = run_dir.read_complete()?.summary;
            Ok((run_dir, values, summary))
        })
        .collect::<Result<_>>()?;
    Ok(Runs { rows })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Four decimals, for the figures shown in claims.
fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Runs every experiment (resuming runs already on disk) and writes the report.
pub fn reproduce(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Vec<Claim>> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io("cannot create", &opts.out, e))?;
    // E2 reads the metrics of one of E1's runs (the default task, seed 1),
    // E6 the summaries of the default task's runs.
    let (e1, default_task) = separation::separation(opts, progress)?;
    let seed_one = default_task
        .rows
        .iter()
        .find(|r| r.2.seed == 1)
        .map(|r| r.0.clone())
        .ok_or_else(|| Error::Figure {
            message: "E2 plots seed 1 of the default task, which E1 did not run".into(),
        })?;
    let sections = vec![
        e1,
        dynamics::dynamics(&seed_one)?,
        sample_complexity::sample_complexity(opts, progress)?,
        experts_needed::experts_needed(opts, progress)?,
        routing::routing(opts, progress)?,
        joint::joint(opts, &default_task, progress)?,
    ];
    progress("writing the report");
    crate::report::page::write(&opts.out, &sections, opts.quick)
}
