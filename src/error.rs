//! One error type for the whole crate.
//!
//! The CLI maps [`Error::exit_status`] to the process status: 2 for input the
//! user must fix, 1 for a run that failed.
//!
//! Messages speak of configuration fields (`task.d`) and of the options
//! given beside a configuration ([`RunOption`]: `out`, `threads`, ...) by
//! their names; the command line prints them with its flags instead
//! (`--out`) through [`Error::message_with`].

use std::path::PathBuf;

use crate::phase::{ModelKind, Phase};

/// An option given beside the configuration: where a run or sweep
/// writes, how many threads or runs at once, which shard, the overrides of
/// the configuration, what a bench times. The library names each by
/// [`RunOption::name`], which is also the Python package's keyword; the
/// command line by its flag (`--out`, see [`Error::message_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOption {
    /// The directory a run or a sweep writes (`out`).
    Out,
    /// The `FIELD=VALUE` overrides of the configuration (`set`).
    Set,
    /// The threads of a run or a bench (`threads`).
    Threads,
    /// The runs of a sweep trained at once (`jobs`).
    Jobs,
    /// The part of a sweep that this process runs, `I/N` (`shard`).
    Shard,
    /// The input dimensions a bench times (`d`).
    Dims,
    /// The factor a bench scales the phase lengths by (`steps_scale`).
    StepsScale,
}

impl RunOption {
    /// The option's name in the library's messages (and the Python
    /// package's keyword argument).
    pub fn name(self) -> &'static str {
        match self {
            RunOption::Out => "out",
            RunOption::Set => "set",
            RunOption::Threads => "threads",
            RunOption::Jobs => "jobs",
            RunOption::Shard => "shard",
            RunOption::Dims => "d",
            RunOption::StepsScale => "steps_scale",
        }
    }
}

