//! Link functions `f: R -> R` of the targets, as Hermite expansions
//! `f(t) = sum_i beta_i h_i(t)` (see [`crate::numerics::hermite`]) or named functions.
//!
//! # Grammar of [`parse`]
//!
//! Whitespace around the spec and between its parts is ignored, names are
//! case-insensitive, numbers are Rust `f64` literals (`0.5`, `.5`, `1e-3`,
//! `2E+1`) and must be finite.
//!
//! | spec | link |
//! | --- | --- |
//! | `hN`, `hermiteN` (`0 <= N <= 30`) | `h_N` |
//! | `h3-0.5*h5`, `-h3 + 2*h4`, `1e-1*h5`, `h1+-1*h3` | a sum of terms, see below |
//! | `hermite:c0,c1,...` | `sum_i c_i h_i` |
//! | `monomial:c0,c1,...` | `sum_i c_i t^i`, converted exactly to Hermite coefficients |
//! | `relu`, `tanh`, `abs`, `sign`, `sigmoid` | the named function ([`NamedLink`]) |
//! | `square`, `cube` | `t^2`, `t^3` (stored as Hermite coefficients) |
//!
//! A sum of terms is `[sign] term (sign term)*` with `sign` one of `+`, `-`
//! and `term` either `hN` or `c*hN`: terms are joined by `+` or `-`, the
//! first may carry a sign (`-h3+h5`), and a coefficient `c` may carry its own
//! sign after the joining one (`h3+-0.5*h5`, `h3 - -0.5*h5`). Any other pair
//! of signs (`--h3`, `h3 -- h5`), a dangling sign (`h3-`, `-`), a `*` without
//! a coefficient (`h3-*h5`) or a number without `*hN` is an error. The `-`
//! of an exponent belongs to its number: `h3-1e-1*h5` is `h3 - 0.1 h5`.
//! Repeated degrees add up (`h3+h3` is `2 h3`). In the `hermite:` and
//! `monomial:` lists a sign may be followed by spaces (`- 0.5`).
//!
//! Degrees are at most [`MAX_DEGREE`]. A constant link (every coefficient of
//! degree >= 1 within [`ZERO_TOLERANCE`] of 0) is rejected: it carries no
//! signal and has no information exponent. [`Link`]'s `Display` writes a
//! canonical spec that [`parse`] reads back to an equal link.
//!
//! About 400 lines of links and their coefficients (closed forms, quadrature,
//! Hermite series), then tests of each against an independent computation.

use std::f64::consts::PI;
use std::fmt;
use std::sync::OnceLock;

mod parse;
/// Parses a link spec (the grammar above).
pub use parse::parse;
use parse::trim_trailing_zeros;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::numerics::hermite::{
    hermite_all, hermite_series, hermite_series_derivative, GaussHermite,
};
use crate::numerics::kernels::{vectorised, Vectorised};

/// The largest polynomial degree [`parse`] accepts.
pub const MAX_DEGREE: usize = 30;

/// Hermite coefficients at most this large in absolute value count as zero
/// when deciding whether a link is constant and what its information
/// exponent is.
pub const ZERO_TOLERANCE: f64 = 1e-12;

/// Points of the quadrature rule for smooth named links: far more than needed
/// for coefficients up to [`MAX_DEGREE`] of `tanh` and `sigmoid`.
const QUADRATURE_POINTS: usize = 200;

/// What [`parse`] accepts, for error messages.
const FORMS: &str = "relu, tanh, abs, sign, sigmoid, square, cube, hN or hermiteN with N <= 30, \
                     a sum such as h3-0.5*h5 or -h3+2*h4, hermite:c0,c1,... or monomial:c0,c1,...";

/// A link function.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// `sum_i coeffs[i] h_i(t)` in the normalised Hermite basis.
    Hermite(Vec<f64>),
    /// A named function, polynomial or not.
    Named(NamedLink),
}

/// The named non-polynomial links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedLink {
    /// `max(t, 0)`.
    Relu,
    /// `tanh(t)`.
    Tanh,
    /// `|t|`.
    Abs,
    /// `sign(t)`, with `sign(0) = 0`.
    Sign,
    /// `1 / (1 + exp(-t))`.
    Sigmoid,
}

