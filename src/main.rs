//! The `clustermoe` command line: parses flags, calls the library, prints.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::{Parser, Subcommand};
use clustermoe::config::Config;
use clustermoe::error::{Error, Result};
use clustermoe::experiment::Summary;
use clustermoe::numerics::{link, rng};
use clustermoe::phase::{ModelKind, Phase};
use clustermoe::store::{checkpoint, output};
use clustermoe::sweep::collect;
use clustermoe::train::Monitor;
use clustermoe::{bench, reproduce, sweep, task::Task};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Mixtures of Experts vs two-layer networks on tasks with latent cluster
/// structure (Kawata et al., ICML 2025): train, generate data, inspect links.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the MoE (phases I-IV) and the vanilla network on the same
    /// sample budget, evaluate both, and write a run directory.
    ///
    /// SIGINT (Ctrl-C) or SIGTERM (what Slurm sends before pre-emption) stops
    /// the run after a checkpoint; continue it with `--resume DIR`. A second
    /// signal ends the process at once.
    Run {
        /// TOML file whose fields override the defaults (see `clustermoe defaults`).
        #[arg(conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Seed of every random stream (overrides the config's `seed`).
        #[arg(long, conflicts_with = "resume")]
        seed: Option<u64>,
        /// Output directory [default: runs/seed<SEED>]. Reused only if empty or a previous run.
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Override one field, e.g. `--set task.d=64 --set moe.gate=softmax` (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE", conflicts_with = "resume")]
        sets: Vec<String>,
        /// Save each model's complete state every N steps of a phase (and when
        /// trained), so a killed run can be resumed; a resumed run keeps the N it
        /// was started with unless given another.
        #[arg(long, value_name = "N")]
        checkpoint_every: Option<u64>,
        /// Continue the run in DIR from its checkpoints; the result is the same,
        /// byte for byte, as a run never interrupted.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Draw samples of the task and write them with its ground truth to an .npz file
    /// (arrays x, y, c, v, w, wg, s).
    Generate {
        /// TOML file whose `task` (and `seed`) fields are used.
        config: Option<PathBuf>,
        /// Number of samples.
        #[arg(long)]
        n: usize,
        /// Seed (overrides the config's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Output .npz file.
        #[arg(long)]
        out: PathBuf,
        /// Override one field (repeatable), as for `run`.
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
    },
    /// Normalised Hermite coefficients, information exponent and variance of a link.
    ///
    /// SPEC is a name (relu, tanh, abs, sign, sigmoid, h3, hermite4, ...), a sum of
    /// Hermite terms joined by + or - (h3-0.5*h5, -h4), `hermite:c0,c1,...` or
    /// `monomial:c0,c1,...`.
    Link {
        #[arg(allow_hyphen_values = true)]
        spec: String,
        /// Highest degree of the coefficients printed.
        #[arg(long, default_value_t = 8)]
        degree: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the full default configuration (every field) as TOML.
    Defaults,
    /// Run every point of a grid of configurations (see README, "Sweeps"):
    /// DIR/runs/<id>/ per run, resumable, shardable, in parallel.
    Sweep {
        /// Grid file (TOML: base, seeds, [set], [grid]).
        grid: PathBuf,
        /// Sweep directory.
        #[arg(long)]
        out: PathBuf,
        /// Runs at a time [default: all cores].
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only part I of N (I from 0). Without it, a Slurm job array's
        /// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (minus SLURM_ARRAY_TASK_MIN) are used.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Checkpoint every run every N steps of a phase. SIGINT or SIGTERM stops
        /// the sweep after checkpointing the runs in progress; the same command
        /// again resumes them and skips the complete ones.
        #[arg(long, value_name = "N")]
        checkpoint_every: Option<u64>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Reproduce the paper's claims: experiments E1 to E5 (E1 on five task families) through sweeps, then
    /// DIR/report.md, DIR/report.html, figures (.svg), tables (.csv) and DIR/claims.json.
    /// Resumable: runs already complete under DIR/sweeps are reused.
    Reproduce {
        /// Fewer seeds and smaller grids (about a minute on 2 cores).
        #[arg(long)]
        quick: bool,
        /// Output directory.
        #[arg(long, default_value = "reproduction")]
        out: PathBuf,
        /// Runs at a time [default: all cores].
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Measure throughput: the algorithm end to end at each dimension, samples
    /// per second of every phase, wall time and peak memory, beside the limit
    /// of this machine (a step's Gaussians plus its two matrix products).
    ///
    /// Example, the large case: `clustermoe bench --d 256 --set moe.neurons=64`.
    Bench {
        /// TOML file whose fields override the defaults (its `task.d` is replaced by --d).
        config: Option<PathBuf>,
        /// Input dimensions, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "32")]
        d: Vec<usize>,
        /// Override one field (repeatable), as for `run`.
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
        /// Multiply the steps of phases I-III (the vanilla budget follows), e.g. 10 to
        /// check that memory does not grow with the number of steps.
        #[arg(long, default_value_t = 1.0)]
        steps_scale: f64,
        /// Threads: 1 times each phase alone; 2 trains the two models side by side.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Also time two seeds one after the other on one thread, then side by side on two.
        #[arg(long)]
        scaling: bool,
        /// Write the measurements as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write a chart of samples per second against d (SVG).
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Gather every complete run of a sweep into DIR/results.csv and DIR/results.jsonl.
    Merge {
        /// Sweep directory.
        dir: PathBuf,
    },
}

fn load_config(path: Option<&Path>, sets: &[String], seed: Option<u64>) -> Result<Config> {
    let mut config = match path {
        Some(p) => Config::from_file_with_overrides(p, sets)?,
        None => Config::from_toml_with_overrides("", sets)?,
    };
    if let Some(s) = seed {
        config.seed = s;
    }
    Ok(config)
}

/// Progress bars on a terminal, one plain line per phase otherwise.
struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<ModelKind, ProgressBar>>)>,
    quiet: bool,
}

impl Monitor for Progress {
    fn phase(&self, model: ModelKind, phase: Phase, steps: u64) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((multi, bars)) => {
                let mut bars = bars.lock().expect("progress lock");
                if let Some(old) = bars.remove(&model) {
                    old.finish_and_clear();
                }
                let bar = multi.add(ProgressBar::new(steps));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>8} {msg:<12} [{bar:30}] {pos}/{len} steps {elapsed}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(model.name());
                bar.set_message(phase.name());
                bars.insert(model, bar);
            }
            None => eprintln!("{model}: {phase} ({steps} steps)"),
        }
    }

    fn advance(&self, model: ModelKind, steps: u64) {
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.lock().expect("progress lock").get(&model) {
                bar.inc(steps);
            }
        }
    }
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Progress { bars, quiet }
    }

    fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.lock().expect("progress lock").values() {
                bar.finish_and_clear();
            }
        }
    }
}

