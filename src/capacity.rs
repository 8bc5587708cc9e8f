//! How big the models are, from the task: the number of experts from the
//! number of clusters, and the readout's features from the links. Like the
//! rates and lengths of [`crate::budget`], each is a default ("auto") that a
//! number in the configuration overrides, and each keeps the default task's
//! value (8 experts; 4 biases in [-3, 3]) where that already suffices.
//!
//! * **Experts.** Phase I's experts land on clusters at random, so without
//!   restarts the chance that every cluster gets one is the coupon-collector
//!   law (E4 measures it). Each restart gives the experts beyond the
//!   clusters found another draw, which finds a missing cluster less often
//!   than a fresh one would ([`RESTART_FINDS_NEW`], fitted to phase I alone);
//!   [`p_all_found`] is that Markov chain and [`experts_for`] picks the
//!   smallest M >= 8 with `P >= 0.999` (8 up to C = 4 with the default
//!   restarts, 11 at C = 6, 14 at C = 8).
//! * **Readout.** Phase IV turns every learned direction into ReLU
//!   features `relu(<w, x - mu> + b)`, `b ~ U[-b_max, b_max]`. Once the
//!   direction is learned the projection is a standard normal `z` and the
//!   label's part along it is the link `f(z)`; how well the features fit
//!   `f` is a one-dimensional ridge problem that [`readout_error`] solves
//!   by quadrature, fitted only as far as the readout's samples reach
//!   (beyond the |z| past which a few samples lie, the fit extrapolates
//!   linearly). [`readout_plan`] takes the fewest samples, then the fewest
//!   biases per neuron, then the narrowest range, whose predicted error is
//!   below a tenth of the relative-error target for every link. Heavy
//!   tails are what costs: 35 % of h_3's variance lies beyond |z| = 3 but
//!   is fitted by the linear pieces; 30 % of h_5's lies beyond |z| = 4,
//!   which 20,000 samples per expert never reach.
//!
//! ```
//! use clustermoe::capacity::{experts_for, readout_error};
//! use clustermoe::numerics::link::parse;
//!
//! assert_eq!(experts_for(2, 3).experts, 8); // the default task keeps 8
//! assert!(experts_for(8, 3).experts > 8);
//!
//! // 16 neurons on a direction, 4 biases each in [-3, 3], samples to |z| = 3.7:
//! let h3 = parse("link", "h3")?;
//! assert!(readout_error(&h3, 16, (4, 3.0), 3.7, 1e-6) < 0.02);
//! let h5 = parse("link", "h5")?;
//! assert!(readout_error(&h5, 16, (4, 3.0), 3.7, 1e-6) > 0.05);
//! # Ok::<(), clustermoe::Error>(())
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::numerics::link::Link;
use crate::numerics::rng::Stream;

/// The default task's expert count, the least "auto" gives.
pub const MIN_EXPERTS: usize = 8;
/// The probability that every cluster gets an expert which "auto" asks for.
pub const COVERAGE: f64 = 0.999;
/// The chance that a restarted expert finds a cluster not found yet
/// (otherwise it falls back on a found one), fitted to phase I alone at
/// C = 4, 6, 8 and 12 (40 to 100 seeds per point; see docs/algorithm.md).
pub const RESTART_FINDS_NEW: f64 = 0.4;
/// The most experts "auto" chooses.
const MAX_AUTO_EXPERTS: usize = 256;

/// `P(every one of C clusters is drawn)` in `draws` uniform draws: the
/// coupon-collector law `sum_j (-1)^j binom(C, j) (1 - j/C)^M`.
pub fn coupon_collector(clusters: usize, draws: usize) -> f64 {
    let c = clusters as f64;
    let mut binom = 1.0;
    let mut sum = 0.0;
    for j in 0..=clusters {
        let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
        sum += sign * binom * (1.0 - j as f64 / c).powi(draws as i32);
        binom *= (clusters - j) as f64 / (j + 1) as f64;
    }
    sum.clamp(0.0, 1.0)
}