impl NamedLink {
    /// Every named link, in the order error messages list them.
    pub const ALL: [NamedLink; 5] = [Self::Relu, Self::Tanh, Self::Abs, Self::Sign, Self::Sigmoid];

    /// The lowercase name that [`parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Abs => "abs",
            Self::Sign => "sign",
            Self::Sigmoid => "sigmoid",
        }
    }

    /// The function's value at `t`.
    pub fn eval(self, t: f64) -> f64 {
        match self {
            Self::Relu => t.max(0.0),
            Self::Tanh => t.tanh(),
            Self::Abs => t.abs(),
            Self::Sign => sign(t),
            Self::Sigmoid => 1.0 / (1.0 + (-t).exp()),
        }
    }

    /// The derivative at `t`; `None` for `sign`, whose derivative is a Dirac
    /// mass. At the kink `t = 0`, `relu' = 0` and `abs' = 0`.
    pub fn derivative(self, t: f64) -> Option<f64> {
        Some(match self {
            Self::Relu => f64::from(u8::from(t > 0.0)),
            Self::Tanh => 1.0 - t.tanh().powi(2),
            Self::Abs => sign(t),
            Self::Sign => return None,
            Self::Sigmoid => {
                let s = self.eval(t);
                s * (1.0 - s)
            }
        })
    }

    /// `E[f(Z) h_i(Z)]` for `i <= max_degree`.
    ///
    /// The kinked links have closed forms, because quadrature converges
    /// slowly across a kink. With `phi(0) = 1/sqrt(2 pi)` and
    /// `(He_{n-1} phi)' = -He_n phi`:
    /// - `sign`: `E[sign He_n] = 2 He_{n-1}(0) phi(0)`, so
    ///   `c_n = 2 phi(0) h_{n-1}(0) / sqrt(n)` for `n >= 1`;
    /// - `relu`: `c_0 = phi(0)`, `c_1 = 1/2` and, from
    ///   `t He_n = He_{n+1} + n He_{n-1}` and `He_n(0) = -(n-1) He_{n-2}(0)`,
    ///   `c_n = phi(0) h_{n-2}(0) / sqrt(n (n-1))` for `n >= 2`;
    /// - `abs = 2 relu - t`.
    ///
    /// Odd `h_i(0)` are exactly 0, so parity zeros are exact. The smooth links
    /// use a 200-point Gauss–Hermite rule (accurate to ~1e-14 here), and
    /// coefficients within [`ZERO_TOLERANCE`] of 0 are set to exactly 0.
    fn hermite_coefficients(self, max_degree: usize) -> Vec<f64> {
        let phi0 = 1.0 / (2.0 * PI).sqrt();
        let mut at_zero = vec![0.0; max_degree + 1];
        hermite_all(0.0, &mut at_zero);
        let relu = |n: usize| match n {
            0 => phi0,
            1 => 0.5,
            _ => phi0 * at_zero[n - 2] / ((n * (n - 1)) as f64).sqrt(),
        };
        match self {
            Self::Relu => (0..=max_degree).map(relu).collect(),
            Self::Abs => (0..=max_degree)
                .map(|n| if n == 1 { 0.0 } else { 2.0 * relu(n) })
                .collect(),
            Self::Sign => (0..=max_degree)
                .map(|n| match n {
                    0 => 0.0,
                    _ => 2.0 * phi0 * at_zero[n - 1] / (n as f64).sqrt(),
                })
                .collect(),
            Self::Tanh | Self::Sigmoid => {
                let rule = quadrature_rule();
                let mut h = vec![0.0; max_degree + 1];
                let mut c = vec![0.0; max_degree + 1];
                for (&x, &w) in rule.nodes.iter().zip(&rule.weights) {
                    hermite_all(x, &mut h);
                    let wf = w * self.eval(x);
                    for (c, h) in c.iter_mut().zip(&h) {
                        *c += wf * h;
                    }
                }
                for c in &mut c {
                    if c.abs() <= ZERO_TOLERANCE {
                        *c = 0.0;
                    }
                }
                c
            }
        }
    }

    /// `E[f(Z)^2]`.
    fn second_moment(self) -> f64 {
        match self {
            Self::Relu => 0.5,
            Self::Abs | Self::Sign => 1.0,
            Self::Tanh | Self::Sigmoid => quadrature_rule().expect(|t| self.eval(t).powi(2)),
        }
    }
}

