//! The mean (population) dynamics of a phase-I overlap, for predicting weak
//! recovery times without running SGD. The derivation is in
//! `docs/theory.md`.
//!
//! One file, though past 500 lines (a third of it tests): the drift, its
//! integration and the escape-time laws are one derivation, read together.
//!
//! An expert direction u follows spherical SGD on `-y h_k(<u, x>)`; its
//! overlap `m = <u, w*_c>` with one cluster's local direction then drifts, per
//! step, by
//!
//! ```text
//! drift(m) = a m^(k-1) (1 - m^2) - b m,
//! a = lr k beta / C,      b = lr^2 (d - 1) sigma2 / (2 B),
//! ```
//!
//! the first term from the population gradient (the global task cancels
//! because `sum_c s_c = 0`), the second from renormalising after a noisy step.
//!
//! ```
//! use clustermoe::theory::{typical_initial_overlap, DriftParams};
//!
//! let p = DriftParams::default_task(32, 0.003, 64);
//! let steps = p.recovery_step(typical_initial_overlap(32), 0.5).unwrap();
//! assert!(steps > 800.0 && steps < 1000.0);
//! ```

use crate::numerics::hermite::{hermite_derivative, hermite_series, GaussHermite};
use serde::{Deserialize, Serialize};

/// Parameters of the phase-I drift ODE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftParams {
    /// Information exponent k*, also the degree of the activation `h_k`.
    pub k: usize,
    /// The local links' coefficient `beta_{c,k}` of `h_k` (the same for
    /// every cluster).
    pub beta: f64,
    /// Number of clusters C (each has probability `1 / C`).
    pub clusters: usize,
    /// Learning rate.
    pub lr: f64,
    /// Minibatch size B.
    pub batch: usize,
    /// Dimension d.
    pub d: usize,
    /// `sigma2 = E|P_u grad l|^2 / (d - 1)`, the mean square of a one-sample
    /// tangent gradient per tangent direction, about
    /// `E[y^2 sigma'(<u, x>)^2]` for large d (see [`gradient_noise`]); 0
    /// disables the shrinkage term.
    pub noise_variance: f64,
}

/// One point of a predicted trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftPoint {
    /// SGD steps since the start (fractional: the ODE's time).
    pub step: f64,
    /// Samples drawn, `step * batch`.
    pub samples: f64,
    /// Overlap `m = <u, w*_c>`.
    pub overlap: f64,
}

impl DriftParams {
    /// The default task (k = 3, `f*_c = g* = h_3`, C = 2, noise
    /// std 0.1) in dimension `d`, with `sigma2` of a direction orthogonal to
    /// the task (`3 * 2.01 + 36 / (d - 1)`).
    pub fn default_task(d: usize, lr: f64, batch: usize) -> Self {
        Self::hermite_task(3, d, lr, batch)
    }

    /// The default task with every link `h_k` instead of `h_3` (`f*_c = g*
    /// = h_k`, C = 2, noise std 0.1) in dimension `d`, with `sigma2` of a
    /// direction orthogonal to the task, computed for `h_k` (a k* = 4 task's
    /// gradient noise is not the k* = 3 task's).
    ///
    /// ```
    /// use clustermoe::theory::DriftParams;
    ///
    /// let p = DriftParams::hermite_task(4, 64, 0.001, 64);
    /// // sigma2 = k E[y^2] = 4 (1 + 1 + 0.01) at the equator, plus the
    /// // excess 2 k (E[h_4^2 z^2] - 1) = 64 over d - 1.
    /// assert!((p.noise_variance - (4.0 * 2.01 + 64.0 / 63.0)).abs() < 1e-9);
    /// assert_eq!(DriftParams::hermite_task(3, 32, 0.003, 64), DriftParams::default_task(32, 0.003, 64));
    /// ```
    pub fn hermite_task(k: usize, d: usize, lr: f64, batch: usize) -> Self {
        let mut link = vec![0.0; k + 1];
        link[k] = 1.0;
        DriftParams {
            k,
            beta: 1.0,
            clusters: 2,
            lr,
            batch,
            d,
            noise_variance: gradient_noise(k, &link, &link, 0.1, 2, 0.0).noise_variance(d),
        }
    }

    /// Coefficient `a = lr k beta / C` of the signal term.
    pub fn signal_rate(&self) -> f64 {
        self.lr * self.k as f64 * self.beta / self.clusters as f64
    }

    /// Coefficient `b = lr^2 (d - 1) sigma2 / (2 B)` of the shrinkage term.
    pub fn shrinkage_rate(&self) -> f64 {
        self.lr * self.lr * self.d.saturating_sub(1) as f64 * self.noise_variance
            / (2.0 * self.batch as f64)
    }

