//! Bad input never makes the tool panic, and every rejection names what is
//! wrong: property tests over configuration files, `--set` overrides and grid
//! files through the library, then end-to-end checks of the binary on
//! missing, truncated, corrupted and other-version files and run directories.
//!
//! # The rule "a rejection names a field"
//!
//! An error `e` of a configuration (or grid) names a field when, by variant:
//!
//! - `Error::Invalid { field, .. }`: `field` is a field path of the
//!   configuration (`seed`, a section such as `task`, or a dotted leaf such as
//!   `task.d`; every path of `clustermoe defaults`); for grids also `grid`,
//!   `seeds[.from|.to|.step]`, `grid.NAME[.from|.to|.step]` or
//!   `set."NAME"`/`grid."NAME"` for a NAME of the grid file.
//! - `Error::InvalidOption { option, .. }`: the `set` option, for an override
//!   that is not `FIELD=VALUE` (the binary calls it `--set`).
//! - `Error::UnknownField { field, .. }`: `field`, read as a dotted TOML key
//!   (`task.d`, `task."a.b"`, `""`), is made of keys that the input holds (a
//!   key of the TOML at any depth, a part of a `--set` name or a grid name),
//!   so the user can find it.
//! - `Error::Parse { input, message }` (`input` is a file given, a grid's base
//!   file, a `--set` or grid value, or `Input::Text` for text): either a TOML syntax error, whose message
//!   holds the position `line L, column C`, or the TOML parser's nesting limit
//!   (`recursion limit`), or a type error ending in ``in `FIELD` `` with
//!   FIELD a field path as above.
//! - `Error::Unreadable { path, .. }` (files only): `path` is the file given.
//!
//! Any other variant for bad input fails the property, and so does a panic.
//! Every such error has exit status 2. When a configuration is accepted, the
//! `ValidConfig` holds finite numbers in range, and its `config.toml` reads
//! back to the same configuration.
//!
//! Run directories: `merge` rejects a `summary.json` or `config.toml` that is
//! present but damaged (or from another version) with exit status 2 naming
//! the file, and warns about a run without `summary.json` (not done yet); a
//! sweep started again treats a damaged run as incomplete and redoes it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use clustermoe::config::{Config, ValidConfig};
use clustermoe::error::{Error, Input, RunOption};
use clustermoe::numerics::link::Link;
use clustermoe::sweep::GridFile;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use toml::Value;

// ---------------------------------------------------------------- fields

fn defaults() -> &'static toml::Table {
    static T: OnceLock<toml::Table> = OnceLock::new();
    T.get_or_init(|| toml::from_str(&Config::default().to_toml()).unwrap())
}

/// `seed`, `task`, `task.d`, ...: every table and leaf of the defaults.
fn known_paths() -> &'static BTreeSet<String> {
    static P: OnceLock<BTreeSet<String>> = OnceLock::new();
    P.get_or_init(|| {
        let mut out = BTreeSet::new();
        for (k, v) in defaults() {
            out.insert(k.clone());
            if let Value::Table(t) = v {
                out.extend(t.keys().map(|f| format!("{k}.{f}")));
            }
        }
        out
    })
}

/// The dotted leaves only (what a mutation or an override targets).
fn leaves() -> Vec<String> {
    known_paths()
        .iter()
        .filter(|p| !matches!(defaults().get(p.as_str()), Some(Value::Table(_))))
        .cloned()
        .collect()
}

/// Every key of a TOML text at any depth (none if it does not parse).
fn toml_keys(text: &str) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Table(t) => {
                for (k, v) in t {
                    out.insert(k.clone());
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(t) = toml::from_str::<toml::Table>(text) {
        walk(&Value::Table(t), &mut out);
    }
    out
}

/// The parts of dotted names (`--set` names, grid names).
fn name_parts<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .flat_map(|n| n.split('.').map(|p| p.trim().to_string()))
        .collect()
}

/// The keys of a dotted TOML name such as `task.d` or `task."a.b"`.
fn dotted_keys(field: &str) -> Option<Vec<String>> {
    let mut table = toml::from_str::<toml::Table>(&format!("{field} = 0")).ok()?;
    let mut keys = Vec::new();
    loop {
        let (k, v) = table.into_iter().next()?;
        keys.push(k);
        match v {
            Value::Table(t) => table = t,
            _ => return Some(keys),
        }
    }
}

fn has_position(message: &str) -> bool {
    message.match_indices("line ").any(|(i, _)| {
        let rest = &message[i + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(", column ")
    })
}

/// The field of a type error: the message ends in ``in `FIELD` ``.
fn type_error_field(message: &str) -> Option<&str> {
    let (_, field) = message.trim_end().rsplit_once(" in `")?;
    field.strip_suffix('`')
}

/// What besides the configuration's own fields may be named.
struct Context<'a> {
    /// Keys of the input (TOML keys and parts of dotted names).
    keys: BTreeSet<String>,
    /// Further fields an `Error::Invalid` may name (grid names), and the
    /// options an `Error::InvalidOption` may name (`set`).
    fields: BTreeSet<String>,
    /// Files the input consists of.
    files: &'a [PathBuf],
}

