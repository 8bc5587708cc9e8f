//! The axes of a figure: the drawn range, where the ticks go and how they
//! read. Logarithmic axes are drawn as log10 of the data with tick labels
//! showing the original values. Ticks sit on round values (whole seeds,
//! the data's own few dimensions d, powers of two, 1-2-5 steps), where
//! plotters' own choice falls on seed 1.5 and on d = 63 and 79; and an axis
//! fitted to the data reaches from a tick at or below the smallest value to
//! a tick at or above the largest, so every point and line lies between
//! labelled ticks. Apart from [`super::figure`] because it is about
//! numbers, not drawing.

use plotters::prelude::Ranged;

pub(super) fn transform(v: f64, log: bool) -> Option<f64> {
    match log {
        true if v > 0.0 => Some(v.log10()),
        true => None,
        false => v.is_finite().then_some(v),
    }
}

/// The most ticks on an axis (whole numbers counted one by one, as seeds
/// are, may take a few more).
const MAX_TICKS: usize = 8;
const MAX_WHOLE_TICKS: usize = 11;
/// Room left beyond the outer ticks, as a share of the range: a point on
/// the last tick is drawn whole, off the frame.
const EDGE: f64 = 0.03;

/// How much room the tick labels need: the axis's length in pixels and
/// whether its labels sit side by side (the x axis) or one above the other.
#[derive(Clone, Copy, Debug)]
pub(super) struct Room {
    pub(super) pixels: f64,
    pub(super) horizontal: bool,
}

impl Room {
    /// The least distance between two ticks, in pixels, for labels `a` and `b`.
    fn gap(&self, a: &str, b: &str) -> f64 {
        if self.horizontal {
            // Half of each label on either side of its tick, and a space.
            0.5 * (label_width(a) + label_width(b)) + 10.0
        } else {
            22.0
        }
    }
}

/// A tick label's width in pixels at the figures' tick font (14 pixels an
/// em: digits 0.64 em, the times sign 0.84, superscripts 0.4).
fn label_width(s: &str) -> f64 {
    s.chars()
        .map(|c| match c {
            '⁰' | '¹' | '²' | '³' | '⁴' | '⁵' | '⁶' | '⁷' | '⁸' | '⁹' | '⁻' => {
                5.6
            }
            '×' => 11.8,
            _ => 9.0,
        })
        .sum()
}

/// An axis for values from `lo` to `hi` (drawn coordinates: log10 of the
/// value on a log axis); `values` are the data's own values (for the kind
/// of ticks: whole numbers, a few dimensions, powers of two). With `fixed`
/// the range is `lo..hi` as given and the ticks fall inside it; otherwise
/// the range grows to the ticks around the data.
pub(super) fn axis(lo: f64, hi: f64, log: bool, values: &[f64], fixed: bool, room: Room) -> Axis {
    let (lo, hi) = if hi - lo > 1e-12 * lo.abs().max(1.0) {
        (lo, hi)
    } else if log {
        (lo - 0.5, hi + 0.5)
    } else {
        let half = if lo == 0.0 { 0.5 } else { 0.5 * lo.abs() };
        (lo - half, hi + half)
    };
    let whole = !values.is_empty() && values.iter().all(|&v| v == v.round());
    for family in families(log, values, whole) {
        if let Family::Step(step) = family.family {
            if (hi - lo) / step > family.most as f64 + 1.0 {
                continue;
            }
        }
        let all = family.values(lo, hi);
        let eps = 1e-9 * (hi - lo);
        let (first, last) = if fixed {
            (
                all.iter().position(|&v| v >= lo - eps),
                all.iter().rposition(|&v| v <= hi + eps),
            )
        } else {
            (
                all.iter().rposition(|&v| v <= lo + eps),
                all.iter().position(|&v| v >= hi - eps),
            )
        };
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        if last < first + 1 || last - first + 1 > family.most {
            continue;
        }
        let ticks = &all[first..=last];
        let (a, b) = if fixed {
            (lo, hi)
        } else {
            let span = ticks[ticks.len() - 1] - ticks[0];
            (ticks[0] - EDGE * span, ticks[ticks.len() - 1] + EDGE * span)
        };
        let labels: Vec<String> = ticks.iter().map(|&v| tick(v, log)).collect();
        let per_unit = room.pixels / (b - a);
        let crowded = ticks
            .windows(2)
            .zip(labels.windows(2))
            .any(|(t, l)| (t[1] - t[0]) * per_unit < room.gap(&l[0], &l[1]));
        if crowded {
            continue;
        }
        return Axis {
            lo: a,
            hi: b,
            ticks: ticks.to_vec(),
        };
    }
    // Nothing round fits: the ends themselves.
    Axis {
        lo,
        hi,
        ticks: vec![lo, hi],
    }
}

