//! `clustermoe reproduce`: the paper's claims as experiments run through the
//! sweep machinery, written as a report (Markdown and self-contained HTML),
//! figures (SVG), tables (CSV) and `claims.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::experiment::Summary;
use crate::metrics::Record;
use crate::phase::{ModelKind, Phase};
use crate::report::figure::{Chart, Legend, Mark, Series};
use crate::store::output;
use crate::sweep::{self, GridFile, Shard};

/// How to reproduce.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer seeds and smaller grids: minutes on a laptop.
    pub quick: bool,
    pub out: PathBuf,
    /// Runs at a time.
    pub jobs: usize,
}

/// A claim, the figure measured for it and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    pub id: String,
    pub claim: String,
    pub measured: Value,
    pub held: bool,
}

/// A table of the report, also written as CSV.
#[derive(Clone, Debug, Default)]
struct Table {
    name: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// One experiment's part of the report.
#[derive(Debug, Default)]
struct Section {
    title: String,
    text: String,
    figures: Vec<(String, Chart)>,
    tables: Vec<Table>,
    claims: Vec<Claim>,
}

/// A sweep's runs: grid values and summary, in grid order.
struct Runs {
    rows: Vec<(String, BTreeMap<String, Value>, Summary)>,
}

impl Runs {
    fn value(&self, i: usize, key: &str) -> f64 {
        self.rows[i]
            .1
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }
}

fn grid(
    seeds: std::ops::RangeInclusive<i64>,
    set: &[(&str, Value)],
    axes: &[(&str, Vec<Value>)],
) -> GridFile {
    let to_toml = |v: &Value| toml::Value::try_from(v).expect("JSON scalars and arrays are TOML");
    GridFile {
        base: None,
        seeds: Some(sweep::Axis::List(seeds.map(toml::Value::Integer).collect())),
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), to_toml(v)))
            .collect(),
        grid: axes
            .iter()
            .map(|(k, vs)| {
                (
                    k.to_string(),
                    sweep::Axis::List(vs.iter().map(to_toml).collect()),
                )
            })
            .collect(),
    }
}

