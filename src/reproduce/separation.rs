//! E1 Separation: the MoE against a vanilla network of as many neurons at
//! the same sample budget, for the default task and four other task
//! families across the theorem's range (section 1 of the spec: the MoE
//! learns w*_g and every w*_c, the vanilla network never w*_g).
//! Its own file because its families and bars are what a reader changes
//! to test the claim elsewhere.

use serde_json::Value;

use super::{
    fmt, grid, mean, min, round4, run, seeds_missed, vanilla_miss, Claim, Options, Runs, Section,
    Table,
};
use crate::error::{Error, Result};
use crate::report::figure::{Chart, Mark, Series};
use crate::report::page::grouped;

/// One task family of E1: only task fields differ from the defaults.
struct Family {
    key: &'static str,
    label: &'static str,
    sets: Vec<(&'static str, Value)>,
    /// Seeds in quick and in full mode.
    seeds: (i64, i64),
}

/// E1's families: the default task and, across the theorem's range, C = 4,
/// k* = 4, links of several Hermite terms, and d = 128.
fn families() -> Vec<Family> {
    use serde_json::json;
    vec![
        Family {
            key: "c2",
            label: "C = 2 (default task)",
            sets: vec![],
            seeds: (10, 20),
        },
        Family {
            key: "c4",
            label: "C = 4",
            sets: vec![
                ("task.clusters", Value::from(4)),
                ("task.signs", json!([1.0, -1.0, 1.0, -1.0])),
            ],
            seeds: (5, 10),
        },
        Family {
            key: "k4",
            label: "k* = 4",
            sets: vec![
                ("task.local_link", json!("h4")),
                ("task.global_link", json!("h4")),
            ],
            seeds: (3, 10),
        },
        Family {
            key: "several",
            label: "several-term links",
            sets: vec![
                ("task.local_link", json!(["h3+0.5*h5", "-h3+0.3*h4"])),
                ("task.global_link", json!("h3-0.4*h5")),
            ],
            seeds: (3, 10),
        },
        Family {
            key: "d128",
            label: "d = 128",
            sets: vec![("task.d", Value::from(128))],
            seeds: (2, 10),
        },
    ]
}

/// The bars of E1's claims.
const MOE_BAR: f64 = 0.20;
const VANILLA_BAR: f64 = 0.40;
const OVERLAP_BAR: f64 = 0.9;
/// The vanilla network's w*_g overlap stays below this.
const VANILLA_OVERLAP_BAR: f64 = 0.5;

/// E1: MoE against vanilla at the same budget, per task family. Also
/// returns the default task's runs: E2 plots seed 1's metrics, E6 sets
/// joint training beside them.
pub(super) fn separation(
    opts: &Options,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Section, Runs)> {
    let mut section = Section {
        title: "E1 Separation: MoE against a vanilla network at the same sample budget".into(),
        ..Section::default()
    };
    let mut lines = Vec::new();
    let mut default_task = None;
    for family in families() {
        let seeds = if opts.quick {
            family.seeds.0
        } else {
            family.seeds.1
        };
        let name = format!("e1_{}", family.key);
        let runs = run(opts, &name, &grid(1..=seeds, &family.sets, &[]), progress)?;
        let label = family.label;
        let moe: Vec<f64> = runs
            .rows
            .iter()
            .map(|r| r.2.moe.model.error.test_rel_mse)
            .collect();
        let vanilla: Vec<f64> = runs
            .rows
            .iter()
            .map(|r| {
                r.2.vanilla
                    .as_ref()
                    .map_or(f64::NAN, |v| v.error.test_rel_mse)
            })
            .collect();
        // The worst overlap of the MoE: w*_g and w*_c in every cluster.
        let moe_global: Vec<f64> = runs
            .rows
            .iter()
            .map(|r| {
                let m = &r.2.moe.model;
                min(&m.global_overlap_per_cluster).min(min(&m.local_overlap_per_cluster))
            })
            .collect();
        let (moe_g, moe_c): (Vec<f64>, Vec<f64>) = runs
            .rows
            .iter()
            .map(|r| {
                let m = &r.2.moe.model;
                (
                    min(&m.global_overlap_per_cluster),
                    min(&m.local_overlap_per_cluster),
                )
            })
            .unzip();
        let seed_ids: Vec<u64> = runs.rows.iter().map(|r| r.2.seed).collect();
        let vanilla_global: Vec<f64> = runs
            .rows
            .iter()
            .map(|r| {
                r.2.vanilla
                    .as_ref()
                    .map_or(f64::NAN, |v| v.global_overlap_per_cluster[0])
            })
            .collect();
        let samples = runs.rows[0].2.samples.moe;
        let moe_ok = (0..moe.len())
            .filter(|&i| moe[i] <= MOE_BAR && moe_global[i] >= OVERLAP_BAR)
            .count();
        let vanilla_ok = (0..moe.len())
            .filter(|&i| vanilla[i] >= VANILLA_BAR && vanilla_global[i] < VANILLA_OVERLAP_BAR)
            .count();
        let n = moe.len();
        lines.push(format!(
            "* {label}, {n} seeds, {} samples per model: MoE relative test MSE mean {:.3} (range {:.3}–{:.3}), \
             every w*_g and w*_c overlap >= {:.3}; vanilla mean {:.3} (range {:.3}–{:.3}), w*_g overlap <= {:.3}.",
            grouped(samples),
            mean(&moe),
            min(&moe),
            moe.iter().copied().fold(f64::MIN, f64::max),
            min(&moe_global),
            mean(&vanilla),
            min(&vanilla),
            vanilla.iter().copied().fold(f64::MIN, f64::max),
            vanilla_global.iter().copied().fold(f64::MIN, f64::max),
        ));
        let key = family.key;
        let moe_needed = (9 * n).div_ceil(10);
        section.claims.push(Claim::new(
            format!("E1.{key}.moe"),
            format!("{label}: the MoE reaches relative test MSE <= {MOE_BAR:.2} with w*_g and w*_c overlaps >= {OVERLAP_BAR} in every cluster in at least 90% of seeds"),
            serde_json::json!({ "seeds_held": moe_ok, "seeds": n, "mean_rel_mse": round4(mean(&moe)) }),
            moe_ok * 10 >= n * 9,
            || {
                seeds_missed(&seed_ids, moe_ok, moe_needed, |i| {
                    let mut m = Vec::new();
                    let low = moe[i] <= MOE_BAR;
                    if !low {
                        m.push(format!("relative MSE {:.3} > {MOE_BAR:.2}", moe[i]));
                    }
                    for (name, v) in [("w*_g", moe_g[i]), ("w*_c", moe_c[i])] {
                        let reached = v >= OVERLAP_BAR;
                        if !reached {
                            m.push(format!("{name} overlap {v:.3} < {OVERLAP_BAR} (worst cluster)"));
                        }
                    }
                    m
                })
            },
        ));
        section.claims.push(Claim::new(
            format!("E1.{key}.vanilla"),
            format!("{label}: the vanilla network stays at relative test MSE >= {VANILLA_BAR:.2} with w*_g overlap < {VANILLA_OVERLAP_BAR} in every seed"),
            serde_json::json!({ "seeds_held": vanilla_ok, "seeds": n, "mean_rel_mse": round4(mean(&vanilla)) }),
            vanilla_ok == n,
            || {
                seeds_missed(&seed_ids, vanilla_ok, n, |i| {
                    vanilla_miss(vanilla[i], vanilla_global[i], VANILLA_BAR, VANILLA_OVERLAP_BAR)
                        .into_iter()
                        .collect()
                })
            },
        ));
        section.tables.push(Table {
            name: format!("e1_{key}"),
            header: [
                "seed",
                "moe_rel_mse",
                "moe_min_overlap",
                "vanilla_rel_mse",
                "vanilla_global_overlap",
                "samples",
            ]
            .map(String::from)
            .to_vec(),
            rows: (0..n)
                .map(|i| {
                    vec![
                        runs.rows[i].2.seed.to_string(),
                        fmt(moe[i]),
                        fmt(moe_global[i]),
                        fmt(vanilla[i]),
                        fmt(vanilla_global[i]),
                        runs.rows[i].2.samples.moe.to_string(),
                    ]
                })
                .collect(),
        });
        let seeds_axis: Vec<f64> = runs.rows.iter().map(|r| r.2.seed as f64).collect();
        let points = |v: &[f64]| {
            seeds_axis
                .iter()
                .copied()
                .zip(v.iter().copied())
                .collect::<Vec<_>>()
        };
        let (first, last) = (seeds_axis[0], *seeds_axis.last().unwrap());
        let bar = |label: String, y: f64, color: usize| {
            Series::new(label, Mark::Dashed, vec![(first, y), (last, y)]).color(color)
        };
        section.figures.push((
            format!("e1_{key}"),
            Chart {
                title: format!("E1: test error per seed, {label}"),
                x_label: "seed".into(),
                y_label: "relative test MSE (MSE / Var y)".into(),
                y_range: Some((0.0, 1.0)),
                series: vec![
                    Series::new("MoE", Mark::Points, points(&moe)).color(0),
                    Series::new("vanilla", Mark::Points, points(&vanilla)).color(1),
                    bar(format!("MoE bar: at most {MOE_BAR:.2}"), MOE_BAR, 0),
                    bar(
                        format!("vanilla bar: at least {VANILLA_BAR:.2}"),
                        VANILLA_BAR,
                        1,
                    ),
                ],
                ..Chart::default()
            },
        ));
        // The overlaps each claim also bars: a seed can miss on them alone.
        section.figures.push((
            format!("e1_{key}_overlaps"),
            Chart {
                title: format!("E1: overlaps per seed, {label}"),
                x_label: "seed".into(),
                y_label: "overlap |<w, w*>|".into(),
                y_range: Some((0.0, 1.05)),
                series: vec![
                    Series::new(
                        "MoE: worst of its w*_g and w*_c overlaps (every cluster)",
                        Mark::Points,
                        points(&moe_global),
                    )
                    .color(0),
                    Series::new(
                        "vanilla: its best w*_g overlap",
                        Mark::Points,
                        points(&vanilla_global),
                    )
                    .color(1),
                    bar(format!("MoE bar: at least {OVERLAP_BAR}"), OVERLAP_BAR, 0),
                    bar(
                        format!("vanilla bar: below {VANILLA_OVERLAP_BAR}"),
                        VANILLA_OVERLAP_BAR,
                        1,
                    ),
                ],
                ..Chart::default()
            },
        ));
        if family.sets.is_empty() {
            default_task = Some(runs);
        }
    }
    section.text = lines.join("\n");
    let default_task = default_task.ok_or_else(|| Error::Figure {
        message: "E2 and E6 read the default task's runs, which E1 did not run".into(),
    })?;
    Ok((section, default_task))
}
