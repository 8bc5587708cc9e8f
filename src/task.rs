//! The clustered single-index task (docs/algorithm.md): cluster centres, local and
//! global directions, links, and a sampler of minibatches.

use ndarray::{Array1, Array2};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::config::{Geometry, ValidConfig};
use crate::numerics::kernels::{vectorised, Vectorised};
use crate::numerics::linalg::dot;
use crate::numerics::link::{FastLink, Link};
use crate::numerics::normal;
use crate::numerics::rng::{Stream, LANES};

/// Ground truth of one task instance.
#[derive(Clone, Debug)]
pub struct Task {
    /// Input dimension d.
    pub d: usize,
    /// Distance scale of the cluster centres: x = rho v_c + z.
    pub rho: f64,
    /// Standard deviation zeta of the label noise.
    pub noise: f64,
    /// Cluster centres v_c, one per row (C x d).
    pub v: Array2<f64>,
    /// Local directions w*_c (C x d).
    pub w: Array2<f64>,
    /// Global direction w*_g.
    pub wg: Array1<f64>,
    /// Cluster coefficients s_c of the global task.
    pub s: Vec<f64>,
    /// The local link f*_c of each cluster.
    pub local_links: Vec<Link>,
    /// The global link g*.
    pub global_link: Link,
    /// f32 copies for the sampler's hot loop: the centres, and the rows
    /// w*_1..w*_C, w*_g stacked.
    v32: Array2<f32>,
    directions32: Array2<f32>,
    local_fast: Vec<FastLink>,
    global_fast: FastLink,
    /// Whether every cluster has the same local link.
    one_local_link: bool,
}

/// A minibatch: inputs (rows), labels and cluster indices.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Inputs, one per row (n x d).
    pub x: Array2<f32>,
    /// Labels y.
    pub y: Vec<f32>,
    /// Cluster of each sample (0-based).
    pub c: Vec<usize>,
    scratch: LabelScratch,
}

/// The sampler's buffers for the labels of a batch, per sample: the
/// projections on w*_c and w*_g, in f32 and f64, and the links' values.
#[derive(Clone, Debug, Default)]
struct LabelScratch {
    local: Vec<f32>,
    global: Vec<f32>,
    local_t: Vec<f64>,
    global_t: Vec<f64>,
    local_f: Vec<f64>,
    global_f: Vec<f64>,
    /// The random words of the clusters and label noise.
    words: Vec<u64>,
}

impl LabelScratch {
    fn resize(&mut self, n: usize) {
        self.local.resize(n, 0.0);
        self.global.resize(n, 0.0);
        for v in [
            &mut self.local_t,
            &mut self.global_t,
            &mut self.local_f,
            &mut self.global_f,
        ] {
            v.resize(n, 0.0);
        }
    }
}

