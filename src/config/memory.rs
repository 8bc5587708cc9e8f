//! Memory known before it is needed: the peak memory a run will use,
//! estimated from its checked configuration ([`estimate`]), the memory this
//! process may use ([`available`]: physical memory, the address-space and
//! data limits, the cgroup's limit, `CLUSTERMOE_MEMORY_LIMIT`), and the
//! check that refuses a run that does not fit before it trains or writes
//! anything ([`check`], [`crate::Error::Memory`]).
//!
//! The estimate counts what a run allocates at once: the test set (alive
//! from the start to the end), and for each of the two models, which train
//! side by side, the largest of its phases: phase I's centre samples (in
//! f32, their f64 copy and, when whitening, the centred f64 copy; the
//! whitening itself is low rank, O(k d)), the routing probe, the training
//! batches, and the readout's chunk of samples, its features (f64) and its
//! Gram matrices. It counts no d x d matrix. It does not depend on the
//! number of threads, so `summary.json` records the same value whatever the
//! thread count; the address-space check adds the threads' stacks and
//! allocator arenas ([`virtual_overhead`]).
//!
//! ```
//! let valid = clustermoe::Config::default().check()?;
//! let estimate = clustermoe::memory::estimate(&valid);
//! assert!(estimate.peak_bytes > 20 << 20 && estimate.peak_bytes < 200 << 20);
//! # Ok::<(), clustermoe::Error>(())
//! ```

use super::{Training, ValidConfig};
use crate::budget::bytes;
use crate::error::{Error, Result};
use crate::model::gate::{Gate, GateRule};

/// The environment variable that caps the memory a run may use, in bytes
/// (as a cgroup limit would): refusals can be tried without a small machine.
pub const LIMIT_VARIABLE: &str = "CLUSTERMOE_MEMORY_LIMIT";

/// Rows of the readout's and the prediction's chunks of samples (the
/// readout's `CHUNK`, the prediction's `PREDICT_CHUNK`, phase III's
/// centres' chunk).
const CHUNK: u64 = 4096;
/// The most eigen-directions the low-rank whitening keeps.
const WHITENING_RANK: u64 = 64;
/// What any run holds whatever its size: the binary, its libraries, the
/// allocator's and the thread pool's own memory (measured: 37 MiB for the
/// default run at d = 32, whose counted parts are about 20 MiB).
const BASE_BYTES: u64 = 24 << 20;
/// Address space a run reserves beyond what it touches: the binary's and
/// libraries' mappings and the main allocator arena, then per thread its
/// stack, the matrix products' 64 MiB workspace and a share of an allocator
/// arena (measured: `VmPeak` exceeds the peak resident size by 190 MiB with
/// 1 thread and 310 MiB with 2; under `ulimit -v` a 64 MiB workspace that
/// does not fit aborts the run, an arena that does not fit is not created).
const VIRTUAL_BASE_BYTES: u64 = 128 << 20;
const VIRTUAL_PER_THREAD_BYTES: u64 = 96 << 20;

const F32: u64 = 4;
const F64: u64 = 8;

/// One part of the estimate: what it holds and the fields that size it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPart {
    /// What the memory holds (`"test set"`, `"MoE phase I centre samples"`).
    pub what: String,
    /// The configuration fields that make it smaller.
    pub fields: &'static str,
    /// Its bytes.
    pub bytes: u64,
}

/// A run's estimated peak memory and its parts (largest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The estimated peak resident memory of the run, in bytes.
    pub peak_bytes: u64,
    /// The parts that add up to it, largest first.
    pub parts: Vec<MemoryPart>,
}

/// Samples of `d` inputs in f32 with their labels (f32) and clusters (usize).
fn batch_bytes(n: u64, d: u64) -> u64 {
    n * (d * F32 + F32 + 8)
}

/// A model's phases, each a list of parts alive together; the model's
/// peak is its largest phase.
type Phases = Vec<Vec<MemoryPart>>;

fn part(what: impl Into<String>, fields: &'static str, bytes: u64) -> MemoryPart {
    MemoryPart {
        what: what.into(),
        fields,
        bytes,
    }
}

