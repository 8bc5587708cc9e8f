//! E4 Experts needed: the share of seeds in which every cluster gets a
//! specialised expert after phase I, against the number of experts M,
//! without and with restarts, beside the coupon-collector law that random
//! specialisation would follow (section 4 of the spec: M >= about C log C).

use serde_json::Value;

use super::{fmt, grid, mean, run, Options, Section, Table};
use crate::error::Result;
use crate::report::figure::{Chart, Mark, Series};

/// P(all C clusters covered) when M experts pick clusters uniformly at random.
pub fn coupon_collector(clusters: usize, experts: usize) -> f64 {
    (0..=clusters)
        .map(|j| {
            let binom = (0..j).fold(1.0, |acc, i| acc * (clusters - i) as f64 / (i + 1) as f64);
            let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
            sign * binom * (1.0 - j as f64 / clusters as f64).powi(experts as i32)
        })
        .sum()
}

/// E4: the probability that every cluster gets a specialised expert, against M.
pub(super) fn experts_needed(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let seeds = if opts.quick { 20 } else { 100 };
    let phase_one_only = [
        ("phase_two.steps", Value::from(0)),
        ("phase_three.steps", Value::from(1)),
        ("phase_three.centre_samples", Value::from(64)),
        ("readout.samples", Value::from(256)),
        ("metrics.test_samples", Value::from(256)),
        ("metrics.log_every", Value::from(0)),
        ("vanilla.enabled", Value::from(false)),
    ];
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
        let mut set: Vec<(&str, Value)> = phase_one_only.to_vec();
        set.push(("task.clusters", Value::from(c)));
        set.push((
            "task.signs",
            Value::from(
                (0..c)
                    .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
                    .collect::<Vec<_>>(),
            ),
        ));
        let axes = [
            (
                "moe.experts",
                ms.iter().map(|&m| Value::from(m)).collect::<Vec<_>>(),
            ),
            ("moe.restart_every", vec![Value::from(0), Value::from(2000)]),
        ];
        let runs = run(
            opts,
            &format!("e4_c{c}"),
            &grid(1..=seeds, &set, &axes),
            progress,
        )?;
        let mut table = Table {
            name: format!("e4_c{c}"),
            header: [
                "experts",
                "p_all_found_no_restarts",
                "p_all_found_restarts",
                "coupon_collector",
            ]
            .map(String::from)
            .to_vec(),
            ..Table::default()
        };
        let mut curves: [Vec<(f64, f64)>; 3] = Default::default();
        for &m in &ms {
            let share = |restart: f64| {
                let hits: Vec<f64> = (0..runs.rows.len())
                    .filter(|&i| {
                        runs.value(i, "moe.experts") == m as f64
                            && runs.value(i, "moe.restart_every") == restart
                    })
                    .map(|i| {
                        let found: std::collections::BTreeSet<usize> = runs.rows[i]
                            .2
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
            };
            let (plain, restarted, theory) = (share(0.0), share(2000.0), coupon_collector(c, m));
            curves[0].push((m as f64, plain));
            curves[1].push((m as f64, restarted));
            curves[2].push((m as f64, theory));
            table
                .rows
                .push(vec![m.to_string(), fmt(plain), fmt(restarted), fmt(theory)]);
        }
        let [plain, restarted, theory] = curves;
        section.figures.push((
            format!("e4_c{c}"),
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
            },
        ));
        section.tables.push(table);
    }
    Ok(section)
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
