//! The chart of `clustermoe bench --plot`: samples per second of every
//! training phase against the input dimension d, on log-log axes. The
//! measurement itself is [`crate::bench`]'s, which builds without the
//! `report` feature; drawing it lives here with the other figures.

use crate::bench::DimBench;
use crate::report::figure::{Chart, Mark, Series};

/// Samples per second against d (log-log): every training phase at the
/// first thread count measured, and the whole run (both models' samples over
/// the wall time) at every thread count.
pub fn chart(results: &[DimBench]) -> Chart {
    let first = results.first().map_or(1, |r| r.threads);
    let mut counts: Vec<usize> = results.iter().map(|r| r.threads).collect();
    counts.dedup();
    let plural = |t: usize| if t == 1 { "" } else { "s" };
    let mut series: Vec<Series> = Vec::new();
    let mut add =
        |label: String, point: (f64, f64)| match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(Series::new(label, Mark::LineAndPoints, vec![point])),
        };
    for r in results.iter().filter(|r| r.threads == first) {
        for p in &r.phases {
            let label = format!("{} {}", p.model, p.phase.name().replace('_', " "));
            add(label, (r.d as f64, p.samples_per_second));
        }
    }
    for r in results {
        let label = format!("whole run, {} thread{}", r.threads, plural(r.threads));
        add(label, (r.d as f64, r.run_samples_per_second));
    }
    let threads = counts
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    Chart {
        title: format!(
            "clustermoe throughput (phases on {first} thread{}; whole run on {threads})",
            plural(first)
        ),
        x_label: "input dimension d".into(),
        y_label: "samples per second".into(),
        log_x: true,
        log_y: true,
        series,
        ..Chart::default()
    }
}
