//! The jointly trained mixture of experts (docs/joint-training.md): M experts, each a
//! two-layer network f_m(x) = sum_j a_mj sigma(<w_mj, x - c> + b_mj) + a_m0,
//! a linear router with logits h(x) = Theta (x - c), and the output
//! F(x) = sum_m g_m(x) f_m(x) with the gate g of the configured rule. The
//! parameters live in one flat f64 vector that the optimizers
//! ([`super::optim`]) update; a batch's forward pass, loss terms and exact
//! gradient are computed by [`Pass`] (in `pass.rs`), generic over the float
//! type: f32 in training, as the staged phases, f64 for evaluation and for
//! the finite-difference checks of the gradient.
//!
//! Stated choices:
//! - The router sees centred inputs x - c (c the global input centre,
//!   estimated before training), like the experts.
//! - The gates are those of [`super::gate`]: top-k gates keep the k
//!   largest logits; the kept experts are weighted by their softmax
//!   probabilities over all M experts (Switch style, so top-1 still gives
//!   the router a gradient), or, with `renormalise`, by the softmax among
//!   the kept ones (GShard style; top-1 then weighs 1).
//! - Noisy gates add N(0, noise^2) to the logits before everything else
//!   (selection, probabilities, auxiliary losses); the noise is a constant
//!   of the step, so gradients flow through the clean logits.
//! - The load-balancing loss is lambda_bal * M * sum_m f_m P_m, f_m the
//!   share of the batch's selections going to m (for softmax: of each
//!   sample's largest gate), P_m the batch mean of softmax(h)_m; f_m
//!   carries no gradient. The z-loss is lambda_z * mean logsumexp(h)^2.
//! - The vanilla network is the same model with one expert of M*J neurons
//!   and no auxiliary loss: its gate is identically 1.
//! - Parameters and the optimizer's moments stay f64 while the batch is
//!   computed in f32: Adam's late steps (lr 1e-5 and below) are far below
//!   f32's resolution of a weight of order 1 and would round away, while
//!   the update costs O(parameters), a small fraction of the batch's
//!   O(batch x parameters); and checkpoints keep their f64 form.

mod pass;

use ndarray::{s, Array1, Array2, ArrayView2, NdFloat};
use serde::{Deserialize, Serialize};

use super::gate::GateRule;
use crate::numerics::hermite::hermite_to_monomial;
use crate::numerics::link::{Link, NamedLink};
use crate::numerics::normal;
use crate::numerics::rng::Stream;

pub use pass::Pass;

/// The float types a pass runs in: f32 in training, f64 for evaluation and
/// the gradient checks.
pub trait Scalar: NdFloat + Default + faer::traits::ComplexField {
    /// `v` in this type (rounded to nearest for f32).
    fn of(v: f64) -> Self;
    /// The value as f64 (exact).
    fn widen(self) -> f64;
}

impl Scalar for f32 {
    #[inline]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Scalar for f64 {
    #[inline]
    fn of(v: f64) -> Self {
        v
    }
    #[inline]
    fn widen(self) -> f64 {
        self
    }
}

/// The activation of joint training: a Hermite polynomial (through its
/// monomial form) or a named function with a derivative.
#[derive(Clone, Debug, PartialEq)]
pub enum JointActivation {
    /// A polynomial: its monomial coefficients (constant first) and those
    /// of its derivative.
    Polynomial {
        /// `sigma(t) = sum_i value[i] t^i`.
        value: Vec<f64>,
        /// `sigma'(t) = sum_i slope[i] t^i`.
        slope: Vec<f64>,
    },
    /// A named function with a derivative (relu, abs, tanh, sigmoid).
    Named(NamedLink),
}

