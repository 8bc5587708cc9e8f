//! E6's budget sweep: the reference variant at multiples of the staged
//! budget (the same steps of the cosine schedule stretched), against the
//! staged MoE's median error: where joint training reaches it, and the
//! trend of the error from the staged budget on.

use serde_json::{json, Value};

use super::measured::Staged;
use super::variants::{variants, REFERENCE};
use crate::config::{Config, Training};
use crate::error::Result;
use crate::experiment::Summary;
use crate::report::page::grouped;
use crate::reproduce::runs::{run_seeds, Runs};
use crate::reproduce::stats::{fit_line, fmt, mean, median, round4};
use crate::reproduce::{Claim, Options, Table};

/// The budget sweep's runs at one budget.
pub(super) struct BudgetPoint {
    /// Of the staged budget.
    pub(super) multiple: f64,
    /// Samples per model.
    pub(super) samples: u64,
    /// Per seed: the joint MoE's relative test MSE and purity, the joint
    /// vanilla network's relative test MSE.
    pub(super) moe: Vec<f64>,
    pub(super) purity: Vec<f64>,
    pub(super) vanilla: Vec<f64>,
}

/// The sweep, reduced: its points by samples, and the staged MoE's median
/// error it is measured against.
pub(super) struct Budget {
    /// Seeds 1 to this at each budget.
    pub(super) seeds: i64,
    /// The budgets, by samples.
    pub(super) points: Vec<BudgetPoint>,
    /// The staged MoE's median relative test MSE.
    pub(super) target: f64,
    /// The smallest multiple (and its samples) whose median reaches it.
    reached: Option<(f64, u64)>,
    /// From the staged budget on, the slope of the log-log line of the
    /// joint MoE's median error against samples, and the vanilla network's.
    slope: f64,
    vanilla_slope: f64,
    /// Where the MoE's line meets the staged error, in samples (None on a
    /// plateau: slope above -0.1).
    meets: Option<f64>,
}

/// Joint training's steps at the staged budget (`joint.steps = "auto"`).
fn staged_budget_steps() -> u64 {
    let mut cfg = Config::default();
    cfg.moe.training = Training::Joint;
    cfg.check().expect("the defaults are valid").joint().steps
}

