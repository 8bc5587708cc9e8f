//! Reading a configuration: TOML text or a file over the defaults, then
//! `--set FIELD=VALUE` overrides, merged table by table; an unknown field is
//! named with the closest known one, and a type error blames its source.

use std::path::Path;

use super::{Config, ValidConfig};
use crate::error::{Error, Input, Result, RunOption};

impl Config {
    /// Reads a TOML file whose fields override the defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with_overrides(path, &[])
    }

    /// Reads a TOML file, then applies `FIELD=VALUE` overrides (see
    /// [`Config::from_toml_with_overrides`]).
    pub fn from_file_with_overrides(path: &Path, sets: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_overrides(&text, sets).map_err(|e| match e {
            // The file is to blame unless the value came from a `--set`.
            Error::Parse {
                input: Input::Text,
                message,
            } => Error::parse(path, message),
            other => other,
        })
    }

    /// Parses TOML text whose fields override the defaults.
    pub fn from_toml(text: &str) -> Result<Self> {
        Self::from_toml_with_overrides(text, &[])
    }

    /// Parses TOML text over the defaults, then applies `FIELD=VALUE`
    /// overrides (dotted field paths, TOML values; a bare word is taken as a
    /// string). Merging happens on the TOML tables, field by field, so a
    /// section given in part keeps its own defaults for the rest.
    pub fn from_toml_with_overrides(text: &str, sets: &[String]) -> Result<Self> {
        let parse_error = |message: String| Error::Parse {
            input: Input::Text,
            message: message.trim_end().replace('\n', " "),
        };
        // The `--set` behind each field it gave, to blame it for a type error.
        let mut set_fields: Vec<(String, &String)> = Vec::new();
        let mut table = known_table();
        let file: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        check_known_fields(&table, &file, "")?;
        merge_tables(&mut table, file);
        for set in sets {
            let (key, value) = set.split_once('=').ok_or_else(|| {
                Error::invalid_option(RunOption::Set, set, "FIELD=VALUE, e.g. task.d=64")
            })?;
            // One TOML value, or else the raw text as a string: `1\nseed = 5`
            // is the string "1\nseed = 5", never two assignments.
            let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .filter(|t| t.len() == 1)
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
            let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
            // No field is deeper than `section.field`; a longer path is
            // malformed (and would build a needlessly deep table).
            if path.len() > MAX_SET_DEPTH || path.iter().any(|p| p.is_empty()) {
                return Err(Error::invalid_option(
                    RunOption::Set,
                    format!("{set:?}"),
                    "FIELD=VALUE with FIELD a dotted field name such as task.d",
                ));
            }
            let mut over = toml::Table::new();
            let (last, parents) = path.split_last().expect("split yields one part");
            let mut node = &mut over;
            for part in parents {
                node = node
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .expect("a table just inserted");
            }
            node.insert(last.to_string(), value);
            check_known_fields(&table, &over, "")?;
            merge_tables(&mut table, over);
            set_fields.push((path.join("."), set));
        }
        // `NaN`, `Inf`, `-INF` given to `--set` read as TOML's nan and inf.
        normalise_special_floats(&mut table, &set_fields);
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                if let Some(invalid) = negative_count(&table, &e.to_string()) {
                    return invalid;
                }
                let error = parse_error(plain_words(&e.to_string()));
                // Blame the last `--set` of the field the error names, if any.
                let named = |(field, _): &&(String, &String)| {
                    e.to_string().contains(&format!("in `{field}`"))
                };
                match (error, set_fields.iter().rev().find(named)) {
                    (Error::Parse { message, .. }, Some((_, set))) => Error::Parse {
                        input: Input::Set(set.to_string()),
                        message,
                    },
                    (error, _) => error,
                }
            })
    }

    /// The full configuration as TOML (what `config.toml` of a run holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serialises to TOML")
    }

    /// Every field of the configuration as TOML, including those a staged
    /// run's `config.toml` leaves out while they hold their defaults
    /// (`moe.training` and the `[joint]` section): what `defaults` prints.
    pub fn to_full_toml(&self) -> String {
        toml::to_string(&Full::of(self)).expect("a Config always serialises to TOML")
    }

    /// Every field of the configuration as JSON, in the order of
    /// [`Config::to_full_toml`].
    pub fn to_full_json(&self) -> String {
        serde_json::to_string(&Full::of(self)).expect("configs are JSON")
    }

    /// Validates every field once; the result is what training consumes.
    pub fn check(&self) -> Result<ValidConfig> {
        super::check::check(self)
    }

    /// [`Config::check`] and then whether the run fits the memory
    /// available on `threads` threads ([`crate::memory::check`]), before a
    /// refusal of "auto" lengths beyond the step limit: what `run` checks
    /// before it writes anything.
    pub fn check_to_run(&self, threads: usize) -> Result<ValidConfig> {
        super::check::check_to_run(self, threads)
    }
}

