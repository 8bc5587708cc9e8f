//! Files on disk: atomic writes, metric part files, `.npz` archives.
//!
//! Every file is written under a temporary name and renamed into place, so
//! a reader never sees half a `summary.json` or `model.npz`. The arrays of
//! `model.npz` (listed in docs/runs-and-sweeps.md, "Output files") and of a
//! data set file (`clustermoe generate`, docs/configuration.md) are
//! [`model_arrays`] and [`dataset_arrays`], in the file's order.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayD};
use ndarray_npy::NpzWriter;
use zip::{write::SimpleFileOptions, CompressionMethod, DateTime};

use crate::error::{Error, Result};
use crate::metrics::Record;
use crate::results::{Models, RunOutput};
use crate::task::{Batch, Task};

/// Writes `bytes` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot write", path, e)
    })
}

/// A temporary name unique to this process and call, so concurrent writers
/// (shards of one sweep writing `sweep.json`) never share one.
fn tmp_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Streams metric records of one model to a part file as JSON lines.
pub(crate) struct RecordWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file once the buffer is flushed.
    len: u64,
}

impl RecordWriter {
    /// Creates (or empties) the part file at `path`.
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        let f = File::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
        Ok(RecordWriter {
            path,
            out: BufWriter::new(f),
            len: 0,
        })
    }

    /// Reopens a part file to append after its first `len` bytes (what a
    /// checkpoint counted); records written after that checkpoint are cut.
    pub(crate) fn resume(path: PathBuf, len: u64) -> Result<Self> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        let have = f
            .metadata()
            .map_err(|e| Error::io("cannot read", &path, e))?
            .len();
        if have < len {
            return Err(Error::Checkpoint {
                path: path.clone(),
                message: format!(
                    "the metrics part file holds {have} bytes, fewer than the {len} the checkpoint counted"
                ),
            });
        }
        f.set_len(len)
            .map_err(|e| Error::io("cannot truncate", &path, e))?;
        let mut out = BufWriter::new(f);
        std::io::Seek::seek(&mut out, std::io::SeekFrom::Start(len))
            .map_err(|e| Error::io("cannot seek", &path, e))?;
        Ok(RecordWriter { path, out, len })
    }

    /// Appends `rec` as one JSON line (buffered).
    pub(crate) fn write(&mut self, rec: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(rec).expect("records serialise");
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Flushes to the file and returns its length.
    pub(crate) fn flushed_len(&mut self) -> Result<u64> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        Ok(self.len)
    }
}

/// Joins the per-model part files into `metrics` (MoE first), so the file
/// is the same whatever order the threads logged in. The parts stay (a
/// resumed run appends to them) until the run is complete.
pub(crate) fn join_metrics(metrics: &Path, parts: &[PathBuf]) -> Result<()> {
    let mut all = Vec::new();
    for p in parts {
        if p.exists() {
            all.extend(fs::read(p).map_err(|e| Error::io("cannot read", p, e))?);
        }
    }
    write_atomic(metrics, &all)
}

/// One array of an `.npz` file: float64, or int64 for indices.
#[derive(Clone, Debug, PartialEq)]
pub enum NpzArray {
    /// A float64 array (directions, weights, data).
    F64(ArrayD<f64>),
    /// An int64 array (cluster labels, expert groups; -1 for none).
    I64(ArrayD<i64>),
}

impl From<Array1<f64>> for NpzArray {
    fn from(a: Array1<f64>) -> Self {
        NpzArray::F64(a.into_dyn())
    }
}

impl From<Array2<f64>> for NpzArray {
    fn from(a: Array2<f64>) -> Self {
        NpzArray::F64(a.into_dyn())
    }
}

impl From<Array1<i64>> for NpzArray {
    fn from(a: Array1<i64>) -> Self {
        NpzArray::I64(a.into_dyn())
    }
}

/// An `.npz` writer with fixed timestamps, so equal arrays give equal bytes.
struct Npz {
    writer: NpzWriter<std::io::Cursor<Vec<u8>>>,
}

impl Npz {
    fn new() -> Self {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default());
        Npz {
            writer: NpzWriter::new_with_options(std::io::Cursor::new(Vec::new()), options),
        }
    }

    fn add(&mut self, name: &str, a: &NpzArray) {
        match a {
            NpzArray::F64(a) => self.writer.add_array(name, a),
            NpzArray::I64(a) => self.writer.add_array(name, a),
        }
        .expect("writing to memory cannot fail");
    }

    fn finish(self, path: &Path) -> Result<()> {
        let bytes = self
            .writer
            .finish()
            .expect("writing to memory cannot fail")
            .into_inner();
        write_atomic(path, &bytes)
    }

    fn write(path: &Path, arrays: &[(String, NpzArray)]) -> Result<()> {
        let mut npz = Npz::new();
        for (name, a) in arrays {
            npz.add(name, a);
        }
        npz.finish(path)
    }
}

fn f64s(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(|v| v as f64)
}

/// The ground truth of a task, as `.npz` files hold it: `v`, `w`, `wg`, `s`.
pub fn task_arrays(task: &Task) -> Vec<(String, NpzArray)> {
    vec![
        ("v".into(), task.v.clone().into()),
        ("w".into(), task.w.clone().into()),
        ("wg".into(), task.wg.clone().into()),
        ("s".into(), Array1::from(task.s.clone()).into()),
    ]
}

