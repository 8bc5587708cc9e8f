//! What a reader sees: figures (SVG and PNG charts with readable axes),
//! the reproduction report's pages, and the throughput chart of `bench`.

mod axis;
pub mod figure;
pub mod page;
pub mod throughput;
