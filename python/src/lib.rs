//! `clustermoe._native`: the library's entry points for the Python package.
//!
//! Each function calls the library as the CLI does (same configuration
//! parsing, checks, files and messages) and hands its results over as
//! JSON text (parsed by the pure-Python layer, so dicts keep the files'
//! key order) and NumPy arrays (moved, not copied). Long calls release the
//! GIL and stop on Ctrl-C (see [`wait`]). The public, documented API is
//! the Python package `clustermoe` around this module.

mod config;
mod errors;
mod wait;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use numpy::{IntoPyArray, PyArray};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use clustermoe::config::ValidConfig;
use clustermoe::error::{Error, Result};
use clustermoe::experiment::predict::Trained;
use clustermoe::experiment::{self, Experiment, RunOutput, Summary};
use clustermoe::metrics::Record;
use clustermoe::numerics::link;
use clustermoe::phase::{ModelKind, Phase};
use clustermoe::store::output::{self, NpzArray};
use clustermoe::store::{Control, Progress, RunDir, SweepDir};
use clustermoe::sweep::{self, collect, Shard};
use clustermoe::train::Journal;
use clustermoe::Config;

use errors::IntoPy;
use wait::Tracker;

/// `summary.json`'s text: pretty JSON and a newline, as the CLI writes it.
fn summary_text(summary: &Summary) -> String {
    let mut text = serde_json::to_string_pretty(summary).expect("summaries serialise");
    text.push('\n');
    text
}

/// Records as `metrics.jsonl` holds them: one JSON object a line.
fn records_text<'a>(records: impl IntoIterator<Item = &'a Record>) -> String {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).expect("records serialise"));
        text.push('\n');
    }
    text
}

/// Named arrays as a dict of NumPy arrays (each moved, not copied).
fn arrays_dict<'py>(
    py: Python<'py>,
    arrays: Vec<(String, NpzArray)>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, a) in arrays {
        match a {
            NpzArray::F64(a) => d.set_item(name, PyArray::from_owned_array(py, a))?,
            NpzArray::I64(a) => d.set_item(name, PyArray::from_owned_array(py, a))?,
        }
    }
    Ok(d)
}

/// Checks a configuration and emits its warnings (violated assumptions of
/// the theorem) as `clustermoe.AssumptionWarning`.
fn check(py: Python<'_>, config: &Config) -> PyResult<ValidConfig> {
    let valid = config.check().py_err(py)?;
    warn(py, valid.warnings())?;
    Ok(valid)
}

fn warn(py: Python<'_>, warnings: &[String]) -> PyResult<()> {
    if warnings.is_empty() {
        return Ok(());
    }
    let category = py
        .import("clustermoe.errors")?
        .getattr("AssumptionWarning")?;
    for w in warnings {
        let message = std::ffi::CString::new(w.replace('\0', " ")).expect("no NUL left");
        PyErr::warn(py, &category, &message, 2)?;
    }
    Ok(())
}

/// `checkpoint_every`: None, or a number of steps >= 1.
/// A control that checkpoints every `every` steps (if given) and stops at
/// the flag it returns, which the wait loop sets on a Python interrupt.
fn stoppable(every: Option<u64>) -> (Arc<AtomicUsize>, Control) {
    let stop = Arc::new(AtomicUsize::new(0));
    let control = Control {
        checkpoint_every: every,
        stop: Some(Arc::clone(&stop)),
    };
    (stop, control)
}

fn every(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    match v.filter(|v| !v.is_none()) {
        None => Ok(None),
        Some(v) => config::count(
            "checkpoint_every",
            v,
            1..=u64::MAX,
            "a number of steps >= 1",
        )
        .map(Some)
        .py_err(py),
    }
}

/// `threads`: None (the caller's pool: all cores) or 1 to
/// `clustermoe::threads::MAX_THREADS`.
fn threads(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    use clustermoe::threads::MAX_THREADS;
    match v.filter(|v| !v.is_none()) {
        None => Ok(None),
        Some(v) => config::count(
            "threads",
            v,
            1..=MAX_THREADS as u64,
            &format!("a number of threads from 1 to {MAX_THREADS}"),
        )
        .map(|n| Some(n as usize))
        .py_err(py),
    }
}

/// `jobs`: None (all cores) or an integer >= 1.
fn jobs(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    match v.filter(|v| !v.is_none()) {
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(v) => config::count("jobs", v, 1..=4096, "an integer from 1 to 4096")
            .map(|j| j as usize)
            .py_err(py),
    }
}

