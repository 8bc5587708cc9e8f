//! Checkpoints, clean stops and resuming a run directory.
//!
//! Each model of a run keeps its own checkpoint file (`checkpoint.moe`,
//! `checkpoint.vanilla`), rewritten atomically every N steps: its complete
//! training state (parameters, generator states, phase and step) and how
//! many bytes of its metrics part file were written by then. Resuming
//! restores the state, cuts the part file back to that length and trains
//! on; the runs are deterministic, so a run killed at any moment and
//! resumed writes the same bytes as one never interrupted.
//!
//! A checkpoint file is one header line, then JSON:
//! `clustermoe-checkpoint FORMAT sha256=HEX bytes=N`. The checksum and the
//! length catch truncated and corrupted files, the format number files of
//! another version, and the configuration's hash a checkpoint of another
//! run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::metrics::Record;
use crate::phase::ModelKind;
use crate::store::output::{self, RecordWriter};
use crate::train::{Journal, ModelState, Stage};

/// Version of the checkpoint format; files of another are refused.
pub const FORMAT: u32 = 4;
const MAGIC: &str = "clustermoe-checkpoint";

/// How a run checkpoints and stops.
#[derive(Clone, Debug, Default)]
pub struct Control {
    /// Save a checkpoint every this many steps of a phase (None: only when stopped).
    pub checkpoint_every: Option<u64>,
    /// Set to a signal number (by the CLI's signal handler) to stop the run
    /// after a checkpoint.
    pub stop: Option<Arc<AtomicUsize>>,
}

impl Control {
    /// The signal that asked for a stop, if one did.
    pub fn stop_signal(&self) -> Option<i32> {
        let signal = self.stop.as_ref()?.load(Ordering::Relaxed);
        (signal != 0).then_some(signal as i32)
    }
}

/// What a checkpoint file holds after its header (a model with stages `S`).
#[derive(Serialize, Deserialize)]
pub(crate) struct Payload<S> {
    /// SHA-256 of the run's `config.toml`.
    pub(crate) config_sha256: String,
    /// Bytes of the model's metrics part file at this checkpoint.
    pub(crate) records_bytes: u64,
    /// The `--checkpoint-every` of the run, kept for its resumption.
    pub(crate) checkpoint_every: Option<u64>,
    pub(crate) state: ModelState<S>,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a checkpoint file atomically.
fn save<S: Stage>(path: &Path, payload: &Payload<S>) -> Result<()> {
    let body = serde_json::to_vec(payload).expect("states serialise");
    let mut bytes = format!(
        "{MAGIC} {FORMAT} sha256={} bytes={}\n",
        sha256_hex(&body),
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    output::write_atomic(path, &bytes)
}

/// Reads and verifies a checkpoint file of the model with stages `S`.
fn load<S: Stage>(path: &Path) -> Result<Payload<S>> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line: not a checkpoint, or cut short".into()))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| bad("the header is not text: not a checkpoint".into()))?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, format, sha, len] = fields[..] else {
        return Err(bad(format!("unexpected header `{header}`")));
    };
    if magic != MAGIC {
        return Err(bad(format!(
            "not a clustermoe checkpoint (header `{header}`)"
        )));
    }
    if format != FORMAT.to_string() {
        return Err(bad(format!(
            "written in checkpoint format {format}, this clustermoe reads format {FORMAT}: \
             resume it with the version that wrote it, or start the run again"
        )));
    }
    let (Some(sha), Some(len)) = (
        sha.strip_prefix("sha256="),
        len.strip_prefix("bytes=")
            .and_then(|l| l.parse::<usize>().ok()),
    ) else {
        return Err(bad(format!("unexpected header `{header}`")));
    };
    let body = &bytes[newline + 1..];
    if body.len() != len {
        return Err(bad(format!(
            "truncated or extended: {} bytes after the header, the header says {len}",
            body.len()
        )));
    }
    if sha256_hex(body) != sha {
        return Err(bad("corrupted: the checksum does not match".into()));
    }
    // The model is read first: the other model's stages would not parse,
    // and the file deserves to be refused by name.
    #[derive(Deserialize)]
    struct Head {
        state: HeadState,
    }
    #[derive(Deserialize)]
    struct HeadState {
        model: ModelKind,
    }
    let unreadable = |e: serde_json::Error| bad(format!("unreadable state ({e})"));
    let head: Head = serde_json::from_slice(body).map_err(unreadable)?;
    if head.state.model != S::MODEL {
        return Err(bad(format!(
            "it holds the {} model's state, not the {} model's",
            head.state.model,
            S::MODEL
        )));
    }
    serde_json::from_slice(body).map_err(unreadable)
}

