//! One error type for the whole crate.
//!
//! The CLI maps [`Error::exit_status`] to the process status: 2 for input the
//! user must fix, 1 for a run that failed.

use std::path::PathBuf;

use crate::phase::{ModelKind, Phase};

/// Where a parse error was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file.
    File(PathBuf),
    /// A `--set FIELD=VALUE` override.
    Set(String),
    /// A value of a sweep grid, as `FIELD=VALUE`.
    GridValue(String),
    /// A field given as an argument of a function (the Python package's
    /// keyword sections), as `FIELD=VALUE`.
    Argument(String),
    /// TOML text given as a string.
    Text,
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(path) => write!(f, "{}", path.display()),
            Input::Set(set) => write!(f, "--set {set}"),
            Input::GridValue(set) => write!(f, "grid value {set}"),
            Input::Argument(set) => write!(f, "argument {set}"),
            Input::Text => write!(f, "configuration"),
        }
    }
}

impl From<PathBuf> for Input {
    fn from(path: PathBuf) -> Self {
        Input::File(path)
    }
}

impl From<&std::path::Path> for Input {
    fn from(path: &std::path::Path) -> Self {
        Input::File(path.to_path_buf())
    }
}

/// Everything that can go wrong in `clustermoe`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is not allowed.
    #[error("invalid value for `{field}`: {value} ({allowed})")]
    Invalid {
        field: String,
        value: String,
        allowed: String,
    },
    /// A configuration names a field that does not exist.
    #[error("unknown field `{field}`{hint}")]
    UnknownField { field: String, hint: String },
    /// An input (a configuration or grid file, a `--set` value, a grid
    /// value, a run's files) could not be parsed.
    #[error("cannot parse {input}: {message}")]
    Parse { input: Input, message: String },
    /// An input file (configuration, grid) could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Training produced a non-finite value.
    #[error(
        "{model} diverged in {phase} at step {step}: {quantity} is not finite; \
         try a smaller learning rate (e.g. `{phase}.lr` divided by 10)"
    )]
    Diverged {
        model: ModelKind,
        phase: Phase,
        step: u64,
        quantity: &'static str,
    },
    /// Some runs of a sweep failed (each was reported); the rest are on disk.
    #[error("{failed} of {planned} runs failed; running the sweep again retries them")]
    RunsFailed { failed: usize, planned: usize },
    /// A checkpoint (or the run directory given to `--resume`) cannot be
    /// used: missing, truncated, corrupted, from another version or run.
    #[error("cannot resume from {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// Another process is writing the directory (it holds the directory's
    /// lock); nothing was touched.
    #[error(
        "{} is in use by another clustermoe process{}: one writer per directory; \
         wait for it to finish, or give another directory",
        path.display(),
        holder.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    InUse { path: PathBuf, holder: Option<u32> },
    /// A run directory is not a result: its files do not match its
    /// completion record (or it has none).
    #[error(
        "{} is not a complete run: {reason}; resume it, or run it (or its sweep) again",
        path.display()
    )]
    Incomplete { path: PathBuf, reason: String },
    /// A signal asked the run to stop; a checkpoint was written first.
    #[error(
        "stopped by signal {signal} in {model} {phase}{}; a checkpoint was written",
        step.map_or(String::new(), |s| format!(" after step {s}"))
    )]
    Interrupted {
        signal: i32,
        model: ModelKind,
        phase: Phase,
        step: Option<u64>,
    },
    /// A signal stopped a sweep; its runs in progress were checkpointed.
    #[error(
        "stopped by signal {signal}: {unfinished} runs unfinished (those in progress \
         were checkpointed); the same sweep command resumes them"
    )]
    SweepStopped { signal: i32, unfinished: usize },
    /// The ridge system of the readout could not be solved.
    #[error("{model} readout failed: {message}; try a larger `readout.ridge`")]
    Readout { model: ModelKind, message: String },
    /// A figure could not be drawn or rendered.
    #[error("cannot draw a figure: {message}")]
    Figure { message: String },
    /// A finished run measured a non-finite value; JSON would write it as
    /// null, and a summary with a hole would never count as complete.
    #[error(
        "the run finished but its `{field}` is {value}, not a finite number; \
         no summary.json is written (the metrics are kept)"
    )]
    NonFinite { field: String, value: f64 },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            field: field.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// Shorthand for [`Error::Parse`].
    pub fn parse(input: impl Into<Input>, message: impl Into<String>) -> Self {
        Error::Parse {
            input: input.into(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The process exit status for this error: 2 for bad input, 1 for a failed run.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Invalid { .. }
            | Error::UnknownField { .. }
            | Error::Parse { .. }
            | Error::Unreadable { .. }
            | Error::Checkpoint { .. }
            | Error::InUse { .. }
            | Error::Incomplete { .. } => 2,
            Error::Interrupted { signal, .. } | Error::SweepStopped { signal, .. } => 128 + *signal,
            Error::Io { .. }
            | Error::Diverged { .. }
            | Error::Readout { .. }
            | Error::Figure { .. }
            | Error::NonFinite { .. }
            | Error::RunsFailed { .. } => 1,
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
