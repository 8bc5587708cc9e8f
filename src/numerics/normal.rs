//! The standard normal sampler of the hot loops: a 512-layer ziggurat
//! (Marsaglia & Tsang 2000) in f32 that makes one Gaussian from 32 random
//! bits, so two from each 64-bit output of a generator, drawn from the
//! [`LANES`](crate::numerics::rng::LANES) generators of a [`Stream`] at once in vector registers.
//!
//! Drawing the B x d Gaussians of a minibatch is half of a training step's
//! irreducible work (the algorithm is online SGD on fresh samples).
//! `rand_distr`'s `StandardNormal` spends a whole 64-bit output and f64
//! arithmetic on each f32 the training loops use; this sampler does the same
//! job several times faster (`clustermoe bench` prints both).
//!
//! 9 bits pick the layer, 1 the sign and 22 the position in the layer;
//! 99.2% of draws end with one integer comparison (98.5% with 256 layers:
//! the other draws' rejection steps cost about 30 ns each, so they were
//! most of the sampler's time). The rest take the exact
//! rejection steps of the ziggurat (the wedges, and Marsaglia's tail
//! algorithm beyond r = 3.852). Tables and the rare `exp`/`log` calls use
//! the pure-Rust `libm`, not the platform's.
//!
//! # The stream, lane by lane
//!
//! [`fill`] cuts its output into blocks of [`BLOCK`] = 512 normals. Normal
//! `i` of a block sits in step `t = i / 16`, slot `j = i % 16`, and takes the
//! bits `(w >> 32 (j % 2)) as u32` of the `t`-th word `w` that lane `j / 2`
//! draws in that block; every lane draws `ceil(len / 16)` words for a block
//! of `len` normals before anything else. A draw the fast path rejects then
//! takes its rejection steps from its own lane, in the order of `i`. This
//! defines every number without reference to vector width: the AVX-512 path
//! (one step in one register), the AVX2 path (two registers) and the scalar
//! path give the same bits on every machine, which `tests` checks against a
//! lane-by-lane reference built from `rand_xoshiro`. The fast path's steps
//! (all three paths) are kernels, in `numerics::kernels`; the tables, the
//! blocks and the rejection steps are here.

use std::sync::LazyLock;

use rand::RngCore;

use crate::numerics::kernels::{
    ziggurat_steps, FastTables, BLOCK, LAYERS, LAYER_BITS, SLOTS, STEPS,
};
use crate::numerics::rng::{LaneState, Stream};

/// The sampler's code paths, one per instruction set (the kernels').
pub use crate::numerics::kernels::Simd;

/// Where the tail starts: the right edge of the base layer.
const R: f64 = 3.852_046_150_368_391;
/// The area of each layer (and of the base layer with its tail) under exp(-x^2/2).
const AREA: f64 = 2.456_766_351_541_356e-3;
/// 2^22: the positions within a layer.
const POSITIONS: f64 = 4_194_304.0;

/// The ziggurat's tables: those of the fast path ([`FastTables`]: layer 0
/// is the base strip with the tail; layer `i >= 1` is the box [0, x_i] x
/// [f(x_i), f(x_{i-1})], x_i growing with i) and the densities of the
/// rejection steps.
struct Tables {
    /// The layers' widths and acceptance bounds, which the fast path reads.
    fast: FastTables,
    /// f(x_i) = exp(-x_i^2 / 2); `density[0]` = 1.
    density: [f32; LAYERS],
}

impl Tables {
    fn new() -> Self {
        let f = |x: f64| libm::exp(-0.5 * x * x);
        let mut t = FastTables {
            accept: [0; LAYERS],
            width: [0.0; LAYERS],
            packed: [0; LAYERS],
        };
        let mut density = [0.0; LAYERS];
        // The base strip [0, R] x [0, f(R)] plus the tail has area AREA, as if
        // it were a box of width q.
        let q = AREA / f(R);
        t.accept[0] = (R / q * POSITIONS) as u32;
        t.width[0] = (q / POSITIONS) as f32;
        density[0] = 1.0;
        t.width[LAYERS - 1] = (R / POSITIONS) as f32;
        density[LAYERS - 1] = f(R) as f32;
        let (mut x, mut outer) = (R, R);
        for i in (1..LAYERS - 1).rev() {
            x = (-2.0 * libm::log(AREA / x + f(x))).sqrt();
            t.accept[i + 1] = (x / outer * POSITIONS) as u32;
            outer = x;
            density[i] = f(x) as f32;
            t.width[i] = (x / POSITIONS) as f32;
        }
        // Layer 1 is the cap [0, x_1] x [f(x_1), 1]: no part of it is
        // certainly under the curve.
        t.accept[1] = 0;
        for i in 0..LAYERS {
            t.packed[i] = u64::from(t.width[i].to_bits()) | u64::from(t.accept[i]) << 32;
        }
        Tables { fast: t, density }
    }

