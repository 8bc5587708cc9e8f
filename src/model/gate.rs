//! The router's gates (docs/algorithm.md, docs/joint-training.md): which
//! experts a sample's logits keep and how they are weighted. One definition
//! serves the staged router ([`super::router::Router::gates`], in f32) and
//! joint training ([`super::joint::Pass`], in f32 or f64):
//! - the kinds ([`Gate`]) and the rule with its options ([`GateRule`]: k,
//!   the logit noise, the renormalisation);
//! - the selection ([`GateRule::select`]): every expert in order when the
//!   gate keeps them all, otherwise the largest logits, largest first, the
//!   first on ties (a noisy gate's noise already in the logits);
//! - the weights: a kept expert weighs its softmax probability over all M
//!   experts (Switch style: top-1 still gives the router a gradient) or,
//!   with `renormalise`, the softmax among the kept ones (GShard style;
//!   top-1 then weighs exactly 1).
//!
//! The renormalised weights are computed in one of two roundings, one per
//! caller, each kept so that its outputs stay what they were: joint
//! training has every probability anyway (its auxiliary losses and gradient
//! need them) and divides the kept ones by their sum
//! ([`GateRule::weigh`]); the staged router never forms them and takes the
//! softmax of the kept logits ([`GateRule::dense_row`]).
//!
//! Adding a gate: a [`Gate`] variant, its count of kept experts in
//! [`GateRule::kept`] and whether it adds noise in [`Gate::is_noisy`]; the
//! compiler points at every other place that must handle it.

use ndarray::NdFloat;

/// Gating function of the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// Every expert with weight softmax(Theta x).
    Softmax,
    /// The expert with the largest logit.
    Top1,
    /// The k largest logits.
    TopK,
    /// argmax of the logits plus Gaussian noise.
    NoisyTop1,
    /// The k largest of the logits plus Gaussian noise (Shazeer et al.
    /// 2017).
    NoisyTopK,
}

impl Gate {
    /// Whether the gate adds Gaussian noise to the logits before selecting.
    pub fn is_noisy(self) -> bool {
        match self {
            Gate::Softmax | Gate::Top1 | Gate::TopK => false,
            Gate::NoisyTop1 | Gate::NoisyTopK => true,
        }
    }
}

/// A gate with its options.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateRule {
    /// The gating function.
    pub kind: Gate,
    /// k of the top-k gates (the top-1 and softmax gates ignore it).
    // Checkpoints of earlier versions name it `top_k`.
    #[serde(alias = "top_k")]
    pub k: usize,
    /// Standard deviation of the logit noise of the noisy gates.
    pub noise: f64,
    /// Weigh the kept experts by the softmax among them (GShard) rather
    /// than by their probabilities over all experts (Switch).
    // Checkpoints of earlier versions hold staged rules only, which
    // renormalised.
    #[serde(default = "renormalised")]
    pub renormalise: bool,
}

fn renormalised() -> bool {
    true
}

impl GateRule {
    /// Experts kept per sample, out of `experts` (all of them for softmax).
    pub fn kept(&self, experts: usize) -> usize {
        match self.kind {
            Gate::Softmax => experts,
            Gate::Top1 | Gate::NoisyTop1 => 1,
            Gate::TopK | Gate::NoisyTopK => self.k.min(experts),
        }
    }

    /// Whether the logits get noise: a noisy kind with a positive scale.
    pub fn noisy(&self) -> bool {
        self.kind.is_noisy() && self.noise > 0.0
    }

    /// Whether the kept experts' weights are renormalised among them, out
    /// of `experts`: asked for, and some expert dropped (keeping every one,
    /// the two weightings are the same softmax).
    pub fn renormalises(&self, experts: usize) -> bool {
        self.renormalise && self.kept(experts) < experts
    }

    /// Writes a sample's kept experts into `kept` (of length
    /// [`GateRule::kept`]) from its logits: every expert in order when all
    /// are kept, otherwise the largest logits, largest first, the first on
    /// ties. k and M are small: repeated scans.
    pub fn select<T: NdFloat>(&self, logits: &[T], kept: &mut [usize]) {
        if kept.len() == logits.len() {
            kept.iter_mut().enumerate().for_each(|(t, s)| *s = t);
            return;
        }
        for t in 0..kept.len() {
            kept[t] = largest(logits, &kept[..t]);
        }
    }