/// The readout of a model with `features` readout neurons in `blocks`
/// ridge systems (one per expert with a hard gate), and its prediction:
/// the networks' first layers, a chunk of samples and its selected rows,
/// each network's buffers (centred inputs, pre-activations in f32,
/// features in f64), the Gram matrices with faer's copy and factor.
fn readout_phase(model: &str, d: u64, features: u64, blocks: u64, soft: bool) -> Vec<MemoryPart> {
    let blocks = blocks.max(1);
    let per_block = features / blocks + 1;
    let gram = blocks * per_block * per_block * F64 * 3;
    let gated = if soft { CHUNK * features * F64 } else { 0 };
    vec![
        part(
            format!("{model} readout networks"),
            "readout.biases, task.d",
            features * (d * F32 + F32 + F64),
        ),
        part(
            format!("{model} readout chunk"),
            "task.d",
            batch_bytes(CHUNK, d) + 2 * CHUNK * d * F32,
        ),
        part(
            format!("{model} readout features"),
            "readout.biases",
            CHUNK * features * (F32 + F64) + gated + gram,
        ),
    ]
}

/// Centre samples drawn at once (f32, centred in place) and, when
/// whitening, the subspace iteration's block (`model::whitening`): its
/// directions in f64 and f32, the block's products with the samples, the
/// Ritz vectors; up to d = 2 x 32 the samples in f64 and the covariance.
fn centre_part(what: String, fields: &'static str, n: u64, d: u64, whiten: bool) -> MemoryPart {
    let whitening = match whiten {
        false => 0,
        true if d <= 64 => n * d * F64 + 3 * d * d * F64,
        true => WHITENING_RANK * (d * (4 * F64 + 2 * F32) + n * F32),
    };
    part(what, fields, n * d * F32 + whitening)
}

/// The staged MoE's phases.
fn staged_moe(cfg: &ValidConfig, d: u64) -> Phases {
    let m = cfg.experts() as u64;
    let neurons = cfg.moe.neurons as u64;
    let p1 = &cfg.phase_one;
    let probe = part(
        "MoE routing probe",
        "metrics.probe_samples",
        batch_bytes(cfg.metrics.probe_samples as u64, d),
    );
    let directions = part(
        "MoE directions",
        "moe.experts, moe.neurons",
        4 * m * neurons * d * F32,
    );
    let phase_one = vec![
        probe.clone(),
        centre_part(
            "MoE phase I centre samples".into(),
            "phase_one.centre_samples",
            p1.centre_samples as u64,
            d,
            cfg.moe.whiten,
        ),
        part(
            "MoE phase I batches",
            "phase_one.batch",
            2 * batch_bytes(p1.batch.max(cfg.phase_two.batch) as u64, d),
        ),
        directions.clone(),
    ];
    let phase_three = vec![
        probe.clone(),
        part(
            "MoE phase III chunk",
            "phase_three.batch",
            batch_bytes(CHUNK.max(cfg.phase_three.batch as u64), d) * 2,
        ),
        directions.clone(),
    ];
    let features = m * neurons * cfg.readout.moe.biases as u64;
    let soft = !matches!(cfg.moe.gate, Gate::Top1 | Gate::NoisyTop1);
    let blocks = if soft { 1 } else { cfg.task.clusters as u64 };
    let mut readout = readout_phase("MoE", d, features, blocks, soft);
    readout.push(probe);
    vec![phase_one, phase_three, readout]
}

/// The vanilla network's phases (none when it is not trained).
fn staged_vanilla(cfg: &ValidConfig, d: u64) -> Phases {
    let Some(v) = cfg.vanilla() else {
        return Vec::new();
    };
    let neurons = cfg.vanilla_neurons as u64;
    let training = vec![
        centre_part(
            "vanilla centre samples".into(),
            "vanilla.centre_samples",
            v.centre_samples as u64,
            d,
            false,
        ),
        part(
            "vanilla batches and neurons",
            "vanilla.batch, vanilla.neurons",
            2 * batch_bytes(v.batch as u64, d) + 4 * neurons * d * F32,
        ),
    ];
    let features = neurons * cfg.readout.vanilla.biases as u64;
    vec![training, readout_phase("vanilla", d, features, 1, false)]
}

/// A jointly trained model (`neurons` in all over `experts` experts):
/// its centre samples, its probe, its parameters with gradient and
/// optimiser moments, its batch's pass.
fn joint_model(cfg: &ValidConfig, model: &str, d: u64, experts: u64, neurons: u64) -> Phases {
    let p = &cfg.joint;
    let params = neurons * (d + 2) + experts * (d + 1);
    vec![vec![
        centre_part(
            format!("{model} centre samples"),
            "joint.centre_samples",
            p.centre_samples as u64,
            d,
            false,
        ),
        part(
            format!("{model} probe"),
            "metrics.probe_samples",
            batch_bytes(cfg.metrics.probe_samples as u64, d),
        ),
        part(
            format!("{model} parameters"),
            "moe.experts, moe.neurons",
            params * F32 * 6,
        ),
        part(
            format!("{model} batch"),
            "joint.batch",
            2 * batch_bytes(p.batch as u64, d) + p.batch as u64 * (neurons + experts) * F32 * 4,
        ),
    ]]
}

