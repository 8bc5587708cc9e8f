//! E5 Routing: the learned router's purity against the cluster separation
//! rho, beside the best linear router (1 - Phi(-rho/sqrt 2) for two
//! orthogonal clusters), and the MoE's test error that follows it.

use serde_json::Value;

use super::{fmt, grid, mean, round4, run, Claim, Options, Section, Table};
use crate::error::Result;
use crate::report::figure::{Chart, Mark, Series};

/// The largest gap allowed between the learned and the best linear
/// router's purity, for rho >= 3.
const GAP_BAR: f64 = 0.02;

/// E5: routing purity against rho, beside the best linear router.
pub(super) fn routing(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let seeds = if opts.quick { 3 } else { 10 };
    let rhos = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0];
    let set = [("vanilla.enabled", Value::from(false))];
    let runs = run(
        opts,
        "e5",
        &grid(
            1..=seeds,
            &set,
            &[("task.rho", rhos.iter().map(|&r| Value::from(r)).collect())],
        ),
        progress,
    )?;
    let mut table = Table {
        name: "e5".into(),
        header: [
            "rho",
            "routing_purity",
            "best_linear_router_purity",
            "moe_rel_mse",
        ]
        .map(String::from)
        .to_vec(),
        ..Table::default()
    };
    let (mut purity, mut best, mut error) = (Vec::new(), Vec::new(), Vec::new());
    let (mut purity_spread, mut error_spread) = (Vec::new(), Vec::new());
    let spread = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let mut worst_gap: f64 = 0.0;
    // Where the gap passes the bar: (rho, learned, best linear).
    let mut over: Vec<(f64, f64, f64)> = Vec::new();
    for &rho in &rhos {
        let at: Vec<usize> = (0..runs.rows.len())
            .filter(|&i| runs.value(i, "task.rho") == rho)
            .collect();
        let purities: Vec<f64> = at
            .iter()
            .map(|&i| runs.rows[i].2.moe.routing_purity)
            .collect();
        let p = mean(&purities);
        let b = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.best_linear_router_purity.unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        );
        let errors: Vec<f64> = at
            .iter()
            .map(|&i| runs.rows[i].2.moe.model.error.test_rel_mse)
            .collect();
        let e = mean(&errors);
        purity_spread.push(spread(&purities));
        error_spread.push(spread(&errors));
        if rho >= 3.0 {
            worst_gap = worst_gap.max((b - p).abs());
            // NaN (a missing purity) counts as over the bar.
            let within = (b - p).abs() <= GAP_BAR;
            if !within {
                over.push((rho, p, b));
            }
        }
        purity.push((rho, p));
        best.push((rho, b));
        error.push((rho, e));
        table
            .rows
            .push(vec![rho.to_string(), fmt(p), fmt(b), fmt(e)]);
    }
    Ok(Section {
        title: "E5 Routing: purity against cluster separation".into(),
        text: format!(
            "{seeds} seeds per rho. The best linear router errs with probability Phi(-rho/sqrt 2) for two orthogonal clusters; \
             the learned router is compared with it, and the MoE's test error follows its purity."
        ),
        claims: vec![Claim::new(
            "E5.purity",
            "for rho >= 3 the learned router's purity is within 2 percentage points of the best linear router's",
            serde_json::json!({ "largest_gap": round4(worst_gap) }),
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
        )],
        figures: vec![
            (
                "e5_purity".into(),
                Chart {
                    title: "E5: routing purity".into(),
                    x_label: "cluster separation rho".into(),
                    y_label: "purity (share of samples)".into(),
                    y_range: Some((0.4, 1.02)),
                    series: vec![
                        Series::new("learned router (mean over seeds; bars: lowest to highest seed)", Mark::LineAndPoints, purity)
                            .spread(purity_spread),
                        Series::new("best linear router 1 - Phi(-rho/sqrt 2)", Mark::Dashed, best),
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
                    series: vec![Series::new("MoE (mean over seeds; bars: lowest to highest seed)", Mark::LineAndPoints, error)
                        .spread(error_spread)],
                    ..Chart::default()
                },
            ),
        ],
        tables: vec![table],
    })
}
