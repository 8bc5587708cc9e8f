//! Normalised probabilists' Hermite polynomials and Gauss–Hermite quadrature
//! for the standard normal measure.
//!
//! `h_i = He_i / sqrt(i!)` is an orthonormal basis of `L^2(N(0, 1))`, so a
//! link's coefficients in it are plain expectations `E[f(Z) h_i(Z)]` and its
//! variance is the sum of the squared coefficients of degree >= 1. Everything
//! here evaluates the normalised three-term recurrence directly: the
//! unnormalised `He_i` grow like `sqrt(i!)` and overflow or lose precision
//! long before the normalised ones do.

use std::sync::LazyLock;

/// `sqrt(i)` and `1 / sqrt(i)` for small `i`: the task's links and the
/// models' activations run the recurrence once per sample, and a square root
/// and a division per term cost more than the rest of it.
struct Roots([(f64, f64); 64]);

static ROOTS: LazyLock<Roots> = LazyLock::new(|| {
    Roots(std::array::from_fn(|i| {
        let s = (i as f64).sqrt();
        (s, 1.0 / s)
    }))
});

impl Roots {
    /// The constants of the step from degree `i` to `i + 1`:
    /// `(sqrt(i), 1 / sqrt(i + 1))`.
    #[inline]
    fn step(&self, i: usize) -> (f64, f64) {
        match (self.0.get(i), self.0.get(i + 1)) {
            (Some(&(root, _)), Some(&(_, inverse))) => (root, inverse),
            _ => ((i as f64).sqrt(), 1.0 / ((i + 1) as f64).sqrt()),
        }
    }
}

/// Fills `out[i] = h_i(t)` for `i in 0..out.len()`.
///
/// Uses `h_0 = 1`, `h_1 = t` and
/// `h_{i+1} = (t h_i - sqrt(i) h_{i-1}) / sqrt(i + 1)`, which is stable for
/// the normalised polynomials.
pub fn hermite_all(t: f64, out: &mut [f64]) {
    let n = out.len();
    if n > 0 {
        out[0] = 1.0;
    }
    if n > 1 {
        out[1] = t;
    }
    let roots = &*ROOTS;
    for i in 1..n.saturating_sub(1) {
        let (root, inverse) = roots.step(i);
        out[i + 1] = (t * out[i] - root * out[i - 1]) * inverse;
    }
}

/// Monomial coefficients of sum_i c_i h_i(t), h_i = He_i / sqrt(i!).
pub fn hermite_to_monomial(coefficients: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; coefficients.len().max(1)];
    for (n, &c) in coefficients.iter().enumerate() {
        if c == 0.0 {
            continue;
        }
        // He_n(t) = sum_k (-1)^k n! / (k! (n-2k)! 2^k) t^(n-2k)
        let norm = (1..=n).map(|i| i as f64).product::<f64>().sqrt();
        let mut term = 1.0; // n!/(k!(n-2k)!2^k) for k = 0
        for k in 0..=n / 2 {
            if k > 0 {
                term *= ((n - 2 * k + 2) * (n - 2 * k + 1)) as f64 / (2 * k) as f64;
            }
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            out[n - 2 * k] += c * sign * term / norm;
        }
    }
    out
}

/// Runs the recurrence up to degree `k` and returns `(h_{k-1}(t), h_k(t))`,
/// with `h_{-1} = 0`, without allocating.
fn hermite_pair(k: usize, t: f64) -> (f64, f64) {
    let roots = &*ROOTS;
    let (mut prev, mut cur) = (0.0, 1.0);
    for i in 0..k {
        let (root, inverse) = roots.step(i);
        (prev, cur) = (cur, (t * cur - root * prev) * inverse);
    }
    (prev, cur)
}

/// `h_k(t)`.
pub fn hermite(k: usize, t: f64) -> f64 {
    hermite_pair(k, t).1
}