    /// Per-step drift of the overlap at m:
    /// `a m^(k-1) (1 - m^2) - b m`.
    pub fn drift(&self, m: f64) -> f64 {
        let signal = match self.k {
            0 => 0.0,
            k => self.signal_rate() * m.powi(k as i32 - 1) * (1.0 - m * m),
        };
        signal - self.shrinkage_rate() * m
    }

    /// Integrates `dm/dt = drift(m)` from `m0` over `steps` SGD steps by
    /// adaptive Dormand–Prince RK45, returning `max(points, 2)` points evenly
    /// spaced in steps, the first at `m0` (`samples = step * batch`).
    ///
    /// `m = +-1` are fixed points, or push inwards when there is shrinkage, so
    /// the exact solution stays in `[-1, 1]`; the numerical one is clamped
    /// there.
    ///
    /// ```
    /// use clustermoe::theory::{typical_initial_overlap, DriftParams};
    ///
    /// let p = DriftParams::default_task(32, 0.003, 64);
    /// let path = p.trajectory(typical_initial_overlap(32), 2000.0, 5);
    /// assert_eq!(path.len(), 5);
    /// assert_eq!((path[4].step, path[4].samples), (2000.0, 2000.0 * 64.0));
    /// // From d^(-1/2) the overlap grows past weak recovery (0.5).
    /// assert!(path.windows(2).all(|w| w[1].overlap > w[0].overlap));
    /// assert!(path[4].overlap > 0.5);
    /// ```
    pub fn trajectory(&self, m0: f64, steps: f64, points: usize) -> Vec<DriftPoint> {
        let n = points.max(2);
        let dt = steps / (n - 1) as f64;
        let mut m = m0.clamp(-1.0, 1.0);
        let mut h = self.initial_step(m);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 {
                self.advance(&mut m, &mut h, dt);
            }
            let step = i as f64 * dt;
            out.push(DriftPoint {
                step,
                samples: step * self.batch as f64,
                overlap: m,
            });
        }
        out
    }

    /// First step at which `|m|` reaches `threshold` (in `(0, 1]`) from
    /// `m0`, by integrating the ODE; `Some(0.0)` if `|m0| >= threshold`.
    ///
    /// `None` if it never does: the equator `m = 0` is a fixed point, so an
    /// overlap pushed towards it (`m0 < 0` with `beta > 0` for odd k) or one
    /// held below a zero of the drift (shrinkage wins) stays short. Since
    /// `drift(m) / m` is unimodal in `|m|` on `(0, 1)`, the overlap reaches the
    /// threshold exactly when that ratio is positive at both `|m0|` and the
    /// threshold.
    ///
    /// # Panics
    /// If `k < 2` (then `drift(0) != 0`: there is no search phase).
    pub fn recovery_step(&self, m0: f64, threshold: f64) -> Option<f64> {
        assert!(self.k >= 2, "recovery from the equator needs k >= 2");
        let x0 = m0.abs();
        if x0 >= threshold {
            return Some(0.0);
        }
        // |m| obeys dx/dt = s drift(s x), s = sign(m0).
        let s = m0.signum();
        let speed = |x: f64| s * self.drift(s * x);
        let towards = |x: f64| speed(x) / x > 0.0;
        if threshold > 1.0 || x0 == 0.0 || !towards(x0) || !towards(threshold) {
            return None;
        }
        let (mut x, mut t, mut h) = (x0, 0.0, self.initial_step(m0));
        loop {
            let (x1, err) = rk45(speed, x, h);
            if err > 1.0 {
                h *= step_factor(err);
                continue;
            }
            if x1 >= threshold {
                // Bisect the step length so the step lands on the threshold.
                let (mut lo, mut hi) = (0.0, h);
                for _ in 0..100 {
                    let mid = 0.5 * (lo + hi);
                    if rk45(speed, x, mid).0 < threshold {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                return Some(t + 0.5 * (lo + hi));
            }
            (x, t) = (x1, t + h);
            h *= step_factor(err);
            if !h.is_finite() || h <= 0.0 {
                return None;
            }
        }
    }

    /// The closed form for the leading term alone, `dm/dt = a m^(k-1)` (no
    /// shrinkage, no `1 - m^2`): from `|m0|` to the threshold
    /// `(|m0|^(2-k) - threshold^(2-k)) / (a (k - 2))` for k >= 3 and
    /// `ln(threshold / |m0|) / a` for k = 2, with `a` signed so that it is
    /// positive when `|m|` grows. `None` where `|m|` does not grow or the
    /// threshold is above 1.
    ///
    /// # Panics
    /// If `k < 2`.
    ///
    /// ```
    /// use clustermoe::theory::{typical_initial_overlap, DriftParams};
    ///
    /// // Without shrinkage, the closed form is a little faster than the ODE
    /// // (which has the factor 1 - m^2 < 1).
    /// let p = DriftParams { noise_variance: 0.0, ..DriftParams::default_task(32, 0.003, 64) };
    /// let m0 = typical_initial_overlap(32);
    /// let ode = p.recovery_step(m0, 0.3).unwrap();
    /// let closed = p.recovery_step_leading_order(m0, 0.3).unwrap();
    /// assert!(closed < ode && ode < 1.1 * closed);
    /// ```
    pub fn recovery_step_leading_order(&self, m0: f64, threshold: f64) -> Option<f64> {
        assert!(self.k >= 2, "recovery from the equator needs k >= 2");
        let x0 = m0.abs();
        if x0 >= threshold {
            return Some(0.0);
        }
        let a = self.signal_rate() * m0.signum().powi(self.k as i32);
        if threshold > 1.0 || x0 == 0.0 || a <= 0.0 {
            return None;
        }
        Some(match self.k {
            2 => (threshold / x0).ln() / a,
            k => {
                let p = 2.0 - k as f64;
                (x0.powf(p) - threshold.powf(p)) / (a * (k - 2) as f64)
            }
        })
    }

    /// The learning rate above which shrinkage beats the signal at `m0`
    /// (`drift(m0) <= 0` for `m0 > 0`, `beta > 0`):
    /// `2 B k beta m0^(k-2) (1 - m0^2) / (C (d - 1) sigma2)`. For
    /// `m0 = 1 / sqrt(d)` it falls like `d^(-k/2)`. The rate of `self` is
    /// not used.
    ///
    /// ```
    /// use clustermoe::theory::{typical_initial_overlap, DriftParams};
    ///
    /// let p = DriftParams::default_task(32, 0.003, 64);
    /// let m0 = typical_initial_overlap(32);
    /// let critical = p.critical_lr(m0);
    /// // Below it the overlap grows from m0, above it shrinks.
    /// assert!(DriftParams { lr: 0.9 * critical, ..p.clone() }.drift(m0) > 0.0);
    /// assert!(DriftParams { lr: 1.1 * critical, ..p }.drift(m0) < 0.0);
    /// ```
    pub fn critical_lr(&self, m0: f64) -> f64 {
        let m0 = m0.abs();
        2.0 * self.batch as f64
            * self.k as f64
            * self.beta
            * m0.powi(self.k as i32 - 2)
            * (1.0 - m0 * m0)
            / (self.clusters as f64 * self.d.saturating_sub(1) as f64 * self.noise_variance)
    }

    /// A first step a tenth of the local time scale `|m / drift(m)|`.
    fn initial_step(&self, m: f64) -> f64 {
        let scale = (m / self.drift(m)).abs();
        if scale.is_finite() && scale > 0.0 {
            0.1 * scale
        } else {
            1.0
        }
    }

    /// Advances `m` by exactly `span` steps, adapting the carried step `h`.
    fn advance(&self, m: &mut f64, h: &mut f64, span: f64) {
        let f = |m: f64| self.drift(m);
        let mut left = span;
        while left > 0.0 {
            let try_h = h.min(left);
            let (m1, err) = rk45(f, *m, try_h);
            if err <= 1.0 {
                *m = m1.clamp(-1.0, 1.0);
                left -= try_h;
            }
            // A step cut short to land on the output time keeps `h`.
            if err > 1.0 || try_h == *h {
                *h = try_h * step_factor(err);
            }
            if !h.is_finite() || *h <= 0.0 {
                return;
            }
        }
    }
}

/// Typical starting overlap of a uniformly random unit vector with a fixed
/// one in R^d: the root mean square `1 / sqrt(d)` (`E[m^2] = 1 / d` exactly).
/// The mean `|m|` is about `sqrt(2 / (pi d))` and the median about
/// `0.674 / sqrt(d)`; see `docs/theory.md` for the choice.
pub fn typical_initial_overlap(d: usize) -> f64 {
    1.0 / (d as f64).sqrt()
}

/// The expected largest of `n` independent standard normals (`signed`), or
/// of their absolute values (not `signed`), by quadrature of
/// `E[max] = int x n phi(x) Phi(x)^(n-1) dx` (for `|Z|`: density `2 phi`,
/// law `2 Phi - 1` on x >= 0) with Simpson's rule on a fine grid (exact to
/// about 1e-10).
///
/// # Panics
/// If `n == 0`.
///
/// ```
/// use clustermoe::theory::expected_max_normal;
///
/// // The best of two is 1/sqrt(pi); one |Z| has mean sqrt(2/pi).
/// assert!((expected_max_normal(2, true) - 1.0 / std::f64::consts::PI.sqrt()).abs() < 1e-9);
/// assert!((expected_max_normal(1, false) - (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-9);
/// assert!((expected_max_normal(16, true) - 1.7660).abs() < 1e-4);
/// ```
pub fn expected_max_normal(n: usize, signed: bool) -> f64 {
    assert!(n > 0, "the largest of no normals");
    let phi = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let cdf = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
    let nf = n as f64;
    let density = |x: f64| {
        if signed {
            nf * phi(x) * cdf(x).powi(n as i32 - 1)
        } else {
            nf * 2.0 * phi(x) * (2.0 * cdf(x) - 1.0).max(0.0).powi(n as i32 - 1)
        }
    };
    // Beyond 12 standard deviations the density is below 1e-30 for any n
    // a run has; below -12 (signed) likewise.
    let (lo, hi, intervals) = (if signed { -12.0 } else { 0.0 }, 12.0, 24_000);
    let h = (hi - lo) / intervals as f64;
    let sum: f64 = (0..=intervals)
        .map(|i| {
            let x = lo + i as f64 * h;
            let weight = match i {
                0 => 1.0,
                i if i == intervals => 1.0,
                i if i % 2 == 1 => 4.0,
                _ => 2.0,
            };
            weight * x * density(x)
        })
        .sum();
    sum * h / 3.0
}

/// The expected best starting overlap among `pairs` independent
/// expert–direction overlaps in R^`d` that can grow: each overlap is about
/// N(0, 1/d), so the best is `expected_max_normal(pairs, signed) / sqrt(d)`.
/// `signed`: only overlaps of one sign can grow (the best is the largest
/// signed value); otherwise either sign can (the best is the largest |m|).
///
/// ```
/// use clustermoe::theory::expected_best_start;
///
/// // 16 sign-matched pairs at d = 32: about 1.766 / sqrt(32).
/// assert!((expected_best_start(32, 16, true) - 0.3122).abs() < 1e-3);
/// ```
pub fn expected_best_start(d: usize, pairs: usize, signed: bool) -> f64 {
    expected_max_normal(pairs, signed) / (d as f64).sqrt()
}

/// The expected best phase-I starting overlap that can grow, for `experts`
/// experts with the alternating signs a_j = +1, -1, +1, ... of
/// `phase_one.sign = "alternating"` (the default, and E2's and E3's: restarts
/// off, so no sign flips) and `clusters` clusters whose local links share
/// the sign of their `h_k` coefficient beta (every link `h_k` in E2 and E3).
///
/// Expert j climbs `a_j beta m^k`, so its overlap m with w*_c drifts by
/// `a_j beta k m^(k-1) (1 - m^2) / C`:
/// * odd k: every pair can grow, but only from `a_j m > 0` (from the other
///   sign m is pushed back to 0 and stalls there): the best of `M C` signed
///   overlaps `a_j beta m`, independent N(0, 1/d);
/// * even k: any sign of m grows, but only for the experts with
///   `a_j beta > 0` (the others are pushed to m = 0): the best |m| of
///   `ceil(M / 2) C` pairs.
///
/// The best of all `M C` |overlaps| (`sqrt(2 ln(M C) / d)` to leading
/// order) counts pairs that cannot grow and starts the ODE too high.
///
/// ```
/// use clustermoe::theory::{expected_best_start, sign_matched_start};
///
/// assert_eq!(sign_matched_start(3, 32, 8, 2), expected_best_start(32, 16, true));
/// assert_eq!(sign_matched_start(4, 32, 8, 2), expected_best_start(32, 8, false));
/// ```
pub fn sign_matched_start(k: usize, d: usize, experts: usize, clusters: usize) -> f64 {
    if k % 2 == 1 {
        expected_best_start(d, experts * clusters, true)
    } else {
        expected_best_start(d, experts.div_ceil(2) * clusters, false)
    }
}

/// The second moment of a one-sample tangent gradient `P_u grad l`, split as
/// `E|P_u grad l|^2 = (d - 1) per_direction + excess`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientNoise {
    /// `E[y^2 sigma'(<u, x>)^2]`: what each of the `d - 1` tangent
    /// directions would contribute if it were independent of the task.
    pub per_direction: f64,
    /// The correction from the at most `C + 1` tangent directions that the
    /// target depends on (O(1), not O(d)).
    pub excess: f64,
}

