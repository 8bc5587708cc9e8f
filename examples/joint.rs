//! Joint training against the staged algorithm on the same task and
//! budget (docs/joint-training.md): for seeds FIRST to LAST (in
//! parallel), the staged MoE and vanilla network, then joint training with
//! several gates and balancing weights, each MoE beside the vanilla network
//! trained the same way on the same samples. Prints a Markdown table of
//! means (min – max) over the seeds.
//!
//! `cargo run --release --example joint [FIRST LAST] [FIELD=VALUE ...]`
//! (overrides as for `clustermoe run --set`, applied to every variant).

use clustermoe::{config::Config, Experiment, Summary};
use rayon::prelude::*;

/// The variants: a name and their overrides.
const VARIANTS: [(&str, &[&str]); 6] = [
    ("staged (default)", &[]),
    ("joint, top-1, lambda_bal 0.01", &["moe.training=joint"]),
    (
        "joint, top-1, no balancing",
        &["moe.training=joint", "joint.lambda_bal=0.0"],
    ),
    (
        "joint, softmax",
        &["moe.training=joint", "moe.gate=softmax"],
    ),
    (
        "joint, top-2",
        &["moe.training=joint", "moe.gate=top_k", "moe.top_k=2"],
    ),
    (
        "joint, noisy top-2",
        &["moe.training=joint", "moe.gate=noisy_top_k", "moe.top_k=2"],
    ),
];

fn stats(v: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = v.collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mean:.3} ({min:.3} – {max:.3})")
}

fn main() -> Result<(), clustermoe::Error> {
    let (sets, numbers): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.contains('='));
    let args: Vec<u64> = numbers.iter().filter_map(|a| a.parse().ok()).collect();
    let (first, last) = match args[..] {
        [a, b] => (a, b),
        _ => (1, 10),
    };
    println!("| training | MoE rel. MSE | routing purity | MoE local overlap (min over clusters) | MoE global overlap (min) | dead experts | vanilla rel. MSE | samples per model |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, variant) in VARIANTS {
        let mut all: Vec<String> = variant.iter().map(|s| s.to_string()).collect();
        all.extend(sets.iter().cloned());
        let base = Config::from_toml_with_overrides("", &all)?;
        let rows: Vec<Summary> = (first..=last)
            .into_par_iter()
            .map(|seed| {
                let valid = Config {
                    seed,
                    ..base.clone()
                }
                .check()?;
                Experiment::new(&valid).run().map(|o| o.summary)
            })
            .collect::<Result<_, _>>()?;
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            stats(rows.iter().map(|s| s.moe.model.error.test_rel_mse)),
            stats(rows.iter().map(|s| s.moe.routing_purity)),
            stats(
                rows.iter()
                    .map(|s| min(&s.moe.model.local_overlap_per_cluster))
            ),
            stats(
                rows.iter()
                    .map(|s| min(&s.moe.model.global_overlap_per_cluster))
            ),
            rows.iter()
                .filter_map(|s| s.joint.as_ref())
                .map(|j| j.routing.dead_experts.len())
                .sum::<usize>(),
            stats(rows.iter().map(|s| {
                s.vanilla
                    .as_ref()
                    .map_or(f64::NAN, |v| v.error.test_rel_mse)
            })),
            rows[0].samples.moe,
        );
    }
    Ok(())
}
