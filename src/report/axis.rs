//! The axes of a figure: the drawn range, where the ticks go and how they
//! read. Logarithmic axes are drawn as log10 of the data with tick labels
//! showing the original values; ticks sit on round values (whole seeds,
//! powers of two for d, 1-2-5 steps), where plotters' own choice falls on
//! seed 1.5 and on d = 63 and 79. Apart from [`super::figure`] because it
//! is about numbers, not drawing.

use plotters::prelude::Ranged;

pub(super) fn transform(v: f64, log: bool) -> Option<f64> {
    match log {
        true if v > 0.0 => Some(v.log10()),
        true => None,
        false => v.is_finite().then_some(v),
    }
}

pub(super) fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if (hi - lo).abs() < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// Tick positions, in drawn coordinates (log10 of the value on a log
/// axis), for the drawn range `lo..hi`; `values` are the data's own values.
/// Linear axes step by 1, 2 or 5 times a power of ten (by whole numbers
/// when every value is one, as seeds are); log axes sit on round values:
/// powers of two when every value is one (d = 32, 64, 128), else 1, 2 and 5
/// times powers of ten.
pub(super) fn ticks(lo: f64, hi: f64, log: bool, values: &[f64]) -> Vec<f64> {
    let whole = |v: f64| v == v.round();
    if log {
        let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
        let powers_of_two = !values.is_empty()
            && values
                .iter()
                .all(|&v| v > 0.0 && whole(v.log2()) && v.log2().abs() < 60.0);
        let mut out: Vec<f64> = if powers_of_two {
            (a.log2().ceil() as i32..=b.log2().floor() as i32)
                .map(|k| 2f64.powi(k))
                .collect()
        } else {
            let decades = lo.floor() as i32..=hi.ceil() as i32;
            let mut round: Vec<f64> = decades
                .clone()
                .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
                .filter(|v| (a..=b).contains(v))
                .collect();
            if round.len() < 3 {
                round = decades
                    .flat_map(|k| (1..10).map(move |m| m as f64 * 10f64.powi(k)))
                    .filter(|v| (a..=b).contains(v))
                    .collect();
            } else if round.len() > 9 {
                round.retain(|v| whole(v.log10()));
            }
            round
        };
        if out.len() > 9 {
            let keep = out.len().div_ceil(9);
            out = out.into_iter().step_by(keep).collect();
        }
        return out.into_iter().map(f64::log10).collect();
    }
    let span = hi - lo;
    if !(span > 0.0 && span.is_finite()) {
        return vec![lo];
    }
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    if values.iter().all(|&v| whole(v)) {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick label: on a log axis the original value (large and small powers
/// of ten as 10 with a superscript exponent).
pub(super) fn tick(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        let exponent = (x.abs().log10() + 1e-9).floor() as i32;
        let mantissa = x / 10f64.powi(exponent);
        let superscript: String = exponent
            .to_string()
            .chars()
            .map(|c| match c {
                '-' => '⁻',
                d => ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'][d as usize - '0' as usize],
            })
            .collect();
        if (mantissa - 1.0).abs() < 1e-9 {
            format!("10{superscript}")
        } else {
            format!("{}×10{superscript}", trimmed(mantissa))
        }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        trimmed(x)
    }
}

fn trimmed(x: f64) -> String {
    format!("{x:.3}")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// A linear axis over drawn coordinates with the tick positions of
/// [`ticks`] (plotters' own choice falls on 1.5 for seeds and on 63, 79 on
/// a log axis of d).
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
}

impl Ranged for Axis {
    type FormatOption = plotters::coord::ranged1d::NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.lo) / (self.hi - self.lo);
        let length = (limit.1 - limit.0) as f64;
        limit.0 + (length * share + 1e-3).floor() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The light mesh asks for more points than the bold one: only the
        // ticks, once each.
        if hint.max_num_points() == 0 || !hint.weight().allow_light_points() {
            self.ticks.clone()
        } else {
            Vec::new()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl plotters::coord::ranged1d::ValueFormatter<f64> for Axis {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_sit_on_whole_seeds_powers_of_two_and_round_values() {
        let seeds: Vec<f64> = (1..=10).map(f64::from).collect();
        let (lo, hi) = padded(1.0, 10.0);
        let t = ticks(lo, hi, false, &seeds);
        assert!(t.iter().all(|v| v.fract() == 0.0), "{t:?}");
        assert!(t.len() >= 4, "{t:?}");

        let dims = [32.0f64, 64.0, 128.0, 256.0];
        let (lo, hi) = padded(32f64.log10(), 256f64.log10());
        let labels: Vec<String> = ticks(lo, hi, true, &dims)
            .iter()
            .map(|&v| tick(v, true))
            .collect();
        assert_eq!(labels, ["32", "64", "128", "256"]);

        let samples = [2.0e3, 3.0e4, 6.0e5];
        let (lo, hi) = padded(2e3f64.log10(), 6e5f64.log10());
        let labels: Vec<String> = ticks(lo, hi, true, &samples)
            .iter()
            .map(|&v| tick(v, true))
            .collect();
        assert_eq!(
            labels,
            ["2000", "5000", "10⁴", "2×10⁴", "5×10⁴", "10⁵", "2×10⁵", "5×10⁵"]
        );

        let (lo, hi) = padded(0.0, 1.0);
        let t = ticks(lo, hi, false, &[0.1, 0.55]);
        let wanted = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), wanted.len(), "{t:?}");
        assert!(
            t.iter().zip(wanted).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
    }
}