/// `h_k'(t) = sqrt(k) h_{k-1}(t)` (from `He_k' = k He_{k-1}`).
pub fn hermite_derivative(k: usize, t: f64) -> f64 {
    (k as f64).sqrt() * hermite_pair(k, t).0
}

/// `sum_i coeffs[i] h_i(t)`, in one pass of the recurrence without allocating
/// (links and activations are evaluated once per sample and neuron).
pub fn hermite_series(coeffs: &[f64], t: f64) -> f64 {
    let roots = &*ROOTS;
    let (mut prev, mut cur) = (0.0, 1.0);
    let mut sum = 0.0;
    for (i, &c) in coeffs.iter().enumerate() {
        sum += c * cur;
        let (root, inverse) = roots.step(i);
        (prev, cur) = (cur, (t * cur - root * prev) * inverse);
    }
    sum
}

/// The derivative of [`hermite_series`]: `sum_i coeffs[i] sqrt(i) h_{i-1}(t)`.
pub fn hermite_series_derivative(coeffs: &[f64], t: f64) -> f64 {
    let roots = &*ROOTS;
    let (mut prev, mut cur) = (0.0, 1.0);
    let mut sum = 0.0;
    for (i, &c) in coeffs.iter().enumerate().skip(1) {
        // Here `cur = h_{i-1}(t)`, `prev = h_{i-2}(t)`.
        sum += c * roots.step(i).0 * cur;
        let (root, inverse) = roots.step(i - 1);
        (prev, cur) = (cur, (t * cur - root * prev) * inverse);
    }
    sum
}

/// An `n`-point Gauss quadrature rule for the standard normal measure:
/// `E[f(Z)] ≈ sum_j weights[j] f(nodes[j])`, exact for polynomials of degree
/// `<= 2n - 1`.
///
/// Nodes are in increasing order and exactly symmetric (`nodes[j] =
/// -nodes[n-1-j]`, equal weights), so odd integrands of symmetric functions
/// cancel pairwise; the weights sum to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussHermite {
    /// The nodes t_j, increasing.
    pub nodes: Vec<f64>,
    /// Their weights: E f(Z) ~ sum_j w_j f(t_j) for Z ~ N(0, 1).
    pub weights: Vec<f64>,
}