/// `P(every cluster found)` after phase I with `experts` experts and
/// `restart_rounds` restarts: the experts first land on clusters uniformly
/// at random; at each restart the `M - f` experts beyond the `f` distinct
/// clusters found restart, and each finds one of the `C - f'` clusters still
/// missing with probability `RESTART_FINDS_NEW (C - f') / (C - f)`. Without
/// restarts this is the coupon-collector law.
pub fn p_all_found(clusters: usize, experts: usize, restart_rounds: u64) -> f64 {
    let c = clusters;
    // found[f]: the probability that f distinct clusters are found.
    let mut found = vec![0.0; c + 1];
    found[0] = 1.0;
    for _ in 0..experts {
        found = step(&found, |f| f as f64 / c as f64);
    }
    for _ in 0..restart_rounds {
        let mut next = vec![0.0; c + 1];
        for (f, &p) in found.iter().enumerate().filter(|(_, &p)| p > 0.0) {
            let mut after = vec![0.0; c + 1];
            after[f] = 1.0;
            for _ in 0..experts.saturating_sub(f) {
                // A restart finds a new cluster with RESTART_FINDS_NEW times
                // the share of the clusters missing at this restart's start.
                after = step(&after, |g| {
                    1.0 - RESTART_FINDS_NEW * (c - g) as f64 / (c - f).max(1) as f64
                });
            }
            for (g, q) in after.into_iter().enumerate() {
                next[g] += p * q;
            }
        }
        found = next;
    }
    found[c]
}

/// One more draw: from `f` found clusters it finds none new with
/// probability `stay(f)`, else one.
fn step(found: &[f64], stay: impl Fn(usize) -> f64) -> Vec<f64> {
    let c = found.len() - 1;
    let mut next = vec![0.0; c + 1];
    for (f, &p) in found.iter().enumerate() {
        let s = if f == c { 1.0 } else { stay(f) };
        next[f] += p * s;
        if f < c {
            next[f + 1] += p * (1.0 - s);
        }
    }
    next
}

/// The expert count "auto" chose and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertsChoice {
    /// Experts M.
    pub experts: usize,
    /// Restarts phase I makes (each of the stuck and redundant experts).
    pub restart_rounds: u64,
    /// The law's probability ([`p_all_found`]) that every cluster gets an expert.
    pub p_all_found: f64,
}

/// The smallest M >= [`MIN_EXPERTS`] whose phase I finds every one of
/// `clusters` clusters with probability at least [`COVERAGE`], with
/// `restart_rounds` restarts (0: none).
pub fn experts_for(clusters: usize, restart_rounds: u64) -> ExpertsChoice {
    let choice = |m: usize| ExpertsChoice {
        experts: m,
        restart_rounds,
        p_all_found: p_all_found(clusters, m, restart_rounds),
    };
    (MIN_EXPERTS..=MAX_AUTO_EXPERTS)
        .map(choice)
        .find(|c| c.p_all_found >= COVERAGE)
        .unwrap_or_else(|| choice(MAX_AUTO_EXPERTS))
}

/// Readout samples, features per neuron and bias ranges tried, in this
/// order (samples outermost); the first choice whose predicted error is
/// small enough for both models is taken.
const SAMPLES: [usize; 5] = [40_000, 160_000, 640_000, 2_560_000, 10_240_000];
const BIASES: [usize; 4] = [4, 8, 16, 32];
const BIAS_MAX: [f64; 4] = [3.0, 4.0, 5.0, 6.0];
/// At most this many features per direction are tried (beyond the first
/// count): past it more biases no longer pay, and the prediction's cost
/// grows with their square.
const MAX_FEATURES: usize = 128;
/// Draws of the random biases and signs the predicted error averages over.
const DRAWS: usize = 3;
/// The quadrature grid: `2 GRID_HALF + 1` points on [-GRID_EDGE, GRID_EDGE].
const GRID_HALF: usize = 300;
const GRID_EDGE: f64 = 7.5;
/// The readout's data reach as far as the |z| beyond which this many of an
/// expert's readout samples are expected: past it the fit extrapolates.
const TAIL_SAMPLES: f64 = 4.0;

/// What one model's readout has to fit, for [`readout_plan`].
#[derive(Clone, Debug)]
pub struct ReadoutNeeds {
    /// The links along the model's learned directions.
    pub links: Vec<Link>,
    /// Neurons on each learned direction (the fewest expected).
    pub neurons_per_direction: usize,
    /// The share of the readout samples one of its blocks is fitted on
    /// (1/C for the MoE's experts behind a hard gate, 1 otherwise).
    pub share: f64,
}

