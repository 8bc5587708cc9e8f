//! A batch's forward pass through the joint model and the exact gradient
//! of its mean total loss, read together: each backward block sits in the
//! same order as the forward block it differentiates.
//!
//! Only the (sample, expert) pairs a gate keeps are computed: the logits
//! come first, then the selection, then the kept pairs' pre-activations,
//! activations and gradients. A dropped pair has gate 0 and contributes
//! nothing to the output, and its expert's parameters get an exactly zero
//! gradient from it, so skipping it changes no result; a top-1 step costs
//! the router plus one expert per sample instead of all M. The kept pairs
//! live in *slots* of J values each, laid out one of two ways:
//! - dense, when every sample keeps every expert (softmax, the vanilla
//!   network): slot i M + m is (sample i, expert m), so the slots x J block
//!   is the n x MJ product of the centred inputs with all first layers, one
//!   product forward and one backward;
//! - grouped by expert otherwise: expert m's slots are consecutive, in
//!   sample order, with its samples' rows gathered beside them, one small
//!   product per expert each way.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};

use super::{Forward, JointActivation, JointLoss, JointModel, LossTerms, Ranges, Scalar};
use crate::model::gate::{argmax, softmax, GateRule};
use crate::numerics::linalg::matmul;

/// The buffers of a batch's forward pass and gradient. The training loop
/// keeps one across steps (every step overwrites it, so it is no part of a
/// checkpoint); [`JointModel::forward`] makes a fresh one.
#[derive(Clone, Debug, Default)]
pub struct Pass<T> {
    /// The model's parameters and centre in T.
    params: Vec<T>,
    centre: Vec<T>,
    /// Centred inputs x - c (n x d).
    xc: Vec<T>,
    /// Logits (noise included), then softmax(h) (n x M).
    probs: Vec<T>,
    /// logsumexp(h) per sample.
    lse: Vec<T>,
    /// Each sample's kept experts (n x kept): largest logit first, or all
    /// experts in order when every expert is kept.
    kept: Vec<usize>,
    /// The kept pairs' gates and slots (n x kept).
    gates: Vec<T>,
    slot: Vec<usize>,
    /// Per slot: its expert and r_i g_im (the gradient of the loss with
    /// respect to the expert's output).
    slot_expert: Vec<usize>,
    delta: Vec<T>,
    /// Dense layout: one sample's deltas, each repeated over its expert's
    /// J units (M x J).
    spread: Vec<T>,
    /// Grouped layout: expert m's slots are start[m]..start[m + 1].
    start: Vec<usize>,
    cursor: Vec<usize>,
    /// Grouped layout: each slot's centred input (slots x d).
    gathered: Vec<T>,
    /// Pre-activations, then activations (slots x J).
    act: Vec<T>,
    /// Slopes sigma', then the gradient of the pre-activations (slots x J).
    slope: Vec<T>,
    /// Expert outputs f_m(x_i) per slot.
    f: Vec<T>,
    /// F(x_i) and the residuals (F(x_i) - y_i) / n.
    output: Vec<T>,
    resid: Vec<T>,
    /// The expert with the largest gate per sample.
    assigned: Vec<usize>,
    /// Per expert: selections, batch mean of softmax(h), and the balance
    /// loss's constant lambda M f_m / n.
    chosen: Vec<f64>,
    mean_p: Vec<f64>,
    balance: Vec<T>,
    /// Gradient of the loss with respect to the clean logits (n x M).
    dh: Vec<T>,
    /// The last batch's size and the model's experts.
    n: usize,
    experts: usize,
}

/// `v` resized to `len` elements (old values kept where they fit: every
/// caller overwrites what it reads).
fn sized<V: Clone + Default>(v: &mut Vec<V>, len: usize) -> &mut [V] {
    v.resize(len, V::default());
    v
}

/// The sizes of a batch's pass, and where each parameter block lies.
struct Shape {
    /// Samples n.
    n: usize,
    /// Input dimension d.
    d: usize,
    /// Experts M.
    experts: usize,
    /// Neurons J per expert.
    j: usize,
    /// Experts kept per sample.
    per: usize,
    /// Where each parameter block lies.
    r: Ranges,
}

