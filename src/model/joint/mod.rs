//! The jointly trained mixture of experts (SPEC §8): M experts, each a
//! two-layer network f_m(x) = sum_j a_mj sigma(<w_mj, x - c> + b_mj) + a_m0,
//! a linear router with logits h(x) = Theta (x - c), and the output
//! F(x) = sum_m g_m(x) f_m(x) with the gate g of the configured rule. The
//! loss of a batch, its auxiliary terms and the exact gradient of every
//! parameter are computed here, in f64, over a flat parameter vector that
//! the optimizers ([`super::optim`]) update. One file past 500 lines (a
//! fifth of it tests): the forward pass and its gradient are read together,
//! line against line.
//!
//! Stated choices:
//! - The router sees centred inputs x - c (c the global input centre,
//!   estimated before training), like the experts.
//! - top-k gates keep the k largest logits; the kept experts are weighted
//!   by their softmax probabilities over all M experts (Switch style, so
//!   top-1 still gives the router a gradient), or, with `renormalise`, by
//!   the softmax among the kept ones (GShard style; top-1 then weighs 1).
//! - Noisy gates add N(0, noise^2) to the logits before everything else
//!   (selection, probabilities, auxiliary losses); the noise is a constant
//!   of the step, so gradients flow through the clean logits.
//! - The load-balancing loss is lambda_bal * M * sum_m f_m P_m, f_m the
//!   share of the batch's selections going to m (for softmax: of each
//!   sample's largest gate), P_m the batch mean of softmax(h)_m; f_m
//!   carries no gradient. The z-loss is lambda_z * mean logsumexp(h)^2.
//! - The vanilla network is the same model with one expert of M*J neurons
//!   and no auxiliary loss: its gate is identically 1.

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use serde::{Deserialize, Serialize};

use super::router::Gate;
use crate::numerics::hermite::hermite_to_monomial;
use crate::numerics::link::{Link, NamedLink};
use crate::numerics::normal;
use crate::numerics::rng::Stream;

/// The activation of joint training: a Hermite polynomial (through its
/// monomial form) or a named function with a derivative.
#[derive(Clone, Debug, PartialEq)]
pub enum JointActivation {
    Polynomial { value: Vec<f64>, slope: Vec<f64> },
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

    /// sigma(t) and sigma'(t).
    #[inline]
    pub fn eval(&self, t: f64) -> (f64, f64) {
        match self {
            JointActivation::Polynomial { value, slope } => {
                let horner = |c: &[f64]| c.iter().rev().fold(0.0, |acc, &a| acc * t + a);
                (horner(value), horner(slope))
            }
            JointActivation::Named(n) => (n.eval(t), n.derivative(t).unwrap_or(0.0)),
        }
    }
}

/// How the router's gates are formed (see the module's stated choices).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JointGate {
    pub kind: Gate,
    /// k of top-k (1 for top-1 gates).
    pub k: usize,
    /// Standard deviation of the logit noise of the noisy gates.
    pub noise: f64,
    /// Weigh the kept experts by the softmax among them.
    pub renormalise: bool,
}

impl JointGate {
    /// Experts kept per sample (all of them for softmax).
    pub fn kept(&self, experts: usize) -> usize {
        match self.kind {
            Gate::Softmax => experts,
            Gate::Top1 | Gate::NoisyTop1 => 1,
            Gate::TopK | Gate::NoisyTopK => self.k.min(experts),
        }
    }

    pub fn noisy(&self) -> bool {
        matches!(self.kind, Gate::NoisyTop1 | Gate::NoisyTopK) && self.noise > 0.0
    }
}

/// Everything that shapes the loss besides the parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct JointLoss {
    pub activation: JointActivation,
    pub gate: JointGate,
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
    pub experts: usize,
    pub neurons: usize,
    pub d: usize,
    /// The input centre c (fixed).
    pub centre: Array1<f64>,
    pub params: Vec<f64>,
}

/// The loss terms of a batch (means over the batch; `total` their sum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    pub main: f64,
    pub balance: f64,
    pub z: f64,
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

