//! Files on disk: atomic writes, metric part files, `.npz` archives.
//!
//! Every file is written under a temporary name and renamed into place, so
//! a reader never sees half a `summary.json` or `model.npz`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use ndarray_npy::NpzWriter;
use zip::{write::SimpleFileOptions, CompressionMethod, DateTime};

use crate::error::{Error, Result};
use crate::experiment::RunOutput;
use crate::metrics::Record;
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
pub struct RecordWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file once the buffer is flushed.
    len: u64,
}

impl RecordWriter {
    pub fn create(path: PathBuf) -> Result<Self> {
        let f = File::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
        Ok(RecordWriter {
            path,
            out: BufWriter::new(f),
            len: 0,
        })
    }

    /// Reopens a part file to append after its first `len` bytes (what a
    /// checkpoint counted); records written after that checkpoint are cut.
    pub fn resume(path: PathBuf, len: u64) -> Result<Self> {
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

    pub fn write(&mut self, rec: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(rec).expect("records serialise");
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Flushes to the file and returns its length.
    pub fn flushed_len(&mut self) -> Result<u64> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        Ok(self.len)
    }

    pub fn finish(mut self) -> Result<PathBuf> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write", &self.path, e))?;
        Ok(self.path)
    }
}

/// Joins the per-model part files into `metrics` (MoE first), so the file
/// is the same whatever order the threads logged in. The parts stay (a
/// resumed run appends to them) until the run is complete.
pub fn join_metrics(metrics: &Path, parts: &[PathBuf]) -> Result<()> {
    let mut all = Vec::new();
    for p in parts {
        if p.exists() {
            all.extend(fs::read(p).map_err(|e| Error::io("cannot read", p, e))?);
        }
    }
    write_atomic(metrics, &all)
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

    fn add<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(
        &mut self,
        name: &str,
        a: &ndarray::Array<A, D>,
    ) {
        self.writer
            .add_array(name, a)
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

    fn add_task(&mut self, task: &Task) {
        self.add("v", &task.v);
        self.add("w", &task.w);
        self.add("wg", &task.wg);
        self.add("s", &Array1::from(task.s.clone()));
    }
}

fn f64s(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(|v| v as f64)
}

/// Writes `model.npz`: the ground truth and every learned array.
pub fn write_model(path: &Path, out: &RunOutput) -> Result<()> {
    let mut npz = Npz::new();
    npz.add_task(&out.task);
    if let Some(moe) = &out.moe {
        npz.add("moe_u", &f64s(&moe.phase_one_directions));
        npz.add(
            "moe_global_centre",
            &moe.input_map.centre.mapv(|v| v as f64),
        );
        if let Some(w) = &moe.input_map.whiten {
            npz.add("moe_whitening", &f64s(w));
        }
        npz.add(
            "moe_expert_group",
            &Array1::from_iter(moe.expert_group.iter().map(|g| g.map_or(-1, |g| g as i64))),
        );
        npz.add("router_theta", &f64s(&moe.router.theta));
        for (k, e) in moe.experts.iter().enumerate() {
            npz.add(&format!("expert{k}_w"), &f64s(&e.w));
            npz.add(&format!("expert{k}_centre"), &e.centre.mapv(|v| v as f64));
            npz.add(&format!("expert{k}_bias"), &e.bias.mapv(|v| v as f64));
            npz.add(&format!("expert{k}_a"), &e.a);
            npz.add(&format!("expert{k}_a0"), &Array1::from(vec![e.a0]));
        }
    }
    if let Some(joint) = &out.joint {
        add_joint(&mut npz, "joint_moe", &joint.moe);
        if let Some(v) = &joint.vanilla {
            add_joint(&mut npz, "joint_vanilla", v);
        }
    }
    if let Some(v) = &out.vanilla {
        let net = &v.net;
        npz.add("vanilla_w", &f64s(&net.w));
        npz.add("vanilla_centre", &net.centre.mapv(|v| v as f64));
        npz.add("vanilla_bias", &net.bias.mapv(|v| v as f64));
        npz.add("vanilla_a", &net.a);
        npz.add("vanilla_a0", &Array1::from(vec![net.a0]));
    }
    npz.finish(path)
}

/// A jointly trained model's arrays, named `{prefix}_w` (M*J x d),
/// `_centre`, `_bias`, `_a` (M*J), `_a0` (M) and `_theta` (M x d).
fn add_joint(npz: &mut Npz, prefix: &str, m: &crate::model::joint::JointModel) {
    let r = m.ranges();
    let units = m.experts * m.neurons;
    let w = Array2::from_shape_vec((units, m.d), m.params[r.w].to_vec()).expect("sized");
    npz.add(&format!("{prefix}_w"), &w);
    npz.add(&format!("{prefix}_centre"), &m.centre);
    npz.add(
        &format!("{prefix}_bias"),
        &Array1::from(m.params[r.b].to_vec()),
    );
    npz.add(
        &format!("{prefix}_a"),
        &Array1::from(m.params[r.a].to_vec()),
    );
    npz.add(
        &format!("{prefix}_a0"),
        &Array1::from(m.params[r.a0].to_vec()),
    );
    let theta =
        Array2::from_shape_vec((m.experts, m.d), m.params[r.theta].to_vec()).expect("sized");
    npz.add(&format!("{prefix}_theta"), &theta);
}

/// Writes a data set: `x`, `y`, `c` and the ground truth.
pub fn write_dataset(path: &Path, task: &Task, data: &Batch) -> Result<()> {
    let mut npz = Npz::new();
    npz.add("x", &data.x.mapv(|v| v as f64));
    npz.add("y", &Array1::from_iter(data.y.iter().map(|&v| v as f64)));
    npz.add("c", &Array1::from_iter(data.c.iter().map(|&c| c as i64)));
    npz.add_task(task);
    npz.finish(path)
}

/// Writes `summary.json` (pretty, atomically).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("summaries serialise");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}
