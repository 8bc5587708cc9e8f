//! Figures for a reader: SVG and PNG charts with readable axes.

pub mod figure;
