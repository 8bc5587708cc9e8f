//! The standard normal sampler of the hot loops: a 256-layer ziggurat
//! (Marsaglia & Tsang 2000) in f32 that makes one Gaussian from 32 random
//! bits, so two from each 64-bit output of the generator.
//!
//! Drawing the B x d Gaussians of a minibatch is half of a training step's
//! irreducible work (SPEC's algorithm is online SGD on fresh samples).
//! `rand_distr`'s `StandardNormal` spends a whole 64-bit output and f64
//! arithmetic on each f32 the training loops use; this sampler does the same
//! job in about a third of the time (`clustermoe bench` prints both).
//!
//! 8 bits pick the layer, 1 the sign and 23 the position in the layer; ~99%
//! of draws end with one integer comparison. The rest take the exact
//! rejection steps of the ziggurat (the wedges, and Marsaglia's tail
//! algorithm beyond r = 3.654). Tables and the rare `exp`/`log` calls use
//! the pure-Rust `libm`, not the platform's, so a seed gives the same
//! samples on every machine.

use std::sync::LazyLock;

use rand::RngCore;

use crate::numerics::rng::Stream;

const LAYERS: usize = 256;
/// Where the tail starts: the right edge of the base layer.
const R: f64 = 3.654_152_885_361_009;
/// The area of each layer (and of the base layer with its tail) under exp(-x^2/2).
const AREA: f64 = 4.928_673_233_99e-3;
/// 2^23: the positions within a layer.
const POSITIONS: f64 = 8_388_608.0;

/// The ziggurat's tables. Layer 0 is the base strip with the tail; layer
/// `i >= 1` is the box [0, x_i] x [f(x_i), f(x_{i-1})], x_i growing with i.
struct Tables {
    /// A draw at position p of layer i is accepted at once when p < `accept[i]`
    /// (it lies under the layer above, so under the curve).
    accept: [u32; LAYERS],
    /// x = p * `width[i]`.
    width: [f32; LAYERS],
    /// f(x_i) = exp(-x_i^2 / 2); `density[0]` = 1.
    density: [f32; LAYERS],
}

impl Tables {
    fn new() -> Self {
        let f = |x: f64| libm::exp(-0.5 * x * x);
        let mut t = Tables {
            accept: [0; LAYERS],
            width: [0.0; LAYERS],
            density: [0.0; LAYERS],
        };
        // The base strip [0, R] x [0, f(R)] plus the tail has area AREA, as if
        // it were a box of width q.
        let q = AREA / f(R);
        t.accept[0] = (R / q * POSITIONS) as u32;
        t.width[0] = (q / POSITIONS) as f32;
        t.density[0] = 1.0;
        t.width[LAYERS - 1] = (R / POSITIONS) as f32;
        t.density[LAYERS - 1] = f(R) as f32;
        let (mut x, mut outer) = (R, R);
        for i in (1..LAYERS - 1).rev() {
            x = (-2.0 * libm::log(AREA / x + f(x))).sqrt();
            t.accept[i + 1] = (x / outer * POSITIONS) as u32;
            outer = x;
            t.density[i] = f(x) as f32;
            t.width[i] = (x / POSITIONS) as f32;
        }
        // Layer 1 is the cap [0, x_1] x [f(x_1), 1]: no part of it is
        // certainly under the curve.
        t.accept[1] = 0;
        t
    }

    /// One Gaussian from the 32 bits `bits`, drawing more from `rng` only
    /// when the first draw is rejected.
    #[inline(always)]
    fn draw(&self, bits: u32, rng: &mut Stream) -> f32 {
        let layer = (bits & 0xff) as usize;
        let position = bits >> 9;
        let x = with_sign(position as f32 * self.width[layer], bits);
        if position < self.accept[layer] {
            return x;
        }
        self.rejected(layer, x, rng)
    }