impl Batch {
    /// `n` samples of dimension `d`, all zero: a buffer to sample into.
    pub fn new(n: usize, d: usize) -> Self {
        Batch {
            x: Array2::zeros((n, d)),
            y: vec![0.0; n],
            c: vec![0; n],
            scratch: LabelScratch::default(),
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

fn unit_gaussian_rows(rows: usize, d: usize, rng: &mut Stream) -> Array2<f64> {
    let mut m = Array2::<f64>::from_shape_simple_fn((rows, d), || rng.sample(StandardNormal));
    for mut row in m.rows_mut() {
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
    m
}

/// Gram–Schmidt on Gaussian rows: the first rows of a Haar-random rotation.
fn orthonormal_rows(rows: usize, d: usize, rng: &mut Stream) -> Array2<f64> {
    let mut m = unit_gaussian_rows(rows, d, rng);
    for i in 0..rows {
        for _ in 0..2 {
            // Two passes keep the rows orthogonal to machine precision.
            for j in 0..i {
                let proj = m.row(i).dot(&m.row(j));
                let rj = m.row(j).to_owned();
                m.row_mut(i).scaled_add(-proj, &rj);
            }
        }
        let norm = m.row(i).dot(&m.row(i)).sqrt();
        m.row_mut(i).mapv_inplace(|a| a / norm);
    }
    m
}

impl Task {
    /// Draws the directions of a task from `rng`.
    pub fn new(config: &ValidConfig, rng: &mut Stream) -> Self {
        let (c, d) = (config.task.clusters, config.task.d);
        let dirs = match config.task.geometry {
            Geometry::Orthonormal => orthonormal_rows(2 * c + 1, d, rng),
            Geometry::Random => unit_gaussian_rows(2 * c + 1, d, rng),
        };
        let v = dirs.slice(ndarray::s![0..c, ..]).to_owned();
        let w = dirs.slice(ndarray::s![c..2 * c, ..]).to_owned();
        let wg = dirs.row(2 * c).to_owned();
        Task {
            d,
            rho: config.task.rho,
            noise: config.task.noise,
            v32: v.mapv(|a| a as f32),
            directions32: dirs.slice(ndarray::s![c..2 * c + 1, ..]).mapv(|a| a as f32),
            v,
            w,
            wg,
            s: config.task.signs.clone(),
            local_fast: config.task.local_links.iter().map(Link::fast).collect(),
            one_local_link: config.task.local_links.windows(2).all(|w| w[0] == w[1]),
            global_fast: config.task.global_link.fast(),
            local_links: config.task.local_links.clone(),
            global_link: config.task.global_link.clone(),
        }
    }

    /// The number of clusters C.
    pub fn clusters(&self) -> usize {
        self.v.nrows()
    }

    /// The noiseless target of cluster `c` given the projections
    /// `<w*_c, x>` (`local`) and `<w*_g, x>` (`global`).
    pub fn target(&self, c: usize, local: f64, global: f64) -> f64 {
        self.local_fast[c].eval(local) + self.s[c] * self.global_fast.eval(global)
    }

    /// Fills `batch` with fresh samples: c ~ U{1..C}, x = rho v_c + z, y = f*_c + s_c g* + zeta eps.
    ///
    /// The stream, lane by lane: first the batch's n x d Gaussians
    /// (`normal::fill`, row by row); then each lane draws ceil(n / 8) words
    /// (`Stream::fill_words`) and sample i takes word i / 8 of lane i % 8,
    /// w: its cluster is (low 32 bits of w) C / 2^32 rounded down (a bias of
    /// at most C / 2^32), its label noise the ziggurat normal of the high 32
    /// bits; a normal the fast path rejects takes its rejection steps from
    /// lane i % 8, in the order of i, after all the words are drawn.
    ///
    /// Only plain arithmetic in a fixed order (`linalg::dot`; the vectorised
    /// paths do the same operations), no CPU-dependent kernels, so a seed
    /// gives the same samples on every machine.
    pub fn sample_into(&self, batch: &mut Batch, rng: &mut Stream) {
        self.sample_centred_into(batch, rng, None);
    }

    /// [`Task::sample_into`], then `x - centre` for each input (the labels
    /// are those of the uncentred inputs): the same numbers as centring
    /// afterwards, without another pass over the batch.
    pub fn sample_centred_into(&self, batch: &mut Batch, rng: &mut Stream, centre: Option<&[f32]>) {
        let Batch { x, y, c, scratch } = batch;
        let clusters = self.clusters();
        // One tight loop over all the Gaussians first: it is the hot spot.
        let x = x.as_slice_mut().expect("batch rows are contiguous");
        normal::fill(rng, x);
        // Then each sample's cluster and label noise: one word each, from
        // all lanes at once (see `sample_into`).
        let n = c.len();
        scratch.resize(n);
        let words = &mut scratch.words;
        words.resize(n.div_ceil(LANES) * LANES, 0);
        rng.fill_words(words);
        for (i, ((ci, eps), &w)) in c.iter_mut().zip(y.iter_mut()).zip(words.iter()).enumerate() {
            *ci = (((w & 0xffff_ffff) * clusters as u64) >> 32) as usize;
            *eps = normal::from_lane_bits((w >> 32) as u32, rng, i % LANES);
        }
        vectorised(ShiftAndProject {
            x,
            d: self.d,
            clusters: c,
            rho: self.rho as f32,
            centres: self.v32.as_slice().expect("contiguous"),
            directions: self.directions32.as_slice().expect("contiguous"),
            centre,
            local: &mut scratch.local,
            global: &mut scratch.global,
        });
        // The links at every sample's projections, the loop over samples
        // innermost.
        let s = scratch;
        for (t, &v) in s.local_t.iter_mut().zip(&s.local) {
            *t = v as f64;
        }
        for (t, &v) in s.global_t.iter_mut().zip(&s.global) {
            *t = v as f64;
        }
        if self.one_local_link {
            self.local_fast[0].eval_into(&s.local_t, &mut s.local_f);
        } else {
            for ((f, &t), &ci) in s.local_f.iter_mut().zip(&s.local_t).zip(c.iter()) {
                *f = self.local_fast[ci].eval(t);
            }
        }
        self.global_fast.eval_into(&s.global_t, &mut s.global_f);
        // `y` holds each sample's noise until here.
        for (i, (y, &ci)) in y.iter_mut().zip(c.iter()).enumerate() {
            let target = s.local_f[i] + self.s[ci] * s.global_f[i];
            *y = (target + self.noise * *y as f64) as f32;
        }
    }

    /// A fresh batch of `n` samples.
    pub fn sample(&self, n: usize, rng: &mut Stream) -> Batch {
        let mut batch = Batch::new(n, self.d);
        self.sample_into(&mut batch, rng);
        batch
    }

    /// Draws `n` samples in chunks and hands each chunk to `f`, so memory
    /// stays bounded whatever `n`.
    pub fn for_each_chunk(
        &self,
        n: usize,
        chunk: usize,
        rng: &mut Stream,
        mut f: impl FnMut(&Batch),
    ) {
        let mut batch = Batch::new(chunk.min(n).max(1), self.d);
        let mut left = n;
        while left > 0 {
            let take = left.min(chunk);
            if take != batch.len() {
                batch = Batch::new(take, self.d);
            }
            self.sample_into(&mut batch, rng);
            f(&batch);
            left -= take;
        }
    }
}

/// Each input row moves to its cluster (`x += rho v_c`), gives its
/// projections on w*_c and w*_g (the last row of `directions`), and then,
/// with a `centre`, is centred: a loop that [`vectorised`] compiles for
/// each instruction set, with the same operations (so the same bits) on
/// each.
pub(crate) struct ShiftAndProject<'a> {
    /// The inputs, row-major, rows of `d`.
    pub x: &'a mut [f32],
    /// The dimension.
    pub d: usize,
    /// Each row's cluster.
    pub clusters: &'a [usize],
    /// The scale of the shift: a row moves by rho v_c.
    pub rho: f32,
    /// The cluster centres v_c, row-major.
    pub centres: &'a [f32],
    /// The rows w*_1..w*_C, w*_g, row-major.
    pub directions: &'a [f32],
    /// The centre subtracted from every row, if any.
    pub centre: Option<&'a [f32]>,
    /// Out: each row's projection on its cluster's w*_c.
    pub local: &'a mut [f32],
    /// Out: each row's projection on w*_g.
    pub global: &'a mut [f32],
}

impl Vectorised for ShiftAndProject<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let ShiftAndProject {
            x,
            d,
            clusters,
            rho,
            centres,
            directions,
            centre,
            local,
            global,
        } = self;
        let wg = &directions[directions.len() - d..];
        for (i, row) in x.chunks_exact_mut(d).enumerate() {
            let c = clusters[i];
            let v = &centres[c * d..(c + 1) * d];
            for (xj, &vj) in row.iter_mut().zip(v) {
                *xj += rho * vj;
            }
            local[i] = dot(&directions[c * d..(c + 1) * d], row);
            global[i] = dot(wg, row);
            if let Some(mu) = centre {
                for (xj, &m) in row.iter_mut().zip(mu) {
                    *xj -= m;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::numerics::rng::{stream, StreamId};
    use ndarray::Axis;

    fn task(config: Config) -> Task {
        let valid = config.check().unwrap();
        Task::new(&valid, &mut stream(valid.seed, StreamId::Task))
    }

    #[test]
    fn orthonormal_directions_are_orthonormal() {
        let mut config = Config::default();
        config.task.clusters = 3;
        config.task.d = 12;
        let t = task(config);
        let mut all = t.v.clone();
        all.append(Axis(0), t.w.view()).unwrap();
        all.push_row(t.wg.view()).unwrap();
        let gram = all.dot(&all.t());
        for i in 0..7 {
            for j in 0..7 {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (gram[[i, j]] - expected).abs() < 1e-12,
                    "gram[{i},{j}] = {}",
                    gram[[i, j]]
                );
            }
        }
    }

    #[test]
    fn random_directions_are_unit_with_small_overlaps() {
        let mut config = Config::default();
        config.task.geometry = Geometry::Random;
        config.task.d = 400;
        let t = task(config);
        assert!((t.wg.dot(&t.wg) - 1.0).abs() < 1e-12);
        // Overlaps of independent uniform unit vectors are ~ N(0, 1/d): 5 sigma = 0.25.
        assert!(t.w.row(0).dot(&t.w.row(1)).abs() < 0.25);
        assert!(t.v.row(0).dot(&t.wg).abs() < 0.25);
    }

    #[test]
    fn samples_follow_the_law_of_the_task() {
        let mut config = Config::default();
        config.task.noise = 0.3;
        let t = task(config);
        let n = 100_000;
        let b = t.sample(n, &mut stream(9, StreamId::Generate));
        let c = t.clusters();
        let mut count = vec![0usize; c];
        let mut mean = Array2::<f64>::zeros((c, t.d));
        let mut residual = Vec::with_capacity(n);
        let mut z2 = 0.0;
        for i in 0..n {
            let ci = b.c[i];
            count[ci] += 1;
            let x = b.x.row(i).mapv(|v| v as f64);
            mean.row_mut(ci).scaled_add(1.0, &x);
            let z = &x - &(&t.v.row(ci) * t.rho);
            z2 += z.dot(&z);
            let f = t.local_links[ci].eval(t.w.row(ci).dot(&x))
                + t.s[ci] * t.global_link.eval(t.wg.dot(&x));
            residual.push(b.y[i] as f64 - f);
        }
        for (ci, &nc) in count.iter().enumerate() {
            // Cluster frequencies: binomial, 5 sigma.
            let p = nc as f64 / n as f64;
            assert!(
                (p - 1.0 / c as f64).abs() < 5.0 * (0.25 / n as f64).sqrt(),
                "cluster {ci} share {p}"
            );
            // Cluster means rho v_c: each coordinate within 5 sigma of its N(0, 1/n_c) error.
            let m = mean.row(ci).mapv(|v| v / nc as f64);
            let err = &m - &(&t.v.row(ci) * t.rho);
            let tol = 5.0 / (nc as f64).sqrt();
            assert!(
                err.iter().all(|e| e.abs() < tol),
                "cluster {ci} mean off by {err:?}"
            );
        }
        // z has identity covariance: E|z|^2 = d.
        assert!((z2 / n as f64 / t.d as f64 - 1.0).abs() < 0.01);
        let rm = residual.iter().sum::<f64>() / n as f64;
        let rs = (residual.iter().map(|r| (r - rm).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(
            rm.abs() < 5.0 * 0.3 / (n as f64).sqrt(),
            "residual mean {rm}"
        );
        assert!((rs - 0.3).abs() < 0.005, "residual std {rs}");
        // Var(y) of the default task: 2 + zeta^2 (h3 is heavy-tailed: the
        // estimate's standard deviation is about 0.045 here).
        let var = crate::metrics::label_variance(&b.y);
        assert!((var - 2.09).abs() < 0.2, "var(y) = {var}");
    }

    #[test]
    fn same_seed_same_samples() {
        let t = task(Config::default());
        let a = t.sample(100, &mut stream(1, StreamId::MoeData));
        let b = t.sample(100, &mut stream(1, StreamId::MoeData));
        let c = t.sample(100, &mut stream(2, StreamId::MoeData));
        assert_eq!(a.x, b.x);
        assert_eq!(a.y, b.y);
        assert_ne!(a.x, c.x);
    }
}
