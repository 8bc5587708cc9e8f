//! Throughput of the algorithm, phase by phase, beside the machine's limit.
//!
//! A training step draws a B x d batch of Gaussians and does two (B x d) by
//! (d x N) products (pre-activations, then the gradient); everything else
//! is O(B N + N d). The *limit* of a phase is the time of exactly that work
//! on this machine, measured with the same sampler (the f32 ziggurat of
//! `numerics::normal` on xoshiro256++) and the same matrix product (`faer`,
//! through `numerics::linalg::matmul`) at the phase's shapes; a phase's
//! ratio to the limit says how much the rest of the step costs. N is the
//! number of directions the phase trains: M experts in phase I, the K routed
//! experts in phase II, all M J neurons in phase III (split among the
//! experts, which only makes the real work smaller), and the vanilla
//! network's neurons. This module measures; the chart of `bench --plot` is
//! drawn by `report::throughput` (feature `report`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::Array2;

use crate::numerics::linalg::matmul;
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;

use crate::config::{Config, Training, ValidConfig};
use crate::error::{Error, Result, RunOption};
use crate::experiment::{Experiment, Models};
use crate::numerics::normal::{self, Simd};
use crate::numerics::rng::{stream, Stream, StreamId};
use crate::phase::{ModelKind, Phase};
use crate::train::Monitor;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The configuration run at every dimension (its `task.d` is replaced).
    pub config: Config,
    /// Input dimensions d.
    pub dims: Vec<usize>,
    /// Multiplies the steps of phases I, II and III (the vanilla budget follows).
    pub steps_scale: f64,
    /// Threads of the run (1 to [`crate::threads::MAX_THREADS`]): 1 times
    /// every phase alone; more train the MoE and the vanilla network side by
    /// side, phase III's experts in parallel and split the large products,
    /// as `clustermoe run --threads` does. The limit is measured on one thread.
    pub threads: usize,
}

/// One phase of one model.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseBench {
    /// The model trained.
    pub model: ModelKind,
    /// The phase timed.
    pub phase: Phase,
    /// Steps the phase reported (SGD steps for a training phase).
    pub steps: u64,
    /// Minibatch size B of a step; 0 for the readout.
    pub batch: usize,
    /// Directions trained (N); 0 for the readout.
    pub width: usize,
    /// Samples the phase drew.
    pub samples: u64,
    /// Wall-clock seconds of the phase.
    pub seconds: f64,
    /// `samples / seconds`.
    pub samples_per_second: f64,
    /// Seconds a step of the limit takes (Gaussians plus two products); None for the readout.
    pub limit_step_seconds: Option<f64>,
    /// Seconds a step took.
    pub step_seconds: f64,
    /// Phase time over the limit's time.
    pub ratio_to_limit: Option<f64>,
}

/// Everything measured at one dimension.
#[derive(Clone, Debug, Serialize)]
pub struct DimBench {
    /// Input dimension d.
    pub d: usize,
    /// Threads of the run ([`BenchOptions::threads`]).
    pub threads: usize,
    /// Both models, training and evaluation.
    pub wall_seconds: f64,
    /// The samples of both models (one without the vanilla network) over
    /// the wall time: the whole run's throughput.
    pub run_samples_per_second: f64,
    /// Samples each model saw (training and readout).
    pub samples_per_model: u64,
    /// Every phase of both models, in the order they started.
    pub phases: Vec<PhaseBench>,
    /// Seconds from the run's start to its first training phase: the
    /// task, the test set and the first model's input map (centre and
    /// whitening), which do not grow with the steps.
    pub setup_seconds: f64,
    /// Seconds of the run during which no phase ran: the set-up, the
    /// input maps and phase III's centres, the summaries.
    pub outside_phases_seconds: f64,
    /// The whole run's wall time at full length, from this one: the
    /// training phases' time divided by [`BenchOptions::steps_scale`] (the
    /// longer model's with several threads, the sum of both on one), the
    /// set-up, readouts and evaluation as measured.
    pub full_run_seconds: f64,
    /// Nanoseconds per standard normal of the sampler, through the fastest
    /// path of this machine.
    pub gaussian_ns: f64,
    /// That path: "AVX-512", "AVX2" or "scalar".
    pub gaussian_path: &'static str,
    /// Nanoseconds per standard normal of the sampler's scalar path (same numbers).
    pub scalar_gaussian_ns: f64,
    /// Nanoseconds per standard normal of `rand_distr`'s `StandardNormal`
    /// (f32), the sampler a Rust user would reach for first.
    pub rand_distr_ns: f64,
    /// Nanoseconds per 64 random bits of one lane of the generator alone.
    pub generator_ns: f64,
    /// The MoE's relative test MSE (the run's result, beside its speed).
    pub moe_rel_mse: f64,
    /// The vanilla network's relative test MSE; None when it is disabled.
    pub vanilla_rel_mse: Option<f64>,
    /// Peak resident memory of the process so far (Linux only).
    pub peak_rss_bytes: Option<u64>,
}

