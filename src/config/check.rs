//! Validation of a [`Config`] into a [`ValidConfig`]: every field checked
//! once, each rejection naming the field, the value and what is allowed.
//! One pass over the whole configuration, one function per section in the
//! order of the sections (the first rejection is the one reported), as the
//! fields depend on each other (links on the task, activations on the
//! information exponent, "auto" budgets on all of them): each section takes
//! what the earlier ones resolved.

use crate::budget::{Batches, Budget, TaskShape};
use crate::config::{
    Auto, Config, Gate, Geometry, Links, LrSchedule, MetricsConfig, MoeConfig, PhaseConfig,
    RouterConfig, Schedule, TargetsConfig, TaskConfig, Training, ValidConfig, ValidPhase,
    ValidTask, VanillaConfig,
};
use crate::error::{Error, Result};
use crate::numerics::link::{self, Link};

mod capacity;
mod joint;

/// Largest dimension, batch and neuron count accepted: beyond these a run
/// could not allocate its buffers, and the user gets an error, not an abort.
const MAX_D: usize = 1 << 16;
const MAX_BATCH: usize = 1 << 20;
const MAX_UNITS: usize = 1 << 16;

/// Stuck-neuron restarts a training run may ask for.
const MAX_RESTARTS: u32 = 1000;

fn positive_count(field: &str, value: usize, max: usize) -> Result<()> {
    if value == 0 || value > max {
        return Err(Error::invalid(
            field,
            value,
            format!("an integer from 1 to {max}"),
        ));
    }
    Ok(())
}

fn finite_at_least(field: &str, value: f64, min: f64) -> Result<()> {
    if !value.is_finite() || value < min {
        return Err(Error::invalid(
            field,
            value,
            format!("a finite number >= {min}"),
        ));
    }
    Ok(())
}

fn learning_rate(field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value <= 0.0 {
        return Err(Error::invalid(field, value, "a finite number > 0"));
    }
    Ok(())
}

fn unit_interval(field: &str, value: f64, open_at_zero: bool) -> Result<()> {
    let ok = value.is_finite()
        && value <= 1.0
        && if open_at_zero {
            value > 0.0
        } else {
            value >= 0.0
        };
    if !ok {
        let range = if open_at_zero { "(0, 1]" } else { "[0, 1]" };
        return Err(Error::invalid(field, value, format!("a number in {range}")));
    }
    Ok(())
}

/// Parses an activation: "auto" is h_k* of the task; otherwise a Hermite
/// polynomial link, because the training step needs sigma and sigma' cheaply.
fn activation(field: &str, spec: &str, information_exponent: usize) -> Result<Vec<f64>> {
    if is_auto(spec) {
        return Ok(hermite_term(information_exponent));
    }
    match link::parse(field, spec)? {
        Link::Hermite(coefficients) => Ok(coefficients),
        Link::Named(_) => Err(Error::invalid(
            field,
            format!("{spec:?}"),
            "\"auto\" or a Hermite polynomial such as \"h3\", \"h3+h5\" or \"hermite:0,0,0,1\"",
        )),
    }
}

/// Whether an activation is "auto" (any case, spaces around).
fn is_auto(spec: &str) -> bool {
    spec.trim().eq_ignore_ascii_case("auto")
}

/// The normalised Hermite coefficients of h_k alone: the "auto" activation
/// of a task of information exponent k.
fn hermite_term(k: usize) -> Vec<f64> {
    let mut coefficients = vec![0.0; k + 1];
    coefficients[k] = 1.0;
    coefficients
}

/// Whether `gate` keeps `moe.top_k` experts; the other gates keep one
/// expert or all of them, whatever k is.
fn keeps_top_k(gate: Gate) -> bool {
    match gate {
        Gate::TopK | Gate::NoisyTopK => true,
        Gate::Softmax | Gate::Top1 | Gate::NoisyTop1 => false,
    }
}