/// Calls `progress.update(*args)` when the display is on.
fn show<'py>(
    progress: Option<&Bound<'py, PyAny>>,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<()> {
    if let Some(p) = progress {
        p.call_method1("update", args)?;
    }
    Ok(())
}

/// The stop flag as a journal sees it.
fn stop_signal(stop: &AtomicUsize) -> Option<i32> {
    let s = stop.load(Ordering::Relaxed);
    (s != 0).then_some(s as i32)
}

/// A journal that keeps one model's records in memory, for a run without
/// a directory; it stops when the flag is set (and has nowhere to
/// checkpoint).
struct Memory {
    records: Vec<Record>,
    stop: Arc<AtomicUsize>,
}

impl<S> Journal<S> for Memory {
    fn record(&mut self, rec: &Record) -> Result<()> {
        self.records.push(rec.clone());
        Ok(())
    }

    fn stop_requested(&self) -> Option<i32> {
        stop_signal(&self.stop)
    }
}

/// The outcome of a long call: its result, unless the calling thread saw
/// an exception (Ctrl-C) meanwhile, which is raised instead. A library
/// error becomes its exception with `message(error)`; a stop the library
/// reports becomes a `KeyboardInterrupt` with it.
fn outcome<T>(
    py: Python<'_>,
    result: Result<T>,
    pending: Option<PyErr>,
    message: &dyn Fn(&Error) -> String,
) -> PyResult<T> {
    match (result, pending) {
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(errors::to_py_with(py, &e, message(&e))),
        (Err(e @ (Error::Interrupted { .. } | Error::SweepStopped { .. })), Some(p))
            if p.is_instance_of::<PyKeyboardInterrupt>(py) =>
        {
            Err(errors::to_py_with(py, &e, message(&e)))
        }
        (_, Some(p)) => Err(p),
    }
}

/// The library's message.
fn plain(e: &Error) -> String {
    e.to_string()
}

/// What a run hands to Python: its configuration, summary, metrics, arrays.
fn run_result<'py>(
    py: Python<'py>,
    valid: &ValidConfig,
    out: RunOutput,
    metrics: String,
    path: Option<&Path>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let config = valid.config();
    d.set_item(
        "config",
        serde_json::to_string(config).expect("configs are JSON"),
    )?;
    d.set_item("config_toml", config.to_toml())?;
    d.set_item("summary", summary_text(&out.summary))?;
    d.set_item("metrics", metrics)?;
    d.set_item("model", arrays_dict(py, output::model_arrays(&out))?)?;
    d.set_item("path", path)?;
    Ok(d)
}

/// The full default configuration: (JSON, TOML).
#[pyfunction]
fn defaults() -> (String, String) {
    let config = Config::default();
    (config.to_full_json(), config.to_full_toml())
}

/// The configuration of `config`, `seed` and `sections`, checked:
/// (JSON, TOML, the budget's description, the resolved budget as JSON).
#[pyfunction]
#[pyo3(signature = (config=None, seed=None, sections=None))]
fn resolve(
    py: Python<'_>,
    config: Option<&Bound<'_, PyAny>>,
    seed: Option<&Bound<'_, PyAny>>,
    sections: Option<&Bound<'_, PyDict>>,
) -> PyResult<(String, String, String, String)> {
    let valid = check(py, &config::load(config, seed, sections).py_err(py)?)?;
    let budget = valid.resolved_budget();
    Ok((
        serde_json::to_string(valid.config()).expect("configs are JSON"),
        valid.config().to_toml(),
        budget.describe(),
        serde_json::to_string(&budget).expect("budgets are JSON"),
    ))
}

