//! E5 Routing: the learned router's purity against the cluster separation
//! rho, beside the best linear router (1 - Phi(-rho/sqrt 2) for two
//! orthogonal clusters), and the MoE's test error that follows it.

use serde_json::Value;

use super::{fmt, grid, mean, round4, run, Claim, Options, Section, Table};
use crate::error::Result;
use crate::report::figure::{Chart, Legend, Mark, Series};

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
    let mut worst_gap: f64 = 0.0;
    for &rho in &rhos {
        let at: Vec<usize> = (0..runs.rows.len())
            .filter(|&i| runs.value(i, "task.rho") == rho)
            .collect();
        let p = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.moe.routing_purity)
                .collect::<Vec<_>>(),
        );
        let b = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.best_linear_router_purity.unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        );
        let e = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.moe.model.error.test_rel_mse)
                .collect::<Vec<_>>(),
        );
        if rho >= 3.0 {
            worst_gap = worst_gap.max((b - p).abs());
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
        claims: vec![Claim {
            id: "E5.purity".into(),
            claim: "for rho >= 3 the learned router's purity is within 2 percentage points of the best linear router's".into(),
            measured: serde_json::json!({ "largest_gap": round4(worst_gap) }),
            held: worst_gap <= 0.02,
        }],
        figures: vec![
            (
                "e5_purity".into(),
                Chart {
                    title: "E5: routing purity".into(),
                    x_label: "cluster separation rho".into(),
                    y_label: "purity (share of samples)".into(),
                    log_x: false,
                    log_y: false,
                    y_range: Some((0.4, 1.02)),
                    legend: Legend::LowerRight,
                    series: vec![
                        Series { label: "learned router (mean over seeds)".into(), points: purity, mark: Mark::LineAndPoints },
                        Series { label: "best linear router 1 - Phi(-rho/sqrt 2)".into(), points: best, mark: Mark::Dashed },
                    ],
                },
            ),
            (
                "e5_error".into(),
                Chart {
                    title: "E5: MoE test error".into(),
                    x_label: "cluster separation rho".into(),
                    y_label: "relative test MSE".into(),
                    log_x: false,
                    log_y: true,
                    y_range: None,
                    legend: Legend::UpperRight,
                    series: vec![Series { label: "MoE (mean over seeds)".into(), points: error, mark: Mark::LineAndPoints }],
                },
            ),
        ],
        tables: vec![table],
    })
}
