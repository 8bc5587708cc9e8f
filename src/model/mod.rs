//! Two-layer networks (docs/algorithm.md): first-layer directions on the unit sphere,
//! an input centre, random biases and a linear readout; the trained `Moe`
//! and `Vanilla`. `activation` holds the Hermite activations and the loss
//! gradient of the first layer, `sphere` the spherical SGD step, [`gate`]
//! the gates (of the staged router and of joint training), [`router`] the
//! staged phases' router.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::numerics::linalg::{self, matmul};
use crate::numerics::normal;
use crate::numerics::rng::Stream;

pub(crate) mod activation;
pub mod gate;
pub mod joint;
pub(crate) mod optim;
pub mod router;
pub(crate) mod sphere;
pub mod whitening;

pub(crate) use activation::Activation;
pub use activation::{Loss, NeuronSign};
use gate::GateRule;
use router::Router;
pub(crate) use sphere::{NeuronStats, SphereStep};
pub use whitening::Whitening;

/// The input map x -> W (x - mu) of phases I and II: a centre and an
/// optional whitening W = Sigma^(-1/2) (low-rank, see [`whitening`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct InputMap {
    /// The centre mu subtracted from every input.
    pub centre: Array1<f32>,
    /// W = Sigma^(-1/2), or None for no whitening.
    pub whiten: Option<Whitening>,
}

impl InputMap {
    /// Estimates the centre (and, if `whiten`, Sigma^(-1/2)) from samples
    /// (rows), which it centres in place.
    pub fn estimate(mut x: Array2<f32>, whiten: bool) -> Self {
        let centre = linalg::column_means(x.view()).mapv(|v| v as f32);
        if !whiten {
            return InputMap {
                centre,
                whiten: None,
            };
        }
        linalg::centre_rows(x.view_mut(), &centre);
        InputMap {
            centre,
            whiten: Some(Whitening::estimate(x.view())),
        }
    }

    /// Directions `u` (rows) as centred raw inputs see them: rows of u W,
    /// since <u, W (x - mu)> = <W u, x - mu> for the symmetric W.
    pub fn seen_directions(&self, u: &Array2<f32>) -> Array2<f32> {
        let mut out = Array2::zeros((0, 0));
        times_whitening(u, self.whiten.as_ref(), &mut out).clone()
    }
}

/// `n` directions uniform on the unit sphere of R^d (rows).
pub fn random_directions(n: usize, d: usize, rng: &mut Stream) -> Array2<f32> {
    let mut w = Array2::<f32>::zeros((n, d));
    normal::fill(rng, w.as_slice_mut().expect("a new array is contiguous"));
    for mut row in w.rows_mut() {
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
    w
}

/// `out = a W` row by row, or `a` itself when there is no whitening W.
pub(crate) fn times_whitening<'a>(
    a: &'a Array2<f32>,
    whiten: Option<&Whitening>,
    out: &'a mut Array2<f32>,
) -> &'a Array2<f32> {
    match whiten {
        None => a,
        Some(w) => {
            w.apply(a, out);
            out
        }
    }
}

/// Rows of a prediction's chunk: its features (f64, a few hundred a row)
/// stay a few megabytes.
const PREDICT_CHUNK: usize = 4096;

/// The buffers of [`TwoLayer::features_into`].
#[derive(Debug, Default)]
pub struct FeatureBuffers {
    xc: Array2<f32>,
    pre: Array2<f32>,
    features: Array2<f64>,
}

/// `a` reallocated if it does not have shape `dim` (its values are all
/// overwritten by the caller).
fn shape<T: Clone + Default>(a: &mut Array2<T>, dim: (usize, usize)) {
    if a.dim() != dim {
        *a = Array2::default(dim);
    }
}

/// A trained two-layer network f(x) = sum_j a_j relu(<w_j, x - mu> + b_j) + a_0.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TwoLayer {
    /// First-layer directions, unit rows (J x d).
    pub w: Array2<f32>,
    /// Input centre mu.
    pub centre: Array1<f32>,
    /// Biases b_j.
    pub bias: Array1<f32>,
    /// Second layer a_j.
    pub a: Array1<f64>,
    /// Constant a_0.
    pub a0: f64,
}

impl TwoLayer {
    /// Readout features relu(<w_j, x - mu> + b_j) of a batch, then a column of ones.
    pub fn features(&self, x: ArrayView2<f32>) -> Array2<f64> {
        let mut buffers = FeatureBuffers::default();
        self.features_into(x, &mut buffers);
        buffers.features
    }