impl GaussHermite {
    /// Builds the `n`-point rule (`n >= 1`).
    ///
    /// The roots of the physicists' Hermite polynomial `H_n` (weight
    /// `exp(-x^2)`) are found by Newton's method on the orthonormal
    /// recurrence, as in Numerical Recipes' `gauher`; the orthonormal form
    /// gives the weight `2 / H_n'(x)^2` directly and does not overflow for
    /// `n <= 300`. Nodes are then rescaled by `sqrt(2)` and weights by
    /// `1 / sqrt(pi)` to the standard normal. Accurate to about `1e-13`.
    ///
    /// `gauher`'s extrapolated initial guesses overshoot to an already found
    /// root for `n` near 200, so instead each root is found by Newton on
    /// `H_n` deflated by the roots found so far (Maehly's correction), started
    /// just below the previous root (or at the bound `sqrt(2n + 1)`): a
    /// polynomial with real roots converges monotonically to its largest root
    /// from anywhere above it, so no root is skipped or found twice.
    ///
    /// # Panics
    /// If `n == 0`.
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "a Gauss–Hermite rule needs at least one node");
        const MAX_ITERATIONS: usize = 500;
        let pi_m4 = std::f64::consts::PI.powf(-0.25);
        let nf = n as f64;
        // Orthonormal H_n(z) and its derivative.
        let eval = |z: f64| {
            let (mut p1, mut p2) = (pi_m4, 0.0);
            for j in 1..=n {
                let jf = j as f64;
                let p3 = p2;
                p2 = p1;
                p1 = z * (2.0 / jf).sqrt() * p2 - ((jf - 1.0) / jf).sqrt() * p3;
            }
            (p1, (2.0 * nf).sqrt() * p2)
        };
        // The non-negative roots, largest first, and their weights. The
        // middle root of an odd rule is 0 by symmetry.
        let m = n.div_ceil(2);
        let odd = n % 2 == 1;
        let mut roots: Vec<f64> = Vec::with_capacity(m);
        let mut root_weights: Vec<f64> = Vec::with_capacity(m);
        for i in 0..m {
            let mut z = match roots.last() {
                None => (2.0 * nf + 1.0).sqrt(),
                Some(&r) => r * (1.0 - 1e-6),
            };
            if odd && i == m - 1 {
                z = 0.0;
            } else {
                for _ in 0..MAX_ITERATIONS {
                    let (p, dp) = eval(z);
                    // p / p' of H_n / (z^[odd] prod_found (z^2 - r^2)).
                    let deflation: f64 =
                        roots.iter().map(|r| 2.0 * z / (z * z - r * r)).sum::<f64>()
                            + if odd { 1.0 / z } else { 0.0 };
                    let step = p / (dp - p * deflation);
                    z -= step;
                    if step.abs() <= 1e-15 * z.abs().max(1.0) {
                        break;
                    }
                }
            }
            let dp = eval(z).1;
            roots.push(z);
            root_weights.push(2.0 / (dp * dp));
        }
        let sqrt2 = std::f64::consts::SQRT_2;
        let sqrt_pi = std::f64::consts::PI.sqrt();
        // Negative roots (ascending) then the positive ones, mirrored.
        let nodes: Vec<f64> = (0..n)
            .map(|j| {
                if j < m {
                    -roots[j] * sqrt2
                } else {
                    roots[n - 1 - j] * sqrt2
                }
            })
            .collect();
        let weights: Vec<f64> = (0..n)
            .map(|j| root_weights[if j < m { j } else { n - 1 - j }] / sqrt_pi)
            .collect();
        GaussHermite { nodes, weights }
    }

    /// `E[f(Z)]` for `Z ~ N(0, 1)` by this rule. Mirrored nodes are summed in
    /// pairs, so an exactly odd `f` gives exactly 0.
    pub fn expect(&self, f: impl Fn(f64) -> f64) -> f64 {
        let n = self.nodes.len();
        let mut sum = 0.0;
        for j in 0..n / 2 {
            let (a, b) = (f(self.nodes[j]), f(self.nodes[n - 1 - j]));
            sum += self.weights[j] * (a + b);
        }
        if n % 2 == 1 {
            sum += self.weights[n / 2] * f(self.nodes[n / 2]);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    const TS: [f64; 7] = [-3.1, -1.0, -0.25, 0.0, 0.5, 1.7, 4.2];

    #[test]
    fn orthonormal_under_quadrature() {
        let gh = GaussHermite::new(60);
        for i in 0..=20 {
            for j in 0..=20 {
                let e = gh.expect(|t| hermite(i, t) * hermite(j, t));
                let delta = if i == j { 1.0 } else { 0.0 };
                assert_abs_diff_eq!(e, delta, epsilon = 1e-10);
            }
        }
    }

    #[test]
    fn closed_forms() {
        for t in TS {
            let mut h = [0.0; 5];
            hermite_all(t, &mut h);
            let expected = [
                1.0,
                t,
                (t * t - 1.0) / 2f64.sqrt(),
                (t.powi(3) - 3.0 * t) / 6f64.sqrt(),
                (t.powi(4) - 6.0 * t * t + 3.0) / 24f64.sqrt(),
            ];
            for (k, (&a, &b)) in h.iter().zip(&expected).enumerate() {
                assert_abs_diff_eq!(a, b, epsilon = 1e-12 * b.abs().max(1.0));
                assert_abs_diff_eq!(hermite(k, t), b, epsilon = 1e-12 * b.abs().max(1.0));
            }
        }
    }

    #[test]
    fn derivative_matches_finite_differences() {
        let eps = 1e-5;
        for k in 0..=12 {
            for t in TS {
                let fd = (hermite(k, t + eps) - hermite(k, t - eps)) / (2.0 * eps);
                let d = hermite_derivative(k, t);
                assert_abs_diff_eq!(d, fd, epsilon = 1e-6 * d.abs().max(1.0));
            }
        }
    }

    #[test]
    fn series_matches_terms() {
        let c = [0.3, -1.0, 0.0, 2.0, 0.5, 0.0, -0.25];
        for t in TS {
            let direct: f64 = c.iter().enumerate().map(|(i, c)| c * hermite(i, t)).sum();
            let deriv: f64 = c
                .iter()
                .enumerate()
                .map(|(i, c)| c * hermite_derivative(i, t))
                .sum();
            assert_abs_diff_eq!(
                hermite_series(&c, t),
                direct,
                epsilon = 1e-12 * direct.abs().max(1.0)
            );
            assert_abs_diff_eq!(
                hermite_series_derivative(&c, t),
                deriv,
                epsilon = 1e-12 * deriv.abs().max(1.0)
            );
        }
        assert_eq!(hermite_series(&[], 1.0), 0.0);
        assert_eq!(hermite_series_derivative(&[2.0], 1.0), 0.0);
    }

    #[test]
    fn small_rules_are_known() {
        let g1 = GaussHermite::new(1);
        assert_eq!(g1.nodes, [0.0]);
        assert_abs_diff_eq!(g1.weights[0], 1.0, epsilon = 1e-15);
        let g2 = GaussHermite::new(2);
        for (x, w) in g2.nodes.iter().zip(&g2.weights) {
            assert_abs_diff_eq!(x.abs(), 1.0, epsilon = 1e-14);
            assert_abs_diff_eq!(*w, 0.5, epsilon = 1e-14);
        }
        let g3 = GaussHermite::new(3);
        let s3 = 3f64.sqrt();
        for (a, b) in g3.nodes.iter().zip([-s3, 0.0, s3]) {
            assert_abs_diff_eq!(*a, b, epsilon = 1e-14);
        }
        for (a, b) in g3.weights.iter().zip([1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0]) {
            assert_abs_diff_eq!(*a, b, epsilon = 1e-14);
        }
    }

    #[test]
    fn weights_and_moments() {
        for n in 1..=300 {
            let gh = GaussHermite::new(n);
            assert!(
                gh.nodes.windows(2).all(|w| w[0] < w[1]),
                "n = {n}: nodes not increasing"
            );
            assert_abs_diff_eq!(gh.weights.iter().sum::<f64>(), 1.0, epsilon = 1e-13);
            // Exact up to degree 2n - 1.
            for (degree, moment, tol) in [(2, 1.0, 1e-12), (4, 3.0, 1e-12), (6, 15.0, 1e-11)] {
                if (degree as usize) < 2 * n {
                    assert_abs_diff_eq!(gh.expect(|t| t.powi(degree)), moment, epsilon = tol);
                }
            }
            assert_eq!(gh.expect(|t| t.powi(3)), 0.0);
        }
    }

    #[test]
    fn large_rule_is_exact_to_high_degree() {
        let gh = GaussHermite::new(200);
        // E[Z^{2k}] = (2k - 1)!!, up to degree 40.
        let mut double_factorial = 1.0;
        for k in 1..=20i32 {
            double_factorial *= (2 * k - 1) as f64;
            let e = gh.expect(|t| t.powi(2 * k));
            assert_abs_diff_eq!(e / double_factorial, 1.0, epsilon = 1e-12);
        }
        for (i, j) in [(60, 60), (100, 100), (150, 149), (199, 199), (120, 80)] {
            let e = gh.expect(|t| hermite(i, t) * hermite(j, t));
            assert_abs_diff_eq!(e, if i == j { 1.0 } else { 0.0 }, epsilon = 1e-11);
        }
    }
}
