//! Run directories on disk: [`RunDir`] owns every path of a run (and
//! [`SweepDir`] of a sweep) and [`RunWriter`] the right to write one;
//! [`lock`] keeps one writer per directory; [`record`] is the completion
//! record that says a run is complete; [`checkpoint`] is the checkpoint file
//! format and the journal that writes it; [`output`] writes files atomically.
//!
//! A library user reads and writes run directories through [`RunDir`] and
//! the [`RunWriter`] it hands out, and sweep directories through
//! [`SweepDir`] (run by [`crate::sweep`]), checkpointing and stopping a run
//! with [`Control`]; beside these the submodules make public the files'
//! formats: the completion record, the lock file, the checkpoint format's
//! version, the arrays of `.npz` files.

pub mod checkpoint;
pub mod lock;
pub mod output;
pub mod record;
mod run_dir;

pub use checkpoint::Control;
pub(crate) use checkpoint::DirJournal;
pub use record::Completeness;
pub(crate) use run_dir::Checkpoints;
pub use run_dir::{
    unusable_out, CompleteRun, Inspection, Position, Progress, RunDir, RunState, RunWriter,
    SweepDir,
};
