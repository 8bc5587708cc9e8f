//! Grid files: axes of values over configuration fields, expanded into
//! runs in a fixed order, each with an id that its configuration determines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, ValidConfig};
use crate::error::{Error, Input, Result};

/// One axis of a grid: an explicit list or an arithmetic range.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Axis {
    /// The values as listed: `[16, 32]`.
    List(Vec<toml::Value>),
    /// An arithmetic range: `{ from = 1.0, to = 2.0, step = 0.5 }`.
    Range(Range),
}

/// `from`, `to` (inclusive) and `step` (default 1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The first value.
    pub from: toml::Value,
    /// The last value at most (reached when a whole number of steps away).
    pub to: toml::Value,
    /// The step between values, > 0; absent means 1.
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
    /// The run's id ([`run_id`]): its directory's name in the sweep.
    pub id: String,
    /// The base configuration with the grid's values set, validated.
    pub config: ValidConfig,
}

/// The `sweep.json` manifest: the runs in grid order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Every run of the grid, in grid order.
    pub runs: Vec<ManifestRun>,
}

/// A run in the manifest: id and the grid values that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRun {
    /// The run's id, as in [`PlannedRun::id`].
    pub id: String,
    /// The grid values (axes and `seed`) that made the run, by dotted name.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// Most runs one grid may expand to; an axis has at most as many values.
/// Expanding builds and checks every run's configuration up front (100,000
/// runs: about 5 s and 150 MB); a larger study is several grid files.
pub const MAX_RUNS: usize = 100_000;

/// The values of one axis, validated but not yet materialised, so that the
/// size of the Cartesian product is known before anything is allocated.
enum AxisPlan<'a> {
    List(&'a [toml::Value]),
    Integers { from: i64, step: i64, count: usize },
    Floats { from: f64, step: f64, count: usize },
}

impl AxisPlan<'_> {
    fn len(&self) -> usize {
        match self {
            AxisPlan::List(v) => v.len(),
            AxisPlan::Integers { count, .. } | AxisPlan::Floats { count, .. } => *count,
        }
    }

    fn values(&self) -> Vec<toml::Value> {
        match *self {
            AxisPlan::List(v) => v.to_vec(),
            AxisPlan::Integers { from, step, count } => (0..count as i64)
                .map(|i| toml::Value::Integer(from + i * step))
                .collect(),
            AxisPlan::Floats { from, step, count } => (0..count)
                .map(|i| toml::Value::Float(from + i as f64 * step))
                .collect(),
        }
    }
}

/// Validates axis `field` (`grid.NAME` or `seeds`) without expanding it.
fn axis_plan<'a>(field: &str, axis: &'a Axis) -> Result<AxisPlan<'a>> {
    let too_many = |from: &dyn std::fmt::Display, to: &dyn std::fmt::Display, step| {
        Error::invalid(
            field,
            format!("from {from} to {to} step {step}"),
            format!("a range of 1 to {MAX_RUNS} values with from <= to"),
        )
    };
    let plan = match axis {
        Axis::List(v) => AxisPlan::List(v),
        Axis::Range(r) => {
            let step = r.step.clone().unwrap_or(toml::Value::Integer(1));
            let what = |name: &str| format!("{field}.{name}");
            match (&r.from, &r.to, &step) {
                (
                    &toml::Value::Integer(from),
                    &toml::Value::Integer(to),
                    &toml::Value::Integer(step),
                ) => {
                    if step <= 0 {
                        return Err(Error::invalid(what("step"), step, "a number > 0"));
                    }
                    let count =
                        (i128::from(to) - i128::from(from)).div_euclid(i128::from(step)) + 1;
                    if !(1..=MAX_RUNS as i128).contains(&count) {
                        return Err(too_many(&from, &to, step as f64));
                    }
                    AxisPlan::Integers {
                        from,
                        step,
                        count: count as usize,
                    }
                }
                (from, to, step) => {
                    let number = |v: &toml::Value, name: &str| {
                        v.as_float()
                            .or_else(|| v.as_integer().map(|i| i as f64))
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| Error::invalid(what(name), v, "a finite number"))
                    };
                    let (from, to, step) = (
                        number(from, "from")?,
                        number(to, "to")?,
                        number(step, "step")?,
                    );
                    if step <= 0.0 {
                        return Err(Error::invalid(what("step"), step, "a finite number > 0"));
                    }
                    let count = ((to - from) / step + 1e-9).floor() + 1.0;
                    if !(1.0..=MAX_RUNS as f64).contains(&count) {
                        return Err(too_many(&from, &to, step));
                    }
                    AxisPlan::Floats {
                        from,
                        step,
                        count: count as usize,
                    }
                }
            }
        }
    };
    if plan.len() == 0 {
        return Err(Error::invalid(field, "[]", "at least one value"));
    }
    Ok(plan)
}

