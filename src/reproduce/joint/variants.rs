//! E6's variants of joint training, each run over the seeds: what each
//! measured, and its curves over training (online error, purity, overlaps),
//! which `figures.rs` draws.

use serde_json::{json, Value};

use super::measured::Measured;
use crate::error::Result;
use crate::metrics::Record;
use crate::phase::{ModelKind, Phase};
use crate::report::figure::{Mark, Series};
use crate::reproduce::runs::{run_seeds, Runs};
use crate::reproduce::stats::min;
use crate::reproduce::Options;

/// One way of training the MoE jointly: only gate and balancing differ.
pub(super) struct Variant {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    pub(super) sets: Vec<(&'static str, Value)>,
}

/// Softmax and top-2 gates with and without the balancing loss, and top-1
/// with it (the Switch Transformer's recipe, and joint training's default).
pub(super) fn variants() -> Vec<Variant> {
    let v = |key, label, gate: &str, balance: f64| Variant {
        key,
        label,
        sets: vec![
            ("moe.gate", json!(gate)),
            ("joint.lambda_bal", json!(balance)),
        ],
    };
    vec![
        v("softmax", "joint softmax", "softmax", 0.0),
        v("softmax_bal", "joint softmax + balancing", "softmax", 0.01),
        v("top2", "joint top-2", "top_k", 0.0),
        v("top2_bal", "joint top-2 + balancing", "top_k", 0.01),
        v("top1_bal", "joint top-1 + balancing", "top1", 0.01),
    ]
}

/// The variant whose runs also train the joint vanilla network (it does not
/// depend on the MoE's gate) and whose budget is swept.
pub(super) const REFERENCE: &str = "top1_bal";

/// One variant's runs over the seeds, what they measured, and their curves.
pub(super) struct VariantRuns {
    pub(super) variant: Variant,
    pub(super) runs: Runs,
    /// The jointly trained MoE of each seed.
    pub(super) moe: Measured,
    /// Samples per model.
    pub(super) samples: u64,
    /// Seed 1's online error: the MoE's and, for the reference, the
    /// vanilla network's (as losses).
    pub(super) training: Vec<Series>,
    /// Every seed's routing purity, thin, in the variant's colour.
    pub(super) purity: Vec<Series>,
    /// For the reference, seed 1's worst-cluster overlaps of both models.
    pub(super) overlaps: Vec<Series>,
}

impl VariantRuns {
    /// Runs (or resumes) `variant` over seeds 1 to `seeds` under
    /// `out/sweeps/e6_KEY`; `colour` is its colour in the purity figure.
    pub(super) fn run(
        opts: &Options,
        variant: Variant,
        seeds: i64,
        colour: usize,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Self> {
        let is_reference = variant.key == REFERENCE;
        let mut sets = variant.sets.clone();
        sets.push(("moe.training", json!("joint")));
        sets.push(("vanilla.enabled", json!(is_reference)));
        let name = format!("e6_{}", variant.key);
        let runs = run_seeds(opts, &name, seeds, &sets, &[], progress)?;
        let moe = Measured::moe(&runs, seeds);
        let samples = runs.rows[0].summary.samples.moe;
        let records = seed_one_records(&runs)?;
        let mut training = vec![curve(&records, variant.label, ModelKind::Moe, |r| {
            r.loss_main
        })];
        let purity = purity_curves(&runs, variant.label, colour)?;
        let mut overlaps = Vec::new();
        if is_reference {
            training.push(curve(&records, "joint vanilla", ModelKind::Vanilla, |r| {
                r.loss_main
            }));
            overlaps = overlap_curves(&records, variant.label);
        }
        Ok(VariantRuns {
            variant,
            runs,
            moe,
            samples,
            training,
            purity,
            overlaps,
        })
    }
}

/// The metric records of seed 1's run.
fn seed_one_records(runs: &Runs) -> Result<Vec<Record>> {
    let run = runs.seed_one().expect("every E6 grid starts at seed 1");
    run.dir.read_metrics()
}

/// Purity of every seed over training: one thin line each, in the
/// variant's colour, labelled once.
fn purity_curves(runs: &Runs, label: &str, colour: usize) -> Result<Vec<Series>> {
    let mut by_seed: Vec<_> = runs.rows.iter().collect();
    by_seed.sort_by_key(|r| r.summary.seed);
    let mut curves = Vec::new();
    for (k, run) in by_seed.into_iter().enumerate() {
        let label = if k == 0 { label } else { "" };
        let mut c = curve(&run.dir.read_metrics()?, label, ModelKind::Moe, |r| {
            r.routing_purity
        })
        .color(colour);
        c.thin = true;
        curves.push(c);
    }
    Ok(curves)
}

/// Seed 1's worst-cluster w*_c and w*_g overlaps over training, of the MoE
/// (variant `label`) and of the joint vanilla network.
fn overlap_curves(records: &[Record], label: &str) -> Vec<Series> {
    let mut curves = Vec::new();
    for (model, who) in [
        (ModelKind::Moe, label),
        (ModelKind::Vanilla, "joint vanilla"),
    ] {
        curves.push(curve(records, &format!("{who}: |<w, w*_c>|"), model, |r| {
            r.local_overlap_per_cluster.as_deref().map(min)
        }));
        curves.push(curve(records, &format!("{who}: |<w, w*_g>|"), model, |r| {
            r.global_overlap_per_cluster.as_deref().map(min)
        }));
    }
    curves
}

/// A series over samples from the joint records of `model`.
fn curve(
    records: &[Record],
    label: &str,
    model: ModelKind,
    value: impl Fn(&Record) -> Option<f64>,
) -> Series {
    Series::new(
        label,
        Mark::Line,
        records
            .iter()
            .filter(|r| r.model == model && r.phase == Phase::Joint)
            .filter_map(|r| value(r).map(|v| (r.samples as f64, v)))
            .collect(),
    )
}