impl Shape {
    /// Every sample keeps every expert: the dense layout of slots.
    fn dense(&self) -> bool {
        self.per == self.experts
    }

    /// Kept (sample, expert) pairs.
    fn slots(&self) -> usize {
        self.n * self.per
    }
}

impl<T: Scalar> Pass<T> {
    /// The forward pass of a batch (raw inputs `x`, labels `y`), with the
    /// logit noise `noise` (n x M) if the gate is noisy, and, if `grad` is
    /// given, the gradient of the mean total loss written into it (one
    /// entry per parameter, every one overwritten). Returns the loss terms.
    pub fn run(
        &mut self,
        model: &JointModel,
        x: ArrayView2<T>,
        y: &[T],
        loss: &JointLoss,
        noise: Option<ArrayView2<T>>,
        grad: Option<&mut [T]>,
    ) -> LossTerms {
        let (n, d) = x.dim();
        assert_eq!(d, model.d, "inputs of the model's dimension");
        assert_eq!(y.len(), n, "one label per input");
        assert!(n > 0, "a non-empty batch");
        let shape = Shape {
            n,
            d,
            experts: model.experts,
            j: model.neurons,
            per: loss.gate.kept(model.experts),
            r: model.ranges(),
        };
        self.n = n;
        self.experts = model.experts;
        self.centred_inputs(model, x);
        // One expert without a z-loss (the vanilla network) has gate 1 and
        // a router gradient of exactly 0 (p (u - <p, u>) with p = 1): its
        // router is skipped.
        let router = model.experts > 1 || loss.z != 0.0;
        self.route(&shape, &loss.gate, noise, router);
        self.pre_activations(&shape);
        let main = self.outputs(&shape, y, &loss.activation);
        let terms = self.loss_terms(&shape, loss, main);
        let Some(grad) = grad else {
            return terms;
        };
        assert_eq!(grad.len(), model.params.len(), "one gradient per parameter");
        grad.fill(T::zero());
        self.backward_experts(&shape, grad);
        self.backward_first_layer(&shape, grad);
        if router {
            self.backward_router(&shape, loss, grad);
        }
        terms
    }

    /// The model's parameters and centre in T, and the centred inputs x - c.
    fn centred_inputs(&mut self, model: &JointModel, x: ArrayView2<T>) {
        let (n, d) = x.dim();
        let Pass {
            params, centre, xc, ..
        } = self;
        params.clear();
        params.extend(model.params.iter().map(|&v| T::of(v)));
        centre.clear();
        centre.extend(model.centre.iter().map(|&v| T::of(v)));
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout").chunks_exact(d);
        for (out, row) in sized(xc, n * d).chunks_exact_mut(d).zip(rows) {
            for ((o, &v), &c) in out.iter_mut().zip(row).zip(centre.iter()) {
                *o = v - c;
            }
        }
    }

    /// Logits h = Theta (x - c) + noise (h = 1 without a router), then per
    /// sample the gate's selection, softmax(h) and logsumexp(h), the kept
    /// experts' gates, and the balance loss's counts and mean
    /// probabilities.
    fn route(&mut self, s: &Shape, gate: &GateRule, noise: Option<ArrayView2<T>>, router: bool) {
        let (n, m_count, per) = (s.n, s.experts, s.per);
        let Pass {
            params,
            xc,
            probs,
            lse,
            kept,
            gates,
            assigned,
            chosen,
            mean_p,
            ..
        } = self;
        let mut h =
            ArrayViewMut2::from_shape((n, m_count), sized(probs, n * m_count)).expect("sized");
        if router {
            let xcm = ArrayView2::from_shape((n, s.d), &xc[..]).expect("sized");
            let theta =
                ArrayView2::from_shape((m_count, s.d), &params[s.r.theta.clone()]).expect("sized");
            matmul(&mut h, &xcm, &theta.t(), T::one(), false);
            if let Some(z) = noise {
                h += &z;
            }
        } else {
            h.fill(T::one());
        }
        sized(kept, s.slots());
        sized(gates, s.slots());
        sized(lse, n);
        sized(assigned, n);
        chosen.clear();
        chosen.resize(m_count, 0.0);
        mean_p.clear();
        mean_p.resize(m_count, 0.0);
        // Results below T's smallest normal flush to 0 (see `softmax`).
        let floor = T::min_positive_value().ln();
        let dense = s.dense();
        for i in 0..n {
            let h = &mut probs[i * m_count..(i + 1) * m_count];
            let sel = &mut kept[i * per..(i + 1) * per];
            gate.select(h, sel);
            assigned[i] = if dense { argmax(h) } else { sel[0] };
            lse[i] = if router {
                let (max, sum) = softmax(h, floor);
                max + sum.ln()
            } else {
                T::zero()
            };
            for (p, m) in h.iter().zip(mean_p.iter_mut()) {
                *m += p.widen();
            }
            gate.weigh(h, sel, &mut gates[i * per..(i + 1) * per]);
            if dense {
                chosen[assigned[i]] += 1.0;
            } else {
                sel.iter().for_each(|&m| chosen[m] += 1.0);
            }
        }
    }