impl JointActivation {
    /// The activation of a link; None for `sign`, which has no derivative.
    pub fn from_link(link: &Link) -> Option<Self> {
        match link {
            Link::Hermite(c) => {
                let value = hermite_to_monomial(c);
                let slope: Vec<f64> = value
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(|(i, &a)| i as f64 * a)
                    .collect();
                Some(JointActivation::Polynomial {
                    value,
                    slope: if slope.is_empty() { vec![0.0] } else { slope },
                })
            }
            Link::Named(n) => n.derivative(0.0).map(|_| JointActivation::Named(*n)),
        }
    }

    /// Replaces each pre-activation t of `values` by sigma(t) and writes
    /// sigma'(t) into `slopes`: one match for the whole block, so the
    /// element loop vectorises. The named links follow [`NamedLink::eval`]
    /// and [`NamedLink::derivative`] (0 at the kinks; `sign`, which joint
    /// training refuses, gets slope 0).
    pub fn apply<T: Scalar>(&self, values: &mut [T], slopes: &mut [T]) {
        let (zero, one) = (T::zero(), T::one());
        let sign = |t: T| {
            if t > zero {
                one
            } else if t < zero {
                -one
            } else {
                t * zero
            }
        };
        let pairs = values.iter_mut().zip(slopes.iter_mut());
        match self {
            JointActivation::Polynomial { value, slope } => {
                let horner =
                    |c: &[f64], t: T| c.iter().rev().fold(zero, |acc, &a| acc * t + T::of(a));
                for (v, s) in pairs {
                    *s = horner(slope, *v);
                    *v = horner(value, *v);
                }
            }
            JointActivation::Named(NamedLink::Relu) => {
                for (v, s) in pairs {
                    *s = if *v > zero { one } else { zero };
                    *v = v.max(zero);
                }
            }
            JointActivation::Named(NamedLink::Abs) => {
                for (v, s) in pairs {
                    *s = sign(*v);
                    *v = v.abs();
                }
            }
            JointActivation::Named(NamedLink::Tanh) => {
                for (v, s) in pairs {
                    let th = v.tanh();
                    *s = one - th * th;
                    *v = th;
                }
            }
            JointActivation::Named(NamedLink::Sigmoid) => {
                for (v, s) in pairs {
                    let e = one / (one + (-*v).exp());
                    *s = e * (one - e);
                    *v = e;
                }
            }
            JointActivation::Named(NamedLink::Sign) => {
                for (v, s) in pairs {
                    *s = zero;
                    *v = sign(*v);
                }
            }
        }
    }
}

/// Everything that shapes the loss besides the parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct JointLoss {
    /// The experts' activation sigma.
    pub activation: JointActivation,
    /// The router's gate.
    pub gate: GateRule,
    /// Weight of the load-balancing loss.
    pub balance: f64,
    /// Weight of the router z-loss.
    pub z: f64,
}

/// A jointly trained mixture of experts (one expert and no router for the
/// vanilla network). Parameters live in one flat vector, in the order
/// w (M*J x d, expert by expert), b (M*J), a (M*J), a0 (M), Theta (M x d).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JointModel {
    /// Experts M (1 for the vanilla network).
    pub experts: usize,
    /// Neurons J per expert.
    pub neurons: usize,
    /// Input dimension d.
    pub d: usize,
    /// The input centre c (fixed).
    pub centre: Array1<f64>,
    /// Every parameter, in the order of [`JointModel::ranges`].
    pub params: Vec<f64>,
}

/// The loss terms of a batch (means over the batch; `total` their sum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    /// The squared loss (F(x) - y)^2 / 2.
    pub main: f64,
    /// The load-balancing loss, weight included.
    pub balance: f64,
    /// The router z-loss, weight included.
    pub z: f64,
    /// main + balance + z.
    pub total: f64,
}

impl LossTerms {
    fn add(&mut self, other: &LossTerms, weight: f64) {
        self.main += weight * other.main;
        self.balance += weight * other.balance;
        self.z += weight * other.z;
        self.total += weight * other.total;
    }
}