fn check_rejection(e: &Error, cx: &Context) -> std::result::Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert_eq!(e.exit_status(), 2, "{}", message);
    let named = match e {
        Error::Invalid { field, .. } => {
            known_paths().contains(field) || cx.fields.contains(field.as_str())
        }
        Error::InvalidOption { option, .. } => cx.fields.contains(option.name()),
        Error::UnknownField { field, .. } => {
            dotted_keys(field).is_some_and(|keys| keys.iter().all(|k| cx.keys.contains(k)))
        }
        Error::Parse { input, message } => {
            // A type error from a `--set` names that `--set` as its source.
            let from_set = matches!(input, Input::Set(_) | Input::GridValue(_))
                && type_error_field(message).is_some();
            let from_file = matches!(input, Input::File(path) if cx.files.contains(path));
            (*input == Input::Text || from_file || from_set)
                && (has_position(message)
                    || message.contains("recursion limit")
                    || type_error_field(message).is_some_and(|f| known_paths().contains(f)))
        }
        Error::Unreadable { path, .. } => cx.files.iter().any(|f| f == path),
        _ => false,
    };
    prop_assert!(named, "names no field: {:?}\n{}", e, message);
    Ok(())
}

/// What an accepted configuration must satisfy.
fn check_valid(v: &ValidConfig) -> std::result::Result<(), TestCaseError> {
    let t = v.task();
    let c = t.clusters;
    prop_assert!(
        t.d >= 1
            && c >= 1
            && (t.geometry != clustermoe::config::Geometry::Orthonormal || 2 * c < t.d)
    );
    prop_assert!(t.rho.is_finite() && t.rho >= 0.0 && t.noise.is_finite() && t.noise >= 0.0);
    prop_assert_eq!(v.signs().len(), c);
    prop_assert!(v.signs().iter().all(|s| s.is_finite()));
    prop_assert_eq!(v.local_links().len(), c);
    for l in v.local_links().iter().chain([v.global_link()]) {
        if let Link::Hermite(h) = l {
            prop_assert!(!h.is_empty() && h.iter().all(|x| x.is_finite()));
        }
        prop_assert!(l.information_exponent().is_some());
    }
    let m = v.moe();
    prop_assert!(v.experts() >= 1 && m.neurons >= 1 && m.top_k >= 1);
    prop_assert!(m.gate_noise.is_finite() && m.gate_noise >= 0.0);
    prop_assert!(m.merge_threshold > 0.0 && m.merge_threshold <= 1.0);
    for p in [v.phase_one(), v.phase_three()]
        .into_iter()
        .chain(v.vanilla())
    {
        let s = &p.schedule;
        prop_assert!(p.batch >= 1 && p.centre_samples >= 1);
        prop_assert!(s.lr.is_finite() && s.lr > 0.0 && s.lr_end.is_finite() && s.lr_end > 0.0);
        prop_assert!((0.0..=1.0).contains(&s.decay_start));
        prop_assert!(!p.activation.is_empty() && p.activation.iter().all(|x| x.is_finite()));
    }
    prop_assert!(v.phase_one().steps >= 1 && v.phase_three().steps >= 1);
    prop_assert!(
        v.phase_two().lr.is_finite() && v.phase_two().lr > 0.0 && v.phase_two().batch >= 1
    );
    let r = v.readout();
    prop_assert!(r.samples >= 1 && r.moe.biases >= 1 && r.vanilla.biases >= 1);
    prop_assert!(
        r.ridge.is_finite()
            && r.ridge >= 0.0
            && [&r.moe, &r.vanilla]
                .iter()
                .all(|p| p.bias_max.is_finite() && p.bias_max >= 0.0)
    );
    let mt = v.metrics();
    prop_assert!(mt.probe_samples >= 1 && mt.test_samples >= 1);
    prop_assert!(mt.recovery_threshold > 0.0 && mt.recovery_threshold <= 1.0);
    prop_assert!(v.vanilla_neurons() >= 1);
    // The run's config.toml reads back to the same configuration.
    let again = Config::from_toml(&v.config().to_toml());
    prop_assert!(again.as_ref().ok() == Some(v.config()), "{:?}", again);
    Ok(())
}

/// Parses and validates through the library as `clustermoe run` does, and
/// checks the outcome against the rule.
fn check_config(text: &str, sets: &[String]) -> std::result::Result<(), TestCaseError> {
    let mut keys = toml_keys(text);
    for set in sets {
        let (name, value) = set.split_once('=').unwrap_or((set, ""));
        keys.extend(name_parts([name]));
        keys.extend(toml_keys(&format!("v = {value}")));
    }
    let cx = Context {
        keys,
        fields: [RunOption::Set.name().to_string()].into(),
        files: &[],
    };
    match Config::from_toml_with_overrides(text, sets).and_then(|c| c.check()) {
        Ok(valid) => check_valid(&valid),
        Err(e) => check_rejection(&e, &cx),
    }
}

// ---------------------------------------------------------------- strategies

