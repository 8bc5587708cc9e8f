//! The command line: [`args`] defines the flags, [`progress`] shows
//! progress, [`print`] writes results; one short function per command calls
//! the library and prints.

pub mod args;
mod print;
mod progress;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use clustermoe::config::Config;
use clustermoe::error::{Error, Result};
use clustermoe::numerics::link;
use clustermoe::store::{output, Control, Progress as RunProgress, RunDir};
use clustermoe::sweep::{self, collect};
use clustermoe::{bench, experiment, reproduce, Experiment};

use args::{checked_every, jobs_or_all, load_config, Cli, Command};
use progress::{Progress, Steps};

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            seed,
            out,
            mut sets,
            until,
            checkpoint_every,
            resume,
            threads,
            quiet,
        } => {
            if let Some(n) = threads {
                clustermoe::threads::check(n)?;
            }
            let control = Control {
                checkpoint_every: checked_every(checkpoint_every)?,
                stop: Some(stop_on_signals()?),
            };
            match resume {
                Some(dir) => resume_run(&RunDir::new(dir), &control, threads, quiet),
                None => {
                    if let Some(cap) = until {
                        sets.push("targets.until=true".into());
                        sets.push(format!("targets.cap={cap:?}"));
                    }
                    let config = load_config(config.as_deref(), &sets, seed)?;
                    train_run(config, out, &control, threads, quiet)
                }
            }
        }
        Command::Generate {
            config,
            n,
            seed,
            out,
            sets,
        } => generate(load_config(config.as_deref(), &sets, seed)?, n, &out),
        Command::Link { spec, degree, json } => describe_link(&spec, degree, json),
        Command::Defaults => {
            print!("{}", Config::default().to_full_toml());
            Ok(())
        }
        Command::Sweep {
            grid,
            out,
            jobs,
            shard,
            checkpoint_every,
            quiet,
        } => {
            let shard = match shard {
                Some(s) => sweep::Shard::parse(&s)?,
                None => {
                    sweep::Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(sweep::Shard::ALL)
                }
            };
            let control = Control {
                checkpoint_every: checked_every(checkpoint_every)?,
                stop: Some(stop_on_signals()?),
            };
            run_sweep(&grid, &out, jobs_or_all(jobs)?, shard, &control, quiet)
        }
        Command::Reproduce {
            quick,
            out,
            jobs,
            quiet,
        } => run_reproduce(quick, out, jobs_or_all(jobs)?, quiet),
        Command::Bench {
            config,
            d,
            sets,
            steps_scale,
            threads,
            scaling,
            json,
            plot,
            quiet,
        } => {
            let config = load_config(config.as_deref(), &sets, None)?;
            let options: Vec<bench::BenchOptions> = threads
                .iter()
                .map(|&threads| bench::BenchOptions {
                    config: config.clone(),
                    dims: d.clone(),
                    steps_scale,
                    threads,
                })
                .collect();
            run_bench(&options, scaling, json.as_deref(), plot.as_deref(), quiet)
        }
        Command::Merge { dir } => merge(&dir),
    }
}

/// `run`: a new run.
fn train_run(
    config: Config,
    out: Option<PathBuf>,
    control: &Control,
    threads: Option<usize>,
    quiet: bool,
) -> Result<()> {
    // A run that cannot fit is refused before the wall-time estimate
    // (whose measuring allocates) and before the run directory exists: it
    // leaves nothing behind.
    let valid = config.check_to_run(threads.unwrap_or_else(rayon::current_num_threads))?;
    for w in valid.warnings() {
        eprintln!("warning: {w}");
    }
    if !quiet {
        eprintln!("{}", valid.resolved_budget().describe());
    }
    if !quiet {
        print::estimate(&valid, threads);
    }
    let dir =
        RunDir::new(out.unwrap_or_else(|| PathBuf::from(format!("runs/seed{}", valid.seed()))));
    let start = Instant::now();
    let progress = Progress::new(quiet);
    let result = dir.writer().and_then(|writer| {
        let mut experiment = Experiment::new(&valid)
            .monitor(&progress)
            .control(control)
            .write_to(&writer);
        if let Some(threads) = threads {
            experiment = experiment.threads(threads);
        }
        experiment.run()
    });
    progress.finish();
    finish_run(&dir, result, start)
}

/// `run --resume DIR`.
fn resume_run(dir: &RunDir, control: &Control, threads: Option<usize>, quiet: bool) -> Result<()> {
    let start = Instant::now();
    let writer = dir.existing_writer()?;
    let mut inspection = writer.inspect()?;
    if let RunProgress::Resumable(models) = &inspection.progress {
        if !quiet {
            for (model, position) in models {
                eprintln!("{model}: {}", print::position(*position));
            }
        }
    }
    for w in inspection.config.warnings() {
        eprintln!("warning: {w}");
    }
    let progress = Progress::new(quiet);
    let Some(mut experiment) = Experiment::resume(&mut inspection) else {
        println!("{} is already complete", dir.path().display());
        return Ok(());
    };
    experiment = experiment.monitor(&progress).control(control);
    if let Some(threads) = threads {
        experiment = experiment.threads(threads);
    }
    let result = experiment.run();
    progress.finish();
    finish_run(dir, result, start)
}

