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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::experiment;
use crate::output;
use crate::train::Silent;

/// One axis of a grid: an explicit list or an arithmetic range.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Axis {
    List(Vec<toml::Value>),
    Range(Range),
}

/// `from`, `to` (inclusive) and `step` (default 1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub from: toml::Value,
    pub to: toml::Value,
    #[serde(default)]
    pub step: Option<toml::Value>,
}

/// A grid file as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// Config file the runs start from, relative to the grid file.
    pub base: Option<PathBuf>,
    /// Seeds: a list or a range; absent means the base config's seed.
    pub seeds: Option<Axis>,
    /// Fields fixed for every run (dotted names).
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Axes of the Cartesian product (dotted names).
    #[serde(default)]
    pub grid: BTreeMap<String, Axis>,
}

/// One run of a sweep: its id and its resolved, validated configuration.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub id: String,
    pub config: Config,
}

/// The `sweep.json` manifest: the runs in grid order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub runs: Vec<ManifestRun>,
}

/// A run in the manifest: id and the grid values that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRun {
    pub id: String,
    pub values: BTreeMap<String, serde_json::Value>,
}

fn axis_values(name: &str, axis: &Axis) -> Result<Vec<toml::Value>> {
    let values = match axis {
        Axis::List(v) => v.clone(),
        Axis::Range(r) => {
            let as_f64 = |v: &toml::Value, what: &str| {
                v.as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .ok_or_else(|| Error::invalid(format!("grid.{name}.{what}"), v, "a number"))
            };
            let integers = [Some(&r.from), Some(&r.to), r.step.as_ref()]
                .iter()
                .flatten()
                .all(|v| v.is_integer());
            let (from, to) = (as_f64(&r.from, "from")?, as_f64(&r.to, "to")?);
            let step = r.step.as_ref().map_or(Ok(1.0), |s| as_f64(s, "step"))?;
            if step <= 0.0 || !step.is_finite() || !from.is_finite() || !to.is_finite() {
                return Err(Error::invalid(
                    format!("grid.{name}.step"),
                    step,
                    "a finite number > 0",
                ));
            }
            let count = ((to - from) / step + 1e-9).floor() + 1.0;
            if !(1.0..=1e6).contains(&count) {
                return Err(Error::invalid(
                    format!("grid.{name}"),
                    format!("from {from} to {to} step {step}"),
                    "a range of 1 to 1,000,000 values with from <= to",
                ));
            }
            (0..count as usize)
                .map(|i| {
                    let v = from + i as f64 * step;
                    if integers {
                        toml::Value::Integer(v.round() as i64)
                    } else {
                        toml::Value::Float(v)
                    }
                })
                .collect()
        }
    };
    if values.is_empty() {
        return Err(Error::invalid(
            format!("grid.{name}"),
            "[]",
            "at least one value",
        ));
    }
    Ok(values)
}

/// A dotted override `name=value` as `--set` takes it.
fn override_string(name: &str, value: &toml::Value) -> String {
    format!("{name}={value}")
}

