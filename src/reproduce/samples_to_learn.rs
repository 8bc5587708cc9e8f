//! E7 Sample complexity against d: the samples each of four models needs
//! to learn the task (every cluster's w*_c and w*_g overlap >= 0.9; for
//! the jointly trained models also relative error <= 0.2), measured by the
//! probes of every run with `targets.until` (each model, and each staged
//! phase, stops at its target), over d and seeds; the exponent of d fitted
//! over seeds with a bootstrap interval, censored runs as lower bounds.
//!
//! The hypotheses were written here before the first full run, and each is
//! reported held or not with its numbers: the staged MoE's exponent lies
//! within 0.5 of k* - 1; the staged vanilla network is censored at every
//! d; the jointly trained vanilla network's exponent exceeds the jointly
//! trained MoE's (the separation grows with d).

use serde_json::{json, Value};

use super::runs::{run_seeds, Runs};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::stats::{fit_exponent, percentile_interval, round4, ExponentFit, Observed};
use super::{Claim, Options, Section, Table};
use crate::error::Result;
use crate::metrics::samples_to::{Crossing, SamplesTo};
use crate::report::figure::{Chart, Mark, Series};
use crate::results::Summary;

/// Each phase and model trains at most this many times its configured
/// length before its target counts as not reached.
const CAP: f64 = 2.0;
/// Phase lengths at d = 32 (steps), scaled by (d/32)^(k*-1) like the
/// samples online SGD needs; with the cap, the staged vanilla network
/// trains 2 x (these + phase II) x 64 samples.
const PHASE_ONE_STEPS: f64 = 8000.0;
const PHASE_THREE_STEPS: f64 = 12000.0;
/// Joint training's rate (Adam), the same for both models and every d.
const JOINT_LR: f64 = 0.001;
/// Joint training's configured steps: the staged budget, but at least
/// this many (the jointly trained models' error target takes over a
/// million samples at every d, more than the staged budget at small d).
const JOINT_MIN_STEPS: u64 = 60_000;
/// The bootstrap's resamples and seed.
const RESAMPLES: usize = 2000;
const BOOTSTRAP_SEED: u64 = 7;
/// The staged MoE's exponent lies within this of k* - 1.
const EXPONENT_BAR: f64 = 0.5;

/// The rate rule of the staged models, stated up front: phase I, phase III
/// and the vanilla network at lr(d) = 0.003 (32/d)^(k*/2), constant, the
/// scaling under which online SGD needs about d^(k*-1) samples
/// (docs/theory.md); it never depends on the cap.
fn staged_rate(k: usize, d: usize) -> f64 {
    0.003 * (32.0 / d as f64).powf(k as f64 / 2.0)
}

/// The four models E7 measures, in the order of its tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    StagedMoe,
    StagedVanilla,
    JointMoe,
    JointVanilla,
}

impl Model {
    const ALL: [Model; 4] = [
        Model::StagedMoe,
        Model::StagedVanilla,
        Model::JointMoe,
        Model::JointVanilla,
    ];

    fn key(self) -> &'static str {
        match self {
            Model::StagedMoe => "staged_moe",
            Model::StagedVanilla => "staged_vanilla",
            Model::JointMoe => "joint_moe",
            Model::JointVanilla => "joint_vanilla",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Model::StagedMoe => "staged MoE",
            Model::StagedVanilla => "staged vanilla",
            Model::JointMoe => "joint MoE (matched capacity)",
            Model::JointVanilla => "joint vanilla",
        }
    }

    /// Its `samples_to` in a run of its training.
    fn samples_to(self, s: &Summary) -> Option<&SamplesTo> {
        match self {
            Model::StagedMoe | Model::JointMoe => Some(&s.moe.model.samples_to),
            Model::StagedVanilla | Model::JointVanilla => s.vanilla.as_ref().map(|v| &v.samples_to),
        }
    }
}

/// The dimensions of one k*, per mode.
fn cases(opts: &Options) -> Vec<(usize, Vec<usize>)> {
    if opts.quick {
        vec![(3, vec![16, 24, 32, 48])]
    } else {
        vec![
            (3, vec![16, 24, 32, 48, 64, 96, 128]),
            (4, vec![16, 24, 32, 48, 64]),
        ]
    }
}