/// A phase's settings, with "auto" fields taken from `auto` (steps, lr,
/// lr_end of the budget laws).
fn phase(
    name: &str,
    p: &PhaseConfig,
    information_exponent: usize,
    auto: (u64, f64, f64),
) -> Result<ValidPhase> {
    let f = |field: &str| format!("{name}.{field}");
    let steps = p.steps.or(auto.0);
    if steps == 0 || steps > u32::MAX as u64 {
        return Err(Error::invalid(
            f("steps"),
            steps,
            format!("an integer from 1 to {}", u32::MAX),
        ));
    }
    positive_count(&f("batch"), p.batch, MAX_BATCH)?;
    positive_count(&f("centre_samples"), p.centre_samples, MAX_BATCH)?;
    let schedule = schedule(
        name,
        p.lr.or(auto.1),
        p.lr_end.or(auto.2),
        p.decay_start,
        p.schedule,
    )?;
    Ok(ValidPhase {
        steps,
        batch: p.batch,
        schedule,
        centre_samples: p.centre_samples,
        activation: activation(&f("activation"), &p.activation, information_exponent)?,
        loss: p.loss,
        sign: p.sign,
        max_step: max_step(&f("max_step"), p.max_step)?,
    })
}

fn max_step(field: &str, value: f64) -> Result<f32> {
    if !value.is_finite() || value <= 0.0 || value > std::f64::consts::PI {
        return Err(Error::invalid(
            field,
            value,
            "a step length in (0, 3.14159] (the neuron turns by atan of it, about the same in radians for small values)",
        ));
    }
    Ok(value as f32)
}

fn schedule(
    name: &str,
    lr: f64,
    lr_end: f64,
    decay_start: f64,
    shape: Schedule,
) -> Result<LrSchedule> {
    learning_rate(&format!("{name}.lr"), lr)?;
    learning_rate(&format!("{name}.lr_end"), lr_end)?;
    unit_interval(&format!("{name}.decay_start"), decay_start, false)?;
    Ok(LrSchedule {
        lr,
        lr_end,
        decay_start,
        shape,
    })
}

fn checked_samples(field: &str, steps: u64, batch: usize) -> Result<u64> {
    steps.checked_mul(batch as u64).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{steps} steps x {batch} samples"),
            "a sample budget below 2^64",
        )
    })
}

/// See [`Config::check`].
pub fn check(config: &Config) -> Result<ValidConfig> {
    let (valid, within_step_limit) = resolve(config)?;
    within_step_limit?;
    Ok(valid)
}

/// See [`Config::check_to_run`].
pub fn check_to_run(config: &Config, threads: usize) -> Result<ValidConfig> {
    let (valid, within_step_limit) = resolve(config)?;
    super::memory::check(&valid, threads)?;
    within_step_limit?;
    Ok(valid)
}

/// Every field checked and resolved, beside the refusal of "auto" lengths
/// beyond the step limit, which [`check_to_run`] gives after the memory
/// check: a task too large for both hears about memory first.
fn resolve(config: &Config) -> Result<(ValidConfig, Result<()>)> {
    seed(config.seed)?;
    let task = task(&config.task)?;
    let exponents: Vec<usize> = task
        .local_links
        .iter()
        .chain(std::iter::once(&task.global_link))
        .map(|l| l.information_exponent().unwrap_or(usize::MAX))
        .collect();
    let information_exponent = *exponents.iter().min().expect("at least one link");
    let warnings = paper_assumptions(&task, &exponents);
    let m = &config.moe;
    let budget = Budget::for_task(
        &task_shape(&task, information_exponent),
        Batches {
            one: config.phase_one.batch.max(1),
            three: config.phase_three.batch.max(1),
            vanilla: config.vanilla.batch.max(1),
        },
    );
    let within_step_limit = beyond_limit(config, &budget);
    let (mut phase_one, mut phase_three) = phases(config, &budget, information_exponent)?;
    let restart_every = m.restart_every.or(budget.restart_every);
    let experts = capacity::experts(&task, m, restart_every, &budget);
    moe(m, experts.experts)?;
    let cap = targets(&config.targets)?;
    let phase_two = RouterConfig {
        steps: cap.steps(config.phase_two.steps),
        ..config.phase_two.clone()
    };
    phase_one.steps = cap.steps(phase_one.steps);
    phase_three.steps = cap.steps(phase_three.steps);
    let (ro, v) = (&config.readout, &config.vanilla);
    let (vanilla, vanilla_neurons) = vanilla(
        v,
        m,
        experts.experts,
        &phase_one,
        &budget,
        information_exponent,
    )?;
    let readout = capacity::readout(
        ro,
        &task,
        (m, experts.experts, vanilla_neurons),
        config.targets.relative_error,
    )?;
    metrics(&config.metrics)?;
    let total = sample_budget(&phase_one, &phase_two, &phase_three, readout.samples)?;
    let vanilla_steps =
        (total - readout.samples as u64 - phase_one.centre_samples as u64).div_ceil(v.batch as u64);
    let joint = joint::joint(
        &config.joint,
        m,
        task.clusters,
        information_exponent,
        total,
        &cap,
    )?;
    let mut warnings = warnings;
    warnings.extend(cap.warnings(config));
    warnings.extend(readout.warnings(config.targets.relative_error));
    let valid = ValidConfig {
        seed: config.seed,
        task,
        information_exponent,
        warnings,
        moe: m.clone(),
        experts,
        restart_every,
        budget,
        phase_one,
        phase_two,
        phase_three,
        train_samples: total - readout.samples as u64,
        readout,
        vanilla_enabled: v.enabled,
        vanilla_neurons,
        vanilla_restarts: v.restarts,
        vanilla: ValidPhase {
            steps: vanilla_steps,
            ..vanilla
        },
        metrics: config.metrics.clone(),
        config: config.clone(),
        training: m.training,
        joint,
        targets: config.targets.clone(),
    };
    Ok((valid, within_step_limit))
}

