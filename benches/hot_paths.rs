//! The hot paths of a training step at d in {32, 128, 512}, at the default
//! batch (64) and widths (M = 8 phase-I experts, M J = 64 neurons, K = 2
//! routed experts): the Gaussian sampler beside `rand_distr`'s, drawing a
//! minibatch, a phase-I step (with whitening),
//! a phase-III step (routing, gathering, one SGD step per expert), a router
//! step, and the readout's normal equations and solve.

use std::hint::black_box;
use std::time::Duration;

use clustermoe::internals::{
    centre_rows, fill_normal, fit_readout, random_directions, router_gradient, stream, GateRule,
    InputMap, NeuronSign, Routed, Router, SphereStep, Stream, StreamId, TwoLayer,
};
use clustermoe::{
    config::{Config, Loss},
    task::{Batch, Task},
    ValidConfig,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use rand::Rng;
use rand_distr::StandardNormal;

const DIMS: [usize; 3] = [32, 128, 512];
const BATCH: usize = 64;
/// Phase-I experts M.
const EXPERTS: usize = 8;
/// All neurons M J.
const NEURONS: usize = 64;
/// Routed experts K.
const ROUTED: usize = 2;
const H3: [f64; 4] = [0.0, 0.0, 0.0, 1.0];

fn setup(d: usize) -> (ValidConfig, Task, Stream) {
    setup_with(d, |_| {})
}

fn setup_with(d: usize, change: impl FnOnce(&mut Config)) -> (ValidConfig, Task, Stream) {
    let mut config = Config::default();
    config.task.d = d;
    change(&mut config);
    let cfg = config.check().expect("valid");
    let task = Task::new(&cfg, &mut stream(1, StreamId::Task));
    (cfg, task, stream(1, StreamId::MoeData))
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(BATCH as u64));
    g
}

fn sample_batch(c: &mut Criterion) {
    let mut g = group(c, "sample_batch");
    for d in DIMS {
        let (_, task, mut rng) = setup(d);
        let mut batch = Batch::new(BATCH, d);
        g.bench_with_input(BenchmarkId::from_parameter(d), &d, |b, _| {
            b.iter(|| {
                task.sample_into(&mut batch, &mut rng);
                black_box(&batch.y);
            })
        });
    }
    g.finish();
}

/// The B x d Gaussians of one batch: clustermoe's f32 ziggurat
/// (`internals::fill_normal`) against `rand_distr`'s `StandardNormal`, one at a time.
fn gaussians(c: &mut Criterion) {
    let mut g = c.benchmark_group("gaussians");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for d in DIMS {
        let mut rng = stream(1, StreamId::MoeData);
        let mut x = vec![0.0f32; BATCH * d];
        g.throughput(Throughput::Elements(x.len() as u64));
        g.bench_with_input(BenchmarkId::new("normal_fill", d), &d, |b, _| {
            b.iter(|| {
                fill_normal(&mut rng, &mut x);
                black_box(&x);
            })
        });
        g.bench_with_input(BenchmarkId::new("rand_distr", d), &d, |b, _| {
            b.iter(|| {
                for v in x.iter_mut() {
                    *v = rng.sample(StandardNormal);
                }
                black_box(&x);
            })
        });
    }
    g.finish();
}

fn phase_one_step(c: &mut Criterion) {
    let mut g = group(c, "phase_one_step");
    for d in DIMS {
        let (_, task, mut rng) = setup(d);
        let map = InputMap::estimate(task.sample(4096, &mut rng).x, true);
        let mut u = random_directions(EXPERTS, d, &mut rng);
        let mut sgd = SphereStep::new(&H3, Loss::Correlation, NeuronSign::Learned, EXPERTS);
        let mut batch = Batch::new(BATCH, d);
        g.bench_with_input(BenchmarkId::from_parameter(d), &d, |b, _| {
            b.iter(|| {
                task.sample_into(&mut batch, &mut rng);
                centre_rows(batch.x.view_mut(), &map.centre);
                let moved = sgd.step(
                    &mut u,
                    map.whiten.as_ref(),
                    batch.x.view(),
                    &batch.y,
                    None,
                    1e-3,
                );
                black_box(moved)
            })
        });
    }
    g.finish();
}