fn finish_run(dir: &RunDir, result: Result<experiment::RunOutput>, start: Instant) -> Result<()> {
    let out = result.inspect_err(|e| {
        if let Error::Interrupted { .. } = e {
            eprintln!(
                "continue with: clustermoe run --resume {}",
                dir.path().display()
            );
        }
    })?;
    print::summary(&out.summary);
    println!(
        "wrote {} in {:.2} s",
        dir.path().display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `generate`.
fn generate(config: Config, n: usize, out: &Path) -> Result<()> {
    let (task, data) = experiment::generate(&config.check()?, n)?;
    output::write_dataset(out, &task, &data)?;
    println!("wrote {n} samples (d = {}) to {}", task.d, out.display());
    Ok(())
}

/// `link`.
fn describe_link(spec: &str, degree: usize, json: bool) -> Result<()> {
    let description = link::parse("link", spec)?.describe(degree)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&description).expect("json")
        );
    } else {
        print::link(&description);
    }
    Ok(())
}

/// `sweep`.
fn run_sweep(
    grid: &Path,
    out: &Path,
    jobs: usize,
    shard: sweep::Shard,
    control: &Control,
    quiet: bool,
) -> Result<()> {
    let start = Instant::now();
    let steps = Steps::runs(quiet);
    let report = sweep::run_sweep(grid, out, jobs, shard, control, &|done, planned, id| {
        steps.run_done(done, planned, id)
    })?;
    steps.finish();
    println!(
        "shard {}/{}: {} runs, {} trained, {} resumed, {} already complete, {} failed, {} stopped, {} left to another process, in {:.1} s",
        shard.index,
        shard.count,
        report.planned,
        report.trained,
        report.resumed,
        report.skipped,
        report.failed.len(),
        report.stopped,
        report.busy.len(),
        start.elapsed().as_secs_f64()
    );
    for (id, e) in &report.failed {
        eprintln!("error: run {id}: {e}");
    }
    if !report.busy.is_empty() {
        println!(
            "left to another process writing them: {} runs ({}); run the sweep again once it is done to pick up any it did not finish",
            report.busy.len(),
            report.busy.join(", ")
        );
    }
    report.outcome(control)
}

/// `reproduce`.
fn run_reproduce(quick: bool, out: PathBuf, jobs: usize, quiet: bool) -> Result<()> {
    let start = Instant::now();
    let steps = Steps::spinner(quiet);
    let options = reproduce::Options {
        quick,
        out: out.clone(),
        jobs,
        control: Control::default(),
    };
    let claims = reproduce::reproduce(&options, &|message| steps.report(message))?;
    steps.finish();
    for c in &claims {
        let verdict = if c.held { "held  " } else { "FAILED" };
        println!("{verdict} {}: {}", c.id, c.measured);
        if let Some(why) = &c.why {
            println!("       why: {why}");
        }
    }
    let failed: Vec<&str> = claims
        .iter()
        .filter(|c| !c.held)
        .map(|c| c.id.as_str())
        .collect();
    if !failed.is_empty() {
        // A refuted claim is a result, not an error: exit 0, but say so.
        println!(
            "{} of {} claims failed ({}); {} says why for each, under \"Claims\"",
            failed.len(),
            claims.len(),
            failed.join(", "),
            out.join("report.md").display()
        );
    }
    println!(
        "wrote {} (report.md, report.html, claims.json, figures, tables) in {:.0} s",
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `bench`.
fn run_bench(
    options: &[bench::BenchOptions],
    scaling: bool,
    json: Option<&Path>,
    plot: Option<&Path>,
    quiet: bool,
) -> Result<()> {
    let progress = |message: &str| {
        if !quiet {
            eprintln!("{message}");
        }
    };
    let mut results = Vec::new();
    for one in options {
        for r in bench::bench(one, &progress)? {
            print::bench(&r);
            results.push(r);
        }
    }
    let scaling = scaling
        .then(|| bench::scaling(&options[0], &progress))
        .transpose()?;
    if let Some(s) = &scaling {
        println!(
            "scaling at d = {}: two seeds one after the other on 1 thread {:.2} s, side by side on 2 threads {:.2} s, ratio {:.2}",
            s.d, s.sequential_seconds, s.parallel_seconds, s.ratio
        );
    }
    if let Some(path) = json {
        output::write_json(
            path,
            &serde_json::json!({ "dims": results, "scaling": scaling }),
        )?;
    }
    if let Some(path) = plot {
        let svg = clustermoe::report::throughput::chart(&results).to_svg()?;
        output::write_atomic(path, svg.as_bytes())?;
    }
    Ok(())
}

/// `merge`.
fn merge(dir: &Path) -> Result<()> {
    let report = collect::merge(dir)?;
    let sweep = clustermoe::store::SweepDir::new(dir);
    println!(
        "wrote {} and {}: {} runs",
        sweep.results_csv().display(),
        sweep.results_jsonl().display(),
        report.rows
    );
    if !report.missing.is_empty() {
        eprintln!(
            "warning: {} runs of the grid are not started: {}",
            report.missing.len(),
            report.missing.join(", ")
        );
    }
    if !report.in_progress.is_empty() {
        eprintln!(
            "warning: {} runs are in progress in another process: {}",
            report.in_progress.len(),
            report.in_progress.join(", ")
        );
    }
    if !report.incomplete.is_empty() {
        eprintln!(
            "warning: {} runs are incomplete (running the sweep again redoes them):",
            report.incomplete.len()
        );
        for (id, reason) in &report.incomplete {
            eprintln!("  {id}: {reason}");
        }
    }
    Ok(())
}

/// The first SIGINT or SIGTERM sets the returned flag to its number (the
/// training loops then checkpoint and stop); a second one exits at once.
fn stop_on_signals() -> Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(
            signal,
            128 + signal,
            Arc::clone(&armed),
        )
        .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&armed)))
        .and_then(|_| {
            signal_hook::flag::register_usize(signal, Arc::clone(&stop), signal as usize)
        });
        registered.map_err(|e| Error::io("cannot handle signals", "", e))?;
    }
    Ok(stop)
}