    /// The fast path ([`FastTables::candidate`]): the candidate x of the 32
    /// bits `bits`, and whether it is accepted without more bits.
    #[inline(always)]
    fn candidate(&self, bits: u32) -> (f32, bool) {
        self.fast.candidate(bits)
    }

    /// One Gaussian from the 32 bits `bits`, drawing more from `rng` only
    /// when the first draw is rejected.
    #[inline(always)]
    fn draw<R: RngCore>(&self, bits: u32, rng: &mut R) -> f32 {
        match self.candidate(bits) {
            (x, true) => x,
            (x, false) => self.rejected((bits & LAYER_BITS) as usize, x, rng),
        }
    }

    /// The rejection steps of a candidate `x` from layer `layer`.
    #[cold]
    #[inline(never)]
    fn rejected<R: RngCore>(&self, layer: usize, x: f32, rng: &mut R) -> f32 {
        let (mut layer, mut x) = (layer, x);
        loop {
            if layer == 0 {
                return self.tail(x.is_sign_negative(), rng);
            }
            let (below, above) = (self.density[layer], self.density[layer - 1]);
            let y = below + (above - below) * uniform(rng) as f32;
            if y < libm::expf(-0.5 * x * x) {
                return x;
            }
            let bits = (rng.next_u64() >> 32) as u32;
            layer = (bits & LAYER_BITS) as usize;
            let accepted;
            (x, accepted) = self.candidate(bits);
            if accepted {
                return x;
            }
        }
    }

    /// Marsaglia's exact sampler of the normal tail beyond R.
    fn tail<R: RngCore>(&self, negative: bool, rng: &mut R) -> f32 {
        loop {
            // -log(1 - U) with U in [0, 1): finite, unlike -log(U).
            let beyond = -libm::log1p(-uniform(rng)) / R;
            let y = -libm::log1p(-uniform(rng));
            if 2.0 * y > beyond * beyond {
                let x = (R + beyond) as f32;
                return if negative { -x } else { x };
            }
        }
    }
}

static TABLES: LazyLock<Tables> = LazyLock::new(Tables::new);

/// Uniform on [0, 1) with 53 random bits.
fn uniform<R: RngCore>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Fills `out` with independent standard normals, through the fastest path
/// of this machine; every path gives the same numbers (see the module and
/// its tests, which also check the law of what it draws).
pub fn fill(rng: &mut Stream, out: &mut [f32]) {
    fill_with(Simd::detected(), rng, out);
}

/// [`fill`] through the path `simd`, or the scalar path where this machine
/// cannot run it.
pub fn fill_with(simd: Simd, rng: &mut Stream, out: &mut [f32]) {
    let tables = &*TABLES;
    let simd = if simd.available() { simd } else { Simd::Scalar };
    let mut scratch = Scratch {
        bits: [0; BLOCK],
        rejected: [0; STEPS],
        partial: [0.0; BLOCK],
    };
    for block in out.chunks_mut(BLOCK) {
        let steps = block.len().div_ceil(SLOTS);
        // The vector paths write whole steps: a last partial block goes
        // through a buffer.
        let whole = block.len() == steps * SLOTS;
        let Scratch {
            bits,
            rejected,
            partial,
        } = &mut scratch;
        let dst: &mut [f32] = if whole {
            &mut *block
        } else {
            &mut partial[..steps * SLOTS]
        };
        ziggurat_steps(simd, &tables.fast, rng, dst, bits, rejected);
        if !whole {
            block.copy_from_slice(&partial[..block.len()]);
        }
        redraw_rejected(tables, rng, block, bits, &rejected[..steps]);
    }
}

