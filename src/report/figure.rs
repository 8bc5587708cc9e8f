//! Figures of the reproduction report: line and point charts drawn with
//! `plotters` into self-contained SVG text, on the axes of `axis.rs` (round
//! ticks that reach past the data, log scales labelled with the data's
//! values). The legend (`legend.rs`) sits below the plot, never on the
//! data, and shows each series as it is drawn (a point, a line, a dashed
//! line); a spread over seeds is drawn as error bars at points and as a
//! band along lines; marked x values (phase boundaries) are dotted vertical
//! lines labelled above the plot. `png.rs` renders the SVG to PNG.

use plotters::backend::{DrawingBackend, SVGBackend};
use plotters::chart::{ChartBuilder, ChartContext};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, IntoDrawingArea};
use plotters::element::{Circle, EmptyElement, PathElement, Polygon, Text, TriangleMarker};
use plotters::series::{DashedLineSeries, LineSeries};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, IntoFont, RGBColor, TextStyle, WHITE};

use super::axis::{axis, tick, transform, Axis, Room};
use super::legend::{draw_legend, LegendLayout, Look};
pub use super::png::svg_to_png;
use crate::error::{Error, Result};

/// How a series is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mark {
    /// A solid line through the points.
    #[default]
    Line,
    /// The points alone, each a dot (with its error bar, if any).
    Points,
    /// A solid line and a dot at each point.
    LineAndPoints,
    /// A reference line (a bar, a prediction).
    Dashed,
    /// The points alone, each a lower bound (a value not reached within
    /// it): a hollow triangle with a stroke pointing up.
    LowerBound,
}

/// One series of (x, y) points.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Its entry in the legend; an empty label has none (one of several
    /// series drawn alike, as one line per seed).
    pub label: String,
    /// The (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub mark: Mark,
    /// Per point, the lowest and highest y over seeds: error bars at
    /// points, a band along a line. Empty: none.
    pub spread: Vec<(f64, f64)>,
    /// The palette's colour of this index; None: of the series' position.
    pub color: Option<usize>,
    /// A thin line (for many lines of one kind).
    pub thin: bool,
}

impl Series {
    /// A series labelled `label`, drawn as `mark`, in the colour of its
    /// position, without spread.
    pub fn new(label: impl Into<String>, mark: Mark, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            mark,
            ..Series::default()
        }
    }

    /// The same series in the palette's colour `index`.
    pub fn color(mut self, index: usize) -> Self {
        self.color = Some(index);
        self
    }

    /// The same series with a spread (lowest, highest) per point.
    pub fn spread(mut self, spread: Vec<(f64, f64)>) -> Self {
        self.spread = spread;
        self
    }
}

/// A chart: axes with units, optional log scales, series with a legend.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    /// The title above the plot (also the report's alt text).
    pub title: String,
    /// The x axis's label, with units.
    pub x_label: String,
    /// The y axis's label, with units.
    pub y_label: String,
    /// A logarithmic x axis (points at x <= 0 are left out).
    pub log_x: bool,
    /// A logarithmic y axis (points at y <= 0 are left out).
    pub log_y: bool,
    /// Fixed y range (in data units); None fits the data. Data outside it
    /// widens it.
    pub y_range: Option<(f64, f64)>,
    /// The series, drawn in order (later ones on top).
    pub series: Vec<Series>,
    /// Marked x values, each a dotted vertical line labelled above the plot
    /// (the start of a phase).
    pub markers: Vec<(f64, String)>,
}

/// Okabe–Ito colours (distinguishable with colour-blindness), with a brown
/// in place of their yellow, which a thin line on white hides, and without
/// their sky blue, which reads as their blue; then black, grey, violet and
/// olive: ten hues apart.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(140, 86, 75),
    RGBColor(0, 0, 0),
    RGBColor(130, 130, 130),
    RGBColor(110, 60, 180),
    RGBColor(128, 128, 0),
];