/// The largest phase's parts.
fn peak_phase(phases: Phases) -> Vec<MemoryPart> {
    phases
        .into_iter()
        .max_by_key(|p| p.iter().map(|x| x.bytes).sum::<u64>())
        .unwrap_or_default()
}

/// The evaluation of a jointly trained model of `experts` experts with
/// `neurons` neurons each on the test set, in one forward pass in f64: the
/// inputs' f64 and centred copies, each kept pair's input (unless every
/// sample keeps every expert), activations and slopes, the gates.
fn joint_evaluation(
    cfg: &ValidConfig,
    model: &str,
    experts: u64,
    neurons: u64,
    rule: &GateRule,
) -> Vec<MemoryPart> {
    let (n, d) = (cfg.metrics.test_samples as u64, cfg.task.d as u64);
    let (dense, kept) = match rule.kind {
        Gate::Softmax => (true, experts),
        Gate::TopK | Gate::NoisyTopK => (rule.k as u64 >= experts, (rule.k as u64).min(experts)),
        Gate::Top1 | Gate::NoisyTop1 => (experts == 1, 1),
    };
    let gathered = if dense { 0 } else { n * kept * d * F64 };
    vec![part(
        format!("{model} evaluation pass"),
        "metrics.test_samples",
        n * d * 2 * F64 + gathered + n * kept * neurons * 3 * F64 + n * experts * 6 * F64,
    )]
}

/// The parts alive at the peak of training (both models side by side)
/// and, for joint training, of the evaluation (one model after the other).
fn model_parts(cfg: &ValidConfig, d: u64) -> Vec<MemoryPart> {
    let sum = |parts: &[MemoryPart]| parts.iter().map(|p| p.bytes).sum::<u64>();
    match cfg.training {
        Training::Staged => {
            let mut parts = peak_phase(staged_moe(cfg, d));
            parts.extend(peak_phase(staged_vanilla(cfg, d)));
            parts
        }
        Training::Joint => {
            let m = cfg.experts() as u64;
            let neurons = cfg.moe.neurons as u64;
            let vanilla = cfg
                .vanilla()
                .is_some()
                .then_some(cfg.vanilla_neurons as u64);
            let mut training = peak_phase(joint_model(cfg, "MoE", d, m, m * neurons));
            let mut evaluation = vec![joint_evaluation(
                cfg,
                "MoE",
                m,
                neurons,
                &cfg.joint.loss.gate,
            )];
            if let Some(v) = vanilla {
                training.extend(peak_phase(joint_model(cfg, "vanilla", d, 1, v)));
                let rule = cfg.joint.vanilla_loss().gate;
                evaluation.push(joint_evaluation(cfg, "vanilla", 1, v, &rule));
            }
            let evaluation = peak_phase(evaluation);
            if sum(&evaluation) > sum(&training) {
                evaluation
            } else {
                training
            }
        }
    }
}

/// The estimated peak memory of a run of `cfg`: the test set, and the two
/// models' largest phases at once (they train side by side), or the
/// evaluation of a jointly trained model where that is larger.
pub fn estimate(cfg: &ValidConfig) -> MemoryEstimate {
    let d = cfg.task.d as u64;
    let mut parts = vec![
        part("base", "", BASE_BYTES),
        part(
            "test set",
            "metrics.test_samples",
            batch_bytes(cfg.metrics.test_samples as u64, d)
                + cfg.metrics.test_samples as u64 * 2 * F64,
        ),
        part(
            "task",
            "task.clusters",
            4 * (cfg.task.clusters as u64 + 1) * d * F64,
        ),
    ];
    parts.extend(model_parts(cfg, d));
    parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    MemoryEstimate {
        peak_bytes: parts.iter().map(|p| p.bytes).sum(),
        parts,
    }
}

/// Address space a run with `threads` threads reserves beyond its resident
/// memory (stacks, mappings, allocator arenas), which an address-space or
/// data limit counts.
pub fn virtual_overhead(threads: usize) -> u64 {
    VIRTUAL_BASE_BYTES + threads as u64 * VIRTUAL_PER_THREAD_BYTES
}