/// How `[targets]` stretches the configured lengths: by `targets.cap`
/// with `targets.until`, else not at all.
pub(super) struct Cap(Option<f64>);

impl Cap {
    /// `steps` stretched by the cap (rounded up).
    pub(super) fn steps(&self, steps: u64) -> u64 {
        match self.0 {
            Some(cap) => (steps as f64 * cap).ceil() as u64,
            None => steps,
        }
    }

    /// Stopping at targets times the dynamics only while the learning
    /// rate does not depend on the cap: a rate that decays over the
    /// stretched length moves every crossing with it.
    fn warnings(&self, config: &Config) -> Vec<String> {
        if self.0.is_none() {
            return Vec::new();
        }
        let decaying = |name: &str, schedule: Schedule| {
            (schedule != Schedule::Constant).then(|| {
                format!(
                    "targets.until: {name}.schedule = \"{}\" decays over the capped length, so the samples to reach a target depend on targets.cap; set {name}.schedule = \"constant\" to measure them",
                    format!("{schedule:?}").to_lowercase()
                )
            })
        };
        let mut out = Vec::new();
        match config.moe.training {
            Training::Staged => {
                out.extend(decaying("phase_one", config.phase_one.schedule));
                out.extend(decaying("phase_three", config.phase_three.schedule));
                if config.vanilla.enabled {
                    out.extend(decaying("vanilla", config.vanilla.schedule));
                }
            }
            Training::Joint => out.extend(decaying("joint", config.joint.schedule)),
        }
        out
    }
}

/// `[targets]`; returns how it stretches the configured lengths.
fn targets(t: &TargetsConfig) -> Result<Cap> {
    unit_interval("targets.learned_overlap", t.learned_overlap, true)?;
    if !t.relative_error.is_finite() || t.relative_error <= 0.0 {
        return Err(Error::invalid(
            "targets.relative_error",
            t.relative_error,
            "a positive number (a relative MSE: 1 is the error of predicting the mean)",
        ));
    }
    if !t.purity_margin.is_finite() || !(0.0..1.0).contains(&t.purity_margin) {
        return Err(Error::invalid(
            "targets.purity_margin",
            t.purity_margin,
            "a number in [0, 1): how far below the best linear router's purity phase II's target lies",
        ));
    }
    if !t.cap.is_finite() || !(1.0..=1000.0).contains(&t.cap) {
        return Err(Error::invalid(
            "targets.cap",
            t.cap,
            "a multiple of the configured lengths from 1 to 1000",
        ));
    }
    Ok(Cap(t.until.then_some(t.cap)))
}

/// `seed`: `config.toml` of the run is TOML, whose integers are i64
/// (`Config::seed` is any u64).
fn seed(seed: u64) -> Result<()> {
    if i64::try_from(seed).is_err() {
        return Err(Error::invalid(
            "seed",
            seed,
            format!("an integer from 0 to {}", i64::MAX),
        ));
    }
    Ok(())
}