/// Trains both models (in `out` as `clustermoe run --out` does, or in
/// memory) and returns the run's configuration, summary, metrics and arrays.
#[pyfunction]
#[pyo3(signature = (config=None, seed=None, sections=None, out=None, checkpoint_every=None, progress=None, threads=None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    config: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
    sections: Option<&Bound<'py, PyDict>>,
    out: Option<PathBuf>,
    checkpoint_every: Option<&Bound<'py, PyAny>>,
    progress: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let valid = check(py, &config::load(config, seed, sections).py_err(py)?)?;
    let every = every(py, checkpoint_every)?;
    let threads = self::threads(py, threads)?;
    if out.is_none() && every.is_some() {
        return Err(Error::invalid(
            "checkpoint_every",
            every.unwrap_or_default(),
            "None without out= (checkpoints are files of a run directory)",
        ))
        .py_err(py);
    }
    if let Some(p) = progress {
        p.call_method1("note", (valid.resolved_budget().describe(),))?;
    }
    let (stop, control) = stoppable(every);
    let tracker = Tracker::default();
    let poll = |_: Python<'_>| show(progress, tracker.snapshot());
    match out {
        Some(path) => {
            let dir = RunDir::new(path);
            let (result, pending) = wait::blocking(py, &stop, poll, || {
                clustermoe::threads::install(threads, || dir.train(&valid, &tracker, &control))
            })?;
            let out = outcome(py, result, pending, &|e| in_dir(e, &dir))?;
            let metrics = read_text(&dir.metrics_file()).py_err(py)?;
            run_result(py, &valid, out, metrics, Some(dir.path()))
        }
        None => {
            let mut moe = Memory {
                records: Vec::new(),
                stop: Arc::clone(&stop),
            };
            let mut vanilla = Memory {
                records: Vec::new(),
                stop: Arc::clone(&stop),
            };
            let (result, pending) = wait::blocking(py, &stop, poll, || {
                let experiment = Experiment::new(&valid)
                    .monitor(&tracker)
                    .journals(&mut moe, &mut vanilla);
                match threads {
                    Some(n) => experiment.threads(n).run(),
                    None => experiment.run(),
                }
            })?;
            let out = outcome(py, result, pending, &in_memory)?;
            let metrics = records_text(moe.records.iter().chain(&vanilla.records));
            run_result(py, &valid, out, metrics, None)
        }
    }
}

/// The message of a run without a directory: a stop wrote nothing.
fn in_memory(e: &Error) -> String {
    match e {
        Error::Interrupted {
            signal,
            model,
            phase,
            step,
        } => format!(
            "stopped by signal {signal} in {model} {phase}{}; nothing was kept (give out= to keep a checkpoint)",
            step.map_or(String::new(), |s| format!(" after step {s}"))
        ),
        other => other.to_string(),
    }
}

/// The message of a run in `dir`; after a stop, how to go on (as the CLI's
/// `continue with:` line).
fn in_dir(e: &Error, dir: &RunDir) -> String {
    match e {
        Error::Interrupted { .. } => format!(
            "{e}; continue with clustermoe.resume({:?})",
            dir.path().display().to_string()
        ),
        other => other.to_string(),
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// Continues a stopped or killed run directory from its checkpoints
/// (`clustermoe run --resume DIR`); None if it was already complete.
#[pyfunction]
#[pyo3(signature = (dir, checkpoint_every=None, progress=None, threads=None))]
fn resume<'py>(
    py: Python<'py>,
    dir: PathBuf,
    checkpoint_every: Option<&Bound<'py, PyAny>>,
    progress: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let every = every(py, checkpoint_every)?;
    let threads = self::threads(py, threads)?;
    let dir = RunDir::new(dir);
    let writer = dir.existing_writer().py_err(py)?;
    let inspection = writer.inspect().py_err(py)?;
    if let (Some(p), Progress::Resumable(models)) = (progress, &inspection.progress) {
        for (model, position) in models {
            let at = match position {
                None => "no checkpoint: starts over".to_string(),
                Some(None) => "trained".to_string(),
                Some(Some((phase, step))) => format!("resumes {phase} after step {step}"),
            };
            p.call_method1("note", (format!("{model}: {at}"),))?;
        }
    }
    warn(py, inspection.config.warnings())?;
    let valid = inspection.config.clone();
    let (stop, control) = stoppable(every);
    let tracker = Tracker::default();
    let poll = |_: Python<'_>| show(progress, tracker.snapshot());
    let (result, pending) = wait::blocking(py, &stop, poll, || {
        clustermoe::threads::install(threads, || inspection.resume(&tracker, &control))
    })?;
    match outcome(py, result, pending, &|e| in_dir(e, &dir))? {
        None => Ok(None),
        Some(out) => {
            let metrics = read_text(&dir.metrics_file()).py_err(py)?;
            run_result(py, &valid, out, metrics, Some(dir.path())).map(Some)
        }
    }
}

/// Reads a complete run directory: configuration, summary and metrics
/// (the arrays are read from `model.npz` by NumPy).
#[pyfunction]
fn read_run<'py>(py: Python<'py>, dir: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let dir = RunDir::new(dir);
    let run = dir.read_complete().py_err(py)?;
    let (config, summary, metrics) = (run.config, run.summary, run.metrics);
    let d = PyDict::new(py);
    d.set_item(
        "config",
        serde_json::to_string(&config).expect("configs are JSON"),
    )?;
    d.set_item("config_toml", config.to_toml())?;
    d.set_item("summary", summary_text(&summary))?;
    d.set_item("metrics", records_text(&metrics))?;
    d.set_item("model_file", dir.model_file())?;
    d.set_item("path", dir.path())?;
    Ok(d)
}