/// A block's bits, its rejected slots (bit j of step t) and the buffer of
/// a partial block: 4.2 KiB on the stack.
struct Scratch {
    bits: [u32; BLOCK],
    rejected: [u16; STEPS],
    partial: [f32; BLOCK],
}

/// The rejection steps of the slots the fast path rejected, in the order
/// of the output, each from its own lane.
fn redraw_rejected(
    tables: &Tables,
    rng: &mut Stream,
    out: &mut [f32],
    bits: &[u32; BLOCK],
    rejected: &[u16],
) {
    for (t, &mask) in rejected.iter().enumerate() {
        let mut mask = mask;
        while mask != 0 {
            let j = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let i = t * SLOTS + j;
            if i >= out.len() {
                break;
            }
            let mut lane = rng.lane(j / 2);
            out[i] = tables.rejected((bits[i] & LAYER_BITS) as usize, out[i], &mut lane);
            rng.set_lane(j / 2, lane);
        }
    }
}

#[cold]
#[inline(never)]
fn rejected_lane(tables: &Tables, bits: u32, x: f32, mut lane: LaneState) -> (f32, LaneState) {
    let x = tables.rejected((bits & LAYER_BITS) as usize, x, &mut lane);
    (x, lane)
}

/// One standard normal from the 32 bits `bits` that lane `lane` of `rng`
/// drew: the fast path's candidate, or, when it is rejected, the rejection
/// steps with further draws from that lane.
#[inline(always)]
pub fn from_lane_bits(bits: u32, rng: &mut Stream, lane: usize) -> f32 {
    let tables = &*TABLES;
    match tables.candidate(bits) {
        (x, true) => x,
        (x, false) => {
            let (x, after) = rejected_lane(tables, bits, x, rng.lane(lane));
            rng.set_lane(lane, after);
            x
        }
    }
}

