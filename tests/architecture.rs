//! The architecture's rules, checked on the source (docs/architecture.md):
//! no import cycle between the top-level modules of the library, no
//! function over 150 lines, and no `use super::*` outside test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a function may be, in lines from its signature to its
/// closing brace.
const MAX_FUNCTION_LINES: usize = 150;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The files that are test modules as a whole: declared as
/// `#[cfg(test)] mod NAME;` by their parent.
fn test_module_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut tests = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let Some(name) = pair[1]
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
            else {
                continue;
            };
            if pair[0] != "#[cfg(test)]" {
                continue;
            }
            // A module's children live beside `mod.rs`, or in the folder
            // named after any other file.
            let dir = match file.file_name().and_then(|n| n.to_str()) {
                Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().unwrap().to_path_buf(),
                _ => file.with_extension(""),
            };
            tests.insert(dir.join(format!("{name}.rs")));
            tests.insert(dir.join(name).join("mod.rs"));
        }
    }
    tests
}

/// The library's source files, without whole-file test modules.
fn library_files(src: &Path) -> Vec<PathBuf> {
    let files = rust_files(src);
    let tests = test_module_files(&files);
    files.into_iter().filter(|f| !tests.contains(f)).collect()
}

/// A source line with its comment, string and character literals blanked,
/// so that braces and words inside them do not count.
fn code_of(line: &str, in_block_comment: &mut bool) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if *in_block_comment {
            if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                *in_block_comment = false;
                i += 1;
            }
        } else if chars[i] == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        } else if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            *in_block_comment = true;
            i += 1;
        } else if chars[i] == '"' {
            // Skip to the closing quote (raw strings with # are rare enough
            // in this code base not to hold braces that matter).
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
        } else if chars[i] == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 2; // 'x'
        } else if chars[i] == '\'' && chars.get(i + 1) == Some(&'\\') {
            while i + 1 < chars.len() && chars[i + 1] != '\'' {
                i += 1;
            }
            i += 1; // '\n', '\u{..}'
        } else {
            out.push(chars[i]);
        }
        i += 1;
    }
    out
}

/// A file's lines as code (see [`code_of`]), each with whether it lies
/// inside a `#[cfg(test)]` module.
fn code_lines(text: &str) -> Vec<(String, bool)> {
    let mut in_comment = false;
    let mut depth = 0usize;
    // Depths at which a test module was opened.
    let mut test_depths: Vec<usize> = Vec::new();
    let mut cfg_test_pending = false;
    let mut lines = Vec::new();
    for raw in text.lines() {
        let code = code_of(raw, &mut in_comment);
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            cfg_test_pending = true;
        } else if cfg_test_pending && trimmed.starts_with("mod ") && trimmed.ends_with('{') {
            test_depths.push(depth);
            cfg_test_pending = false;
        } else if !trimmed.is_empty() && !trimmed.starts_with("#[") {
            cfg_test_pending = false;
        }
        lines.push((code.clone(), !test_depths.is_empty()));
        for c in code.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if test_depths.last() == Some(&depth) {
                        test_depths.pop();
                    }
                }
                _ => {}
            }
        }
    }
    lines
}

/// Every function of `text` longer than the limit: (name, first line, lines).
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines = code_lines(text);
    let mut long = Vec::new();
    for (start, (code, _)) in lines.iter().enumerate() {
        let Some(at) = find_fn(code) else { continue };
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (end, (code, _)) in lines.iter().enumerate().skip(start) {
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !opened && code.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if opened && depth == 0 {
                let n = end - start + 1;
                if n > MAX_FUNCTION_LINES {
                    long.push((name.clone(), start + 1, n));
                }
                break;
            }
        }
    }
    long
}

/// Where `fn NAME` starts on a line of code, if it declares a function.
fn find_fn(code: &str) -> Option<usize> {
    let at = code.find("fn ")?;
    let before = code[..at].trim();
    let words_ok = before.split_whitespace().all(|w| {
        matches!(
            w,
            "pub" | "const" | "unsafe" | "async" | "extern" | "default"
        ) || w.starts_with("pub(")
            || w.starts_with('"')
    });
    let starts_name = code[at + 3..].starts_with(|c: char| c.is_alphabetic() || c == '_');
    (words_ok && starts_name).then_some(at)
}

/// The top-level module a file of `src/` belongs to (None for the crate
/// root and the binary).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "cli")).then(|| name.to_string())
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_function_is_over_150_lines() {
    let src = src();
    let mut offenders = Vec::new();
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, line, n) in long_functions(&text) {
            offenders.push(format!("{}:{line} {name}: {n} lines", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_glob_import_of_the_parent_outside_test_modules() {
    let src = src();
    let mut offenders = Vec::new();
    for file in library_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, (code, in_test)) in code_lines(&text).iter().enumerate() {
            if code.trim() == "use super::*;" && !in_test {
                offenders.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`use super::*` outside a test module:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let src = src();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in library_files(&src) {
        let Some(module) = top_module(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = uses.entry(module.clone()).or_default();
        for (code, in_test) in code_lines(&text) {
            if in_test {
                continue;
            }
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != module {
                    entry.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = uses.keys().cloned().collect();
    for deps in uses.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    // A path back to `from` through its imports is a cycle.
    for from in &modules {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Vec<String>> = uses[from].iter().map(|d| vec![d.clone()]).collect();
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            assert!(
                last != from,
                "an import cycle: {from} -> {}",
                path.join(" -> ")
            );
            if seen.insert(last.clone()) {
                for next in &uses[last] {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    // The checks find what they look for.
    assert!(uses["experiment"].contains("store"), "{uses:?}");
    let files = rust_files(&src);
    assert!(test_module_files(&files).contains(&src.join("train").join("precision.rs")));
}

#[test]
fn the_checks_see_long_functions_and_test_modules() {
    let body = "    let x = 1;\n".repeat(MAX_FUNCTION_LINES);
    let text = format!("pub(crate) fn long() {{\n{body}}}\nfn short() {{ \"}}\"; }}\n");
    assert_eq!(
        long_functions(&text),
        vec![("long".to_string(), 1, MAX_FUNCTION_LINES + 2)]
    );
    let text = "use super::*;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\nuse x;\n";
    let flags: Vec<bool> = code_lines(text).iter().map(|(_, t)| *t).collect();
    assert_eq!(flags, [false, false, true, true, true, false]);
}