/// Font sizes in plotters' points (the SVG's pixels are 1/1.24 of them):
/// in a page the figure is 720 pixels wide, so its text should not be much
/// smaller than the page's.
const TITLE_FONT: u32 = 22;
const TICK_FONT: u32 = 17;
const AXIS_FONT: u32 = 18;
const MARKER_FONT: u32 = 16;
/// The title's height and the space under it, in pixels.
const TITLE_ROOM: u32 = 42;
/// The figure's width and the height of its plot (title, axes and plotting
/// area); the legend adds its rows below, marker labels theirs above.
pub(super) const WIDTH: u32 = 720;
const PLOT_HEIGHT: u32 = 450;
/// The plotting area's size inside that, about (for the tick labels' room).
const AREA: (f64, f64) = (600.0, 330.0);
/// A marker label row's height (the legend's sizes are `legend.rs`'s).
const MARKER_ROW: i32 = 19;
/// A point's radius, in pixels.
pub(super) const POINT: i32 = 4;
/// An error bar's half cap, in pixels.
const CAP: i32 = 5;

/// A text's width in pixels at a font of `points` (about 0.55 em a
/// character: DejaVu Sans, the widest of the usual sans-serif fonts, sets
/// the report's labels at 0.5 em on average).
pub(super) fn text_width(s: &str, points: u32) -> i32 {
    (s.chars().count() as f64 * 0.55 * points as f64 / 1.24).ceil() as i32
}