/// The readout features "auto" chose for one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadoutPlan {
    /// Features per learned neuron (`readout.biases`).
    pub biases: usize,
    /// Biases drawn from U[-bias_max, bias_max] (`readout.bias_max`).
    pub bias_max: f64,
    /// Neurons per learned direction the prediction assumed.
    pub neurons_per_direction: usize,
    /// The |z| that the readout's samples reach.
    pub reach: f64,
    /// The largest predicted relative error over the links, once every
    /// direction is learned.
    pub predicted_error: f64,
}

/// The readout of both models: one sample count (both models draw the
/// same) and each model's features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadoutChoice {
    /// Readout samples of each model (`readout.samples`).
    pub samples: usize,
    /// The MoE's features.
    pub moe: ReadoutPlan,
    /// The vanilla network's features.
    pub vanilla: ReadoutPlan,
}

/// The settings a configuration fixed (None: "auto").
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadoutFixed {
    /// `readout.samples`.
    pub samples: Option<usize>,
    /// `readout.biases`.
    pub biases: Option<usize>,
    /// `readout.bias_max`.
    pub bias_max: Option<f64>,
}

/// The |z| beyond which `TAIL_SAMPLES` of `n` standard normal samples lie.
fn reach(n: f64) -> f64 {
    let tail = (TAIL_SAMPLES / n.max(TAIL_SAMPLES)).min(1.0);
    // P(|Z| > a) = erfc(a / sqrt 2): bisection on a in [0, GRID_EDGE].
    let (mut lo, mut hi) = (0.0f64, GRID_EDGE);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if libm::erfc(mid / std::f64::consts::SQRT_2) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Predicted relative error `E(f - fit)^2 / Var f`, `z ~ N(0, 1)`, of a
/// ridge fit (penalty `ridge`) of `f(z)` on the samples with `|z| <= reach`
/// by `neurons` neurons of random sign, each with `biases` features
/// `relu(+-z + b)`, `b ~ U[-bias_max, bias_max]`, and a constant: the mean
/// over fixed draws, by quadrature.
pub fn readout_error(
    link: &Link,
    neurons: usize,
    (biases, bias_max): (usize, f64),
    reach: f64,
    ridge: f64,
) -> f64 {
    // Sweeps and tests check the same configurations again and again.
    static KNOWN: OnceLock<Mutex<HashMap<String, f64>>> = OnceLock::new();
    let key = format!("{link:?} {neurons} {biases} {bias_max} {reach} {ridge}");
    let known = KNOWN.get_or_init(Default::default);
    if let Some(&e) = known.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return e;
    }
    let e = predict_error(link, neurons, (biases, bias_max), reach, ridge);
    known
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, e);
    e
}

/// [`readout_error`], computed.
fn predict_error(
    link: &Link,
    neurons: usize,
    (biases, bias_max): (usize, f64),
    reach: f64,
    ridge: f64,
) -> f64 {
    let h = GRID_EDGE / GRID_HALF as f64;
    let z: Vec<f64> = (0..=2 * GRID_HALF)
        .map(|i| (i as f64 - GRID_HALF as f64) * h)
        .collect();
    let density: Vec<f64> = z.iter().map(|t| (-0.5 * t * t).exp()).collect();
    let total: f64 = density.iter().sum();
    let w: Vec<f64> = density.iter().map(|p| p / total).collect();
    let f: Vec<f64> = z.iter().map(|&t| link.eval(t)).collect();
    let mean: f64 = w.iter().zip(&f).map(|(w, f)| w * f).sum();
    let variance: f64 = w.iter().zip(&f).map(|(w, f)| w * (f - mean).powi(2)).sum();
    if variance <= 1e-300 {
        return 0.0; // a constant link: the constant feature fits it
    }
    let fitted: Vec<f64> = w
        .iter()
        .zip(&z)
        .map(|(&w, t)| if t.abs() <= reach { w } else { 0.0 })
        .collect();
    let mut rng = Stream::seed_from_u64(0x5EAD_0175);
    let total_error: f64 = (0..DRAWS)
        .map(|_| {
            let knots: Vec<(f64, f64)> = (0..neurons)
                .flat_map(|_| {
                    let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                    (0..biases)
                        .map(|_| (sign, rng.gen_range(-bias_max..=bias_max)))
                        .collect::<Vec<_>>()
                })
                .collect();
            let grid = Grid {
                z: &z,
                fit: &fitted,
                eval: &w,
                f: &f,
            };
            grid.error(&knots, ridge) / variance
        })
        .sum();
    total_error / DRAWS as f64
}

