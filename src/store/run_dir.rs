//! The run directory, the one place that knows its file names.
//!
//! A run directory holds `config.toml` (written first), `metrics.jsonl`,
//! `model.npz`, `summary.json` and `complete.json` (written last: the
//! completion record, see [`record`]); while a run trains, also each model's
//! metrics part file and, if asked for, its checkpoint; and always the lock
//! file of its one writer (see [`lock`]). A sweep directory holds
//! `sweep.json` (the grid's runs in order), `runs/ID/` (one run directory
//! per run), its own lock file and, once merged, `results.csv` and
//! `results.jsonl`.
//!
//! Reading a run ([`RunDir`]) needs no lock; writing one needs a
//! [`RunWriter`], which holds the directory's lock for as long as it lives.

use std::path::{Path, PathBuf};

use crate::config::{Config, ValidConfig};
use crate::error::{Error, Result, RunOption};
use crate::metrics::Record;
use crate::phase::{ModelKind, Phase};
use crate::phase::{MoeTag, VanillaTag};
use crate::results::{RunOutput, Summary};
use crate::store::checkpoint::{self, Control, DirJournal, Payload};
use crate::store::lock::{self, DirLock, LOCK_FILE};
use crate::store::output::{self, RecordWriter};
use crate::store::record::{self, Completeness, RECORD_FILE};
use crate::train::{JointStage, ModelState, MoeStage, Stage, Start, VanillaStage};

const CONFIG: &str = "config.toml";
const METRICS: &str = "metrics.jsonl";
const SUMMARY: &str = "summary.json";
const MODEL: &str = "model.npz";
const INTERVAL: &str = "checkpoint.every";

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
    /// Every file matches the completion record: nothing to do.
    Complete,
    /// Each model with its checkpoint's position, if it has one.
    Resumable(Vec<(ModelKind, Option<Position>)>),
}

/// Where a run directory stands, as a reader (`merge`) sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Every file matches the completion record.
    Complete,
    /// Another process holds the directory and is writing it.
    InProgress,
    /// Nothing of the run is there.
    NotStarted,
    /// Files are there but are not a result: the reason.
    Incomplete(String),
}

/// A run directory held for writing: the lock of its one writer, released
/// when this is dropped or the process ends.
pub struct RunWriter {
    dir: RunDir,
    _lock: DirLock,
}

/// A complete run as read back: its files' bytes, each checked against the
/// completion record.
pub struct CompleteRun {
    /// The run's configuration.
    pub config: Config,
    /// `summary.json`.
    pub summary: Summary,
    /// `metrics.jsonl`, parsed.
    pub metrics: Vec<Record>,
}

/// A run directory read and checked for resuming: its configuration, how
/// far it got, and its checkpoints (each read and verified once).
pub struct Inspection<'w> {
    writer: &'w RunWriter,
    /// The directory's configuration.
    pub config: ValidConfig,
    /// How far the run got.
    pub progress: Progress,
    /// The checkpoints; None once the run is complete.
    checkpoints: Option<Checkpoints>,
}

/// The checkpoints of a run directory, each read and verified, of the
/// training its configuration asks for (MoE, vanilla network).
// Read once per resumed run: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Checkpoints {
    /// Of the staged algorithm.
    Staged(Option<Payload<MoeStage>>, Option<Payload<VanillaStage>>),
    /// Of joint training.
    Joint(
        Option<Payload<JointStage<MoeTag>>>,
        Option<Payload<JointStage<VanillaTag>>>,
    ),
}

impl Checkpoints {
    /// Reads the checkpoints of the training `config` asks for.
    fn read(dir: &RunDir, config: &ValidConfig) -> Result<Self> {
        let text = config.config.to_toml();
        Ok(match Start::fresh(config) {
            Start::Staged(..) => {
                Checkpoints::Staged(dir.checkpoint(&text)?, dir.checkpoint(&text)?)
            }
            Start::Joint(..) => Checkpoints::Joint(dir.checkpoint(&text)?, dir.checkpoint(&text)?),
        })
    }

