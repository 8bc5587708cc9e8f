//! `clustermoe merge`: gathers the runs of a sweep into one table,
//! `results.csv` (flat columns) and `results.jsonl` (one object per run).

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::experiment;
use crate::store::{output, record, RunState, SweepDir};
use crate::sweep::Manifest;

/// What a merge found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeReport {
    /// Complete runs written as rows.
    pub rows: usize,
    /// Ids of the runs of the manifest not started (yet).
    pub missing: Vec<String>,
    /// Ids of the runs another process is writing now.
    pub in_progress: Vec<String>,
    /// Runs with files that are not a result (killed, damaged, assembled
    /// from two processes, of another version), each id with the reason;
    /// running the sweep again redoes them.
    pub incomplete: Vec<(String, String)>,
}

impl MergeReport {
    /// Every run of the grid is a row.
    pub fn is_whole(&self) -> bool {
        self.missing.is_empty() && self.in_progress.is_empty() && self.incomplete.is_empty()
    }
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
fn run_ids(dir: &SweepDir) -> Result<Vec<String>> {
    let manifest_path = dir.manifest_file();
    if manifest_path.exists() {
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| Error::Unreadable {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::Parse {
            input: manifest_path.clone().into(),
            message: e.to_string(),
        })?;
        // An id is a directory name under runs/, never a path out of it.
        if let Some(bad) = manifest.runs.iter().find(|r| {
            let mut parts = Path::new(&r.id).components();
            !matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            )
        }) {
            return Err(Error::Parse {
                input: manifest_path.into(),
                message: format!("run id {:?} is not a directory name", bad.id),
            });
        }
        return Ok(manifest.runs.into_iter().map(|r| r.id).collect());
    }
    let runs = dir.runs();
    let mut ids: Vec<String> = std::fs::read_dir(&runs)
        .map_err(|source| Error::Unreadable { path: runs, source })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    Ok(ids)
}

/// A checked run's configuration and summary as JSON values, or why they
/// are not of this version.
fn parse_run(config: &[u8], summary: &[u8]) -> std::result::Result<(Value, Value), String> {
    serde_json::from_slice::<experiment::Summary>(summary)
        .map_err(|e| format!("`summary.json` is not a run summary of this version ({e})"))?;
    let summary: Value = serde_json::from_slice(summary).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(config).map_err(|e| format!("`config.toml`: {e}"))?;
    let config = Config::from_toml(text)
        .map_err(|e| format!("`config.toml` is not a configuration of this version ({e})"))?;
    Ok((
        serde_json::to_value(&config).expect("configs are JSON"),
        summary,
    ))
}

/// Writes `DIR/results.csv` and `DIR/results.jsonl` from every complete run
/// under `DIR/runs/`, in grid order (that of `sweep.json`; without it, runs
/// sorted by id). A row holds the run's id, its configuration (`config.*`
/// columns) and its summary (`summary.*`); a run that is not complete is
/// no row but is named in the report (with the reason when it is
/// incomplete). The example of
/// [`crate::sweep::run_sweep`] merges a sweep.
pub fn merge(dir: &Path) -> Result<MergeReport> {
    let dir = &SweepDir::new(dir);
    let mut report = MergeReport::default();
    let mut rows: Vec<Vec<(String, Value)>> = Vec::new();
    let mut jsonl = String::new();
    for id in run_ids(dir)? {
        let run = dir.run(&id);
        // Each run is read from the bytes its completion record vouches
        // for; a run without a matching record is named, never a row.
        let (mut config_bytes, mut summary_bytes) = (Vec::new(), Vec::new());
        let checked = record::check_files(run.path(), &mut |name, bytes| {
            if name == "config.toml" {
                config_bytes = bytes.to_vec();
            } else if name == "summary.json" {
                summary_bytes = bytes.to_vec();
            }
        })
        .and_then(|_| parse_run(&config_bytes, &summary_bytes));
        let (config, summary) = match checked {
            Ok(parsed) => parsed,
            Err(reason) => {
                match run.not_complete(reason) {
                    RunState::InProgress => report.in_progress.push(id),
                    RunState::NotStarted => report.missing.push(id),
                    RunState::Incomplete(reason) => report.incomplete.push((id, reason)),
                    RunState::Complete => unreachable!("not_complete never says complete"),
                }
                continue;
            }
        };
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
    let io = |e: csv::Error| Error::io("cannot write", dir.results_csv(), std::io::Error::other(e));
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
    let _bookkeeping = dir.bookkeeping_lock()?;
    output::write_atomic(&dir.results_csv(), &bytes)?;
    output::write_atomic(&dir.results_jsonl(), jsonl.as_bytes())?;
    report.rows = rows.len();
    Ok(report)
}