/// Where a memory limit comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// The machine's physical memory (`MemTotal` of `/proc/meminfo`).
    Physical,
    /// A cgroup's limit (a batch scheduler's allocation, a container):
    /// the file that states it.
    Cgroup(String),
    /// The address-space limit (`ulimit -v`, `RLIMIT_AS`).
    AddressSpace,
    /// The data-segment limit (`ulimit -d`, `RLIMIT_DATA`).
    Data,
    /// The environment variable [`LIMIT_VARIABLE`].
    Environment,
}

impl LimitSource {
    /// Whether the limit counts address space rather than resident memory.
    pub fn counts_address_space(&self) -> bool {
        matches!(self, LimitSource::AddressSpace | LimitSource::Data)
    }
}

impl std::fmt::Display for LimitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitSource::Physical => write!(f, "physical memory (MemTotal in /proc/meminfo)"),
            LimitSource::Cgroup(file) => write!(f, "cgroup memory limit ({file})"),
            LimitSource::AddressSpace => write!(f, "address-space limit (ulimit -v, RLIMIT_AS)"),
            LimitSource::Data => write!(f, "data-segment limit (ulimit -d, RLIMIT_DATA)"),
            LimitSource::Environment => write!(f, "limit set by {LIMIT_VARIABLE}"),
        }
    }
}

/// A limit on the memory this process may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Its bytes.
    pub bytes: u64,
    /// Where it comes from.
    pub source: LimitSource,
}

/// Every limit on this process's memory that can be read (none where the
/// platform says nothing: no refusal there); an unparsable
/// [`LIMIT_VARIABLE`] is an error.
pub fn available() -> Result<Vec<MemoryLimit>> {
    let mut limits = platform::limits();
    if let Ok(text) = std::env::var(LIMIT_VARIABLE) {
        let bytes = text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| Error::invalid(LIMIT_VARIABLE, &text, "a positive number of bytes"))?;
        limits.push(MemoryLimit {
            bytes,
            source: LimitSource::Environment,
        });
    }
    Ok(limits)
}

/// Refuses a run of `cfg` with `threads` threads whose estimated peak does
/// not fit a limit of [`available`] ([`Error::Memory`], exit status 2);
/// returns the estimate otherwise.
pub fn check(cfg: &ValidConfig, threads: usize) -> Result<MemoryEstimate> {
    let estimate = estimate(cfg);
    let overhead = virtual_overhead(threads);
    // What each limit leaves for the resident memory the estimate counts.
    let leaves = |limit: &MemoryLimit| {
        if limit.source.counts_address_space() {
            limit.bytes.saturating_sub(overhead)
        } else {
            limit.bytes
        }
    };
    let tightest = available()?
        .into_iter()
        .filter(|limit| estimate.peak_bytes > leaves(limit))
        .min_by_key(leaves);
    let Some(limit) = tightest else {
        return Ok(estimate);
    };
    let largest: Vec<String> = estimate
        .parts
        .iter()
        .filter(|p| !p.fields.is_empty())
        .take(3)
        .map(|p| format!("{} {} ({})", p.what, bytes(p.bytes), p.fields))
        .collect();
    let overhead = if limit.source.counts_address_space() {
        format!(
            " plus {} of address space for {threads} threads' stacks and matrix-product workspaces (fewer threads need less)",
            bytes(overhead)
        )
    } else {
        String::new()
    };
    Err(Error::Memory {
        needed: estimate.peak_bytes,
        limit: limit.bytes,
        message: format!(
            "a run of task.d = {} needs an estimated {} of memory at its peak{overhead}, more than the {} of the {}; its largest parts: {}; lower those fields or task.d, or run where more memory is available",
            cfg.task.d,
            bytes(estimate.peak_bytes),
            bytes(limit.bytes),
            limit.source,
            largest.join(", "),
        ),
    })
}

#[cfg(unix)]
mod platform {
    use super::{LimitSource, MemoryLimit};

    /// Physical memory, the resource limits and the cgroup's limit.
    pub(super) fn limits() -> Vec<MemoryLimit> {
        let mut limits = Vec::new();
        if let Some(bytes) = mem_total() {
            limits.push(MemoryLimit {
                bytes,
                source: LimitSource::Physical,
            });
        }
        for (resource, source) in [
            (libc::RLIMIT_AS, LimitSource::AddressSpace),
            (libc::RLIMIT_DATA, LimitSource::Data),
        ] {
            if let Some(bytes) = rlimit(resource) {
                limits.push(MemoryLimit { bytes, source });
            }
        }
        if let Some((bytes, file)) = cgroup_limit() {
            limits.push(MemoryLimit {
                bytes,
                source: LimitSource::Cgroup(file),
            });
        }
        limits
    }