/// Serde's words for Rust types, in the words of a configuration.
fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected usize", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table of fields"),
        (
            "data did not match any variant of untagged enum Auto",
            "expected \"auto\" or a value of the field's type",
        ),
        (
            "data did not match any variant of untagged enum Links",
            "expected a link such as \"h3\" or \"h3+0.5*h5\", or a list of one per cluster",
        ),
    ] {
        out = out.replace(rust, plain);
    }
    // Any other untagged enum, and `expected struct TaskConfig` and the
    // like (a section): the type's name is Rust's, not the user's.
    for (prefix, plain) in [
        (
            "data did not match any variant of untagged enum ",
            "expected a value of the field's form (`clustermoe defaults` shows each)",
        ),
        ("expected struct ", "expected a table of fields"),
    ] {
        while let Some(at) = out.find(prefix) {
            let name = at + prefix.len();
            let end = out[name..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map_or(out.len(), |e| name + e);
            out.replace_range(at..end, plain);
        }
    }
    out
}

/// The value of the dotted `field` in `table`, if there is one.
fn value_at<'t>(table: &'t mut toml::Table, field: &str) -> Option<&'t mut toml::Value> {
    let mut parts = field.split('.');
    let name = parts.next_back()?;
    parts
        .try_fold(table, |t, part| {
            t.get_mut(part).and_then(toml::Value::as_table_mut)
        })?
        .get_mut(name)
}

/// Writes the `--set` values `nan`, `inf`, `+inf`, `-inf` in any case (and
/// `infinity`) as TOML's own, so `rho=NaN` reads as `rho=nan` does.
fn normalise_special_floats(table: &mut toml::Table, set_fields: &[(String, &String)]) {
    for (field, _) in set_fields {
        let Some(value) = value_at(table, field) else {
            continue;
        };
        if let Some(number) = value.as_str().and_then(special_float) {
            *value = toml::Value::Float(number);
        }
    }
}

/// `nan`, `inf`, `infinity` (signed or not) in any case, as a number.
fn special_float(text: &str) -> Option<f64> {
    let lower = text.trim().to_ascii_lowercase();
    let (sign, body) = match lower.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    match body {
        "nan" => Some(f64::NAN),
        "inf" | "infinity" => Some(sign * f64::INFINITY),
        _ => None,
    }
}

/// A negative number given to a field that counts (`task.d = -5`,
/// `moe.restart_every = -3`): the field's own rule, as `check` states it
/// for 0, or else "a whole number >= 0", never serde's Rust type.
fn negative_count(table: &toml::Table, message: &str) -> Option<Error> {
    let field = message.rsplit("in `").next()?.split('`').next()?;
    let mut zeroed = table.clone();
    let value = value_at(&mut zeroed, field)?;
    let negative = match value {
        toml::Value::Integer(n) if *n < 0 => *n,
        _ => return None,
    };
    *value = toml::Value::Integer(0);
    let config = toml::Value::Table(zeroed).try_into::<Config>().ok()?;
    let allowed = match config.check() {
        Err(Error::Invalid {
            field: f, allowed, ..
        }) if f == field => allowed,
        _ => "a whole number >= 0".into(),
    };
    Some(Error::invalid(field, negative, allowed))
}

