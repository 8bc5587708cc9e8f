//! Phase IV: the second layers by ridge regression on fresh samples, one
//! Cholesky solve (faer) of the normal equations of all gated features.

use faer::{linalg::solvers::Solve, Mat, Side};
use ndarray::{linalg::general_mat_mul, s, Array1, Array2, Axis};

use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::model::TwoLayer;
use crate::rng::Stream;
use crate::task::{Batch, Task};
use crate::train::Moe;

const CHUNK: usize = 4096;

/// Normal equations of a least-squares problem, accumulated chunk by chunk
/// so memory does not grow with the number of samples.
struct NormalEquations {
    gram: Array2<f64>,
    rhs: Array1<f64>,
    n: usize,
}

impl NormalEquations {
    fn new(p: usize) -> Self {
        NormalEquations {
            gram: Array2::zeros((p, p)),
            rhs: Array1::zeros(p),
            n: 0,
        }
    }

    fn add(&mut self, features: &Array2<f64>, y: &[f32]) {
        general_mat_mul(1.0, &features.t(), features, 1.0, &mut self.gram);
        let y = Array1::from_iter(y.iter().map(|&v| v as f64));
        self.rhs += &features.t().dot(&y);
        self.n += features.nrows();
    }

    /// Solves (G/n + lambda I) a = r/n.
    fn solve(&self, ridge: f64, model: &'static str) -> Result<Array1<f64>> {
        let p = self.rhs.len();
        let n = self.n as f64;
        let a = Mat::<f64>::from_fn(p, p, |i, j| self.gram[[i, j]] / n + if i == j { ridge } else { 0.0 });
        let b = Mat::<f64>::from_fn(p, 1, |i, _| self.rhs[i] / n);
        let llt = a.llt(Side::Lower).map_err(|e| Error::Readout {
            model,
            message: format!("the ridge system is not positive definite ({e:?})"),
        })?;
        let x = llt.solve(&b);
        let out = Array1::from_shape_fn(p, |i| x[(i, 0)]);
        if out.iter().any(|v| !v.is_finite()) {
            return Err(Error::Readout {
                model,
                message: "the solution is not finite".into(),
            });
        }
        Ok(out)
    }
}

/// Fits a single network's readout on `cfg.readout.samples` fresh samples.
pub fn fit_single(net: &mut TwoLayer, task: &Task, cfg: &ValidConfig, data: &mut Stream) -> Result<()> {
    let mut eq = NormalEquations::new(net.neurons() + 1);
    task.for_each_chunk(cfg.readout.samples, CHUNK, data, |b: &Batch| {
        eq.add(&net.features(b.x.view()), &b.y);
    });
    let a = eq.solve(cfg.readout.ridge, "vanilla")?;
    let j = net.neurons();
    net.a = a.slice(s![..j]).to_owned();
    net.a0 = a[j];
    Ok(())
}

/// Fits every expert's readout jointly: F(x) = sum_m pi_m(x) (a_m . phi_m(x)),
/// linear in all a_m together. With a top-1 gate the system is block diagonal,
/// so this equals one ridge per expert on the samples routed to it.
pub fn fit_moe(moe: &mut Moe, task: &Task, cfg: &ValidConfig, data: &mut Stream, noise: &mut Stream) -> Result<()> {
    let offsets: Vec<usize> = moe
        .experts
        .iter()
        .scan(0, |acc, e| {
            let start = *acc;
            *acc += e.neurons() + 1;
            Some(start)
        })
        .collect();
    let p: usize = moe.experts.iter().map(|e| e.neurons() + 1).sum();
    let mut eq = NormalEquations::new(p);
    task.for_each_chunk(cfg.readout.samples, CHUNK, data, |b: &Batch| {
        let gates = moe.router.gates(b.x.view(), &moe.gate, noise);
        let mut phi = Array2::<f64>::zeros((b.len(), p));
        for (e, expert) in moe.experts.iter().enumerate() {
            let width = expert.neurons() + 1;
            let mut block = phi.slice_mut(s![.., offsets[e]..offsets[e] + width]);
            block.assign(&expert.features(b.x.view()));
            for (mut row, &g) in block.axis_iter_mut(Axis(0)).zip(gates.column(e)) {
                row *= g as f64;
            }
        }
        eq.add(&phi, &b.y);
    });
    let a = eq.solve(cfg.readout.ridge, "moe")?;
    for (e, expert) in moe.experts.iter_mut().enumerate() {
        let j = expert.neurons();
        expert.a = a.slice(s![offsets[e]..offsets[e] + j]).to_owned();
        expert.a0 = a[offsets[e] + j];
    }
    Ok(())
}
