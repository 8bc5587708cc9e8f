//! The run directory, the one place that knows its file names.
//!
//! A run directory holds `config.toml` (written first), `metrics.jsonl`,
//! `model.npz` and `summary.json` (written last: its presence marks the run
//! complete); while a run trains, also each model's metrics part file and,
//! if asked for, its checkpoint. A sweep directory holds `sweep.json` (the
//! grid's runs in order), `runs/ID/` (one run directory per run) and, once
//! merged, `results.csv` and `results.jsonl`.

use std::path::{Path, PathBuf};

use crate::config::{Config, ValidConfig};
use crate::error::{Error, Result};
use crate::experiment::{self, RunOutput, Summary};
use crate::metrics::Record;
use crate::phase::{ModelKind, Phase};
use crate::store::checkpoint::{self, Control, DirJournal, Payload};
use crate::store::output::{self, RecordWriter};
use crate::train::{ModelState, MoeStage, Monitor, Stage, VanillaStage};

const CONFIG: &str = "config.toml";
const METRICS: &str = "metrics.jsonl";
const SUMMARY: &str = "summary.json";
const MODEL: &str = "model.npz";

/// One run's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

/// Where a checkpoint stands: the phase and the step done in it (None: trained).
pub type Position = Option<(Phase, u64)>;

/// How far a run directory got.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// `summary.json` is there: nothing to do.
    Complete,
    /// Each model with its checkpoint's position, if it has one.
    Resumable(Vec<(ModelKind, Option<Position>)>),
}