    /// Each model with its checkpoint's position, if it has one.
    fn positions(&self) -> Vec<(ModelKind, Option<Position>)> {
        fn at<S: Stage>(p: &Option<Payload<S>>) -> (ModelKind, Option<Position>) {
            (S::MODEL, p.as_ref().map(|p| p.state.stage.position()))
        }
        match self {
            Checkpoints::Staged(moe, vanilla) => vec![at(moe), at(vanilla)],
            Checkpoints::Joint(moe, vanilla) => vec![at(moe), at(vanilla)],
        }
    }
}

/// The journals of a run directory's two models (MoE, vanilla network).
pub(crate) type DirJournals = [DirJournal; 2];

impl RunDir {
    /// The run directory at `path` (nothing is read or created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    /// Its path.
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

    /// `summary.json`: the run's results.
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

    /// The checkpoint interval the run was started with, kept from its start
    /// so a run killed before its first checkpoint still resumes with it.
    fn interval_file(&self) -> PathBuf {
        self.path.join(INTERVAL)
    }

    /// Whether `name` is a file a run writes (or a temporary of one).
    fn is_run_file(name: &str) -> bool {
        let per_model = ModelKind::ALL
            .iter()
            .any(|m| name == format!("metrics.{m}.part") || name == format!("checkpoint.{m}"));
        [
            CONFIG,
            METRICS,
            SUMMARY,
            MODEL,
            RECORD_FILE,
            LOCK_FILE,
            INTERVAL,
        ]
        .contains(&name)
            || per_model
            || (name.starts_with('.') && name.ends_with(".tmp"))
    }

    /// Whether any model has a checkpoint here.
    pub fn has_checkpoints(&self) -> bool {
        ModelKind::ALL
            .iter()
            .any(|&m| self.checkpoint_file(m).exists())
    }

    /// `complete.json`: the completion record, written last.
    pub fn record_file(&self) -> PathBuf {
        self.path.join(RECORD_FILE)
    }

    /// Whether every output file matches the completion record, and if not, why.
    pub fn completeness(&self) -> Completeness {
        record::check(&self.path)
    }

    /// Whether the directory holds a complete run (every file as recorded).
    /// A run directory damaged, assembled from two processes or written by
    /// another version is not complete, so a sweep redoes it.
    pub fn is_complete(&self) -> bool {
        self.completeness().is_complete()
    }

    /// Where the run stands for a reader: complete, being written by another
    /// process, not started, or incomplete with the reason.
    pub fn state(&self) -> RunState {
        match self.completeness() {
            Completeness::Complete(_) => RunState::Complete,
            Completeness::Incomplete(reason) => self.not_complete(reason),
        }
    }

    /// What a run found not complete (for `reason`) is: being written by
    /// another process, not started (no `config.toml`), or incomplete.
    pub fn not_complete(&self, reason: String) -> RunState {
        if lock::is_held(&self.path) {
            RunState::InProgress
        } else if !self.config_file().is_file() {
            RunState::NotStarted
        } else {
            RunState::Incomplete(reason)
        }
    }