/// `[task]`, with its signs resolved and its links parsed.
fn task(t: &TaskConfig) -> Result<ValidTask> {
    positive_count("task.d", t.d, MAX_D)?;
    positive_count("task.clusters", t.clusters, MAX_UNITS)?;
    let c = t.clusters;
    let orthonormal = match t.geometry {
        Geometry::Orthonormal => true,
        Geometry::Random => false,
    };
    if orthonormal && 2 * c + 1 > t.d {
        return Err(Error::invalid(
            "task.d",
            t.d,
            format!("at least 2C+1 = {} for orthonormal geometry with C = {c} clusters (or set task.geometry = \"random\")", 2 * c + 1),
        ));
    }
    finite_at_least("task.rho", t.rho, 0.0)?;
    finite_at_least("task.noise", t.noise, 0.0)?;
    let signs = signs(t)?;
    let local_links = local_links(t)?;
    let global_link = link::parse("task.global_link", &t.global_link)?;
    Ok(ValidTask {
        d: t.d,
        clusters: t.clusters,
        rho: t.rho,
        noise: t.noise,
        geometry: t.geometry,
        signs,
        local_links,
        global_link,
    })
}

/// `task.signs`: C finite numbers, or [`default_signs`] when none are given.
fn signs(t: &TaskConfig) -> Result<Vec<f64>> {
    let c = t.clusters;
    if t.signs.is_empty() {
        return Ok(default_signs(c));
    }
    if t.signs.len() != c {
        return Err(Error::invalid(
            "task.signs",
            format!("{:?}", t.signs),
            format!("a list of C = {c} numbers, or [] for +1,-1,+1,... centred to sum to zero"),
        ));
    }
    if let Some(bad) = t.signs.iter().find(|s| !s.is_finite()) {
        return Err(Error::invalid("task.signs", bad, "finite numbers"));
    }
    Ok(t.signs.clone())
}

/// The default s_c: +1, -1, +1, ... minus their mean, so that they sum to
/// zero for any C >= 2 as the theorem assumes (for even C the alternating
/// signs themselves; for C = 3, (2/3, -4/3, 2/3)); a single cluster keeps +1.
pub fn default_signs(clusters: usize) -> Vec<f64> {
    let alternating: Vec<f64> = (0..clusters)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    if clusters < 2 {
        return alternating;
    }
    let mean = alternating.iter().sum::<f64>() / clusters as f64;
    alternating.iter().map(|s| s - mean).collect()
}

/// `task.local_link`: one link for every cluster, or one per cluster.
fn local_links(t: &TaskConfig) -> Result<Vec<Link>> {
    let c = t.clusters;
    match &t.local_link {
        Links::One(spec) => Ok(vec![link::parse("task.local_link", spec)?; c]),
        Links::PerCluster(specs) => {
            if specs.len() != c {
                return Err(Error::invalid(
                    "task.local_link",
                    format!("{specs:?}"),
                    format!("one link, or a list of C = {c} links"),
                ));
            }
            specs
                .iter()
                .map(|s| link::parse("task.local_link", s))
                .collect()
        }
    }
}

/// `[moe]` with its `experts` resolved: sizes, the gate's k and noise, the
/// merge threshold.
fn moe(m: &MoeConfig, experts: usize) -> Result<()> {
    positive_count("moe.experts", experts, MAX_UNITS)?;
    positive_count("moe.neurons", m.neurons, MAX_UNITS)?;
    if experts * m.neurons > MAX_UNITS {
        return Err(Error::invalid(
            "moe.neurons",
            m.neurons,
            format!(
                "at most {} so that moe.experts x moe.neurons <= {MAX_UNITS}",
                MAX_UNITS / experts
            ),
        ));
    }
    // Only the top_k gates use k; other gates accept any M.
    if m.top_k == 0 || (keeps_top_k(m.gate) && m.top_k > experts) {
        return Err(Error::invalid(
            "moe.top_k",
            m.top_k,
            format!("an integer from 1 to moe.experts = {experts}"),
        ));
    }
    finite_at_least("moe.gate_noise", m.gate_noise, 0.0)?;
    unit_interval("moe.merge_threshold", m.merge_threshold, true)
}

/// The most steps a phase may take.
const STEP_LIMIT: u64 = u32::MAX as u64;

/// `[phase_one]`, `[phase_two]` and `[phase_three]`, their "auto" fields
/// from the budget laws (lengths beyond [`STEP_LIMIT`] held at it until
/// [`beyond_limit`] refuses them) (phase one's `lr_end` is its `lr`: a constant rate).
fn phases(
    config: &Config,
    budget: &Budget,
    information_exponent: usize,
) -> Result<(ValidPhase, ValidPhase)> {
    let phase_one = phase(
        "phase_one",
        &config.phase_one,
        information_exponent,
        (
            budget.phase_one_steps.min(STEP_LIMIT),
            budget.phase_one_lr,
            config.phase_one.lr.or(budget.phase_one_lr),
        ),
    )?;
    router(&config.phase_two)?;
    let phase_three = phase(
        "phase_three",
        &config.phase_three,
        information_exponent,
        (
            budget.phase_three_steps.min(STEP_LIMIT),
            budget.phase_three_lr,
            budget.phase_three_lr_end,
        ),
    )?;
    Ok((phase_one, phase_three))
}