/// Strings a field might be given: links good and bad, enum names, numbers
/// as text, unicode, empty and very long.
fn text_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(vec![
            "", " ", "auto", "AUTO", " h3 ", "h3", "h3+", "+h3", "h0", "h1", "h30", "h31",
            "h99999999999999999999", "hermite:", "hermite:0", "hermite:0,0,0,1", "hermite:,",
            "hermite:1,nan", "monomial:1,,2", "monomial:0,0,0,1", "monomial:1e308,1e308,1e308",
            "h3+0.5*h5", "2*h4", "nan*h3", "inf*h3", "1e+3*h3", "*h3", "h3*2", "0*h3", "h3+-1*h3",
            "relu", "tanh", "abs", "sign", "sigmoid", "square", "cube", "nan", "inf", "-inf",
            "NaN", "1e999", "-0", "top1", "softmax", "top_k", "noisy_top1", "pool", "drop",
            "none", "per_expert", "by_load", "orthonormal", "random", "constant", "linear",
            "cosine", "exponential", "correlation", "squared", "é", "h³", "ｈ3", "h3\u{0}",
            "\u{202e}h3", "h3\nh5", "'", "\"", "\\",
        ])
        .prop_map(String::from),
        2 => "\\PC{0,12}",
        2 => "[a-z0-9:,.+*_ -]{0,20}",
        1 => (1usize..3000).prop_map(|n| "h3+".repeat(n) + "h3"),
        1 => (1usize..3000).prop_map(|n| format!("hermite:{}1", "0,".repeat(n))),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => select(vec![
            0i64, -1, 1, 2, 3, 4, 7, 8, 16, 64, 1000, 65_536, 65_537, 1 << 20, (1 << 20) + 1,
            1 << 30, u32::MAX as i64, u32::MAX as i64 + 1, 1 << 52, i64::MAX, i64::MIN,
        ])
        .prop_map(Value::Integer),
        1 => any::<i64>().prop_map(Value::Integer),
        3 => select(vec![
            0.0, -0.0, -1.0, 1e-3, 0.5, 1.0, 1.5, 2.0, 1e-300, 1e300, f64::MAX,
            f64::MIN_POSITIVE, f64::INFINITY, f64::NEG_INFINITY, f64::NAN,
        ])
        .prop_map(Value::Float),
        1 => any::<f64>().prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
        3 => text_value().prop_map(Value::String),
        1 => Just(Value::Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
    ]
    .boxed()
}

fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..3)
                    .prop_map(|m| Value::Table(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Integers at and around the limits of the integer fields.
#[rustfmt::skip]
const EDGE_INTEGERS: [i64; 18] = [
    0, 1, 2, 3, 4, 8, 16, 64, 65_536, 65_537, -1, 1 << 20, (1 << 20) + 1, 1 << 30,
    u32::MAX as i64, u32::MAX as i64 + 1, 1 << 52, i64::MAX,
];

/// Numbers at and around the limits of the float fields.
#[rustfmt::skip]
const EDGE_FLOATS: [f64; 14] = [
    0.0, -0.0, -1.0, 1e-3, 0.5, 1.0, 1.5, 2.0, 10.0, 1e300, 1e-300, f64::INFINITY,
    f64::NEG_INFINITY, f64::NAN,
];

/// A value of the type that field `path` has (a number near or past its
/// limits, a link or enum name...), or any value at all.
fn field_value(path: &str) -> BoxedStrategy<Value> {
    let (section, key) = path.split_once('.').unwrap_or(("", path));
    let default = match defaults().get(section) {
        Some(Value::Table(t)) => t.get(key),
        _ => defaults().get(key),
    };
    let typed = match default {
        Some(Value::Integer(_)) => prop_oneof![select(EDGE_INTEGERS.to_vec()), 0i64..100]
            .prop_map(Value::Integer)
            .boxed(),
        Some(Value::Float(_)) => prop_oneof![select(EDGE_FLOATS.to_vec()), -2.0..5.0f64]
            .prop_map(Value::Float)
            .boxed(),
        Some(Value::Boolean(_)) => any::<bool>().prop_map(Value::Boolean).boxed(),
        Some(Value::Array(_)) => prop::collection::vec(
            select(vec![1.0, -1.0, 0.0, 0.5, f64::NAN, f64::INFINITY]).prop_map(Value::Float),
            0..4,
        )
        .prop_map(Value::Array)
        .boxed(),
        _ => prop_oneof![
            3 => text_value().prop_map(Value::String),
            1 => prop::collection::vec(text_value().prop_map(Value::String), 0..4)
                .prop_map(Value::Array),
        ]
        .boxed(),
    };
    prop_oneof![6 => typed, 1 => value()].boxed()
}

/// A key: a known one, a misspelt known one, or a random one.
fn key() -> BoxedStrategy<String> {
    let known: Vec<String> = known_paths()
        .iter()
        .map(|p| p.rsplit('.').next().unwrap().to_string())
        .collect();
    prop_oneof![
        2 => select(known.clone()),
        2 => (select(known), any::<Index>(), 0..5u8).prop_map(|(k, i, how)| misspell(&k, i, how)),
        1 => "[a-z_]{1,12}",
        1 => "\\PC{0,6}",
    ]
    .boxed()
}

/// `key` with one character dropped, doubled, swapped or changed, or a suffix.
fn misspell(key: &str, at: Index, how: u8) -> String {
    let mut c: Vec<char> = key.chars().collect();
    let i = at.index(c.len());
    match how {
        0 => {
            c.remove(i);
        }
        1 => c.insert(i, c[i]),
        2 if i + 1 < c.len() => c.swap(i, i + 1),
        3 => c[i] = c[i].to_ascii_uppercase(),
        _ => c.push('s'),
    }
    c.into_iter().collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Set a field (section.key or seed) to a value.
    Set(String, Value),
    /// Remove a field.
    Remove(String),
    /// Add a key (maybe unknown) to a section or the root.
    Add(Option<String>, String, Value),
}

fn mutation() -> BoxedStrategy<Mutation> {
    let leaves = leaves();
    let sections: Vec<String> = defaults()
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| k.clone())
        .collect();
    prop_oneof![
        6 => select(leaves.clone())
            .prop_flat_map(|p| (field_value(&p), Just(p)))
            .prop_map(|(v, p)| Mutation::Set(p, v)),
        1 => select(leaves).prop_map(Mutation::Remove),
        1 => (prop::option::of(select(sections)), key(), value())
            .prop_map(|(s, k, v)| Mutation::Add(s, k, v)),
    ]
    .boxed()
}

fn apply(table: &mut toml::Table, m: Mutation) {
    let split = |path: String| match path.split_once('.') {
        Some((s, k)) => (Some(s.to_string()), k.to_string()),
        None => (None, path),
    };
    let ((section, key), value) = match m {
        Mutation::Set(path, v) => (split(path), Some(v)),
        Mutation::Remove(path) => (split(path), None),
        Mutation::Add(s, k, v) => ((s, k), Some(v)),
    };
    let target = match section {
        None => table,
        Some(s) => match table
            .entry(s)
            .or_insert_with(|| Value::Table(toml::Table::new()))
        {
            Value::Table(t) => t,
            _ => return,
        },
    };
    match value {
        Some(v) => {
            target.insert(key, v);
        }
        None => {
            target.remove(&key);
        }
    }
}

/// A configuration table: the full defaults (or nothing) with mutations.
fn config_table() -> BoxedStrategy<toml::Table> {
    (any::<bool>(), prop::collection::vec(mutation(), 0..6))
        .prop_map(|(full, ms)| {
            let mut t = if full {
                defaults().clone()
            } else {
                toml::Table::new()
            };
            for m in ms {
                apply(&mut t, m);
            }
            t
        })
        .boxed()
}

/// The text of a table; `None` where TOML cannot write it.
fn to_text(t: &toml::Table) -> Option<String> {
    toml::to_string(t).ok()
}

fn cut(text: &str, at: Index) -> String {
    let mut i = at.index(text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    text[..i].to_string()
}

/// A configuration text: mutated, truncated, spliced or random.
fn config_text() -> BoxedStrategy<String> {
    prop_oneof![
        8 => config_table().prop_filter_map("TOML can write it", |t| to_text(&t)),
        2 => (config_table(), any::<Index>())
            .prop_filter_map("TOML can write it", |(t, at)| Some(cut(&to_text(&t)?, at))),
        1 => (config_table(), any::<Index>(), "\\PC{1,3}|[\\[\\]{}=\"'#.,\n]")
            .prop_filter_map("TOML can write it", |(t, at, s)| {
                let text = to_text(&t)?;
                let head = cut(&text, at);
                Some(format!("{head}{s}{}", &text[head.len()..]))
            }),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => "\\PC{0,100}",
    ]
    .boxed()
}

/// A `--set` argument: `FIELD=VALUE` with good and bad names and values.
fn set_arg() -> BoxedStrategy<String> {
    let name = prop_oneof![
        4 => select(leaves()),
        2 => (select(leaves()), any::<Index>(), 0..5u8).prop_map(|(k, i, how)| misspell(&k, i, how)),
        1 => select(vec![
            "", ".", "task.", ".d", "task..d", "task.d.x", "task.d.x.y.z.w", "seed", "task",
            "moe.experts ", " seed", "a.b.c",
        ])
        .prop_map(String::from),
        1 => "[a-z_.]{0,20}",
    ];
    let text = prop_oneof![
        2 => select(vec![
            "64", "-1", "0", "nan", "inf", "-inf", "1e999", "1.5", "true", "\"h3\"", "h3+",
            "[1, 2]", "[]", "{a = 1}", "", " ", "abc", "1\nseed = 5", "[[[", "\"unterminated",
            "99999999999999999999", "'x'", "1979-05-27", "0x10", "1_000",
        ])
        .prop_map(String::from),
        2 => value().prop_map(|v| v.to_string()),
        1 => text_value(),
    ];
    let typed = select(leaves())
        .prop_flat_map(|n| (field_value(&n), Just(n)))
        .prop_map(|(v, n)| format!("{n}={v}"));
    prop_oneof![
        8 => typed,
        4 => (name, text).prop_map(|(n, v)| format!("{n}={v}")),
        1 => "\\PC{0,30}",
    ]
    .boxed()
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn configuration_texts_are_accepted_or_rejected_naming_a_field(text in config_text()) {
        check_config(&text, &[])?;
    }

    #[test]
    fn set_overrides_are_accepted_or_rejected_naming_a_field(
        text in prop_oneof![3 => Just(String::new()), 1 => config_text()],
        sets in prop::collection::vec(set_arg(), 1..4),
    ) {
        check_config(&text, &sets)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// As `clustermoe run FILE` reads it: any bytes, valid UTF-8 or not.
    #[test]
    fn configuration_files_of_any_bytes_are_rejected_naming_the_file_or_a_field(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            (config_text(), prop::collection::vec(any::<u8>(), 1..4), any::<Index>())
                .prop_map(|(t, junk, at)| {
                    let mut b = t.into_bytes();
                    let i = at.index(b.len() + 1);
                    b.splice(i..i, junk);
                    b
                }),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &bytes).unwrap();
        let files = [path.clone()];
        let text = String::from_utf8_lossy(&bytes);
        let cx = Context { keys: toml_keys(&text), fields: BTreeSet::new(), files: &files };
        match Config::from_file(&path).and_then(|c| c.check()) {
            Ok(valid) => check_valid(&valid)?,
            Err(e) => {
                if let Error::Parse { input, .. } = &e {
                    prop_assert_eq!(input, &Input::File(path.clone()));
                }
                if std::str::from_utf8(&bytes).is_err() {
                    prop_assert!(matches!(e, Error::Unreadable { .. }), "{:?}", e);
                }
                check_rejection(&e, &cx)?;
            }
        }
    }
}

// ---------------------------------------------------------------- grids

/// Numbers for ranges: every pair gives 0 to a few values, or more than a
/// grid may have, or an error; never a slow expansion of thousands of runs.
fn range_number() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => select(vec![0i64, 1, 2, 3, -1, 8, 16, 1 << 40, i64::MAX, i64::MIN]).prop_map(Value::Integer),
        3 => select(vec![0.0, 0.5, 1.0, 2.0, -1.0, 3.0, 1e9, 1e300, -1e300, f64::NAN, f64::INFINITY])
            .prop_map(Value::Float),
        1 => text_value().prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Boolean),
    ]
    .boxed()
}