    /// [`TwoLayer::features`] in `buffers`, which keep their memory from
    /// one batch to the next of the same size: a readout's chunks of
    /// features are megabytes, and fresh ones are fresh pages to fault in.
    pub fn features_into<'a>(
        &self,
        x: ArrayView2<f32>,
        buffers: &'a mut FeatureBuffers,
    ) -> &'a Array2<f64> {
        let (n, j) = (x.nrows(), self.w.nrows());
        let FeatureBuffers { xc, pre, features } = buffers;
        shape(xc, x.dim());
        shape(pre, (n, j));
        shape(features, (n, j + 1));
        xc.assign(&x);
        crate::numerics::linalg::centre_rows(xc.view_mut(), &self.centre);
        matmul(&mut pre.view_mut(), &xc.view(), &self.w.t(), 1.0, false);
        for (mut row, pre_row) in features.axis_iter_mut(Axis(0)).zip(pre.axis_iter(Axis(0))) {
            let row = row.as_slice_mut().expect("contiguous features");
            for ((o, &p), &b) in row.iter_mut().zip(pre_row).zip(&self.bias) {
                *o = (p + b).max(0.0) as f64;
            }
            row[j] = 1.0;
        }
        features
    }

    /// Network outputs on a batch (computed in chunks of rows, so the
    /// features of a large test set are never all in memory at once).
    pub fn predict(&self, x: ArrayView2<f32>) -> Array1<f64> {
        let mut out = Array1::zeros(x.nrows());
        let mut buffers = FeatureBuffers::default();
        let j = self.a.len();
        let chunks = x.axis_chunks_iter(Axis(0), PREDICT_CHUNK);
        for (x, mut out) in chunks.zip(out.axis_chunks_iter_mut(Axis(0), PREDICT_CHUNK)) {
            let f = self.features_into(x, &mut buffers);
            out.assign(&(f.slice(ndarray::s![.., ..j]).dot(&self.a) + self.a0));
        }
        out
    }

    /// Number of hidden neurons J.
    pub fn neurons(&self) -> usize {
        self.w.nrows()
    }
}

/// A trained mixture of experts.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Moe {
    /// Phase-I direction u_m of every expert (M x d).
    pub phase_one_directions: Array2<f32>,
    /// Input map (global centre, whitening) of phases I and II.
    pub input_map: InputMap,
    /// For every phase-I expert, the routed expert it became (None: dropped).
    pub expert_group: Vec<Option<usize>>,
    /// The router phase II learned.
    pub router: Router,
    /// The gate that routes training, readout and test samples from
    /// phase III on.
    pub gate: GateRule,
    /// Routed experts (K of them, K <= M).
    pub experts: Vec<TwoLayer>,
    /// Per cluster: samples seen when some expert first reached the recovery threshold in phase I.
    pub phase1_weak_recovery_samples: Vec<Option<u64>>,
    /// Samples drawn in all.
    pub samples: u64,
}

impl Moe {
    /// F(x) = sum over selected experts of pi_m(x) f_m(x), in chunks of rows.
    pub fn predict(&self, x: ndarray::ArrayView2<f32>, rng: &mut Stream) -> Array1<f64> {
        let mut out = Array1::zeros(x.nrows());
        let chunks = x.axis_chunks_iter(Axis(0), PREDICT_CHUNK);
        for (x, mut out) in chunks.zip(out.axis_chunks_iter_mut(Axis(0), PREDICT_CHUNK)) {
            let gates = self.router.gates(x, &self.gate, rng);
            for (k, expert) in self.experts.iter().enumerate() {
                let g = gates.column(k);
                if g.iter().all(|&v| v == 0.0) {
                    continue;
                }
                let f = expert.predict(x);
                out.zip_mut_with(&(f * &g.mapv(|v| v as f64)), |o, &v| *o += v);
            }
        }
        out
    }
}

/// A trained vanilla two-layer network.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Vanilla {
    /// The network: first layer, centre, biases and readout.
    pub net: TwoLayer,
    /// Samples drawn in all.
    pub samples: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_relu_of_centred_inputs_plus_constant() {
        let net = TwoLayer {
            w: ndarray::array![[1.0f32, 0.0], [0.0, 1.0]],
            centre: ndarray::array![1.0f32, 1.0],
            bias: ndarray::array![0.5f32, -0.5],
            a: ndarray::array![2.0, -1.0],
            a0: 0.25,
        };
        let x = ndarray::array![[1.0f32, 3.0], [0.0, 0.0]];
        let f = net.features(x.view());
        assert_eq!(f, ndarray::array![[0.5, 1.5, 1.0], [0.0, 0.0, 1.0]]);
        assert_eq!(
            net.predict(x.view()),
            ndarray::array![2.0 * 0.5 - 1.5 + 0.25, 0.25]
        );
    }
}