    /// The kept pairs' slots and pre-activations <w_mj, x_i - c>.
    fn pre_activations(&mut self, s: &Shape) {
        sized(&mut self.slot, s.slots());
        sized(&mut self.slot_expert, s.slots());
        sized(&mut self.act, s.slots() * s.j);
        if s.dense() {
            self.pre_activations_dense(s);
        } else {
            self.pre_activations_grouped(s);
        }
    }

    /// Dense layout: slot i M + m is (sample i, expert m); one product of
    /// the centred inputs with every first layer.
    fn pre_activations_dense(&mut self, s: &Shape) {
        let m_count = s.experts;
        let Pass {
            params,
            xc,
            slot,
            slot_expert,
            act,
            ..
        } = self;
        for (k, (sl, se)) in slot.iter_mut().zip(slot_expert.iter_mut()).enumerate() {
            *sl = k;
            *se = k - k / m_count * m_count;
        }
        let xcm = ArrayView2::from_shape((s.n, s.d), &xc[..]).expect("sized");
        let w =
            ArrayView2::from_shape((m_count * s.j, s.d), &params[s.r.w.clone()]).expect("sized");
        let mut pre = ArrayViewMut2::from_shape((s.n, m_count * s.j), &mut act[..]).expect("sized");
        matmul(&mut pre, &xcm, &w.t(), T::one(), false);
    }

    /// Grouped layout: expert m's slots consecutive, in sample order, with
    /// its samples' centred inputs gathered beside them; one product per
    /// expert.
    fn pre_activations_grouped(&mut self, s: &Shape) {
        let (m_count, j, d, per) = (s.experts, s.j, s.d, s.per);
        let Pass {
            params,
            xc,
            kept,
            slot,
            slot_expert,
            start,
            cursor,
            gathered,
            act,
            ..
        } = self;
        start.clear();
        start.resize(m_count + 1, 0);
        kept.iter().for_each(|&m| start[m + 1] += 1);
        for m in 0..m_count {
            start[m + 1] += start[m];
        }
        cursor.clear();
        cursor.extend_from_slice(&start[..m_count]);
        let gathered = sized(gathered, s.slots() * d);
        for (i, sel) in kept.chunks_exact(per).enumerate() {
            for (t, &m) in sel.iter().enumerate() {
                let at = cursor[m];
                cursor[m] += 1;
                slot[i * per + t] = at;
                slot_expert[at] = m;
                gathered[at * d..(at + 1) * d].copy_from_slice(&xc[i * d..(i + 1) * d]);
            }
        }
        let w = ArrayView2::from_shape((m_count * j, d), &params[s.r.w.clone()]).expect("sized");
        for m in 0..m_count {
            let span = start[m]..start[m + 1];
            if span.is_empty() {
                continue;
            }
            let rows = span.len();
            let xm = ArrayView2::from_shape((rows, d), &gathered[span.start * d..span.end * d])
                .expect("sized");
            let mut pre =
                ArrayViewMut2::from_shape((rows, j), &mut act[span.start * j..span.end * j])
                    .expect("sized");
            let wm = w.slice(ndarray::s![m * j..(m + 1) * j, ..]);
            matmul(&mut pre, &xm, &wm.t(), T::one(), false);
        }
    }