impl fmt::Display for NamedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `sign(t)` with `sign(0) = 0` (unlike [`f64::signum`]) and `sign(NaN) = NaN`.
fn sign(t: f64) -> f64 {
    if t > 0.0 {
        1.0
    } else if t < 0.0 {
        -1.0
    } else {
        t * 0.0
    }
}

/// The shared quadrature rule for smooth named links, built once.
fn quadrature_rule() -> &'static GaussHermite {
    static RULE: OnceLock<GaussHermite> = OnceLock::new();
    RULE.get_or_init(|| GaussHermite::new(QUADRATURE_POINTS))
}

/// A link made ready for the sampler's hot loop: a Hermite link of low
/// degree as monomial coefficients evaluated by Horner's rule (a third of
/// the recurrence's dependent multiplications), anything else as itself.
#[derive(Clone, Debug)]
pub enum FastLink {
    /// Monomial coefficients a_0 .. a_n, evaluated by Horner's rule.
    Horner(Vec<f64>),
    /// Any other link, evaluated as itself.
    Other(Link),
}

/// Up to this degree the monomial form is as accurate as the recurrence at
/// the arguments a task produces (|t| of a few units); its coefficients
/// grow with the degree and cancel.
const HORNER_DEGREE: usize = 8;

impl FastLink {
    /// `f(t)`, equal to [`Link::eval`] up to rounding.
    #[inline]
    pub fn eval(&self, t: f64) -> f64 {
        match self {
            FastLink::Horner(c) => c.iter().rev().fold(0.0, |acc, &a| acc * t + a),
            FastLink::Other(link) => link.eval(t),
        }
    }

    /// `out[i] = f(t[i])`, each value as [`FastLink::eval`] gives it; the
    /// Horner form runs the loop over points innermost, which vectorises.
    pub fn eval_into(&self, t: &[f64], out: &mut [f64]) {
        match self {
            FastLink::Horner(c) => vectorised(HornerPoints { c, t, out }),
            FastLink::Other(link) => {
                for (o, &ti) in out.iter_mut().zip(t) {
                    *o = link.eval(ti);
                }
            }
        }
    }
}

/// Horner's rule at many points with [`FastLink::eval`]'s operations
/// (from 0, then `acc * t + a` from the top coefficient down): a loop that
/// [`vectorised`] compiles for the widest vectors the CPU has.
pub(crate) struct HornerPoints<'a> {
    /// Monomial coefficients, constant term first.
    pub c: &'a [f64],
    /// The points.
    pub t: &'a [f64],
    /// Out: the polynomial at each point.
    pub out: &'a mut [f64],
}

impl Vectorised for HornerPoints<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let HornerPoints { c, t, out } = self;
        out.fill(0.0);
        for &a in c.iter().rev() {
            for (o, &ti) in out.iter_mut().zip(t) {
                *o = *o * ti + a;
            }
        }
    }
}

impl Link {
    /// This link prepared for evaluation in a hot loop.
    pub fn fast(&self) -> FastLink {
        match self {
            Link::Hermite(c) if c.len() <= HORNER_DEGREE + 1 => {
                FastLink::Horner(crate::numerics::hermite::hermite_to_monomial(c))
            }
            Link::Hermite(_) | Link::Named(_) => FastLink::Other(self.clone()),
        }
    }

    /// `f(t)`.
    pub fn eval(&self, t: f64) -> f64 {
        match self {
            Link::Hermite(c) => hermite_series(c, t),
            Link::Named(n) => n.eval(t),
        }
    }

    /// `f'(t)`; `None` where it does not exist as a function (`sign`).
    pub fn derivative(&self, t: f64) -> Option<f64> {
        match self {
            Link::Hermite(c) => Some(hermite_series_derivative(c, t)),
            Link::Named(n) => n.derivative(t),
        }
    }

