//! The legend of a chart, below its plot: each series' label beside a
//! sample of its mark (a point, a line, a dashed line), in columns of equal
//! width filled row by row, centred under the plotting area.

use plotters::backend::DrawingBackend;
use plotters::coord::Shift;
use plotters::drawing::DrawingArea;
use plotters::element::{Circle, DashedPathElement, PathElement, Text, TriangleMarker};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, IntoFont, RGBColor, TextStyle};

use super::figure::{text_width, Mark, Plot, POINT, WIDTH};

/// The legend's font size in plotters' points.
const LEGEND_FONT: u32 = 17;
/// A legend row's height, the legend's sample mark's width and the gap
/// after it, in pixels.
const LEGEND_ROW: i32 = 23;
const LEGEND_MARK: i32 = 28;
const LEGEND_GAP: i32 = 8;

/// A legend entry's look.
#[derive(Clone, Copy)]
pub(super) struct Look {
    /// The series' mark.
    pub(super) mark: Mark,
    /// The series' colour.
    pub(super) color: RGBColor,
    /// The line's width in pixels.
    pub(super) width: u32,
}

/// Where each legend entry goes: columns of equal width, filled row by row.
pub(super) struct LegendLayout {
    columns: usize,
    rows: usize,
    column_width: i32,
}

impl LegendLayout {
    /// The layout of entries labelled `labels`, in order.
    pub(super) fn new(labels: &[&str]) -> Self {
        if labels.is_empty() {
            return LegendLayout {
                columns: 1,
                rows: 0,
                column_width: 0,
            };
        }
        let widest = labels
            .iter()
            .map(|l| text_width(l, LEGEND_FONT))
            .max()
            .unwrap_or(0);
        let column_width = LEGEND_MARK + LEGEND_GAP + widest + 24;
        let room = WIDTH as i32 - 40;
        let columns = ((room / column_width.max(1)) as usize)
            .clamp(1, 3)
            .min(labels.len());
        LegendLayout {
            columns,
            rows: labels.len().div_ceil(columns),
            column_width,
        }
    }

    /// The legend's height in pixels: 0 without entries.
    pub(super) fn height(&self) -> u32 {
        if self.rows == 0 {
            0
        } else {
            (self.rows as i32 * LEGEND_ROW + 12) as u32
        }
    }
}

/// The legend below the plot, centred under the plotting area.
pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layout: &LegendLayout,
    entries: &[(&str, Look)],
    chart: &Plot<'_, DB>,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() {
        return Ok(());
    }
    let plot = chart.plotting_area().get_pixel_range();
    let centre = (plot.0.start + plot.0.end) / 2;
    let width = layout.columns as i32 * layout.column_width - 24;
    let left = (centre - width / 2).clamp(8, (WIDTH as i32 - width - 8).max(8));
    let font = TextStyle::from(("sans-serif", LEGEND_FONT).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (k, (label, look)) in entries.iter().enumerate() {
        let (row, column) = (k / layout.columns, k % layout.columns);
        let x = left + column as i32 * layout.column_width;
        let y = 4 + row as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        let style = look.color.stroke_width(look.width);
        let mid = x + LEGEND_MARK / 2;
        match look.mark {
            Mark::Points => area.draw(&Circle::new((mid, y), POINT, look.color.filled()))?,
            Mark::Dashed => area.draw(&DashedPathElement::new(
                vec![(x, y), (x + LEGEND_MARK, y)],
                7,
                4,
                style,
            ))?,
            Mark::Line => {
                area.draw(&PathElement::new(vec![(x, y), (x + LEGEND_MARK, y)], style))?
            }
            Mark::LineAndPoints => {
                area.draw(&PathElement::new(vec![(x, y), (x + LEGEND_MARK, y)], style))?;
                area.draw(&Circle::new((mid, y), POINT, look.color.filled()))?;
            }
            Mark::LowerBound => {
                let stroke = look.color.stroke_width(2);
                area.draw(&TriangleMarker::new((mid, y + 2), POINT + 1, stroke))?;
                area.draw(&PathElement::new(vec![(mid, y - 2), (mid, y - 8)], stroke))?;
            }
        }
        area.draw(&Text::new(
            label.to_string(),
            (x + LEGEND_MARK + LEGEND_GAP, y),
            font.clone(),
        ))?;
    }
    Ok(())
}