    /// The pre-activations plus b_mj, then sigma and sigma' over the whole
    /// block at once; the expert outputs f_m(x_i) = a_m0 + sum_j a_mj
    /// sigma_ij, the outputs F(x_i) = sum_kept g_im f_m(x_i) and the
    /// residuals. Returns the main loss, mean (F - y)^2 / 2.
    fn outputs(&mut self, s: &Shape, y: &[T], activation: &JointActivation) -> f64 {
        let (n, j, per) = (s.n, s.j, s.per);
        let Pass {
            params,
            gates,
            slot,
            slot_expert,
            act,
            slope,
            f,
            output,
            resid,
            ..
        } = self;
        let (bias, a, a0) = (
            &params[s.r.b.clone()],
            &params[s.r.a.clone()],
            &params[s.r.a0.clone()],
        );
        for (row, &m) in act.chunks_exact_mut(j).zip(slot_expert.iter()) {
            for (v, &b) in row.iter_mut().zip(&bias[m * j..(m + 1) * j]) {
                *v += b;
            }
        }
        let slope = sized(slope, s.slots() * j);
        activation.apply(act, slope);
        let f = sized(f, s.slots());
        for ((fs, row), &m) in f
            .iter_mut()
            .zip(act.chunks_exact(j))
            .zip(slot_expert.iter())
        {
            let am = &a[m * j..(m + 1) * j];
            *fs = am.iter().zip(row).fold(a0[m], |acc, (&w, &v)| acc + w * v);
        }
        let output = sized(output, n);
        let resid = sized(resid, n);
        let nt = T::of(n as f64);
        let mut main = 0.0;
        for i in 0..n {
            let pairs = slot[i * per..(i + 1) * per].iter().zip(&gates[i * per..]);
            output[i] = pairs.fold(T::zero(), |acc, (&s, &g)| acc + g * f[s]);
            let e = output[i] - y[i];
            main += 0.5 * (e * e).widen();
            resid[i] = e / nt;
        }
        main / n as f64
    }

    /// The loss terms from the main loss `main`: the balance loss (and its
    /// constants lambda M f_m / n for the router's gradient) and the
    /// z-loss.
    fn loss_terms(&mut self, s: &Shape, loss: &JointLoss, main: f64) -> LossTerms {
        let (nf, m_count) = (s.n as f64, s.experts as f64);
        let selections = if s.dense() { s.n } else { s.slots() } as f64;
        let mut balance_loss = 0.0;
        self.balance.clear();
        for (c, p) in self.chosen.iter().zip(self.mean_p.iter_mut()) {
            let frac = c / selections;
            *p /= nf;
            balance_loss += frac * *p;
            self.balance.push(T::of(loss.balance * m_count * frac / nf));
        }
        let balance_loss = loss.balance * m_count * balance_loss;
        let z = loss.z * self.lse.iter().map(|v| v.widen() * v.widen()).sum::<f64>() / nf;
        LossTerms {
            main,
            balance: balance_loss,
            z,
            total: main + balance_loss + z,
        }
    }

    /// Expert outputs: dL/df_im = r_i g_im (delta), hence a0, a, and the
    /// pre-activations' gradient delta a_mj sigma'_ij (into `slope`), hence
    /// b.
    fn backward_experts(&mut self, s: &Shape, grad: &mut [T]) {
        let per = s.per;
        let Pass {
            gates,
            slot,
            resid,
            delta,
            ..
        } = self;
        let delta = sized(delta, s.slots());
        for i in 0..s.n {
            for t in 0..per {
                delta[slot[i * per + t]] = resid[i] * gates[i * per + t];
            }
        }
        let (gw_gb, rest) = grad.split_at_mut(s.r.a.start);
        let (ga, ga0) = rest.split_at_mut(s.r.a0.start - s.r.a.start);
        let gb = &mut gw_gb[s.r.b.clone()];
        // Per unit k of expert m: a_mk gets delta sigma, the
        // pre-activation's gradient is delta a_mk sigma'. The dense layout
        // loops over whole rows of one known length, the form the compiler
        // vectorises (J = 8 alone is too short for its vector loop); the
        // arithmetic is the same in both layouts.
        if s.dense() {
            self.backward_experts_dense(s, ga, gb, ga0);
        } else {
            self.backward_experts_grouped(s, ga, gb, ga0);
        }
    }

