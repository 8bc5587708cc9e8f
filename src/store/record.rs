//! The completion record: `complete.json`, the file a run writes last.
//!
//! It holds the length and SHA-256 of every output file (`config.toml`,
//! `metrics.jsonl`, `model.npz`, `summary.json`) and the hash of the run's
//! configuration. A run directory is complete when its record is there and
//! every file matches it; anything else (a file cut short, a changed byte, a
//! `config.toml` of another run, a directory assembled from two processes,
//! a run killed before its record) is incomplete, with the reason named.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::checkpoint::sha256_hex;

/// The record's name in a run directory.
pub const RECORD_FILE: &str = "complete.json";

/// Version of the record's format; records of another are not trusted.
const FORMAT: u32 = 1;

/// The files a complete run holds, in the order they are recorded.
pub const OUTPUT_FILES: [&str; 4] = ["config.toml", "metrics.jsonl", "model.npz", "summary.json"];

/// One output file as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's name in the run directory.
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its SHA-256, in hex.
    pub sha256: String,
}

/// What `complete.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionRecord {
    /// The record's format version.
    pub format: u32,
    /// SHA-256 of the run's configuration as `config.toml` holds it.
    pub config_sha256: String,
    /// Every output file, in [`OUTPUT_FILES`] order.
    pub files: Vec<FileRecord>,
}

impl FileRecord {
    fn of(name: &str, bytes: &[u8]) -> Self {
        FileRecord {
            name: name.into(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    /// Why `bytes` (the file's content now) is not the recorded file, if it is not.
    fn mismatch(&self, bytes: &[u8]) -> Option<String> {
        if bytes.len() as u64 != self.bytes {
            Some(format!(
                "`{}` holds {} bytes, the record says {}",
                self.name,
                bytes.len(),
                self.bytes
            ))
        } else if sha256_hex(bytes) != self.sha256 {
            Some(format!(
                "`{}` has the recorded length but not its SHA-256 (a byte changed)",
                self.name
            ))
        } else {
            None
        }
    }
}

/// Whether a run directory is complete, and if not, why
/// ([`RunDir::completeness`](crate::store::RunDir::completeness)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// Every output file matches the record.
    Complete(CompletionRecord),
    /// Not (yet) a result: the reason, in words.
    Incomplete(String),
}

impl Completeness {
    /// Whether the run is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Completeness::Complete(_))
    }
}

/// Reads a file of the run, or says why it cannot be read.
fn read(dir: &Path, name: &str) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(dir.join(name)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("`{name}` is missing"),
        _ => format!("`{name}` cannot be read ({e})"),
    })
}

/// Writes the record of the run in `dir` from the files now there; the
/// caller has written them and holds the directory's lock.
pub(crate) fn write(dir: &Path) -> Result<CompletionRecord> {
    let mut files = Vec::with_capacity(OUTPUT_FILES.len());
    let mut config_sha256 = String::new();
    for name in OUTPUT_FILES {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let file = FileRecord::of(name, &bytes);
        if name == "config.toml" {
            config_sha256 = file.sha256.clone();
        }
        files.push(file);
    }
    let record = CompletionRecord {
        format: FORMAT,
        config_sha256,
        files,
    };
    crate::store::output::write_json(&dir.join(RECORD_FILE), &record)?;
    Ok(record)
}

/// Checks the run in `dir` against its record: every file's length and hash
/// (what [`RunDir::completeness`](crate::store::RunDir::completeness) says).
pub(crate) fn check(dir: &Path) -> Completeness {
    match check_files(dir, &mut |_, _| {}) {
        Ok(record) => Completeness::Complete(record),
        Err(reason) => Completeness::Incomplete(reason),
    }
}

/// Checks the run in `dir` against its record, handing each output file's
/// bytes, once checked, to `seen` (so a reader uses exactly the bytes it
/// checked, never a second read that a writer may have changed).
pub(crate) fn check_files(
    dir: &Path,
    seen: &mut dyn FnMut(&str, &[u8]),
) -> std::result::Result<CompletionRecord, String> {
    let text = read(dir, RECORD_FILE).map_err(|_| {
        format!(
            "it has no `{RECORD_FILE}`: the run has not finished (killed, stopped, still \
             training, or written by a version before the record)"
        )
    })?;
    let record: CompletionRecord = serde_json::from_slice(&text)
        .map_err(|e| format!("`{RECORD_FILE}` is not a completion record ({e})"))?;
    if record.format != FORMAT {
        return Err(format!(
            "`{RECORD_FILE}` is of format {}, this version writes {FORMAT}",
            record.format
        ));
    }
    let names: Vec<&str> = record.files.iter().map(|f| f.name.as_str()).collect();
    if names != OUTPUT_FILES {
        return Err(format!(
            "`{RECORD_FILE}` records {names:?}, not the run's files {OUTPUT_FILES:?}"
        ));
    }
    for file in &record.files {
        let bytes = read(dir, &file.name)?;
        if let Some(why) = file.mismatch(&bytes) {
            return Err(why);
        }
        if file.name == "config.toml" && file.sha256 != record.config_sha256 {
            return Err(format!(
                "`{RECORD_FILE}` names a configuration other than its `config.toml`"
            ));
        }
        seen(&file.name, &bytes);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("config.toml", "seed = 1\n"),
            ("metrics.jsonl", "{\"step\":1}\n{\"step\":2}\n"),
            ("model.npz", "PK arrays"),
            ("summary.json", "{}\n"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn reason(dir: &Path) -> String {
        match check(dir) {
            Completeness::Incomplete(why) => why,
            Completeness::Complete(_) => panic!("complete"),
        }
    }

    #[test]
    fn a_recorded_run_is_complete_until_a_file_changes() {
        let dir = run_dir();
        assert!(reason(dir.path()).contains("no `complete.json`"));
        let record = write(dir.path()).unwrap();
        assert_eq!(check(dir.path()), Completeness::Complete(record));

        let metrics = dir.path().join("metrics.jsonl");
        std::fs::write(&metrics, "{\"step\":1}\n").unwrap();
        assert!(reason(dir.path()).contains("`metrics.jsonl` holds 11 bytes, the record says 22"));
        std::fs::write(&metrics, "{\"step\":1}\n{\"step\":2}\n").unwrap();
        assert!(check(dir.path()).is_complete());

        std::fs::write(dir.path().join("model.npz"), "PK arrayz").unwrap();
        assert!(reason(dir.path()).contains("`model.npz` has the recorded length"));
        std::fs::write(dir.path().join("model.npz"), "PK arrays").unwrap();

        std::fs::write(dir.path().join("config.toml"), "seed = 2\n").unwrap();
        assert!(reason(dir.path()).contains("`config.toml`"));
        std::fs::write(dir.path().join("config.toml"), "seed = 1\n").unwrap();

        std::fs::remove_file(dir.path().join("summary.json")).unwrap();
        assert!(reason(dir.path()).contains("`summary.json` is missing"));
    }
}