impl GradientNoise {
    /// `DriftParams::noise_variance` in dimension `d`:
    /// `per_direction + excess / (d - 1)`.
    pub fn noise_variance(&self, d: usize) -> f64 {
        self.per_direction + self.excess / d.saturating_sub(1).max(1) as f64
    }
}

/// [`GradientNoise`] of an expert `u` at overlap `m` with one cluster's local
/// direction and orthogonal to the other task directions, by Gauss–Hermite
/// quadrature (exact for polynomial links). With `sigma = h_k`
/// (`sigma'^2 = k h_(k-1)^2`, `E[sigma'^2] = k`), `M2(f) = E[f(z)^2]`,
/// `M4(f) = E[f(z)^2 z^2]`, and `t`, `e` independent N(0, 1):
///
/// ```text
/// per_direction = (1/C) E[f(m t + q e)^2 sigma'(t)^2]
///               + ((C - 1)/C) k M2(f) + k (M2(g) + zeta^2),     q = sqrt(1 - m^2),
/// excess = ((C - 1)/C) k (M4(f) - M2(f)) + k (M4(g) - M2(g))
///        + (1/C) E[f(m t + q e)^2 sigma'(t)^2 (e^2 - 1)],
/// ```
///
/// from the other clusters' `w*_c`, from `w*_g`, and from the unit tangent
/// vector towards the expert's own `w*_c` (`e` is the input's coordinate
/// along it). `local` and `global` are the Hermite coefficients of `f*_c`
/// (the same for all clusters) and `g*`; `|s_c| = 1`; links are taken with
/// zero mean (degree-0 coefficients are skipped). One cross term,
/// `(2 s_c / C) E[g(z) z^2] E[f(z1) sigma'(t)^2]`, is left out: it is zero
/// when either link is odd and cancels on average over the clusters since
/// `sum_c s_c = 0`. At `m = 0`, `per_direction = k E[y^2]`.
///
/// # Panics
/// If `clusters == 0`.
///
/// ```
/// use clustermoe::theory::gradient_noise;
///
/// // The default task (h_3 links, C = 2, noise std 0.1) at the equator:
/// // per_direction = k E[y^2] = 3 (1 + 1 + 0.01).
/// let h3 = [0.0, 0.0, 0.0, 1.0];
/// let noise = gradient_noise(3, &h3, &h3, 0.1, 2, 0.0);
/// assert!((noise.per_direction - 3.0 * 2.01).abs() < 1e-9);
/// assert!((noise.noise_variance(32) - (3.0 * 2.01 + 36.0 / 31.0)).abs() < 1e-9);
/// ```
pub fn gradient_noise(
    k: usize,
    local: &[f64],
    global: &[f64],
    noise_std: f64,
    clusters: usize,
    m: f64,
) -> GradientNoise {
    assert!(clusters > 0, "at least one cluster");
    let zero_mean = |c: &[f64]| {
        let mut c = c.to_vec();
        if let Some(c0) = c.first_mut() {
            *c0 = 0.0;
        }
        c
    };
    let (f, g) = (zero_mean(local), zero_mean(global));
    let gh = GaussHermite::new(f.len().max(g.len()) + k + 2);
    let m2 = |c: &[f64]| gh.expect(|z| hermite_series(c, z).powi(2));
    let m4 = |c: &[f64]| gh.expect(|z| (z * hermite_series(c, z)).powi(2));
    let q = (1.0 - m * m).max(0.0).sqrt();
    // E[f(m t + q e)^2 sigma'(t)^2 (1, e^2 - 1)].
    let own = |weight: fn(f64) -> f64| {
        gh.expect(|t| {
            let slope2 = hermite_derivative(k, t).powi(2);
            slope2 * gh.expect(|e| hermite_series(&f, m * t + q * e).powi(2) * weight(e))
        })
    };
    let (kf, c) = (k as f64, clusters as f64);
    let zeta2 = noise_std * noise_std;
    GradientNoise {
        per_direction: own(|_| 1.0) / c + (c - 1.0) / c * kf * m2(&f) + kf * (m2(&g) + zeta2),
        excess: (c - 1.0) / c * kf * (m4(&f) - m2(&f))
            + kf * (m4(&g) - m2(&g))
            + own(|e| e * e - 1.0) / c,
    }
}