    /// The coefficients `c_0..=c_max_degree` of `f` in the normalised Hermite
    /// basis: exact for Hermite links (zero-padded or truncated), see
    /// [`NamedLink`]'s closed forms and quadrature otherwise.
    pub fn hermite_coefficients(&self, max_degree: usize) -> Vec<f64> {
        match self {
            Link::Hermite(c) => {
                let mut c = c.clone();
                c.resize(max_degree + 1, 0.0);
                c
            }
            Link::Named(n) => n.hermite_coefficients(max_degree),
        }
    }

    /// The information exponent `k*`: the lowest `i >= 1` with
    /// `|c_i| > ZERO_TOLERANCE` (the constant term does not count). `None`
    /// only for a constant link. Named links are searched up to
    /// [`MAX_DEGREE`]; each has `k* <= 2`.
    pub fn information_exponent(&self) -> Option<usize> {
        let max_degree = self.degree().unwrap_or(MAX_DEGREE);
        self.hermite_coefficients(max_degree)
            .iter()
            .skip(1)
            .position(|c| c.abs() > ZERO_TOLERANCE)
            .map(|i| i + 1)
    }

    /// The polynomial degree (index of the last non-zero coefficient) of a
    /// Hermite link; `None` for named links, none of which is a polynomial.
    pub fn degree(&self) -> Option<usize> {
        match self {
            Link::Hermite(c) => Some(c.iter().rposition(|&c| c != 0.0).unwrap_or(0)),
            Link::Named(_) => None,
        }
    }

    /// `E[f(Z)]` for `Z ~ N(0, 1)`, which is `c_0`.
    pub fn mean(&self) -> f64 {
        self.hermite_coefficients(0)[0]
    }

    /// `Var f(Z)`: `sum_{i >= 1} c_i^2` for Hermite links (orthonormality),
    /// `E[f^2] - E[f]^2` in closed form or by quadrature for named links.
    pub fn variance(&self) -> f64 {
        match self {
            Link::Hermite(c) => c.iter().skip(1).map(|c| c * c).sum(),
            Link::Named(n) => n.second_moment() - self.mean().powi(2),
        }
    }
}

/// A link as a run's summary reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The link as a spec that parses back to it.
    pub link: String,
    /// The information exponent k*; null only for a constant link.
    pub information_exponent: Option<usize>,
    /// Null for non-polynomial links.
    pub degree: Option<usize>,
}

impl From<&Link> for LinkInfo {
    fn from(l: &Link) -> Self {
        LinkInfo {
            link: l.to_string(),
            information_exponent: l.information_exponent(),
            degree: l.degree(),
        }
    }
}

/// Everything `clustermoe link` says of a link.
#[derive(Clone, Debug, Serialize)]
pub struct LinkDescription {
    /// The link's name, information exponent and degree.
    #[serde(flatten)]
    pub info: LinkInfo,
    /// Normalised Hermite coefficients c_0 .. c_degree (f = sum_i c_i h_i).
    pub hermite_coefficients: Vec<f64>,
    /// E f(z) for z ~ N(0, 1).
    pub mean: f64,
    /// Var f(z) for z ~ N(0, 1).
    pub variance: f64,
}

impl Link {
    /// The description of this link with its coefficients up to `degree`
    /// (at most [`MAX_DEGREE`]).
    pub fn describe(&self, degree: usize) -> Result<LinkDescription, Error> {
        if degree > MAX_DEGREE {
            return Err(Error::invalid(
                "degree",
                degree,
                format!("an integer from 0 to {MAX_DEGREE}"),
            ));
        }
        Ok(LinkDescription {
            info: LinkInfo::from(self),
            hermite_coefficients: self.hermite_coefficients(degree),
            mean: self.mean(),
            variance: self.variance(),
        })
    }
}

