//! Seeded random streams. Each consumer (task directions, each model's
//! initialisation and data, probes, test set) gets its own non-overlapping
//! stream, so logging more often or training one model alone never changes
//! the other numbers of a run.
//!
//! A [`Stream`] is [`LANES`] xoshiro256++ generators side by side. The
//! Gaussian sampler draws from all lanes at once, one lane per pair of
//! vector slots, so its bits come from SIMD registers (see
//! `numerics::normal`); so do the task's clusters and label noise, one
//! word a sample from lane `i % 8` ([`Stream::fill_words`], and
//! `Task::sample_into` for how a word becomes a cluster and a normal);
//! every other draw (`next_u64`, `gen_range`, single normals) comes from
//! lane 0. Lane 0 of `Stream::seed_from_u64(s)` is
//! exactly `rand_xoshiro`'s `Xoshiro256PlusPlus::seed_from_u64(s)`; lane
//! `l >= 1` is that generator seeded from a SplitMix64 hash of `(s, l)`.
//! The stream is defined lane by lane, so a seed gives the same numbers
//! whether or not the machine has vector instructions.

use rand::{RngCore, SeedableRng};

use crate::numerics::kernels::{vectorised, Vectorised};
use rand_xoshiro::SplitMix64;

/// Generators side by side in one [`Stream`]: 8 x 64 bits fill one
/// AVX-512 register (two AVX2 registers).
pub const LANES: usize = 8;

/// The generator used everywhere: [`LANES`] xoshiro256++ states, stored
/// word-major (`s[k][lane]`) so that one word of every lane is one vector.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stream {
    s: [[u64; LANES]; 4],
}

/// The seed of lane `lane` of `Stream::seed_from_u64(seed)`.
pub fn lane_seed(seed: u64, lane: usize) -> u64 {
    if lane == 0 {
        return seed;
    }
    // One SplitMix64 output of a point that no small seed reaches, so no
    // lane of one seed is lane 0 of another in practice (a 2^-64 chance).
    let mut mix = SplitMix64::seed_from_u64(seed ^ (lane as u64).rotate_right(8));
    mix.next_u64()
}

impl Stream {
    /// The next 64 bits of lane `lane`.
    #[inline(always)]
    pub fn next_lane(&mut self, lane: usize) -> u64 {
        let mut state = self.lane(lane);
        let word = state.next_u64();
        self.set_lane(lane, state);
        word
    }

    /// The next words of every lane, interleaved: `words[i]` is the
    /// `(i / LANES)`-th word lane `i % LANES` draws (every lane draws
    /// `words.len() / LANES` of them, the length a multiple of [`LANES`]).
    /// One xoshiro256++ step of all lanes at a time, in vector registers;
    /// integer arithmetic, so the same words on every machine.
    pub fn fill_words(&mut self, words: &mut [u64]) {
        assert!(
            words.len().is_multiple_of(LANES),
            "whole steps of the lanes"
        );
        vectorised(LaneWords {
            state: &mut self.s,
            words,
        });
    }

    /// A copy of lane `lane` as a generator of its own, to be put back
    /// with [`Stream::set_lane`]: a loop of scalar draws keeps the copy in
    /// registers, where draws through the stream would store and reload
    /// the state every time. It draws exactly what the lane would.
    #[inline(always)]
    pub fn lane(&self, lane: usize) -> LaneState {
        LaneState {
            s: [
                self.s[0][lane],
                self.s[1][lane],
                self.s[2][lane],
                self.s[3][lane],
            ],
        }
    }

    /// Puts back a lane taken by [`Stream::lane`], with the draws made from it.
    #[inline(always)]
    pub fn set_lane(&mut self, lane: usize, state: LaneState) {
        for (word, value) in self.s.iter_mut().zip(state.s) {
            word[lane] = value;
        }
    }

    /// The state words of all lanes, word-major: what the vector paths load.
    pub(crate) fn state_mut(&mut self) -> &mut [[u64; LANES]; 4] {
        &mut self.s
    }

    /// Every lane moves on by 2^128 draws: a stream that never meets this one.
    pub fn jump(&mut self) {
        self.apply_jump(&[
            0x180e_c6d3_3cfd_0aba,
            0xd5a6_1266_f0c9_392c,
            0xa958_2618_e03f_c9aa,
            0x39ab_dc45_29b1_661c,
        ]);
    }

    /// Every lane moves on by 2^192 draws.
    pub fn long_jump(&mut self) {
        self.apply_jump(&[
            0x76e1_5d3e_fefd_cbbf,
            0xc500_4e44_1c52_2fb3,
            0x7771_0069_854e_e241,
            0x3910_9bb0_2acb_e635,
        ]);
    }

    /// xoshiro's jump: the state after the draws that the polynomial `poly` encodes.
    fn apply_jump(&mut self, poly: &[u64; 4]) {
        for lane in 0..LANES {
            let mut acc = [0u64; 4];
            for word in poly {
                for bit in 0..64 {
                    if word & (1 << bit) != 0 {
                        for (a, s) in acc.iter_mut().zip(&self.s) {
                            *a ^= s[lane];
                        }
                    }
                    self.next_lane(lane);
                }
            }
            for (s, a) in self.s.iter_mut().zip(acc) {
                s[lane] = a;
            }
        }
    }
}

impl SeedableRng for Stream {
    type Seed = [u8; 32];