impl std::fmt::Display for RunOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a parse error was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file.
    File(PathBuf),
    /// A `FIELD=VALUE` override (the [`RunOption::Set`] option).
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
            Input::Set(set) => write!(f, "{} {set}", RunOption::Set),
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
        /// The field's dotted path (`task.d`), or the name of the
        /// argument (a function's, an environment variable) that holds it.
        field: String,
        /// The value given, as text.
        value: String,
        /// What the field allows.
        allowed: String,
    },
    /// The value of an option given beside the configuration is not
    /// allowed; the same message as [`Error::Invalid`]'s, naming the option.
    #[error("invalid value for `{option}`: {value} ({allowed})")]
    InvalidOption {
        /// The option.
        option: RunOption,
        /// The value given, as text.
        value: String,
        /// What the option allows.
        allowed: String,
    },
    /// A configuration names a field that does not exist.
    #[error("unknown field `{field}`{hint}")]
    UnknownField {
        /// The field's dotted path as given.
        field: String,
        /// The closest known field and the valid ones there, as the
        /// message's tail.
        hint: String,
    },
    /// An input (a configuration or grid file, a `--set` value, a grid
    /// value, a run's files) could not be parsed.
    #[error("cannot parse {input}: {message}")]
    Parse {
        /// Where the error was found.
        input: Input,
        /// What the parser says (a position, the field of a type error).
        message: String,
    },
    /// An input file (configuration, grid) could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`cannot write`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Training produced a non-finite value.
    #[error(
        "{model} diverged in {phase} at step {step}: {quantity} is not finite; \
         try a smaller learning rate (e.g. `{phase}.lr` divided by 10)"
    )]
    Diverged {
        /// The model that diverged.
        model: ModelKind,
        /// The phase it was in.
        phase: Phase,
        /// The step of that phase.
        step: u64,
        /// What is not finite (`a first-layer weight`).
        quantity: &'static str,
    },
    /// Some runs of a sweep failed (each was reported); the rest are on disk.
    #[error("{failed} of {planned} runs failed; running the sweep again retries them")]
    RunsFailed {
        /// Runs that failed.
        failed: usize,
        /// Runs of the sweep (of this shard).
        planned: usize,
    },
    /// A checkpoint (or the run directory given to `--resume`) cannot be
    /// used: missing, truncated, corrupted, from another version or run.
    #[error("cannot resume from {path}: {message}")]
    Checkpoint {
        /// The checkpoint file or run directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Another process is writing the directory (it holds the directory's
    /// lock); nothing was touched.
    #[error(
        "{} is in use by another clustermoe process{}: one writer per directory; \
         wait for it to finish, or give another directory",
        path.display(),
        holder.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    InUse {
        /// The directory.
        path: PathBuf,
        /// The process id of the process that holds it, where known.
        holder: Option<u32>,
    },
    /// A run directory is not a result: its files do not match its
    /// completion record (or it has none).
    #[error(
        "{} is not a complete run: {reason}; resume it, or run it (or its sweep) again",
        path.display()
    )]
    Incomplete {
        /// The run directory.
        path: PathBuf,
        /// What does not match (a file named).
        reason: String,
    },
    /// The run's estimated peak memory does not fit the memory this process
    /// may use (`clustermoe::memory::check`): refused before it trains or
    /// writes anything.
    #[error("not enough memory: {message}")]
    Memory {
        /// The estimated peak, in bytes.
        needed: u64,
        /// The limit it exceeds, in bytes.
        limit: u64,
        /// The estimate, the limit and where it comes from, what to change.
        message: String,
    },
    /// A signal asked the run to stop; a checkpoint was written first.
    #[error(
        "stopped by signal {signal} in {model} {phase}{}; a checkpoint was written",
        step.map_or(String::new(), |s| format!(" after step {s}"))
    )]
    Interrupted {
        /// The signal's number (2 for SIGINT, 15 for SIGTERM).
        signal: i32,
        /// The model that was training.
        model: ModelKind,
        /// Its phase.
        phase: Phase,
        /// The last step of that phase done, if any.
        step: Option<u64>,
    },
    /// A signal stopped a sweep; its runs in progress were checkpointed.
    #[error(
        "stopped by signal {signal}: {unfinished} runs unfinished (those in progress \
         were checkpointed); the same sweep command resumes them"
    )]
    SweepStopped {
        /// The signal's number.
        signal: i32,
        /// Runs of the sweep not finished.
        unfinished: usize,
    },
    /// The ridge system of the readout could not be solved.
    #[error("{model} readout failed: {message}; try a larger `readout.ridge`")]
    Readout {
        /// The model whose readout failed.
        model: ModelKind,
        /// Why the system could not be solved.
        message: String,
    },
    /// A figure could not be drawn or rendered.
    #[error("cannot draw a figure: {message}")]
    Figure {
        /// What went wrong.
        message: String,
    },
    /// A finished run measured a non-finite value; JSON would write it as
    /// null, and a summary with a hole would never count as complete.
    #[error(
        "the run finished but its `{field}` is {value}, not a finite number; \
         no summary.json is written (the metrics are kept)"
    )]
    NonFinite {
        /// The summary's field (`vanilla.test_rel_mse`).
        field: String,
        /// Its value (NaN or an infinity).
        value: f64,
    },
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

    /// Shorthand for [`Error::InvalidOption`].
    pub fn invalid_option(
        option: RunOption,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        Error::InvalidOption {
            option,
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
            | Error::InvalidOption { .. }
            | Error::UnknownField { .. }
            | Error::Parse { .. }
            | Error::Unreadable { .. }
            | Error::Checkpoint { .. }
            | Error::InUse { .. }
            | Error::Incomplete { .. }
            | Error::Memory { .. } => 2,
            Error::Interrupted { signal, .. } | Error::SweepStopped { signal, .. } => 128 + *signal,
            Error::Io { .. }
            | Error::Diverged { .. }
            | Error::Readout { .. }
            | Error::Figure { .. }
            | Error::NonFinite { .. }
            | Error::RunsFailed { .. } => 1,
        }
    }

    /// The message, with each [`RunOption`] called `option_name(option)`
    /// rather than by its own name: the command line passes its flags
    /// (`--out`), so that its messages speak of what was typed. With
    /// [`RunOption::name`] it is `to_string()`.
    pub fn message_with(&self, option_name: fn(RunOption) -> &'static str) -> String {
        match self {
            Error::InvalidOption {
                option,
                value,
                allowed,
            } => Error::invalid(option_name(*option), value, allowed.as_str()).to_string(),
            Error::Parse {
                input: Input::Set(set),
                message,
            } => format!(
                "cannot parse {} {set}: {message}",
                option_name(RunOption::Set)
            ),
            Error::Parse {
                input: Input::File(_) | Input::GridValue(_) | Input::Argument(_) | Input::Text,
                ..
            }
            | Error::Invalid { .. }
            | Error::UnknownField { .. }
            | Error::Unreadable { .. }
            | Error::Io { .. }
            | Error::Diverged { .. }
            | Error::RunsFailed { .. }
            | Error::Checkpoint { .. }
            | Error::InUse { .. }
            | Error::Incomplete { .. }
            | Error::Memory { .. }
            | Error::Interrupted { .. }
            | Error::SweepStopped { .. }
            | Error::Readout { .. }
            | Error::Figure { .. }
            | Error::NonFinite { .. } => self.to_string(),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::{Error, Input, RunOption};

    const OPTIONS: [RunOption; 7] = [
        RunOption::Out,
        RunOption::Set,
        RunOption::Threads,
        RunOption::Jobs,
        RunOption::Shard,
        RunOption::Dims,
        RunOption::StepsScale,
    ];

    /// What the command line does: each option by a flag.
    fn flag(option: RunOption) -> &'static str {
        match option {
            RunOption::Out => "--out",
            RunOption::Set => "--set",
            RunOption::Threads => "--threads",
            RunOption::Jobs => "--jobs",
            RunOption::Shard => "--shard",
            RunOption::Dims => "--d",
            RunOption::StepsScale => "--steps-scale",
        }
    }

    #[test]
    fn options_are_named_by_their_names_or_by_the_callers_words() {
        for option in OPTIONS {
            let e = Error::invalid_option(option, 0, "an integer >= 1");
            let want = format!("invalid value for `{}`: 0 (an integer >= 1)", option.name());
            assert_eq!(e.to_string(), want);
            assert_eq!(e.message_with(RunOption::name), want);
            assert_eq!(
                e.message_with(flag),
                format!("invalid value for `{}`: 0 (an integer >= 1)", flag(option))
            );
            assert_eq!(e.exit_status(), 2);
        }
        let set = Error::parse(Input::Set("task.rho=fast".into()), "expected a number");
        assert_eq!(
            set.to_string(),
            "cannot parse set task.rho=fast: expected a number"
        );
        assert_eq!(set.message_with(RunOption::name), set.to_string());
        assert_eq!(
            set.message_with(flag),
            "cannot parse --set task.rho=fast: expected a number"
        );
        // Fields are the configuration's, whoever prints them.
        let field = Error::invalid("task.d", 0, "an integer from 1 to 65536");
        assert_eq!(field.message_with(flag), field.to_string());
    }
}
