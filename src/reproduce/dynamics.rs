//! E2 Dynamics: what each phase learns, as overlaps (and the router's
//! purity) against the samples seen, read from the metrics of one run of
//! E1 (default task, seed 1) beside the drift ODE of docs/theory.md.
//! Nothing is run here: its own file because it reads a run's metric
//! records rather than summaries.

use std::collections::BTreeMap;

use super::stats::min;
use super::Section;
use crate::config::Config;
use crate::error::Result;
use crate::metrics::Record;
use crate::phase::{ModelKind, Phase};
use crate::report::figure::{Chart, Mark, Series};
use crate::store::RunDir;
use crate::theory::{sign_matched_start, DriftParams};

/// The prediction's label; its series is drawn dashed in black.
const THEORY_LABEL: &str = "drift ODE (phase I, best sign-matched start)";

/// E2: overlaps against samples through all phases, from the metrics of
/// the run in `run_dir` (seed 1 of E1's default task).
pub(super) fn dynamics(run_dir: &RunDir) -> Result<Section> {
    let records = run_dir.read_metrics()?;
    let markers = phase_starts(&records);
    let (mut series, experts) = curves(&records);
    series.insert(THEORY_LABEL.into(), drift_prediction());
    Ok(Section {
        title: "E2 Dynamics: what each phase learns".into(),
        text: "Phase I: each expert's tied direction finds one cluster's w*_c (second figure: stuck and redundant \
               experts restart every 2,000 steps). Phase II: the router learns to send each cluster \
               to its expert (purity). Phase III: inside its cluster an expert's fresh neurons find both w*_c and w*_g. The \
               vanilla network, on the same samples, finds the w*_c and never w*_g. Each curve is the worst cluster's (for \
               phase I: the best expert's overlap with each w*_c); dotted lines mark where the MoE's phases start."
            .into(),
        figures: vec![
            ("e2_dynamics".into(), dynamics_chart(series, markers)),
            ("e2_phase_one".into(), phase_one_chart(experts)),
        ],
        ..Section::default()
    })
}

/// Where each MoE phase starts: the samples the phase before had drawn at
/// its last record (logged at its last step), phase I at 0.
fn phase_starts(records: &[Record]) -> Vec<(f64, String)> {
    let mut markers: Vec<(f64, String)> = Vec::new();
    let moe: Vec<_> = records
        .iter()
        .filter(|r| r.model == ModelKind::Moe)
        .collect();
    for (phase, label) in [
        (Phase::PhaseOne, "MoE phase I"),
        (Phase::PhaseTwo, "phase II"),
        (Phase::PhaseThree, "phase III"),
    ] {
        if let Some(k) = moe.iter().position(|r| r.phase == phase) {
            let start = if k == 0 { 0 } else { moe[k - 1].samples };
            markers.push((start as f64, label.to_string()));
        }
    }
    markers
}