/// One Dormand–Prince 5(4) step of the autonomous `dx/dt = f(x)`: the
/// fifth-order value and the error estimate relative to the tolerance.
fn rk45(f: impl Fn(f64) -> f64, x: f64, h: f64) -> (f64, f64) {
    const RTOL: f64 = 1e-10;
    const ATOL: f64 = 1e-14;
    let k1 = f(x);
    let k2 = f(x + h * (k1 / 5.0));
    let k3 = f(x + h * (3.0 / 40.0 * k1 + 9.0 / 40.0 * k2));
    let k4 = f(x + h * (44.0 / 45.0 * k1 - 56.0 / 15.0 * k2 + 32.0 / 9.0 * k3));
    let k5 = f(x + h
        * (19372.0 / 6561.0 * k1 - 25360.0 / 2187.0 * k2 + 64448.0 / 6561.0 * k3
            - 212.0 / 729.0 * k4));
    let k6 = f(x + h
        * (9017.0 / 3168.0 * k1 - 355.0 / 33.0 * k2 + 46732.0 / 5247.0 * k3 + 49.0 / 176.0 * k4
            - 5103.0 / 18656.0 * k5));
    let x1 = x + h
        * (35.0 / 384.0 * k1 + 500.0 / 1113.0 * k3 + 125.0 / 192.0 * k4 - 2187.0 / 6784.0 * k5
            + 11.0 / 84.0 * k6);
    let k7 = f(x1);
    let err = h
        * (71.0 / 57600.0 * k1 - 71.0 / 16695.0 * k3 + 71.0 / 1920.0 * k4
            - 17253.0 / 339200.0 * k5
            + 22.0 / 525.0 * k6
            - k7 / 40.0);
    let err = err.abs() / (ATOL + RTOL * x.abs().max(x1.abs()));
    // The exact solution is monotone and never crosses a zero of f: reject
    // a step that does (too long for stability near a stable fixed point).
    if (x1 - x) * k1 < 0.0 || k1 * k7 < 0.0 {
        (x1, err.max(4.0))
    } else {
        (x1, err)
    }
}