/// Runs (or resumes) a grid under `out/name` and reads back every run.
fn run(
    opts: &Options,
    name: &str,
    grid: &GridFile,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Runs> {
    let dir = opts.out.join("sweeps").join(name);
    let runs = grid.expand(Path::new("."))?;
    let report = sweep::run_grid(
        grid,
        Path::new("."),
        &dir,
        opts.jobs,
        Shard::ALL,
        &crate::store::checkpoint::Control::default(),
        &|done, planned, _| progress(&format!("{name}: run {done}/{planned}")),
    )?;
    if !report.failed.is_empty() {
        for (id, e) in &report.failed {
            progress(&format!("{name}: run {id} failed: {e}"));
        }
        return Err(Error::RunsFailed {
            failed: report.failed.len(),
            planned: report.planned,
        });
    }
    let rows = runs
        .into_iter()
        .map(|(run, values)| {
            let path = dir.join("runs").join(&run.id).join("summary.json");
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Unreadable {
                path: path.clone(),
                source,
            })?;
            let summary: Summary = serde_json::from_str(&text).map_err(|e| Error::Parse {
                input: path.into(),
                message: e.to_string(),
            })?;
            Ok((run.id, values, summary))
        })
        .collect::<Result<_>>()?;
    Ok(Runs { rows })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Four decimals, for the figures shown in claims.
fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

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

/// E1: MoE against vanilla at the same budget, per task family.
fn separation(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let mut section = Section {
        title: "E1 Separation: MoE against a vanilla network at the same sample budget".into(),
        ..Section::default()
    };
    let mut lines = Vec::new();
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
            .filter(|&i| vanilla[i] >= VANILLA_BAR && vanilla_global[i] < 0.5)
            .count();
        let n = moe.len();
        lines.push(format!(
            "* {label}, {n} seeds, {samples} samples per model: MoE relative test MSE mean {:.3} (range {:.3}–{:.3}), \
             every w*_g and w*_c overlap >= {:.3}; vanilla mean {:.3} (range {:.3}–{:.3}), w*_g overlap <= {:.3}.",
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
        section.claims.push(Claim {
            id: format!("E1.{key}.moe"),
            claim: format!("{label}: the MoE reaches relative test MSE <= {MOE_BAR:.2} with w*_g and w*_c overlaps >= {OVERLAP_BAR} in every cluster in at least 90% of seeds"),
            measured: serde_json::json!({ "seeds_held": moe_ok, "seeds": n, "mean_rel_mse": round4(mean(&moe)) }),
            held: moe_ok * 10 >= n * 9,
        });
        section.claims.push(Claim {
            id: format!("E1.{key}.vanilla"),
            claim: format!("{label}: the vanilla network stays at relative test MSE >= {VANILLA_BAR:.2} with w*_g overlap < 0.5 in every seed"),
            measured: serde_json::json!({ "seeds_held": vanilla_ok, "seeds": n, "mean_rel_mse": round4(mean(&vanilla)) }),
            held: vanilla_ok == n,
        });
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
        section.figures.push((
            format!("e1_{key}"),
            Chart {
                title: format!("E1: test error per seed, {label}"),
                x_label: "seed".into(),
                y_label: "relative test MSE (MSE / Var y)".into(),
                log_x: false,
                log_y: false,
                y_range: Some((0.0, 1.0)),
                legend: Legend::MiddleRight,
                series: vec![
                    Series {
                        label: "MoE".into(),
                        points: points(&moe),
                        mark: Mark::Points,
                    },
                    Series {
                        label: "vanilla".into(),
                        points: points(&vanilla),
                        mark: Mark::Points,
                    },
                    Series {
                        label: format!("MoE threshold {MOE_BAR:.2}"),
                        points: vec![
                            (seeds_axis[0], MOE_BAR),
                            (*seeds_axis.last().unwrap(), MOE_BAR),
                        ],
                        mark: Mark::Dashed,
                    },
                    Series {
                        label: format!("vanilla threshold {VANILLA_BAR:.2}"),
                        points: vec![
                            (seeds_axis[0], VANILLA_BAR),
                            (*seeds_axis.last().unwrap(), VANILLA_BAR),
                        ],
                        mark: Mark::Dashed,
                    },
                ],
            },
        ));
    }
    section.text = lines.join("\n");
    Ok(section)
}

/// E2: overlaps against samples through all phases, from seed 1 of E1.
fn dynamics(opts: &Options) -> Result<Section> {
    let dir = opts.out.join("sweeps").join("e1_c2");
    let runs = GridFile {
        seeds: Some(sweep::Axis::List(vec![toml::Value::Integer(1)])),
        ..GridFile::default()
    }
    .expand(Path::new("."))?;
    let path = dir.join("runs").join(&runs[0].0.id).join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Unreadable {
        path: path.clone(),
        source,
    })?;
    let records: Vec<Record> = text
        .lines()
        .map(|l| {
            serde_json::from_str(l).map_err(|e| Error::Parse {
                input: path.clone().into(),
                message: e.to_string(),
            })
        })
        .collect::<Result<_>>()?;
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    // Phase I expert by expert: each one's overlap with the w*_c it is closest to.
    let mut experts: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut push =
        |name: String, x: u64, y: f64| series.entry(name).or_default().push((x as f64, y));
    for r in &records {
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
                        "MoE phase II: router cos(theta, v_c) (worst cluster)".into(),
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
                    push(
                        format!("{who}: best |<w, w*_c>| (worst cluster)"),
                        x,
                        min(l),
                    );
                    push(
                        format!("{who}: best |<w, w*_g>| (worst cluster)"),
                        x,
                        min(g),
                    );
                }
            }
            _ => {}
        }
    }
    // The drift ODE of docs/theory.md for the best of M C starting overlaps.
    let defaults = crate::config::Config::default();
    let valid = defaults.check().expect("the defaults are valid");
    let (d, p1) = (defaults.task.d, &valid.phase_one);
    let drift = crate::theory::DriftParams::default_task(d, p1.schedule.lr, p1.batch);
    let m0 =
        (2.0 * ((defaults.moe.experts * defaults.task.clusters) as f64).ln() / d as f64).sqrt();
    let offset = p1.centre_samples as f64;
    series.insert(
        "drift ODE prediction (phase I, best start)".into(),
        drift
            .trajectory(m0, p1.steps as f64 / 4.0, 100)
            .into_iter()
            .map(|pt| (offset + pt.samples, pt.overlap))
            .collect(),
    );
    let theory_label = "drift ODE prediction (phase I, best start)";
    let chart = Chart {
        title: "E2: learning dynamics, default task, seed 1".into(),
        x_label: "samples seen by the model".into(),
        y_label: "overlap / purity".into(),
        log_x: false,
        log_y: false,
        y_range: Some((0.0, 1.05)),
        legend: Legend::MiddleRight,
        series: series
            .into_iter()
            .map(|(label, points)| {
                let mark = if label == theory_label {
                    Mark::Dashed
                } else {
                    Mark::Line
                };
                Series {
                    label,
                    points,
                    mark,
                }
            })
            .collect(),
    };
    Ok(Section {
        title: "E2 Dynamics: what each phase learns".into(),
        text: "Phase I: each expert's tied direction finds one cluster's w*_c (second figure: stuck and redundant \
               experts restart every 2,000 steps). Phase II: the router learns to send each cluster \
               to its expert (purity). Phase III: inside its cluster an expert's fresh neurons find both w*_c and w*_g. The \
               vanilla network, on the same samples, finds the w*_c and never w*_g."
            .into(),
        figures: vec![
            ("e2_dynamics".into(), chart),
            (
                "e2_phase_one".into(),
                Chart {
                    title: "E2: phase I expert by expert, default task, seed 1".into(),
                    x_label: "samples seen by the MoE".into(),
                    y_label: "max_c |<u_m, w*_c>|".into(),
                    log_x: false,
                    log_y: false,
                    y_range: Some((0.0, 1.05)),
                    legend: Legend::MiddleRight,
                    series: experts
                        .into_iter()
                        .enumerate()
                        .map(|(e, points)| Series { label: format!("expert {}", e + 1), points, mark: Mark::Line })
                        .collect(),
                },
            ),
        ],
        ..Section::default()
    })
}

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
fn sample_complexity(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let seeds = if opts.quick { 4 } else { 8 };
    let cases: Vec<(usize, Vec<usize>)> = if opts.quick {
        vec![(3, vec![32, 64, 128])]
    } else {
        vec![(3, vec![32, 64, 128, 256]), (4, vec![32, 48, 64])]
    };
    let mut section = Section {
        title: "E3 Sample complexity: samples to weak recovery against d".into(),
        ..Section::default()
    };
    let mut text = vec![format!(
        "Phase I alone, {seeds} seeds per d, restarts off; the learning rate scales as 0.003 (32/d)^(k*/2) and the \
         vanilla network gets the same budget. A point is the number of phase-I samples seen when the first expert \
         reaches overlap 0.5 with some w*_c (d starts at 32: at d = 16 the best of 16 random overlaps is often \
         already 0.5). The dashed line integrates the drift ODE of docs/theory.md from the best of M C starting \
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
            section.claims.push(Claim {
                id: "E3.slope_k3".into(),
                claim: "phase-I samples to weak recovery grow like d^s with s in [1.5, 2.5] for k* = 3 (theory: 2)".into(),
                measured: serde_json::json!({ "slope": round4(slope), "ci95": [round4(slope - half), round4(slope + half)], "recoveries": measured.len() }),
                held: (1.5..=2.5).contains(&slope),
            });
        }
        section.figures.push((
            format!("e3_k{k}"),
            Chart {
                title: format!("E3: samples to weak recovery, k* = {k}"),
                x_label: "dimension d".into(),
                y_label: "samples to overlap 0.5".into(),
                log_x: true,
                log_y: true,
                y_range: None,
                legend: Legend::UpperLeft,
                series: vec![
                    Series {
                        label: "measured (one point per seed)".into(),
                        points: measured,
                        mark: Mark::Points,
                    },
                    Series {
                        label: format!("fit: slope {slope:.2} +- {half:.2}"),
                        points: fitted,
                        mark: Mark::Line,
                    },
                    Series {
                        label: "drift ODE prediction".into(),
                        points: theory,
                        mark: Mark::Dashed,
                    },
                ],
            },
        ));
        section.figures.push((
            format!("e3_k{k}_vanilla"),
            Chart {
                title: format!("E3: the vanilla network at the same budgets, k* = {k}"),
                x_label: "dimension d".into(),
                y_label: "best |<w, w*_g>| over its neurons".into(),
                log_x: true,
                log_y: false,
                y_range: Some((0.0, 1.0)),
                legend: Legend::UpperRight,
                series: vec![Series {
                    label: "vanilla (one point per seed)".into(),
                    points: vanilla,
                    mark: Mark::Points,
                }],
            },
        ));
        section.tables.push(table);
    }
    section.text = text.join("\n");
    Ok(section)
}

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
fn experts_needed(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
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
                log_x: false,
                log_y: false,
                y_range: Some((0.0, 1.05)),
                legend: Legend::LowerRight,
                series: vec![
                    Series {
                        label: "measured, no restarts".into(),
                        points: plain,
                        mark: Mark::LineAndPoints,
                    },
                    Series {
                        label: "measured, restarts (default)".into(),
                        points: restarted,
                        mark: Mark::LineAndPoints,
                    },
                    Series {
                        label: "coupon collector".into(),
                        points: theory,
                        mark: Mark::Dashed,
                    },
                ],
            },
        ));
        section.tables.push(table);
    }
    Ok(section)
}