/// Two seeds one after the other on one thread, then side by side on two.
#[derive(Clone, Debug, Serialize)]
pub struct ScalingBench {
    /// Input dimension d (the first of [`BenchOptions::dims`]).
    pub d: usize,
    /// Wall-clock seconds of the two runs one after the other on one thread.
    pub sequential_seconds: f64,
    /// Wall-clock seconds of the two runs side by side on two threads.
    pub parallel_seconds: f64,
    /// parallel / sequential: 0.5 is perfect scaling on two cores.
    pub ratio: f64,
}

/// One phase as the training loops report it: when it started and when it
/// last reported progress (its last step).
struct Span {
    model: ModelKind,
    phase: Phase,
    steps: u64,
    start: Instant,
    end: Instant,
}

/// Records every phase's span from the training loops' monitor calls.
#[derive(Default)]
struct Timeline {
    spans: Mutex<Vec<Span>>,
}

impl Monitor for Timeline {
    fn phase(&self, model: ModelKind, phase: Phase, steps: u64) {
        let now = Instant::now();
        self.spans.lock().expect("timeline lock").push(Span {
            model,
            phase,
            steps,
            start: now,
            end: now,
        });
    }

    fn advance(&self, model: ModelKind, _steps: u64) {
        let mut spans = self.spans.lock().expect("timeline lock");
        if let Some(span) = spans.iter_mut().rev().find(|s| s.model == model) {
            span.end = Instant::now();
        }
    }
}

/// Seconds during which at least one of `spans` ran.
fn covered_seconds(spans: &[Span]) -> f64 {
    let mut intervals: Vec<(Instant, Instant)> = spans.iter().map(|s| (s.start, s.end)).collect();
    intervals.sort_by_key(|&(start, _)| start);
    let mut covered = 0.0;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                covered += (e - s).as_secs_f64();
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    covered + current.map_or(0.0, |(s, e)| (e - s).as_secs_f64())
}

/// Seconds per call of `f`: the fastest of several blocks of calls, each
/// block long enough (10 ms) for the clock to be exact. The fastest block
/// is what the machine can do; slower ones measured someone else's load.
fn seconds_per_call(mut f: impl FnMut()) -> f64 {
    f();
    let mut calls = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            f();
        }
        if start.elapsed() >= Duration::from_millis(10) || calls >= 1 << 24 {
            break;
        }
        calls *= 2;
    }
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Seconds to fill `n` standard normals with the sampler of the task.
fn gaussian_seconds(n: usize) -> f64 {
    fill_seconds(n, normal::fill)
}

/// Seconds to fill `n` standard normals through the sampler's scalar path.
fn scalar_gaussian_seconds(n: usize) -> f64 {
    fill_seconds(n, |rng, out| normal::fill_with(Simd::Scalar, rng, out))
}

/// Seconds to fill `n` standard normals with `rand_distr`'s `StandardNormal`.
fn rand_distr_seconds(n: usize) -> f64 {
    fill_seconds(n, |rng, buffer| {
        buffer
            .iter_mut()
            .for_each(|v| *v = rng.sample(StandardNormal))
    })
}

/// Seconds for `fill` to fill a buffer of `n` floats from a fresh stream.
fn fill_seconds(n: usize, mut fill: impl FnMut(&mut Stream, &mut [f32])) -> f64 {
    let mut rng = stream(0, StreamId::Generate);
    let mut buffer = vec![0.0f32; n];
    seconds_per_call(|| {
        fill(&mut rng, &mut buffer);
        std::hint::black_box(&buffer);
    })
}

/// Seconds for 2^16 raw 64-bit draws of the generator.
fn generator_seconds() -> f64 {
    let mut rng = stream(0, StreamId::Generate);
    seconds_per_call(|| {
        let mut acc = 0u64;
        for _ in 0..1 << 16 {
            acc = acc.wrapping_add(rng.next_u64());
        }
        std::hint::black_box(acc);
    })
}

