//! A configuration from Python: `None` (the defaults), a path to a TOML
//! file, or a dict of sections; then keyword sections applied field by
//! field as the CLI's `--set FIELD=VALUE` overrides, then the seed. Every
//! value goes through the library's own parser and checks, so messages are
//! the CLI's.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use clustermoe::config::Config;
use clustermoe::error::{Error, Input};
use clustermoe::sweep::GridFile;

const ALLOWED: &str = "a TOML value: a number, a string, a boolean, a list or a dict of them";

/// A Python value as a TOML value; `field` names it in errors.
fn toml_value(field: &str, v: &Bound<'_, PyAny>) -> Result<toml::Value, Error> {
    let invalid = || Error::invalid(field, describe(v), ALLOWED);
    if v.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(v.extract().map_err(|_| invalid())?));
    }
    if v.is_instance_of::<PyInt>() {
        return v
            .extract::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| Error::invalid(field, describe(v), "an integer that fits in 64 bits"));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(v.extract().map_err(|_| invalid())?));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(v.extract().map_err(|_| invalid())?));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        return Ok(toml::Value::Table(toml_table(field, d)?));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items = v.try_iter().map_err(|_| invalid())?;
        let mut out = Vec::new();
        for (i, item) in items.enumerate() {
            let item = item.map_err(|_| invalid())?;
            out.push(toml_value(&format!("{field}[{i}]"), &item)?);
        }
        return Ok(toml::Value::Array(out));
    }
    // NumPy scalars and arrays (and anything else with `tolist`).
    if let Ok(plain) = v.call_method0("tolist") {
        if !plain.is(v) {
            return toml_value(field, &plain);
        }
    }
    Err(invalid())
}

/// A dict with string keys as a TOML table.
pub fn toml_table(field: &str, d: &Bound<'_, PyDict>) -> Result<toml::Table, Error> {
    let mut table = toml::Table::new();
    for (k, v) in d.iter() {
        let key: String = k
            .extract()
            .map_err(|_| Error::invalid(field, describe(&k), "a dict with string keys"))?;
        let path = if field.is_empty() {
            key.clone()
        } else {
            format!("{field}.{key}")
        };
        table.insert(key, toml_value(&path, &v)?);
    }
    Ok(table)
}

/// `repr(v)`, for messages.
fn describe(v: &Bound<'_, PyAny>) -> String {
    v.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unprintable>".into())
}

/// `FIELD=VALUE` overrides from keyword sections: `task={"d": 64}` gives
/// `task.d=64`; a value that is not a dict is set whole.
fn sets(sections: &Bound<'_, PyDict>) -> Result<Vec<String>, Error> {
    fn walk(path: &str, v: &Bound<'_, PyAny>, out: &mut Vec<String>) -> Result<(), Error> {
        if let Ok(d) = v.cast::<PyDict>() {
            for (k, v) in d.iter() {
                let key: String = k
                    .extract()
                    .map_err(|_| Error::invalid(path, describe(&k), "a dict with string keys"))?;
                walk(&format!("{path}.{key}"), &v, out)?;
            }
            return Ok(());
        }
        out.push(format!("{path}={}", toml_value(path, v)?));
        Ok(())
    }
    let mut out = Vec::new();
    for (k, v) in sections.iter() {
        let key: String = k
            .extract()
            .map_err(|_| Error::invalid("section", describe(&k), "a section name such as task"))?;
        walk(&key, &v, &mut out)?;
    }
    Ok(out)
}

/// A seed from Python: an integer from 0 to 2^64 - 1.
pub fn seed(v: Option<&Bound<'_, PyAny>>) -> Result<Option<u64>, Error> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) if v.is_instance_of::<PyBool>() => Err(Error::invalid(
            "seed",
            describe(v),
            "an integer from 0 to 2^64 - 1",
        )),
        Some(v) => v
            .extract::<u64>()
            .map(Some)
            .map_err(|_| Error::invalid("seed", describe(v), "an integer from 0 to 2^64 - 1")),
    }
}

/// A non-negative integer parameter (`n`, `jobs`, `checkpoint_every`, ...)
/// in `range`, or an error naming the parameter and what is allowed.
pub fn count(
    name: &str,
    v: &Bound<'_, PyAny>,
    range: std::ops::RangeInclusive<u64>,
    allowed: &str,
) -> Result<u64, Error> {
    let bad = || Error::invalid(name, describe(v), allowed);
    if v.is_instance_of::<PyBool>() {
        return Err(bad());
    }
    let n: u64 = v.extract().map_err(|_| bad())?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// The configuration of `config` (None, a path, or a dict), keyword
/// `sections` and `seed`, parsed (not yet checked).
/// A grid given as a dict (the grid file's tables: `seeds`, `set`, `grid`,
/// optional `base`), or as the path of a grid file: (the grid, the folder
/// its `base` is relative to).
pub fn grid(v: &Bound<'_, PyAny>) -> Result<(GridFile, PathBuf), Error> {
    if let Ok(d) = v.cast::<PyDict>() {
        let table = toml_table("grid", d)?;
        let grid = toml::Value::Table(table)
            .try_into::<GridFile>()
            .map_err(|e| Error::parse(Input::Argument("grid".into()), e.to_string()))?;
        return Ok((grid, PathBuf::from(".")));
    }
    let path: PathBuf = v.extract().map_err(|_| {
        Error::invalid(
            "grid",
            describe(v),
            "a dict (seeds, set, grid, base) or the path of a grid file",
        )
    })?;
    let grid = GridFile::from_file(&path)?;
    let dir = path.parent().map_or(PathBuf::from("."), PathBuf::from);
    Ok((grid, dir))
}

pub fn load(
    config: Option<&Bound<'_, PyAny>>,
    seed_value: Option<&Bound<'_, PyAny>>,
    sections: Option<&Bound<'_, PyDict>>,
) -> Result<Config, Error> {
    let sets = match sections {
        Some(s) => sets(s)?,
        None => Vec::new(),
    };
    let config = config.filter(|c| !c.is_none());
    let mut parsed = match config {
        None => Config::from_toml_with_overrides("", &sets).map_err(as_argument)?,
        Some(c) => match c.cast::<PyDict>() {
            Ok(d) => {
                let table = toml_table("", d)?;
                let text = toml::to_string(&table).map_err(|e| {
                    Error::invalid("config", describe(c), format!("a dict TOML can hold ({e})"))
                })?;
                Config::from_toml_with_overrides(&text, &sets).map_err(as_argument)?
            }
            Err(_) => {
                let path: PathBuf = c.extract().map_err(|_| {
                    Error::invalid(
                        "config",
                        describe(c),
                        "None, a dict of sections, or the path of a TOML file",
                    )
                })?;
                Config::from_file_with_overrides(&path, &sets).map_err(as_argument)?
            }
        },
    };
    if let Some(s) = seed(seed_value)? {
        parsed.seed = s;
    }
    Ok(parsed)
}

/// A keyword section's value is an argument here, not a `--set` flag.
fn as_argument(e: Error) -> Error {
    match e {
        Error::Parse {
            input: Input::Set(set),
            message,
        } => Error::Parse {
            input: Input::Argument(set),
            message,
        },
        other => other,
    }
}