/// E5: routing purity against rho, beside the best linear router.
fn routing(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Section> {
    let seeds = if opts.quick { 3 } else { 10 };
    let rhos = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0];
    let set = [("vanilla.enabled", Value::from(false))];
    let runs = run(
        opts,
        "e5",
        &grid(
            1..=seeds,
            &set,
            &[("task.rho", rhos.iter().map(|&r| Value::from(r)).collect())],
        ),
        progress,
    )?;
    let mut table = Table {
        name: "e5".into(),
        header: [
            "rho",
            "routing_purity",
            "best_linear_router_purity",
            "moe_rel_mse",
        ]
        .map(String::from)
        .to_vec(),
        ..Table::default()
    };
    let (mut purity, mut best, mut error) = (Vec::new(), Vec::new(), Vec::new());
    let mut worst_gap: f64 = 0.0;
    for &rho in &rhos {
        let at: Vec<usize> = (0..runs.rows.len())
            .filter(|&i| runs.value(i, "task.rho") == rho)
            .collect();
        let p = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.moe.routing_purity)
                .collect::<Vec<_>>(),
        );
        let b = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.best_linear_router_purity.unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        );
        let e = mean(
            &at.iter()
                .map(|&i| runs.rows[i].2.moe.model.error.test_rel_mse)
                .collect::<Vec<_>>(),
        );
        if rho >= 3.0 {
            worst_gap = worst_gap.max((b - p).abs());
        }
        purity.push((rho, p));
        best.push((rho, b));
        error.push((rho, e));
        table
            .rows
            .push(vec![rho.to_string(), fmt(p), fmt(b), fmt(e)]);
    }
    Ok(Section {
        title: "E5 Routing: purity against cluster separation".into(),
        text: format!(
            "{seeds} seeds per rho. The best linear router errs with probability Phi(-rho/sqrt 2) for two orthogonal clusters; \
             the learned router is compared with it, and the MoE's test error follows its purity."
        ),
        claims: vec![Claim {
            id: "E5.purity".into(),
            claim: "for rho >= 3 the learned router's purity is within 2 percentage points of the best linear router's".into(),
            measured: serde_json::json!({ "largest_gap": round4(worst_gap) }),
            held: worst_gap <= 0.02,
        }],
        figures: vec![
            (
                "e5_purity".into(),
                Chart {
                    title: "E5: routing purity".into(),
                    x_label: "cluster separation rho".into(),
                    y_label: "purity (share of samples)".into(),
                    log_x: false,
                    log_y: false,
                    y_range: Some((0.4, 1.02)),
                    legend: Legend::LowerRight,
                    series: vec![
                        Series { label: "learned router (mean over seeds)".into(), points: purity, mark: Mark::LineAndPoints },
                        Series { label: "best linear router 1 - Phi(-rho/sqrt 2)".into(), points: best, mark: Mark::Dashed },
                    ],
                },
            ),
            (
                "e5_error".into(),
                Chart {
                    title: "E5: MoE test error".into(),
                    x_label: "cluster separation rho".into(),
                    y_label: "relative test MSE".into(),
                    log_x: false,
                    log_y: true,
                    y_range: None,
                    legend: Legend::UpperRight,
                    series: vec![Series { label: "MoE (mean over seeds)".into(), points: error, mark: Mark::LineAndPoints }],
                },
            ),
        ],
        tables: vec![table],
    })
}

