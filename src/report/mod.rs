//! What a reader sees: figures (SVG and PNG charts with readable axes) and
//! the reproduction report's pages.

pub mod figure;
pub mod page;