/// The usual step-size update for a fifth-order method, within [0.2, 5].
fn step_factor(err: f64) -> f64 {
    if err == 0.0 {
        5.0
    } else {
        (0.9 * err.powf(-0.2)).clamp(0.2, 5.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn params(k: usize, d: usize, lr: f64, noise_variance: f64) -> DriftParams {
        DriftParams {
            k,
            beta: 1.0,
            clusters: 2,
            lr,
            batch: 64,
            d,
            noise_variance,
        }
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    #[test]
    fn drift_signs_and_zeros() {
        for k in 2..=5 {
            let p = params(k, 32, 0.003, 0.0);
            assert_eq!(p.drift(0.0), 0.0);
            assert_eq!(p.drift(1.0), 0.0);
            assert!(p.drift(0.3) > 0.0);
            // |m| grows for even k whatever the sign; odd k pushes m < 0 up.
            assert!(p.drift(-0.3) * if k % 2 == 0 { -1.0 } else { 1.0 } > 0.0);
            // Shrinkage pulls towards 0 and makes m = 1 repel inwards.
            let q = params(k, 32, 0.003, 6.0);
            assert!(q.drift(1.0) < 0.0 && q.drift(0.3) < p.drift(0.3));
            assert_eq!(q.drift(0.0), 0.0);
        }
    }

    #[test]
    fn integration_matches_exact_quadrature_and_closed_form() {
        let (d, m0, th) = (1024, typical_initial_overlap(1024), 0.2);
        // Without shrinkage, dt = dm / (a m^(k-1) (1 - m^2)) integrates in
        // closed form: k = 3 gives 1/m + atanh(m), k = 4 gives
        // 1/(2 m^2) - ln m + ln(1 - m^2) / 2 (as minus the antiderivative).
        let p3 = params(3, d, 0.003, 0.0);
        let exact3 = (1.0 / m0 - 1.0 / th + th.atanh() - m0.atanh()) / p3.signal_rate();
        let p4 = params(4, d, 0.003, 0.0);
        let anti4 = |m: f64| -0.5 / (m * m) + m.ln() - 0.5 * (1.0 - m * m).ln();
        let exact4 = (anti4(th) - anti4(m0)) / p4.signal_rate();
        for (p, exact) in [(p3, exact3), (p4, exact4)] {
            let t = p.recovery_step(m0, th).unwrap();
            assert!(rel(t, exact) < 1e-7, "k = {}: {t} vs {exact}", p.k);
            let lead = p.recovery_step_leading_order(m0, th).unwrap();
            assert!(rel(t, lead) < 0.01, "k = {}: {t} vs {lead}", p.k);
            // The trajectory reaches the threshold at the same time.
            let end = p.trajectory(m0, t, 3)[2].overlap;
            assert!((end - th).abs() < 1e-7, "k = {}: {end}", p.k);
        }
        // k = 2: ln m - ln(1 - m^2) / 2; the 1 - m^2 factor alone adds 1.1%.
        let p2 = params(2, d, 0.003, 0.0);
        let anti2 = |m: f64| m.ln() - 0.5 * (1.0 - m * m).ln();
        let exact2 = (anti2(th) - anti2(m0)) / p2.signal_rate();
        assert!(rel(p2.recovery_step(m0, th).unwrap(), exact2) < 1e-7);
        let lead = p2.recovery_step_leading_order(m0, th).unwrap();
        assert!(rel(lead, (th / m0).ln() / p2.signal_rate()) < 1e-12);
        assert!(rel(exact2, lead) < 0.02);
    }

    #[test]
    fn recovery_time_scales_like_d_to_the_k_minus_2_over_2() {
        // T(d) = A d^((k-2)/2) + B, where B (the time from about m = 1/4 up
        // to the threshold) is not small at d = 16; the increments
        // T(2d) - T(d) remove it.
        let ds = [16, 32, 64, 128, 256];
        for k in [3, 4] {
            let t: Vec<f64> = ds
                .iter()
                .map(|&d| {
                    params(k, d, 0.003, 0.0)
                        .recovery_step(typical_initial_overlap(d), 0.5)
                        .unwrap()
                })
                .collect();
            assert!(t.windows(2).all(|w| w[1] > w[0]));
            let (xs, ys): (Vec<f64>, Vec<f64>) = ds
                .iter()
                .zip(t.windows(2))
                .map(|(&d, w)| ((d as f64).ln(), (w[1] - w[0]).ln()))
                .unzip();
            let slope = least_squares_slope(&xs, &ys);
            let want = (k as f64 - 2.0) / 2.0;
            assert!((slope - want).abs() < 0.05, "k = {k}: slope {slope}");
        }
    }

    fn least_squares_slope(xs: &[f64], ys: &[f64]) -> f64 {
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        sxy / sxx
    }

    #[test]
    fn strong_shrinkage_or_wrong_sign_prevents_recovery() {
        let d = 32;
        let m0 = typical_initial_overlap(d);
        let weak = DriftParams::default_task(d, 0.003, 64);
        assert!(weak.recovery_step(m0, 0.5).is_some());
        assert!(weak.critical_lr(m0) > 0.003);
        let strong = DriftParams::default_task(d, 0.5, 64);
        assert!(strong.critical_lr(m0) < 0.5);
        assert_eq!(strong.recovery_step(m0, 0.5), None);
        // Its mean path decays towards 0 instead.
        let path = strong.trajectory(m0, 1e4, 11);
        assert!(path.last().unwrap().overlap < 0.01 * m0);
        // The leading order ignores shrinkage.
        assert!(strong.recovery_step_leading_order(m0, 0.5).is_some());
        // Odd k from the wrong side, or from the equator.
        assert_eq!(weak.recovery_step(-m0, 0.5), None);
        assert_eq!(weak.recovery_step_leading_order(-m0, 0.5), None);
        assert_eq!(weak.recovery_step(0.0, 0.5), None);
        // Even k grows either way, symmetrically.
        let even = params(4, d, 0.003, 0.0);
        assert_eq!(even.recovery_step(-m0, 0.5), even.recovery_step(m0, 0.5));
        // A threshold of 1 is only approached.
        assert_eq!(weak.recovery_step(m0, 1.0), None);
        assert_eq!(weak.recovery_step(0.6, 0.5), Some(0.0));
    }

    #[test]
    fn trajectory_is_monotone_and_bounded() {
        for p in [
            DriftParams::default_task(32, 0.003, 64),
            params(3, 32, 0.003, 0.0),
            params(4, 64, 0.01, 0.0),
            params(2, 64, 0.01, 6.0),
        ] {
            let m0 = typical_initial_overlap(p.d);
            let path = p.trajectory(m0, 1e5, 200);
            assert_eq!(path.len(), 200);
            assert_eq!(path[0].overlap, m0);
            assert!(path.windows(2).all(|w| w[1].overlap >= w[0].overlap));
            let end = path.last().unwrap();
            assert!(end.overlap <= 1.0 && end.overlap > 0.9, "{p:?}: {end:?}");
            assert_eq!(end.step, 1e5);
            assert_eq!(end.samples, 1e5 * p.batch as f64);
        }
        // With shrinkage the overlap settles where a (1 - m^2) ~ b.
        let p = DriftParams::default_task(32, 0.003, 64);
        let end = p.trajectory(0.2, 1e5, 2)[1].overlap;
        let b_over_a = p.shrinkage_rate() / p.signal_rate();
        assert!(rel(1.0 - end * end, b_over_a) < 0.01);
    }

    #[test]
    fn noise_of_the_default_task() {
        let h3 = [0.0, 0.0, 0.0, 1.0];
        let at0 = gradient_noise(3, &h3, &h3, 0.1, 2, 0.0);
        assert!(rel(at0.per_direction, 3.0 * 2.01) < 1e-12);
        // E[h_3^2 z^2] = 7: each of the three task directions adds 3 * 6 / C
        // per cluster that uses it.
        assert!(rel(at0.excess, 36.0) < 1e-12);
        // At m = 1 the own cluster gives E[h_3^2 sigma'^2] = 3 E[h_3^2 h_2^2],
        // h_3^2 h_2^2 = (z^3 - 3z)^2 (z^2 - 1)^2 / 12, and its e is
        // independent of y.
        let poly = |z: f64| (z.powi(3) - 3.0 * z).powi(2) * (z * z - 1.0).powi(2) / 12.0;
        let own = 3.0 * GaussHermite::new(8).expect(poly);
        let at1 = gradient_noise(3, &h3, &h3, 0.1, 2, 1.0);
        assert!(rel(at1.per_direction, own / 2.0 + 1.5 + 3.0 * 1.01) < 1e-12);
        assert!(rel(at1.excess, 9.0 + 18.0) < 1e-12);
        assert!(rel(at1.noise_variance(28), at1.per_direction + 1.0) < 1e-12);
    }

    /// The mean one-step change of m under simulated spherical SGD matches
    /// `drift(m)`, shrinkage included, on the default task's law (centred
    /// inputs; w*_1 = e_0, w*_2 = e_1, w*_g = e_2; u in span(e_0, e_3)).
    #[test]
    fn drift_matches_simulated_sgd_steps() {
        let (d, batch, lr, m, k) = (32, 8, 0.01, 0.4, 3);
        let h3 = [0.0, 0.0, 0.0, 1.0];
        let p = DriftParams {
            batch,
            noise_variance: gradient_noise(k, &h3, &h3, 0.1, 2, m).noise_variance(d),
            ..DriftParams::default_task(d, lr, batch)
        };
        let mut u = vec![0.0; d];
        (u[0], u[3]) = (m, (1.0 - m * m).sqrt());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let (reps, mut sum) = (400_000, 0.0);
        let (mut x, mut g) = (vec![0.0; d], vec![0.0; d]);
        for _ in 0..reps {
            g.fill(0.0);
            for _ in 0..batch {
                x.iter_mut().for_each(|xi| *xi = rng.sample(StandardNormal));
                let (c, s) = if rng.gen::<bool>() {
                    (0, 1.0)
                } else {
                    (1, -1.0)
                };
                let eps: f64 = rng.sample(StandardNormal);
                let y = hermite_series(&h3, x[c]) + s * hermite_series(&h3, x[2]) + 0.1 * eps;
                let t: f64 = u.iter().zip(&x).map(|(a, b)| a * b).sum();
                let slope = -y * hermite_derivative(k, t) / batch as f64;
                g.iter_mut().zip(&x).for_each(|(gi, xi)| *gi += slope * xi);
            }
            let radial: f64 = u.iter().zip(&g).map(|(a, b)| a * b).sum();
            let step = |i: usize| u[i] - lr * (g[i] - radial * u[i]);
            let norm = (0..d).map(|i| step(i).powi(2)).sum::<f64>().sqrt();
            sum += step(0) / norm - m;
        }
        let (mean, want) = (sum / reps as f64, p.drift(m));
        // The shrinkage is 0.76 of the signal here; the standard error is
        // about 0.017 of it, and sigma2 without the excess (its large-d
        // limit) would miss by 0.15 of it.
        let shrink = p.shrinkage_rate() * m;
        assert!((mean - want).abs() < 0.1 * shrink, "{mean} vs {want}");
    }

    /// The quadrature's expected best start against simulated random unit
    /// directions: the mean best overlap over many draws, within four
    /// standard errors (about 0.5 % of the value: the leading-order
    /// `sqrt(2 ln n / d)` misses by 25 % and fails).
    #[test]
    fn expected_best_start_matches_random_directions() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let reps = 20_000;
        for (d, pairs, signed) in [
            (32, 16, true),
            (64, 8, false),
            (48, 3, true),
            (128, 16, false),
        ] {
            let want = expected_best_start(d, pairs, signed);
            let (mut sum, mut sum2) = (0.0, 0.0);
            let mut z = vec![0.0f64; d];
            for _ in 0..reps {
                let mut best = f64::NEG_INFINITY;
                for _ in 0..pairs {
                    z.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
                    let m = z[0] / z.iter().map(|v| v * v).sum::<f64>().sqrt();
                    best = best.max(if signed { m } else { m.abs() });
                }
                (sum, sum2) = (sum + best, sum2 + best * best);
            }
            let mean = sum / reps as f64;
            let se = ((sum2 / reps as f64 - mean * mean) / reps as f64).sqrt();
            // N(0, 1/d) against the exact law of a unit vector's coordinate:
            // a bias of order 1/d of the value, well inside the tolerance.
            assert!(
                (mean - want).abs() < 4.0 * se + 0.01 * want,
                "d {d}, {pairs} pairs: {mean} vs {want}"
            );
            let leading = (2.0 * (pairs as f64).ln() / d as f64).sqrt();
            if signed && pairs == 16 {
                assert!((mean - leading).abs() > 0.2 * mean);
            }
        }
        assert!((expected_max_normal(16, true) - 1.766).abs() < 1e-3);
    }

    #[test]
    fn a_hermite_task_has_its_own_noise() {
        let (k3, k4) = (
            DriftParams::hermite_task(3, 64, 0.001, 64),
            DriftParams::hermite_task(4, 64, 0.001, 64),
        );
        assert_eq!(k4.k, 4);
        // k E[y^2] at the equator, 3 (2.01) against 4 (2.01), plus the
        // excess over d - 1.
        let h4 = [0.0, 0.0, 0.0, 0.0, 1.0];
        let noise = gradient_noise(4, &h4, &h4, 0.1, 2, 0.0);
        assert!(rel(noise.per_direction, 4.0 * 2.01) < 1e-12);
        assert!(rel(k4.noise_variance, noise.noise_variance(64)) < 1e-12);
        assert!(rel(k3.noise_variance, 3.0 * 2.01 + 36.0 / 63.0) < 1e-12);
        assert!(k4.noise_variance > k3.noise_variance * 1.3);
    }
}