/// The journal of one model in a run directory: its metrics part file and
/// its checkpoints.
pub(crate) struct DirJournal {
    pub(crate) model: ModelKind,
    pub(crate) log: RecordWriter,
    pub(crate) path: PathBuf,
    pub(crate) config_sha256: String,
    pub(crate) control: Control,
}

impl<S: Stage> Journal<S> for DirJournal {
    fn record(&mut self, rec: &Record) -> Result<()> {
        self.log.write(rec)
    }

    fn checkpointing(&self) -> bool {
        self.control.checkpoint_every.is_some()
    }

    fn checkpoint_due(&self, step: u64) -> bool {
        self.control
            .checkpoint_every
            .is_some_and(|every| step.is_multiple_of(every))
    }

    fn checkpoint(&mut self, state: &ModelState<S>) -> Result<()> {
        debug_assert_eq!(state.model, self.model);
        // The records the state has seen must be on disk before the state is.
        let records_bytes = self.log.flushed_len()?;
        save(
            &self.path,
            &Payload {
                config_sha256: self.config_sha256.clone(),
                records_bytes,
                checkpoint_every: self.control.checkpoint_every,
                state: state.clone(),
            },
        )
    }

    fn stop_requested(&self) -> Option<i32> {
        self.control.stop_signal()
    }
}

/// Loads a model's checkpoint and checks that it belongs to this run.
pub(crate) fn checked<S: Stage>(path: &Path, config_text: &str) -> Result<Payload<S>> {
    let payload = load(path)?;
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    if payload.config_sha256 != sha256_hex(config_text.as_bytes()) {
        return Err(bad(
            "it was written for another configuration than the directory's config.toml".into(),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::rng::{stream, StreamId};
    use crate::train::{MoeStage, VanillaStage, VanillaTrainState};

    fn payload() -> Payload<VanillaStage> {
        Payload {
            config_sha256: "abc".into(),
            records_bytes: 12,
            checkpoint_every: Some(5),
            state: ModelState {
                model: ModelKind::Vanilla,
                samples: 640,
                data: stream(1, StreamId::VanillaData),
                init: stream(1, StreamId::VanillaInit),
                watch: Default::default(),
                stage: VanillaStage::Train(VanillaTrainState {
                    step: 10,
                    map: crate::model::InputMap {
                        centre: ndarray::array![0.1f32, -1e-30, 3.0],
                        whiten: None,
                    },
                    w: ndarray::array![[0.6f32, 0.8, 0.0], [f32::MIN_POSITIVE, 1.0, 1.0 / 3.0]],
                    neurons: crate::model::NeuronStats {
                        correlation: vec![-0.1, 1e-300],
                        signs: vec![1.0, -1.0],
                    },
                }),
            },
        }
    }

    #[test]
    fn checkpoints_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.vanilla");
        let original = payload();
        save(&path, &original).unwrap();
        let back = load::<VanillaStage>(&path).unwrap();
        // Bit for bit: the serialised forms agree, floats and generators included.
        assert_eq!(
            serde_json::to_vec(&back).unwrap(),
            serde_json::to_vec(&original).unwrap()
        );
        let VanillaStage::Train(VanillaTrainState { w, .. }) = &back.state.stage else {
            panic!("stage changed")
        };
        assert_eq!(w[[1, 2]].to_bits(), (1.0f32 / 3.0).to_bits());
    }

    #[test]
    fn damaged_checkpoints_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.vanilla");
        save(&path, &payload()).unwrap();
        let good = std::fs::read(&path).unwrap();
        let newline = good.iter().position(|&b| b == b'\n').unwrap();
        let mut flipped = good.clone();
        flipped[newline + 20] ^= 0x01;
        let other_version = String::from_utf8(good.clone()).unwrap().replacen(
            &format!("checkpoint {FORMAT} "),
            "checkpoint 999 ",
            1,
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() / 2].to_vec(), "truncated"),
            (good[..newline / 2].to_vec(), "no header line"),
            (Vec::new(), "no header line"),
            (flipped, "checksum"),
            (other_version.into_bytes(), "format 999"),
            (
                b"{\"not\": \"a checkpoint\"}\n".to_vec(),
                "unexpected header",
            ),
            (vec![0xff, 0xfe, 0x00, b'\n', 1, 2], "not text"),
        ];
        for (bytes, reason) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let err = load::<VanillaStage>(&path).err().expect("refused");
            assert_eq!(err.exit_status(), 2);
            let message = err.to_string();
            assert!(message.contains(reason), "{reason}: {message}");
            assert!(message.contains("checkpoint.vanilla"), "{message}");
        }
        // The other model's checkpoint is refused by name, before its stage is read.
        save(&path, &payload()).unwrap();
        let message = load::<MoeStage>(&path).err().expect("refused").to_string();
        assert!(
            message.contains("the vanilla model's state, not the moe model's"),
            "{message}"
        );
    }
}
