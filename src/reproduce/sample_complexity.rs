//! E3 Sample complexity: phase-I samples to weak recovery against d, with
//! the learning rate scaled as theory says (section 7 of the spec), a
//! log-log slope fitted with its 95% interval, and the vanilla network at
//! the same budgets.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::runs::{run_seeds, Runs};
use super::stats::{fit_line, fmt, round4};
use super::{Claim, Options, Section, Table};
use crate::config::Config;
use crate::error::Result;
use crate::report::figure::{Chart, Mark, Series};
use crate::theory::DriftParams;

/// The bar of the k* = 3 slope's claim (theory: 2).
const SLOPE_BAR: (f64, f64) = (1.5, 2.5);

/// E3: samples to weak recovery in phase I against d, with the learning
/// rate scaled as lr(d) = 0.003 (32/d)^(k/2), the scaling under which
/// online SGD needs about d^(k-1) samples (docs/theory.md).
pub(super) fn sample_complexity(
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Section> {
    let seeds = opts.seeds(4, 8);
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
        let mut recoveries = Recoveries::new(k);
        for &d in &ds {
            let (lr, set) = phase_one_alone(k, d);
            let runs = run_seeds(opts, &format!("e3_k{k}_d{d}"), seeds, &set, &[], progress)?;
            recoveries.add(&runs, d, lr);
        }
        let fit = recoveries.fit(&ds);
        text.push(format!(
            "* k* = {k}: fitted slope {:.2} (95% interval {:.2} to {:.2}) over {} recoveries; theory predicts k* - 1 = {}.",
            fit.slope,
            fit.slope - fit.half,
            fit.slope + fit.half,
            recoveries.measured.len(),
            k - 1
        ));
        if k == 3 {
            section
                .claims
                .push(recoveries.slope_claim(&fit, ds.len(), seeds as usize));
        }
        section.figures.extend(recoveries.figures(&fit));
        section.tables.push(recoveries.table);
    }
    section.text = text.join("\n");
    Ok(section)
}

