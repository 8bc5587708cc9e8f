//! Figures of the reproduction report: line and point charts drawn with
//! `plotters` into self-contained SVG text, on the axes of `axis.rs` (round
//! ticks, log scales labelled with the data's values). The legend goes
//! where it hides the least data, and shows each series as it is drawn (a
//! point, a line, a dashed line).

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::axis::{padded, tick, ticks, transform, Axis};
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

/// Where the legend should go. It goes there when it hides no data there,
/// else to the place of the plot where it hides the least.
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

/// Okabe–Ito colours (distinguishable with colour-blindness), with a brown
/// in place of their yellow, which a thin line on white hides; then grey.
const PALETTE: [RGBColor; 9] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(140, 86, 75),
    RGBColor(120, 120, 120),
];

/// Font sizes in plotters' points (the SVG's pixels are 1/1.24 of them):
/// in a page the figure is 720 pixels wide, so its text should not be much
/// smaller than the page's.
const TITLE_FONT: u32 = 22;
const TICK_FONT: u32 = 15;
const AXIS_FONT: u32 = 16;
const LEGEND_FONT: u32 = 15;
/// The legend's inner margin and the width of its sample marks, as plotters
/// lays it out.
const LEGEND_MARGIN: i32 = 10;
const LEGEND_MARK: i32 = 30;
/// A point's radius in pixels.
const POINT: i32 = 4;

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| Error::Figure {
            message: format!("`{}`: {e}", self.title),
        })?;
        Ok(svg)
    }

    /// Where the legend goes, in pixels of the plotting area: the preferred
    /// place if it hides no data there, else the place along the right, the
    /// left or the middle of the plot that hides the least. A hidden point
    /// weighs 100, each 2 pixels of a hidden line 2, of a dashed reference
    /// line 1: a legend may cross a line rather than hide a point.
    fn legend_position<DB: DrawingBackend>(
        &self,
        chart: &ChartContext<'_, DB, Cartesian2d<Axis, Axis>>,
        data: &[Vec<(f64, f64)>],
    ) -> std::result::Result<SeriesLabelPosition, Box<dyn std::error::Error>> {
        let font: TextStyle = ("sans-serif", LEGEND_FONT).into_font().into();
        let mut text = MultiLineText::<(i32, i32), &str>::new((0, 0), &font);
        for s in self.series.iter().filter(|s| !s.label.is_empty()) {
            text.push_line(s.label.as_str());
        }
        let (text_w, text_h) = text
            .estimate_dimension()
            .map_err(|e| format!("cannot measure the legend: {e:?}"))?;
        let (w, h) = (
            text_w + LEGEND_MARK + 2 * LEGEND_MARGIN,
            text_h + 2 * LEGEND_MARGIN,
        );
        let area = chart.plotting_area();
        let base = area.get_base_pixel();
        let (area_w, area_h) = area.dim_in_pixel();
        let (area_w, area_h) = (area_w as i32, area_h as i32);
        // What the legend could hide: points, and lines every 2 pixels.
        let mut marks: Vec<(i32, i32, u32)> = Vec::new();
        for (series, points) in self.series.iter().zip(data) {
            let pixels: Vec<(i32, i32)> = points
                .iter()
                .map(|p| {
                    let (x, y) = chart.backend_coord(p);
                    (x - base.0, y - base.1)
                })
                .collect();
            let weight = match series.mark {
                Mark::Points => 0,
                Mark::Dashed => 1,
                Mark::Line | Mark::LineAndPoints => 2,
            };
            if weight > 0 {
                for pair in pixels.windows(2) {
                    let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                    let steps = ((x1 - x0).abs().max((y1 - y0).abs()) / 2).max(1);
                    marks.extend(
                        (0..=steps)
                            .map(|k| (x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, 1)),
                    );
                }
            }
            if matches!(series.mark, Mark::Points | Mark::LineAndPoints) {
                marks.extend(pixels.iter().map(|&(x, y)| (x, y, 100)));
            }
        }
        // plotters' layout of a legend of w x h pixels, 5 from the edges.
        let (left, centre, right) = (5, (area_w - w) / 2, area_w - w - 5);
        let (top, middle, bottom) = (5, (area_h - h) / 2, area_h - h - 5);
        let place = |legend: Legend| match legend {
            Legend::UpperRight => (right, top),
            Legend::MiddleRight => (right, middle),
            Legend::LowerRight => (right, bottom),
            Legend::UpperLeft => (left, top),
            Legend::LowerLeft => (left, bottom),
        };
        // The preferred place first (it wins a tie), then down the right,
        // the left and the middle in tenths of the free height.
        let mut candidates = vec![place(self.legend)];
        for x in [right, left, centre] {
            candidates.extend((0..=10).map(|k| (x, top + (bottom - top) * k / 10)));
        }
        let hidden = |&(x, y): &(i32, i32)| -> u32 {
            let pad = POINT + 1;
            marks
                .iter()
                .filter(|m| {
                    (x - pad..=x + w + pad).contains(&m.0) && (y - pad..=y + h + pad).contains(&m.1)
                })
                .map(|m| m.2)
                .sum()
        };
        // The first of the least hidden: the preferred place on a tie.
        let best = candidates
            .iter()
            .min_by_key(|c| hidden(c))
            .copied()
            .unwrap_or(candidates[0]);
        Ok(SeriesLabelPosition::Coordinate(best.0, best.1))
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
        let values = |pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
            self.series
                .iter()
                .filter(|s| s.mark != Mark::Dashed) // reference lines
                .flat_map(|s| s.points.iter().map(pick))
                .collect()
        };
        let x_ticks = ticks(x0, x1, self.log_x, &values(|p| p.0));
        let y_ticks = ticks(y0, y1, self.log_y, &values(|p| p.1));
        let root = SVGBackend::with_string(svg, (720, 450)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", TITLE_FONT))
            .margin(12)
            // Room for the last x tick's label, centred on the plot's edge.
            .margin_right(30)
            .x_label_area_size(50)
            .y_label_area_size(75)
            .build_cartesian_2d(
                Axis {
                    lo: x0,
                    hi: x1,
                    ticks: x_ticks,
                },
                Axis {
                    lo: y0,
                    hi: y1,
                    ticks: y_ticks,
                },
            )?;
        let (log_x, log_y) = (self.log_x, self.log_y);
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&|v| tick(*v, log_x))
            .y_label_formatter(&|v| tick(*v, log_y))
            .label_style(("sans-serif", TICK_FONT))
            .axis_desc_style(("sans-serif", AXIS_FONT))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let legend_at = self.legend_position(&chart, &data)?;
        for (i, (series, points)) in self.series.iter().zip(&data).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let style = color.stroke_width(2);
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
                Mark::Points | Mark::LineAndPoints => chart.draw_series(
                    points
                        .iter()
                        .map(|&p| Circle::new(p, POINT, color.filled())),
                )?,
                _ => chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?,
            };
            if !series.label.is_empty() {
                // The legend shows a point for points, a dashed line for a
                // dashed series (a line with points shows its line).
                let mark = series.mark;
                anno.label(series.label.as_str())
                    .legend(move |(x, y)| match mark {
                        Mark::Points => Circle::new((x + 10, y), POINT, color.filled()).into_dyn(),
                        Mark::Dashed => {
                            DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, style)
                                .into_dyn()
                        }
                        Mark::Line | Mark::LineAndPoints => {
                            PathElement::new(vec![(x, y), (x + 20, y)], style).into_dyn()
                        }
                    });
            }
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", LEGEND_FONT))
            .margin(LEGEND_MARGIN)
            .legend_area_size(LEGEND_MARK)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(legend_at)
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
    let fail = |message: String| Error::Figure { message };
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

    /// The numbers of `attribute="..."` in an SVG element's text.
    fn attribute(element: &str, name: &str) -> f64 {
        let start = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        let len = element[start..].find('"').unwrap();
        element[start..start + len].parse().unwrap()
    }

    #[test]
    fn the_legend_leaves_the_preferred_corner_when_data_is_there() {
        // Points fill the upper half and the lower left; the lower right
        // is free.
        let grid = |x0: f64, y0: f64| {
            (0..10).flat_map(move |i| {
                (0..10).map(move |j| (x0 + 0.5 * i as f64, y0 + 0.05 * j as f64))
            })
        };
        let points: Vec<(f64, f64)> = grid(0.0, 0.55)
            .chain(grid(5.0, 0.55))
            .chain(grid(0.0, 0.0))
            .collect();
        let chart = Chart {
            title: "legend".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: false,
            log_y: false,
            y_range: Some((0.0, 1.0)),
            series: vec![
                Series {
                    label: "data".into(),
                    points,
                    mark: Mark::Points,
                },
                Series {
                    label: "bar".into(),
                    points: vec![(0.0, 0.52), (9.5, 0.52)],
                    mark: Mark::Dashed,
                },
            ],
            legend: Legend::UpperRight,
        };
        let svg = chart.to_svg().unwrap();
        let legend = svg
            .lines()
            .find(|l| l.starts_with("<rect") && l.contains("opacity=\"0.85\""))
            .expect("a legend box");
        let (x, y) = (attribute(legend, "x"), attribute(legend, "y"));
        let (w, h) = (attribute(legend, "width"), attribute(legend, "height"));
        let inside: Vec<(f64, f64)> = svg
            .lines()
            .filter(|l| l.starts_with("<circle"))
            .map(|l| (attribute(l, "cx"), attribute(l, "cy")))
            .filter(|&(cx, cy)| cx >= x && cx <= x + w && cy >= y && cy <= y + h)
            .collect();
        // Only the legend's own sample point.
        assert_eq!(inside.len(), 1, "legend at {x},{y} hides {inside:?}");
        // The lower right: right of the middle, below the bar (y = 0.52 is
        // about pixel 206 of 450).
        assert!(x > 360.0 && y > 200.0, "the free lower right: {x},{y}");
        // A dashed series is dashed in the legend too: more than one piece
        // of its colour in the legend box.
        let legend_dashes = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("#D55E00"))
            .filter(|l| {
                let start = l.find("points=\"").unwrap() + 8;
                let first = l[start..].split([',', ' ']).collect::<Vec<_>>();
                let (px, py): (f64, f64) = (first[0].parse().unwrap(), first[1].parse().unwrap());
                px >= x && px <= x + w && py >= y && py <= y + h
            })
            .count();
        assert!(legend_dashes > 1, "{legend_dashes} pieces");
    }
}