    /// The kept experts' gates from a sample's softmax probabilities over
    /// all `probs.len()` experts (joint training): the probability, or,
    /// when [`GateRule::renormalises`], the probability over the kept ones'
    /// sum (summed in the order of `kept`).
    pub fn weigh<T: NdFloat>(&self, probs: &[T], kept: &[usize], gates: &mut [T]) {
        let renormalise = self.renormalises(probs.len());
        let mass = kept.iter().fold(T::zero(), |acc, &m| acc + probs[m]);
        for (g, &m) in gates.iter_mut().zip(kept) {
            *g = if renormalise {
                probs[m] / mass
            } else {
                probs[m]
            };
        }
    }

    /// One sample's gates over every expert, in place (the staged router):
    /// its logits in, its gates out, 0 off the kept experts. `kept` is
    /// scratch of length [`GateRule::kept`]. Renormalised gates are the
    /// softmax of the kept logits (the others masked to -inf), so top-1
    /// gives exactly 1 and 0.
    pub fn dense_row<T: NdFloat>(&self, row: &mut [T], kept: &mut [usize]) {
        let experts = row.len();
        if kept.len() == experts {
            softmax(row, T::neg_infinity());
            return;
        }
        self.select(row, kept);
        if self.renormalise {
            for (m, v) in row.iter_mut().enumerate() {
                if !kept.contains(&m) {
                    *v = T::neg_infinity();
                }
            }
            softmax(row, T::neg_infinity());
        } else {
            softmax(row, T::neg_infinity());
            for (m, v) in row.iter_mut().enumerate() {
                if !kept.contains(&m) {
                    *v = T::zero();
                }
            }
        }
    }
}

/// The index of the largest of `row`, the first on ties (so Theta = 0
/// routes everything to expert 0); NaN never wins.
pub(crate) fn argmax<T: NdFloat>(row: &[T]) -> usize {
    // Selects, not branches: which logit wins is a coin toss the branch
    // predictor would lose about once a row.
    let (mut best, mut top) = (0, T::neg_infinity());
    for (i, &v) in row.iter().enumerate() {
        let better = v > top;
        best = if better { i } else { best };
        top = if better { v } else { top };
    }
    best
}

/// The index of the largest of `row` outside `taken`, the first on ties.
fn largest<T: NdFloat>(row: &[T], taken: &[usize]) -> usize {
    if taken.is_empty() {
        return argmax(row);
    }
    (0..row.len())
        .filter(|m| !taken.contains(m))
        .fold(None, |best: Option<usize>, m| match best {
            Some(b) if row[b] >= row[m] => Some(b),
            Some(_) | None => Some(m),
        })
        .expect("an expert left")
}

