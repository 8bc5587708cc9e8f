//! What the commands print on stdout.

use clustermoe::bench;
use clustermoe::config::ValidConfig;
use clustermoe::experiment::Summary;
use clustermoe::numerics::link::LinkDescription;
use clustermoe::store::Position;

fn fmt_list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Samples per model times d above which a run takes long enough (tens of
/// seconds) that its expected duration is worth a second of measuring.
const ESTIMATE_ABOVE: f64 = 2e9;

/// The expected wall time of a long run, on stderr before it starts.
pub fn estimate(valid: &ValidConfig, threads: Option<usize>) {
    let work = valid.total_samples() as f64 * valid.task().d as f64;
    if work < ESTIMATE_ABOVE {
        return;
    }
    let threads = threads.unwrap_or_else(rayon::current_num_threads);
    let seconds = bench::estimate_seconds(valid, threads);
    eprintln!(
        "expected wall time on this machine: about {} with {threads} thread{} (an estimate from measured matrix products; `clustermoe bench` measures)",
        duration(seconds),
        if threads == 1 { "" } else { "s" }
    );
}

/// Seconds as the largest sensible unit.
fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

pub fn summary(s: &Summary) {
    let m = &s.moe.model;
    let mut rows = vec![(
        "moe",
        m.error.test_rel_mse,
        fmt_list(&m.local_overlap_per_cluster),
        fmt_list(&m.global_overlap_per_cluster),
        s.samples.moe,
    )];
    if let (Some(v), Some(n)) = (&s.vanilla, s.samples.vanilla) {
        rows.push((
            "vanilla",
            v.error.test_rel_mse,
            fmt_list(&v.local_overlap_per_cluster),
            fmt_list(&v.global_overlap_per_cluster),
            n,
        ));
    }
    // Each column as wide as its widest cell, so any number of clusters lines up.
    let (local, global) = ("local_overlap", "global_overlap");
    let wl = rows.iter().map(|r| r.2.len()).chain([local.len()]).max();
    let wg = rows.iter().map(|r| r.3.len()).chain([global.len()]).max();
    let (wl, wg) = (wl.unwrap_or(0), wg.unwrap_or(0));
    println!(
        "{:<8} {:>12}  {local:<wl$}  {global:<wg$}  {:>10}",
        "model", "test_rel_mse", "samples"
    );
    for (model, rel, l, g, n) in rows {
        println!("{model:<8} {rel:>12.4}  {l:<wl$}  {g:<wg$}  {n:>10}");
    }
    let best = s
        .best_linear_router_purity
        .map_or(String::new(), |b| format!(" (best linear router {b:.4})"));
    println!(
        "routing purity {:.4}{best}, var(y) {:.4}",
        s.moe.routing_purity, s.var_y
    );
    if let Some(j) = &s.joint {
        let r = &j.routing;
        let dead = if r.dead_experts.is_empty() {
            "none".to_string()
        } else {
            r.dead_experts
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "joint: expert load {}, router entropy {:.3} (uniform {:.3}), dead experts (0-based): {dead}",
            fmt_list(&r.expert_load),
            r.router_entropy,
            (r.expert_load.len() as f64).ln(),
        );
    }
}

/// One table per dimension: every phase against the limit.
pub fn bench(r: &bench::DimBench) {
    println!(
        "d = {}, {} thread{}: {:.2} s for both models ({} samples each, {:.0} samples/s in all); sampler {:.2} ns per normal ({}; scalar path {:.2} ns, rand_distr {:.2} ns, one generator lane {:.2} ns per 64 bits); peak memory {}",
        r.d,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.wall_seconds,
        r.samples_per_model,
        r.run_samples_per_second,
        r.gaussian_ns,
        r.gaussian_path,
        r.scalar_gaussian_ns,
        r.rand_distr_ns,
        r.generator_ns,
        r.peak_rss_bytes
            .map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64)),
    );
    println!(
        "{:<8} {:<12} {:>7} {:>6} {:>5} {:>10} {:>9} {:>13} {:>10} {:>10} {:>6}",
        "model",
        "phase",
        "steps",
        "batch",
        "N",
        "samples",
        "seconds",
        "samples/s",
        "us/step",
        "limit us",
        "ratio"
    );
    for p in &r.phases {
        println!(
            "{:<8} {:<12} {:>7} {:>6} {:>5} {:>10} {:>9.3} {:>13.0} {:>10} {:>10} {:>6}",
            p.model,
            p.phase,
            p.steps,
            p.batch,
            p.width,
            p.samples,
            p.seconds,
            p.samples_per_second,
            if p.width > 0 {
                format!("{:.1}", p.step_seconds * 1e6)
            } else {
                "-".into()
            },
            p.limit_step_seconds
                .map_or("-".into(), |l| format!("{:.1}", l * 1e6)),
            p.ratio_to_limit.map_or("-".into(), |x| format!("{x:.2}")),
        );
    }
    println!(
        "set-up before the first phase {:.2} s, outside every phase {:.2} s; the whole run at full length: about {:.1} s",
        r.setup_seconds, r.outside_phases_seconds, r.full_run_seconds
    );
    println!(
        "test relative MSE: MoE {:.3}, vanilla {}",
        r.moe_rel_mse,
        r.vanilla_rel_mse.map_or("-".into(), |v| format!("{v:.3}"))
    );
}

/// A link's description as a table.
pub fn link(l: &LinkDescription) {
    println!("link                 {}", l.info.link);
    let ie = l
        .info
        .information_exponent
        .map_or("none (constant)".into(), |k| k.to_string());
    println!("information exponent {ie}");
    let deg = l
        .info
        .degree
        .map_or("infinite (not a polynomial)".into(), |k| k.to_string());
    println!("degree               {deg}");
    println!("mean                 {:.6}", l.mean);
    println!("variance             {:.6}", l.variance);
    println!("normalised Hermite coefficients (f = sum_i c_i h_i):");
    for (i, &c) in l.hermite_coefficients.iter().enumerate() {
        // Parity zeros print as 0, not -0.
        let c = if c.abs() < 5e-7 { 0.0 } else { c };
        println!("  c_{i:<2} = {c:>12.6}");
    }
}

/// Where a model's checkpoint stands, for the resume message.
pub fn position(position: Option<Position>) -> String {
    match position {
        None => "no checkpoint: starts over".into(),
        Some(None) => "trained".into(),
        Some(Some((phase, step))) => format!("resumes in {phase} after step {step}"),
    }
}