/// A configuration with every field, in `config.toml`'s order: the
/// `[moe]` section with its `training` and the `[joint]` section always.
#[derive(serde::Serialize)]
struct Full<'c> {
    seed: u64,
    task: &'c super::TaskConfig,
    moe: FullMoe<'c>,
    phase_one: &'c super::PhaseConfig,
    phase_two: &'c super::RouterConfig,
    phase_three: &'c super::PhaseConfig,
    readout: &'c super::ReadoutConfig,
    vanilla: &'c super::VanillaConfig,
    metrics: &'c super::MetricsConfig,
    joint: &'c super::JointConfig,
    targets: &'c super::TargetsConfig,
}

/// `[moe]` with `training` even when it is the default (staged).
#[derive(serde::Serialize)]
struct FullMoe<'c> {
    #[serde(flatten)]
    moe: &'c super::MoeConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    training: Option<super::Training>,
}

impl<'c> Full<'c> {
    fn of(c: &'c Config) -> Self {
        // Every field of Config, so a new one cannot be forgotten here.
        let Config {
            seed,
            task,
            moe,
            phase_one,
            phase_two,
            phase_three,
            readout,
            vanilla,
            metrics,
            joint,
            targets,
        } = c;
        Full {
            seed: *seed,
            task,
            moe: FullMoe {
                moe,
                // MoeConfig writes it itself unless it is the default.
                training: moe.training.is_staged().then_some(moe.training),
            },
            phase_one,
            phase_two,
            phase_three,
            readout,
            vanilla,
            metrics,
            joint,
            targets,
        }
    }
}

/// The defaults as a TOML table with every field, including those a
/// default configuration leaves out of its `config.toml` (`moe.training`
/// and the `[joint]` and `[targets]` sections), so that they are known fields.
fn known_table() -> toml::Table {
    let defaults = Config::default();
    let mut table = toml::Table::try_from(&defaults).expect("the defaults serialise");
    if let Some(toml::Value::Table(moe)) = table.get_mut("moe") {
        moe.insert(
            "training".into(),
            toml::Value::try_from(defaults.moe.training).expect("serialises"),
        );
    }
    table.insert(
        "joint".into(),
        toml::Value::try_from(&defaults.joint).expect("the defaults serialise"),
    );
    table.insert(
        "targets".into(),
        toml::Value::try_from(&defaults.targets).expect("the defaults serialise"),
    );
    table
}

/// Most parts of a `--set` field name: `section.field`, with room for the
/// type error of one level too deep (`task.d.x` names `task.d`).
const MAX_SET_DEPTH: usize = 4;

/// Rejects a field that the defaults do not have, naming the closest valid one.
fn check_known_fields(known: &toml::Table, given: &toml::Table, prefix: &str) -> Result<()> {
    for (key, value) in given {
        let path = format!("{prefix}{}", key_text(key));
        match known.get(key) {
            Some(toml::Value::Table(k)) => {
                if let toml::Value::Table(g) = value {
                    check_known_fields(k, g, &format!("{path}."))?;
                }
            }
            Some(_) => {}
            None => {
                let closest = known
                    .keys()
                    .min_by_key(|k| strsim::levenshtein(k, key))
                    .filter(|k| strsim::levenshtein(k, key) <= key.len().max(3) / 2 + 1);
                let valid = known
                    .keys()
                    .map(|k| format!("`{prefix}{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let hint = match closest {
                    Some(c) => format!("; did you mean `{prefix}{c}`? (valid here: {valid})"),
                    None => format!(" (valid here: {valid})"),
                };
                return Err(Error::UnknownField { field: path, hint });
            }
        }
    }
    Ok(())
}

/// A key as TOML writes it in a dotted name: bare, or quoted if it is
/// empty or holds other characters than letters, digits, `_` and `-`.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return key.to_string();
    }
    let mut out = String::from('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Overrides `base` with `over`, recursing into tables present in both.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