/// Rejects a `[set]` or `[grid]` name that is not a dotted field name, which
/// `--set` could not take (`section` names the table it is in).
fn check_name(section: &str, name: &str) -> Result<()> {
    let parts: Vec<&str> = name.split('.').map(str::trim).collect();
    if name.contains('=') || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return Err(Error::invalid(
            format!("{section}.{name:?}"),
            format!("{name:?}"),
            "a dotted field name such as \"task.d\"",
        ));
    }
    Ok(())
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
        toml::from_str(&text)
            .map_err(|e| Error::parse(path, e.to_string().trim_end().replace('\n', " ")))
    }

    /// Expands the grid into runs, in a fixed order (axes in name order,
    /// the last axis varying fastest, seeds innermost). `dir` resolves `base`.
    pub fn expand(
        &self,
        dir: &Path,
    ) -> Result<Vec<(PlannedRun, BTreeMap<String, serde_json::Value>)>> {
        let base_text = self.base_text(dir)?;
        self.check_names()?;
        if let Some(path) = self.base.as_ref().map(|p| dir.join(p)) {
            // Errors in the base file itself name the file.
            Config::from_toml(&base_text).map_err(|e| match e {
                Error::Parse { message, .. } => Error::parse(path, message),
                other => other,
            })?;
        }
        let fixed: Vec<String> = self
            .set
            .iter()
            .map(|(k, v)| override_string(k, v))
            .collect();
        let plans = self.plans()?;
        let total = self.product(&plans)?;
        let axes: Vec<(String, Vec<toml::Value>)> = plans
            .iter()
            .map(|(name, p)| (name.clone(), p.values()))
            .collect();
        let mut runs = Vec::with_capacity(total);
        for index in 0..total {
            runs.push(planned_run(&base_text, &fixed, &axes, index)?);
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

    /// The base configuration's text (empty without `base`), read relative
    /// to `dir`.
    fn base_text(&self, dir: &Path) -> Result<String> {
        Ok(match &self.base {
            Some(p) => {
                let path = dir.join(p);
                std::fs::read_to_string(&path)
                    .map_err(|source| Error::Unreadable { path, source })?
            }
            None => String::new(),
        })
    }

    /// Rejects names that are not dotted field names, and seeds given twice
    /// (`seeds` and a `seed` axis).
    fn check_names(&self) -> Result<()> {
        for name in self.set.keys() {
            check_name("set", name)?;
        }
        for name in self.grid.keys() {
            check_name("grid", name)?;
        }
        if self.seeds.is_some() && self.grid.keys().any(|k| k.trim() == "seed") {
            return Err(Error::invalid(
                "grid.\"seed\"",
                "an axis besides `seeds`",
                "seeds given once: either `seeds` or a `seed` axis in [grid]",
            ));
        }
        Ok(())
    }

    /// Every axis, validated but not expanded, in name order; the seeds
    /// (named `seed`, as the field) last.
    fn plans(&self) -> Result<Vec<(String, AxisPlan<'_>)>> {
        let mut plans: Vec<(String, AxisPlan)> = self
            .grid
            .iter()
            .map(|(name, axis)| Ok((name.clone(), axis_plan(&format!("grid.{name}"), axis)?)))
            .collect::<Result<_>>()?;
        if let Some(seeds) = &self.seeds {
            plans.push(("seed".into(), axis_plan("seeds", seeds)?));
        }
        Ok(plans)
    }

    /// The number of runs, the product of the axes' lengths, checked
    /// before any axis is expanded: at most [`MAX_RUNS`].
    fn product(&self, plans: &[(String, AxisPlan)]) -> Result<usize> {
        plans
            .iter()
            .try_fold(1usize, |acc, (_, p)| {
                acc.checked_mul(p.len()).filter(|&t| t <= MAX_RUNS)
            })
            .ok_or_else(|| {
                // The seeds axis is last; its key in the file is `seeds`.
                let sizes: Vec<String> = plans
                    .iter()
                    .enumerate()
                    .map(|(i, (name, p))| {
                        let seeds = self.seeds.is_some() && i + 1 == plans.len();
                        format!("{}: {}", if seeds { "seeds" } else { name }, p.len())
                    })
                    .collect();
                Error::invalid(
                    "grid",
                    format!("the product of the axes ({})", sizes.join(" x ")),
                    format!("at most {MAX_RUNS} runs"),
                )
            })
    }
}

/// Run `index` of the grid (the last axis varying fastest): the base
/// configuration `base_text` with the `fixed` overrides and its value of
/// each axis set, checked; and those values, by name.
fn planned_run(
    base_text: &str,
    fixed: &[String],
    axes: &[(String, Vec<toml::Value>)],
    index: usize,
) -> Result<(PlannedRun, BTreeMap<String, serde_json::Value>)> {
    let mut rest = index;
    let mut sets = fixed.to_vec();
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
    let config = Config::from_toml_with_overrides(base_text, &sets).map_err(|e| match e {
        // The value came from the grid, not from a `--set` flag.
        Error::Parse {
            input: Input::Set(set),
            message,
        } => Error::Parse {
            input: Input::GridValue(set),
            message,
        },
        other => other,
    })?;
    Ok((
        PlannedRun {
            id: run_id(&config),
            config: config.check()?,
        },
        values,
    ))
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
                first.config.task().d,
                first.config.task().rho,
                first.config.seed()
            ),
            (16, 1.0, 1)
        );
        assert_eq!(first.config.config().phase_one.steps, 10.into());
        assert_eq!(values["task.rho"], serde_json::json!(1.0));
        // Seeds vary fastest, then the last axis in name order.
        assert_eq!(runs[1].0.config.seed(), 2);
        assert_eq!(runs[3].0.config.task().rho, 1.5);
        assert_eq!(runs[9].0.config.task().d, 32);
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
}
