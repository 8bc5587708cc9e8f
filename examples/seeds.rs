//! Runs the default configuration for seeds 1 to 10 (in parallel) and
//! prints the results tables as Markdown (README.md, docs/results.md): the
//! default task, and with overrides every family of "Across the theorem's
//! range".
//!
//! `cargo run --release --example seeds [FIRST LAST] [FIELD=VALUE ...]`
//! (overrides as for `clustermoe run --set`).

use clustermoe::{config::Config, Experiment};
use rayon::prelude::*;

fn fmt(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn main() -> Result<(), clustermoe::Error> {
    let (sets, numbers): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.contains('='));
    let args: Vec<u64> = numbers.iter().filter_map(|a| a.parse().ok()).collect();
    let base = Config::from_toml_with_overrides("", &sets)?;
    let (first, last) = match args[..] {
        [a, b] => (a, b),
        _ => (1, 10),
    };
    let rows: Vec<_> = (first..=last)
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
    println!("| seed | MoE rel. MSE | MoE global overlap (per cluster) | MoE local overlap | routing purity | vanilla rel. MSE | vanilla global overlap | samples per model |");
    println!("|---:|---:|---|---|---:|---:|---:|---:|");
    for s in &rows {
        let v = s.vanilla.as_ref().expect("vanilla enabled by default");
        println!(
            "| {} | {:.3} | {} | {} | {:.4} | {:.3} | {:.3} | {} |",
            s.seed,
            s.moe.model.error.test_rel_mse,
            fmt(&s.moe.model.global_overlap_per_cluster),
            fmt(&s.moe.model.local_overlap_per_cluster),
            s.moe.routing_purity,
            v.error.test_rel_mse,
            v.global_overlap_per_cluster[0],
            s.samples.moe,
        );
    }
    let moe_ok = rows
        .iter()
        .filter(|s| {
            s.moe.model.error.test_rel_mse <= 0.20
                && s.moe
                    .model
                    .global_overlap_per_cluster
                    .iter()
                    .chain(&s.moe.model.local_overlap_per_cluster)
                    .all(|&o| o >= 0.9)
        })
        .count();
    let vanilla_ok = rows
        .iter()
        .filter_map(|s| s.vanilla.as_ref())
        .filter(|v| v.error.test_rel_mse >= 0.40 && v.global_overlap_per_cluster[0] < 0.5)
        .count();
    println!();
    println!(
        "MoE rel. MSE <= 0.20 and every global and local overlap >= 0.9 in {moe_ok} of {} seeds (mean rel. MSE {:.3}); vanilla rel. MSE >= 0.40 and global overlap < 0.5 in {vanilla_ok} of {}.",
        rows.len(),
        rows.iter().map(|s| s.moe.model.error.test_rel_mse).sum::<f64>() / rows.len() as f64,
        rows.len()
    );
    Ok(())
}
