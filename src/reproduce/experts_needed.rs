//! E4 Experts needed: the share of seeds in which every cluster gets a
//! specialised expert after phase I, against the number of experts M,
//! without and with restarts, beside the coupon-collector law that random
//! specialisation would follow (section 4 of the spec: M >= about C log C).

use std::collections::BTreeSet;

use serde_json::Value;

pub use crate::capacity::coupon_collector;

use super::runs::{run_seeds, Runs};
use super::stats::{fmt, mean};
use super::{Options, Section, Table};
use crate::error::Result;
use crate::report::figure::{Chart, Mark, Series};

/// E4: the probability that every cluster gets a specialised expert, against M.
pub(super) fn experts_needed(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let seeds = opts.seeds(20, 100);
    let mut section = Section {
        title: "E4 Experts needed: does every cluster get an expert?".into(),
        text: format!(
            "Phase I alone, {seeds} seeds per point. Without restarts each expert lands on a cluster essentially at random, \
             so the chance that all C clusters are found follows the coupon-collector law \
             sum_j (-1)^j binom(C, j) (1 - j/C)^M; restarts of stuck and redundant experts (the default) beat it."
        ),
        ..Section::default()
    };
    for (c, ms) in [(2usize, vec![1, 2, 3, 4, 6, 8]), (4, vec![2, 4, 6, 8])] {
        let axes = [
            (
                "moe.experts",
                ms.iter().map(|&m| Value::from(m)).collect::<Vec<_>>(),
            ),
            ("moe.restart_every", vec![Value::from(0), Value::from(2000)]),
        ];
        let name = format!("e4_c{c}");
        let runs = run_seeds(opts, &name, seeds, &phase_one_alone(c), &axes, progress)?;
        let mut table = Table::new(
            name,
            &[
                "experts",
                "p_all_found_no_restarts",
                "p_all_found_restarts",
                "coupon_collector",
            ],
        );
        let mut curves: [Vec<(f64, f64)>; 3] = Default::default();
        for &m in &ms {
            let (plain, restarted, theory) = (
                all_found(&runs, c, m, 0.0),
                all_found(&runs, c, m, 2000.0),
                coupon_collector(c, m),
            );
            curves[0].push((m as f64, plain));
            curves[1].push((m as f64, restarted));
            curves[2].push((m as f64, theory));
            table
                .rows
                .push(vec![m.to_string(), fmt(plain), fmt(restarted), fmt(theory)]);
        }
        section.figures.push((format!("e4_c{c}"), chart(c, curves)));
        section.tables.push(table);
    }
    Ok(section)
}

/// Phase I alone on `c` clusters of alternating signs: no phase II, one
/// step of phase III, small readout and test sets, no vanilla network.
fn phase_one_alone(c: usize) -> Vec<(&'static str, Value)> {
    let signs: Vec<f64> = (0..c)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    vec![
        ("phase_two.steps", Value::from(0)),
        ("phase_three.steps", Value::from(1)),
        ("phase_three.centre_samples", Value::from(64)),
        ("readout.samples", Value::from(256)),
        ("metrics.test_samples", Value::from(256)),
        ("metrics.log_every", Value::from(0)),
        ("vanilla.enabled", Value::from(false)),
        ("task.clusters", Value::from(c)),
        ("task.signs", Value::from(signs)),
    ]
}

/// The share of seeds with `m` experts and restarts every `restart` steps
/// (0: none) in which every one of the `c` clusters got an expert.
fn all_found(runs: &Runs, c: usize, m: usize, restart: f64) -> f64 {
    let hits: Vec<f64> = runs
        .at(&[("moe.experts", m as f64), ("moe.restart_every", restart)])
        .into_iter()
        .map(|run| {
            let found: BTreeSet<usize> = run
                .summary
                .moe
                .expert_cluster
                .iter()
                .flatten()
                .copied()
                .collect();
            (found.len() == c) as u8 as f64
        })
        .collect();
    mean(&hits)
}

/// Figure `e4_cC`: the measured shares without and with restarts, and the
/// coupon-collector law, against M.
fn chart(c: usize, curves: [Vec<(f64, f64)>; 3]) -> Chart {
    let [plain, restarted, theory] = curves;
    Chart {
        title: format!("E4: every cluster found after phase I, C = {c}"),
        x_label: "experts M".into(),
        y_label: "probability (share of seeds)".into(),
        // A little below 0: points at probability 0 are drawn whole.
        y_range: Some((-0.03, 1.05)),
        series: vec![
            Series::new("measured, no restarts", Mark::LineAndPoints, plain),
            Series::new(
                "measured, restarts (default)",
                Mark::LineAndPoints,
                restarted,
            ),
            Series::new(
                "coupon collector (experts land on clusters at random)",
                Mark::Dashed,
                theory,
            ),
        ],
        ..Chart::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupon_collector_matches_small_cases() {
        // Two clusters: 1 - 2 (1/2)^M.
        for m in 1..8 {
            assert!((coupon_collector(2, m) - (1.0 - 2.0 * 0.5f64.powi(m as i32))).abs() < 1e-12);
        }
        assert_eq!(coupon_collector(4, 3), 0.0);
        // Four clusters, four experts: 4!/4^4.
        assert!((coupon_collector(4, 4) - 24.0 / 256.0).abs() < 1e-12);
    }
}
