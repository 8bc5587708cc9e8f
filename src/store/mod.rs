//! Run directories on disk: [`RunDir`] owns every path of a run (and
//! [`SweepDir`] of a sweep); [`checkpoint`] is the checkpoint file format and
//! the journal that writes it; [`output`] writes files atomically.

pub mod checkpoint;
pub mod output;
mod run_dir;

pub use checkpoint::Control;
pub use run_dir::{Inspection, Position, Progress, RunDir, SweepDir};
