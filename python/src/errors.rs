//! The library's errors as Python exceptions: one class per `Error` variant
//! of the hierarchy in `clustermoe/errors.py` (bad input under
//! `InputError(ValueError)`, a failed run under `RunError(RuntimeError)`),
//! with the library's message and the variant's fields as attributes (an
//! option given beside the configuration, such as `out`, is named as the
//! library names it, which is the keyword argument's name). A stop that a
//! signal asked for becomes `KeyboardInterrupt`.

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use clustermoe::error::Error;

/// The Python class (in `clustermoe.errors`) of an error.
fn class_name(e: &Error) -> &'static str {
    match e {
        Error::Invalid { .. } | Error::InvalidOption { .. } => "InvalidValueError",
        Error::UnknownField { .. } => "UnknownFieldError",
        Error::Parse { .. } => "ParseError",
        Error::Unreadable { .. } => "UnreadableError",
        Error::Checkpoint { .. } => "CheckpointError",
        Error::InUse { .. } => "InUseError",
        Error::Incomplete { .. } => "IncompleteRunError",
        Error::Memory { .. } => "InsufficientMemoryError",
        Error::Io { .. } => "FileError",
        Error::Diverged { .. } => "DivergedError",
        Error::RunsFailed { .. } => "RunsFailedError",
        Error::Readout { .. } => "ReadoutError",
        Error::Figure { .. } => "FigureError",
        Error::NonFinite { .. } => "NonFiniteError",
        Error::Interrupted { .. } | Error::SweepStopped { .. } => "KeyboardInterrupt",
    }
}

/// The variant's fields, set as attributes of the exception.
fn attributes<'py>(py: Python<'py>, e: &Error) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match e {
        Error::Invalid {
            field,
            value,
            allowed,
        } => {
            d.set_item("field", field)?;
            d.set_item("value", value)?;
            d.set_item("allowed", allowed)?;
        }
        Error::InvalidOption {
            option,
            value,
            allowed,
        } => {
            d.set_item("field", option.name())?;
            d.set_item("value", value)?;
            d.set_item("allowed", allowed)?;
        }
        Error::UnknownField { field, .. } => d.set_item("field", field)?,
        Error::Parse { input, .. } => d.set_item("input", input.to_string())?,
        Error::Unreadable { path, .. }
        | Error::Io { path, .. }
        | Error::Checkpoint { path, .. } => d.set_item("path", path)?,
        Error::InUse { path, holder } => {
            d.set_item("path", path)?;
            d.set_item("holder", holder)?;
        }
        Error::Incomplete { path, reason } => {
            d.set_item("path", path)?;
            d.set_item("reason", reason)?;
        }
        Error::Diverged {
            model, phase, step, ..
        } => {
            d.set_item("model", model.name())?;
            d.set_item("phase", phase.name())?;
            d.set_item("step", step)?;
        }
        Error::RunsFailed { failed, planned } => {
            d.set_item("failed", failed)?;
            d.set_item("planned", planned)?;
        }
        Error::Readout { model, .. } => d.set_item("model", model.name())?,
        Error::Memory { needed, limit, .. } => {
            d.set_item("needed", needed)?;
            d.set_item("limit", limit)?;
        }
        Error::NonFinite { field, value } => {
            d.set_item("field", field)?;
            d.set_item("value", value)?;
        }
        Error::Figure { .. } | Error::Interrupted { .. } | Error::SweepStopped { .. } => {}
    }
    d.set_item("status", e.exit_status())?;
    Ok(d)
}

/// The Python exception of a library error, with the library's message.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    to_py_with(py, e, e.to_string())
}

/// The Python exception of a library error, with `message`.
pub fn to_py_with(py: Python<'_>, e: &Error, message: String) -> PyErr {
    let class = class_name(e);
    if class == "KeyboardInterrupt" {
        return PyKeyboardInterrupt::new_err(message);
    }
    let build = || -> PyResult<PyErr> {
        let class = py.import("clustermoe.errors")?.getattr(class)?;
        let exception = class.call1((message.clone(),))?;
        for (k, v) in attributes(py, e)?.iter() {
            exception.setattr(k.cast::<pyo3::types::PyString>()?, v)?;
        }
        Ok(PyErr::from_value(exception))
    };
    // Without the Python module (never in the package) a plain RuntimeError.
    build().unwrap_or_else(|_| PyRuntimeError::new_err(message))
}

/// `Result<T, Error>` into `PyResult<T>`.
pub trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}