/// Seconds for a step's two products: (B x d)(d x N) and (N x B)(B x d).
fn products_seconds(batch: usize, d: usize, width: usize) -> f64 {
    let x = Array2::<f32>::from_shape_fn((batch, d), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
    let w = Array2::<f32>::from_shape_fn((width, d), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.01);
    let mut pre = Array2::<f32>::zeros((batch, width));
    let mut grad = Array2::<f32>::zeros((width, d));
    seconds_per_call(|| {
        matmul(&mut pre.view_mut(), &x.view(), &w.t(), 1.0, false);
        matmul(&mut grad.view_mut(), &pre.t(), &x.view(), 1.0, false);
        std::hint::black_box(&grad);
    })
}

/// Seconds of one step of the limit: B d Gaussians and the two products.
fn limit_step_seconds(batch: usize, d: usize, width: usize) -> f64 {
    gaussian_seconds(batch * d) + products_seconds(batch, d, width)
}

/// A run's measured time over its limit's, about: the second performance
/// round measured 2.4 to 4.8 at d = 32 and 1 to 3 at d >= 512.
const RUN_OVER_LIMIT: f64 = 3.0;

/// How long a run of `cfg` should take on this machine with `threads`
/// threads, for planning (within a factor of about two): each training
/// phase's steps times its limit step, measured here on one thread, times
/// [`RUN_OVER_LIMIT`]; the MoE beside the vanilla network when there are
/// two threads or more. It measures for about a second; `clustermoe bench`
/// measures a run itself.
pub fn estimate_seconds(cfg: &ValidConfig, threads: usize) -> f64 {
    let d = cfg.task().d;
    let at = |steps: u64, batch: usize, width: usize| {
        steps as f64 * limit_step_seconds(batch, d, width.max(1)) * RUN_OVER_LIMIT
    };
    let (moe, vanilla) = match cfg.training() {
        Training::Staged => {
            let (p1, p3) = (cfg.phase_one(), cfg.phase_three());
            let moe = at(p1.steps, p1.batch, cfg.experts())
                + at(cfg.phase_two().steps, cfg.phase_two().batch, cfg.experts())
                + at(p3.steps, p3.batch, cfg.experts() * cfg.moe().neurons);
            let vanilla = cfg
                .vanilla()
                .map_or(0.0, |v| at(v.steps, v.batch, cfg.vanilla_neurons()));
            (moe, vanilla)
        }
        Training::Joint => {
            let j = cfg.joint();
            let moe = at(j.steps, j.batch, cfg.experts() * cfg.moe().neurons);
            let vanilla = cfg
                .vanilla()
                .map_or(0.0, |_| at(j.steps, j.batch, cfg.vanilla_neurons()));
            (moe, vanilla)
        }
    };
    if threads >= 2 {
        moe.max(vanilla)
    } else {
        moe + vanilla
    }
}

/// Peak resident memory of this process (VmHWM), where the system says.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn check(options: &BenchOptions) -> Result<()> {
    if options.dims.is_empty() {
        return Err(Error::invalid_option(
            RunOption::Dims,
            "(none)",
            "at least one dimension",
        ));
    }
    if !(options.steps_scale.is_finite() && options.steps_scale > 0.0) {
        return Err(Error::invalid_option(
            RunOption::StepsScale,
            options.steps_scale,
            "a finite number > 0",
        ));
    }
    crate::threads::check(options.threads)?;
    Ok(())
}

/// The configuration at dimension `d` with scaled phase lengths.
fn config_at(options: &BenchOptions, d: usize) -> Config {
    let mut config = options.config.clone();
    config.task.d = d;
    let scale = |steps: u64| ((steps as f64 * options.steps_scale).round() as u64).max(1);
    // "auto" lengths scale from what the budget laws choose at this d.
    if let Ok(valid) = config.check() {
        config.moe.experts = valid.experts().into();
        config.phase_one.steps = scale(valid.phase_one.steps).into();
        config.phase_three.steps = scale(valid.phase_three.steps).into();
    }
    config.phase_two.steps = scale(config.phase_two.steps);
    config
}

fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    crate::threads::pool(threads)
}

