//! `clustermoe merge`: gathers the runs of a sweep into one table,
//! `results.csv` (flat columns) and `results.jsonl` (one object per run).

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::output;
use crate::sweep::{self, Manifest};

/// What a merge found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeReport {
    /// Complete runs written as rows.
    pub rows: usize,
    /// Runs of the manifest that are not complete (yet).
    pub missing: Vec<String>,
}

/// Flattens nested objects into dotted keys; arrays stay JSON values (one cell).
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Run ids in grid order (from `sweep.json`), or sorted run directories.
fn run_ids(dir: &Path) -> Result<Vec<String>> {
    let manifest_path = dir.join("sweep.json");
    if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| Error::Unreadable {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: manifest_path,
            message: e.to_string(),
        })?;
        return Ok(manifest.runs.into_iter().map(|r| r.id).collect());
    }
    let runs = dir.join("runs");
    let mut ids: Vec<String> = std::fs::read_dir(&runs)
        .map_err(|source| Error::Unreadable { path: runs, source })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Writes `DIR/results.csv` and `DIR/results.jsonl` from every complete run
/// under `DIR/runs/`, in grid order.
pub fn merge(dir: &Path) -> Result<MergeReport> {
    let mut report = MergeReport::default();
    let mut rows: Vec<Vec<(String, Value)>> = Vec::new();
    let mut jsonl = String::new();
    for id in run_ids(dir)? {
        let run = dir.join("runs").join(&id);
        if !sweep::is_complete(&run) {
            report.missing.push(id);
            continue;
        }
        let config = Config::from_file(&run.join("config.toml"))?;
        let summary_path = run.join("summary.json");
        let summary: Value = std::fs::read_to_string(&summary_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| Error::Parse {
                path: summary_path.clone(),
                message: "not a summary".into(),
            })?;
        let config = serde_json::to_value(&config).expect("configs are JSON");
        let mut object = Map::new();
        object.insert("id".into(), Value::String(id.clone()));
        object.insert("config".into(), config.clone());
        object.insert("summary".into(), summary.clone());
        jsonl.push_str(&Value::Object(object).to_string());
        jsonl.push('\n');
        let mut row = vec![("id".to_string(), Value::String(id))];
        flatten("config", &config, &mut row);
        flatten("summary", &summary, &mut row);
        rows.push(row);
    }
    // Columns: the union over rows, in order of first appearance.
    let mut columns: Vec<String> = Vec::new();
    for row in &rows {
        for (k, _) in row {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| {
        Error::io(
            "cannot write",
            dir.join("results.csv"),
            std::io::Error::other(e),
        )
    };
    csv.write_record(&columns).map_err(io)?;
    for row in &rows {
        let record: Vec<String> = columns
            .iter()
            .map(|c| {
                row.iter()
                    .find(|(k, _)| k == c)
                    .map_or(String::new(), |(_, v)| cell(v))
            })
            .collect();
        csv.write_record(&record).map_err(io)?;
    }
    let bytes = csv.into_inner().map_err(|e| io(e.into_error().into()))?;
    output::write_atomic(&dir.join("results.csv"), &bytes)?;
    output::write_atomic(&dir.join("results.jsonl"), jsonl.as_bytes())?;
    report.rows = rows.len();
    Ok(report)
}