/// A link on the quadrature grid: points, the weights the fit sees (the
/// reached ones), the weights of the error (all), the link's values.
struct Grid<'a> {
    z: &'a [f64],
    fit: &'a [f64],
    eval: &'a [f64],
    f: &'a [f64],
}

impl Grid<'_> {
    /// Weighted squared error of the ridge fit by `relu(s z + b)` for each
    /// `(s, b)` in `knots`, and a constant.
    fn error(&self, knots: &[(f64, f64)], ridge: f64) -> f64 {
        let p = knots.len() + 1;
        let row = |i: usize, out: &mut [f64]| {
            for (k, &(s, b)) in knots.iter().enumerate() {
                out[k] = (s * self.z[i] + b).max(0.0);
            }
            out[p - 1] = 1.0;
        };
        let mut gram = faer::Mat::<f64>::zeros(p, p);
        let mut rhs = faer::Mat::<f64>::zeros(p, 1);
        let mut x = vec![0.0; p];
        for i in (0..self.z.len()).filter(|&i| self.fit[i] > 0.0) {
            row(i, &mut x);
            for a in (0..p).filter(|&a| x[a] != 0.0) {
                let wa = self.fit[i] * x[a];
                rhs[(a, 0)] += wa * self.f[i];
                for b in 0..=a {
                    gram[(a, b)] += wa * x[b];
                }
            }
        }
        for a in 0..p {
            gram[(a, a)] += ridge;
        }
        let Some(coef) = crate::numerics::linalg::cholesky_solve(gram, rhs) else {
            return f64::INFINITY;
        };
        (0..self.z.len())
            .map(|i| {
                row(i, &mut x);
                let fit: f64 = x.iter().enumerate().map(|(k, v)| coef[(k, 0)] * v).sum();
                self.eval[i] * (fit - self.f[i]).powi(2)
            })
            .sum()
    }
}

/// One model's features at a sample count: the fewest biases per neuron,
/// then the narrowest range, whose predicted error is at most `tolerance`
/// for every link, and true; the best pair tried and false when none is.
fn features(
    needs: &ReadoutNeeds,
    samples: usize,
    fixed: ReadoutFixed,
    ridge: f64,
    tolerance: f64,
) -> (ReadoutPlan, bool) {
    let n = needs.neurons_per_direction.max(1);
    let reach = reach(samples as f64 * needs.share);
    let biases: Vec<usize> = match fixed.biases {
        Some(b) => vec![b],
        None => BIASES
            .iter()
            .copied()
            .filter(|&b| b == BIASES[0] || b * n <= MAX_FEATURES)
            .collect(),
    };
    let ranges: Vec<f64> = fixed.bias_max.map_or(BIAS_MAX.to_vec(), |b| vec![b]);
    let plan = |biases: usize, bias_max: f64| {
        // More features than MAX_FEATURES only lower the error: the
        // prediction stops there (an upper bound, and a bounded cost).
        let modelled = n.min((MAX_FEATURES / biases).max(1));
        ReadoutPlan {
            biases,
            bias_max,
            neurons_per_direction: n,
            reach,
            predicted_error: needs
                .links
                .iter()
                .map(|l| readout_error(l, modelled, (biases, bias_max), reach, ridge))
                .fold(0.0, f64::max),
        }
    };
    let best = |plans: Vec<ReadoutPlan>| {
        plans
            .into_iter()
            .min_by(|a, b| a.predicted_error.total_cmp(&b.predicted_error))
            .expect("at least one pair is tried")
    };
    // The most features first: when even they miss, fewer will too, and
    // more samples are what is missing.
    let richest: Vec<ReadoutPlan> = ranges
        .iter()
        .map(|&b| plan(*biases.last().expect("one count at least"), b))
        .collect();
    if richest.iter().all(|p| p.predicted_error > tolerance) {
        return (best(richest), false);
    }
    for &b in &biases {
        for &bias_max in &ranges {
            let p = plan(b, bias_max);
            if p.predicted_error <= tolerance {
                return (p, true);
            }
        }
    }
    unreachable!("the richest features met the tolerance")
}