/// What both trainings of a point share: the task at (k*, d), the phase
/// lengths (the joint runs' "auto" budget is the staged one), stopping at
/// the targets, and a lighter evaluation (samples to learn are the
/// measure; the test error is only reported).
fn common_sets(k: usize, d: usize) -> Vec<(&'static str, Value)> {
    let link = format!("h{k}");
    let scale = (d as f64 / 32.0).powi(k as i32 - 1);
    vec![
        ("task.d", json!(d)),
        ("task.local_link", json!(link)),
        ("task.global_link", json!(link)),
        (
            "phase_one.steps",
            json!((PHASE_ONE_STEPS * scale).ceil() as u64),
        ),
        (
            "phase_three.steps",
            json!((PHASE_THREE_STEPS * scale).ceil() as u64),
        ),
        ("targets.until", json!(true)),
        ("targets.cap", json!(CAP)),
        ("readout.samples", json!(20_000)),
        ("metrics.test_samples", json!(4000)),
        ("metrics.log_every", json!(0)),
    ]
}

/// The staged run: the rate rule for phases I and III and the vanilla
/// network, constant; restarts off (their spacing is the budget laws',
/// made for other rates).
fn staged_sets(k: usize, d: usize) -> Vec<(&'static str, Value)> {
    let lr = staged_rate(k, d);
    let mut sets = common_sets(k, d);
    sets.extend([
        ("moe.restart_every", json!(0)),
        ("phase_one.lr", json!(lr)),
        ("phase_one.lr_end", json!(lr)),
        ("phase_three.lr", json!(lr)),
        ("phase_three.lr_end", json!(lr)),
        ("phase_three.schedule", json!("constant")),
        ("vanilla.lr", json!(lr)),
        ("vanilla.lr_end", json!(lr)),
        ("vanilla.schedule", json!("constant")),
    ]);
    sets
}

/// The joint run at matched capacity: C = 2 experts of 32 neurons, as many
/// as the vanilla network's 64 (the default top-1 gate with balancing uses
/// every expert), both trained by Adam at a constant rate, for the staged
/// budget or [`JOINT_MIN_STEPS`], whichever is longer (times the cap).
fn joint_sets(k: usize, d: usize) -> Vec<(&'static str, Value)> {
    let scale = (d as f64 / 32.0).powi(k as i32 - 1);
    let staged_steps = ((PHASE_ONE_STEPS + PHASE_THREE_STEPS) * scale).ceil() as u64 + 3000;
    let mut sets = common_sets(k, d);
    sets.extend([
        ("joint.steps", json!(staged_steps.max(JOINT_MIN_STEPS))),
        ("moe.training", json!("joint")),
        ("moe.experts", json!(2)),
        ("moe.neurons", json!(32)),
        ("vanilla.neurons", json!(64)),
        ("joint.lr", json!(JOINT_LR)),
        ("joint.lr_end", json!(JOINT_LR)),
        ("joint.schedule", json!("constant")),
    ]);
    sets
}

