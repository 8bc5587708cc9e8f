//! E3 Sample complexity: phase-I samples to weak recovery against d, with
//! the learning rate scaled as theory says (section 7 of the spec), a
//! log-log slope fitted with its 95% interval, and the vanilla network at
//! the same budgets. The line fit is here because only E3 uses it.

use serde_json::Value;

use super::{fmt, grid, round4, run, Claim, Options, Section, Table};
use crate::error::Result;
use crate::report::figure::{Chart, Mark, Series};

/// Least-squares line y = a + b x: (a, b, half-width of b's 95% interval).
pub fn fit_line(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let dof = points.len().saturating_sub(2).max(1);
    let rss: f64 = points.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let se = (rss / dof as f64 / sxx).sqrt();
    (a, b, student_t_975(dof) * se)
}

/// The 97.5% quantile of Student's t with `dof` degrees of freedom.
fn student_t_975(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    TABLE
        .get(dof.saturating_sub(1))
        .copied()
        .unwrap_or(1.96 + 2.4 / dof as f64)
}

/// E3: samples to weak recovery in phase I against d, with the learning
/// rate scaled as lr(d) = 0.003 (32/d)^(k/2), the scaling under which
/// online SGD needs about d^(k-1) samples (docs/theory.md).
pub(super) fn sample_complexity(
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Section> {
    let seeds = if opts.quick { 4 } else { 8 };
    let cases: Vec<(usize, Vec<usize>)> = if opts.quick {
        vec![(3, vec![48, 64, 96, 128])]
    } else {
        vec![(3, vec![48, 64, 128, 256]), (4, vec![48, 64, 96])]
    };
    let mut section = Section {
        title: "E3 Sample complexity: samples to weak recovery against d".into(),
        ..Section::default()
    };
    let mut text = vec![format!(
        "Phase I alone, {seeds} seeds per d, restarts off; the learning rate scales as 0.003 (32/d)^(k*/2) and the \
         vanilla network gets the same budget. A point is the number of phase-I samples seen when the first expert \
         reaches overlap 0.5 with some w*_c. d starts at 48: the best of the M C = 16 random starting overlaps is \
         typically sqrt(2 ln 16 / d), 0.42 at d = 32, close enough to 0.5 that about a quarter of the seeds there \
         recover within a few steps, and those points, at the far left of a log-log fit, set its slope. The dashed line integrates the drift ODE of docs/theory.md from the best of M C starting \
         overlaps, m0 = sqrt(2 ln(M C) / d)."
    )];
    for (k, ds) in cases {
        let link = format!("h{k}");
        let mut measured = Vec::new();
        let mut theory = Vec::new();
        let mut vanilla = Vec::new();
        let mut table = Table {
            name: format!("e3_k{k}"),
            header: [
                "d",
                "lr",
                "seed",
                "samples_to_recovery",
                "vanilla_global_overlap",
            ]
            .map(String::from)
            .to_vec(),
            ..Table::default()
        };
        for &d in &ds {
            let scale = d as f64 / 32.0;
            let lr = 0.003 * scale.powf(-(k as f64) / 2.0);
            let steps = (3000.0 * scale.powi(k as i32 - 1)).ceil() as u64;
            let set = [
                ("task.d", Value::from(d)),
                ("task.local_link", Value::from(link.clone())),
                ("task.global_link", Value::from(link.clone())),
                ("moe.restart_every", Value::from(0)),
                ("phase_one.steps", Value::from(steps)),
                ("phase_one.lr", Value::from(lr)),
                ("phase_one.lr_end", Value::from(lr)),
                ("phase_two.steps", Value::from(0)),
                ("phase_three.steps", Value::from(1)),
                ("phase_three.centre_samples", Value::from(64)),
                ("readout.samples", Value::from(2000)),
                ("metrics.test_samples", Value::from(2000)),
                ("metrics.log_every", Value::from(0)),
                ("vanilla.lr", Value::from(lr)),
                ("vanilla.lr_end", Value::from(lr / 10.0)),
            ];
            let runs = run(
                opts,
                &format!("e3_k{k}_d{d}"),
                &grid(1..=seeds, &set, &[]),
                progress,
            )?;
            for (_, _, summary) in &runs.rows {
                // Phase-I SGD samples only: the centre samples come first.
                let centre = crate::config::Config::default().phase_one.centre_samples as u64;
                let first = summary
                    .moe
                    .phase1_weak_recovery_samples
                    .iter()
                    .flatten()
                    .min()
                    .map(|n| n - centre);
                let v = summary
                    .vanilla
                    .as_ref()
                    .map_or(f64::NAN, |v| v.global_overlap_per_cluster[0]);
                vanilla.push((d as f64, v));
                if let Some(n) = first {
                    measured.push((d as f64, n as f64));
                }
                table.rows.push(vec![
                    d.to_string(),
                    format!("{lr:.3e}"),
                    summary.seed.to_string(),
                    first.map_or("not recovered".into(), |n| n.to_string()),
                    fmt(v),
                ]);
            }
            let mut drift = crate::theory::DriftParams::default_task(d, lr, 64);
            drift.k = k;
            let m0 = (2.0 * (8.0f64 * 2.0).ln() / d as f64).sqrt();
            if let Some(step) = drift.recovery_step(m0, 0.5) {
                theory.push((d as f64, step * 64.0));
            }
        }
        let logs: Vec<(f64, f64)> = measured.iter().map(|&(d, n)| (d.ln(), n.ln())).collect();
        let (a, slope, half) = fit_line(&logs);
        let fitted: Vec<(f64, f64)> = ds
            .iter()
            .map(|&d| (d as f64, (a + slope * (d as f64).ln()).exp()))
            .collect();
        text.push(format!(
            "* k* = {k}: fitted slope {slope:.2} (95% interval {:.2} to {:.2}) over {} recoveries; theory predicts k* - 1 = {}.",
            slope - half,
            slope + half,
            measured.len(),
            k - 1
        ));
        if k == 3 {
            let bar = (1.5, 2.5);
            let recovered_at: std::collections::BTreeSet<u64> =
                measured.iter().map(|p| p.0 as u64).collect();
            let held = (bar.0..=bar.1).contains(&slope);
            section.claims.push(Claim::new(
                "E3.slope_k3",
                "phase-I samples to weak recovery grow like d^s with s in [1.5, 2.5] for k* = 3 (theory: 2)",
                serde_json::json!({ "slope": round4(slope), "ci95": [round4(slope - half), round4(slope + half)], "recoveries": measured.len() }),
                held,
                || {
                    if recovered_at.len() < 2 {
                        format!(
                            "no slope: recoveries at {} of the {} dimensions (a fit needs two)",
                            recovered_at.len(),
                            ds.len()
                        )
                    } else {
                        let side = if slope < bar.0 { "below" } else { "above" };
                        format!(
                            "fitted slope {slope:.2} lies {side} [{}, {}] (95 % interval {:.2} to {:.2}, {} recoveries of {} runs)",
                            bar.0,
                            bar.1,
                            slope - half,
                            slope + half,
                            measured.len(),
                            ds.len() * seeds as usize
                        )
                    }
                },
            ));
        }
        section.figures.push((
            format!("e3_k{k}"),
            Chart {
                title: format!("E3: samples to weak recovery, k* = {k}"),
                x_label: "dimension d".into(),
                y_label: "samples to overlap 0.5".into(),
                log_x: true,
                log_y: true,
                series: vec![
                    Series::new("measured (one point per seed)", Mark::Points, measured),
                    Series::new(
                        format!(
                            "least-squares fit: slope {slope:.2} ± {half:.2} (95 % interval {:.2} to {:.2})",
                            slope - half,
                            slope + half
                        ),
                        Mark::Line,
                        fitted,
                    ),
                    Series::new("drift ODE prediction", Mark::Dashed, theory),
                ],
                ..Chart::default()
            },
        ));
        section.figures.push((
            format!("e3_k{k}_vanilla"),
            Chart {
                title: format!("E3: the vanilla network at the same budgets, k* = {k}"),
                x_label: "dimension d".into(),
                y_label: "best |<w, w*_g>| over its neurons".into(),
                log_x: true,
                y_range: Some((0.0, 1.0)),
                series: vec![Series::new(
                    "vanilla (one point per seed)",
                    Mark::Points,
                    vanilla,
                )],
                ..Chart::default()
            },
        ));
        section.tables.push(table);
    }
    section.text = text.join("\n");
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_fit_recovers_slope_and_covers_it() {
        let points: Vec<(f64, f64)> = (0..20)
            .map(|i| {
                (
                    i as f64,
                    1.0 + 2.0 * i as f64 + if i % 2 == 0 { 0.1 } else { -0.1 },
                )
            })
            .collect();
        let (a, b, half) = fit_line(&points);
        assert!((b - 2.0).abs() < 0.01 && (a - 1.0).abs() < 0.1);
        assert!(half > 0.0 && half < 0.05 && (b - 2.0).abs() < half);
        assert!((student_t_975(10) - 2.228).abs() < 1e-9);
    }
}