/// Phase I alone at dimension `d` for links He_k: the learning rate
/// 0.003 (d/32)^(-k/2) and 3000 (d/32)^(k-1) steps, the vanilla network at
/// the same rate; returns the rate and the fields to set.
fn phase_one_alone(k: usize, d: usize) -> (f64, Vec<(&'static str, Value)>) {
    let link = format!("h{k}");
    let scale = d as f64 / 32.0;
    let lr = 0.003 * scale.powf(-(k as f64) / 2.0);
    let steps = (3000.0 * scale.powi(k as i32 - 1)).ceil() as u64;
    let set = vec![
        ("task.d", Value::from(d)),
        ("task.local_link", Value::from(link.clone())),
        ("task.global_link", Value::from(link)),
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
    (lr, set)
}

/// One k*'s points over d: the measured recoveries, the drift ODE's
/// prediction, the vanilla network's overlaps, and table `e3_kK`.
struct Recoveries {
    k: usize,
    /// (d, phase-I samples to overlap 0.5), one per seed that recovered.
    measured: Vec<(f64, f64)>,
    /// (d, samples the drift ODE predicts).
    theory: Vec<(f64, f64)>,
    /// (d, the vanilla network's best w*_g overlap), one per seed.
    vanilla: Vec<(f64, f64)>,
    table: Table,
}

/// The log-log line through the recoveries.
struct Fit {
    slope: f64,
    /// Half-width of the slope's 95% interval.
    half: f64,
    /// The line at each d.
    fitted: Vec<(f64, f64)>,
}

impl Recoveries {
    fn new(k: usize) -> Self {
        Recoveries {
            k,
            measured: Vec::new(),
            theory: Vec::new(),
            vanilla: Vec::new(),
            table: Table::new(
                format!("e3_k{k}"),
                &[
                    "d",
                    "lr",
                    "seed",
                    "samples_to_recovery",
                    "vanilla_global_overlap",
                ],
            ),
        }
    }

    /// The runs at dimension `d` (learning rate `lr`), and the prediction there.
    fn add(&mut self, runs: &Runs, d: usize, lr: f64) {
        for run in &runs.rows {
            let summary = &run.summary;
            // Phase-I SGD samples only: the centre samples come first.
            let centre = Config::default().phase_one.centre_samples as u64;
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
            self.vanilla.push((d as f64, v));
            if let Some(n) = first {
                self.measured.push((d as f64, n as f64));
            }
            self.table.rows.push(vec![
                d.to_string(),
                format!("{lr:.3e}"),
                summary.seed.to_string(),
                first.map_or("not recovered".into(), |n| n.to_string()),
                fmt(v),
            ]);
        }
        let mut drift = DriftParams::default_task(d, lr, 64);
        drift.k = self.k;
        let m0 = (2.0 * (8.0f64 * 2.0).ln() / d as f64).sqrt();
        if let Some(step) = drift.recovery_step(m0, 0.5) {
            self.theory.push((d as f64, step * 64.0));
        }
    }

    /// The least-squares line through the recoveries on log-log axes,
    /// drawn at the dimensions `ds`.
    fn fit(&self, ds: &[usize]) -> Fit {
        let logs: Vec<(f64, f64)> = self
            .measured
            .iter()
            .map(|&(d, n)| (d.ln(), n.ln()))
            .collect();
        let (a, slope, half) = fit_line(&logs);
        let fitted = ds
            .iter()
            .map(|&d| (d as f64, (a + slope * (d as f64).ln()).exp()))
            .collect();
        Fit {
            slope,
            half,
            fitted,
        }
    }

    /// Claim E3.slope_k3: the fitted slope within the bar; `dims` the
    /// dimensions run, `seeds` the seeds at each.
    fn slope_claim(&self, fit: &Fit, dims: usize, seeds: usize) -> Claim {
        let (slope, half, bar) = (fit.slope, fit.half, SLOPE_BAR);
        let measured = &self.measured;
        let recovered_at: BTreeSet<u64> = measured.iter().map(|p| p.0 as u64).collect();
        let held = (bar.0..=bar.1).contains(&slope);
        Claim::new(
            "E3.slope_k3",
            "phase-I samples to weak recovery grow like d^s with s in [1.5, 2.5] for k* = 3 (theory: 2)",
            json!({ "slope": round4(slope), "ci95": [round4(slope - half), round4(slope + half)], "recoveries": measured.len() }),
            held,
            || {
                if recovered_at.len() < 2 {
                    format!(
                        "no slope: recoveries at {} of the {} dimensions (a fit needs two)",
                        recovered_at.len(),
                        dims
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
                        dims * seeds
                    )
                }
            },
        )
    }

    /// Figures `e3_kK` (recoveries, fit and prediction) and
    /// `e3_kK_vanilla` (the vanilla network at the same budgets).
    fn figures(&self, fit: &Fit) -> [(String, Chart); 2] {
        let (k, slope, half) = (self.k, fit.slope, fit.half);
        let recoveries = Chart {
            title: format!("E3: samples to weak recovery, k* = {k}"),
            x_label: "dimension d".into(),
            y_label: "samples to overlap 0.5".into(),
            log_x: true,
            log_y: true,
            series: vec![
                Series::new(
                    "measured (one point per seed)",
                    Mark::Points,
                    self.measured.clone(),
                ),
                Series::new(
                    format!(
                        "least-squares fit: slope {slope:.2} ± {half:.2} (95 % interval {:.2} to {:.2})",
                        slope - half,
                        slope + half
                    ),
                    Mark::Line,
                    fit.fitted.clone(),
                ),
                Series::new("drift ODE prediction", Mark::Dashed, self.theory.clone()),
            ],
            ..Chart::default()
        };
        let vanilla = Chart {
            title: format!("E3: the vanilla network at the same budgets, k* = {k}"),
            x_label: "dimension d".into(),
            y_label: "best |<w, w*_g>| over its neurons".into(),
            log_x: true,
            y_range: Some((0.0, 1.0)),
            series: vec![Series::new(
                "vanilla (one point per seed)",
                Mark::Points,
                self.vanilla.clone(),
            )],
            ..Chart::default()
        };
        [
            (format!("e3_k{k}"), recoveries),
            (format!("e3_k{k}_vanilla"), vanilla),
        ]
    }
}