fn csv_text(t: &Table) -> String {
    let mut out = t.header.join(",");
    out.push('\n');
    for row in &t.rows {
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn markdown_table(t: &Table) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        t.header.join(" | "),
        vec!["---:"; t.header.len()].join("|")
    );
    for row in &t.rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes `s` and renders its inline Markdown: `code` and **bold**.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in html_escape(s).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
            continue;
        }
        for (j, piece) in part.split("**").enumerate() {
            if j % 2 == 1 {
                out.push_str(&format!("<strong>{piece}</strong>"));
            } else {
                out.push_str(piece);
            }
        }
    }
    out
}

/// A section's Markdown text as HTML: paragraphs, and `* ` lines as lists.
fn text_html(text: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, out: &mut String| {
        if !paragraph.is_empty() {
            out.push_str(&format!("<p>{}</p>", inline_html(&paragraph.join(" "))));
            paragraph.clear();
        }
    };
    for line in text.lines() {
        if let Some(item) = line.strip_prefix("* ") {
            flush(&mut paragraph, &mut out);
            if !in_list {
                out.push_str("<ul>");
                in_list = true;
            }
            out.push_str(&format!("<li>{}</li>", inline_html(item)));
            continue;
        }
        if in_list {
            out.push_str("</ul>");
            in_list = false;
        }
        if line.trim().is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut out);
    if in_list {
        out.push_str("</ul>");
    }
    out
}

