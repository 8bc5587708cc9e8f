//! The fast path of the Gaussian sampler (`numerics::normal`, which
//! defines the stream and builds the tables): whole steps of [`SLOTS`]
//! normals, each from 32 bits of one lane's xoshiro256++ word, accepted at
//! once or marked for the sampler's rejection steps. The portable path
//! draws one lane at a time; the AVX-512 path runs a step in one register,
//! the AVX2 path in two; all give the same bits.

use super::Simd;
use crate::numerics::rng::{Stream, LANES};

/// Layers of the ziggurat.
pub(crate) const LAYERS: usize = 512;
/// The bits of a draw that pick its layer.
pub(crate) const LAYER_BITS: u32 = LAYERS as u32 - 1;
/// Normals per step: two from each lane's 64-bit word.
pub(crate) const SLOTS: usize = 2 * LANES;
/// Steps per block: the rejected draws of a block take their extra bits
/// after its steps, so the steps run without a branch.
pub(crate) const STEPS: usize = 32;
/// Normals per block.
pub(crate) const BLOCK: usize = SLOTS * STEPS;

/// The tables of the ziggurat that its fast path reads. Layer 0 is the
/// base strip with the tail; layer `i >= 1` is the box [0, x_i] x
/// [f(x_i), f(x_{i-1})], x_i growing with i.
pub(crate) struct FastTables {
    /// A draw at position p of layer i is accepted at once when p < `accept[i]`
    /// (it lies under the layer above, so under the curve).
    pub accept: [u32; LAYERS],
    /// x = p * `width[i]`.
    pub width: [f32; LAYERS],
    /// `width[i]`'s bits in the low half, `accept[i]` in the high half: one
    /// 64-bit gather fetches both (gathers cost per element).
    pub packed: [u64; LAYERS],
}

impl FastTables {
    /// The fast path: the candidate x of the 32 bits `bits` (9 pick the
    /// layer, bit 9 the sign, the top 22 the position in the layer), and
    /// whether it is accepted without more bits. The vector paths compute
    /// exactly this.
    #[inline(always)]
    pub fn candidate(&self, bits: u32) -> (f32, bool) {
        let layer = (bits & LAYER_BITS) as usize;
        let position = bits >> 10;
        let x = with_sign(position as f32 * self.width[layer], bits);
        (x, position < self.accept[layer])
    }
}

/// `x` negated when bit 9 of `bits` is set. Branch-free: the sign is a coin
/// flip, and a branch on it is mispredicted half the time (it tripled the
/// sampler's time).
#[inline(always)]
fn with_sign(x: f32, bits: u32) -> f32 {
    f32::from_bits(x.to_bits() ^ ((bits & 0x200) << 22))
}

/// The fast path of `out.len() / SLOTS` whole steps through the path
/// `simd` (the portable one where this machine cannot run it): step `t`
/// draws one word from each lane, writes the candidates of its 16 slots
/// (slot `j`: half `j % 2` of lane `j / 2`'s word) to `out[16 t..]`, their
/// bits to `bits[16 t..]`, and sets bit `j` of `rejected[t]` for each slot
/// the fast path rejects.
pub(crate) fn steps(
    simd: Simd,
    tables: &FastTables,
    rng: &mut Stream,
    out: &mut [f32],
    bits: &mut [u32; BLOCK],
    rejected: &mut [u16; STEPS],
) {
    assert!(
        out.len() <= BLOCK && out.len().is_multiple_of(SLOTS),
        "whole steps"
    );
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F; `out` holds whole steps (checked).
        Simd::Avx512 if simd.available() => unsafe {
            x86::steps_avx512(tables, rng, out, bits, rejected)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2; `out` holds whole steps (checked).
        Simd::Avx2 if simd.available() => unsafe {
            x86::steps_avx2(tables, rng, out, bits, rejected)
        },
        _ => steps_portable(tables, rng, out, bits, rejected),
    }
}