/// A chart's plotting area, on our axes.
pub(super) type Plot<'a, DB> = ChartContext<'a, DB, Cartesian2d<Axis, Axis>>;

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| Error::Figure {
            message: format!("`{}`: {e}", self.title),
        })?;
        Ok(svg)
    }

    /// Each series' points in drawn coordinates, and its spread as
    /// (x, low, high), both without points a log axis cannot show.
    #[allow(clippy::type_complexity)]
    fn drawn(&self) -> (Vec<Vec<(f64, f64)>>, Vec<Vec<(f64, f64, f64)>>) {
        let (lx, ly) = (self.log_x, self.log_y);
        let points = self
            .series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .filter_map(|&(x, y)| Some((transform(x, lx)?, transform(y, ly)?)))
                    .collect()
            })
            .collect();
        let spreads = self
            .series
            .iter()
            .map(|s| {
                if s.spread.len() != s.points.len() {
                    return Vec::new();
                }
                s.points
                    .iter()
                    .zip(&s.spread)
                    .filter_map(|(&(x, _), &(lo, hi))| {
                        Some((transform(x, lx)?, transform(lo, ly)?, transform(hi, ly)?))
                    })
                    .collect()
            })
            .collect();
        (points, spreads)
    }

    /// The x and y axes: fitted to every point, spread and marker, or the
    /// fixed y range when the data lies inside it.
    fn axes(&self, points: &[Vec<(f64, f64)>], spreads: &[Vec<(f64, f64, f64)>]) -> (Axis, Axis) {
        let extent = |v: &mut dyn Iterator<Item = f64>| {
            v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            })
        };
        let markers: Vec<f64> = self
            .markers
            .iter()
            .filter_map(|m| transform(m.0, self.log_x))
            .collect();
        let (x0, x1) = extent(
            &mut points
                .iter()
                .flatten()
                .map(|p| p.0)
                .chain(markers.iter().copied()),
        );
        let (y0, y1) = extent(
            &mut points
                .iter()
                .flatten()
                .map(|p| p.1)
                .chain(spreads.iter().flatten().flat_map(|s| [s.1, s.2])),
        );
        // The data's own values (not the reference lines') choose the
        // kind of tick: whole seeds, a few dimensions d.
        let values = |pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
            self.series
                .iter()
                .filter(|s| s.mark != Mark::Dashed)
                .flat_map(|s| s.points.iter().map(pick))
                .collect()
        };
        let x_room = Room {
            pixels: AREA.0,
            horizontal: true,
        };
        let y_room = Room {
            pixels: AREA.1,
            horizontal: false,
        };
        let x = if x0.is_finite() {
            axis(x0, x1, self.log_x, &values(|p| p.0), false, x_room)
        } else {
            axis(0.0, 1.0, false, &[], true, x_room)
        };
        let fixed = self
            .y_range
            .and_then(|(a, b)| Some((transform(a, self.log_y)?, transform(b, self.log_y)?)));
        let y = match fixed {
            Some((a, b)) if !y0.is_finite() || (y0 >= a && y1 <= b) => {
                axis(a, b, self.log_y, &values(|p| p.1), true, y_room)
            }
            Some((a, b)) => axis(
                y0.min(a),
                y1.max(b),
                self.log_y,
                &values(|p| p.1),
                false,
                y_room,
            ),
            None if y0.is_finite() => axis(y0, y1, self.log_y, &values(|p| p.1), false, y_room),
            None => axis(0.0, 1.0, false, &[], true, y_room),
        };
        (x, y)
    }

    fn look(&self, i: usize) -> Look {
        let s = &self.series[i];
        Look {
            mark: s.mark,
            color: PALETTE[s.color.unwrap_or(i) % PALETTE.len()],
            width: if s.thin { 1 } else { 2 },
        }
    }

    /// Draws the chart into `svg`: the title, the plot (its markers, then
    /// bands under everything, then lines, points and error bars), and the
    /// legend below it.
    fn draw(&self, svg: &mut String) -> std::result::Result<(), Box<dyn std::error::Error + '_>> {
        let (points, spreads) = self.drawn();
        let (x_axis, y_axis) = self.axes(&points, &spreads);
        let entries = self.legend_entries();
        let legend = LegendLayout::new(&entries.iter().map(|e| e.0).collect::<Vec<_>>());
        let marker_rows = self.markers.len().min(2) as i32;
        let above = (marker_rows * MARKER_ROW) as u32;
        let height = PLOT_HEIGHT + above + legend.height();
        let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (upper, lower) = root.split_vertically(PLOT_HEIGHT + above);
        self.draw_title(&root)?;
        let mut chart = self.plot(&upper, above, x_axis, y_axis)?;
        self.draw_markers(&mut chart, &root)?;
        self.draw_bands(&mut chart, &spreads)?;
        self.draw_series(&mut chart, &points, &spreads)?;
        draw_legend(&lower, &legend, &entries, &chart)?;
        root.present()?;
        Ok(())
    }

    /// The legend's entries: each labelled series and its look (a thin
    /// line is drawn in full in the legend).
    fn legend_entries(&self) -> Vec<(&str, Look)> {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.label.is_empty())
            .map(|(i, s)| {
                let mut look = self.look(i);
                look.width = 2;
                (s.label.as_str(), look)
            })
            .collect()
    }

    /// The title on top of `root`, centred; a long one shrinks to the
    /// figure's width.
    fn draw_title<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let title_font = (TITLE_FONT as f64
            * ((WIDTH as f64 - 30.0) / text_width(&self.title, TITLE_FONT) as f64).min(1.0))
        .floor() as u32;
        root.draw(&Text::new(
            self.title.clone(),
            (WIDTH as i32 / 2, 10),
            TextStyle::from(("sans-serif", title_font).into_font())
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        Ok(())
    }

    /// The plotting area in `area`, below the title and the `above` pixels
    /// of the markers' labels, with its axes, ticks, grid and axis labels.
    fn plot<'a, DB: DrawingBackend>(
        &self,
        area: &'a DrawingArea<DB, Shift>,
        above: u32,
        x_axis: Axis,
        y_axis: Axis,
    ) -> std::result::Result<Plot<'a, DB>, Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_top(TITLE_ROOM + above)
            // Room for the last x tick's label, centred on the plot's edge.
            .margin_right(30)
            .x_label_area_size(50)
            .y_label_area_size(75)
            .build_cartesian_2d(x_axis, y_axis)?;
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
        Ok(chart)
    }

    /// A band along each line or dashed line with a spread: drawn before
    /// any series, so that it lies under everything.
    fn draw_bands<DB: DrawingBackend>(
        &self,
        chart: &mut Plot<'_, DB>,
        spreads: &[Vec<(f64, f64, f64)>],
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        for (i, (series, spread)) in self.series.iter().zip(spreads).enumerate() {
            let look = self.look(i);
            if matches!(series.mark, Mark::Line | Mark::Dashed) && spread.len() > 1 {
                let band: Vec<(f64, f64)> = spread
                    .iter()
                    .map(|s| (s.0, s.2))
                    .chain(spread.iter().rev().map(|s| (s.0, s.1)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(
                    band,
                    look.color.mix(0.15).filled(),
                )))?;
            }
        }
        Ok(())
    }

    /// Each series in turn: its line (solid or dashed), then its points
    /// with their error bars.
    fn draw_series<DB: DrawingBackend>(
        &self,
        chart: &mut Plot<'_, DB>,
        points: &[Vec<(f64, f64)>],
        spreads: &[Vec<(f64, f64, f64)>],
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        for (i, (series, drawn)) in self.series.iter().zip(points).enumerate() {
            let look = self.look(i);
            let style = look.color.stroke_width(look.width);
            match series.mark {
                Mark::Line | Mark::LineAndPoints => {
                    chart.draw_series(LineSeries::new(drawn.clone(), style))?;
                }
                Mark::Dashed => {
                    chart.draw_series(DashedLineSeries::new(drawn.clone(), 8, 5, style))?;
                }
                Mark::Points => {}
                Mark::LowerBound => {
                    let stroke = look.color.stroke_width(2);
                    for &p in drawn {
                        chart.draw_series(std::iter::once(
                            EmptyElement::at(p)
                                + TriangleMarker::new((0, 0), POINT + 2, stroke)
                                + PathElement::new(vec![(0, -POINT - 2), (0, -POINT - 12)], stroke),
                        ))?;
                    }
                }
            }
            if matches!(series.mark, Mark::Points | Mark::LineAndPoints) {
                chart.draw_series(
                    drawn
                        .iter()
                        .map(|&p| Circle::new(p, POINT, look.color.filled())),
                )?;
                let bar = look.color.stroke_width(2);
                for &(x, lo, hi) in &spreads[i] {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(x, lo), (x, hi)],
                        bar,
                    )))?;
                    for end in [lo, hi] {
                        chart.draw_series(std::iter::once(
                            EmptyElement::at((x, end))
                                + PathElement::new(vec![(-CAP, 0), (CAP, 0)], bar),
                        ))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The markers: a dotted line each, its label above the plotting area
    /// right of the line, on a second row where it would run into the
    /// label before it.
    fn draw_markers<DB: DrawingBackend>(
        &self,
        chart: &mut Plot<'_, DB>,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let (y0, y1) = {
            let r = chart.y_range();
            (r.start, r.end)
        };
        let grey = RGBColor(90, 90, 90);
        let mut ends: Vec<i32> = vec![i32::MIN; 2];
        let mut markers: Vec<(f64, &str)> = self
            .markers
            .iter()
            .filter_map(|(x, l)| Some((transform(*x, self.log_x)?, l.as_str())))
            .collect();
        markers.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (x, label) in markers {
            chart.draw_series(DashedLineSeries::new(
                vec![(x, y0), (x, y1)],
                3,
                3,
                grey.stroke_width(1),
            ))?;
            let (px, top) = chart.backend_coord(&(x, y1));
            let start = px + 4;
            let row = ends.iter().position(|&e| e + 6 <= start).unwrap_or(1);
            ends[row] = start + text_width(label, MARKER_FONT);
            let font = ("sans-serif", MARKER_FONT)
                .into_font()
                .color(&grey)
                .pos(Pos::new(HPos::Left, VPos::Bottom));
            root.draw(&Text::new(
                label.to_string(),
                (start, top - 4 - row as i32 * MARKER_ROW),
                font,
            ))?;
        }
        Ok(())
    }
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
            y_range: Some((0.0, 1.0)),
            series: vec![
                Series::new(
                    "moe",
                    Mark::LineAndPoints,
                    vec![(1e3, 0.1), (1e4, 0.5), (1e5, 0.99), (0.0, 0.3)],
                ),
                Series::new("theory", Mark::Dashed, vec![(1e3, 0.2), (1e5, 0.9)]),
            ],
            ..Chart::default()
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

    /// The y of the text element that reads `text`.
    fn text_y(svg: &str, text: &str) -> f64 {
        let lines: Vec<&str> = svg.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim() == text)
            .unwrap_or_else(|| panic!("no text {text}"));
        attribute(lines[at - 1], "y")
    }

    #[test]
    fn the_legend_sits_below_the_plot_and_hides_nothing() {
        // Points everywhere: no corner of the plot is free.
        let points: Vec<(f64, f64)> = (0..20)
            .flat_map(|i| (0..20).map(move |j| (i as f64, 0.05 * j as f64)))
            .collect();
        let labels: Vec<String> = (0..9)
            .map(|k| format!("a long legend entry number {k}"))
            .collect();
        let mut series = vec![Series::new(labels[0].clone(), Mark::Points, points)];
        for label in &labels[1..] {
            series.push(Series::new(
                label.clone(),
                Mark::Line,
                vec![(0.0, 0.5), (19.0, 0.6)],
            ));
        }
        let chart = Chart {
            title: "legend".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            y_range: Some((0.0, 1.0)),
            series,
            ..Chart::default()
        };
        let svg = chart.to_svg().unwrap();
        // The data's points (not the legend's own sample point, the last).
        let circles: Vec<f64> = svg
            .lines()
            .filter(|l| l.starts_with("<circle"))
            .map(|l| attribute(l, "cy"))
            .collect();
        assert_eq!(circles.len(), 401);
        let lowest_point = circles[..400].iter().copied().fold(0.0, f64::max);
        let x_label = text_y(&svg, "x");
        for label in &labels {
            let y = text_y(&svg, label);
            assert!(y > lowest_point + 20.0 && y > x_label, "{label} at {y}");
        }
        let height = attribute(svg.lines().next().unwrap(), "height");
        assert!(
            height > 450.0 + 4.0 * 21.0,
            "the legend's rows add height: {height}"
        );
        // Every entry inside the figure.
        let width = attribute(svg.lines().next().unwrap(), "width");
        for l in svg.lines().filter(|l| l.starts_with("<text")) {
            assert!(attribute(l, "x") >= 0.0 && attribute(l, "x") < width);
        }
    }

    #[test]
    fn markers_spreads_and_colours_are_drawn() {
        let chart = Chart {
            title: "markers".into(),
            x_label: "samples".into(),
            y_label: "error".into(),
            log_y: true,
            series: vec![
                Series::new("median", Mark::LineAndPoints, vec![(1.0, 0.3), (2.0, 0.1)])
                    .spread(vec![(0.2, 0.4), (0.05, 0.15)]),
                Series::new("reference", Mark::Dashed, vec![(1.0, 0.028), (2.0, 0.028)])
                    .spread(vec![(0.02, 0.04), (0.02, 0.04)])
                    .color(0),
            ],
            markers: vec![(1.2, "phase II".into()), (1.25, "phase III".into())],
            ..Chart::default()
        };
        let svg = chart.to_svg().unwrap();
        // Both labels above the plot, on two rows (they would overlap).
        let (a, b) = (text_y(&svg, "phase II"), text_y(&svg, "phase III"));
        assert!((a - b).abs() >= MARKER_ROW as f64, "{a} {b}");
        // The band of the reference line, in the first series' colour.
        assert!(svg
            .lines()
            .any(|l| l.starts_with("<polygon") && l.contains("#0072B2")));
        // The axis reaches below the reference line: a tick at 0.02.
        assert!(svg.lines().any(|l| l.trim() == "0.02"), "{svg}");
    }
}
