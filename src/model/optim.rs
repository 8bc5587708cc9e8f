//! First-order optimizers of joint training (docs/joint-training.md) over a flat parameter
//! vector: SGD with (heavy-ball) momentum and Adam with bias correction.
//! The state is plain data, so checkpoints carry it and a resumed run
//! takes exactly the steps it would have taken.

use serde::{Deserialize, Serialize};

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// m <- momentum m + g; p <- p - lr m (PyTorch's convention; momentum 0
    /// is plain SGD).
    Sgd,
    /// Adam (Kingma & Ba 2015) with bias-corrected moments:
    /// p <- p - lr m_hat / (sqrt(v_hat) + eps).
    Adam,
}

/// An optimizer with its constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerRule {
    pub kind: OptimizerKind,
    /// SGD's momentum.
    pub momentum: f64,
    /// Adam's decay rates of the first and second moments.
    pub beta1: f64,
    pub beta2: f64,
    /// Adam's denominator floor.
    pub eps: f64,
}

/// The optimizer's state: steps taken and moment estimates (Adam's second
/// moment is empty for SGD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    pub steps: u64,
    pub first: Vec<f64>,
    pub second: Vec<f64>,
}

impl OptimizerState {
    /// Zero moments for `n` parameters.
    pub fn new(rule: &OptimizerRule, n: usize) -> Self {
        OptimizerState {
            steps: 0,
            first: vec![0.0; n],
            second: match rule.kind {
                OptimizerKind::Sgd => Vec::new(),
                OptimizerKind::Adam => vec![0.0; n],
            },
        }
    }

    /// One step on `params` along the gradient `grad` (f32 from training,
    /// f64 in tests) with learning rate `lr`; the moments are f64 either way.
    pub fn update<G: Copy + Into<f64>>(
        &mut self,
        rule: &OptimizerRule,
        params: &mut [f64],
        grad: &[G],
        lr: f64,
    ) {
        assert_eq!(params.len(), grad.len(), "one gradient per parameter");
        assert_eq!(
            self.first.len(),
            grad.len(),
            "state sized for the parameters"
        );
        self.steps += 1;
        match rule.kind {
            OptimizerKind::Sgd => {
                for ((p, m), &g) in params.iter_mut().zip(&mut self.first).zip(grad) {
                    *m = rule.momentum * *m + g.into();
                    *p -= lr * *m;
                }
            }
            OptimizerKind::Adam => {
                let t = self.steps as i32;
                // The bias corrections folded into two constants, so the
                // loop has one division and one square root per parameter.
                let step = lr / (1.0 - rule.beta1.powi(t));
                let scale = 1.0 / (1.0 - rule.beta2.powi(t));
                let (b1, b2) = (rule.beta1, rule.beta2);
                for (((p, m), v), &g) in params
                    .iter_mut()
                    .zip(&mut self.first)
                    .zip(&mut self.second)
                    .zip(grad)
                {
                    let g: f64 = g.into();
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= step * *m / ((*v * scale).sqrt() + rule.eps);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adam() -> OptimizerRule {
        OptimizerRule {
            kind: OptimizerKind::Adam,
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// The first Adam step moves every parameter by lr * g / (|g| + eps)
    /// (bias correction undoes the zero start); the second by the hand
    /// computation of the moments.
    #[test]
    fn adam_steps_agree_with_a_hand_computation() {
        let rule = adam();
        let mut p = vec![1.0, -2.0, 0.5];
        let g1 = [0.3, -4.0, 0.0];
        let mut state = OptimizerState::new(&rule, 3);
        state.update(&rule, &mut p, &g1, 0.01);
        let expect1 = [
            1.0 - 0.01 * 0.3 / (0.3 + 1e-8),
            -2.0 + 0.01 * 4.0 / (4.0 + 1e-8),
            0.5,
        ];
        for (a, b) in p.iter().zip(expect1) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        let g2 = [0.1, 2.0, -1.0];
        state.update(&rule, &mut p, &g2, 0.01);
        for i in 0..3 {
            let m = 0.9 * (0.1 * g1[i]) + 0.1 * g2[i];
            let v = 0.999 * (0.001 * g1[i] * g1[i]) + 0.001 * g2[i] * g2[i];
            let m_hat = m / (1.0 - 0.81);
            let v_hat = v / (1.0 - 0.999f64 * 0.999);
            let expect = expect1[i] - 0.01 * m_hat / (v_hat.sqrt() + 1e-8);
            assert!((p[i] - expect).abs() < 1e-14, "[{i}] {} vs {expect}", p[i]);
        }
        assert_eq!(state.steps, 2);
    }

    #[test]
    fn sgd_with_momentum_accumulates_the_velocity() {
        let rule = OptimizerRule {
            kind: OptimizerKind::Sgd,
            momentum: 0.5,
            ..adam()
        };
        let mut p = vec![1.0];
        let mut state = OptimizerState::new(&rule, 1);
        state.update(&rule, &mut p, &[2.0], 0.1);
        assert!((p[0] - 0.8).abs() < 1e-15);
        state.update(&rule, &mut p, &[2.0], 0.1);
        // velocity 0.5 * 2 + 2 = 3
        assert!((p[0] - 0.5).abs() < 1e-15);
        assert!(state.second.is_empty());
    }
}