/// A batch's forward pass: what logs and evaluation read.
#[derive(Clone, Debug)]
pub struct Forward {
    /// F(x) per sample.
    pub output: Array1<f64>,
    /// Gates g (n x M).
    pub gates: Array2<f64>,
    /// Router probabilities softmax(h) (n x M).
    pub probs: Array2<f64>,
    /// The expert each sample is sent to: its largest gate (first on ties).
    pub assigned: Vec<usize>,
    /// The batch's loss terms.
    pub terms: LossTerms,
}

/// Initialisation scales.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JointInit {
    /// Norm of each first-layer row.
    pub first: f64,
    /// Standard deviation of the biases.
    pub bias: f64,
    /// a_mj ~ N(0, second^2 / J).
    pub second: f64,
    /// Theta entries ~ N(0, router^2 / d).
    pub router: f64,
}

impl JointModel {
    /// A model drawn from `rng` with the scales of `init`: rows of w uniform
    /// on the sphere of radius `init.first`, a0 = 0.
    pub fn new(
        experts: usize,
        neurons: usize,
        centre: Array1<f64>,
        init: &JointInit,
        rng: &mut Stream,
    ) -> Self {
        let d = centre.len();
        let mut model = JointModel {
            experts,
            neurons,
            d,
            centre,
            params: vec![0.0; experts * neurons * (d + 2) + experts * (1 + d)],
        };
        let mut gauss = |n: usize| -> Vec<f64> {
            let mut v = vec![0.0f32; n];
            normal::fill(rng, &mut v);
            v.into_iter().map(f64::from).collect()
        };
        let units = experts * neurons;
        let w = gauss(units * d);
        let b = gauss(units);
        let a = gauss(units);
        let theta = gauss(experts * d);
        let r = model.ranges();
        model.params[r.w.clone()].copy_from_slice(&w);
        for row in model.params[r.w.clone()].chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            row.iter_mut().for_each(|v| *v *= init.first / norm);
        }
        let a_scale = init.second / (neurons as f64).sqrt();
        let t_scale = init.router / (d as f64).sqrt();
        for (p, g) in model.params[r.b].iter_mut().zip(b) {
            *p = init.bias * g;
        }
        for (p, g) in model.params[r.a].iter_mut().zip(a) {
            *p = a_scale * g;
        }
        for (p, g) in model.params[r.theta].iter_mut().zip(theta) {
            *p = t_scale * g;
        }
        model
    }

    /// Where each parameter block lies in `params`.
    pub fn ranges(&self) -> Ranges {
        let units = self.experts * self.neurons;
        let w = 0..units * self.d;
        let b = w.end..w.end + units;
        let a = b.end..b.end + units;
        let a0 = a.end..a.end + self.experts;
        let theta = a0.end..a0.end + self.experts * self.d;
        Ranges { w, b, a, a0, theta }
    }

    /// First-layer rows (M*J x d; expert m's are rows m*J..(m+1)*J).
    pub fn w(&self) -> ArrayView2<'_, f64> {
        let r = self.ranges();
        ArrayView2::from_shape((self.experts * self.neurons, self.d), &self.params[r.w])
            .expect("sized")
    }

    /// Router weights Theta (M x d).
    pub fn theta(&self) -> ArrayView2<'_, f64> {
        let r = self.ranges();
        ArrayView2::from_shape((self.experts, self.d), &self.params[r.theta]).expect("sized")
    }

    /// Expert m's first-layer rows as unit vectors (f32), for overlaps.
    pub fn expert_directions(&self, m: usize) -> Array2<f32> {
        let rows = self.w();
        let rows = rows.slice(s![m * self.neurons..(m + 1) * self.neurons, ..]);
        unit_rows(rows)
    }

    /// Every first-layer row as a unit vector (f32), for overlaps.
    pub fn all_directions(&self) -> Array2<f32> {
        unit_rows(self.w())
    }

    /// Projects the first-layer block of `grad` on the tangent spaces of
    /// the rows of w (assumed unit): g <- g - <g, w> w, in f64 whatever the
    /// gradient's type, so the projection is as exact as the rows.
    pub fn project_tangent<T: Scalar>(&self, grad: &mut [T]) {
        let r = self.ranges();
        for (g, w) in grad[r.w.clone()]
            .chunks_exact_mut(self.d)
            .zip(self.params[r.w].chunks_exact(self.d))
        {
            let dot: f64 = g.iter().zip(w).map(|(a, b)| a.widen() * b).sum();
            g.iter_mut()
                .zip(w)
                .for_each(|(a, b)| *a = T::of(a.widen() - dot * b));
        }
    }

    /// Retracts every first-layer row to the unit sphere.
    pub fn retract(&mut self) {
        let r = self.ranges();
        for row in self.params[r.w].chunks_exact_mut(self.d) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }

    /// Outputs of a batch of raw inputs, with noise-free gates (in f64).
    pub fn predict(&self, x: ArrayView2<f32>, loss: &JointLoss) -> Array1<f64> {
        let x = x.mapv(f64::from);
        let y = vec![0.0; x.nrows()];
        self.forward(x.view(), &y, loss, None, None).output
    }

    /// The forward pass of a batch (raw inputs `x`, labels `y`), with the
    /// logit noise `noise` (n x M) if the gate is noisy, and, if `grad` is
    /// given, the gradient of the mean total loss written into it. A fresh
    /// [`Pass`] each call: for evaluation and tests; the training loop keeps
    /// its own.
    pub fn forward<T: Scalar>(
        &self,
        x: ArrayView2<T>,
        y: &[T],
        loss: &JointLoss,
        noise: Option<ArrayView2<T>>,
        grad: Option<&mut [T]>,
    ) -> Forward {
        let mut pass = Pass::default();
        let terms = pass.run(self, x, y, loss, noise, grad);
        pass.forward(terms)
    }
}

