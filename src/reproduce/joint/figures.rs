//! E6's figures: the budget sweep's test error against samples beside the
//! staged models', and the variants' curves over training.

use super::budget::{Budget, BudgetPoint};
use super::measured::Staged;
use super::variants::VariantRuns;
use crate::report::figure::{Chart, Mark, Series};
use crate::report::page::grouped;
use crate::reproduce::stats::{lowest_highest, median};

/// Figure `e6_error`: both jointly trained models' median error against
/// samples, bars over the seeds; the staged models' as dashed lines
/// across, bands over the seeds.
pub(super) fn error_chart(budget: &Budget, staged: &Staged) -> Chart {
    let (points, budget_seeds, seeds) = (&budget.points, budget.seeds, staged.seeds);
    let span = |v: f64| {
        let (lo, hi) = (
            points[0].samples as f64,
            points[points.len() - 1].samples as f64,
        );
        vec![(lo, v), (hi, v)]
    };
    // The spread over seeds: error bars at the budgets, bands along the
    // staged lines.
    let staged_band = |v: &[f64]| vec![lowest_highest(v); 2];
    let staged_samples = grouped(staged.samples);
    let median_of = |errors: fn(&BudgetPoint) -> &[f64]| {
        points
            .iter()
            .map(|p| (p.samples as f64, median(errors(p))))
            .collect()
    };
    Chart {
        title: "E6: test error against training samples".into(),
        x_label: "training samples per model".into(),
        y_label: "relative test MSE (median over seeds)".into(),
        log_x: true,
        log_y: true,
        series: vec![
            Series::new(
                format!("joint MoE (top-1 + balancing), seeds 1–{budget_seeds}; bars: lowest to highest seed"),
                Mark::LineAndPoints,
                median_of(|p| &p.moe),
            )
            .spread(points.iter().map(|p| lowest_highest(&p.moe)).collect()),
            Series::new(
                format!("joint vanilla, seeds 1–{budget_seeds}; bars: lowest to highest seed"),
                Mark::LineAndPoints,
                median_of(|p| &p.vanilla),
            )
            .spread(points.iter().map(|p| lowest_highest(&p.vanilla)).collect()),
            Series::new(
                format!("staged MoE at {staged_samples} samples, seeds 1–{seeds}; band: lowest to highest seed"),
                Mark::Dashed,
                span(budget.target),
            )
            .spread(staged_band(&staged.moe.rel_mse)),
            Series::new(
                format!("staged vanilla at {staged_samples} samples, seeds 1–{seeds}; band: lowest to highest seed"),
                Mark::Dashed,
                span(median(&staged.vanilla.rel_mse)),
            )
            .spread(staged_band(&staged.vanilla.rel_mse)),
        ],
        ..Chart::default()
    }
}

/// Figures `e6_training`, `e6_purity` and `e6_overlaps`: the variants'
/// curves over training on seeds 1 to `seeds`, the online losses as
/// relative MSE, 2 loss / Var(y), with `var_y` the task's.
pub(super) fn over_training(
    variants: &[VariantRuns],
    var_y: f64,
    seeds: i64,
) -> Vec<(String, Chart)> {
    let mut training: Vec<Series> = variants.iter().flat_map(|v| v.training.clone()).collect();
    for series in &mut training {
        series.points.iter_mut().for_each(|p| p.1 *= 2.0 / var_y);
    }
    let purity = variants.iter().flat_map(|v| v.purity.clone()).collect();
    let overlaps = variants.iter().flat_map(|v| v.overlaps.clone()).collect();
    let chart = |title: &str, y_label: &str, log_y, y_range, series| Chart {
        title: format!("E6: {title}"),
        x_label: "samples seen by the model".into(),
        y_label: String::from(y_label),
        log_y,
        y_range,
        series,
        ..Chart::default()
    };
    // Purity saturates early: a log x axis shows how.
    let mut purity_chart = chart(
        &format!("routing purity during joint training, default task, seeds 1–{seeds}"),
        "routing purity (probe samples)",
        false,
        Some((0.6, 1.01)),
        purity,
    );
    purity_chart.log_x = true;
    vec![
        (
            "e6_training".into(),
            chart(
                "online error during joint training, default task, seed 1",
                "relative MSE on fresh training batches",
                true,
                None,
                training,
            ),
        ),
        ("e6_purity".into(), purity_chart),
        (
            "e6_overlaps".into(),
            chart(
                "worst-cluster overlaps during joint training, default task, seed 1",
                "best overlap, worst cluster",
                false,
                Some((0.0, 1.05)),
                overlaps,
            ),
        ),
    ]
}