/// The arrays of `model.npz`, in the file's order: the ground truth and
/// every learned array (see docs/runs-and-sweeps.md, "Output files").
pub fn model_arrays(out: &RunOutput) -> Vec<(String, NpzArray)> {
    let mut arrays = task_arrays(&out.task);
    let mut add = |name: String, a: NpzArray| arrays.push((name, a));
    match &out.models {
        Models::Staged { moe, vanilla } => {
            add("moe_u".into(), f64s(&moe.phase_one_directions).into());
            add(
                "moe_global_centre".into(),
                moe.input_map.centre.mapv(|v| v as f64).into(),
            );
            if let Some(w) = &moe.input_map.whiten {
                add(
                    "moe_whitening_bulk".into(),
                    Array1::from(vec![w.bulk as f64]).into(),
                );
                add(
                    "moe_whitening_directions".into(),
                    f64s(&w.directions).into(),
                );
                add(
                    "moe_whitening_scales".into(),
                    Array1::from_iter(w.scales.iter().map(|&v| v as f64)).into(),
                );
            }
            add(
                "moe_expert_group".into(),
                Array1::from_iter(moe.expert_group.iter().map(|g| g.map_or(-1, |g| g as i64)))
                    .into(),
            );
            add("router_theta".into(), f64s(&moe.router.theta).into());
            for (k, e) in moe.experts.iter().enumerate() {
                add(format!("expert{k}_w"), f64s(&e.w).into());
                add(
                    format!("expert{k}_centre"),
                    e.centre.mapv(|v| v as f64).into(),
                );
                add(format!("expert{k}_bias"), e.bias.mapv(|v| v as f64).into());
                add(format!("expert{k}_a"), e.a.clone().into());
                add(format!("expert{k}_a0"), Array1::from(vec![e.a0]).into());
            }
            if let Some(v) = vanilla {
                let net = &v.net;
                add("vanilla_w".into(), f64s(&net.w).into());
                add(
                    "vanilla_centre".into(),
                    net.centre.mapv(|v| v as f64).into(),
                );
                add("vanilla_bias".into(), net.bias.mapv(|v| v as f64).into());
                add("vanilla_a".into(), net.a.clone().into());
                add("vanilla_a0".into(), Array1::from(vec![net.a0]).into());
            }
        }
        Models::Joint { moe, vanilla } => {
            joint_arrays("joint_moe", moe, &mut add);
            if let Some(v) = vanilla {
                joint_arrays("joint_vanilla", v, &mut add);
            }
        }
    }
    arrays
}

/// A jointly trained model's arrays, named `{prefix}_w` (M*J x d), `_centre`,
/// `_bias`, `_a` (M*J), `_a0` (M) and `_theta` (M x d).
fn joint_arrays(
    prefix: &str,
    m: &crate::model::joint::JointModel,
    add: &mut impl FnMut(String, NpzArray),
) {
    let r = m.ranges();
    let units = m.experts * m.neurons;
    let w = Array2::from_shape_vec((units, m.d), m.params[r.w].to_vec()).expect("sized");
    add(format!("{prefix}_w"), w.into());
    add(format!("{prefix}_centre"), m.centre.clone().into());
    add(
        format!("{prefix}_bias"),
        Array1::from(m.params[r.b].to_vec()).into(),
    );
    add(
        format!("{prefix}_a"),
        Array1::from(m.params[r.a].to_vec()).into(),
    );
    add(
        format!("{prefix}_a0"),
        Array1::from(m.params[r.a0].to_vec()).into(),
    );
    let theta =
        Array2::from_shape_vec((m.experts, m.d), m.params[r.theta].to_vec()).expect("sized");
    add(format!("{prefix}_theta"), theta.into());
}

/// Writes `model.npz` at `path` (atomically, uncompressed, with fixed
/// timestamps so that equal arrays give equal bytes): the arrays of
/// [`model_arrays`].
pub fn write_model(path: &Path, out: &RunOutput) -> Result<()> {
    Npz::write(path, &model_arrays(out))
}

/// The arrays of a data set file, in the file's order: `x`, `y`, `c` and
/// the ground truth.
pub fn dataset_arrays(task: &Task, data: &Batch) -> Vec<(String, NpzArray)> {
    let mut arrays = vec![
        ("x".into(), data.x.mapv(|v| v as f64).into()),
        (
            "y".into(),
            Array1::from_iter(data.y.iter().map(|&v| v as f64)).into(),
        ),
        (
            "c".into(),
            Array1::from_iter(data.c.iter().map(|&c| c as i64)).into(),
        ),
    ];
    arrays.extend(task_arrays(task));
    arrays
}

/// Writes a data set file at `path` (as [`write_model`] writes): the
/// arrays of [`dataset_arrays`], `x`, `y`, `c` and the ground truth.
pub fn write_dataset(path: &Path, task: &Task, data: &Batch) -> Result<()> {
    Npz::write(path, &dataset_arrays(task, data))
}

/// Writes `value` as pretty-printed JSON with a final newline, atomically
/// (how `summary.json` and the sweep's `sweep.json` are written).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("summaries serialise");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}