/// E7: samples to learn against d for the four models.
pub(super) fn samples_to_learn(
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Section> {
    let seeds = opts.seeds(4, 8);
    let mut section = Section {
        title: "E7 Sample complexity: samples to learn against d".into(),
        ..Section::default()
    };
    let mut text = vec![intro(seeds)];
    let mut exponents = Table::new(
        "e7_exponents",
        &[
            "k",
            "model",
            "exponent",
            "ci95_low",
            "ci95_high",
            "lower_bound",
            "censored",
            "runs",
        ],
    );
    for (k, ds) in cases(opts) {
        let mut points = Points::new(k);
        for &d in &ds {
            let staged = run_seeds(
                opts,
                &format!("e7_k{k}_d{d}_staged"),
                seeds,
                &staged_sets(k, d),
                &[],
                progress,
            )?;
            let joint = run_seeds(
                opts,
                &format!("e7_k{k}_d{d}_joint"),
                seeds,
                &joint_sets(k, d),
                &[],
                progress,
            )?;
            points.add(d, &staged, &joint);
        }
        let (fits, strong) = points.fits();
        for (model, fit) in Model::ALL.iter().zip(&fits) {
            exponents.rows.push(exponent_row(k, *model, "learned", fit));
        }
        for (model, fit) in [Model::JointMoe, Model::JointVanilla].iter().zip(&strong) {
            exponents.rows.push(exponent_row(k, *model, "strong", fit));
        }
        text.push(points.summary_line(&fits, &strong));
        section.claims.extend(points.claims(&fits));
        section.figures.push(points.figure(&fits, &ds));
        section.tables.push(points.table);
    }
    section.tables.push(exponents);
    section.text = text.join("\n");
    Ok(section)
}

/// What E7 runs and how it counts, for the report.
fn intro(seeds: i64) -> String {
    format!(
        "{seeds} seeds per d. Every run stops each model (and each staged phase) at its target, or after {CAP} times \
         its configured length (`targets.until`, an oracle schedule for measurement): the staged MoE's samples to learn \
         are then what phases I, II and III needed, not the budget laws' lengths. Learned: every cluster's w*_c and \
         w*_g overlap (best over the neurons serving it) at least 0.9, and for the jointly trained models also the \
         probe's relative error at most 0.2. Rates do not depend on the cap: the staged MoE's phases I and III and the \
         staged vanilla network train at lr(d) = 0.003 (32/d)^(k*/2), constant (restarts off); both jointly trained \
         models by Adam at {JOINT_LR}, constant. The joint MoE has matched capacity: C = 2 experts of 32 neurons, as \
         many as the vanilla network's 64. The exponent of d is the least-squares slope of ln(median samples) against \
         ln d, with a 95 % interval from {RESAMPLES} bootstrap resamples of the seeds at each d; a run that did not \
         learn is censored (a lower bound), ranks above every run that did, and a d whose median is censored makes \
         the slope a lower bound (docs/reproducing.md)."
    )
}

/// One k*'s runs: per model, (d, samples to learn) per run, and the table.
struct Points {
    k: usize,
    /// Per model (in `Model::ALL` order), one observation per run.
    learned: [Vec<(f64, Observed)>; 4],
    /// The same for the directions alone (`strong`): the joint models'
    /// `learned` also waits for the error target.
    strong: [Vec<(f64, Observed)>; 4],
    table: Table,
}

/// A crossing as an observation: reached, or censored at its bound.
fn observed(c: &Crossing) -> Observed {
    match c.samples() {
        Some(n) => Observed::Reached(n as f64),
        None => Observed::Censored(c.bound() as f64),
    }
}

fn cell(c: &Crossing) -> String {
    match c.samples() {
        Some(n) => n.to_string(),
        None => format!("not within {}", c.bound()),
    }
}

impl Points {
    fn new(k: usize) -> Self {
        Points {
            k,
            learned: Default::default(),
            strong: Default::default(),
            table: Table::new(
                format!("e7_k{k}"),
                &[
                    "d",
                    "seed",
                    "model",
                    "learned",
                    "strong",
                    "error",
                    "trained",
                    "test_rel_mse",
                ],
            ),
        }
    }

    /// The staged and joint runs at dimension `d`.
    fn add(&mut self, d: usize, staged: &Runs, joint: &Runs) {
        for (i, model) in Model::ALL.into_iter().enumerate() {
            let runs = match model {
                Model::StagedMoe | Model::StagedVanilla => staged,
                Model::JointMoe | Model::JointVanilla => joint,
            };
            for run in &runs.rows {
                let s = &run.summary;
                let Some(st) = model.samples_to(s) else {
                    continue;
                };
                self.learned[i].push((d as f64, observed(&st.learned)));
                self.strong[i].push((d as f64, observed(&st.strong)));
                let error = match model {
                    Model::StagedMoe => s.moe.model.error.test_rel_mse,
                    Model::JointMoe => s.moe.model.error.test_rel_mse,
                    _ => s
                        .vanilla
                        .as_ref()
                        .map_or(f64::NAN, |v| v.error.test_rel_mse),
                };
                self.table.rows.push(vec![
                    d.to_string(),
                    s.seed.to_string(),
                    model.key().into(),
                    cell(&st.learned),
                    cell(&st.strong),
                    st.error.as_ref().map_or(String::new(), cell),
                    st.trained.to_string(),
                    format!("{error:.4}"),
                ]);
            }
        }
    }

    /// The exponent of each model's `learned` target, in `Model::ALL`
    /// order, and of the joint models' `strong` target.
    fn fits(&self) -> (Vec<ExponentFit>, [ExponentFit; 2]) {
        let fit = |p: &Vec<(f64, Observed)>| fit_exponent(p, RESAMPLES, BOOTSTRAP_SEED);
        let strong = [fit(&self.strong[2]), fit(&self.strong[3])];
        (self.learned.iter().map(fit).collect(), strong)
    }

    /// The section's line for this k*.
    fn summary_line(&self, fits: &[ExponentFit], strong: &[ExponentFit; 2]) -> String {
        let each: Vec<String> = Model::ALL
            .iter()
            .zip(fits)
            .map(|(m, f)| format!("{} {}", m.label(), describe(f)))
            .collect();
        format!(
            "* k* = {}: exponents of d: {}. The directions alone (overlap 0.9, without the error target): \
             joint MoE {}; joint vanilla {}.",
            self.k,
            each.join("; "),
            describe(&strong[0]),
            describe(&strong[1])
        )
    }
}

/// "2.31 (95 % interval 2.05 to 2.60)", with "at least" for a lower bound.
fn describe(f: &ExponentFit) -> String {
    if f.slope.is_nan() {
        return "not fitted".into();
    }
    let bound = if f.lower_bound { "at least " } else { "" };
    let interval = match (f.ci95.0.is_finite(), f.ci95.1.is_finite()) {
        (true, true) => format!("95 % interval {:.2} to {:.2}", f.ci95.0, f.ci95.1),
        (true, false) => format!("95 % interval {:.2} to unbounded", f.ci95.0),
        _ => "no interval: a median is censored in most resamples".into(),
    };
    format!(
        "{bound}{:.2} ({interval}; {} of {} runs censored)",
        f.slope, f.censored, f.total
    )
}

fn exponent_row(k: usize, model: Model, target: &str, f: &ExponentFit) -> Vec<String> {
    vec![
        k.to_string(),
        model.key().into(),
        target.into(),
        format!("{:.4}", f.slope),
        format!("{:.4}", f.ci95.0),
        format!("{:.4}", f.ci95.1),
        f.lower_bound.to_string(),
        f.censored.to_string(),
        f.total.to_string(),
    ]
}

/// An exponent as JSON: the estimate, its interval (null for an unbounded
/// end) and how censoring entered.
fn fit_json(f: &ExponentFit) -> Value {
    let end = |v: f64| {
        if v.is_finite() {
            json!(round4(v))
        } else {
            Value::Null
        }
    };
    json!({
        "exponent": end(f.slope),
        "ci95": [end(f.ci95.0), end(f.ci95.1)],
        "lower_bound": f.lower_bound,
        "censored": f.censored,
        "runs": f.total,
    })
}

impl Points {
    /// The three hypotheses, for this k*.
    fn claims(&self, fits: &[ExponentFit]) -> Vec<Claim> {
        let k = self.k;
        let (moe, vanilla) = (&fits[0], &fits[1]);
        let target = (k - 1) as f64;
        let moe_held = !moe.lower_bound && (moe.slope - target).abs() <= EXPONENT_BAR;
        let staged_moe = Claim::new(
            format!("E7.k{k}.staged_moe"),
            format!(
                "the staged MoE's samples to learn grow like d^s with s within {EXPONENT_BAR} of k* - 1 = {target}"
            ),
            fit_json(moe),
            moe_held,
            || format!("exponent {}, not within {EXPONENT_BAR} of {target}", describe(moe)),
        );
        let censored_everywhere = vanilla.censored == vanilla.total && vanilla.total > 0;
        let staged_vanilla = Claim::new(
            format!("E7.k{k}.staged_vanilla"),
            format!("the staged vanilla network does not learn within {CAP} times the staged budget at any d (every run censored)"),
            fit_json(vanilla),
            censored_everywhere,
            || {
                let learned: Vec<String> = self.learned[1]
                    .iter()
                    .filter_map(|(d, o)| match o {
                        Observed::Reached(n) => Some(format!("d = {d}: {n}")),
                        Observed::Censored(_) => None,
                    })
                    .collect();
                format!(
                    "{} of {} runs learned ({})",
                    vanilla.total - vanilla.censored,
                    vanilla.total,
                    learned.join(", ")
                )
            },
        );
        [staged_moe, staged_vanilla, self.separation_claim(fits)].into()
    }

    /// The jointly trained vanilla network's exponent exceeds the jointly
    /// trained MoE's: the paired bootstrap interval of the difference lies
    /// above 0.
    fn separation_claim(&self, fits: &[ExponentFit]) -> Claim {
        let k = self.k;
        let (moe, vanilla) = (&fits[2], &fits[3]);
        let diff = exponent_difference(&self.learned[2], &self.learned[3]);
        let held = diff.ci95.0 > 0.0;
        let end = |v: f64| {
            if v.is_finite() {
                json!(round4(v))
            } else {
                Value::Null
            }
        };
        Claim::new(
            format!("E7.k{k}.joint_separation"),
            "the jointly trained vanilla network's exponent of d exceeds the jointly trained MoE's (the 95 % interval of the difference lies above 0): the separation grows with d",
            json!({
                "joint_moe": fit_json(moe),
                "joint_vanilla": fit_json(vanilla),
                "difference": end(diff.slope),
                "difference_ci95": [end(diff.ci95.0), end(diff.ci95.1)],
            }),
            held,
            || {
                format!(
                    "exponents: joint vanilla {}, joint MoE {}; difference {:.2} with 95 % interval {:.2} to {:.2}, which does not lie above 0",
                    describe(vanilla),
                    describe(moe),
                    diff.slope,
                    diff.ci95.0,
                    diff.ci95.1
                )
            },
        )
    }

    /// Figure `e7_kK`: samples to learn against d on log-log axes, every
    /// run a point (censored ones apart, as lower bounds), each model's
    /// fitted line and the theory's d^(k*-1) through the staged MoE's
    /// median at the smallest d.
    fn figure(&self, fits: &[ExponentFit], ds: &[usize]) -> (String, Chart) {
        let k = self.k;
        let mut series = Vec::new();
        for (i, ((model, points), fit)) in
            Model::ALL.iter().zip(&self.learned).zip(fits).enumerate()
        {
            let reached: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| !p.1.is_censored())
                .map(|&(d, o)| (d, o.value()))
                .collect();
            let censored: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.1.is_censored())
                .map(|&(d, o)| (d, o.value()))
                .collect();
            if !reached.is_empty() {
                series.push(Series::new(model.label(), Mark::Points, reached).color(i));
            }
            if !censored.is_empty() {
                series.push(
                    Series::new(
                        format!("{}: not learned within (lower bound)", model.label()),
                        Mark::LowerBound,
                        censored,
                    )
                    .color(i),
                );
            }
            if fit.slope.is_finite() && !fit.lower_bound {
                let line = ds
                    .iter()
                    .map(|&d| {
                        (
                            d as f64,
                            (fit.intercept + fit.slope * (d as f64).ln()).exp(),
                        )
                    })
                    .collect();
                series.push(
                    Series::new(
                        format!("{} fit: d^{:.2}", model.label(), fit.slope),
                        Mark::Line,
                        line,
                    )
                    .color(i),
                );
            }
        }
        if let Some(&(d0, m0)) = fits[0].medians.first() {
            let slope = (k - 1) as f64;
            let theory = ds
                .iter()
                .map(|&d| (d as f64, m0.value() * (d as f64 / d0).powf(slope)))
                .collect();
            series.push(Series::new(
                format!("theory: d^{slope} (through the staged MoE's median at d = {d0})"),
                Mark::Dashed,
                theory,
            ));
        }
        let chart = Chart {
            title: format!("E7: samples to learn against d, k* = {k}"),
            x_label: "dimension d".into(),
            y_label: "training samples to learn".into(),
            log_x: true,
            log_y: true,
            series,
            ..Chart::default()
        };
        (format!("e7_k{k}"), chart)
    }
}