fn routed_router(d: usize, rng: &mut Stream) -> Router {
    let mut router = Router::zeros(ROUTED, d);
    router.theta = Array2::from_shape_simple_fn((ROUTED, d), || rng.sample(StandardNormal));
    router
}

fn phase_three_step(c: &mut Criterion) {
    let mut g = group(c, "phase_three_step");
    let rule = GateRule {
        kind: clustermoe::config::Gate::Top1,
        k: 1,
        noise: 0.0,
        renormalise: true,
    };
    for d in DIMS {
        let (_, task, mut rng) = setup(d);
        let router = routed_router(d, &mut rng);
        let centres: Vec<_> = (0..ROUTED).map(|_| ndarray::Array1::zeros(d)).collect();
        let mut neurons: Vec<Array2<f32>> = (0..ROUTED)
            .map(|_| random_directions(NEURONS / ROUTED, d, &mut rng))
            .collect();
        let mut sgd: Vec<SphereStep> = (0..ROUTED)
            .map(|_| {
                SphereStep::new(
                    &H3,
                    Loss::Correlation,
                    NeuronSign::Learned,
                    NEURONS / ROUTED,
                )
            })
            .collect();
        let mut batch = Batch::new(BATCH, d);
        let mut gates = Array2::zeros((BATCH, ROUTED));
        let mut routed = Routed::default();
        let mut noise = stream(2, StreamId::MoeInit);
        g.bench_with_input(BenchmarkId::from_parameter(d), &d, |b, _| {
            b.iter(|| {
                task.sample_into(&mut batch, &mut rng);
                router.gates_into(batch.x.view(), &rule, &mut noise, &mut gates);
                for (e, w) in neurons.iter_mut().enumerate() {
                    if routed.gather(&batch, gates.column(e), &centres[e]) > 0 {
                        sgd[e].step(w, None, routed.x(d), &routed.y, None, 1e-3);
                    }
                }
                black_box(&neurons);
            })
        });
    }
    g.finish();
}

fn router_step(c: &mut Criterion) {
    let mut g = group(c, "router_step");
    for d in DIMS {
        let (_, task, mut rng) = setup(d);
        let mut router = routed_router(d, &mut rng);
        let lead = random_directions(ROUTED, d, &mut rng);
        let mut batch = Batch::new(BATCH, d);
        g.bench_with_input(BenchmarkId::from_parameter(d), &d, |b, _| {
            b.iter(|| {
                task.sample_into(&mut batch, &mut rng);
                let mut rewards = batch.x.dot(&lead.t());
                for (mut row, &y) in rewards.rows_mut().into_iter().zip(&batch.y) {
                    row.mapv_inplace(|t| y * (t * t * t - 3.0 * t));
                }
                let grad = router_gradient(&router.theta, batch.x.view(), &rewards);
                router.theta.scaled_add(0.02, &grad);
                black_box(&router.theta);
            })
        });
    }
    g.finish();
}

fn readout_solve(c: &mut Criterion) {
    let mut g = c.benchmark_group("readout_fit");
    g.sample_size(10).warm_up_time(Duration::from_millis(300));
    for d in DIMS {
        let (cfg, task, mut rng) = setup_with(d, |c| c.readout.samples = 8192.into());
        g.throughput(Throughput::Elements(cfg.readout().samples as u64));
        // The vanilla readout: M J directions, each with 4 random biases.
        let rows = NEURONS * cfg.readout().moe.biases;
        let mut net = TwoLayer {
            w: random_directions(rows, d, &mut rng),
            centre: ndarray::Array1::zeros(d),
            bias: ndarray::Array1::from_shape_simple_fn(rows, || rng.gen_range(-3.0..3.0)),
            a: ndarray::Array1::zeros(rows),
            a0: 0.0,
        };
        g.bench_with_input(BenchmarkId::from_parameter(d), &d, |b, _| {
            b.iter(|| {
                fit_readout(&mut net, &task, &cfg, &mut rng).expect("solvable");
                black_box(net.a0)
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    gaussians,
    sample_batch,
    phase_one_step,
    phase_three_step,
    router_step,
    readout_solve
);
criterion_main!(benches);