    /// [`Pass::backward_experts`] in the dense layout: a sample's slots are
    /// its M experts in order, one row of M J units.
    fn backward_experts_dense(&mut self, s: &Shape, ga: &mut [T], gb: &mut [T], ga0: &mut [T]) {
        let (m_count, j) = (s.experts, s.j);
        let Pass {
            params,
            delta,
            spread,
            act,
            slope,
            ..
        } = self;
        let units = m_count * j;
        let spread = sized(spread, units);
        let a = &params[s.r.a.clone()];
        let (ga, gb, a) = (&mut ga[..units], &mut gb[..units], &a[..units]);
        let rows = act.chunks_exact(units).zip(slope.chunks_exact_mut(units));
        for ((row, drow), dls) in rows.zip(delta.chunks_exact(m_count)) {
            for ((units, &dl), g0) in spread.chunks_exact_mut(j).zip(dls).zip(ga0.iter_mut()) {
                *g0 += dl;
                units.fill(dl);
            }
            let (dl, row, drow) = (&spread[..units], &row[..units], &mut drow[..units]);
            for k in 0..units {
                ga[k] += dl[k] * row[k];
                drow[k] *= dl[k] * a[k];
                gb[k] += drow[k];
            }
        }
    }

    /// [`Pass::backward_experts`] in the grouped layout, slot by slot.
    fn backward_experts_grouped(&mut self, s: &Shape, ga: &mut [T], gb: &mut [T], ga0: &mut [T]) {
        let j = s.j;
        let Pass {
            params,
            slot_expert,
            delta,
            act,
            slope,
            ..
        } = self;
        let a = &params[s.r.a.clone()];
        let rows = act.chunks_exact(j).zip(slope.chunks_exact_mut(j));
        for ((row, drow), (&m, &dl)) in rows.zip(slot_expert.iter().zip(delta.iter())) {
            ga0[m] += dl;
            let span = m * j..(m + 1) * j;
            let units = ga[span.clone()].iter_mut().zip(&mut gb[span.clone()]);
            for (((ga, gb), &am), (&v, ds)) in units.zip(&a[span]).zip(row.iter().zip(drow)) {
                *ga += dl * v;
                *ds *= dl * am;
                *gb += *ds;
            }
        }
    }

    /// The first layers' gradient: the pre-activations' gradient times the
    /// centred inputs, one product (dense) or one per expert (grouped).
    fn backward_first_layer(&self, s: &Shape, grad: &mut [T]) {
        let (m_count, j, d) = (s.experts, s.j, s.d);
        let gw = &mut grad[s.r.w.clone()];
        if s.dense() {
            let xcm = ArrayView2::from_shape((s.n, d), &self.xc[..]).expect("sized");
            let dpre = ArrayView2::from_shape((s.n, m_count * j), &self.slope[..]).expect("sized");
            let mut gw = ArrayViewMut2::from_shape((m_count * j, d), gw).expect("sized");
            matmul(&mut gw, &dpre.t(), &xcm, T::one(), false);
            return;
        }
        let (start, slope, gathered) = (&self.start, &self.slope, &self.gathered);
        for (m, gwm) in gw.chunks_exact_mut(j * d).enumerate() {
            let span = start[m]..start[m + 1];
            if span.is_empty() {
                continue;
            }
            let rows = span.len();
            let dpre = ArrayView2::from_shape((rows, j), &slope[span.start * j..span.end * j])
                .expect("sized");
            let xm = ArrayView2::from_shape((rows, d), &gathered[span.start * d..span.end * d])
                .expect("sized");
            let mut gwm = ArrayViewMut2::from_shape((j, d), gwm).expect("sized");
            matmul(&mut gwm, &dpre.t(), &xm, T::one(), false);
        }
    }

