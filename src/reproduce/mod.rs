//! `clustermoe reproduce`: the paper's claims as experiments run through the
//! sweep machinery, written as a report (Markdown and self-contained HTML),
//! figures (SVG and PNG), tables (CSV) and `claims.json`.
//!
//! One file per experiment, each a function from [`Options`] to a section
//! of the report (its text, figures, tables and claims), so that an
//! experiment can be read, and changed, without the others:
//! `separation.rs` (E1), `dynamics.rs` (E2), `sample_complexity.rs` (E3),
//! `experts_needed.rs` (E4), `routing.rs` (E5), `joint/` (E6),
//! `samples_to_learn.rs` (E7). Each runs a
//! grid over seeds, reduces the runs to per-seed (or per-point) values, and
//! builds its claims, tables and figures from them, in steps named so.
//! What they share is here: the options and the entry point [`reproduce`];
//! running a grid and reading it back (`runs.rs`); claims about each seed
//! and why they failed (`claims.rs`); the statistics (`stats.rs`).
//! How a section is shown to a reader (Markdown, HTML, the figure and
//! table files beside them) is [`crate::report::page`]'s; the claims are
//! measured here, so the page can change without changing `claims.json`.

mod claims;
mod dynamics;
mod experts_needed;
mod joint;
mod routing;
mod runs;
mod sample_complexity;
mod samples_to_learn;
mod separation;
mod stats;

pub use experts_needed::coupon_collector;
pub use stats::fit_line;

use std::path::PathBuf;

use crate::error::{Error, Result};
pub use crate::report::page::Claim;
use crate::report::page::{Section, Table};
use crate::store::Control;

/// How to reproduce.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer seeds and smaller grids: minutes on a laptop.
    pub quick: bool,
    /// The directory the report, figures, tables and `claims.json` are
    /// written to, with every run under its `sweeps/`.
    pub out: PathBuf,
    /// Runs at a time.
    pub jobs: usize,
    /// Checkpoints and stops for every run: a stop flag set to a signal
    /// number stops the reproduction with [`Error::SweepStopped`] after the
    /// runs in progress are checkpointed; running it again resumes them.
    pub control: Control,
}

impl Options {
    /// An experiment's number of seeds: `quick` in quick mode, else `full`.
    fn seeds(&self, quick: i64, full: i64) -> i64 {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Runs every experiment (resuming runs already on disk) and writes the report.
pub fn reproduce(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Vec<Claim>> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io("cannot create", &opts.out, e))?;
    // E2 reads the metrics of one of E1's runs (the default task, seed 1),
    // E6 the summaries of the default task's runs.
    let (e1, default_task) = separation::separation(opts, progress)?;
    let seed_one = default_task.seed_one().ok_or_else(|| Error::Figure {
        message: "E2 plots seed 1 of the default task, which E1 did not run".into(),
    })?;
    let sections = vec![
        e1,
        dynamics::dynamics(&seed_one.dir)?,
        sample_complexity::sample_complexity(opts, progress)?,
        experts_needed::experts_needed(opts, progress)?,
        routing::routing(opts, progress)?,
        joint::joint(opts, &default_task, progress)?,
        samples_to_learn::samples_to_learn(opts, progress)?,
    ];
    progress("writing the report");
    crate::report::page::write(&opts.out, &sections, opts.quick)
}