    /// Lane 0 takes the seed's words as its state (all zero is mapped to
    /// `seed_from_u64(0)`, as xoshiro does); the other lanes are seeded from
    /// a hash of lane 0's first word.
    fn from_seed(seed: [u8; 32]) -> Self {
        if seed.iter().all(|&b| b == 0) {
            return Self::seed_from_u64(0);
        }
        let mut stream =
            Self::seed_from_u64(u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")));
        for (k, word) in seed.chunks_exact(8).enumerate() {
            stream.s[k][0] = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        }
        stream
    }

    fn seed_from_u64(seed: u64) -> Self {
        let mut s = [[0u64; LANES]; 4];
        for lane in 0..LANES {
            // xoshiro's own seeding: four SplitMix64 outputs.
            let mut mix = SplitMix64::seed_from_u64(lane_seed(seed, lane));
            for word in s.iter_mut() {
                word[lane] = mix.next_u64();
            }
        }
        Stream { s }
    }
}

/// Scalar draws come from lane 0.
impl RngCore for Stream {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next_lane(0) >> 32) as u32
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.next_lane(0)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let mut lane = self.lane(0);
        lane.fill_bytes(dest);
        self.set_lane(0, lane);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The body of [`Stream::fill_words`]: xoshiro256++ on every lane, the
/// lanes innermost (one vector of each state word).
struct LaneWords<'a> {
    state: &'a mut [[u64; LANES]; 4],
    words: &'a mut [u64],
}

impl Vectorised for LaneWords<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let [mut s0, mut s1, mut s2, mut s3] = *self.state;
        for out in self.words.chunks_exact_mut(LANES) {
            for l in 0..LANES {
                out[l] = s0[l]
                    .wrapping_add(s3[l])
                    .rotate_left(23)
                    .wrapping_add(s0[l]);
                let t = s1[l] << 17;
                s2[l] ^= s0[l];
                s3[l] ^= s1[l];
                s1[l] ^= s2[l];
                s0[l] ^= s3[l];
                s2[l] ^= t;
                s3[l] = s3[l].rotate_left(45);
            }
        }
        *self.state = [s0, s1, s2, s3];
    }
}

/// One lane of a [`Stream`], copied out by [`Stream::lane`]: xoshiro256++.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneState {
    s: [u64; 4],
}

impl RngCore for LaneState {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// xoshiro256++'s step.
    #[inline(always)]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Who consumes a stream; the discriminant is the number of 2^128-step jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamId {
    Task = 0,
    MoeInit = 1,
    MoeData = 2,
    VanillaInit = 3,
    VanillaData = 4,
    Probe = 5,
    Test = 6,
    Generate = 7,
}

/// The stream `id` of `seed`.
pub fn stream(seed: u64, id: StreamId) -> Stream {
    let mut rng = Stream::seed_from_u64(seed);
    for _ in 0..id as usize {
        rng.jump();
    }
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Each lane is xoshiro256++ as `rand_xoshiro` implements it, seeded
    /// from `lane_seed`, and jumps move every lane as xoshiro's jumps do.
    #[test]
    fn lanes_are_xoshiro256plusplus() {
        for seed in [0u64, 1, 7, u64::MAX] {
            let mut stream = Stream::seed_from_u64(seed);
            let mut lanes: Vec<Xoshiro256PlusPlus> = (0..LANES)
                .map(|l| Xoshiro256PlusPlus::seed_from_u64(lane_seed(seed, l)))
                .collect();
            for round in 0..3 {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    for _ in 0..5 {
                        assert_eq!(stream.next_lane(l), lane.next_u64(), "seed {seed} lane {l}");
                    }
                }
                assert_eq!(stream.next_u64(), lanes[0].next_u64());
                match round {
                    0 => {
                        stream.jump();
                        lanes.iter_mut().for_each(Xoshiro256PlusPlus::jump);
                    }
                    _ => {
                        stream.long_jump();
                        lanes.iter_mut().for_each(Xoshiro256PlusPlus::long_jump);
                    }
                }
            }
        }
    }

    /// A lane taken out draws what the stream's lane would, and putting
    /// it back leaves the stream where those draws left it.
    #[test]
    fn a_lane_taken_out_draws_the_lanes_numbers() {
        let mut stream = Stream::seed_from_u64(9);
        let mut twin = stream.clone();
        for l in [0, 3, LANES - 1] {
            let mut lane = stream.lane(l);
            let words: Vec<u64> = (0..100).map(|_| lane.next_u64()).collect();
            stream.set_lane(l, lane);
            let expected: Vec<u64> = (0..100).map(|_| twin.next_lane(l)).collect();
            assert_eq!(words, expected, "lane {l}");
            assert_eq!(stream, twin);
        }
    }

    #[test]
    fn lanes_and_streams_differ() {
        let one = Stream::seed_from_u64(1);
        for l in 0..LANES {
            for m in 0..l {
                assert_ne!(one.s[0][l], one.s[0][m]);
            }
        }
        assert_ne!(
            stream(1, StreamId::MoeData),
            stream(1, StreamId::VanillaData)
        );
        assert_ne!(Stream::seed_from_u64(1), Stream::seed_from_u64(2));
        // from_seed: lane 0 is the seed's words.
        let mut seed = [0u8; 32];
        seed[0] = 3;
        seed[31] = 9;
        let mut a = Stream::from_seed(seed);
        let mut b = Xoshiro256PlusPlus::from_seed(seed);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(Stream::from_seed([0; 32]), Stream::seed_from_u64(0));
    }
}