/// A batch's forward pass: what training, logs and evaluation read.
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
    /// the rows of w (assumed unit): g <- g - <g, w> w.
    pub fn project_tangent(&self, grad: &mut [f64]) {
        let r = self.ranges();
        for (g, w) in grad[r.w.clone()]
            .chunks_exact_mut(self.d)
            .zip(self.params[r.w].chunks_exact(self.d))
        {
            let dot: f64 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            g.iter_mut().zip(w).for_each(|(a, b)| *a -= dot * b);
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

    /// Outputs of a batch of raw inputs, with noise-free gates.
    pub fn predict(&self, x: ArrayView2<f32>, loss: &JointLoss) -> Array1<f64> {
        let x = x.mapv(f64::from);
        let y = vec![0.0; x.nrows()];
        self.forward(x.view(), &y, loss, None, None).output
    }

    /// The forward pass of a batch (raw inputs `x`, labels `y`), with the
    /// logit noise `noise` (n x M) if the gate is noisy, and, if `grad` is
    /// given, the gradient of the mean total loss written into it.
    pub fn forward(
        &self,
        x: ArrayView2<f64>,
        y: &[f64],
        loss: &JointLoss,
        noise: Option<ArrayView2<f64>>,
        grad: Option<&mut [f64]>,
    ) -> Forward {
        let (n, d) = x.dim();
        let (m_count, j) = (self.experts, self.neurons);
        let units = m_count * j;
        let r = self.ranges();
        let xc = &x - &self.centre.view().insert_axis(Axis(0));
        let w = self.w();
        let bias = ArrayView1::from(&self.params[r.b.clone()]);
        let a = &self.params[r.a.clone()];
        let a0 = &self.params[r.a0.clone()];
        // Pre-activations, activations and slopes (n x MJ).
        let mut pre = xc.dot(&w.t());
        pre += &bias.insert_axis(Axis(0));
        let mut slope = Array2::<f64>::zeros((n, units));
        for (p, s) in pre.iter_mut().zip(slope.iter_mut()) {
            let (v, dv) = loss.activation.eval(*p);
            *p = v;
            *s = dv;
        }
        let act = pre;
        // Expert outputs (n x M).
        let mut f = Array2::<f64>::zeros((n, m_count));
        for (row, mut out) in act.rows().into_iter().zip(f.rows_mut()) {
            let row = row.as_slice().expect("contiguous activations");
            for (m, o) in out.iter_mut().enumerate() {
                let span = m * j..(m + 1) * j;
                *o = a[span.clone()]
                    .iter()
                    .zip(&row[span])
                    .fold(a0[m], |acc, (w, v)| acc + w * v);
            }
        }
        // Logits, probabilities, gates.
        let mut logits = xc.dot(&self.theta().t());
        if let Some(z) = noise {
            logits += &z;
        }
        let kept = loss.gate.kept(m_count);
        let mut probs = Array2::<f64>::zeros((n, m_count));
        let mut gates = Array2::<f64>::zeros((n, m_count));
        let mut masks = Array2::<f64>::zeros((n, m_count));
        let mut lse = vec![0.0; n];
        let mut assigned = vec![0; n];
        let mut chosen = vec![0.0; m_count];
        let mut order: Vec<usize> = (0..m_count).collect();
        for i in 0..n {
            let h = logits.row(i);
            let max = h.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = h.iter().map(|&v| (v - max).exp()).sum();
            lse[i] = max + sum.ln();
            for m in 0..m_count {
                probs[[i, m]] = (h[m] - lse[i]).exp();
            }
            order.sort_by(|&p, &q| h[q].total_cmp(&h[p]).then(p.cmp(&q)));
            for &m in &order[..kept] {
                masks[[i, m]] = 1.0;
            }
            let kept_mass: f64 = order[..kept].iter().map(|&m| probs[[i, m]]).sum();
            for m in 0..m_count {
                let p = probs[[i, m]] * masks[[i, m]];
                gates[[i, m]] = if loss.gate.renormalise && kept < m_count {
                    p / kept_mass
                } else {
                    p
                };
            }
            assigned[i] = order[0];
            if kept == m_count {
                chosen[order[0]] += 1.0;
            } else {
                for &m in &order[..kept] {
                    chosen[m] += 1.0;
                }
            }
        }
        let selections = if kept == m_count { n } else { n * kept } as f64;
        let frac: Vec<f64> = chosen.iter().map(|c| c / selections).collect();
        let mean_p = probs.mean_axis(Axis(0)).expect("a non-empty batch");
        let output: Array1<f64> = (&gates * &f).sum_axis(Axis(1));
        let nf = n as f64;
        let main = output
            .iter()
            .zip(y)
            .map(|(o, &t)| 0.5 * (o - t).powi(2))
            .sum::<f64>()
            / nf;
        let balance = loss.balance
            * m_count as f64
            * frac.iter().zip(&mean_p).map(|(a, b)| a * b).sum::<f64>();
        let z = loss.z * lse.iter().map(|v| v * v).sum::<f64>() / nf;
        let terms = LossTerms {
            main,
            balance,
            z,
            total: main + balance + z,
        };
        if let Some(grad) = grad {
            assert_eq!(grad.len(), self.params.len(), "one gradient per parameter");
            grad.fill(0.0);
            let resid: Vec<f64> = output.iter().zip(y).map(|(o, &t)| (o - t) / nf).collect();
            // d/d f_im = r_i g_im; d/d g_im = r_i f_im.
            let mut dpre = slope;
            {
                let (ga, rest) = grad[r.a.clone().start..].split_at_mut(units);
                let ga0 = &mut rest[..m_count];
                for i in 0..n {
                    let arow = act.row(i);
                    let mut drow = dpre.row_mut(i);
                    for m in 0..m_count {
                        let delta = resid[i] * gates[[i, m]];
                        ga0[m] += delta;
                        for k in m * j..(m + 1) * j {
                            ga[k] += delta * arow[k];
                            drow[k] *= delta * a[k];
                        }
                    }
                }
            }
            let gb = dpre.sum_axis(Axis(0));
            grad[r.b.clone()].copy_from_slice(gb.as_slice().expect("contiguous"));
            let mut gw =
                ArrayViewMut2::from_shape((units, d), &mut grad[r.w.clone()]).expect("sized");
            gw.assign(&dpre.t().dot(&xc));
            // Router: d/d h_i through the gates and the auxiliary losses.
            let mut dh = Array2::<f64>::zeros((n, m_count));
            for i in 0..n {
                let p = probs.row(i);
                let mut u: Vec<f64> = (0..m_count)
                    .map(|m| resid[i] * f[[i, m]] * masks[[i, m]])
                    .collect();
                let mut row = dh.row_mut(i);
                if loss.gate.renormalise && kept < m_count {
                    // g = softmax over the kept experts.
                    let mean: f64 = (0..m_count).map(|m| gates[[i, m]] * u[m]).sum();
                    for m in 0..m_count {
                        row[m] += gates[[i, m]] * (u[m] - mean);
                    }
                } else {
                    let mean: f64 = (0..m_count).map(|m| p[m] * u[m]).sum();
                    for m in 0..m_count {
                        row[m] += p[m] * (u[m] - mean);
                    }
                }
                // Balance: lambda M / n * p (frac - <p, frac>); z: 2 lambda_z lse p / n.
                for (m, um) in u.iter_mut().enumerate() {
                    *um = loss.balance * m_count as f64 * frac[m] / nf;
                }
                let mean: f64 = (0..m_count).map(|m| p[m] * u[m]).sum();
                for m in 0..m_count {
                    row[m] += p[m] * (u[m] - mean) + 2.0 * loss.z * lse[i] * p[m] / nf;
                }
            }
            let mut gt =
                ArrayViewMut2::from_shape((m_count, d), &mut grad[r.theta.clone()]).expect("sized");
            gt.assign(&dh.t().dot(&xc));
        }
        Forward {
            output,
            gates,
            probs,
            assigned,
            terms,
        }
    }
}

/// Where each parameter block lies in the flat vector.
#[derive(Clone, Debug)]
pub struct Ranges {
    pub w: std::ops::Range<usize>,
    pub b: std::ops::Range<usize>,
    pub a: std::ops::Range<usize>,
    pub a0: std::ops::Range<usize>,
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

/// Logit noise of a batch: n x M standard normals times `scale`.
pub fn logit_noise(n: usize, experts: usize, scale: f64, rng: &mut Stream) -> Array2<f64> {
    let mut z = vec![0.0f32; n * experts];
    normal::fill(rng, &mut z);
    Array2::from_shape_vec((n, experts), z)
        .expect("sized")
        .mapv(|v| scale * v as f64)
}

/// The running means of the loss terms between two logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TermsMean {
    pub sum: LossTerms,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::link;
    use crate::numerics::rng::{stream, StreamId};
    use rand::Rng;
    use rand_distr::StandardNormal;

    fn model(experts: usize, neurons: usize, d: usize, rng: &mut Stream) -> JointModel {
        let centre = Array1::from_shape_simple_fn(d, || 0.3 * rng.sample::<f64, _>(StandardNormal));
        let init = JointInit {
            first: 1.3,
            bias: 0.5,
            second: 1.0,
            router: 3.0,
        };
        let mut m = JointModel::new(experts, neurons, centre, &init, rng);
        // a non-zero a0 and some spread in every block
        let r = m.ranges();
        for (k, p) in m.params[r.a0].iter_mut().enumerate() {
            *p = 0.1 * k as f64 - 0.05;
        }
        m
    }

    /// Every parameter's gradient against central differences, for every
    /// gate, with and without renormalisation, with both auxiliary losses.
    #[test]
    fn gradients_of_the_joint_loss_agree_with_finite_differences() {
        let mut rng = stream(11, StreamId::Test);
        let (n, d, experts, neurons) = (12, 5, 4, 3);
        let x = Array2::<f64>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
        let y: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let activations = [
            link::parse("a", "h3+0.5*h1").unwrap(),
            link::parse("a", "tanh").unwrap(),
            link::parse("a", "relu").unwrap(),
        ];
        let mut checked = 0;
        for (case, (kind, renormalise)) in [
            (Gate::Softmax, false),
            (Gate::Top1, false),
            (Gate::TopK, false),
            (Gate::TopK, true),
            (Gate::NoisyTop1, false),
            (Gate::NoisyTopK, false),
            (Gate::NoisyTopK, true),
        ]
        .into_iter()
        .enumerate()
        {
            let act = &activations[case % activations.len()];
            let loss = JointLoss {
                activation: JointActivation::from_link(act).unwrap(),
                gate: JointGate {
                    kind,
                    k: 2,
                    noise: 0.7,
                    renormalise,
                },
                balance: 0.3,
                z: 0.05,
            };
            let m = model(experts, neurons, d, &mut rng);
            let noise = logit_noise(n, experts, loss.gate.noise, &mut rng);
            let noise = loss.gate.noisy().then_some(noise.view());
            let mut grad = vec![0.0; m.params.len()];
            let fwd = m.forward(x.view(), &y, &loss, noise, Some(&mut grad));
            assert!(fwd.terms.balance > 0.0 && fwd.terms.z > 0.0);
            let h = 1e-6;
            for (k, &analytic) in grad.iter().enumerate() {
                let (mut up, mut down) = (m.clone(), m.clone());
                up.params[k] += h;
                down.params[k] -= h;
                let fu = up.forward(x.view(), &y, &loss, noise, None);
                let fd = down.forward(x.view(), &y, &loss, noise, None);
                // A selection or relu kink crossed inside the difference
                // makes it meaningless: skip those (rare) parameters.
                if fu.assigned != fwd.assigned || fd.assigned != fwd.assigned {
                    continue;
                }
                let numeric = (fu.terms.total - fd.terms.total) / (2.0 * h);
                assert!(
                    (numeric - analytic).abs() < 1e-6 * (1.0 + numeric.abs()),
                    "{kind:?} renormalise={renormalise} {act:?} parameter {k} ({:?}): fd {numeric} vs {}",
                    m.ranges(),
                    analytic
                );
                checked += 1;
            }
        }
        assert!(checked > 7 * 100, "{checked}");
    }

    /// The vanilla network (one expert) has gate 1 and no router gradient,
    /// and the tangent projection leaves a zero radial component.
    #[test]
    fn one_expert_is_a_plain_two_layer_network() {
        let mut rng = stream(12, StreamId::Test);
        let (n, d) = (10, 4);
        let x = Array2::<f64>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
        let y: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let mut m = model(1, 6, d, &mut rng);
        m.retract();
        let loss = JointLoss {
            activation: JointActivation::from_link(&link::parse("a", "relu").unwrap()).unwrap(),
            gate: JointGate {
                kind: Gate::Softmax,
                k: 1,
                noise: 0.0,
                renormalise: false,
            },
            balance: 0.0,
            z: 0.0,
        };
        let mut grad = vec![0.0; m.params.len()];
        let fwd = m.forward(x.view(), &y, &loss, None, Some(&mut grad));
        assert!(fwd.gates.iter().all(|&g| g == 1.0));
        assert!(grad[m.ranges().theta].iter().all(|&g| g == 0.0));
        m.project_tangent(&mut grad);
        for (g, w) in grad[m.ranges().w]
            .chunks_exact(d)
            .zip(m.params[m.ranges().w].chunks_exact(d))
        {
            let radial: f64 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            assert!(radial.abs() < 1e-12);
        }
    }
}