/// A run directory read and checked for resuming: its configuration, how
/// far it got, and its checkpoints (each read and verified once).
pub struct Inspection {
    dir: RunDir,
    /// The directory's configuration.
    pub config: ValidConfig,
    /// How far the run got.
    pub progress: Progress,
    checkpoints: (Option<Payload<MoeStage>>, Option<Payload<VanillaStage>>),
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`: the complete configuration of the run.
    pub fn config_file(&self) -> PathBuf {
        self.path.join(CONFIG)
    }

    /// `metrics.jsonl`: the metric records of both models, MoE first.
    pub fn metrics_file(&self) -> PathBuf {
        self.path.join(METRICS)
    }

    /// `summary.json`: written last, so it marks the run complete.
    pub fn summary_file(&self) -> PathBuf {
        self.path.join(SUMMARY)
    }

    /// `model.npz`: the ground truth and every learned array.
    pub fn model_file(&self) -> PathBuf {
        self.path.join(MODEL)
    }

    /// A model's metric records while it trains.
    pub(crate) fn part_file(&self, model: ModelKind) -> PathBuf {
        self.path.join(format!("metrics.{model}.part"))
    }

    /// A model's checkpoint.
    pub(crate) fn checkpoint_file(&self, model: ModelKind) -> PathBuf {
        self.path.join(format!("checkpoint.{model}"))
    }

    /// Whether `name` is a file a run writes (or a temporary of one).
    fn is_run_file(name: &str) -> bool {
        let per_model = ModelKind::ALL
            .iter()
            .any(|m| name == format!("metrics.{m}.part") || name == format!("checkpoint.{m}"));
        [CONFIG, METRICS, SUMMARY, MODEL].contains(&name)
            || per_model
            || (name.starts_with('.') && name.ends_with(".tmp"))
    }

    /// Whether any model has a checkpoint here.
    pub fn has_checkpoints(&self) -> bool {
        ModelKind::ALL
            .iter()
            .any(|&m| self.checkpoint_file(m).exists())
    }

    /// Whether the directory holds a complete run: its `summary.json` is a
    /// summary and its `config.toml` a configuration. A run directory damaged
    /// or written by another version is not complete, so a sweep redoes it.
    pub fn is_complete(&self) -> bool {
        std::fs::read(self.summary_file())
            .ok()
            .is_some_and(|t| serde_json::from_slice::<Summary>(&t).is_ok())
            && Config::from_file(&self.config_file()).is_ok()
    }

    /// Reads `summary.json`.
    pub fn read_summary(&self) -> Result<Summary> {
        let path = self.summary_file();
        let text = std::fs::read(&path).map_err(|source| Error::Unreadable {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|e| Error::Parse {
            input: path.into(),
            message: format!("not a run summary of this version ({e})"),
        })
    }

    /// Reads `metrics.jsonl`.
    pub fn read_metrics(&self) -> Result<Vec<Record>> {
        let path = self.metrics_file();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Unreadable {
            path: path.clone(),
            source,
        })?;
        text.lines()
            .map(|l| {
                serde_json::from_str(l).map_err(|e| Error::Parse {
                    input: path.clone().into(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Reads and checks the run's configuration, for resuming.
    fn read_config(&self) -> Result<ValidConfig> {
        let not_a_run = |message: &str| Error::Checkpoint {
            path: self.path.clone(),
            message: message.into(),
        };
        if !self.path.is_dir() {
            return Err(not_a_run(
                "not a directory: give the run directory that `clustermoe run --out` wrote",
            ));
        }
        let path = self.config_file();
        if !path.is_file() {
            return Err(not_a_run("it holds no config.toml: not a run directory"));
        }
        Config::from_file(&path)?.check()
    }

    /// Creates the directory for a new run and writes its `config.toml`. An
    /// existing directory is reused only when it holds nothing but files of
    /// a previous (possibly killed) run, never otherwise.
    fn create(&self, cfg: &ValidConfig) -> Result<()> {
        let dir = &self.path;
        if dir.exists() {
            let names: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| Error::io("cannot read", dir, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if let Some(other) = names.iter().find(|n| !Self::is_run_file(n)) {
                return Err(Error::invalid(
                    "--out",
                    dir.display(),
                    format!("a new directory, an empty one, or a previous run directory (it holds `{other}`)"),
                ));
            }
            for name in &names {
                let p = dir.join(name);
                std::fs::remove_file(&p).map_err(|e| Error::io("cannot remove", &p, e))?;
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        output::write_atomic(&self.config_file(), cfg.config.to_toml().as_bytes())
    }

    /// Trains `cfg` into this directory from the start.
    pub fn train(
        &self,
        cfg: &ValidConfig,
        monitor: &dyn Monitor,
        control: &Control,
    ) -> Result<RunOutput> {
        self.create(cfg)?;
        let logs = ModelKind::ALL.map(|m| RecordWriter::create(self.part_file(m)));
        let [moe_log, vanilla_log] = logs;
        self.train_from(
            cfg,
            monitor,
            control,
            ((moe_log?, None), (vanilla_log?, None)),
        )
    }

    /// Reads what the directory holds, checking every checkpoint in it.
    pub fn inspect(&self) -> Result<Inspection> {
        let config = self.read_config()?;
        if self.is_complete() {
            return Ok(Inspection {
                dir: self.clone(),
                config,
                progress: Progress::Complete,
                checkpoints: (None, None),
            });
        }
        let text = config.config.to_toml();
        let checkpoints = (
            self.checkpoint::<MoeStage>(&text)?,
            self.checkpoint::<VanillaStage>(&text)?,
        );
        let positions = vec![
            (
                ModelKind::Moe,
                checkpoints.0.as_ref().map(|p| p.state.stage.position()),
            ),
            (
                ModelKind::Vanilla,
                checkpoints.1.as_ref().map(|p| p.state.stage.position()),
            ),
        ];
        Ok(Inspection {
            dir: self.clone(),
            config,
            progress: Progress::Resumable(positions),
            checkpoints,
        })
    }

    /// The checkpoint of the model with stages `S`, read and verified, if it has one.
    fn checkpoint<S: Stage>(&self, config_text: &str) -> Result<Option<Payload<S>>> {
        let path = self.checkpoint_file(S::MODEL);
        path.exists()
            .then(|| checkpoint::checked::<S>(&path, config_text))
            .transpose()
    }

    /// Continues the run from its checkpoints; see [`Inspection::resume`].
    pub fn resume(&self, monitor: &dyn Monitor, control: &Control) -> Result<Option<RunOutput>> {
        self.inspect()?.resume(monitor, control)
    }

    /// Removes the checkpoints and metric parts of a complete run.
    pub fn remove_leftovers(&self) {
        for model in ModelKind::ALL {
            for path in [self.part_file(model), self.checkpoint_file(model)] {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Trains (or goes on training) both models here, then writes the
    /// metrics, `model.npz` and, last, `summary.json`; checkpoints and part
    /// files go once the run is complete. On failure or a stop, the metrics
    /// so far are joined into `metrics.jsonl` and the checkpoints stay.
    fn train_from(
        &self,
        cfg: &ValidConfig,
        monitor: &dyn Monitor,
        control: &Control,
        models: (Resumed<MoeStage>, Resumed<VanillaStage>),
    ) -> Result<RunOutput> {
        let config_sha256 = checkpoint::sha256_hex(cfg.config.to_toml().as_bytes());
        let ((moe_log, moe_state), (vanilla_log, vanilla_state)) = models;
        let journal = |model: ModelKind, log: RecordWriter| DirJournal {
            model,
            log,
            path: self.checkpoint_file(model),
            config_sha256: config_sha256.clone(),
            control,
        };
        let mut moe = journal(ModelKind::Moe, moe_log);
        let mut vanilla = journal(ModelKind::Vanilla, vanilla_log);
        let result = experiment::run_from(
            cfg,
            &mut moe,
            &mut vanilla,
            monitor,
            (moe_state, vanilla_state),
        );
        moe.log.flushed_len()?;
        vanilla.log.flushed_len()?;
        let parts = ModelKind::ALL.map(|m| self.part_file(m));
        output::join_metrics(&self.metrics_file(), &parts)?;
        let out = result?;
        output::write_model(&self.model_file(), &out)?;
        // summary.json comes last: its presence marks the run complete.
        output::write_json(&self.summary_file(), &out.summary)?;
        self.remove_leftovers();
        Ok(out)
    }
}

impl Inspection {
    /// Continues the run from its checkpoints (a model without one starts
    /// over). Returns None if the run was already complete. Without
    /// `control.checkpoint_every`, the run keeps the interval it was started
    /// with.
    pub fn resume(self, monitor: &dyn Monitor, control: &Control) -> Result<Option<RunOutput>> {
        let dir = self.dir;
        if self.progress == Progress::Complete {
            // A kill between summary.json and the clean-up leaves checkpoints
            // of a finished run behind; finish the clean-up now.
            dir.remove_leftovers();
            return Ok(None);
        }
        let mut control = control.clone();
        let (moe, vanilla) = self.checkpoints;
        let moe = resumed(&dir, moe, &mut control)?;
        let vanilla = resumed(&dir, vanilla, &mut control)?;
        dir.train_from(&self.config, monitor, &control, (moe, vanilla))
            .map(Some)
    }
}

/// A model's metrics part file, and its state to resume from if it has one.
type Resumed<S> = (RecordWriter, Option<ModelState<S>>);

/// Reopens a model's part file at its checkpoint's length and takes its
/// state; without `control.checkpoint_every`, the checkpoint's interval.
fn resumed<S: Stage>(
    dir: &RunDir,
    checkpoint: Option<Payload<S>>,
    control: &mut Control,
) -> Result<Resumed<S>> {
    let (state, records_bytes) = match checkpoint {
        Some(p) => {
            if control.checkpoint_every.is_none() {
                control.checkpoint_every = p.checkpoint_every;
            }
            (Some(p.state), p.records_bytes)
        }
        None => (None, 0),
    };
    RecordWriter::resume(dir.part_file(S::MODEL), records_bytes).map(|log| (log, state))
}

/// A sweep's directory: `sweep.json`, `runs/ID/`, `results.csv`, `results.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepDir {
    path: PathBuf,
}

impl SweepDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SweepDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sweep.json`: the grid's runs in order, with their axis values.
    pub fn manifest_file(&self) -> PathBuf {
        self.path.join("sweep.json")
    }

    /// The folder of run directories.
    pub fn runs(&self) -> PathBuf {
        self.path.join("runs")
    }

    /// The run directory of run `id`.
    pub fn run(&self, id: &str) -> RunDir {
        RunDir::new(self.runs().join(id))
    }

    /// `results.csv`: one row per complete run, written by a merge.
    pub fn results_csv(&self) -> PathBuf {
        self.path.join("results.csv")
    }

    /// `results.jsonl`: one object per complete run, written by a merge.
    pub fn results_jsonl(&self) -> PathBuf {
        self.path.join("results.jsonl")
    }
}