impl Budget {
    /// Runs (or resumes) the reference variant at each multiple of the
    /// staged budget under `out/sweeps/e6_budget`; at the staged budget
    /// itself, `reference` (the reference variant's runs) serve.
    pub(super) fn sweep(
        opts: &Options,
        reference: &Runs,
        staged: &Staged,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Self> {
        let (seeds, multiples): (i64, &[f64]) = if opts.quick {
            (2, &[0.25, 0.5, 2.0])
        } else {
            (5, &[0.125, 0.25, 0.5, 2.0, 4.0])
        };
        let base_steps = staged_budget_steps();
        // Steps of each multiple (the staged budget's own steps are 1).
        let by_steps: Vec<(u64, f64)> = multiples
            .iter()
            .map(|&m| ((base_steps as f64 * m).round() as u64, m))
            .chain([(base_steps, 1.0)])
            .collect();
        let steps: Vec<Value> = by_steps[..multiples.len()]
            .iter()
            .map(|&(s, _)| json!(s))
            .collect();
        let mut sets = variants()
            .into_iter()
            .find(|v| v.key == REFERENCE)
            .expect("the reference variant is among the variants")
            .sets;
        sets.push(("moe.training", json!("joint")));
        let axes = [("joint.steps", steps)];
        let budget = run_seeds(opts, "e6_budget", seeds, &sets, &axes, progress)?;
        let points = points(&budget, reference, seeds, &by_steps);
        Ok(Budget::fit(seeds, points, median(&staged.moe.rel_mse)))
    }

    /// Where the points reach `target`, and the log-log trend from the
    /// staged budget on.
    fn fit(seeds: i64, points: Vec<BudgetPoint>, target: f64) -> Self {
        let reached = points
            .iter()
            .find(|p| median(&p.moe) <= target)
            .map(|p| (p.multiple, p.samples));
        // From the staged budget on, the median error against samples on
        // log-log axes: its slope, and where the line would meet the staged
        // error. A slope above -0.1 is a plateau: no meeting point is claimed.
        let from_staged_budget = |errors: fn(&BudgetPoint) -> &[f64]| {
            fit_line(
                &points
                    .iter()
                    .filter(|p| p.multiple >= 1.0)
                    .map(|p| ((p.samples as f64).ln(), median(errors(p)).ln()))
                    .collect::<Vec<_>>(),
            )
        };
        let (intercept, slope, _) = from_staged_budget(|p| &p.moe);
        let (_, vanilla_slope, _) = from_staged_budget(|p| &p.vanilla);
        let meets = (slope < -0.1).then(|| ((target.ln() - intercept) / slope).exp());
        Budget {
            seeds,
            points,
            target,
            reached,
            slope,
            vanilla_slope,
            meets,
        }
    }

    /// The largest multiple swept.
    fn largest(&self) -> f64 {
        self.points.last().map_or(f64::NAN, |p| p.multiple)
    }

    /// Claim E6.budget: joint training reaches the staged MoE's median
    /// error within the largest budget swept (`staged_samples` the staged
    /// budget).
    pub(super) fn claim(&self, staged_samples: u64) -> Claim {
        let (target, slope, reached, meets) = (self.target, self.slope, self.reached, self.meets);
        let points = &self.points;
        Claim::new(
            "E6.budget",
            format!("joint training (top-1 + balancing) reaches the staged MoE's median test error within {} times the staged budget", self.largest()),
            json!({
                "staged_median_rel_mse": round4(target),
                "smallest_multiple_reaching_it": reached.map(|r| round4(r.0)),
                "samples": reached.map(|r| r.1),
                "median_rel_mse_by_multiple": points.iter().map(|p| json!([round4(p.multiple), round4(median(&p.moe))])).collect::<Vec<_>>(),
                "log_log_slope_from_staged_budget": round4(slope),
                "vanilla_log_log_slope_from_staged_budget": round4(self.vanilla_slope),
                "fitted_samples_to_staged_error": meets.map(f64::round),
            }),
            reached.is_some(),
            || {
                let at_largest = points.last().map_or(String::from("no budget was run"), |p| {
                    format!(
                        "at {}× the staged budget ({} samples) the joint MoE's median relative MSE is {:.4}, above the staged MoE's {target:.4}",
                        p.multiple,
                        grouped(p.samples),
                        median(&p.moe)
                    )
                });
                let trend = match meets {
                    Some(n) => format!(
                        "the fitted log-log line (slope {slope:.2}) would meet it at {} samples, {:.1}× the staged budget, beyond the sweep",
                        grouped(n.round() as u64),
                        n / staged_samples as f64
                    ),
                    None => format!(
                        "from the staged budget on the error has plateaued (log-log slope {slope:.2} > -0.1), so no meeting point is fitted"
                    ),
                };
                format!("{at_largest}; {trend}")
            },
        )
    }

    /// The sweep's two lines of the section's text: where the error
    /// reaches the staged MoE's, and its trend.
    pub(super) fn text(&self, staged_samples: u64) -> [String; 2] {
        let (target, slope, vanilla_slope) = (self.target, self.slope, self.vanilla_slope);
        let (seeds, largest, reached) = (self.seeds, self.largest(), self.reached);
        let reaches = format!(
            "Budget sweep (joint top-1 + balancing, seeds 1–{seeds}, the same steps of the cosine schedule stretched): {}.",
            match reached {
                Some((m, n)) => format!("the joint MoE's median error reaches the staged MoE's ({target:.3}) at {m} times the staged budget ({} samples)", grouped(n)),
                None => format!("the joint MoE's median error does not reach the staged MoE's ({target:.3}) within {largest} times the staged budget"),
            }
        );
        let trend = match self.meets {
            Some(n) => format!(
                "From the staged budget on, the joint MoE's median error falls with log-log slope {slope:.2} against samples; \
                 the fitted line meets the staged MoE's error at {} samples, {:.1} times the staged budget{}.",
                grouped(n.round() as u64),
                n / staged_samples as f64,
                if reached.is_none() { " (an extrapolation beyond the sweep)" } else { "" }
            ),
            None => format!(
                "From the staged budget on, the joint MoE's median error has plateaued (log-log slope {slope:.2} against samples; \
                 the joint vanilla network's: {vanilla_slope:.2})."
            ),
        };
        [reaches, trend]
    }

    /// Table `e6_budget`: a row per budget.
    pub(super) fn table(&self) -> Table {
        let mut table = Table::new(
            "e6_budget",
            &[
                "budget_multiple",
                "samples",
                "joint_moe_rel_mse_median",
                "joint_moe_purity_mean",
                "joint_vanilla_rel_mse_median",
            ],
        );
        table.rows = self
            .points
            .iter()
            .map(|p| {
                vec![
                    p.multiple.to_string(),
                    p.samples.to_string(),
                    fmt(median(&p.moe)),
                    fmt(mean(&p.purity)),
                    fmt(median(&p.vanilla)),
                ]
            })
            .collect();
        table
    }
}

/// Per budget (by samples): the sweep's runs, and the reference variant's
/// at the staged budget itself, of seeds 1 to `seeds`; `by_steps` the
/// steps of each multiple.
fn points(
    budget: &Runs,
    reference: &Runs,
    seeds: i64,
    by_steps: &[(u64, f64)],
) -> Vec<BudgetPoint> {
    let summaries: Vec<&Summary> = budget
        .rows
        .iter()
        .chain(reference.rows.iter())
        .map(|r| &r.summary)
        .filter(|s| s.seed as i64 <= seeds)
        .collect();
    let mut points: Vec<BudgetPoint> = by_steps
        .iter()
        .map(|&(steps, multiple)| {
            let at: Vec<&Summary> = summaries
                .iter()
                .copied()
                .filter(|s| s.joint.as_ref().is_some_and(|j| j.steps == steps))
                .collect();
            BudgetPoint {
                multiple,
                samples: at.first().map_or(0, |s| s.samples.moe),
                moe: at.iter().map(|s| s.moe.model.error.test_rel_mse).collect(),
                purity: at.iter().map(|s| s.moe.routing_purity).collect(),
                vanilla: at
                    .iter()
                    .map(|s| {
                        s.vanilla
                            .as_ref()
                            .map_or(f64::NAN, |v| v.error.test_rel_mse)
                    })
                    .collect(),
            }
        })
        .collect();
    points.sort_by_key(|p| p.samples);
    points
}