fn fmt_list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_summary(s: &Summary) {
    println!(
        "{:<8} {:>12} {:>16} {:>16} {:>10}",
        "model", "test_rel_mse", "local_overlap", "global_overlap", "samples"
    );
    let m = &s.moe.model;
    println!(
        "{:<8} {:>12.4} {:>16} {:>16} {:>10}",
        "moe",
        m.error.test_rel_mse,
        fmt_list(&m.local_overlap_per_cluster),
        fmt_list(&m.global_overlap_per_cluster),
        s.samples.moe
    );
    if let (Some(v), Some(n)) = (&s.vanilla, s.samples.vanilla) {
        println!(
            "{:<8} {:>12.4} {:>16} {:>16} {:>10}",
            "vanilla",
            v.error.test_rel_mse,
            fmt_list(&v.local_overlap_per_cluster),
            fmt_list(&v.global_overlap_per_cluster),
            n
        );
    }
    let best = s
        .best_linear_router_purity
        .map_or(String::new(), |b| format!(" (best linear router {b:.4})"));
    println!(
        "routing purity {:.4}{best}, var(y) {:.4}",
        s.moe.routing_purity, s.var_y
    );
}

/// One table per dimension: every phase against the limit.
fn print_bench(r: &bench::DimBench) {
    println!(
        "d = {}, {} thread{}: {:.2} s for both models ({} samples each); sampler {:.2} ns per normal (rand_distr {:.2} ns, generator {:.2} ns per 64 bits); peak memory {}",
        r.d,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.wall_seconds,
        r.samples_per_model,
        r.gaussian_ns,
        r.rand_distr_ns,
        r.generator_ns,
        r.peak_rss_bytes
            .map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64)),
    );
    println!(
        "{:<8} {:<12} {:>7} {:>6} {:>5} {:>10} {:>9} {:>13} {:>10} {:>10} {:>6}",
        "model",
        "phase",
        "steps",
        "batch",
        "N",
        "samples",
        "seconds",
        "samples/s",
        "us/step",
        "limit us",
        "ratio"
    );
    for p in &r.phases {
        println!(
            "{:<8} {:<12} {:>7} {:>6} {:>5} {:>10} {:>9.3} {:>13.0} {:>10} {:>10} {:>6}",
            p.model,
            p.phase,
            p.steps,
            p.batch,
            p.width,
            p.samples,
            p.seconds,
            p.samples_per_second,
            if p.width > 0 {
                format!("{:.1}", p.step_seconds * 1e6)
            } else {
                "-".into()
            },
            p.limit_step_seconds
                .map_or("-".into(), |l| format!("{:.1}", l * 1e6)),
            p.ratio_to_limit.map_or("-".into(), |x| format!("{x:.2}")),
        );
    }
    println!(
        "test relative MSE: MoE {:.3}, vanilla {}",
        r.moe_rel_mse,
        r.vanilla_rel_mse.map_or("-".into(), |v| format!("{v:.3}"))
    );
}

