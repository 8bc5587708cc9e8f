//! Seeded random streams. Each consumer (task directions, each model's
//! initialisation and data, probes, test set) gets its own non-overlapping
//! xoshiro256++ stream, so logging more often or training one model alone
//! never changes the other numbers of a run.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator used everywhere.
pub type Stream = Xoshiro256PlusPlus;

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
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for _ in 0..id as usize {
        rng.jump();
    }
    rng
}