/// Refuses a task whose "auto" lengths are beyond any step count: the
/// budget laws say how long the search takes, and a floor in its place would
/// plan a run that cannot learn.
fn beyond_limit(config: &Config, budget: &Budget) -> Result<()> {
    let limit = STEP_LIMIT;
    let refuse = |field: &str, steps: u64, recovery: f64, lr: f64| {
        let steps = if steps == u64::MAX {
            "more than 1.8e19".to_string()
        } else {
            format!("{steps:.3e}", steps = steps as f64)
        };
        Error::invalid(
            field,
            format!(
                "\"auto\" = {steps} steps: at its rate {lr:.2e} (a margin below the critical rate, which falls like d^(-k*/2)) the drift law predicts a weak recovery after {recovery:.3e} steps"
            ),
            format!(
                "at most {limit} steps; the task is beyond this tool's step counts at its d and k*: choose a smaller task.d or a lower information exponent, or set {field} and the phase's lr yourself"
            ),
        )
    };
    let phases = [
        (
            "phase_one.steps",
            config.phase_one.steps,
            budget.phase_one_steps,
            budget.phase_one_recovery_steps,
            budget.phase_one_lr,
        ),
        (
            "phase_three.steps",
            config.phase_three.steps,
            budget.phase_three_steps,
            budget.phase_three_recovery_steps,
            budget.phase_three_lr,
        ),
    ];
    for (field, given, steps, recovery, lr) in phases {
        if given == Auto::Auto && steps > limit {
            return Err(refuse(field, steps, recovery, lr));
        }
    }
    Ok(())
}

/// `[phase_two]`, the router's ascent.
fn router(r: &RouterConfig) -> Result<()> {
    if r.steps > u32::MAX as u64 {
        return Err(Error::invalid(
            "phase_two.steps",
            r.steps,
            format!("an integer from 0 to {}", u32::MAX),
        ));
    }
    positive_count("phase_two.batch", r.batch, MAX_BATCH)?;
    learning_rate("phase_two.lr", r.lr)
}

/// `[vanilla]`: its training (its steps, which the sample budget gives,
/// left at 0) and its neuron count (0: M x J, with M resolved). "auto"
/// rates are its own budget law's, and the centre samples are phase one's.
fn vanilla(
    v: &VanillaConfig,
    m: &MoeConfig,
    experts: usize,
    phase_one: &ValidPhase,
    budget: &Budget,
    information_exponent: usize,
) -> Result<(ValidPhase, usize)> {
    let neurons = if v.neurons == 0 {
        experts * m.neurons
    } else {
        v.neurons
    };
    positive_count("vanilla.neurons", neurons, MAX_UNITS)?;
    positive_count("vanilla.batch", v.batch, MAX_BATCH)?;
    if v.restarts > MAX_RESTARTS {
        return Err(Error::invalid(
            "vanilla.restarts",
            v.restarts,
            format!("an integer from 0 to {MAX_RESTARTS}"),
        ));
    }
    let phase = ValidPhase {
        steps: 0,
        batch: v.batch,
        schedule: schedule(
            "vanilla",
            v.lr.or(budget.vanilla_lr),
            v.lr_end.or(budget.vanilla_lr_end),
            v.decay_start,
            v.schedule,
        )?,
        centre_samples: phase_one.centre_samples,
        activation: activation("vanilla.activation", &v.activation, information_exponent)?,
        loss: v.loss,
        sign: v.sign,
        max_step: max_step("vanilla.max_step", v.max_step)?,
    };
    Ok((phase, neurons))
}

/// `[metrics]`.
fn metrics(mt: &MetricsConfig) -> Result<()> {
    positive_count("metrics.probe_samples", mt.probe_samples, 1 << 24)?;
    positive_count("metrics.test_samples", mt.test_samples, 1 << 24)?;
    unit_interval("metrics.recovery_threshold", mt.recovery_threshold, true)
}