/// Runs the configuration at every dimension and times each phase, then
/// measures the limit of each phase at its shapes and the sampler's speed;
/// `progress` hears what it is doing. Results are per dimension, in the
/// order of [`BenchOptions::dims`]. A bad option (no dimension, a scale
/// that is not a finite number > 0, a thread count out of range) is an
/// error that names it.
///
/// ```
/// use clustermoe::bench::{bench, BenchOptions};
///
/// let mut config = clustermoe::Config::default();
/// config.readout.samples = 2_000.into();
/// config.metrics.test_samples = 500;
/// let options = BenchOptions { config, dims: vec![8], steps_scale: 0.02, threads: 1 };
/// let results = bench(&options, &|message| eprintln!("{message}"))?;
/// let phase_one = &results[0].phases[0];
/// assert_eq!(phase_one.samples, phase_one.steps * phase_one.batch as u64);
/// assert!(phase_one.ratio_to_limit.unwrap() > 0.0);
/// # Ok::<(), clustermoe::Error>(())
/// ```
pub fn bench(options: &BenchOptions, progress: &dyn Fn(&str)) -> Result<Vec<DimBench>> {
    check(options)?;
    let pool = thread_pool(options.threads)?;
    // The limit is one thread's: its products are not split.
    let one = thread_pool(1)?;
    let mut out = Vec::new();
    for &d in &options.dims {
        let cfg = config_at(options, d).check()?;
        progress(&format!("d = {d}: training both models"));
        let timeline = Timeline::default();
        let start = Instant::now();
        let result = pool.install(|| Experiment::new(&cfg).monitor(&timeline).run())?;
        let wall_seconds = start.elapsed().as_secs_f64();
        progress(&format!("d = {d}: measuring the limit"));
        let spans = timeline.spans.into_inner().expect("timeline lock");
        let mut phases = Vec::new();
        for &Span {
            model,
            phase,
            steps,
            start,
            end,
        } in &spans
        {
            let seconds = (end - start).as_secs_f64();
            let (batch, width, samples) = match (model, phase) {
                (ModelKind::Moe, Phase::PhaseOne) => (
                    cfg.phase_one.batch,
                    cfg.experts(),
                    steps * cfg.phase_one.batch as u64,
                ),
                (ModelKind::Moe, Phase::PhaseTwo) => (
                    cfg.phase_two.batch,
                    match &result.models {
                        Models::Staged { moe, .. } => moe.experts.len(),
                        Models::Joint { .. } => 0,
                    },
                    steps * cfg.phase_two.batch as u64,
                ),
                (ModelKind::Moe, Phase::PhaseThree) => (
                    cfg.phase_three.batch,
                    cfg.experts() * cfg.moe.neurons,
                    steps * cfg.phase_three.batch as u64,
                ),
                (ModelKind::Vanilla, Phase::Train) => (
                    cfg.vanilla.batch,
                    cfg.vanilla_neurons,
                    cfg.train_samples - cfg.vanilla.centre_samples as u64,
                ),
                (_, Phase::Joint) => (
                    cfg.joint.batch,
                    match model {
                        ModelKind::Moe => cfg.experts() * cfg.moe.neurons,
                        ModelKind::Vanilla => cfg.vanilla_neurons,
                    },
                    steps * cfg.joint.batch as u64,
                ),
                // The readouts and the evaluation: no per-step limit.
                (_, Phase::PhaseFour | Phase::Readout | Phase::Test)
                | (ModelKind::Moe, Phase::Train)
                | (ModelKind::Vanilla, _) => (0, 0, cfg.readout.samples as u64),
            };
            let limit = (width > 0).then(|| one.install(|| limit_step_seconds(batch, d, width)));
            let step_seconds = seconds / steps.max(1) as f64;
            phases.push(PhaseBench {
                model,
                phase,
                steps,
                batch,
                width,
                samples,
                seconds,
                samples_per_second: samples as f64 / seconds,
                limit_step_seconds: limit,
                step_seconds,
                ratio_to_limit: limit.map(|l| step_seconds / l),
            });
        }
        let setup_seconds = spans
            .iter()
            .map(|s| (s.start - start).as_secs_f64())
            .fold(wall_seconds, f64::min);
        let training = |model: ModelKind| -> f64 {
            phases
                .iter()
                .filter(|p| p.model == model && p.width > 0)
                .map(|p| p.seconds)
                .sum()
        };
        let (moe, vanilla) = (training(ModelKind::Moe), training(ModelKind::Vanilla));
        let critical = if options.threads > 1 {
            moe.max(vanilla)
        } else {
            moe + vanilla
        };
        out.push(DimBench {
            d,
            setup_seconds,
            outside_phases_seconds: wall_seconds - covered_seconds(&spans),
            full_run_seconds: wall_seconds + critical * (1.0 / options.steps_scale - 1.0),
            threads: options.threads,
            wall_seconds,
            run_samples_per_second: (result.summary.samples.moe
                + result.summary.samples.vanilla.unwrap_or(0))
                as f64
                / wall_seconds,
            samples_per_model: result.summary.samples.moe,
            phases,
            gaussian_ns: gaussian_seconds(1 << 16) / (1u64 << 16) as f64 * 1e9,
            gaussian_path: Simd::detected().name(),
            scalar_gaussian_ns: scalar_gaussian_seconds(1 << 16) / (1u64 << 16) as f64 * 1e9,
            rand_distr_ns: rand_distr_seconds(1 << 16) / (1u64 << 16) as f64 * 1e9,
            generator_ns: generator_seconds() / (1u64 << 16) as f64 * 1e9,
            moe_rel_mse: result.summary.moe.model.error.test_rel_mse,
            vanilla_rel_mse: result
                .summary
                .vanilla
                .as_ref()
                .map(|v| v.error.test_rel_mse),
            peak_rss_bytes: peak_rss_bytes(),
        });
    }
    Ok(out)
}