/// Draws `n` samples of the task (`clustermoe generate`): a dict of
/// arrays, `x` and `y` in float64 as the CLI's file holds them, or, with
/// `float32`, as drawn (no conversion).
#[pyfunction]
#[pyo3(signature = (n, config=None, seed=None, sections=None, float32=false))]
fn generate<'py>(
    py: Python<'py>,
    n: &Bound<'py, PyAny>,
    config: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
    sections: Option<&Bound<'py, PyDict>>,
    float32: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let max = experiment::MAX_GENERATE;
    let allowed = format!("a number of samples from 1 to {max}");
    let n = config::count("n", n, 1..=max as u64, &allowed).py_err(py)? as usize;
    let valid = check(py, &config::load(config, seed, sections).py_err(py)?)?;
    let stop = AtomicUsize::new(0);
    let (result, pending) = wait::blocking(
        py,
        &stop,
        |_| Ok(()),
        || {
            let (task, data) = experiment::generate(&valid, n)?;
            Ok(if float32 {
                let c = data.c.iter().map(|&c| c as i64).collect::<Vec<i64>>();
                (Some((data.x, data.y, c)), output::task_arrays(&task))
            } else {
                (None, output::dataset_arrays(&task, &data))
            })
        },
    )?;
    let (raw, arrays) = outcome(py, result, pending, &plain)?;
    match raw {
        None => arrays_dict(py, arrays),
        Some((x, y, c)) => {
            let d = PyDict::new(py);
            d.set_item("x", x.into_pyarray(py))?;
            d.set_item("y", y.into_pyarray(py))?;
            d.set_item("c", c.into_pyarray(py))?;
            for (k, v) in arrays_dict(py, arrays)?.iter() {
                d.set_item(k, v)?;
            }
            Ok(d)
        }
    }
}

/// `clustermoe link LINK --degree K --json`: the description as JSON.
#[pyfunction]
#[pyo3(signature = (spec, degree))]
fn describe_link(py: Python<'_>, spec: &str, degree: &Bound<'_, PyAny>) -> PyResult<String> {
    let allowed = format!("an integer from 0 to {}", link::MAX_DEGREE);
    let degree = config::count("degree", degree, 0..=u64::MAX, &allowed).py_err(py)?;
    let description = link::parse("link", spec)
        .and_then(|l| l.describe(usize::try_from(degree).unwrap_or(usize::MAX)))
        .py_err(py)?;
    Ok(serde_json::to_string(&description).expect("descriptions are JSON"))
}

