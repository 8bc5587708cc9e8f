//! Every piece of code that depends on the CPU's instruction set, behind a
//! small safe API: the rest of the crate holds no `std::arch`, no
//! `#[target_feature]` and no feature detection.
//!
//! * [`Simd`]: the code paths (AVX-512, AVX2, the portable baseline) and
//!   which of them this machine runs.
//! * [`Vectorised`], [`vectorised`]: a loop of plain safe Rust, written
//!   where its algorithm lives (the sampler's projections, the spherical
//!   step, the links' Horner rule), compiled here once per instruction
//!   set and run through the widest this CPU has.
//! * [`slopes_and_sums`]: the first layer's loss slopes and running
//!   correlations, in AVX-512 registers or as vectorised slices. A loss
//!   comes in as data ([`Residual`], its coefficients), so a new loss never
//!   touches a kernel.
//! * [`ziggurat_steps`]: the fast path of the Gaussian sampler
//!   (`numerics::normal`), xoshiro256++ on eight lanes and the ziggurat's
//!   table lookups, one step of 16 normals per AVX-512 register or pair of
//!   AVX2 registers.
//! * [`exp_in_place`]: exp over f32 slices (the router's softmax), a
//!   polynomial with the same bits on every path.
//! * [`clean_upper_state`]: `vzeroupper` after faer's kernels.
//!
//! The rule of every kernel: each path performs the portable path's
//! floating-point operations in the same order, element by element, and
//! never fuses a multiply and an add (Rust never contracts `a * b + c`,
//! and the intrinsics here multiply and add separately). So every path
//! gives the same bits, and a run's outputs do not depend on the machine;
//! `tests` checks each path against the portable one on random inputs.

mod exp;
mod slopes;
#[cfg(test)]
mod tests;
mod ziggurat;

use std::sync::LazyLock;

pub(crate) use exp::exp_in_place;
pub(crate) use slopes::{slopes_and_sums, Residual, SlopeBlock};
pub(crate) use ziggurat::{
    steps as ziggurat_steps, FastTables, BLOCK, LAYERS, LAYER_BITS, SLOTS, STEPS,
};

/// The code paths of the kernels, one per instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// The portable path (the baseline of the target: SSE2 on x86-64);
    /// every machine.
    Scalar,
    /// x86-64 with AVX2.
    Avx2,
    /// x86-64 with AVX-512F.
    Avx512,
}

impl Simd {
    /// The fastest path this machine runs (detected once).
    pub fn detected() -> Simd {
        static DETECTED: LazyLock<Simd> = LazyLock::new(|| {
            [Simd::Avx512, Simd::Avx2]
                .into_iter()
                .find(|s| s.available())
                .unwrap_or(Simd::Scalar)
        });
        *DETECTED
    }

    /// Whether this machine can run the path.
    pub fn available(self) -> bool {
        match self {
            Simd::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The path's name, as `bench` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "AVX2",
            Simd::Avx512 => "AVX-512",
        }
    }
}

/// A loop of plain safe Rust that [`vectorised`] compiles for AVX-512
/// (with AVX-512VL), for AVX2 and for the baseline. The struct holds the
/// loop's arguments; [`Vectorised::run`] is its body.
pub(crate) trait Vectorised {
    /// What the loop returns.
    type Output;

    /// The loop. Implementations mark it `#[inline(always)]`: it is then
    /// compiled inside each path's `#[target_feature]` function, with that
    /// path's vector width (a body left out of line would run on the
    /// baseline whatever the CPU).
    fn run(self) -> Self::Output;
}

/// Runs `body` through the widest path this CPU has. Every path performs
/// the same operations in the same order (only wider), so the bits do
/// not depend on the path.
#[inline]
pub(crate) fn vectorised<L: Vectorised>(body: L) -> L::Output {
    vectorised_on(Simd::detected(), body)
}

/// [`vectorised`] through the path `simd`, or the widest narrower one
/// this machine runs. The AVX-512 path also needs AVX-512VL (masked and
/// 256-bit forms of the AVX-512 instructions).
#[inline]
pub(crate) fn vectorised_on<L: Vectorised>(simd: Simd, body: L) -> L::Output {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512
            if Simd::Avx512.available() && std::arch::is_x86_feature_detected!("avx512vl") =>
        {
            // SAFETY: the CPU has AVX-512F and AVX-512VL (checked above).
            unsafe { run_avx512(body) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 | Simd::Avx2 if Simd::Avx2.available() => {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { run_avx2(body) }
        }
        _ => body.run(),
    }
}

/// [`Vectorised::run`] compiled for AVX-512F and AVX-512VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn run_avx512<L: Vectorised>(body: L) -> L::Output {
    body.run()
}

/// [`Vectorised::run`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<L: Vectorised>(body: L) -> L::Output {
    body.run()
}

/// Zeroes the upper halves of the vector registers after a faer kernel.
/// faer's x86 kernels (AVX2 / AVX-512, in inline assembly) return without
/// `vzeroupper`, and while the upper state is dirty every call from this
/// crate's SSE code into a VEX-encoded libm routine (glibc's expf, logf,
/// exp, log, tanh ...) pays a state transition: measured 60 ns per expf
/// instead of 5 ns, for the rest of the thread's life. Results do not
/// change; only the transitions go.
#[inline]
pub(crate) fn clean_upper_state() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked above); vzeroupper clears
            // only bits 128 and up of the vector registers, which this
            // crate's (SSE) code never holds values in.
            unsafe { std::arch::x86_64::_mm256_zeroupper() }
        }
    }
}