    /// Reads a complete run: every file checked against the completion
    /// record, and parsed from the very bytes checked. A run that is not
    /// complete is refused ([`Error::Incomplete`]; [`Error::InUse`] while
    /// another process writes it).
    pub fn read_complete(&self) -> Result<CompleteRun> {
        let (mut config, mut summary, mut metrics) = (None, None, None);
        let checked = record::check_files(&self.path, &mut |name, bytes| match name {
            CONFIG => config = Some(bytes.to_vec()),
            SUMMARY => summary = Some(bytes.to_vec()),
            METRICS => metrics = Some(bytes.to_vec()),
            _ => {}
        });
        if let Err(reason) = checked {
            let path = self.path.clone();
            return Err(match self.not_complete(reason.clone()) {
                RunState::InProgress => Error::InUse { path, holder: None },
                // No run at all here: the file a run writes first is missing.
                RunState::NotStarted => Error::Unreadable {
                    path: self.config_file(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                RunState::Complete | RunState::Incomplete(_) => Error::Incomplete { path, reason },
            });
        }
        let text = |bytes: Option<Vec<u8>>, path: PathBuf| {
            String::from_utf8(bytes.unwrap_or_default()).map_err(|e| Error::Parse {
                input: path.into(),
                message: e.to_string(),
            })
        };
        let config_path = self.config_file();
        let config =
            Config::from_toml(&text(config, config_path.clone())?).map_err(|e| match e {
                Error::Parse { message, .. } => Error::parse(config_path, message),
                other => other,
            })?;
        let summary = parse_summary(&text(summary, self.summary_file())?, self.summary_file())?;
        let metrics = parse_metrics(&text(metrics, self.metrics_file())?, self.metrics_file())?;
        Ok(CompleteRun {
            config,
            summary,
            metrics,
        })
    }

    /// Reads `summary.json` as it is (see [`RunDir::read_complete`] for a
    /// checked read).
    pub fn read_summary(&self) -> Result<Summary> {
        let path = self.summary_file();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Unreadable {
            path: path.clone(),
            source,
        })?;
        parse_summary(&text, path)
    }

    /// Reads `metrics.jsonl` as it is (see [`RunDir::read_complete`] for a
    /// checked read).
    pub fn read_metrics(&self) -> Result<Vec<Record>> {
        let path = self.metrics_file();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Unreadable {
            path: path.clone(),
            source,
        })?;
        parse_metrics(&text, path)
    }

    /// Reads and checks the run's configuration, for resuming.
    fn read_config(&self) -> Result<ValidConfig> {
        self.check_is_run()?;
        Config::from_file(&self.config_file())?.check()
    }

    /// That the directory exists and holds a `config.toml`.
    fn check_is_run(&self) -> Result<()> {
        let not_a_run = |message: &str| Error::Checkpoint {
            path: self.path.clone(),
            message: message.into(),
        };
        if !self.path.is_dir() {
            return Err(not_a_run(
                "not a directory: give the directory a run wrote (its `out`)",
            ));
        }
        if !self.config_file().is_file() {
            return Err(not_a_run("it holds no config.toml: not a run directory"));
        }
        Ok(())
    }

    /// The checkpoint of the model with stages `S`, read and verified, if it has one.
    fn checkpoint<S: Stage>(&self, config_text: &str) -> Result<Option<Payload<S>>> {
        let path = self.checkpoint_file(S::MODEL);
        path.exists()
            .then(|| checkpoint::checked::<S>(&path, config_text))
            .transpose()
    }

    /// Takes this directory for a new run, creating it if needed:
    /// [`Error::InUse`] while another process writes it; nothing is touched
    /// before the lock is held.
    pub fn writer(&self) -> Result<RunWriter> {
        let dir = &self.path;
        std::fs::create_dir_all(dir).map_err(|e| unusable_out(dir, e))?;
        let lock = DirLock::exclusive(dir).map_err(|e| match e {
            Error::Io { source, .. } if is_unwritable(&source) => unusable_out(dir, source),
            other => other,
        })?;
        Ok(RunWriter {
            dir: self.clone(),
            _lock: lock,
        })
    }

    /// Takes an existing run directory (one with a `config.toml`) for
    /// resuming it: [`Error::InUse`] while another process writes it.
    pub fn existing_writer(&self) -> Result<RunWriter> {
        self.check_is_run()?;
        Ok(RunWriter {
            dir: self.clone(),
            _lock: DirLock::exclusive(&self.path)?,
        })
    }
}

