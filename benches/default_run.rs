//! The default `clustermoe run` end to end: task, both models (in parallel),
//! evaluation. Files are not written, so this measures the computation.

use std::hint::black_box;

use clustermoe::{config::Config, Experiment};
use criterion::{criterion_group, criterion_main, Criterion};

fn default_run(c: &mut Criterion) {
    let valid = Config::default().check().expect("the defaults are valid");
    let mut group = c.benchmark_group("run");
    group.sample_size(10);
    group.bench_function("default_both_models", |b| {
        b.iter(|| {
            let out = Experiment::new(black_box(&valid)).run().unwrap();
            black_box(out.summary.moe.model.error.test_rel_mse)
        })
    });
    group.finish();
}

criterion_group!(benches, default_run);
criterion_main!(benches);