/// A claim's measured figures in words (`claims.json` keeps the JSON).
fn describe(measured: &Value) -> String {
    let number = |key: &str| measured.get(key).and_then(Value::as_f64);
    if let (Some(held), Some(seeds)) = (number("seeds_held"), number("seeds")) {
        let mut s = format!("{held} of {seeds} seeds");
        if let Some(mean) = number("mean_rel_mse") {
            s.push_str(&format!(", mean relative MSE {mean:.3}"));
        }
        return s;
    }
    if let Some(slope) = number("slope") {
        let mut s = format!("slope {slope:.2}");
        if let Some([lo, hi]) = measured
            .get("ci95")
            .and_then(Value::as_array)
            .and_then(|a| <&[Value; 2]>::try_from(a.as_slice()).ok())
        {
            s.push_str(&format!(
                " (95 % interval {:.2}–{:.2})",
                lo.as_f64().unwrap_or(f64::NAN),
                hi.as_f64().unwrap_or(f64::NAN)
            ));
        }
        if let Some(n) = number("recoveries") {
            s.push_str(&format!(", {n} recoveries"));
        }
        return s;
    }
    if let Some(gap) = number("largest_gap") {
        return format!("largest gap {:.2} percentage points", 100.0 * gap);
    }
    match measured.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", "),
        None => measured.to_string(),
    }
}

