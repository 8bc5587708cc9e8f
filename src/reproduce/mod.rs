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

/// Why a claim over seeds failed: how many seeds met it against how many
/// it needed, then each seed that missed with what it missed (`miss` of
/// the seed's index: empty when it met the claim). Three or more seeds that
/// missed alike (the same words around their numbers) are said once, each
/// number as the range over them: "seeds 1–10: relative MSE 0.211–0.244 <
/// 0.40".
fn seeds_missed(
    seeds: &[u64],
    met: usize,
    needed: usize,
    miss: impl Fn(usize) -> Vec<String>,
) -> String {
    // (the words around the numbers, the seeds, each seed's text)
    let mut groups: Vec<(Vec<String>, Vec<u64>, Vec<String>)> = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let m = miss(i);
        if m.is_empty() {
            continue;
        }
        let text = m.join(", ");
        let words = split_numbers(&text).0;
        match groups.iter_mut().find(|g| g.0 == words) {
            Some(g) => {
                g.1.push(seed);
                g.2.push(text);
            }
            None => groups.push((words, vec![seed], vec![text])),
        }
    }
    let mut each: Vec<(u64, String)> = Vec::new();
    for (words, group_seeds, texts) in groups {
        if group_seeds.len() < 3 {
            each.extend(
                group_seeds
                    .iter()
                    .zip(texts)
                    .map(|(s, t)| (*s, format!("seed {s}: {t}"))),
            );
            continue;
        }
        let numbers: Vec<Vec<String>> = texts.iter().map(|t| split_numbers(t).1).collect();
        let mut joined = words[0].clone();
        for (k, word) in words.iter().enumerate().skip(1) {
            let column: Vec<&String> = numbers.iter().map(|n| &n[k - 1]).collect();
            let value = |s: &&String| s.parse::<f64>().unwrap_or(f64::NAN);
            let lo = column.iter().min_by(|a, b| value(a).total_cmp(&value(b)));
            let hi = column.iter().max_by(|a, b| value(a).total_cmp(&value(b)));
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo != hi => joined.push_str(&format!("{lo}–{hi}")),
                (Some(lo), _) => joined.push_str(lo),
                _ => {}
            }
            joined.push_str(word);
        }
        each.push((
            group_seeds[0],
            format!("seeds {}: {joined}", seed_list(&group_seeds)),
        ));
    }
    each.sort_by_key(|e| e.0);
    format!(
        "{met} of {} seeds met it, {needed} needed; {}",
        seeds.len(),
        each.into_iter().map(|e| e.1).collect::<Vec<_>>().join("; ")
    )
}

/// A text's words between its numbers, and its numbers: "MSE 0.21 < 0.40"
/// as (["MSE ", " < ", ""], ["0.21", "0.40"]).
fn split_numbers(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut words, mut numbers) = (vec![String::new()], Vec::new());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            || (chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        // A digit inside a word (w*_1) is part of the word.
        let in_word = i > 0 && (chars[i - 1].is_alphabetic() || chars[i - 1] == '_');
        if starts_number && !in_word {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            numbers.push(chars[start..i].iter().collect());
            words.push(String::new());
        } else {
            words.last_mut().expect("one word at least").push(chars[i]);
            i += 1;
        }
    }
    (words, numbers)
}

/// Seeds as short text: runs of three or more as "1–10": "1–3, 7, 9".
fn seed_list(seeds: &[u64]) -> String {
    let mut sorted = seeds.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < sorted.len() {
        let mut end = k;
        while end + 1 < sorted.len() && sorted[end + 1] == sorted[end] + 1 {
            end += 1;
        }
        if end >= k + 2 {
            parts.push(format!("{}–{}", sorted[k], sorted[end]));
        } else {
            parts.extend(sorted[k..=end].iter().map(u64::to_string));
        }
        k = end + 1;
    }
    parts.join(", ")
}

/// What a vanilla network that should fail (relative MSE >= `mse_bar`,
/// w*_g overlap < `overlap_bar`) did instead, from its relative MSE `e` and
/// best w*_g overlap `g`; None when it failed as it should.
fn vanilla_miss(e: f64, g: f64, mse_bar: f64, overlap_bar: f64) -> Option<String> {
    let (high_error, far) = (e >= mse_bar, g < overlap_bar);
    match (high_error, far) {
        (true, true) => None,
        (false, true) => Some(format!(
            "relative MSE {e:.3} < {mse_bar:.2} (w*_g overlap {g:.3} < {overlap_bar})"
        )),
        (true, false) => Some(format!(
            "w*_g overlap {g:.3} >= {overlap_bar}: a neuron found w*_g (relative MSE {e:.3} still >= {mse_bar:.2})"
        )),
        (false, false) => Some(format!(
            "relative MSE {e:.3} < {mse_bar:.2} and w*_g overlap {g:.3} >= {overlap_bar}: it learned w*_g"
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_claim_says_which_seeds_missed_what() {
        let seeds: Vec<u64> = (1..=6).collect();
        let e = [0.21, 0.5, 0.244, 0.23, 0.6, 0.22];
        let why = seeds_missed(&seeds, 2, 6, |i| {
            let ok = e[i] >= 0.40;
            (!ok)
                .then(|| {
                    format!(
                        "relative MSE {:.3} < 0.40 (w*_g overlap 0.9{i}): it learned",
                        e[i]
                    )
                })
                .into_iter()
                .collect()
        });
        assert_eq!(
            why,
            "2 of 6 seeds met it, 6 needed; seeds 1, 3, 4, 6: relative MSE 0.210–0.244 < 0.40 \
             (w*_g overlap 0.90–0.95): it learned"
        );
        let why = seeds_missed(&seeds[..3], 2, 3, |i| {
            (i == 1)
                .then(|| "w*_1 overlap 0.42 < 0.9".to_string())
                .into_iter()
                .collect()
        });
        assert_eq!(
            why,
            "2 of 3 seeds met it, 3 needed; seed 2: w*_1 overlap 0.42 < 0.9"
        );
        assert_eq!(seed_list(&[9, 1, 2, 3, 7]), "1–3, 7, 9");
        assert_eq!(seed_list(&[4, 5]), "4, 5");
    }
}