impl fmt::Display for Link {
    /// The canonical spec: the name, `hN` for a single unit coefficient, or
    /// `hermite:c0,...` without trailing zeros (shortest round-trip floats).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            Link::Named(n) => return write!(f, "{n}"),
            Link::Hermite(c) => trim_trailing_zeros(c),
        };
        match c.split_last() {
            None => f.write_str("hermite:0"),
            Some((&1.0, rest)) if !rest.is_empty() && rest.iter().all(|&x| x == 0.0) => {
                write!(f, "h{}", rest.len())
            }
            Some(_) => {
                let list: Vec<String> = c.iter().map(f64::to_string).collect();
                write!(f, "hermite:{}", list.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn link(spec: &str) -> Link {
        parse("link", spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn fast_form_evaluates_like_the_link() {
        for spec in ["h3", "h8", "0.5*h1 + h2 + -0.3*h7", "h12", "relu", "tanh"] {
            let (exact, fast) = (link(spec), link(spec).fast());
            let horner = matches!(fast, FastLink::Horner(_));
            assert_eq!(horner, !matches!(spec, "h12" | "relu" | "tanh"), "{spec}");
            for i in -80..=80 {
                let t = i as f64 / 10.0;
                let (a, b) = (exact.eval(t), fast.eval(t));
                assert!(
                    (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                    "{spec} at {t}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn information_exponents() {
        for (spec, k) in [
            ("h3", 3),
            ("relu", 1),
            ("abs", 2),
            ("tanh", 1),
            ("sign", 1),
            ("sigmoid", 1),
            ("h3+h5", 3),
            ("square", 2),
            ("cube", 1),
            ("h0+h2", 2),
            ("monomial:0,0,0,1", 1),
        ] {
            assert_eq!(link(spec).information_exponent(), Some(k), "{spec}");
        }
    }

    #[test]
    fn relu_coefficients() {
        let c = link("relu").hermite_coefficients(6);
        let phi0 = 1.0 / (2.0 * PI).sqrt();
        // c_2 = E[relu (Z^2 - 1)] / sqrt(2) = (1/2 - 1/2 + phi0 ... ) = phi0 / sqrt(2) = 1/sqrt(4 pi).
        // c_4 = E[relu He_4] / sqrt(24) = -phi0 / sqrt(24)  (E[Z_+ He_4] = phi0 He_2(0)).
        let expected = [
            phi0,
            0.5,
            1.0 / (4.0 * PI).sqrt(),
            0.0,
            -phi0 / 24f64.sqrt(),
            0.0,
        ];
        for (i, (a, b)) in c.iter().zip(expected).enumerate() {
            assert_abs_diff_eq!(*a, b, epsilon = 1e-15);
            if b == 0.0 {
                assert_eq!(*a, 0.0, "c_{i} must be exactly 0");
            }
        }
        let relu = link("relu");
        assert_abs_diff_eq!(relu.mean(), phi0, epsilon = 1e-15);
        assert_abs_diff_eq!(relu.variance(), 0.5 - 1.0 / (2.0 * PI), epsilon = 1e-15);
    }

    #[test]
    fn abs_and_sign_coefficients() {
        let abs = link("abs").hermite_coefficients(MAX_DEGREE);
        assert_abs_diff_eq!(abs[0], (2.0 / PI).sqrt(), epsilon = 1e-15);
        assert!(abs.iter().skip(1).step_by(2).all(|&c| c == 0.0));
        assert_abs_diff_eq!(link("abs").variance(), 1.0 - 2.0 / PI, epsilon = 1e-15);
        let sign = link("sign").hermite_coefficients(MAX_DEGREE);
        // c_1 = E|Z| = sqrt(2/pi).
        assert_abs_diff_eq!(sign[1], (2.0 / PI).sqrt(), epsilon = 1e-15);
        assert!(sign.iter().step_by(2).all(|&c| c == 0.0));
        assert_abs_diff_eq!(link("sign").variance(), 1.0, epsilon = 1e-15);
    }

    #[test]
    fn closed_forms_match_quadrature() {
        // A fine rule converges slowly across the kink, but to ~1e-3.
        let rule = GaussHermite::new(300);
        for named in [NamedLink::Relu, NamedLink::Abs, NamedLink::Sign] {
            let c = named.hermite_coefficients(10);
            for (i, &ci) in c.iter().enumerate() {
                let q = rule.expect(|t| named.eval(t) * crate::numerics::hermite::hermite(i, t));
                assert_abs_diff_eq!(ci, q, epsilon = 2e-3);
            }
        }
    }

    #[test]
    fn smooth_links_by_quadrature() {
        // Trapezoid sums are spectrally accurate for smooth, fast-decaying
        // integrands: an independent check of the Gauss–Hermite values.
        let trapezoid = |f: &dyn Fn(f64) -> f64| {
            let h = 1e-3;
            (-40_000..=40_000)
                .map(|j| {
                    let t = j as f64 * h;
                    f(t) * (-t * t / 2.0).exp()
                })
                .sum::<f64>()
                * h
                / (2.0 * PI).sqrt()
        };
        for named in [NamedLink::Tanh, NamedLink::Sigmoid] {
            let l = Link::Named(named);
            let c = l.hermite_coefficients(MAX_DEGREE);
            for i in [0, 1, 2, 3, 7, 15, 29] {
                let q = trapezoid(&|t| named.eval(t) * crate::numerics::hermite::hermite(i, t));
                assert_abs_diff_eq!(c[i], q, epsilon = 1e-11);
            }
            // Parity: tanh is odd, sigmoid - 1/2 is odd.
            assert!(c.iter().skip(2).step_by(2).all(|&c| c == 0.0), "{named}");
            let m = trapezoid(&|t| named.eval(t));
            let v = trapezoid(&|t| (named.eval(t) - m).powi(2));
            assert_abs_diff_eq!(l.mean(), m, epsilon = 1e-12);
            assert_abs_diff_eq!(l.variance(), v, epsilon = 1e-12);
        }
        assert_eq!(link("tanh").mean(), 0.0);
        assert_abs_diff_eq!(link("sigmoid").mean(), 0.5, epsilon = 1e-15);
    }

    #[test]
    fn hermite_link_values() {
        let l = link("h3+0.5*h5");
        let h = crate::numerics::hermite::hermite;
        let dh = crate::numerics::hermite::hermite_derivative;
        for t in [-1.3, 0.0, 0.4, 2.2] {
            assert_abs_diff_eq!(l.eval(t), h(3, t) + 0.5 * h(5, t), epsilon = 1e-12);
            let d = l.derivative(t).unwrap();
            assert_abs_diff_eq!(d, dh(3, t) + 0.5 * dh(5, t), epsilon = 1e-12);
        }
        assert_eq!(l.degree(), Some(5));
        assert_eq!(l.mean(), 0.0);
        assert_eq!(l.variance(), 1.25);
        assert_eq!(l.hermite_coefficients(2), vec![0.0; 3]);
        assert_eq!(link("2*h0+h1").mean(), 2.0);
    }

    #[test]
    fn named_values_and_derivatives() {
        let eval = |n: NamedLink, t| n.eval(t);
        assert_eq!(eval(NamedLink::Relu, -2.0), 0.0);
        assert_eq!(eval(NamedLink::Relu, 2.0), 2.0);
        assert_eq!(eval(NamedLink::Sign, 0.0), 0.0);
        assert_eq!(eval(NamedLink::Sign, -0.1), -1.0);
        assert_eq!(eval(NamedLink::Abs, -3.0), 3.0);
        assert_eq!(eval(NamedLink::Sigmoid, 0.0), 0.5);
        assert!(NamedLink::Sign.eval(f64::NAN).is_nan());
        assert_eq!(NamedLink::Sign.derivative(1.0), None);
        assert_eq!(NamedLink::Relu.derivative(0.0), Some(0.0));
        assert_eq!(NamedLink::Relu.derivative(0.5), Some(1.0));
        assert_eq!(NamedLink::Abs.derivative(-0.5), Some(-1.0));
        let eps = 1e-6;
        for n in [
            NamedLink::Tanh,
            NamedLink::Sigmoid,
            NamedLink::Relu,
            NamedLink::Abs,
        ] {
            for t in [-1.5, -0.2, 0.7, 3.0] {
                let fd = (n.eval(t + eps) - n.eval(t - eps)) / (2.0 * eps);
                assert_abs_diff_eq!(n.derivative(t).unwrap(), fd, epsilon = 1e-8);
            }
        }
        assert_eq!(link("relu").degree(), None);
    }
}