/// Where each parameter block lies in the flat vector.
#[derive(Clone, Debug)]
pub struct Ranges {
    /// First layers w (M*J x d).
    pub w: std::ops::Range<usize>,
    /// Biases b (M*J).
    pub b: std::ops::Range<usize>,
    /// Second layers a (M*J).
    pub a: std::ops::Range<usize>,
    /// Output constants a0 (M).
    pub a0: std::ops::Range<usize>,
    /// Router weights Theta (M x d).
    pub theta: std::ops::Range<usize>,
}

fn unit_rows(rows: ArrayView2<f64>) -> Array2<f32> {
    let mut out = rows.mapv(|v| v as f32);
    for (mut o, r) in out.rows_mut().into_iter().zip(rows.rows()) {
        let norm = r.dot(&r).sqrt();
        if norm > 0.0 {
            o.assign(&r.mapv(|v| (v / norm) as f32));
        }
    }
    out
}

/// Fills `noise` (n x M) with standard normals times `scale`: the logit
/// noise of a batch, drawn into a buffer the training loop reuses.
pub fn logit_noise(noise: &mut Array2<f32>, scale: f64, rng: &mut Stream) {
    let z = noise.as_slice_mut().expect("a standard-layout buffer");
    normal::fill(rng, z);
    z.iter_mut()
        .for_each(|v| *v = (scale * f64::from(*v)) as f32);
}

/// The running means of the loss terms between two logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TermsMean {
    /// The terms summed, each batch weighted by its samples.
    pub sum: LossTerms,
    /// Samples summed.
    pub weight: f64,
}

impl TermsMean {
    /// Adds a batch of `n` samples.
    pub fn add(&mut self, terms: &LossTerms, n: usize) {
        self.sum.add(terms, n as f64);
        self.weight += n as f64;
    }

    /// The mean so far, and a fresh start.
    pub fn take(&mut self) -> LossTerms {
        let mut out = LossTerms::default();
        if self.weight > 0.0 {
            out.add(&self.sum, 1.0 / self.weight);
        }
        *self = TermsMean::default();
        out
    }
}