fn range_step() -> BoxedStrategy<Option<Value>> {
    prop::option::of(prop_oneof![
        4 => select(vec![1i64, 2, 0, -1, 1 << 40]).prop_map(Value::Integer),
        3 => select(vec![1.0, 0.5, 0.0, -1.0, 1e-9, 1e300, f64::NAN, f64::INFINITY, 1e-300])
            .prop_map(Value::Float),
        1 => text_value().prop_map(Value::String),
    ])
    .boxed()
}

/// A value for grid name `name`: typed if it is a field.
fn value_for(name: &str) -> BoxedStrategy<Value> {
    if known_paths().contains(name) {
        field_value(name)
    } else {
        value()
    }
}

/// One axis as TOML: a list, a range, or something else altogether.
fn axis(name: &str) -> BoxedStrategy<Value> {
    let range = (
        range_number(),
        range_number(),
        range_step(),
        prop::option::weighted(0.1, key()),
    )
        .prop_map(|(from, to, step, extra)| {
            let mut t = toml::Table::new();
            t.insert("from".into(), from);
            t.insert("to".into(), to);
            if let Some(s) = step {
                t.insert("step".into(), s);
            }
            if let Some(k) = extra {
                t.insert(k, Value::Integer(1));
            }
            Value::Table(t)
        });
    prop_oneof![
        5 => prop::collection::vec(value_for(name), 0..4).prop_map(Value::Array),
        3 => range,
        // A small range that is fine for a numeric field.
        3 => (0i64..3, 0i64..3, select(vec![None, Some(Value::Integer(1)), Some(Value::Float(0.5))]))
            .prop_map(|(from, k, step)| {
                let mut t = toml::Table::new();
                t.insert("from".into(), Value::Integer(from));
                t.insert("to".into(), Value::Integer(from + k));
                if let Some(s) = step {
                    t.insert("step".into(), s);
                }
                Value::Table(t)
            }),
        // A range that alone is over the limit, with a step of 1 or absent.
        1 => (0i64..4, prop::option::of(Just(1i64))).prop_map(|(from, step)| {
            let mut t = toml::Table::new();
            t.insert("from".into(), Value::Integer(from));
            t.insert("to".into(), Value::Integer(from + 5_000_000));
            if let Some(s) = step {
                t.insert("step".into(), Value::Integer(s));
            }
            Value::Table(t)
        }),
        1 => value(),
    ]
    .boxed()
}

/// A grid name: a field, a misspelt one, or a malformed one.
fn grid_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(leaves()),
        1 => (select(leaves()), any::<Index>(), 0..5u8).prop_map(|(k, i, how)| misspell(&k, i, how)),
        1 => select(vec!["", "task.", "task..d", "task.d=3", "seed", "task", "a.b.c.d.e", "x"])
            .prop_map(String::from),
    ]
    .boxed()
}

/// Base files the grids may name (created by [`grid_dir`]).
const BASES: [&str; 6] = [
    "base.toml",
    "missing.toml",
    "truncated.toml",
    "old.toml",
    "subdir",
    "binary.toml",
];