/// A shard: None (the Slurm array's, or all), "I/N", or (I, N).
fn shard(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Shard> {
    let text = match v.filter(|v| !v.is_none()) {
        None => {
            return Ok(Shard::from_env(|k| std::env::var(k).ok())
                .py_err(py)?
                .unwrap_or(Shard::ALL))
        }
        Some(v) => match v.extract::<(i64, i64)>() {
            Ok((i, n)) => format!("{i}/{n}"),
            Err(_) => v.str()?.to_string(),
        },
    };
    Shard::parse(&text).py_err(py)
}

/// Runs a grid (`clustermoe sweep`); returns what it did.
#[pyfunction]
#[pyo3(signature = (grid, out, jobs=None, shard=None, checkpoint_every=None, progress=None))]
fn run_sweep<'py>(
    py: Python<'py>,
    grid: &Bound<'py, PyAny>,
    out: PathBuf,
    jobs: Option<&Bound<'py, PyAny>>,
    shard: Option<&Bound<'py, PyAny>>,
    checkpoint_every: Option<&Bound<'py, PyAny>>,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let shard = self::shard(py, shard)?;
    let jobs = self::jobs(py, jobs)?;
    let (grid, grid_dir) = config::grid(grid).py_err(py)?;
    let (stop, control) = stoppable(every(py, checkpoint_every)?);
    let latest: Mutex<Option<(usize, usize, String)>> = Mutex::new(None);
    let on_done = |done: usize, planned: usize, id: &str| {
        if let Ok(mut l) = latest.lock() {
            *l = Some((done, planned, id.to_string()));
        }
    };
    let poll = |_: Python<'_>| match latest.lock().ok().and_then(|mut l| l.take()) {
        Some(args) => show(progress, args),
        None => Ok(()),
    };
    let (result, pending) = wait::blocking(py, &stop, poll, || {
        sweep::run_grid(&grid, &grid_dir, &out, jobs, shard, &control, &on_done)
    })?;
    // A stop is the sweep's error; failed runs are reported with the report.
    let result = result.and_then(|report| match report.outcome(&control) {
        Err(e @ Error::SweepStopped { .. }) => Err(e),
        _ => Ok(report),
    });
    let report = outcome(py, result, pending, &plain)?;
    let d = PyDict::new(py);
    d.set_item("out", &out)?;
    d.set_item("shard", (shard.index, shard.count))?;
    d.set_item("planned", report.planned)?;
    d.set_item("trained", report.trained)?;
    d.set_item("resumed", report.resumed)?;
    d.set_item("skipped", report.skipped)?;
    d.set_item("failed", PyList::new(py, &report.failed)?)?;
    d.set_item("stopped", report.stopped)?;
    d.set_item("busy", PyList::new(py, &report.busy)?)?;
    if let Err(e) = report.outcome(&control) {
        let lines: String = report
            .failed
            .iter()
            .map(|(id, e)| format!("\n  run {id}: {e}"))
            .collect();
        let err = errors::to_py_with(py, &e, format!("{e}{lines}"));
        err.value(py).setattr("report", &d)?;
        return Err(err);
    }
    Ok(d)
}

/// What `merge` hands to Python: (rows, runs not started, runs in
/// progress, incomplete runs with their reasons, results.csv, results.jsonl).
type Merged = (
    usize,
    Vec<String>,
    Vec<String>,
    Vec<(String, String)>,
    PathBuf,
    PathBuf,
);

/// `clustermoe merge DIR`: writes results.csv and results.jsonl.
#[pyfunction]
fn merge(py: Python<'_>, dir: PathBuf) -> PyResult<Merged> {
    let report = collect::merge(&dir).py_err(py)?;
    let sweep = SweepDir::new(&dir);
    Ok((
        report.rows,
        report.missing,
        report.in_progress,
        report.incomplete,
        sweep.results_csv(),
        sweep.results_jsonl(),
    ))
}

/// `clustermoe reproduce`: the claims as JSON.
#[pyfunction]
#[pyo3(signature = (out, quick, jobs=None, checkpoint_every=None, progress=None))]
fn reproduce<'py>(
    py: Python<'py>,
    out: PathBuf,
    quick: bool,
    jobs: Option<&Bound<'py, PyAny>>,
    checkpoint_every: Option<&Bound<'py, PyAny>>,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<String> {
    let (stop, control) = stoppable(every(py, checkpoint_every)?);
    let options = clustermoe::reproduce::Options {
        quick,
        out,
        jobs: self::jobs(py, jobs)?,
        control,
    };
    let messages: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let report = |m: &str| {
        if let Ok(mut v) = messages.lock() {
            v.push(m.to_string());
        }
    };
    let poll = |_: Python<'_>| {
        let new = messages
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for m in new {
            show(progress, (m,))?;
        }
        Ok(())
    };
    let (result, pending) = wait::blocking(py, &stop, poll, || {
        clustermoe::reproduce::reproduce(&options, &report)
    })?;
    let claims = outcome(py, result, pending, &plain)?;
    Ok(serde_json::to_string(&claims).expect("claims are JSON"))
}

/// A run's models rebuilt from its configuration and the arrays of its
/// `model.npz` (a dict of NumPy arrays).
fn trained(
    py: Python<'_>,
    config_toml: &str,
    model: &Bound<'_, PyDict>,
) -> PyResult<(ValidConfig, Trained)> {
    let valid = Config::from_toml(config_toml)
        .and_then(|c| c.check())
        .py_err(py)?;
    let mut arrays = BTreeMap::new();
    for (name, a) in model.iter() {
        let name: String = name.extract()?;
        // Integer arrays (the expert groups) are not used by predictions.
        if let Ok(a) = a.extract::<numpy::PyReadonlyArrayDyn<'_, f64>>() {
            arrays.insert(name, a.as_array().to_owned());
        }
    }
    let trained = Trained::from_arrays(&valid, &arrays).py_err(py)?;
    Ok((valid, trained))
}