    /// Router: dL/dh_i through the gates (with u_m = r_i f_im on the kept
    /// experts: p (u - <p, u>), or g (u - <g, u>) renormalised), the
    /// balance loss (p (b - <p, b>), b its constants) and the z-loss
    /// (2 lambda_z lse p / n); then Theta's gradient.
    fn backward_router(&mut self, s: &Shape, loss: &JointLoss, grad: &mut [T]) {
        let (m_count, per) = (s.experts, s.per);
        let renormalise = loss.gate.renormalises(m_count);
        let Pass {
            xc,
            probs,
            lse,
            kept,
            gates,
            slot,
            f,
            resid,
            balance,
            dh,
            ..
        } = self;
        let zero = T::zero();
        let two_z = T::of(2.0 * loss.z / s.n as f64);
        let dh = sized(dh, s.n * m_count);
        for (i, row) in dh.chunks_exact_mut(m_count).enumerate() {
            let p = &probs[i * m_count..(i + 1) * m_count];
            let (sel, g) = (
                &kept[i * per..(i + 1) * per],
                &gates[i * per..(i + 1) * per],
            );
            let u = |t: usize| resid[i] * f[slot[i * per + t]];
            let mean_b = p
                .iter()
                .zip(balance.iter())
                .fold(zero, |acc, (&p, &b)| acc + p * b);
            for ((v, &p), &b) in row.iter_mut().zip(p).zip(balance.iter()) {
                *v = p * (b - mean_b) + two_z * lse[i] * p;
            }
            if renormalise {
                let mean = (0..per).fold(zero, |acc, t| acc + g[t] * u(t));
                for t in 0..per {
                    row[sel[t]] += g[t] * (u(t) - mean);
                }
            } else {
                // u is 0 off the kept experts.
                let mean = (0..per).fold(zero, |acc, t| acc + p[sel[t]] * u(t));
                for (v, &p) in row.iter_mut().zip(p) {
                    *v -= p * mean;
                }
                for t in 0..per {
                    row[sel[t]] += p[sel[t]] * u(t);
                }
            }
        }
        let xcm = ArrayView2::from_shape((s.n, s.d), &xc[..]).expect("sized");
        let dh = ArrayView2::from_shape((s.n, m_count), &dh[..]).expect("sized");
        let mut gt =
            ArrayViewMut2::from_shape((m_count, s.d), &mut grad[s.r.theta.clone()]).expect("sized");
        matmul(&mut gt, &dh.t(), &xcm, T::one(), false);
    }
}