/// `--checkpoint-every`: at least 1.
fn checked_every(every: Option<u64>) -> Result<Option<u64>> {
    match every {
        Some(0) => Err(Error::invalid(
            "--checkpoint-every",
            0,
            "a number of steps >= 1",
        )),
        other => Ok(other),
    }
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

/// Where a model's checkpoint stands, for the resume message.
fn describe(position: Option<checkpoint::Position>) -> String {
    match position {
        None => "no checkpoint: starts over".into(),
        Some(None) => "trained".into(),
        Some(Some((phase, step))) => format!("resumes in {phase} after step {step}"),
    }
}

fn jobs_or_all(jobs: Option<usize>) -> Result<usize> {
    match jobs {
        Some(0) => Err(Error::invalid("--jobs", 0, "an integer >= 1")),
        Some(j) => Ok(j),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            seed,
            out,
            sets,
            checkpoint_every,
            resume,
            quiet,
        } => {
            let control = checkpoint::Control {
                checkpoint_every: checked_every(checkpoint_every)?,
                stop: Some(stop_on_signals()?),
            };
            let start = Instant::now();
            let (dir, result) = match resume {
                Some(dir) => {
                    let (valid, state) = checkpoint::inspect(&dir)?;
                    if let checkpoint::Progress::Resumable(models) = &state {
                        if !quiet {
                            for (model, position) in models {
                                eprintln!("{model}: {}", describe(*position));
                            }
                        }
                    }
                    for w in &valid.warnings {
                        eprintln!("warning: {w}");
                    }
                    let progress = Progress::new(quiet);
                    let result = checkpoint::resume(&dir, &progress, &control);
                    progress.finish();
                    match result {
                        Ok(None) => {
                            println!("{} is already complete", dir.display());
                            return Ok(());
                        }
                        other => (dir, other.map(|o| o.expect("not complete"))),
                    }
                }
                None => {
                    let valid = load_config(config.as_deref(), &sets, seed)?.check()?;
                    for w in &valid.warnings {
                        eprintln!("warning: {w}");
                    }
                    if !quiet {
                        eprintln!("{}", valid.resolved_budget().describe());
                    }
                    let dir =
                        out.unwrap_or_else(|| PathBuf::from(format!("runs/seed{}", valid.seed)));
                    let progress = Progress::new(quiet);
                    let result = checkpoint::run_to_dir(&valid, &dir, &progress, &control);
                    progress.finish();
                    (dir, result)
                }
            };
            let out = result.map_err(|e| match e {
                Error::Interrupted { .. } => {
                    eprintln!("continue with: clustermoe run --resume {}", dir.display());
                    e
                }
                e => e,
            })?;
            print_summary(&out.summary);
            println!(
                "wrote {} in {:.2} s",
                dir.display(),
                start.elapsed().as_secs_f64()
            );
        }
        Command::Generate {
            config,
            n,
            seed,
            out,
            sets,
        } => {
            if n == 0 || n > 1 << 28 {
                return Err(Error::invalid(
                    "--n",
                    n,
                    format!("an integer from 1 to {}", 1u64 << 28),
                ));
            }
            let valid = load_config(config.as_deref(), &sets, seed)?.check()?;
            let task = Task::new(&valid, &mut rng::stream(valid.seed, rng::StreamId::Task));
            let data = task.sample(n, &mut rng::stream(valid.seed, rng::StreamId::Generate));
            output::write_dataset(&out, &task, &data)?;
            println!("wrote {n} samples (d = {}) to {}", task.d, out.display());
        }
        Command::Link { spec, degree, json } => {
            if degree > 30 {
                return Err(Error::invalid(
                    "--degree",
                    degree,
                    "an integer from 0 to 30",
                ));
            }
            let l = link::parse("link", &spec)?;
            let coefficients = l.hermite_coefficients(degree);
            if json {
                let value = serde_json::json!({
                    "link": l.to_string(),
                    "hermite_coefficients": coefficients,
                    "information_exponent": l.information_exponent(),
                    "degree": l.degree(),
                    "mean": l.mean(),
                    "variance": l.variance(),
                });
                println!("{}", serde_json::to_string_pretty(&value).expect("json"));
            } else {
                println!("link                 {l}");
                let ie = l
                    .information_exponent()
                    .map_or("none (constant)".into(), |k| k.to_string());
                println!("information exponent {ie}");
                let deg = l
                    .degree()
                    .map_or("infinite (not a polynomial)".into(), |k| k.to_string());
                println!("degree               {deg}");
                println!("mean                 {:.6}", l.mean());
                println!("variance             {:.6}", l.variance());
                println!("normalised Hermite coefficients (f = sum_i c_i h_i):");
                for (i, &c) in coefficients.iter().enumerate() {
                    // Parity zeros print as 0, not -0.
                    let c = if c.abs() < 5e-7 { 0.0 } else { c };
                    println!("  c_{i:<2} = {c:>12.6}");
                }
            }
        }
        Command::Defaults => print!("{}", Config::default().to_toml()),
        Command::Sweep {
            grid,
            out,
            jobs,
            shard,
            checkpoint_every,
            quiet,
        } => {
            let control = checkpoint::Control {
                checkpoint_every: checked_every(checkpoint_every)?,
                stop: Some(stop_on_signals()?),
            };
            let shard = match shard {
                Some(s) => sweep::Shard::parse(&s)?,
                None => {
                    sweep::Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(sweep::Shard::ALL)
                }
            };
            let jobs = jobs_or_all(jobs)?;
            let start = Instant::now();
            let bar = (!quiet && std::io::stderr().is_terminal()).then(ProgressBar::no_length);
            if let Some(bar) = &bar {
                bar.set_style(
                    ProgressStyle::with_template(
                        "sweep [{bar:30}] {pos}/{len} runs {elapsed} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
            }
            let report = sweep::run_sweep(
                &grid,
                &out,
                jobs,
                shard,
                &control,
                &|done, planned, id| match &bar {
                    Some(bar) => {
                        bar.set_length(planned as u64);
                        bar.set_position(done as u64);
                        bar.set_message(id.to_string());
                    }
                    None if !quiet => eprintln!("run {done}/{planned}: {id}"),
                    None => {}
                },
            )?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            println!(
                "shard {}/{}: {} runs, {} trained, {} resumed, {} already complete, {} failed, {} stopped, in {:.1} s",
                shard.index,
                shard.count,
                report.planned,
                report.trained,
                report.resumed,
                report.skipped,
                report.failed.len(),
                report.stopped,
                start.elapsed().as_secs_f64()
            );
            for (id, e) in &report.failed {
                eprintln!("error: run {id}: {e}");
            }
            if let Some(signal) = control.stop_signal() {
                return Err(Error::SweepStopped {
                    signal,
                    unfinished: report.stopped,
                });
            }
            if !report.failed.is_empty() {
                return Err(Error::RunsFailed {
                    failed: report.failed.len(),
                    planned: report.planned,
                });
            }
        }
        Command::Reproduce {
            quick,
            out,
            jobs,
            quiet,
        } => {
            let start = Instant::now();
            let bar = (!quiet && std::io::stderr().is_terminal()).then(ProgressBar::new_spinner);
            let claims = reproduce::reproduce(
                &reproduce::Options {
                    quick,
                    out: out.clone(),
                    jobs: jobs_or_all(jobs)?,
                },
                &|message| match &bar {
                    Some(bar) => {
                        bar.set_message(message.to_string());
                        bar.tick();
                    }
                    None if !quiet => eprintln!("{message}"),
                    None => {}
                },
            )?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            for c in &claims {
                println!(
                    "{} {}: {}",
                    if c.held { "held  " } else { "FAILED" },
                    c.id,
                    c.measured
                );
            }
            println!(
                "wrote {} (report.md, report.html, claims.json, figures, tables) in {:.0} s",
                out.display(),
                start.elapsed().as_secs_f64()
            );
        }
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
            let options = bench::BenchOptions {
                config: load_config(config.as_deref(), &sets, None)?,
                dims: d,
                steps_scale,
                threads,
            };
            let progress = |message: &str| {
                if !quiet {
                    eprintln!("{message}");
                }
            };
            let results = bench::bench(&options, &progress)?;
            for r in &results {
                print_bench(r);
            }
            let scaling = scaling
                .then(|| bench::scaling(&options, &progress))
                .transpose()?;
            if let Some(s) = &scaling {
                println!(
                    "scaling at d = {}: two seeds one after the other on 1 thread {:.2} s, side by side on 2 threads {:.2} s, ratio {:.2}",
                    s.d, s.sequential_seconds, s.parallel_seconds, s.ratio
                );
            }
            if let Some(path) = json {
                output::write_json(
                    &path,
                    &serde_json::json!({ "dims": results, "scaling": scaling }),
                )?;
            }
            if let Some(path) = plot {
                let svg = clustermoe::report::throughput::chart(&results).to_svg()?;
                output::write_atomic(&path, svg.as_bytes())?;
            }
        }
        Command::Merge { dir } => {
            let report = collect::merge(&dir)?;
            println!(
                "wrote {} and {}: {} runs",
                dir.join("results.csv").display(),
                dir.join("results.jsonl").display(),
                report.rows
            );
            if !report.missing.is_empty() {
                eprintln!(
                    "warning: {} runs of the grid are not complete: {}",
                    report.missing.len(),
                    report.missing.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_status() as u8)
        }
    }
}
