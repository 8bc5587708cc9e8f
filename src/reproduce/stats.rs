//! The few statistics the experiments reduce their seeds with: mean,
//! lowest, highest, median, a least-squares line with its 95% interval,
//! and the roundings shown in claims and tables.

/// The mean; 0 for no values.
pub(super) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The lowest value (NaN skipped); infinity for none.
pub(super) fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The highest value (NaN skipped); minus infinity for none.
pub(super) fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The lowest and the highest value: a spread over seeds.
pub(super) fn lowest_highest(v: &[f64]) -> (f64, f64) {
    (min(v), max(v))
}

/// The median; NaN for no values.
pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Four decimals, for the figures shown in claims.
pub(super) fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// Four decimals, for the tables.
pub(super) fn fmt(v: f64) -> String {
    format!("{v:.4}")
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