    #[cold]
    #[inline(never)]
    fn rejected(&self, layer: usize, x: f32, rng: &mut Stream) -> f32 {
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
            layer = (bits & 0xff) as usize;
            let position = bits >> 9;
            x = with_sign(position as f32 * self.width[layer], bits);
            if position < self.accept[layer] {
                return x;
            }
        }
    }

    /// Marsaglia's exact sampler of the normal tail beyond R.
    fn tail(&self, negative: bool, rng: &mut Stream) -> f32 {
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

/// `x` negated when bit 8 of `bits` is set. Branch-free: the sign is a coin
/// flip, and a branch on it is mispredicted half the time (it tripled the
/// sampler's time).
#[inline(always)]
fn with_sign(x: f32, bits: u32) -> f32 {
    f32::from_bits(x.to_bits() ^ ((bits & 0x100) << 23))
}

static TABLES: LazyLock<Tables> = LazyLock::new(Tables::new);

/// Uniform on [0, 1) with 53 random bits.
fn uniform(rng: &mut Stream) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Fills `out` with independent standard normals.
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = clustermoe::numerics::rng::Stream::seed_from_u64(7);
/// let mut x = vec![0.0f32; 10_000];
/// clustermoe::internals::fill_normal(&mut rng, &mut x);
/// let mean = x.iter().sum::<f32>() / 1e4;
/// assert!(mean.abs() < 0.05);
/// ```
pub fn fill(rng: &mut Stream, out: &mut [f32]) {
    let tables = &*TABLES;
    let mut words = [0u64; BLOCK];
    for block in out.chunks_mut(2 * BLOCK) {
        // The generator's bits for a whole block first, in a loop that keeps
        // its state in registers; the rare rejections draw theirs after.
        let words = &mut words[..block.len().div_ceil(2)];
        for w in words.iter_mut() {
            *w = rng.next_u64();
        }
        let mut pairs = block.chunks_exact_mut(2);
        for (pair, &w) in (&mut pairs).zip(words.iter()) {
            pair[0] = tables.draw(w as u32, rng);
            pair[1] = tables.draw((w >> 32) as u32, rng);
        }
        if let [last] = pairs.into_remainder() {
            *last = tables.draw((words[words.len() - 1] >> 32) as u32, rng);
        }
    }
}

/// 64-bit words drawn ahead by [`fill`]: 2 KiB on the stack.
const BLOCK: usize = 256;

/// One standard normal.
pub fn sample(rng: &mut Stream) -> f32 {
    TABLES.draw((rng.next_u64() >> 32) as u32, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

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

    #[test]
    fn tables_tile_the_curve() {
        let t = &*TABLES;
        let f = |x: f64| (-0.5 * x * x).exp();
        // Every layer i >= 1 has the same area: x_i (f(x_{i-1}) - f(x_i)).
        for i in 1..LAYERS {
            let x = t.width[i] as f64 * POSITIONS;
            let area = x * (t.density[i - 1] as f64 - t.density[i] as f64);
            assert!((area / AREA - 1.0).abs() < 1e-4, "layer {i}: area {area}");
        }
        // The cap closes at f = 1, and the boxes cover the half curve
        // (area sqrt(pi / 2)) with 99.33% of their area: the share of first
        // draws under the curve.
        let x1 = t.width[1] as f64 * POSITIONS;
        assert!((x1 * (1.0 - f(x1)) / AREA - 1.0).abs() < 1e-4);
        let half = (std::f64::consts::PI / 2.0).sqrt();
        let efficiency = half / (LAYERS as f64 * AREA);
        assert!((efficiency - 0.9933).abs() < 1e-4, "{efficiency}");
        // The x_i grow and the densities fall with the layer.
        for i in 2..LAYERS {
            assert!(t.width[i] > t.width[i - 1]);
            assert!(t.density[i] < t.density[i - 1]);
            // Accepted at once: x < x_{i-1}, to the f32 rounding of the widths.
            let edge = t.width[i - 1] as f64 / t.width[i] as f64 * POSITIONS;
            assert!((t.accept[i] as f64 - edge).abs() <= 2.0, "layer {i}");
        }
        assert!(f(R) > 0.0 && (t.density[LAYERS - 1] as f64 - f(R)).abs() < 1e-9);
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