/// The curves of both models over samples, by label (each phase's
/// worst-cluster overlaps, the router's purity and alignment), and phase I
/// expert by expert: each one's overlap with the w*_c it is closest to.
#[allow(clippy::type_complexity)]
fn curves(records: &[Record]) -> (BTreeMap<String, Vec<(f64, f64)>>, Vec<Vec<(f64, f64)>>) {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut experts: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut push =
        |name: String, x: u64, y: f64| series.entry(name).or_default().push((x as f64, y));
    for r in records {
        let x = r.samples;
        match (r.model, r.phase) {
            (ModelKind::Moe, Phase::PhaseOne) => {
                if let Some(m) = &r.expert_local_overlap {
                    experts.resize(m.len(), Vec::new());
                    for (e, row) in m.iter().enumerate() {
                        experts[e].push((x as f64, row.iter().copied().fold(0.0, f64::max)));
                    }
                    for c in 0..m[0].len() {
                        push(
                            format!("MoE phase I: best expert |<u, w*_{}>|", c + 1),
                            x,
                            m.iter().map(|row| row[c]).fold(0.0, f64::max),
                        );
                    }
                }
            }
            (ModelKind::Moe, Phase::PhaseTwo) => {
                if let Some(p) = r.routing_purity {
                    push("MoE phase II: routing purity".into(), x, p);
                }
                if let Some(cos) = &r.router_cosine {
                    // Per cluster the best-aligned router row; the worse cluster.
                    let clusters = cos.first().map_or(0, Vec::len);
                    let per_cluster: Vec<f64> = (0..clusters)
                        .map(|c| cos.iter().map(|row| row[c]).fold(f64::MIN, f64::max))
                        .collect();
                    push(
                        "MoE phase II: router cos(theta, v_c)".into(),
                        x,
                        min(&per_cluster),
                    );
                }
            }
            (ModelKind::Moe, Phase::PhaseThree) | (ModelKind::Vanilla, Phase::Train) => {
                let who = if r.model == ModelKind::Moe {
                    "MoE phase III"
                } else {
                    "vanilla"
                };
                if let (Some(l), Some(g)) =
                    (&r.local_overlap_per_cluster, &r.global_overlap_per_cluster)
                {
                    push(format!("{who}: best |<w, w*_c>|"), x, min(l));
                    push(format!("{who}: best |<w, w*_g>|"), x, min(g));
                }
            }
            // Phase IV, the vanilla readout and the test are single points,
            // the vanilla network has no MoE phases, and E2 trains no joint
            // model: nothing to draw.
            (
                ModelKind::Moe,
                Phase::PhaseFour | Phase::Train | Phase::Readout | Phase::Test | Phase::Joint,
            )
            | (
                ModelKind::Vanilla,
                Phase::PhaseOne
                | Phase::PhaseTwo
                | Phase::PhaseThree
                | Phase::PhaseFour
                | Phase::Readout
                | Phase::Test
                | Phase::Joint,
            ) => {}
        }
    }
    (series, experts)
}

/// The drift ODE of docs/theory.md from the expected best starting overlap
/// that can grow (with phase I's alternating signs, the best of the M C
/// sign-matched overlaps: [`sign_matched_start`]), over the first quarter
/// of phase I, in samples the MoE has seen.
fn drift_prediction() -> Vec<(f64, f64)> {
    let defaults = Config::default();
    let valid = defaults.check().expect("the defaults are valid");
    let (d, p1) = (defaults.task.d, &valid.phase_one);
    let drift = DriftParams::default_task(d, p1.schedule.lr, p1.batch);
    let k = valid.information_exponent();
    let m0 = sign_matched_start(k, d, valid.experts(), defaults.task.clusters);
    let offset = p1.centre_samples as f64;
    drift
        .trajectory(m0, p1.steps as f64 / 4.0, 100)
        .into_iter()
        .map(|pt| (offset + pt.samples, pt.overlap))
        .collect()
}

/// Figure `e2_dynamics`: every curve in its own colour, the prediction
/// dashed in black, the phases' starts marked.
fn dynamics_chart(series: BTreeMap<String, Vec<(f64, f64)>>, markers: Vec<(f64, String)>) -> Chart {
    Chart {
        title: "E2: learning dynamics, default task, seed 1".into(),
        x_label: "samples seen by the model".into(),
        y_label: "overlap or purity (worst cluster)".into(),
        y_range: Some((0.0, 1.05)),
        series: series
            .into_iter()
            .map(|(label, points)| {
                if label == THEORY_LABEL {
                    Series::new(label, Mark::Dashed, points).color(6)
                } else {
                    Series::new(label, Mark::Line, points)
                }
            })
            .collect(),
        markers,
        ..Chart::default()
    }
}

/// Figure `e2_phase_one`: phase I expert by expert.
fn phase_one_chart(experts: Vec<Vec<(f64, f64)>>) -> Chart {
    Chart {
        title: "E2: phase I expert by expert, default task, seed 1".into(),
        x_label: "samples seen by the MoE".into(),
        y_label: "max_c |<u_m, w*_c>|".into(),
        y_range: Some((0.0, 1.05)),
        series: experts
            .into_iter()
            .enumerate()
            .map(|(e, points)| Series::new(format!("expert {}", e + 1), Mark::Line, points))
            .collect(),
        ..Chart::default()
    }
}