/// One standard normal, from lane 0.
pub fn sample(rng: &mut Stream) -> f32 {
    TABLES.draw((rng.next_u64() >> 32) as u32, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::rng::{lane_seed, LANES};
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn draws(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = Stream::seed_from_u64(seed);
        let mut x = vec![0.0f32; n];
        fill(&mut rng, &mut x);
        x
    }

    /// Phi(x) from libm's erfc, accurate in the tails.
    fn phi(x: f64) -> f64 {
        0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    /// The stream as the module's documentation defines it, lane by lane,
    /// with `rand_xoshiro`'s generators in place of the stream's lanes.
    fn reference(lanes: &mut [Xoshiro256PlusPlus], n: usize) -> Vec<f32> {
        let tables = &*TABLES;
        let mut out = vec![0.0f32; n];
        for block in out.chunks_mut(BLOCK) {
            let steps = block.len().div_ceil(SLOTS);
            let words: Vec<Vec<u64>> = lanes
                .iter_mut()
                .map(|g| (0..steps).map(|_| g.next_u64()).collect())
                .collect();
            for (i, v) in block.iter_mut().enumerate() {
                let (t, j) = (i / SLOTS, i % SLOTS);
                let bits = (words[j / 2][t] >> (32 * (j % 2))) as u32;
                *v = tables.draw(bits, &mut lanes[j / 2]);
            }
        }
        out
    }

    #[test]
    fn every_path_gives_the_reference_bits() {
        let paths: Vec<Simd> = [Simd::Scalar, Simd::Avx2, Simd::Avx512]
            .into_iter()
            .filter(|s| s.available())
            .collect();
        eprintln!("paths checked: {paths:?}");
        let lengths = [
            0,
            1,
            2,
            15,
            16,
            17,
            31,
            511,
            512,
            513,
            1000,
            3 * BLOCK + 7,
            300_000,
        ];
        for seed in [1u64, 2, 99] {
            for simd in &paths {
                let mut lanes: Vec<Xoshiro256PlusPlus> = (0..LANES)
                    .map(|l| Xoshiro256PlusPlus::seed_from_u64(lane_seed(seed, l)))
                    .collect();
                let mut rng = Stream::seed_from_u64(seed);
                // Consecutive calls of many lengths: each starts its own blocks.
                for &n in &lengths {
                    let mut got = vec![0.0f32; n];
                    fill_with(*simd, &mut rng, &mut got);
                    let want = reference(&mut lanes, n);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{simd:?}, seed {seed}, length {n}");
                }
                // The lanes end where the reference's do, lane 0 included.
                assert_eq!(rng.next_u64(), lanes[0].next_u64(), "{simd:?}");
                assert_eq!(rng.next_lane(LANES - 1), lanes[LANES - 1].next_u64());
            }
        }
        // The 300,000 draws took every kind of step: wedges and the tail.
        let x = draws(1, 300_000);
        assert!(x.iter().any(|v| (v.abs() as f64) > R), "no tail draw");
        let t = &*TABLES;
        let mut bits = Stream::seed_from_u64(1);
        let rejected = (0..300_000)
            .filter(|_| !t.candidate(bits.next_u32()).1)
            .count();
        assert!(rejected > 1000, "{rejected} rejections");
    }

    #[test]
    fn tables_tile_the_curve() {
        let t = &*TABLES;
        let f = |x: f64| (-0.5 * x * x).exp();
        // Every layer i >= 1 has the same area: x_i (f(x_{i-1}) - f(x_i)).
        for i in 1..LAYERS {
            let x = t.fast.width[i] as f64 * POSITIONS;
            let area = x * (t.density[i - 1] as f64 - t.density[i] as f64);
            assert!((area / AREA - 1.0).abs() < 1e-4, "layer {i}: area {area}");
        }
        // The cap closes at f = 1, and the boxes cover the half curve
        // (area sqrt(pi / 2)) with 99.64% of their area: the share of first
        // draws under the curve.
        let x1 = t.fast.width[1] as f64 * POSITIONS;
        assert!((x1 * (1.0 - f(x1)) / AREA - 1.0).abs() < 1e-4);
        let half = (std::f64::consts::PI / 2.0).sqrt();
        let efficiency = half / (LAYERS as f64 * AREA);
        assert!((efficiency - 0.9964).abs() < 1e-4, "{efficiency}");
        // The x_i grow and the densities fall with the layer.
        for i in 2..LAYERS {
            assert!(t.fast.width[i] > t.fast.width[i - 1]);
            assert!(t.density[i] < t.density[i - 1]);
            // Accepted at once: x < x_{i-1}, to the f32 rounding of the widths.
            let edge = t.fast.width[i - 1] as f64 / t.fast.width[i] as f64 * POSITIONS;
            assert!((t.fast.accept[i] as f64 - edge).abs() <= 2.0, "layer {i}");
        }
        assert!(f(R) > 0.0 && (t.density[LAYERS - 1] as f64 - f(R)).abs() < 1e-9);
    }

    /// A normal from the bits of a lane's word is the one `sample` draws
    /// from that lane (one word, rejections included), and leaves the
    /// stream where `sample` would; `fill_words` draws each lane's words
    /// in turn.
    #[test]
    fn normals_from_a_lanes_bits_are_the_lanes() {
        use crate::numerics::rng::LANES;
        let mut stream = Stream::seed_from_u64(4);
        let mut lanes: Vec<LaneState> = (0..LANES).map(|l| stream.lane(l)).collect();
        // Enough draws that several are rejected (0.8 % of them).
        let n = 8 * 5000;
        let mut words = vec![0u64; n];
        stream.fill_words(&mut words);
        let drawn: Vec<u32> = words
            .iter()
            .enumerate()
            .map(|(i, &w)| from_lane_bits((w >> 32) as u32, &mut stream, i % LANES).to_bits())
            .collect();
        // Lane by lane: the lane's words first, then, sample by sample, a
        // rejected normal's further draws from the same lane.
        let mut expected = vec![0u32; n];
        for (l, lane) in lanes.iter_mut().enumerate() {
            let own: Vec<u64> = (0..n / LANES).map(|_| lane.next_u64()).collect();
            for (t, w) in own.iter().enumerate() {
                assert_eq!(*w, words[t * LANES + l], "word {t} of lane {l}");
                expected[t * LANES + l] = TABLES.draw((w >> 32) as u32, lane).to_bits();
            }
        }
        assert_eq!(drawn, expected);
        let rejected = words
            .iter()
            .filter(|&&w| !TABLES.candidate((w >> 32) as u32).1)
            .count();
        assert!(rejected > 100, "{rejected} rejections");
        for (l, lane) in lanes.into_iter().enumerate() {
            assert_eq!(stream.lane(l), lane, "lane {l}");
        }
    }

    #[test]
    fn draws_follow_the_standard_normal() {
        let n = 2_000_000;
        let mut x: Vec<f64> = draws(1, n).into_iter().map(f64::from).collect();
        let nf = n as f64;
        let mean = x.iter().sum::<f64>() / nf;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / nf;
        let kurt = x.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / nf / var.powi(2);
        // Standard errors: 1/sqrt(n) = 7e-4, sqrt(2/n) = 1e-3, sqrt(24/n) = 3.5e-3.
        assert!(mean.abs() < 4e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 6e-3, "variance {var}");
        assert!((kurt - 3.0).abs() < 2e-2, "kurtosis {kurt}");
        // Kolmogorov–Smirnov: the 0.1% critical value is 1.95 / sqrt(n).
        x.sort_by(f64::total_cmp);
        let ks = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let p = phi(v);
                (p - i as f64 / nf)
                    .abs()
                    .max(((i + 1) as f64 / nf - p).abs())
            })
            .fold(0.0, f64::max);
        assert!(ks < 1.95 / nf.sqrt(), "KS distance {ks}");
    }

    #[test]
    fn wedges_and_tail_have_the_right_mass() {
        // Counts in bins where the slow paths decide: the layer edges near
        // the top (the cap), the middle wedges, and beyond the tail start R.
        let n = 4_000_000;
        let x = draws(2, n);
        let nf = n as f64;
        let bins: [(f64, f64); 5] = [
            (0.0, 0.2),
            (1.0, 1.1),
            (2.5, 2.6),
            (R, 4.0),
            (4.0, f64::INFINITY),
        ];
        for (lo, hi) in bins {
            let p = 2.0 * (phi(hi) - phi(lo));
            let expected = p * nf;
            let seen = x
                .iter()
                .filter(|v| (v.abs() as f64) >= lo && (v.abs() as f64) < hi)
                .count() as f64;
            // Five binomial standard deviations.
            let sd = (nf * p * (1.0 - p)).sqrt();
            assert!(
                (seen - expected).abs() < 5.0 * sd,
                "|x| in [{lo}, {hi}): {seen} draws, expected {expected:.1} +- {sd:.1}"
            );
        }
        let negative_tail = x.iter().filter(|&&v| (v as f64) < -R).count() as f64;
        let positive_tail = x.iter().filter(|&&v| (v as f64) > R).count() as f64;
        let tail = negative_tail + positive_tail;
        assert!(
            (negative_tail - positive_tail).abs() < 5.0 * tail.sqrt(),
            "{negative_tail} vs {positive_tail}"
        );
    }

    #[test]
    fn a_seed_gives_the_same_draws_and_pairs_are_independent() {
        assert_eq!(draws(3, 1001), draws(3, 1001));
        assert_ne!(draws(3, 1001), draws(4, 1001));
        // An odd length draws its last value as one more single draw.
        let mut rng = Stream::seed_from_u64(3);
        let mut one = [0.0f32; 1];
        fill(&mut rng, &mut one);
        assert!(one[0].is_finite());
        // The two halves of each 64-bit output are uncorrelated.
        let x = draws(5, 1_000_000);
        let lag: f64 = x
            .chunks_exact(2)
            .map(|p| p[0] as f64 * p[1] as f64)
            .sum::<f64>()
            / 500_000.0;
        assert!(lag.abs() < 6e-3, "pair correlation {lag}");
        let mut rng = Stream::seed_from_u64(6);
        let single: Vec<f32> = (0..10_000).map(|_| sample(&mut rng)).collect();
        let m = single.iter().map(|&v| v as f64).sum::<f64>() / 1e4;
        assert!(m.abs() < 0.04, "mean of single draws {m}");
    }
}