fn grid_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("base.toml"), "[task]\nd = 8\n").unwrap();
    std::fs::write(p.join("truncated.toml"), "[task]\nd = 8\n[phase_one]\nst").unwrap();
    std::fs::write(p.join("old.toml"), "[moe]\nnum_experts = 4\n").unwrap();
    std::fs::write(p.join("binary.toml"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    std::fs::create_dir(p.join("subdir")).unwrap();
    dir
}

fn grid_table() -> BoxedStrategy<toml::Table> {
    (
        prop::option::weighted(0.3, select(BASES.to_vec())),
        prop::option::of(axis("seed")),
        prop::collection::vec(
            grid_name().prop_flat_map(|n| (value_for(&n), Just(n))),
            0..3,
        ),
        prop::collection::vec(grid_name().prop_flat_map(|n| (axis(&n), Just(n))), 0..4),
        prop::option::weighted(0.1, (key(), value())),
    )
        .prop_map(|(base, seeds, set, grid, extra)| {
            let mut t = toml::Table::new();
            if let Some(b) = base {
                t.insert("base".into(), Value::String(b.into()));
            }
            if let Some(s) = seeds {
                t.insert("seeds".into(), s);
            }
            let table = |kv: Vec<(Value, String)>| {
                Value::Table(kv.into_iter().map(|(v, k)| (k, v)).collect())
            };
            t.insert("set".into(), table(set));
            t.insert("grid".into(), table(grid));
            if let Some((k, v)) = extra {
                t.insert(k, v);
            }
            t
        })
        .boxed()
}

fn grid_text() -> BoxedStrategy<String> {
    prop_oneof![
        10 => grid_table().prop_filter_map("TOML can write it", |t| to_text(&t)),
        2 => (grid_table(), any::<Index>())
            .prop_filter_map("TOML can write it", |(t, at)| Some(cut(&to_text(&t)?, at))),
        1 => prop::collection::vec(any::<u8>(), 0..100)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// The fields an `Error::Invalid` of a grid may name besides the
/// configuration's own (see the module doc).
fn grid_fields(grid: &GridFile) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = ["grid", "seeds", "seeds.from", "seeds.to", "seeds.step"]
        .map(String::from)
        .into();
    out.insert("grid.\"seed\"".into());
    for name in grid.grid.keys() {
        for suffix in ["", ".from", ".to", ".step"] {
            out.insert(format!("grid.{name}{suffix}"));
        }
        out.insert(format!("grid.{name:?}"));
    }
    for name in grid.set.keys() {
        out.insert(format!("set.{name:?}"));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn grid_files_are_expanded_or_rejected_naming_a_field(text in grid_text()) {
        let dir = grid_dir();
        let path = dir.path().join("grid.toml");
        std::fs::write(&path, &text).unwrap();
        let mut files = vec![path.clone()];
        files.extend(BASES.iter().map(|b| dir.path().join(b)));
        let grid = match GridFile::from_file(&path) {
            Ok(g) => g,
            Err(e) => {
                let cx = Context { keys: BTreeSet::new(), fields: BTreeSet::new(), files: &files };
                return check_rejection(&e, &cx);
            }
        };
        let mut keys = toml_keys(&text);
        keys.extend(name_parts(grid.grid.keys().chain(grid.set.keys()).map(String::as_str)));
        for b in ["old.toml", "base.toml"] {
            keys.extend(toml_keys(&std::fs::read_to_string(dir.path().join(b)).unwrap()));
        }
        let cx = Context { keys, fields: grid_fields(&grid), files: &files };
        match grid.expand(dir.path()) {
            Ok(runs) => {
                prop_assert!(!runs.is_empty());
                let ids: BTreeSet<&str> = runs.iter().map(|(r, _)| r.id.as_str()).collect();
                prop_assert_eq!(ids.len(), runs.len());
                for (run, _) in runs.iter().take(3) {
                    check_valid(&run.config)?;
                }
            }
            Err(e) => check_rejection(&e, &cx)?,
        }
    }
}

#[test]
fn huge_grids_are_rejected_before_they_are_expanded() {
    // Four axes of 100,000 values each: 10^20 runs, which overflows a
    // usize; and twenty of them, which would need exabytes if expanded (the
    // test would not end).
    for axes in [4, 20] {
        let mut text = String::from("[grid]\n");
        for a in 0..axes {
            text += &format!("\"task.rho{a}\" = {{ from = 0, to = 99999 }}\n");
        }
        let grid: GridFile = toml::from_str(&text).unwrap();
        let e = grid.expand(Path::new(".")).unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("`grid`") && message.contains("100000"),
            "{message}"
        );
        assert_eq!(e.exit_status(), 2);
    }
    let grid: GridFile = toml::from_str("seeds = { from = 0, to = 9223372036854775807 }").unwrap();
    let e = grid.expand(Path::new(".")).unwrap_err();
    assert!(e.to_string().contains("`seeds`"), "{e}");
    // Integer ranges are exact beyond 2^53.
    let grid: GridFile =
        toml::from_str("seeds = { from = 9007199254740993, to = 9007199254740995 }").unwrap();
    let seeds: Vec<u64> = grid
        .expand(Path::new("."))
        .unwrap()
        .iter()
        .map(|(r, _)| r.config.seed())
        .collect();
    assert_eq!(
        seeds,
        [9007199254740993, 9007199254740994, 9007199254740995]
    );
}

#[test]
fn a_seed_beyond_toml_integers_is_rejected() {
    // `--seed` takes any u64, but config.toml must read back.
    let mut c = Config {
        seed: u64::MAX,
        ..Config::default()
    };
    let e = c.check().unwrap_err();
    assert!(e.to_string().contains("`seed`"), "{e}");
    c.seed = i64::MAX as u64;
    let valid = c.check().unwrap();
    assert_eq!(Config::from_toml(&valid.config().to_toml()).unwrap(), c);
}

// ---------------------------------------------------------------- the binary

fn clustermoe(args: &[&str]) -> Output {
    common::output(args)
}

/// Exit status 2, no panic, and stderr holding every one of `needles`.
fn assert_rejected(out: &Output, needles: &[&str], what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    for n in needles {
        assert!(err.contains(n), "{what}: {err:?} does not name {n:?}");
    }
}

/// A tiny grid (one run of well under a second), with `base` if given.
const TINY: &str = r#"
seeds = [1]
[set]
"task.d" = 8
"phase_one.steps" = 200
"phase_two.steps" = 50
"phase_three.steps" = 300
"readout.samples" = 1000
"metrics.test_samples" = 1000
"metrics.probe_samples" = 500
"#;

#[test]
fn bad_configuration_files_exit_2_naming_the_file_or_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let missing = dir.join("missing.toml").to_str().unwrap().to_string();
    let directory = dir.to_str().unwrap().to_string();
    let garbage: Vec<u8> = (0..=255u8).rev().collect();
    let cases: Vec<(String, Vec<&str>, Vec<String>)> = vec![
        // (file, extra args, needles in stderr)
        (missing.clone(), vec![], vec![missing.clone()]),
        (directory.clone(), vec![], vec![directory.clone()]),
        (
            file("truncated.toml", b"[task]\nd = 8\n[phase_one]\nste"),
            vec![],
            vec!["truncated.toml".into(), "line 4".into()],
        ),
        (
            file("open.toml", b"[task]\nlocal_link = \"h"),
            vec![],
            vec!["open.toml".into(), "line 2".into()],
        ),
        (
            file("garbage.toml", &garbage),
            vec![],
            vec!["garbage.toml".into(), "UTF-8".into()],
        ),
        (
            file("latin1.toml", b"# caf\xe9\n[task]\nd = 8\n"),
            vec![],
            vec!["latin1.toml".into()],
        ),
        (
            file("nul.toml", b"\0\0\0"),
            vec![],
            vec!["nul.toml".into(), "line 1".into()],
        ),
        (
            file("renamed.toml", b"[moe]\nnum_experts = 4\n"),
            vec![],
            vec![
                "moe.num_experts".into(),
                "did you mean `moe.experts`".into(),
            ],
        ),
        (
            file("removed.toml", b"[router]\nlr = 0.1\n"),
            vec![],
            vec!["`router`".into()],
        ),
        (
            file("type.toml", b"[task]\nd = \"32\"\n"),
            vec![],
            vec!["type.toml".into(), "`task.d`".into()],
        ),
        (
            file("value.toml", b"[phase_one]\nlr = -1.0\n"),
            vec![],
            vec!["`phase_one.lr`".into()],
        ),
        (
            file("nan.toml", b"[task]\nrho = nan\n"),
            vec![],
            vec!["`task.rho`".into()],
        ),
        (
            file("grid.toml", b"[grid]\n\"task.d\" = [8]\n"),
            vec![],
            vec!["`grid`".into()],
        ),
        (
            file("summary.json", b"{\"seed\": 1}\n"),
            vec![],
            vec!["summary.json".into(), "line 1".into()],
        ),
        (
            file("ok.toml", b"[task]\nd = 8\n"),
            vec!["--set", "task.d"],
            vec!["`--set`".into()],
        ),
        (
            file("ok2.toml", b"[task]\nd = 8\n"),
            vec!["--set", "task.dd=3"],
            vec!["`task.dd`".into()],
        ),
        (
            file("ok3.toml", b"[task]\nd = 8\n"),
            vec!["--set", "=3"],
            vec!["`--set`".into()],
        ),
        (
            file("ok4.toml", b"[task]\nd = 8\n"),
            vec!["--seed", "18446744073709551615"],
            vec!["`seed`".into()],
        ),
    ];
    for (config, extra, needles) in &cases {
        let out_dir = dir.join("out");
        let mut args = vec![
            "run",
            config.as_str(),
            "--out",
            out_dir.to_str().unwrap(),
            "-q",
        ];
        args.extend(extra);
        let out = clustermoe(&args);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_rejected(&out, &needles, &format!("run {config} {extra:?}"));
        assert!(
            !out_dir.join("config.toml").exists(),
            "{config}: a rejected config never runs"
        );
        let npz = dir.join("x.npz");
        let mut args = vec![
            "generate",
            config.as_str(),
            "--n",
            "4",
            "--out",
            npz.to_str().unwrap(),
        ];
        args.extend(extra);
        assert_rejected(
            &clustermoe(&args),
            &needles,
            &format!("generate {config} {extra:?}"),
        );
    }
    // An empty file is a configuration with every field at its default.
    let empty = file("empty.toml", b"");
    let npz = dir.join("empty.npz");
    let out = clustermoe(&[
        "generate",
        &empty,
        "--n",
        "4",
        "--out",
        npz.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_grid_files_exit_2_naming_the_file_or_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    file("truncated_base.toml", b"[task]\nd = ");
    file("old_base.toml", b"[moe]\nnum_experts = 4\n");
    let with = |extra: &str| format!("{TINY}{extra}");
    let missing = dir.join("missing.toml").to_str().unwrap().to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        (missing.clone(), vec![missing.clone()]),
        (dir.to_str().unwrap().into(), vec![dir.to_str().unwrap().into()]),
        (file("garbage.toml", &[0xff, 0x00, 0xc3, 0x28]), vec!["garbage.toml".into()]),
        (file("truncated.toml", b"[grid]\n\"task.d\" = [8, 1"), vec!["truncated.toml".into(), "line 2".into()]),
        (file("unknown.toml", b"grdi = 3\n"), vec!["unknown.toml".into(), "grdi".into()]),
        (file("config.toml", b"[task]\nd = 8\n"), vec!["config.toml".into(), "`task`".into()]),
        (file("empty_axis.toml", with("[grid]\n\"task.rho\" = []\n").as_bytes()), vec!["`grid.task.rho`".into()]),
        (file("huge.toml", with("[grid]\n\"task.rho\" = { from = 0, to = 99999 }\n\"task.noise\" = { from = 0, to = 99999 }\n").as_bytes()), vec!["`grid`".into(), "100000".into()]),
        (file("step.toml", with("[grid]\n\"task.rho\" = { from = 0.0, to = 1.0, step = nan }\n").as_bytes()), vec!["`grid.task.rho.step`".into()]),
        (file("seeds.toml", b"seeds = [-1]\n"), vec!["`seed`".into()]),
        (file("seeds2.toml", b"seeds = { from = 1, to = \"x\" }\n"), vec!["`seeds.to`".into()]),
        (file("set.toml", with("\"task.wobble\" = 1\n").as_bytes()), vec!["`task.wobble`".into()]),
        (file("name.toml", with("[grid]\n\"task..d\" = [8]\n").as_bytes()), vec!["task..d".into()]),
        (file("value.toml", with("[grid]\n\"task.rho\" = [-1.0]\n").as_bytes()), vec!["`task.rho`".into()]),
        (file("nobase.toml", format!("base = \"nope.toml\"\n{TINY}").as_bytes()), vec!["nope.toml".into()]),
        (file("badbase.toml", format!("base = \"truncated_base.toml\"\n{TINY}").as_bytes()), vec!["truncated_base.toml".into(), "line 2".into()]),
        (file("oldbase.toml", format!("base = \"old_base.toml\"\n{TINY}").as_bytes()), vec!["`moe.num_experts`".into()]),
    ];
    for (grid, needles) in &cases {
        let out_dir = dir.join("sweep");
        let out = clustermoe(&["sweep", grid, "--out", out_dir.to_str().unwrap(), "-q"]);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_rejected(&out, &needles, &format!("sweep {grid}"));
        assert!(
            !out_dir.join("runs").exists(),
            "{grid}: a rejected grid never runs"
        );
    }
}

use common::copy_dir;

#[test]
fn corrupted_run_directories_are_reported_by_merge_and_redone_by_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = dir.join("grid.toml");
    std::fs::write(&grid, TINY).unwrap();
    let good = dir.join("good");
    let out = clustermoe(&[
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        good.to_str().unwrap(),
        "-q",
        "--jobs",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(good.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let run = run.to_str().unwrap().to_string();
    let summary = std::fs::read(good.join("runs").join(&run).join("summary.json")).unwrap();

    type Corrupt = Box<dyn Fn(&Path)>;
    let in_run = |name: &'static str, bytes: Vec<u8>| -> Corrupt {
        let run = run.clone();
        Box::new(move |d: &Path| {
            std::fs::write(d.join("runs").join(&run).join(name), &bytes).unwrap()
        })
    };
    let cases: Vec<(&str, Corrupt, &str)> = vec![
        (
            "truncated summary",
            in_run("summary.json", summary[..summary.len() / 2].to_vec()),
            "summary.json",
        ),
        (
            "empty summary",
            in_run("summary.json", vec![]),
            "summary.json",
        ),
        (
            "garbage summary",
            in_run("summary.json", vec![0xff, 0x00, 0x13]),
            "summary.json",
        ),
        (
            "summary of another shape",
            in_run("summary.json", b"{\"seed\": 1, \"rows\": []}".to_vec()),
            "summary.json",
        ),
        (
            "summary that is a list",
            in_run("summary.json", b"[]".to_vec()),
            "summary.json",
        ),
        (
            "truncated config",
            in_run("config.toml", b"[task]\nd = ".to_vec()),
            "config.toml",
        ),
        (
            "config of another version",
            in_run("config.toml", b"[moe]\nnum_experts = 4\n".to_vec()),
            "config.toml",
        ),
        (
            "garbage manifest",
            Box::new(|d: &Path| std::fs::write(d.join("sweep.json"), b"{\"runs\": [").unwrap()),
            "sweep.json",
        ),
        (
            "manifest leaving runs/",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join("sweep.json"),
                    b"{\"runs\": [{\"id\": \"../..\", \"values\": {}}]}",
                )
                .unwrap()
            }),
            "sweep.json",
        ),
    ];
    for (what, corrupt, needle) in &cases {
        let copy = dir.join(what.replace(' ', "_"));
        copy_dir(&good, &copy);
        corrupt(&copy);
        let out = clustermoe(&["merge", copy.to_str().unwrap()]);
        if needle == &"sweep.json" {
            assert_rejected(&out, &[needle, copy.to_str().unwrap()], what);
        } else {
            // A damaged run is no row: merge names it incomplete, with the
            // file that no longer matches the run's completion record.
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success()
                    && err.contains("1 runs are incomplete")
                    && err.contains(&format!("{run}: `{needle}`")),
                "{what}: {err}"
            );
            let rows = std::fs::read_to_string(copy.join("results.jsonl")).unwrap();
            assert_eq!(rows, "", "{what}: no row");

            // A sweep started again redoes the damaged run, and then merges.
            let out = clustermoe(&[
                "sweep",
                grid.to_str().unwrap(),
                "--out",
                copy.to_str().unwrap(),
                "-q",
            ]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 trained"),
                "{what}: {stdout}"
            );
            let out = clustermoe(&["merge", copy.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // A run killed before its record is not done: merge warns and goes on.
    let copy = dir.join("unfinished");
    copy_dir(&good, &copy);
    std::fs::remove_file(copy.join("runs").join(&run).join("complete.json")).unwrap();
    let out = clustermoe(&["merge", copy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("incomplete") && err.contains(&run),
        "{err}"
    );
    // A run directory never made is not started.
    std::fs::remove_dir_all(copy.join("runs").join(&run)).unwrap();
    let out = clustermoe(&["merge", copy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("not started") && err.contains(&run),
        "{err}"
    );
    // A directory that is no sweep.
    let nowhere = dir.join("nowhere");
    assert_rejected(
        &clustermoe(&["merge", nowhere.to_str().unwrap()]),
        &["nowhere"],
        "missing sweep",
    );
}
