//! exp over f32 slices in vector registers: the router's softmax takes
//! 512 exponentials a phase-II step, which glibc's `expf` makes one call at
//! a time.
//!
//! The function: n = round(x log2 e) (by adding and subtracting 1.5 2^23,
//! round to nearest even, in plain adds that every path has), r = x - n ln 2
//! in two parts (Cody and Waite; n times the high part is exact), exp(r) on
//! [-ln 2 / 2, ln 2 / 2] by Cephes' degree-7 polynomial, then the power of
//! two in two exact steps (2^(n/2) twice), so that results that fall below
//! f32's smallest normal round once, like expf's. Below the least f32
//! exp(x) rounds to (x < -103.98) the result is 0, above the largest
//! (x > 88.72) it is infinity; NaN stays NaN. Within about one ulp of the
//! exact value (the kernels' tests check 2 ulp against f64 `exp`).
//!
//! Every operation is a plain add, multiply, compare or select, in the
//! same order for each element, so the AVX-512, AVX2 and portable paths
//! give the same bits.

use super::{vectorised, Vectorised};

/// log2 e.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 2^23: adding and subtracting it rounds to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// ln 2 = LN2_HI + LN2_LO; LN2_HI (355 / 512) has 9 significant bits, so n LN2_HI is
/// exact for every n in range.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' coefficients of (exp(r) - 1 - r) / r^2, highest first.
const POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// Above this exp overflows f32.
const HIGH: f32 = 88.722_84;
/// Below this exp rounds to 0 in f32 (half the least subnormal).
const LOW: f32 = -103.972_08;

/// exp(x) in f32, the element rule of [`exp_in_place`] (the same bits).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Clamped so that n stays within [-150, 128]; the selects below
    // replace what the clamp changed.
    let xc = x.clamp(LOW, HIGH);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = POLY[0];
    for &c in &POLY[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    // 2^n = 2^h 2^(n - h), each factor a normal power of two.
    // n as an integer, from the bits of n + 1.5 2^23 (whose last bits
    // hold n): no float-to-integer conversion, which would need NaN's case.
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let h = n >> 1;
    let scale = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let e = y * scale(h) * scale(n - h);
    if x > HIGH {
        f32::INFINITY
    } else if x < LOW {
        0.0
    } else if x.is_nan() {
        x
    } else {
        e
    }
}

/// exp of every element of `v`, in place, through the widest path this
/// CPU has (see the module's description: the same bits on every path).
pub(crate) fn exp_in_place(v: &mut [f32]) {
    vectorised(ExpSlice(v));
}

/// The body of [`exp_in_place`].
pub(super) struct ExpSlice<'a>(pub(super) &'a mut [f32]);

impl Vectorised for ExpSlice<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for v in self.0.iter_mut() {
            *v = exp(*v);
        }
    }
}
