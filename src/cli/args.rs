//! The flags of every command, with their help texts.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use clustermoe::config::Config;
use clustermoe::error::{Error, Result, RunOption};

/// Mixtures of Experts vs two-layer networks on tasks with latent cluster
/// structure (Kawata et al., ICML 2025): train, generate data, inspect links.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Stop each model, and each phase of the staged MoE, as soon as its
        /// probes show it learned (every cluster's w*_c and w*_g overlap >= 0.9;
        /// joint training also relative error <= 0.2), or after CAP times its
        /// configured length [default CAP: 4]. It reads the ground truth: for
        /// measuring samples to learn. Same as `--set targets.until=true
        /// --set targets.cap=CAP`.
        #[arg(
            long,
            value_name = "CAP",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "4",
            conflicts_with = "resume"
        )]
        until: Option<f64>,
        /// Save each model's complete state every N steps of a phase (and when
        /// trained), so a killed run can be resumed; a resumed run keeps the N it
        /// was started with unless given another.
        #[arg(long, value_name = "N")]
        checkpoint_every: Option<u64>,
        /// Continue the run in DIR from its checkpoints; the result is the same,
        /// byte for byte, as a run never interrupted.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Threads of the run, 1 to 1024 [default: all cores]: the MoE beside
        /// the vanilla network, phase III's experts side by side, and large
        /// matrix products (d >= 256 or so) split in blocks. The results are
        /// the same, byte for byte, for every number of threads.
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
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
    /// LINK is a name (relu, tanh, abs, sign, sigmoid, h3, hermite4, ...), a sum of
    /// Hermite terms joined by + or - (h3-0.5*h5, -h4), `hermite:c0,c1,...` or
    /// `monomial:c0,c1,...`.
    Link {
        #[arg(value_name = "LINK", allow_hyphen_values = true)]
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
    /// Run every point of a grid of configurations (see docs/runs-and-sweeps.md):
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
    /// Reproduce the paper's claims: experiments E1 to E7 (E1 on five task families, E6 joint training, E7 samples to learn against d) through sweeps, then
    /// DIR/report.md, DIR/report.html, figures (.svg), tables (.csv) and DIR/claims.json.
    /// Resumable: runs already complete under DIR/sweeps are reused.
    Reproduce {
        /// Fewer seeds and smaller grids (a few minutes on 2 cores).
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
        /// Threads of the run, as for `run` (1 to 1024), comma-separated to
        /// measure each d at several counts (e.g. 1,2): 1 times each phase
        /// alone; more train the two models side by side and split phase III's
        /// experts and the large products among them. The limit is one thread's.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        threads: Vec<usize>,
        /// Also time two seeds one after the other on one thread, then side by side on two.
        #[arg(long)]
        scaling: bool,
        /// Write the measurements as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write a chart of samples per second against d (SVG): every phase at
        /// the first thread count, and the whole run at each thread count.
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

/// The configuration of `--config`, `--set` and `--seed`, in that order.
pub fn load_config(path: Option<&Path>, sets: &[String], seed: Option<u64>) -> Result<Config> {
    let mut config = match path {
        Some(p) => Config::from_file_with_overrides(p, sets)?,
        None => Config::from_toml_with_overrides("", sets)?,
    };
    if let Some(s) = seed {
        config.seed = s;
    }
    Ok(config)
}

/// `--checkpoint-every`: at least 1.
pub fn checked_every(every: Option<u64>) -> Result<Option<u64>> {
    match every {
        Some(0) => Err(Error::invalid(
            "--checkpoint-every",
            0,
            "a number of steps >= 1",
        )),
        other => Ok(other),
    }
}

/// The flag that gives each option of the library, as the library's
/// messages are printed (`out` is `--out`).
pub fn flag(option: RunOption) -> &'static str {
    match option {
        RunOption::Out => "--out",
        RunOption::Set => "--set",
        RunOption::Threads => "--threads",
        RunOption::Jobs => "--jobs",
        RunOption::Shard => "--shard",
        RunOption::Dims => "--d",
        RunOption::StepsScale => "--steps-scale",
    }
}

/// `--jobs`: at least 1, all cores by default.
pub fn jobs_or_all(jobs: Option<usize>) -> Result<usize> {
    match jobs {
        Some(0) => Err(Error::invalid("--jobs", 0, "an integer >= 1")),
        Some(j) => Ok(j),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}