/// Samples each model draws in all (training, centres and readout): below
/// 2^52, so that every count is exact in an f64.
fn sample_budget(
    phase_one: &ValidPhase,
    r: &RouterConfig,
    phase_three: &ValidPhase,
    readout_samples: usize,
) -> Result<u64> {
    let parts = [
        checked_samples("phase_one.steps", phase_one.steps, phase_one.batch)?,
        checked_samples("phase_two.steps", r.steps, r.batch)?,
        checked_samples("phase_three.steps", phase_three.steps, phase_three.batch)?,
        phase_one.centre_samples as u64,
        phase_three.centre_samples as u64,
        readout_samples as u64,
    ];
    parts
        .iter()
        .try_fold(0u64, |acc, &p| acc.checked_add(p))
        .filter(|&t| t <= 1 << 52)
        .ok_or_else(|| {
            Error::invalid(
                "phase_one.steps",
                format!("a total budget of {parts:?} samples"),
                "a total below 2^52 samples",
            )
        })
}

/// What the budget laws need of the task: the smallest leading coefficient
/// an expert must learn, the loudest local link, the global link scaled by
/// the largest |s_c|.
fn task_shape(t: &ValidTask, k: usize) -> TaskShape {
    const DEGREE: usize = 8;
    let (local, global, signs) = (&t.local_links, &t.global_link, &t.signs);
    let leading = |l: &Link| leading_coefficient(l, k);
    let gamma = leading(global);
    let beta = local
        .iter()
        .map(leading)
        .chain(signs.iter().map(|s| (s * gamma).abs()))
        .filter(|&b| b > 1e-12)
        .fold(f64::INFINITY, f64::min);
    let loudest = local
        .iter()
        .max_by(|a, b| a.variance().total_cmp(&b.variance()))
        .expect("at least one cluster");
    let s_max = signs.iter().fold(0.0f64, |m, s| m.max(s.abs()));
    TaskShape {
        d: t.d,
        clusters: t.clusters,
        k,
        beta: if beta.is_finite() { beta } else { 1.0 },
        local: loudest.hermite_coefficients(DEGREE),
        global: global
            .hermite_coefficients(DEGREE)
            .iter()
            .map(|g| g * s_max)
            .collect(),
        noise: t.noise,
    }
}

/// |coefficient of h_k| of a link.
fn leading_coefficient(link: &Link, k: usize) -> f64 {
    link.hermite_coefficients(k)
        .get(k)
        .copied()
        .unwrap_or(0.0)
        .abs()
}