/// A kind of tick: every value of it around a range, and how many of them
/// an axis may show.
enum Family {
    /// Multiples of a step (linear axes).
    Step(f64),
    /// log10 of the given values (a log axis of a few dimensions, of
    /// powers of two).
    Values(Vec<f64>),
    /// log10 of m 10^k for the mantissas m and every `stride`-th decade k.
    Decades { mantissas: Vec<f64>, stride: i32 },
}

struct Candidate {
    family: Family,
    most: usize,
}

impl Candidate {
    /// The family's values from somewhat below `lo` to somewhat above `hi`
    /// (enough to find the ticks around the range), ascending.
    fn values(&self, lo: f64, hi: f64) -> Vec<f64> {
        let span = (hi - lo).max(1e-12);
        match &self.family {
            Family::Step(step) => {
                let first = ((lo - span) / step).floor() as i64;
                let last = ((hi + span) / step).ceil() as i64;
                (first..=last).map(|k| k as f64 * step).collect()
            }
            Family::Values(v) => v.clone(),
            Family::Decades { mantissas, stride } => {
                let from = (lo.floor() as i32 - 1).div_euclid(*stride) * stride;
                let to = hi.ceil() as i32 + stride;
                (from..=to)
                    .step_by(*stride as usize)
                    .flat_map(|k| mantissas.iter().map(move |m| (m * 10f64.powi(k)).log10()))
                    .collect()
            }
        }
    }
}

/// The kinds of tick to try, densest first.
fn families(log: bool, values: &[f64], whole: bool) -> Vec<Candidate> {
    let mut out = Vec::new();
    if log {
        let mut distinct: Vec<f64> = values.iter().copied().filter(|&v| v > 0.0).collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        // A few whole numbers below 10^4 (d = 48, 64, 96, 128): the values.
        if whole && (2..=MAX_TICKS).contains(&distinct.len()) && distinct.iter().all(|&v| v < 1e4) {
            out.push(Candidate {
                family: Family::Values(distinct.iter().map(|v| v.log10()).collect()),
                most: MAX_TICKS,
            });
        }
        // Powers of two (d = 32, 64, 128, 256), every one, every second, ...
        let is_power = |v: f64| v > 0.0 && v.log2() == v.log2().round() && v.log2().abs() < 60.0;
        if !values.is_empty() && values.iter().all(|&v| is_power(v)) {
            for stride in [1, 2, 4] {
                out.push(Candidate {
                    family: Family::Values(
                        (-60..=60)
                            .step_by(stride)
                            .map(|k| 2f64.powi(k).log10())
                            .collect(),
                    ),
                    most: MAX_TICKS + 1,
                });
            }
        }
        let decades = |mantissas: &[f64], stride| Candidate {
            family: Family::Decades {
                mantissas: mantissas.to_vec(),
                stride,
            },
            most: MAX_TICKS + 2,
        };
        out.push(decades(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1));
        out.push(decades(&[1.0, 2.0, 3.0, 5.0], 1));
        out.push(decades(&[1.0, 2.0, 5.0], 1));
        out.push(decades(&[1.0, 3.0], 1));
        for stride in [1, 2, 3, 5, 10, 20, 50] {
            out.push(decades(&[1.0], stride));
        }
        return out;
    }
    for k in -15..=15 {
        for m in [1.0, 2.0, 5.0] {
            let step = m * 10f64.powi(k);
            // Whole numbers (seeds, experts) are never ticked between.
            if whole && step < 1.0 {
                continue;
            }
            out.push(Candidate {
                family: Family::Step(step),
                most: if whole && step == 1.0 {
                    MAX_WHOLE_TICKS
                } else {
                    MAX_TICKS
                },
            });
        }
    }
    out
}

