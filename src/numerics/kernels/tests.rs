//! Every kernel's paths give the portable path's bits: on random inputs,
//! at lengths that are and are not multiples of the vector widths (8 and
//! 16 lanes), through each path this machine runs.

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::slopes::SlopeRows;
use super::*;
use crate::model::activation::Loss;
use crate::numerics::rng::{stream, Stream, StreamId};

/// The paths this machine runs, the portable one first.
fn paths() -> Vec<Simd> {
    let paths: Vec<Simd> = [Simd::Scalar, Simd::Avx2, Simd::Avx512]
        .into_iter()
        .filter(|s| s.available())
        .collect();
    eprintln!("paths checked: {paths:?}");
    paths
}

/// `n` standard normals times `scale`.
fn normals(rng: &mut Stream, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| scale * rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// Horner's rule at one point with the slice rule's operations.
fn horner_one(coefficients: &[f32], t: f32) -> f32 {
    let (last, rest) = coefficients.split_last().expect("non-empty coefficients");
    rest.iter().rev().fold(*last, |acc, &a| acc * t + a)
}

/// The slopes and the sums of a pass.
type Slopes = (Vec<f32>, Vec<f64>);

/// The slopes and sums of `block`, one element at a time: `slope(d, v, a,
/// y, scale)` makes each slope from sigma'(t), sigma(t), the sign, the label
/// and `weight / total`.
fn slopes_one_by_one(block: SlopeBlock, slope: impl Fn(f32, f32, f32, f32, f32) -> f32) -> Slopes {
    let j = block.signs.len();
    let (mut out, mut sums) = (vec![0.0f32; block.t.len()], vec![0.5f64; j]);
    for (i, &y) in block.y.iter().enumerate() {
        let w = block.weights.map_or(1.0, |ws| ws[i]);
        for k in 0..j {
            let (t, a) = (block.t[i * j + k], block.signs[k]);
            let (d, v) = (
                horner_one(block.derivative, t),
                horner_one(block.monomial, t),
            );
            out[i * j + k] = slope(d, v, a, y, w / block.total);
            sums[k] += (w * y) as f64 * v as f64;
        }
    }
    (out, sums)
}

/// Every path of `block`: the dispatched kernel, the vectorised slices
/// through each path, the AVX-512 registers; each with its name.
fn slope_paths(block: SlopeBlock) -> Vec<(String, Slopes)> {
    let j = block.signs.len();
    let fresh = || (vec![0.0f32; block.t.len()], vec![0.5f64; j]);
    let mut runs = Vec::new();
    let (mut out, mut sums) = fresh();
    slopes_and_sums(block, &mut out, &mut sums);
    runs.push(("dispatched".to_string(), (out, sums)));
    for simd in paths() {
        let (mut out, mut sums) = fresh();
        let rows = SlopeRows {
            block,
            out: &mut out,
            sums: &mut sums,
        };
        vectorised_on(simd, rows);
        runs.push((format!("slices, {simd:?}"), (out, sums)));
    }
    #[cfg(target_arch = "x86_64")]
    if Simd::Avx512.available() {
        let (mut out, mut sums) = fresh();
        // SAFETY: the CPU has AVX-512F; `out` and `sums` have the block's shapes.
        unsafe { super::slopes::x86::slopes_avx512(block, &mut out, &mut sums) };
        runs.push(("AVX-512 registers".to_string(), (out, sums)));
    }
    runs
}

/// The slopes and sums of every path (AVX-512 registers, the vectorised
/// slices on each path, one element at a time) agree bit for bit, for
/// both losses, with and without weights, at widths with and without a
/// remainder beyond whole registers, and wider than one chunk of columns.
/// Each loss's coefficients give exactly its former rule: -a y sigma'
/// as `sigma' * ((-y scale) a)`, the squared loss's as `sigma' * (-(a y -
/// sigma) scale)`; and any other coefficients agree across the paths.
#[test]
fn every_slope_path_gives_the_same_bits() {
    let mut rng = stream(8, StreamId::Test);
    let (monomial, derivative) = (normals(&mut rng, 5, 1.0), normals(&mut rng, 4, 1.0));
    for j in [1usize, 15, 16, 17, 37, 64, 100] {
        let n = 9;
        let t = normals(&mut rng, n * j, 1.5);
        let y = normals(&mut rng, n, 1.0);
        let ws: Vec<f32> = (0..n).map(|_| rng.gen_range(0.1..1.0)).collect();
        let signs: Vec<f32> = (0..j)
            .map(|k| if k % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let other = Residual {
            label: 0.7,
            output: 1.3,
        };
        for residual in [
            Loss::Correlation.residual(),
            Loss::Squared.residual(),
            other,
        ] {
            for weights in [None, Some(&ws[..])] {
                let total = weights.map_or(n as f32, |w| w.iter().sum());
                let block = SlopeBlock {
                    monomial: &monomial,
                    derivative: &derivative,
                    residual,
                    y: &y,
                    weights,
                    total,
                    signs: &signs,
                    t: &t,
                };
                let want = slopes_one_by_one(block, |d, v, a, y, si| {
                    if residual == Loss::Correlation.residual() {
                        d * (-y * si * a)
                    } else if residual == Loss::Squared.residual() {
                        d * (-(a * y - v) * si)
                    } else {
                        d * ((a * (residual.label * y) + residual.output * v) * -si)
                    }
                });
                for (path, got) in slope_paths(block) {
                    assert_eq!(got, want, "{path}, j = {j}, {residual:?}");
                }
            }
        }
    }
}

/// Random tables of the ziggurat's shape (positions below 2^22 accepted
/// or not, positive widths), `packed` consistent with the others.
fn random_tables(rng: &mut Stream) -> FastTables {
    let mut tables = FastTables {
        accept: [0; LAYERS],
        width: [0.0; LAYERS],
        packed: [0; LAYERS],
    };
    for i in 0..LAYERS {
        tables.accept[i] = rng.gen_range(0..1u32 << 22);
        tables.width[i] = rng.gen_range(1e-7f32..1e-6);
        tables.packed[i] = u64::from(tables.width[i].to_bits()) | u64::from(tables.accept[i]) << 32;
    }
    tables
}

/// Each path of the sampler's fast path writes the portable path's
/// candidates, bits and rejection masks, and leaves the stream where the
/// portable path does, for runs of whole steps up to a block.
#[test]
fn every_ziggurat_path_gives_the_portable_bits() {
    let tables = random_tables(&mut stream(9, StreamId::Test));
    for seed in [1u64, 2, 99] {
        for steps in [1usize, 2, 5, 16, 31, STEPS] {
            let run = |simd: Simd| {
                let mut rng = Stream::seed_from_u64(seed);
                let mut out = vec![0.0f32; steps * SLOTS];
                let (mut bits, mut rejected) = ([0u32; BLOCK], [0u16; STEPS]);
                ziggurat_steps(simd, &tables, &mut rng, &mut out, &mut bits, &mut rejected);
                let out: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
                (out, bits.to_vec(), rejected.to_vec(), rng)
            };
            let want = run(Simd::Scalar);
            assert!(want.2.iter().any(|&m| m != 0), "some draws are rejected");
            for simd in paths() {
                assert!(run(simd) == want, "{simd:?}, seed {seed}, {steps} steps");
            }
        }
    }
}

/// Row lengths around the vector widths, and longer.
const LENGTHS: [usize; 9] = [1, 3, 7, 8, 15, 16, 17, 33, 100];

/// The links' Horner rule at many points gives the same bits on each path.
#[test]
fn every_horner_points_path_gives_the_same_bits() {
    use crate::numerics::link::HornerPoints;
    let mut rng = stream(10, StreamId::Test);
    let c: Vec<f64> = (0..6).map(|_| rng.sample(StandardNormal)).collect();
    for n in LENGTHS {
        let t: Vec<f64> = (0..n)
            .map(|_| 2.0 * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let run = |simd: Simd| {
            let mut out = vec![0.0f64; n];
            vectorised_on(
                simd,
                HornerPoints {
                    c: &c,
                    t: &t,
                    out: &mut out,
                },
            );
            out.iter().map(|x| x.to_bits()).collect::<Vec<u64>>()
        };
        let want = run(Simd::Scalar);
        for simd in paths() {
            assert_eq!(run(simd), want, "{simd:?}, {n} points");
        }
    }
}

/// The spherical step's rows give the same bits on each path, with steps
/// both shortened to `max_step` and not.
#[test]
fn every_sphere_step_path_gives_the_same_bits() {
    use crate::model::sphere::StepRows;
    let mut rng = stream(11, StreamId::Test);
    for d in LENGTHS {
        let rows = 5;
        let w0 = normals(&mut rng, rows * d, 1.0);
        let grad = normals(&mut rng, rows * d, 3.0);
        for max_step in [f32::INFINITY, 0.05] {
            let run = |simd: Simd| {
                let mut w = w0.clone();
                let step = StepRows {
                    w: &mut w,
                    grad: &grad,
                    d,
                    lr: 0.1,
                    max_step,
                };
                let finite = vectorised_on(simd, step);
                (finite, w.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
            };
            let want = run(Simd::Scalar);
            for simd in paths() {
                assert_eq!(run(simd), want, "{simd:?}, d = {d}, max_step {max_step}");
            }
        }
    }
}

/// The sampler's shift, projections and centring give the same bits on
/// each path, with and without a centre.
#[test]
fn every_shift_and_project_path_gives_the_same_bits() {
    use crate::task::ShiftAndProject;
    let mut rng = stream(12, StreamId::Test);
    let (n, clusters) = (7, 3);
    for d in LENGTHS {
        let x0 = normals(&mut rng, n * d, 1.0);
        let cluster: Vec<usize> = (0..n).map(|_| rng.gen_range(0..clusters)).collect();
        let centres = normals(&mut rng, clusters * d, 1.0);
        let directions = normals(&mut rng, (clusters + 1) * d, 1.0);
        let mu = normals(&mut rng, d, 0.3);
        for centre in [None, Some(&mu[..])] {
            let run = |simd: Simd| {
                let (mut x, mut local, mut global) = (x0.clone(), vec![0.0; n], vec![0.0; n]);
                let body = ShiftAndProject {
                    x: &mut x,
                    d,
                    clusters: &cluster,
                    rho: 1.7,
                    centres: &centres,
                    directions: &directions,
                    centre,
                    local: &mut local,
                    global: &mut global,
                };
                vectorised_on(simd, body);
                [x, local, global].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
            };
            let want = run(Simd::Scalar);
            for simd in paths() {
                assert_eq!(run(simd), want, "{simd:?}, d = {d}");
            }
        }
    }
}

/// The vector exp gives the same bits on each path, at every length and
/// over the whole range (NaN, infinities, overflow, subnormal results).
#[test]
fn every_exp_path_gives_the_same_bits() {
    use super::exp::ExpSlice;
    let mut rng = stream(13, StreamId::Test);
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        88.72,
        88.73,
        -87.4,
        -103.9,
        -104.0,
    ];
    for n in LENGTHS {
        let mut x0 = normals(&mut rng, n, 40.0);
        for (v, s) in x0.iter_mut().zip(specials) {
            *v = s;
        }
        let run = |simd: Simd| {
            let mut v = x0.clone();
            vectorised_on(simd, ExpSlice(&mut v));
            v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
        };
        let want = run(Simd::Scalar);
        let one: Vec<u32> = x0.iter().map(|&x| super::exp::exp(x).to_bits()).collect();
        assert_eq!(one, want, "the element rule, {n} points");
        for simd in paths() {
            assert_eq!(run(simd), want, "{simd:?}, {n} points");
        }
    }
}

/// The distance in ulps between two finite f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

/// The vector exp is within 2 ulp of exp (f64, rounded to f32) over the
/// whole range of f32 results, subnormals included, and overflows,
/// underflows and passes NaN where expf does.
#[test]
fn the_vector_exp_is_within_two_ulp() {
    use super::exp::exp;
    let (lo, hi) = (-103.9f32, 88.72f32);
    let steps = 2_000_000;
    let mut worst = (0, 0.0f32);
    for i in 0..=steps {
        let x = lo + (hi - lo) * (i as f32 / steps as f32);
        let want = (x as f64).exp() as f32;
        let got = exp(x);
        let e = ulps(got, want);
        if e > worst.0 {
            worst = (e, x);
        }
    }
    assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
    for x in [-1e-30f32, 1e-30, -1e-8, 1e-8, -0.0, 0.0] {
        assert_eq!(exp(x), 1.0, "{x}");
    }
    assert_eq!(exp(88.73), f32::INFINITY);
    assert_eq!(exp(1000.0), f32::INFINITY);
    assert_eq!(exp(f32::INFINITY), f32::INFINITY);
    assert_eq!(exp(-104.0), 0.0);
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    assert!(exp(f32::NAN).is_nan());
    // Where expf's result is the least subnormal and where it is the
    // largest finite f32.
    assert_eq!(exp(-103.27), (-103.27f32 as f64).exp() as f32);
    assert_eq!(exp(88.72), (88.72f32 as f64).exp() as f32);
}
