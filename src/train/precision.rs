//! Training runs in f32 (the samples, directions and products); this checks
//! that it costs no accuracy: phase-I SGD in f32, with the whitening moved
//! onto the directions, follows a plain f64 implementation that whitens
//! every batch, step for step on the same samples.

use ndarray::{Array2, Axis};

use crate::config::{Config, Loss};
use crate::model::{random_directions, InputMap, NeuronSign, SphereStep};
use crate::numerics::linalg::centre_rows;
use crate::numerics::rng::{stream, StreamId};
use crate::task::{Batch, Task};

/// h_3(t) = (t^3 - 3t)/sqrt(6), and its derivative.
fn h3_slope(t: f64) -> f64 {
    (3.0 * t * t - 3.0) / 6f64.sqrt()
}

/// One spherical step of the correlation loss -y h_3(<w, x>), all in f64.
fn step_f64(w: &mut Array2<f64>, x: &Array2<f64>, y: &[f64], lr: f64) {
    let n = x.nrows() as f64;
    let mut coef = x.dot(&w.t());
    for (mut row, &yi) in coef.axis_iter_mut(Axis(0)).zip(y) {
        row.mapv_inplace(|t| -yi * h3_slope(t) / n);
    }
    let grad = coef.t().dot(x);
    for (mut row, g) in w.axis_iter_mut(Axis(0)).zip(grad.axis_iter(Axis(0))) {
        let radial = row.dot(&g);
        row.zip_mut_with(&g, |wi, &gi| *wi -= lr * (gi - radial * *wi));
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
}

#[test]
fn f32_phase_one_follows_f64() {
    let cfg = Config::default().check().unwrap();
    let task = Task::new(&cfg, &mut stream(cfg.seed(), StreamId::Task));
    let mut data = stream(cfg.seed(), StreamId::MoeData);
    let map = InputMap::estimate(task.sample(4096, &mut data).x, true);
    let whiten64 = map.whiten.as_ref().unwrap().dense(task.d);

    let mut w32 = random_directions(8, task.d, &mut stream(cfg.seed(), StreamId::MoeInit));
    let mut w64 = w32.mapv(|v| v as f64);
    let mut sgd = SphereStep::new(
        &[0.0, 0.0, 0.0, 1.0],
        Loss::Correlation,
        NeuronSign::Positive,
        8,
    );
    let mut batch = Batch::new(64, task.d);
    let lr = 0.003;
    for _ in 0..6000 {
        task.sample_into(&mut batch, &mut data);
        centre_rows(batch.x.view_mut(), &map.centre);
        let x64 = batch.x.mapv(|v| v as f64).dot(&whiten64);
        let y64: Vec<f64> = batch.y.iter().map(|&v| v as f64).collect();
        assert!(sgd.step(
            &mut w32,
            map.whiten.as_ref(),
            batch.x.view(),
            &batch.y,
            None,
            lr as f32
        ));
        step_f64(&mut w64, &x64, &y64, lr);
    }
    let w32 = w32.mapv(|v| v as f64);
    let gap = (&w32 - &w64).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(gap < 2e-3, "largest coordinate gap {gap}");
    // Learning happened (otherwise agreement would say little): with
    // positive signs a direction whose starting overlap has the wrong sign
    // may not be found in 6000 steps, but some cluster's is.
    let best = |w: &Array2<f64>, c: usize| {
        w.axis_iter(Axis(0))
            .map(|r| r.dot(&task.w.row(c)).abs())
            .fold(0.0, f64::max)
    };
    let found = (0..task.clusters())
        .filter(|&c| best(&w64, c) > 0.9)
        .count();
    assert!(found >= 1, "no cluster found in f64");
    for c in 0..task.clusters() {
        assert!(
            (best(&w32, c) - best(&w64, c)).abs() < 1e-3,
            "cluster {c}: f32 {} vs f64 {}",
            best(&w32, c),
            best(&w64, c)
        );
    }
}