impl RunWriter {
    /// The directory held.
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Empties the directory for a new run and writes its `config.toml`. An
    /// existing directory is reused only when it holds nothing but files of
    /// a previous (possibly killed) run, never otherwise.
    fn create(&self, cfg: &ValidConfig) -> Result<()> {
        let dir = self.dir.path();
        let names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io("cannot read", dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if let Some(other) = names.iter().find(|n| !RunDir::is_run_file(n)) {
            return Err(Error::invalid_option(
                RunOption::Out,
                dir.display(),
                format!("a new directory, an empty one, or a previous run directory (it holds `{other}`)"),
            ));
        }
        // The record goes first: a directory half cleared is never complete.
        self.remove_record()?;
        for name in names
            .iter()
            .filter(|n| *n != LOCK_FILE && *n != RECORD_FILE)
        {
            let p = dir.join(name);
            std::fs::remove_file(&p).map_err(|e| Error::io("cannot remove", &p, e))?;
        }
        output::write_atomic(&self.dir.config_file(), cfg.config.to_toml().as_bytes())
    }

    /// Removes the completion record, if there is one: from then on the
    /// directory is incomplete until a new record is written.
    fn remove_record(&self) -> Result<()> {
        let record = self.dir.record_file();
        match std::fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("cannot remove", &record, e))
            }
            _ => Ok(()),
        }
    }

    /// Keeps the checkpoint interval of a run being started.
    fn keep_interval(&self, control: &Control) -> Result<()> {
        match control.checkpoint_every {
            Some(every) => {
                output::write_atomic(&self.dir.interval_file(), format!("{every}\n").as_bytes())
            }
            None => Ok(()),
        }
    }

    /// The interval kept by [`RunWriter::keep_interval`], if any.
    fn kept_interval(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.interval_file())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|&every| every > 0)
    }

    /// Starts a new run of `cfg` here: empties the directory, writes
    /// `config.toml` and the checkpoint interval, and opens each model's
    /// metrics part file.
    pub(crate) fn begin(&self, cfg: &ValidConfig, control: &Control) -> Result<DirJournals> {
        self.create(cfg)?;
        self.keep_interval(control)?;
        let [moe_log, vanilla_log] =
            ModelKind::ALL.map(|m| RecordWriter::create(self.dir.part_file(m)));
        self.journals(cfg, control, [moe_log?, vanilla_log?])
    }

    /// Reopens a stopped run for going on from its `checkpoints`: each
    /// model's part file cut back to its checkpoint's length, and the
    /// checkpoint interval the run had unless `control` gives one. Returns
    /// the journals and where each model starts.
    pub(crate) fn reopen(
        &self,
        cfg: &ValidConfig,
        checkpoints: Checkpoints,
        mut control: Control,
    ) -> Result<(DirJournals, Start)> {
        let dir = &self.dir;
        let (logs, start) = match checkpoints {
            Checkpoints::Staged(moe, vanilla) => {
                let (moe_log, moe) = resumed(dir, moe, &mut control)?;
                let (vanilla_log, vanilla) = resumed(dir, vanilla, &mut control)?;
                ([moe_log, vanilla_log], Start::Staged(moe, vanilla))
            }
            Checkpoints::Joint(moe, vanilla) => {
                let (moe_log, moe) = resumed(dir, moe, &mut control)?;
                let (vanilla_log, vanilla) = resumed(dir, vanilla, &mut control)?;
                ([moe_log, vanilla_log], Start::Joint(moe, vanilla))
            }
        };
        // Killed before any checkpoint: the interval the run started with.
        if control.checkpoint_every.is_none() {
            control.checkpoint_every = self.kept_interval();
        }
        Ok((self.journals(cfg, &control, logs)?, start))
    }

    /// Both models' journals over their part files. A record left from
    /// before (a resumed damaged run) vouches for nothing the training
    /// writes: until the new one, the directory is incomplete.
    fn journals(
        &self,
        cfg: &ValidConfig,
        control: &Control,
        logs: [RecordWriter; 2],
    ) -> Result<DirJournals> {
        self.remove_record()?;
        let config_sha256 = checkpoint::sha256_hex(cfg.config.to_toml().as_bytes());
        let [moe, vanilla] = logs;
        let journal = |model: ModelKind, log: RecordWriter| DirJournal {
            model,
            log,
            path: self.dir.checkpoint_file(model),
            config_sha256: config_sha256.clone(),
            control: control.clone(),
        };
        Ok([
            journal(ModelKind::Moe, moe),
            journal(ModelKind::Vanilla, vanilla),
        ])
    }

    /// Reads what the directory holds, checking every checkpoint in it. A
    /// complete run loses its leftovers: a kill between the completion
    /// record and the clean-up leaves checkpoints of a finished run behind.
    pub fn inspect(&self) -> Result<Inspection<'_>> {
        let dir = &self.dir;
        let config = dir.read_config()?;
        if dir.is_complete() {
            self.remove_leftovers();
            return Ok(Inspection {
                writer: self,
                config,
                progress: Progress::Complete,
                checkpoints: None,
            });
        }
        let checkpoints = Checkpoints::read(dir, &config)?;
        Ok(Inspection {
            writer: self,
            config,
            progress: Progress::Resumable(checkpoints.positions()),
            checkpoints: Some(checkpoints),
        })
    }

    /// Removes the checkpoints and metric parts of a complete run.
    pub fn remove_leftovers(&self) {
        for model in ModelKind::ALL {
            for path in [self.dir.part_file(model), self.dir.checkpoint_file(model)] {
                let _ = std::fs::remove_file(path);
            }
        }
        let _ = std::fs::remove_file(self.dir.interval_file());
    }

    /// Writes what a run in this directory produced: the metrics so far
    /// joined into `metrics.jsonl`, and, if it trained to the end,
    /// `model.npz`, `summary.json` and, last, the completion record; then
    /// the checkpoints and part files go. On failure or a stop the
    /// checkpoints stay, and the error is returned.
    pub(crate) fn finish(
        &self,
        journals: DirJournals,
        result: Result<RunOutput>,
    ) -> Result<RunOutput> {
        let dir = &self.dir;
        for mut journal in journals {
            journal.log.flushed_len()?;
        }
        let parts = ModelKind::ALL.map(|m| dir.part_file(m));
        output::join_metrics(&dir.metrics_file(), &parts)?;
        let out = result?;
        output::write_model(&dir.model_file(), &out)?;
        output::write_json(&dir.summary_file(), &out.summary)?;
        // The record comes last: with it, and only with it, the run is complete.
        record::write(dir.path())?;
        self.remove_leftovers();
        Ok(out)
    }
}

