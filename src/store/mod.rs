//! Run directories on disk: the result files, checkpoints and atomic writes.

pub mod checkpoint;
pub mod output;
