//! The chart of `clustermoe bench --plot`: samples per second of every
//! training phase against the input dimension d, on log-log axes. The
//! measurement itself is [`crate::bench`]'s, which builds without the
//! `report` feature; drawing it lives here with the other figures.

use crate::bench::DimBench;
use crate::report::figure::{Chart, Legend, Mark, Series};

/// Samples per second of every training phase against d (log-log).
pub fn chart(results: &[DimBench]) -> Chart {
    let mut series: Vec<Series> = Vec::new();
    for r in results {
        for p in &r.phases {
            let label = format!("{} {}", p.model, p.phase.name().replace('_', " "));
            let point = (r.d as f64, p.samples_per_second);
            match series.iter_mut().find(|s| s.label == label) {
                Some(s) => s.points.push(point),
                None => series.push(Series {
                    label,
                    points: vec![point],
                    mark: Mark::LineAndPoints,
                }),
            }
        }
    }
    Chart {
        title: format!(
            "clustermoe throughput, {} thread{}",
            results.first().map_or(1, |r| r.threads),
            if results.first().map_or(1, |r| r.threads) == 1 {
                ""
            } else {
                "s"
            }
        ),
        x_label: "input dimension d".into(),
        y_label: "samples per second".into(),
        log_x: true,
        log_y: true,
        y_range: None,
        series,
        legend: Legend::LowerLeft,
    }
}