impl Inspection<'_> {
    /// The writer holding the directory.
    pub fn writer(&self) -> &RunWriter {
        self.writer
    }

    /// Takes the checkpoints to go on from; None once the run is complete.
    pub(crate) fn take_checkpoints(&mut self) -> Option<Checkpoints> {
        self.checkpoints.take()
    }
}

/// Whether an I/O error means the place cannot be written by this user.
fn is_unwritable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), PermissionDenied | ReadOnlyFilesystem)
}

/// The error of an output directory that cannot be made or written: bad
/// input (exit status 2), saying what is wrong with it.
pub fn unusable_out(dir: &Path, e: std::io::Error) -> Error {
    let why = if dir.exists() && !dir.is_dir() {
        "it is an existing file".to_string()
    } else if dir.ancestors().skip(1).any(|a| a.is_file()) {
        "a part of its path is an existing file".to_string()
    } else if is_unwritable(&e) {
        format!("this user cannot write there ({e})")
    } else {
        e.to_string()
    };
    Error::invalid_option(
        RunOption::Out,
        dir.display(),
        format!("a directory that can be created and written; {why}"),
    )
}

/// Parses `summary.json`'s text.
fn parse_summary(text: &str, path: PathBuf) -> Result<Summary> {
    serde_json::from_str(text).map_err(|e| Error::Parse {
        input: path.into(),
        message: format!("not a run summary of this version ({e})"),
    })
}

/// Parses `metrics.jsonl`'s text.
fn parse_metrics(text: &str, path: PathBuf) -> Result<Vec<Record>> {
    text.lines()
        .map(|l| {
            serde_json::from_str(l).map_err(|e| Error::Parse {
                input: path.clone().into(),
                message: e.to_string(),
            })
        })
        .collect()
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
    /// The sweep directory at `path` (nothing is read or created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SweepDir { path: path.into() }
    }

    /// Its path.
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

    /// Holds the sweep's bookkeeping (`sweep.json`, the merged results) for
    /// the instant it is written; the runs have locks of their own, so
    /// several sweep processes on one directory work side by side.
    pub fn bookkeeping_lock(&self) -> Result<DirLock> {
        DirLock::wait(&self.path)
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