/// Each model's predictions for the rows of `x`: (MoE, vanilla or None).
#[pyfunction]
fn predict<'py>(
    py: Python<'py>,
    config_toml: &str,
    model: &Bound<'py, PyDict>,
    x: numpy::PyReadonlyArray2<'py, f64>,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    let (_, trained) = trained(py, config_toml, model)?;
    let x = x.as_array().mapv(|v| v as f32);
    let (moe, vanilla) = py.detach(|| trained.predict(x.view())).py_err(py)?;
    Ok((
        moe.into_pyarray(py).into_any(),
        vanilla.map(|v| v.into_pyarray(py).into_any()),
    ))
}

/// Both models' errors on `n` fresh samples of the run's task drawn with
/// `seed` (None: the run's own test set), as JSON.
#[pyfunction]
#[pyo3(signature = (config_toml, model, n=None, seed=None))]
fn evaluate<'py>(
    py: Python<'py>,
    config_toml: &str,
    model: &Bound<'py, PyDict>,
    n: Option<&Bound<'py, PyAny>>,
    seed: Option<&Bound<'py, PyAny>>,
) -> PyResult<String> {
    let (valid, trained) = trained(py, config_toml, model)?;
    let max = experiment::MAX_GENERATE;
    let n = n
        .map(|n| {
            config::count(
                "n",
                n,
                2..=max as u64,
                &format!("a number of samples from 2 to {max}"),
            )
        })
        .transpose()
        .py_err(py)?;
    let seed = config::seed(seed).py_err(py)?;
    let evaluation = py
        .detach(|| match (n, seed) {
            (None, None) => trained.evaluate_test_set(&valid),
            (n, seed) => trained.evaluate(
                n.map_or(valid.metrics().test_samples, |n| n as usize),
                seed.unwrap_or(valid.seed()),
            ),
        })
        .py_err(py)?;
    Ok(serde_json::to_string(&evaluation).expect("evaluations are JSON"))
}

/// For the tests: the exception a library error of kind `kind` becomes.
#[pyfunction]
fn _error_example(py: Python<'_>, kind: &str) -> PyErr {
    use std::io;
    let e = match kind {
        "Invalid" => Error::invalid("phase_one.lr", -0.1, "a finite number > 0"),
        "UnknownField" => Error::UnknownField {
            field: "moe.expert".into(),
            hint: "; did you mean `moe.experts`?".into(),
        },
        "Parse" => Error::parse(PathBuf::from("grid.toml"), "expected `=`"),
        "Unreadable" => Error::Unreadable {
            path: "missing.toml".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        },
        "Checkpoint" => Error::Checkpoint {
            path: "runs/x/checkpoint.moe".into(),
            message: "corrupted: the checksum does not match".into(),
        },
        "Io" => Error::io(
            "cannot write",
            "runs/x/summary.json",
            io::Error::from(io::ErrorKind::PermissionDenied),
        ),
        "Diverged" => Error::Diverged {
            model: ModelKind::Moe,
            phase: Phase::PhaseThree,
            step: 1,
            quantity: "a first-layer weight",
        },
        "RunsFailed" => Error::RunsFailed {
            failed: 1,
            planned: 4,
        },
        "Readout" => Error::Readout {
            model: ModelKind::Vanilla,
            message: "the matrix is not positive definite".into(),
        },
        "Figure" => Error::Figure {
            message: "no font".into(),
        },
        "NonFinite" => Error::NonFinite {
            field: "vanilla.test_rel_mse".into(),
            value: f64::NAN,
        },
        "Interrupted" => Error::Interrupted {
            signal: 2,
            model: ModelKind::Moe,
            phase: Phase::PhaseTwo,
            step: Some(1442),
        },
        "InUse" => Error::InUse {
            path: "runs/x".into(),
            holder: Some(4242),
        },
        "Incomplete" => Error::Incomplete {
            path: "runs/x".into(),
            reason: "`model.npz` has the recorded length but not its SHA-256 (a byte changed)"
                .into(),
        },
        "SweepStopped" => Error::SweepStopped {
            signal: 2,
            unfinished: 2,
        },
        other => Error::invalid("kind", other, "the name of an Error variant"),
    };
    errors::to_py(py, &e)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(defaults, m)?)?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(resume, m)?)?;
    m.add_function(wrap_pyfunction!(read_run, m)?)?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(describe_link, m)?)?;
    m.add_function(wrap_pyfunction!(run_sweep, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(reproduce, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(_error_example, m)?)?;
    Ok(())
}