/// softmax of `row` in place; returns the row's maximum and the sum of
/// exp(v - max), whose log plus the maximum is the row's logsumexp. Terms
/// with v - max below `floor` flush to 0: joint training passes the log of
/// the smallest normal (glibc's expf takes a slow path, ~60 ns, to
/// underflow, which is where a confident router sends most of its logits);
/// the staged router passes -inf, no flush.
pub(crate) fn softmax<T: NdFloat>(row: &mut [T], floor: T) -> (T, T) {
    let max = row.iter().copied().fold(T::neg_infinity(), T::max);
    let mut sum = T::zero();
    for v in row.iter_mut() {
        let t = *v - max;
        *v = if t < floor { T::zero() } else { t.exp() };
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
    (max, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Gate; 5] = [
        Gate::Softmax,
        Gate::Top1,
        Gate::TopK,
        Gate::NoisyTop1,
        Gate::NoisyTopK,
    ];

    fn rule(kind: Gate, k: usize, renormalise: bool) -> GateRule {
        GateRule {
            kind,
            k,
            noise: 0.5,
            renormalise,
        }
    }

    impl GateRule {
        fn with_noise(self, noise: f64) -> Self {
            GateRule { noise, ..self }
        }
    }

    /// Selection: all experts in order when all are kept, else the largest
    /// logits, largest first, the first of equal ones.
    #[test]
    fn selection_keeps_the_largest_logits_first_on_ties() {
        let logits = [0.5f64, 2.0, -1.0, 2.0, 1.5];
        let mut kept = [0; 3];
        rule(Gate::TopK, 3, false).select(&logits, &mut kept);
        assert_eq!(kept, [1, 3, 4]);
        let mut one = [9];
        rule(Gate::Top1, 3, false).select(&logits, &mut one);
        assert_eq!(one, [1]);
        let mut all = [9; 5];
        rule(Gate::Softmax, 1, false).select(&logits, &mut all);
        assert_eq!(all, [0, 1, 2, 3, 4]);
        assert_eq!(argmax(&[0.0f32, 0.0, 0.0]), 0);
        for kind in KINDS {
            let r = rule(kind, 3, true);
            let expected = match kind {
                Gate::Softmax => 5,
                Gate::Top1 | Gate::NoisyTop1 => 1,
                Gate::TopK | Gate::NoisyTopK => 3,
            };
            assert_eq!(r.kept(5), expected, "{kind:?}");
            assert_eq!(r.noisy(), kind.is_noisy(), "{kind:?}");
            assert_eq!(r.renormalises(5), expected < 5, "{kind:?}");
            assert!(!rule(kind, 3, false).renormalises(5));
            assert!(!GateRule { noise: 0.0, ..r }.noisy());
        }
        assert_eq!(rule(Gate::TopK, 7, true).kept(5), 5);
    }

    /// The staged router's dense rows and joint training's gates are the
    /// same weights, for every gate with both weightings: Switch (the
    /// probabilities over all experts) and renormalised (summing to 1,
    /// top-1 exactly 1).
    #[test]
    fn both_callers_weigh_the_kept_experts_alike() {
        let logits = [0.3f64, -1.2, 2.5, 0.9, 2.4, -0.1];
        let experts = logits.len();
        let mut probs = logits;
        softmax(&mut probs, f64::NEG_INFINITY);
        for kind in KINDS {
            for renormalise in [false, true] {
                let r = rule(kind, 3, renormalise);
                let mut kept = vec![0; r.kept(experts)];
                r.select(&logits, &mut kept);
                let mut gates = vec![0.0; kept.len()];
                r.weigh(&probs, &kept, &mut gates);
                let mut row = logits;
                r.dense_row(&mut row, &mut kept.clone());
                for (m, &v) in row.iter().enumerate() {
                    let expected = kept.iter().position(|&e| e == m).map_or(0.0, |t| gates[t]);
                    assert!((v - expected).abs() < 1e-15, "{kind:?} {renormalise} {m}");
                    if !renormalise {
                        assert!(expected == 0.0 || expected == probs[m]);
                    }
                }
                if renormalise || kept.len() == experts {
                    assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-15);
                }
                if renormalise && kept.len() == 1 {
                    assert_eq!(row.iter().filter(|&&v| v == 1.0).count(), 1);
                    assert_eq!(gates, [1.0]);
                }
            }
        }
    }

    /// A staged rule of a checkpoint written before the rule was shared
    /// (`top_k`, no `renormalise`) reads back as the rule it was.
    #[test]
    fn rules_of_earlier_checkpoints_read_back() {
        let old: GateRule =
            serde_json::from_str(r#"{"kind":"noisy_top_k","top_k":2,"noise":0.1}"#).unwrap();
        assert_eq!(old, rule(Gate::NoisyTopK, 2, true).with_noise(0.1));
        assert_eq!(old.noise as f32, 0.1f32);
        let new = rule(Gate::TopK, 3, false);
        let back: GateRule = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    /// The floor flushes only the terms below it, and the returned maximum
    /// and sum give the logsumexp.
    #[test]
    fn softmax_flushes_below_its_floor() {
        let mut row = [0.0f32, -100.0, -1.0];
        let (max, sum) = softmax(&mut row, f32::MIN_POSITIVE.ln());
        assert_eq!(row[1], 0.0);
        assert_eq!(max, 0.0);
        assert!((sum - (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        let mut unfloored = [0.0f32, -100.0, -1.0];
        softmax(&mut unfloored, f32::NEG_INFINITY);
        assert!(unfloored[1] > 0.0);
        assert_eq!(unfloored[0], row[0]);
    }
}