/// Times seeds 1 and 2 one after the other on one thread, then side by side
/// on two threads (what a sweep with `--jobs 2` does), at the first dimension.
pub fn scaling(options: &BenchOptions, progress: &dyn Fn(&str)) -> Result<ScalingBench> {
    check(options)?;
    let d = options.dims[0];
    let configs = [1u64, 2]
        .map(|seed| {
            let mut config = config_at(options, d);
            config.seed = seed;
            config.check()
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let run_one = |cfg: &crate::config::ValidConfig| Experiment::new(cfg).run().map(|_| ());
    progress("scaling: two seeds one after the other on one thread");
    let start = Instant::now();
    thread_pool(1)?.install(|| configs.iter().try_for_each(run_one))?;
    let sequential_seconds = start.elapsed().as_secs_f64();
    progress("scaling: two seeds side by side on two threads");
    let start = Instant::now();
    thread_pool(2)?.install(|| configs.par_iter().try_for_each(run_one))?;
    let parallel_seconds = start.elapsed().as_secs_f64();
    Ok(ScalingBench {
        d,
        sequential_seconds,
        parallel_seconds,
        ratio: parallel_seconds / sequential_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_name_the_option() {
        let base = BenchOptions {
            config: Config::default(),
            dims: vec![32],
            steps_scale: 1.0,
            threads: 1,
        };
        for (options, option) in [
            (
                BenchOptions {
                    dims: vec![],
                    ..base.clone()
                },
                "`d`",
            ),
            (
                BenchOptions {
                    steps_scale: f64::NAN,
                    ..base.clone()
                },
                "`steps_scale`",
            ),
            (
                BenchOptions {
                    threads: 0,
                    ..base.clone()
                },
                "`threads`",
            ),
        ] {
            let err = bench(&options, &|_| {}).unwrap_err();
            assert!(err.to_string().contains(option), "{err}");
            assert_eq!(err.exit_status(), 2);
        }
    }

    #[test]
    fn phases_are_timed_and_counted() {
        let mut config = Config::default();
        config.metrics.test_samples = 500;
        config.readout.samples = 2000.into();
        let options = BenchOptions {
            config,
            dims: vec![8],
            steps_scale: 0.02,
            threads: 1,
        };
        let out = bench(&options, &|_| {}).unwrap();
        let names: Vec<(ModelKind, Phase)> =
            out[0].phases.iter().map(|p| (p.model, p.phase)).collect();
        use {ModelKind::*, Phase::*};
        let expected = [
            (Moe, PhaseOne),
            (Moe, PhaseTwo),
            (Moe, PhaseThree),
            (Moe, PhaseFour),
            (Vanilla, Train),
            (Vanilla, Readout),
        ];
        assert_eq!(names, expected);
        let one = &out[0].phases[0];
        assert_eq!((one.steps, one.batch, one.width), (160, 64, 8));
        assert_eq!(one.samples, 160 * 64);
        // The phases' samples, the two centre estimates (4096 each for the
        // MoE, 4096 for the vanilla network) and the readout make the budget.
        let total = out[0].samples_per_model;
        let sum = |model: ModelKind| -> u64 {
            out[0]
                .phases
                .iter()
                .filter(|p| p.model == model && p.width > 0)
                .map(|p| p.samples)
                .sum()
        };
        assert_eq!(sum(Moe) + 2 * 4096 + 2000, total);
        assert_eq!(sum(Vanilla) + 4096 + 2000, total);
        assert!(out[0].phases.iter().all(|p| p.seconds > 0.0));
        // The set-up lies outside every phase, within the run; at 2 % of
        // the steps the whole run is longer than this one.
        let r = &out[0];
        assert!(0.0 < r.setup_seconds && r.setup_seconds <= r.outside_phases_seconds);
        assert!(r.outside_phases_seconds < r.wall_seconds);
        assert!(r.full_run_seconds > r.wall_seconds);
        assert!(out[0]
            .phases
            .iter()
            .filter(|p| p.width > 0)
            .all(|p| p.ratio_to_limit.unwrap() > 0.0));
    }
}