/// The readouts of the MoE and the vanilla network: the fewest samples
/// (from 40,000, four times more each try) at which both models have
/// features whose predicted relative error ([`readout_error`]) is at most
/// `tolerance` for every link, and each model's fewest biases, then
/// narrowest range, there; the best tried when none is. Fixed settings are
/// kept.
pub fn readout_plan(
    moe: &ReadoutNeeds,
    vanilla: &ReadoutNeeds,
    fixed: ReadoutFixed,
    ridge: f64,
    tolerance: f64,
) -> ReadoutChoice {
    let counts: Vec<usize> = fixed.samples.map_or(SAMPLES.to_vec(), |s| vec![s]);
    let mut last = None;
    for &samples in &counts {
        let (m, m_ok) = features(moe, samples, fixed, ridge, tolerance);
        let (v, v_ok) = features(vanilla, samples, fixed, ridge, tolerance);
        let choice = ReadoutChoice {
            samples,
            moe: m,
            vanilla: v,
        };
        if m_ok && v_ok {
            return choice;
        }
        last = Some(choice);
    }
    last.expect("at least one sample count is tried")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::link::parse;

    #[test]
    fn coupon_collector_matches_its_closed_forms() {
        // C = 2: 1 - 2^(1-M).
        for m in 1..10 {
            let expected = 1.0 - 2f64.powi(1 - m);
            assert!((coupon_collector(2, m as usize) - expected).abs() < 1e-12);
            assert!((p_all_found(2, m as usize, 0) - expected).abs() < 1e-12);
        }
        assert_eq!(coupon_collector(4, 3), 0.0);
        // The Markov chain without restarts is the law for any C.
        assert!((p_all_found(6, 9, 0) - coupon_collector(6, 9)).abs() < 1e-12);
    }

    #[test]
    fn experts_grow_with_clusters_and_shrink_with_restarts() {
        assert_eq!(experts_for(2, 3).experts, 8);
        assert_eq!(experts_for(4, 3).experts, 8);
        // Measured (phase I alone, 40 seeds): C = 6 found every cluster in
        // 39 of 40 at M = 8, C = 8 in 19 at M = 8 and 36 at M = 10.
        assert!((p_all_found(6, 8, 3) - 0.975).abs() < 0.05);
        assert!((p_all_found(8, 8, 3) - 0.475).abs() < 0.1);
        assert!((p_all_found(8, 10, 3) - 0.9).abs() < 0.05);
        let (six, eight) = (experts_for(6, 3), experts_for(8, 3));
        assert!(six.experts <= eight.experts, "{six:?} {eight:?}");
        assert!(eight.p_all_found >= COVERAGE);
        assert!(experts_for(8, 0).experts > eight.experts);
    }

    fn needs(links: &[&str], neurons: usize, share: f64) -> ReadoutNeeds {
        ReadoutNeeds {
            links: links.iter().map(|l| parse("link", l).unwrap()).collect(),
            neurons_per_direction: neurons,
            share,
        }
    }

    #[test]
    fn a_piecewise_linear_link_is_fitted_exactly() {
        let relu = parse("link", "relu").unwrap();
        assert!(readout_error(&relu, 16, (8, 3.0), 8.0, 1e-9) < 1e-3);
    }

    #[test]
    fn the_reach_is_where_a_few_samples_lie_beyond() {
        // P(|Z| > 3.72) = 2e-4: four of 20,000 samples.
        assert!(
            (reach(20_000.0) - 3.719).abs() < 0.01,
            "{}",
            reach(20_000.0)
        );
        assert!(reach(1e6) > reach(1e4));
    }

    #[test]
    fn the_default_task_keeps_its_readout_and_heavier_tails_get_more() {
        let fixed = ReadoutFixed::default();
        let h3 = readout_plan(
            &needs(&["h3"], 16, 0.5),
            &needs(&["h3"], 21, 1.0),
            fixed,
            1e-6,
            0.02,
        );
        assert_eq!(h3.samples, 40_000);
        assert_eq!((h3.moe.biases, h3.moe.bias_max), (4, 3.0));
        assert_eq!((h3.vanilla.biases, h3.vanilla.bias_max), (4, 3.0));
        // Degree 5: a third of the variance beyond |z| = 4, out of reach of
        // 20,000 samples and of biases in [-3, 3].
        let h5 = needs(&["h5"], 16, 0.5);
        assert!(readout_error(&h5.links[0], 16, (4, 3.0), reach(20_000.0), 1e-6) > 0.05);
        let plan = readout_plan(&h5, &needs(&["h5"], 21, 1.0), fixed, 1e-6, 0.02);
        assert!(plan.samples > 40_000 && plan.moe.bias_max > 3.0, "{plan:?}");
        assert!(plan.moe.predicted_error <= 0.02, "{plan:?}");
    }
}