/// The difference of two exponents measured on the same runs (`b`'s
/// slope minus `a`'s; `a[i]` and `b[i]` are one run's two models), with a
/// 95 % interval from a paired bootstrap: each resample draws the seeds at
/// each d with replacement and refits both. Censoring only ever bounds it
/// from below, so the lower end stays a valid bound: where `b`'s median is
/// censored its slope enters at its lower bound (censored runs at their
/// cap), and where `a`'s is, the difference is unbounded below.
struct Difference {
    slope: f64,
    ci95: (f64, f64),
}

fn exponent_difference(a: &[(f64, Observed)], b: &[(f64, Observed)]) -> Difference {
    let diff = |a: &[(f64, Observed)], b: &[(f64, Observed)]| {
        let (a, b) = (fit_exponent(a, 0, 0), fit_exponent(b, 0, 0));
        if a.lower_bound {
            f64::NEG_INFINITY
        } else {
            // A lower bound when b's is.
            b.slope - a.slope
        }
    };
    let mut dims: Vec<f64> = a.iter().map(|p| p.0).collect();
    dims.dedup();
    let groups: Vec<Vec<usize>> = dims
        .iter()
        .map(|&d| (0..a.len()).filter(|&i| a[i].0 == d).collect())
        .collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(BOOTSTRAP_SEED);
    let mut diffs: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let picks: Vec<usize> = groups
                .iter()
                .flat_map(|g| {
                    (0..g.len())
                        .map(|_| g[rng.gen_range(0..g.len())])
                        .collect::<Vec<_>>()
                })
                .collect();
            let (ra, rb): (Vec<_>, Vec<_>) = picks.iter().map(|&i| (a[i], b[i])).unzip();
            diff(&ra, &rb)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    Difference {
        slope: diff(a, b),
        ci95: percentile_interval(&diffs),
    }
}