/// The assumptions of the paper's theorem (docs/configuration.md, "Link
/// specifications"); a violation is a
/// warning, so users can explore outside the theorem.
fn paper_assumptions(t: &ValidTask, exponents: &[usize]) -> Vec<String> {
    let (local, global, signs) = (&t.local_links, &t.global_link, &t.signs);
    let mut warnings = Vec::new();
    let k = exponents.iter().copied().min().unwrap_or(0);
    if k < 3 {
        warnings.push(format!(
            "information exponent k* = {k} < 3: the paper assumes k* >= 3 (below it a vanilla network can detect the global direction too)"
        ));
    }
    if exponents.iter().any(|&e| e != k) {
        warnings.push(format!("links have different information exponents {exponents:?}: the paper assumes one k* for all links"));
    }
    let leading = |l: &Link| leading_coefficient(l, k);
    let gamma = leading(global);
    if local
        .iter()
        .any(|l| (leading(l) - gamma).abs() > 1e-9 * gamma.max(1.0))
    {
        warnings.push(format!(
            "|beta_c,k*| differ from |gamma_k*| = {gamma:.4}: the paper assumes equal leading coefficients"
        ));
    }
    let sum: f64 = signs.iter().sum();
    if sum.abs() > 1e-12 {
        warnings.push(format!(
            "sum of task.signs is {sum}: the paper assumes sum_c s_c = 0 (otherwise the global task is visible to a vanilla network)"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::Error;

    fn rejects(text: &str, field: &str) {
        let result = Config::from_toml(text).and_then(|c| c.check().map(|_| ()));
        match result {
            Err(e @ (Error::Invalid { .. } | Error::UnknownField { .. } | Error::Parse { .. })) => {
                assert!(
                    e.to_string().contains(field),
                    "{text:?}: {e} does not name {field}"
                );
                assert_eq!(e.exit_status(), 2);
            }
            other => panic!("{text:?} was not rejected: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_within_the_budget() {
        let valid = Config::default().check().unwrap();
        assert!(valid.warnings.is_empty(), "{:?}", valid.warnings);
        assert_eq!(valid.information_exponent, 3);
        assert_eq!(valid.task.signs, vec![1.0, -1.0]);
        assert!(valid.total_samples() <= 3_000_000);
        assert_eq!(valid.vanilla_neurons, valid.experts() * valid.moe.neurons);
    }

    #[test]
    fn a_section_given_in_part_keeps_its_own_defaults() {
        let c = Config::from_toml("[phase_three]\nloss = \"squared\"\n").unwrap();
        assert_eq!(c.phase_three.steps, Config::default().phase_three.steps);
        assert_eq!(c.phase_three.lr_end, Config::default().phase_three.lr_end);
        let c = Config::from_toml_with_overrides(
            "[task]\nd = 64\n",
            &["task.rho=2.5".into(), "moe.gate=softmax".into()],
        )
        .unwrap();
        assert_eq!((c.task.d, c.task.rho, c.task.clusters), (64, 2.5, 2));
        assert_eq!(c.moe.gate, crate::config::Gate::Softmax);
    }

    #[test]
    fn every_rejection_names_its_field() {
        rejects("[task]\nsigns = [1.0]\n", "task.signs");
        rejects("[task]\nlocal_link = [\"h3\"]\n", "task.local_link");
        rejects("[task]\nlocal_link = \"wiggle\"\n", "task.local_link");
        rejects("[task]\nnoise = -1.0\n", "task.noise");
        rejects("[task]\nclusters = 20\n", "task.d");
        rejects("[moe]\ngate = \"top_k\"\ntop_k = 9\n", "moe.top_k");
        rejects("[moe]\ntop_k = 0\n", "moe.top_k");
        rejects("[moe]\nmerge_threshold = 0.0\n", "moe.merge_threshold");
        rejects("[moe]\nneurons = 0\n", "moe.neurons");
        rejects("[phase_one]\nbatch = 0\n", "phase_one.batch");
        rejects("[phase_one]\ndecay_start = 1.5\n", "phase_one.decay_start");
        rejects(
            "[phase_one]\nactivation = \"relu\"\n",
            "phase_one.activation",
        );
        rejects("[phase_three]\nlr_end = inf\n", "phase_three.lr_end");
        rejects("[phase_two]\nlr = 0.0\n", "phase_two.lr");
        rejects("[readout]\nsamples = 0\n", "readout.samples");
        rejects("[readout]\nbiases = 100000\n", "readout.biases");
        rejects("[vanilla]\nneurons = 100000\n", "vanilla.neurons");
        rejects("[vanilla]\nrestarts = 5000\n", "vanilla.restarts");
        rejects("[phase_three]\nmax_step = 0.0\n", "phase_three.max_step");
        rejects("[vanilla]\nmax_step = 4.0\n", "vanilla.max_step");
        rejects(
            "[metrics]\nrecovery_threshold = 2.0\n",
            "metrics.recovery_threshold",
        );
        rejects("[metrics]\ntest_samples = 0\n", "metrics.test_samples");
        rejects("[phase_three]\nsteps = 0\n", "phase_three.steps");
        rejects("[moe]\nexpert = 3\n", "did you mean `moe.experts`");
        rejects(
            "[phase_one]\nlearning_rate = 0.1\n",
            "phase_one.learning_rate",
        );
        rejects("[tsak]\nd = 3\n", "did you mean `task`");
        rejects("[moe]\ntraining = \"together\"\n", "training");
        rejects("[joint]\noptimizer = \"lbfgs\"\n", "optimizer");
        rejects("[joint]\nlr = 0.0\n", "joint.lr");
        rejects("[joint]\nbeta2 = 1.0\n", "joint.beta2");
        rejects("[joint]\nmomentum = -0.1\n", "joint.momentum");
        rejects("[joint]\neps = 0.0\n", "joint.eps");
        rejects("[joint]\nbatch = 0\n", "joint.batch");
        rejects("[joint]\nsteps = 0\n", "joint.steps");
        rejects("[joint]\nlambda_bal = -1.0\n", "joint.lambda_bal");
        rejects("[joint]\nlambda_z = nan\n", "joint.lambda_z");
        rejects("[joint]\nactivation = \"sign\"\n", "joint.activation");
        rejects("[joint]\ninit_first = 0.0\n", "joint.init_first");
        rejects("[joint]\nlearning_rate = 0.1\n", "joint.learning_rate");
        rejects("[joint]\nlr_ned = 0.1\n", "did you mean `joint.lr_end`");
        rejects("seed = -1\n", "seed");
        let huge_seed = Config {
            seed: u64::MAX,
            ..Config::default()
        };
        let e = huge_seed.check().unwrap_err();
        assert!(e.to_string().contains("`seed`"), "{e}");
    }

    /// A default configuration's `config.toml` has neither `moe.training`
    /// nor `[joint]` (staged runs' files stay as they were); a joint one
    /// reads back the same, and "auto" steps give the staged budget.
    #[test]
    fn joint_fields_are_known_and_left_out_while_default() {
        let text = Config::default().to_toml();
        assert!(
            !text.contains("training") && !text.contains("[joint]"),
            "{text}"
        );
        let c = Config::from_toml_with_overrides(
            "",
            &["moe.training=joint".into(), "joint.lr=0.01".into()],
        )
        .unwrap();
        assert_eq!(c.moe.training, crate::config::Training::Joint);
        let again = Config::from_toml(&c.to_toml()).unwrap();
        assert_eq!(again, c);
        let valid = c.check().unwrap();
        assert_eq!(valid.joint.samples, valid.total_samples());
        assert!(valid.joint.steps * 64 + 4096 >= valid.total_samples());
    }

    #[test]
    fn assumptions_of_the_theorem_are_warnings_not_errors() {
        let c = Config::from_toml("[task]\nlocal_link = \"relu\"\nsigns = [1.0, 1.0]\n").unwrap();
        let valid = c.check().unwrap();
        let all = valid.warnings.join("\n");
        assert_eq!(valid.information_exponent, 1);
        assert!(all.contains("k* = 1 < 3"), "{all}");
        assert!(all.contains("different information exponents"), "{all}");
        assert!(all.contains("sum_c s_c = 0"), "{all}");
    }

    /// Only task fields set: the sizes, rates and lengths follow the task.
    #[test]
    fn defaults_follow_the_task() {
        let valid = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Config::from_toml_with_overrides("", &sets)
                .unwrap()
                .check()
                .unwrap()
        };
        // Odd C: the default signs sum to zero, so no warning.
        let three = valid(&["task.clusters=3"]);
        assert!(three.task.signs.iter().sum::<f64>().abs() < 1e-12);
        assert!(three.task.signs.iter().all(|s| s.abs() > 0.5));
        assert!(three.warnings.is_empty(), "{:?}", three.warnings);
        // More clusters, more experts; the default task keeps 8.
        assert_eq!(valid(&[]).experts(), 8);
        let eight = valid(&["task.clusters=8"]);
        assert!(eight.experts() > 8 && eight.experts.p_all_found >= 0.99);
        assert_eq!(valid(&["task.clusters=8", "moe.experts=8"]).experts(), 8);
        // A degree-5 link: a wider readout on more samples.
        let h5 = valid(&["task.local_link=h5", "task.global_link=h5"]);
        assert!(h5.readout.samples > 40_000 && h5.readout.moe.bias_max > 3.0);
        assert!(h5.readout.moe.predicted_error <= 0.02);
        // The vanilla network's rates follow its own law: below phase III's
        // where it sees more noise.
        let d256 = valid(&["task.d=256", "task.local_link=h4", "task.global_link=h4"]);
        assert!(d256.vanilla.schedule.lr < d256.phase_three.schedule.lr);
    }

    /// A budget beyond any step count is refused with its reason, never
    /// replaced by a floor.
    #[test]
    fn budgets_beyond_the_step_limit_are_refused() {
        let sets = |d: usize, k: usize| -> Vec<String> {
            vec![
                format!("task.d={d}"),
                format!("task.local_link=h{k}"),
                format!("task.global_link=h{k}"),
            ]
        };
        for (d, k) in [(2048, 4), (512, 5)] {
            let e = Config::from_toml_with_overrides("", &sets(d, k))
                .unwrap()
                .check()
                .unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("phase_one.steps") && text.contains("auto"),
                "{text}"
            );
            assert!(text.contains("weak recovery"), "{text}");
            assert_eq!(e.exit_status(), 2);
        }
        // Where the steps fit, phase III's plan can recover: its rate is
        // below its own critical rate.
        let valid = Config::from_toml_with_overrides("", &sets(1024, 4))
            .unwrap()
            .check()
            .unwrap();
        let b = valid.budget();
        assert!(b.phase_three_recovery_steps.is_finite());
        assert!(b.phase_three_steps as f64 >= 21.0 * b.phase_three_recovery_steps);
    }
}