/// Writes figures, tables, claims and both reports.
fn write_report(out: &Path, sections: &[Section], quick: bool) -> Result<Vec<Claim>> {
    let mut md = format!(
        "# clustermoe reproduction report\n\nMode: {}. Every number below comes from the runs under `sweeps/`; \
         every figure is also an `.svg` and a `.png` file and every table a `.csv` file beside this report.\n\n",
        if quick { "quick" } else { "full" }
    );
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>clustermoe reproduction report</title>\
         <style>body{font-family:sans-serif;max-width:900px;margin:2em auto;line-height:1.4}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
         .held{color:#060}.failed{color:#b00}</style></head><body><h1>clustermoe reproduction report</h1>",
    );
    let claims: Vec<Claim> = sections.iter().flat_map(|s| s.claims.clone()).collect();
    md.push_str("## Claims\n\n| claim | measured | held |\n|---|---|---|\n");
    html.push_str("<h2>Claims</h2><table><tr><th>claim</th><th>measured</th><th>held</th></tr>");
    for c in &claims {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            c.claim,
            describe(&c.measured),
            if c.held { "yes" } else { "**no**" }
        ));
        html.push_str(&format!(
            "<tr><td style=\"text-align:left\">{}</td><td style=\"text-align:left\">{}</td><td class=\"{}\">{}</td></tr>",
            inline_html(&c.claim),
            html_escape(&describe(&c.measured)),
            if c.held { "held" } else { "failed" },
            if c.held { "yes" } else { "no" }
        ));
    }
    md.push('\n');
    html.push_str("</table>");
    for s in sections {
        md.push_str(&format!("## {}\n\n{}\n\n", s.title, s.text));
        html.push_str(&format!(
            "<h2>{}</h2>{}",
            html_escape(&s.title),
            text_html(&s.text)
        ));
        for (name, chart) in &s.figures {
            let svg = chart.to_svg()?;
            output::write_atomic(&out.join(format!("{name}.svg")), svg.as_bytes())?;
            output::write_atomic(
                &out.join(format!("{name}.png")),
                &crate::report::figure::svg_to_png(&svg)?,
            )?;
            md.push_str(&format!("![{}]({name}.svg)\n\n", chart.title));
            html.push_str(&format!(
                "<figure>{svg}<figcaption>{}</figcaption></figure>",
                html_escape(&chart.title)
            ));
        }
        for t in &s.tables {
            output::write_atomic(&out.join(format!("{}.csv", t.name)), csv_text(t).as_bytes())?;
            md.push_str(&format!(
                "Table `{}.csv`:\n\n{}\n",
                t.name,
                markdown_table(t)
            ));
            html.push_str(&format!(
                "<p>Table <code>{}.csv</code></p><table><tr>",
                t.name
            ));
            for h in &t.header {
                html.push_str(&format!("<th>{}</th>", html_escape(h)));
            }
            html.push_str("</tr>");
            for row in &t.rows {
                html.push_str("<tr>");
                for cell in row {
                    html.push_str(&format!("<td>{}</td>", html_escape(cell)));
                }
                html.push_str("</tr>");
            }
            html.push_str("</table>");
        }
    }
    html.push_str("</body></html>\n");
    output::write_atomic(&out.join("report.md"), md.as_bytes())?;
    output::write_atomic(&out.join("report.html"), html.as_bytes())?;
    output::write_json(&out.join("claims.json"), &claims)?;
    Ok(claims)
}

/// Runs every experiment (resuming runs already on disk) and writes the report.
pub fn reproduce(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Vec<Claim>> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io("cannot create", &opts.out, e))?;
    let sections = vec![
        separation(opts, progress)?,
        dynamics(opts)?,
        sample_complexity(opts, progress)?,
        experts_needed(opts, progress)?,
        routing(opts, progress)?,
    ];
    progress("writing the report");
    write_report(&opts.out, &sections, opts.quick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_becomes_html_for_a_reader() {
        let html = text_html("Intro with `code` and **bold**.\n* one\n* two\n\nAfter.");
        assert_eq!(
            html,
            "<p>Intro with <code>code</code> and <strong>bold</strong>.</p>\
             <ul><li>one</li><li>two</li></ul><p>After.</p>"
        );
        let claim = serde_json::json!({"mean_rel_mse": 0.0573, "seeds": 10, "seeds_held": 9});
        assert_eq!(describe(&claim), "9 of 10 seeds, mean relative MSE 0.057");
        let slope = serde_json::json!({"ci95": [1.79, 2.68], "recoveries": 12, "slope": 2.2352});
        assert_eq!(
            describe(&slope),
            "slope 2.24 (95 % interval 1.79–2.68), 12 recoveries"
        );
        let gap = serde_json::json!({"largest_gap": 0.0027});
        assert_eq!(describe(&gap), "largest gap 0.27 percentage points");
    }

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