/// The stable id of a resolved configuration: the first 12 hex digits of the
/// SHA-256 of its TOML, so the same configuration always has the same id.
pub fn run_id(config: &Config) -> String {
    let digest = Sha256::digest(config.to_toml().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl GridFile {
    /// Reads a grid file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// Expands the grid into runs, in a fixed order (axes in name order,
    /// the last axis varying fastest, seeds innermost). `dir` resolves `base`.
    pub fn expand(
        &self,
        dir: &Path,
    ) -> Result<Vec<(PlannedRun, BTreeMap<String, serde_json::Value>)>> {
        let base_text = match &self.base {
            Some(p) => {
                let path = dir.join(p);
                std::fs::read_to_string(&path)
                    .map_err(|source| Error::Unreadable { path, source })?
            }
            None => String::new(),
        };
        let fixed: Vec<String> = self
            .set
            .iter()
            .map(|(k, v)| override_string(k, v))
            .collect();
        let mut axes: Vec<(String, Vec<toml::Value>)> = self
            .grid
            .iter()
            .map(|(name, axis)| Ok((name.clone(), axis_values(name, axis)?)))
            .collect::<Result<_>>()?;
        if let Some(seeds) = &self.seeds {
            axes.push(("seed".into(), axis_values("seeds", seeds)?));
        }
        let total: usize = axes.iter().map(|(_, v)| v.len()).product();
        if total > 1_000_000 {
            return Err(Error::invalid("grid", total, "at most 1,000,000 runs"));
        }
        let mut runs = Vec::with_capacity(total);
        for index in 0..total {
            let mut rest = index;
            let mut sets = fixed.clone();
            let mut values = BTreeMap::new();
            for (name, options) in axes.iter().rev() {
                let value = &options[rest % options.len()];
                rest /= options.len();
                sets.push(override_string(name, value));
                values.insert(
                    name.clone(),
                    serde_json::to_value(value).expect("TOML values are JSON"),
                );
            }
            let config = Config::from_toml_with_overrides(&base_text, &sets)?;
            config.check()?;
            runs.push((
                PlannedRun {
                    id: run_id(&config),
                    config,
                },
                values,
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some((run, _)) = runs.iter().find(|(r, _)| !seen.insert(r.id.clone())) {
            return Err(Error::invalid(
                "grid",
                &run.id,
                "distinct configurations (two grid points resolve to the same run)",
            ));
        }
        Ok(runs)
    }
}

/// Which part of a sweep this process runs: shard `index` (from 0) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (I from 0 to N-1).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::invalid("--shard", text, "I/N with 0 <= I < N, e.g. 0/4");
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
    /// Runs that failed, with their error.
    pub failed: Vec<(String, String)>,
}

/// Whether `dir` holds a complete run (its `summary.json` is written last).
pub fn is_complete(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<experiment::Summary>(&t).ok())
        .is_some()
}

/// Runs the shard `shard` of the grid `grid_path` into `out`, `jobs` runs
/// at a time; `on_done(done, planned)` is called after each run.
pub fn run_sweep(
    grid_path: &Path,
    out: &Path,
    jobs: usize,
    shard: Shard,
    on_done: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<SweepReport> {
    let grid = GridFile::from_file(grid_path)?;
    run_grid(
        &grid,
        grid_path.parent().unwrap_or(Path::new(".")),
        out,
        jobs,
        shard,
        on_done,
    )
}

/// Runs the shard `shard` of `grid` (whose `base` is relative to `dir`)
/// into `out`, `jobs` runs at a time.
pub fn run_grid(
    grid: &GridFile,
    dir: &Path,
    out: &Path,
    jobs: usize,
    shard: Shard,
    on_done: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<SweepReport> {
    let runs = grid.expand(dir)?;
    std::fs::create_dir_all(out.join("runs")).map_err(|e| Error::io("cannot create", out, e))?;
    let manifest = Manifest {
        runs: runs
            .iter()
            .map(|(r, values)| ManifestRun {
                id: r.id.clone(),
                values: values.clone(),
            })
            .collect(),
    };
    output::write_json(&out.join("sweep.json"), &manifest)?;
    let mine: Vec<&PlannedRun> = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.owns(*i))
        .map(|(_, (r, _))| r)
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .map_err(|e| Error::invalid("--jobs", jobs, format!("a usable thread count ({e})")))?;
    let done = AtomicUsize::new(0);
    let outcomes: Vec<(String, Option<std::result::Result<(), String>>)> = pool.install(|| {
        mine.par_iter()
            .map(|run| {
                let dir = out.join("runs").join(&run.id);
                let outcome = if is_complete(&dir) {
                    None
                } else {
                    let valid = run.config.check().expect("checked when expanded");
                    Some(
                        experiment::run_to_dir(&valid, &dir, &Silent)
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                    )
                };
                on_done(done.fetch_add(1, Ordering::SeqCst) + 1, mine.len(), &run.id);
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
            None => report.skipped += 1,
            Some(Ok(())) => report.trained += 1,
            Some(Err(e)) => report.failed.push((id, e)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> GridFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn grids_expand_to_the_cartesian_product_with_stable_distinct_ids() {
        let g = grid(
            r#"
            seeds = { from = 1, to = 3 }
            [set]
            "phase_one.steps" = 10
            [grid]
            "task.d" = [16, 32]
            "task.rho" = { from = 1.0, to = 2.0, step = 0.5 }
            "#,
        );
        let runs = g.expand(Path::new(".")).unwrap();
        assert_eq!(runs.len(), 2 * 3 * 3);
        let (first, values) = &runs[0];
        assert_eq!(
            (
                first.config.task.d,
                first.config.task.rho,
                first.config.seed
            ),
            (16, 1.0, 1)
        );
        assert_eq!(first.config.phase_one.steps, 10);
        assert_eq!(values["task.rho"], serde_json::json!(1.0));
        // Seeds vary fastest, then the last axis in name order.
        assert_eq!(runs[1].0.config.seed, 2);
        assert_eq!(runs[3].0.config.task.rho, 1.5);
        assert_eq!(runs[9].0.config.task.d, 32);
        let ids: std::collections::HashSet<_> = runs.iter().map(|(r, _)| r.id.clone()).collect();
        assert_eq!(ids.len(), runs.len());
        let again = g.expand(Path::new(".")).unwrap();
        assert!(runs.iter().zip(&again).all(|(a, b)| a.0.id == b.0.id));
        assert_eq!(run_id(&Config::default()), run_id(&Config::default()));
    }

    #[test]
    fn bad_grids_name_the_field() {
        let bad = |text: &str, field: &str| {
            let e = grid(text).expand(Path::new(".")).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
            assert_eq!(e.exit_status(), 2);
        };
        bad("[grid]\n\"task.d\" = [0, 16]\n", "task.d");
        bad(
            "[grid]\n\"task.rho\" = { from = 2.0, to = 1.0 }\n",
            "task.rho",
        );
        bad(
            "[grid]\n\"task.rho\" = { from = 1.0, to = 2.0, step = 0.0 }\n",
            "task.rho.step",
        );
        bad("[grid]\n\"task.wobble\" = [1]\n", "wobble");
        bad("[grid]\n\"task.d\" = []\n", "task.d");
        bad("[grid]\n\"task.d\" = [16, 16]\n", "grid");
        assert!(toml::from_str::<GridFile>("grdi = 3").is_err());
    }

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
