//! E5 Routing: the learned router's purity against the cluster separation
//! rho, beside the best linear router (1 - Phi(-rho/sqrt 2) for two
//! orthogonal clusters), and the MoE's test error that follows it.

use serde_json::{json, Value};

use super::runs::{run_seeds, Runs};
use super::stats::{fmt, lowest_highest, mean, round4};
use super::{Claim, Options, Section, Table};
use crate::error::Result;
use crate::report::figure::{Chart, Mark, Series};

/// The largest gap allowed between the learned and the best linear
/// router's purity, for rho >= 3.
const GAP_BAR: f64 = 0.02;

/// The cluster separations swept.
const RHOS: [f64; 6] = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0];

/// E5: routing purity against rho, beside the best linear router.
pub(super) fn routing(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let seeds = opts.seeds(3, 10);
    let set = [("vanilla.enabled", Value::from(false))];
    let rhos = ("task.rho", RHOS.iter().map(|&r| Value::from(r)).collect());
    let runs = run_seeds(opts, "e5", seeds, &set, &[rhos], progress)?;
    let points: Vec<RhoPoint> = RHOS.iter().map(|&rho| RhoPoint::of(&runs, rho)).collect();
    let mut table = Table::new(
        "e5",
        &[
            "rho",
            "routing_purity",
            "best_linear_router_purity",
            "moe_rel_mse",
        ],
    );
    table.rows = points
        .iter()
        .map(|p| vec![p.rho.to_string(), fmt(p.purity), fmt(p.best), fmt(p.error)])
        .collect();
    Ok(Section {
        title: "E5 Routing: purity against cluster separation".into(),
        text: format!(
            "{seeds} seeds per rho. The best linear router errs with probability Phi(-rho/sqrt 2) for two orthogonal clusters; \
             the learned router is compared with it, and the MoE's test error follows its purity."
        ),
        claims: vec![purity_claim(&points)],
        figures: figures(&points),
        tables: vec![table],
    })
}

/// The runs at one rho, reduced over seeds.
struct RhoPoint {
    rho: f64,
    /// Mean over seeds of the learned router's purity, of the best linear
    /// router's, and of the MoE's relative test MSE.
    purity: f64,
    best: f64,
    error: f64,
    /// Lowest and highest over seeds of the purity and of the error.
    purity_spread: (f64, f64),
    error_spread: (f64, f64),
}

impl RhoPoint {
    fn of(runs: &Runs, rho: f64) -> Self {
        let at = runs.at(&[("task.rho", rho)]);
        let purities: Vec<f64> = at.iter().map(|r| r.summary.moe.routing_purity).collect();
        let best: Vec<f64> = at
            .iter()
            .map(|r| r.summary.best_linear_router_purity.unwrap_or(f64::NAN))
            .collect();
        let errors: Vec<f64> = at
            .iter()
            .map(|r| r.summary.moe.model.error.test_rel_mse)
            .collect();
        RhoPoint {
            rho,
            purity: mean(&purities),
            best: mean(&best),
            error: mean(&errors),
            purity_spread: lowest_highest(&purities),
            error_spread: lowest_highest(&errors),
        }
    }
}

/// Claim E5.purity: for rho >= 3 the learned router within `GAP_BAR` of the
/// best linear router.
fn purity_claim(points: &[RhoPoint]) -> Claim {
    let mut worst_gap: f64 = 0.0;
    // Where the gap passes the bar: (rho, learned, best linear).
    let mut over: Vec<(f64, f64, f64)> = Vec::new();
    for p in points.iter().filter(|p| p.rho >= 3.0) {
        let (rho, p, b) = (p.rho, p.purity, p.best);
        worst_gap = worst_gap.max((b - p).abs());
        // NaN (a missing purity) counts as over the bar.
        let within = (b - p).abs() <= GAP_BAR;
        if !within {
            over.push((rho, p, b));
        }
    }
    Claim::new(
        "E5.purity",
        "for rho >= 3 the learned router's purity is within 2 percentage points of the best linear router's",
        json!({ "largest_gap": round4(worst_gap) }),
        worst_gap <= GAP_BAR,
        || {
            over.iter()
                .map(|(rho, p, b)| {
                    format!(
                        "at rho = {rho}: learned purity {p:.4} against the best linear router's {b:.4}, a gap of {:.2} points > {:.0}",
                        100.0 * (b - p).abs(),
                        100.0 * GAP_BAR
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
}

/// Figures `e5_purity` (learned against best linear router) and
/// `e5_error` (the MoE's test error), against rho.
fn figures(points: &[RhoPoint]) -> Vec<(String, Chart)> {
    let curve = |y: fn(&RhoPoint) -> f64| points.iter().map(|p| (p.rho, y(p))).collect();
    vec![
        (
            "e5_purity".into(),
            Chart {
                title: "E5: routing purity".into(),
                x_label: "cluster separation rho".into(),
                y_label: "purity (share of samples)".into(),
                y_range: Some((0.4, 1.02)),
                series: vec![
                    Series::new(
                        "learned router (mean over seeds; bars: lowest to highest seed)",
                        Mark::LineAndPoints,
                        curve(|p| p.purity),
                    )
                    .spread(points.iter().map(|p| p.purity_spread).collect()),
                    Series::new(
                        "best linear router 1 - Phi(-rho/sqrt 2)",
                        Mark::Dashed,
                        curve(|p| p.best),
                    ),
                ],
                ..Chart::default()
            },
        ),
        (
            "e5_error".into(),
            Chart {
                title: "E5: MoE test error".into(),
                x_label: "cluster separation rho".into(),
                y_label: "relative test MSE".into(),
                log_y: true,
                series: vec![Series::new(
                    "MoE (mean over seeds; bars: lowest to highest seed)",
                    Mark::LineAndPoints,
                    curve(|p| p.error),
                )
                .spread(points.iter().map(|p| p.error_spread).collect())],
                ..Chart::default()
            },
        ),
    ]
}