/// [`steps`] one lane at a time.
fn steps_portable(
    tables: &FastTables,
    rng: &mut Stream,
    out: &mut [f32],
    bits: &mut [u32; BLOCK],
    rejected: &mut [u16; STEPS],
) {
    for (t, step) in out.chunks_exact_mut(SLOTS).enumerate() {
        let mut mask = 0u16;
        for lane in 0..LANES {
            let word = rng.next_lane(lane);
            for half in 0..2 {
                let j = 2 * lane + half;
                let b = (word >> (32 * half)) as u32;
                bits[t * SLOTS + j] = b;
                let (x, accepted) = tables.candidate(b);
                step[j] = x;
                mask |= u16::from(!accepted) << j;
            }
        }
        rejected[t] = mask;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The fast path with one step (16 normals) per AVX-512 register or two
    //! AVX2 registers: xoshiro256++ on eight lanes, the table lookups as
    //! gathers, and the rejected slots as a bit mask.
    use std::arch::x86_64::*;

    use super::{FastTables, BLOCK, LAYER_BITS, SLOTS, STEPS};
    use crate::numerics::rng::Stream;

    /// [`super::steps`] with a step in one AVX-512 register.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX-512F; `out` must hold whole steps.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn steps_avx512(
        tables: &FastTables,
        rng: &mut Stream,
        out: &mut [f32],
        bits: &mut [u32; BLOCK],
        rejected: &mut [u16; STEPS],
    ) {
        let state = rng.state_mut();
        // SAFETY: unaligned loads and stores of whole arrays of 8 u64 / 16
        // u32 / 16 f32, in bounds since `out` holds whole steps of SLOTS
        // and at most BLOCK; the gathers index 512-entry tables with the
        // low 9 bits.
        unsafe {
            let load = |w: &[u64; 8]| _mm512_loadu_si512(w.as_ptr().cast());
            let (mut s0, mut s1, mut s2, mut s3) = (
                load(&state[0]),
                load(&state[1]),
                load(&state[2]),
                load(&state[3]),
            );
            let layer_bits = _mm512_set1_epi32(LAYER_BITS as i32);
            let sign_bit = _mm512_set1_epi32(0x200);
            let evens =
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            for (t, step) in out.chunks_exact_mut(SLOTS).enumerate() {
                let word = _mm512_add_epi64(_mm512_rol_epi64::<23>(_mm512_add_epi64(s0, s3)), s0);
                let shifted = _mm512_slli_epi64::<17>(s1);
                s2 = _mm512_xor_si512(s2, s0);
                s3 = _mm512_xor_si512(s3, s1);
                s1 = _mm512_xor_si512(s1, s2);
                s0 = _mm512_xor_si512(s0, s3);
                s2 = _mm512_xor_si512(s2, shifted);
                s3 = _mm512_rol_epi64::<45>(s3);
                // Little-endian: 32-bit slot j of the register is half j % 2
                // of lane j / 2's word.
                _mm512_storeu_si512(bits.as_mut_ptr().add(t * SLOTS).cast(), word);
                let layer = _mm512_and_si512(word, layer_bits);
                let position = _mm512_srli_epi32::<10>(word);
                // (width, accept) of slots 0-7 and of slots 8-15, then
                // the widths and the accepts of all 16 slots.
                let packed = tables.packed.as_ptr().cast();
                let low = _mm512_i32gather_epi64::<8>(_mm512_castsi512_si256(layer), packed);
                let high =
                    _mm512_i32gather_epi64::<8>(_mm512_extracti64x4_epi64::<1>(layer), packed);
                let width = _mm512_castsi512_ps(_mm512_permutex2var_epi32(low, evens, high));
                let accept = _mm512_permutex2var_epi32(low, odds, high);
                let x = _mm512_mul_ps(_mm512_cvtepi32_ps(position), width);
                let sign = _mm512_slli_epi32::<22>(_mm512_and_si512(word, sign_bit));
                let x = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign));
                _mm512_storeu_ps(step.as_mut_ptr(), x);
                rejected[t] = !_mm512_cmplt_epi32_mask(position, accept);
            }
            let store = |w: &mut [u64; 8], v| _mm512_storeu_si512(w.as_mut_ptr().cast(), v);
            store(&mut state[0], s0);
            store(&mut state[1], s1);
            store(&mut state[2], s2);
            store(&mut state[3], s3);
        }
    }

    /// [`super::steps`] with a step in two AVX2 registers.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2; `out` must hold whole steps.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn steps_avx2(
        tables: &FastTables,
        rng: &mut Stream,
        out: &mut [f32],
        bits: &mut [u32; BLOCK],
        rejected: &mut [u16; STEPS],
    ) {
        #[inline(always)]
        fn rotl<const L: i32, const R: i32>(v: __m256i) -> __m256i {
            // SAFETY: AVX2 is enabled by the caller.
            unsafe { _mm256_or_si256(_mm256_slli_epi64::<L>(v), _mm256_srli_epi64::<R>(v)) }
        }
        let state = rng.state_mut();
        // SAFETY: as in `steps_avx512`, with lanes 0-3 in the first register
        // of each pair and lanes 4-7 in the second.
        unsafe {
            let load =
                |w: &[u64; 8], half: usize| _mm256_loadu_si256(w.as_ptr().add(4 * half).cast());
            // s[h] = (s0, s1, s2, s3) of lanes 4h to 4h + 3.
            let mut s = [[_mm256_setzero_si256(); 4]; 2];
            for (h, half) in s.iter_mut().enumerate() {
                for (k, words) in state.iter().enumerate() {
                    half[k] = load(words, h);
                }
            }
            let layer_bits = _mm256_set1_epi32(LAYER_BITS as i32);
            let sign_bit = _mm256_set1_epi32(0x200);
            for (t, step) in out.chunks_exact_mut(SLOTS).enumerate() {
                let mut mask = 0u16;
                for (h, half) in s.iter_mut().enumerate() {
                    let [s0, s1, s2, s3] = *half;
                    let word = _mm256_add_epi64(rotl::<23, 41>(_mm256_add_epi64(s0, s3)), s0);
                    let shifted = _mm256_slli_epi64::<17>(s1);
                    let s2 = _mm256_xor_si256(s2, s0);
                    let s3 = _mm256_xor_si256(s3, s1);
                    let s1 = _mm256_xor_si256(s1, s2);
                    let s0 = _mm256_xor_si256(s0, s3);
                    let s2 = _mm256_xor_si256(s2, shifted);
                    let s3 = rotl::<45, 19>(s3);
                    *half = [s0, s1, s2, s3];
                    let at = t * SLOTS + 8 * h;
                    _mm256_storeu_si256(bits.as_mut_ptr().add(at).cast(), word);
                    let layer = _mm256_and_si256(word, layer_bits);
                    let position = _mm256_srli_epi32::<10>(word);
                    let width = _mm256_i32gather_ps::<4>(tables.width.as_ptr(), layer);
                    let x = _mm256_mul_ps(_mm256_cvtepi32_ps(position), width);
                    let sign = _mm256_slli_epi32::<22>(_mm256_and_si256(word, sign_bit));
                    let x = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(x), sign));
                    _mm256_storeu_ps(step.as_mut_ptr().add(8 * h), x);
                    let accept = _mm256_i32gather_epi32::<4>(tables.accept.as_ptr().cast(), layer);
                    let taken = _mm256_cmpgt_epi32(accept, position);
                    let taken = _mm256_movemask_ps(_mm256_castsi256_ps(taken)) as u16;
                    mask |= (!taken & 0xff) << (8 * h);
                }
                rejected[t] = mask;
            }
            let store = |w: &mut [u64; 8], half: usize, v| {
                _mm256_storeu_si256(w.as_mut_ptr().add(4 * half).cast(), v)
            };
            for (k, words) in state.iter_mut().enumerate() {
                store(words, 0, s[0][k]);
                store(words, 1, s[1][k]);
            }
        }
    }
}