    /// `MemTotal` of `/proc/meminfo` in bytes (Linux).
    fn mem_total() -> Option<u64> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The type of getrlimit's resource argument, which differs by C library.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    type Resource = libc::__rlimit_resource_t;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    type Resource = libc::c_int;

    /// The soft limit of `resource`, None when unlimited.
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on some platforms only
    fn rlimit(resource: Resource) -> Option<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
        (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
    }

    /// The smallest memory limit of this process's cgroup and its
    /// ancestors (cgroup v2's `memory.max`, v1's `memory.limit_in_bytes`),
    /// with the file that states it.
    fn cgroup_limit() -> Option<(u64, String)> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mut best: Option<(u64, String)> = None;
        for line in membership.lines() {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let (root, file) = match controllers {
                "" => ("/sys/fs/cgroup", "memory.max"),
                c if c.split(',').any(|c| c == "memory") => {
                    ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
                }
                _ => continue,
            };
            let mut dir = std::path::PathBuf::from(format!("{root}{path}"));
            loop {
                let at = dir.join(file);
                let value = std::fs::read_to_string(&at).ok();
                // "max" (v2) or a huge number (v1): no limit.
                if let Some(bytes) = value.and_then(|v| v.trim().parse::<u64>().ok()) {
                    if bytes < 1 << 60 && best.as_ref().is_none_or(|(b, _)| bytes < *b) {
                        best = Some((bytes, at.display().to_string()));
                    }
                }
                if dir.as_os_str().len() <= root.len() || !dir.pop() {
                    break;
                }
            }
        }
        best
    }
}

#[cfg(not(unix))]
mod platform {
    /// Physical memory unknown here: no refusal.
    pub(super) fn limits() -> Vec<super::MemoryLimit> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The default configuration at dimension `d`, with fixed phase
    /// lengths and rates (the laws' at large d are beyond any step count).
    fn config(d: usize) -> Config {
        let mut c = Config::default();
        c.task.d = d;
        c.phase_one.steps = 1000.into();
        c.phase_one.lr = 0.001.into();
        c.phase_three.steps = 1000.into();
        c.phase_three.lr = 0.001.into();
        c.phase_three.lr_end = 0.0001.into();
        c.vanilla.lr = 0.001.into();
        c.vanilla.lr_end = 0.0001.into();
        c
    }

    fn at(d: usize) -> MemoryEstimate {
        estimate(&config(d).check().unwrap())
    }

    #[test]
    fn the_default_run_needs_tens_of_megabytes() {
        let e = at(32);
        assert!(e.peak_bytes > 30 << 20 && e.peak_bytes < 80 << 20, "{e:?}");
        assert_eq!(e.peak_bytes, e.parts.iter().map(|p| p.bytes).sum::<u64>());
    }

    #[test]
    fn the_part_proportional_to_d_doubles_with_d() {
        // Nothing grows like d^2 (the whitening is low rank): at large d the
        // estimate is linear in d.
        let (a, b, c) = (at(4096), at(8192), at(16384));
        let (slope_ab, slope_bc) = (b.peak_bytes - a.peak_bytes, c.peak_bytes - b.peak_bytes);
        let ratio = slope_bc as f64 / slope_ab as f64;
        assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
        assert!(c.peak_bytes as f64 / b.peak_bytes as f64 > 1.9);
        // At d = 65536 the test set (20000 samples in f32) leads; phase I's
        // 4096 centre samples are centred in place (f32, 1 GiB) beside the
        // whitening's block of 64 directions.
        let big = at(65536);
        assert_eq!(big.parts[0].what, "test set");
        assert!(big.parts[0].bytes > 5_000_000_000);
        let centre = centre_part("centre".into(), "", 4096, 65536, true);
        assert!(centre.bytes < 1_300_000_000, "{}", centre.bytes);
    }

    #[test]
    fn more_readout_features_and_more_experts_need_more() {
        let base = at(256).peak_bytes;
        let mut c = config(256);
        c.moe.experts = 32.into();
        assert!(estimate(&c.check().unwrap()).peak_bytes > base);
        let mut c = config(256);
        c.readout.biases = 16.into();
        assert!(estimate(&c.check().unwrap()).peak_bytes > base);
    }

    #[test]
    fn bytes_are_written_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }
}
