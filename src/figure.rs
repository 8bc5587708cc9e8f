//! Figures of the reproduction report: line and point charts drawn with
//! `plotters` into self-contained SVG text. Logarithmic axes are drawn as
//! log10 of the data with tick labels showing the original values.

use plotters::prelude::*;

use crate::error::{Error, Result};

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Line,
    Points,
    LineAndPoints,
    Dashed,
}

/// One labelled series of (x, y) points.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
}

/// Where the legend goes (the corner with the least data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Legend {
    #[default]
    UpperRight,
    MiddleRight,
    LowerRight,
    UpperLeft,
    LowerLeft,
}

/// A chart: axes with units, optional log scales, series with a legend.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    /// Fixed y range (in data units); None fits the data.
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
    pub legend: Legend,
}

/// Okabe–Ito colours (distinguishable with colour-blindness), then greys.
const PALETTE: [RGBColor; 9] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
    RGBColor(120, 120, 120),
];

fn transform(v: f64, log: bool) -> Option<f64> {
    match log {
        true if v > 0.0 => Some(v.log10()),
        true => None,
        false => v.is_finite().then_some(v),
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if (hi - lo).abs() < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// A tick label: on a log axis the original value, rounded to two
/// significant digits (ticks sit at even steps of log10, not round numbers).
fn tick(v: f64, log: bool) -> String {
    let x = if log {
        let raw = 10f64.powf(v);
        let scale = 10f64.powf(raw.abs().log10().floor() - 1.0);
        (raw / scale).round() * scale
    } else {
        v
    };
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        format!("{x:.1e}")
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{:.3}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| Error::Readout {
            model: "figure",
            message: format!("cannot draw `{}`: {e}", self.title),
        })?;
        Ok(svg)
    }

    fn draw(&self, svg: &mut String) -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
        let data: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .filter_map(|&(x, y)| {
                        Some((transform(x, self.log_x)?, transform(y, self.log_y)?))
                    })
                    .collect()
            })
            .collect();
        let all: Vec<&(f64, f64)> = data.iter().flatten().collect();
        let range = |f: fn(&(f64, f64)) -> f64| {
            let lo = all.iter().map(|p| f(p)).fold(f64::INFINITY, f64::min);
            let hi = all.iter().map(|p| f(p)).fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() {
                padded(lo, hi)
            } else {
                (0.0, 1.0)
            }
        };
        let (x0, x1) = range(|p| p.0);
        let (y0, y1) = match self.y_range {
            Some((a, b)) => (
                transform(a, self.log_y).unwrap_or(0.0),
                transform(b, self.log_y).unwrap_or(1.0),
            ),
            None => range(|p| p.1),
        };
        let root = SVGBackend::with_string(svg, (720, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let (log_x, log_y) = (self.log_x, self.log_y);
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&|v| tick(*v, log_x))
            .y_label_formatter(&|v| tick(*v, log_y))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, (series, points)) in self.series.iter().zip(&data).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let style = color.stroke_width(2);
            let legend_style = style;
            match series.mark {
                Mark::Line | Mark::LineAndPoints => {
                    chart.draw_series(LineSeries::new(points.clone(), style))?;
                }
                Mark::Dashed => {
                    chart.draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))?;
                }
                Mark::Points => {}
            }
            let anno = match series.mark {
                Mark::Points | Mark::LineAndPoints => {
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                }
                _ => chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?,
            };
            if !series.label.is_empty() {
                anno.label(series.label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], legend_style)
                });
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(match self.legend {
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
                Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
            })
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// Renders SVG text to PNG bytes with `resvg`, text in the system's fonts
/// (sans-serif; DejaVu Sans where installed). Without any font the text is
/// left out, the rest is drawn.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    static OPTIONS: std::sync::OnceLock<usvg::Options<'static>> = std::sync::OnceLock::new();
    let options = OPTIONS.get_or_init(|| {
        let mut options = usvg::Options::default();
        let db = options.fontdb_mut();
        db.load_system_fonts();
        // plotters asks for "sans-serif": map it to a sans face that exists.
        let families: Vec<String> = db
            .faces()
            .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
            .collect();
        let preferred = [
            "DejaVu Sans",
            "Liberation Sans",
            "Noto Sans",
            "Arial",
            "Helvetica",
        ];
        let chosen = preferred
            .iter()
            .find(|p| families.iter().any(|f| f == *p))
            .map(|p| p.to_string())
            .or_else(|| families.iter().find(|f| f.contains("Sans")).cloned())
            .or_else(|| families.first().cloned());
        if let Some(family) = chosen {
            db.set_sans_serif_family(family.clone());
            options.font_family = family;
        }
        options
    });
    let fail = |message: String| Error::Readout {
        model: "figure",
        message,
    };
    let tree = usvg::Tree::from_str(svg, options)
        .map_err(|e| fail(format!("cannot read the SVG: {e}")))?;
    let size = tree.size().to_int_size();
    // Twice the SVG's size: sharp on high-density screens and in print.
    let mut pixmap = tiny_skia::Pixmap::new(2 * size.width(), 2 * size.height())
        .ok_or_else(|| fail("empty figure".into()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(2.0, 2.0),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| fail(format!("cannot encode PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_render_to_svg_with_labels_and_legend() {
        let chart = Chart {
            title: "test".into(),
            x_label: "samples".into(),
            y_label: "overlap".into(),
            log_x: true,
            log_y: false,
            y_range: Some((0.0, 1.0)),
            series: vec![
                Series {
                    label: "moe".into(),
                    points: vec![(1e3, 0.1), (1e4, 0.5), (1e5, 0.99), (0.0, 0.3)],
                    mark: Mark::LineAndPoints,
                },
                Series {
                    label: "theory".into(),
                    points: vec![(1e3, 0.2), (1e5, 0.9)],
                    mark: Mark::Dashed,
                },
            ],
            legend: Legend::LowerRight,
        };
        let svg = chart.to_svg().unwrap();
        assert!(svg.starts_with("<svg"));
        for text in ["samples", "overlap", "moe", "theory", "test"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.contains("<circle"), "points are drawn");
        let png = svg_to_png(&svg).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 10_000, "a real picture, not an empty canvas");
    }
}