impl<T: Scalar> Pass<T> {
    /// The last batch's outputs, gates, probabilities and assignment (f64),
    /// with its loss terms `terms`.
    pub fn forward(&self, terms: LossTerms) -> Forward {
        let (n, m_count) = (self.n, self.experts);
        let per = self.kept.len() / n.max(1);
        let mut gates = Array2::zeros((n, m_count));
        for (i, mut row) in gates.rows_mut().into_iter().enumerate() {
            for t in i * per..(i + 1) * per {
                row[self.kept[t]] = self.gates[t].widen();
            }
        }
        let probs = Array2::from_shape_vec(
            (n, m_count),
            self.probs[..n * m_count]
                .iter()
                .map(|v| v.widen())
                .collect(),
        )
        .expect("sized");
        Forward {
            output: Array1::from_iter(self.output[..n].iter().map(|v| v.widen())),
            gates,
            probs,
            assigned: self.assigned[..n].to_vec(),
            terms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::model::gate::Gate;
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
            link::parse("a", "sigmoid").unwrap(),
            link::parse("a", "abs").unwrap(),
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
                gate: GateRule {
                    kind,
                    k: 2,
                    noise: 0.7,
                    renormalise,
                },
                balance: 0.3,
                z: 0.05,
            };
            let m = model(experts, neurons, d, &mut rng);
            let mut noise = Array2::zeros((n, experts));
            logit_noise(&mut noise, loss.gate.noise, &mut rng);
            let noise = noise.mapv(f64::from);
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
            gate: GateRule {
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

    /// F(x) = sum_m g_m(x) f_m(x) written out sample by sample, expert by
    /// expert, with the gates of the stated rules.
    fn reference(m: &JointModel, x: ArrayView2<f64>, loss: &JointLoss) -> (Vec<f64>, Array2<f64>) {
        let (experts, j) = (m.experts, m.neurons);
        let r = m.ranges();
        let (w, theta) = (m.w(), m.theta());
        let mut gates = Array2::zeros((x.nrows(), experts));
        let out = x
            .rows()
            .into_iter()
            .zip(gates.rows_mut())
            .map(|(x, mut g)| {
                let xc = &x - &m.centre;
                let h: Vec<f64> = theta.rows().into_iter().map(|t| t.dot(&xc)).collect();
                let z: f64 = h.iter().map(|v| v.exp()).sum();
                let p: Vec<f64> = h.iter().map(|v| v.exp() / z).collect();
                let mut order: Vec<usize> = (0..experts).collect();
                order.sort_by(|&a, &b| h[b].total_cmp(&h[a]).then(a.cmp(&b)));
                let kept = &order[..loss.gate.kept(experts)];
                let mass: f64 = kept.iter().map(|&e| p[e]).sum();
                let renormalise = loss.gate.renormalise && kept.len() < experts;
                kept.iter()
                    .map(|&e| {
                        g[e] = if renormalise { p[e] / mass } else { p[e] };
                        let f = (e * j..(e + 1) * j).fold(m.params[r.a0.start + e], |acc, u| {
                            let t = w.row(u).dot(&xc) + m.params[r.b.start + u];
                            acc + m.params[r.a.start + u] * t.max(0.0)
                        });
                        g[e] * f
                    })
                    .sum()
            })
            .collect();
        (out, gates)
    }

    /// The pass computes the model it describes, for the dense and the
    /// grouped layouts; a pass reused across batches of other sizes gives
    /// what a fresh one gives; and the f32 pass of training agrees with the
    /// f64 pass that the finite differences check.
    #[test]
    fn the_pass_computes_the_stated_model_in_both_precisions() {
        let mut rng = stream(13, StreamId::Test);
        let (n, d, experts, neurons) = (40, 6, 5, 3);
        let x = Array2::<f64>::from_shape_simple_fn((n, d), || rng.sample(StandardNormal));
        let y: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let (x32, y32) = (
            x.mapv(|v| v as f32),
            y.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        );
        let mut reused = Pass::<f32>::default();
        for (kind, k, renormalise) in [
            (Gate::Softmax, 1, false),
            (Gate::Top1, 1, false),
            (Gate::TopK, 2, false),
            (Gate::TopK, 3, true),
            (Gate::TopK, 5, true),
        ] {
            let loss = JointLoss {
                activation: JointActivation::from_link(&link::parse("a", "relu").unwrap()).unwrap(),
                gate: GateRule {
                    kind,
                    k,
                    noise: 0.0,
                    renormalise,
                },
                balance: 0.2,
                z: 0.1,
            };
            let m = model(experts, neurons, d, &mut rng);
            let (expected, gates) = reference(&m, x.view(), &loss);
            let mut grad = vec![0.0; m.params.len()];
            let fwd = m.forward(x.view(), &y, &loss, None, Some(&mut grad));
            for (a, b) in fwd.output.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-12 * (1.0 + b.abs()),
                    "{kind:?} {k}: {a} vs {b}"
                );
            }
            assert!(
                (&fwd.gates - &gates).iter().all(|v| v.abs() < 1e-14),
                "{kind:?} {k}"
            );
            // f32, through a pass that last saw another batch size and gate.
            let mut grad32 = vec![0.0f32; m.params.len()];
            let half = x32.slice(s![..n / 2, ..]);
            reused.run(&m, half, &y32[..n / 2], &loss, None, Some(&mut grad32));
            let terms = reused.run(&m, x32.view(), &y32, &loss, None, Some(&mut grad32));
            let fwd32 = reused.forward(terms);
            assert_eq!(fwd32.assigned, fwd.assigned, "{kind:?} {k}");
            let scale = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            let err = grad
                .iter()
                .zip(&grad32)
                .map(|(a, &b)| (a - b as f64).powi(2))
                .sum::<f64>();
            assert!(
                err.sqrt() < 1e-5 * scale,
                "{kind:?} {k}: gradient {} of {scale}",
                err.sqrt()
            );
            assert!((fwd32.terms.total - fwd.terms.total).abs() < 1e-5 * fwd.terms.total);
            for (a, b) in fwd32.output.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "{kind:?} {k}: {a} vs {b}"
                );
            }
        }
    }
}
