//! What a reader sees: figures (SVG and PNG charts with readable axes:
//! `figure.rs`, with `axis.rs`, `legend.rs` and `png.rs`), the
//! reproduction report's pages (`page.rs`), and the throughput chart of
//! `bench` (`throughput.rs`).

mod axis;
pub mod figure;
mod legend;
pub mod page;
mod png;
pub mod throughput;