/// A tick label: on a log axis the original value (large and small powers
/// of ten as 10 with a superscript exponent).
pub(super) fn tick(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    // Multiples of a step land a rounding error off their value.
    let x = if x.abs() < 1e-12 { 0.0 } else { x };
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
    } else if x.abs() >= 1000.0 {
        super::page::grouped_f64(x)
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
/// [`axis`] (plotters' own choice falls on 1.5 for seeds and on 63, 79 on
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

    const X: Room = Room {
        pixels: 600.0,
        horizontal: true,
    };
    const Y: Room = Room {
        pixels: 330.0,
        horizontal: false,
    };

    fn labels(a: &Axis, log: bool) -> Vec<String> {
        a.ticks.iter().map(|&v| tick(v, log)).collect()
    }

    /// Every value lies between the first and the last tick, inside the range.
    fn covers(a: &Axis, lo: f64, hi: f64) {
        let eps = 1e-9;
        assert!(a.ticks[0] <= lo + eps && *a.ticks.last().unwrap() >= hi - eps);
        assert!(a.lo < lo && a.hi > hi, "{}..{} for {lo}..{hi}", a.lo, a.hi);
    }

    #[test]
    fn ticks_sit_on_whole_seeds_dimensions_and_round_values() {
        let seeds: Vec<f64> = (1..=10).map(f64::from).collect();
        let a = axis(1.0, 10.0, false, &seeds, false, X);
        assert_eq!(
            labels(&a, false),
            (1..=10).map(|s| s.to_string()).collect::<Vec<_>>()
        );
        covers(&a, 1.0, 10.0);
        let seeds: Vec<f64> = (1..=20).map(f64::from).collect();
        let a = axis(1.0, 20.0, false, &seeds, false, X);
        assert!(a.ticks.iter().all(|v| v.fract() == 0.0), "{:?}", a.ticks);
        covers(&a, 1.0, 20.0);

        let dims = [32.0f64, 64.0, 128.0, 256.0];
        let a = axis(32f64.log10(), 256f64.log10(), true, &dims, false, X);
        assert_eq!(labels(&a, true), ["32", "64", "128", "256"]);

        // A few dimensions are ticked themselves: 128 is not left past 100.
        let dims = [48.0f64, 64.0, 96.0, 128.0];
        let a = axis(48f64.log10(), 128f64.log10(), true, &dims, false, X);
        assert_eq!(labels(&a, true), ["48", "64", "96", "128"]);
        covers(&a, 48f64.log10(), 128f64.log10());

        let samples = [2.0e3, 3.0e4, 6.0e5];
        let a = axis(2e3f64.log10(), 6e5f64.log10(), true, &samples, false, X);
        assert_eq!(
            labels(&a, true),
            [
                "2,000", "5,000", "10⁴", "2×10⁴", "5×10⁴", "10⁵", "2×10⁵", "5×10⁵", "10⁶"
            ]
        );
        covers(&a, 2e3f64.log10(), 6e5f64.log10());

        let a = axis(0.0, 1.0, false, &[0.1, 0.55], true, Y);
        assert_eq!(labels(&a, false), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!((a.lo, a.hi), (0.0, 1.0));
    }

    #[test]
    fn a_fitted_axis_reaches_a_tick_beyond_the_data() {
        // E6's errors: the staged MoE at 0.028 lies below 0.05.
        let (lo, hi) = (0.0285f64.log10(), 0.76f64.log10());
        let a = axis(lo, hi, true, &[0.0285, 0.76], false, Y);
        assert_eq!(
            labels(&a, true),
            ["0.02", "0.03", "0.05", "0.1", "0.2", "0.3", "0.5", "1"]
        );
        covers(&a, lo, hi);
        // Samples of the budget sweep.
        let s = [575104.0f64, 1146176.0, 2288192.0, 4572288.0];
        let (lo, hi) = (s[0].log10(), s[3].log10());
        let a = axis(lo, hi, true, &s, false, X);
        assert_eq!(
            labels(&a, true),
            ["5×10⁵", "10⁶", "2×10⁶", "3×10⁶", "5×10⁶"]
        );
        covers(&a, lo, hi);
        // A linear axis of samples.
        let a = axis(0.0, 2.29e6, false, &[0.0, 2.29e6], false, X);
        covers(&a, 0.0, 2.29e6);
        assert!(a.ticks.len() >= 4, "{:?}", labels(&a, false));
        // Small and negative values, a single value.
        for (lo, hi) in [
            (-0.37, 0.021),
            (0.9931, 0.9987),
            (5.0, 5.0),
            (-3.2e-5, 7.7e-5),
        ] {
            let a = axis(lo, hi, false, &[lo, hi], false, Y);
            covers(&a, lo, hi);
            assert!(
                a.ticks.len() >= 2 && a.ticks.len() <= MAX_TICKS,
                "{:?}",
                a.ticks
            );
        }
        for (lo, hi) in [(-8.0, 3.0), (0.5, 0.52), (-1.3, -1.3)] {
            let a = axis(lo, hi, true, &[], false, Y);
            covers(&a, lo, hi);
        }
    }

    #[test]
    fn x_labels_do_not_overlap() {
        // 1..9 per decade would put 8×10⁵ and 9×10⁵ side by side.
        let s = [2.1e5f64, 9.7e5];
        let a = axis(s[0].log10(), s[1].log10(), true, &s, false, X);
        let l = labels(&a, true);
        let per = X.pixels / (a.hi - a.lo);
        for (t, w) in a.ticks.windows(2).zip(l.windows(2)) {
            assert!((t[1] - t[0]) * per >= X.gap(&w[0], &w[1]), "{l:?}");
        }
    }
}
