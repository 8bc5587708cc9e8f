//! Validation of the `[joint]` section (`moe.training = "joint"`).

use super::{
    checked_samples, finite_at_least, hermite_term, is_auto, keeps_top_k, positive_count, schedule,
    MAX_BATCH,
};
use crate::config::{Auto, JointConfig, MoeConfig, ValidJoint};
use crate::error::{Error, Result};
use crate::model::gate::GateRule;
use crate::model::joint::{JointActivation, JointInit, JointLoss};
use crate::model::optim::OptimizerRule;
use crate::numerics::link::{self, Link};

/// Joint training's settings; "auto" steps give each model `budget`
/// samples in all (the staged algorithm's budget, readout included), an
/// "auto" rate is [`auto_lr`] of the `clusters`.
pub(super) fn joint(
    j: &JointConfig,
    m: &MoeConfig,
    clusters: usize,
    information_exponent: usize,
    budget: u64,
    cap: &super::Cap,
) -> Result<ValidJoint> {
    positive_count("joint.batch", j.batch, MAX_BATCH)?;
    positive_count("joint.centre_samples", j.centre_samples, MAX_BATCH)?;
    let (steps, samples) = steps_and_samples(j, budget, cap)?;
    let lr = j.lr.or(auto_lr(clusters));
    let schedule = schedule("joint", lr, j.lr_end, j.decay_start, j.schedule)?;
    let optimizer = optimizer(j)?;
    finite_at_least("joint.lambda_bal", j.lambda_bal, 0.0)?;
    finite_at_least("joint.lambda_z", j.lambda_z, 0.0)?;
    if !j.init_first.is_finite() || j.init_first <= 0.0 {
        return Err(Error::invalid(
            "joint.init_first",
            j.init_first,
            "a finite number > 0",
        ));
    }
    finite_at_least("joint.init_bias", j.init_bias, 0.0)?;
    finite_at_least("joint.init_second", j.init_second, 0.0)?;
    finite_at_least("joint.init_router", j.init_router, 0.0)?;
    let activation = activation(j, information_exponent)?;
    Ok(ValidJoint {
        steps,
        batch: j.batch,
        schedule,
        optimizer,
        centre_samples: j.centre_samples,
        loss: JointLoss {
            activation,
            gate: GateRule {
                kind: m.gate,
                k: if keeps_top_k(m.gate) { m.top_k } else { 1 },
                noise: m.gate_noise,
                renormalise: j.renormalise,
            },
            balance: j.lambda_bal,
            z: j.lambda_z,
        },
        sphere: j.sphere,
        init: JointInit {
            first: if j.sphere { 1.0 } else { j.init_first },
            bias: j.init_bias,
            second: j.init_second,
            router: j.init_router,
        },
        samples,
    })
}

/// Adam's rate at which the router separates C = 2 clusters (top-1, eight
/// experts of eight neurons, the staged budget).
const BASE_LR: f64 = 1e-3;

/// The default rate for `clusters` clusters: 1e-3 (C - 1). At the base
/// rate the router leaves experts serving two clusters once C > 2 (purity
/// 0.77-0.92 at C = 4, 0.52-0.62 at C = 8); it reaches 0.95 from about
/// 3e-3 on at C = 4 and near 7e-3 at C = 8 (16 experts), so the rate grows
/// with the C - 1 boundaries the router has to draw, and C = 2 keeps 1e-3
/// (measurements: docs/joint-training.md, "More clusters").
pub(super) fn auto_lr(clusters: usize) -> f64 {
    BASE_LR * clusters.saturating_sub(1).max(1) as f64
}

/// `joint.steps` and the samples they draw with the centre's: "auto" as
/// many steps as `budget` samples take, else at most 2^52 samples.
fn steps_and_samples(j: &JointConfig, budget: u64, cap: &super::Cap) -> Result<(u64, u64)> {
    let centre = j.centre_samples as u64;
    match j.steps {
        Auto::Auto => {
            if budget <= centre {
                return Err(Error::invalid(
                    "joint.centre_samples",
                    j.centre_samples,
                    format!("fewer than the sample budget {budget} (or set joint.steps)"),
                ));
            }
            Ok(((budget - centre).div_ceil(j.batch as u64), budget))
        }
        Auto::Value(steps) => {
            let steps = cap.steps(steps);
            if steps == 0 || steps > u32::MAX as u64 {
                return Err(Error::invalid(
                    "joint.steps",
                    steps,
                    format!("an integer from 1 to {} or \"auto\"", u32::MAX),
                ));
            }
            let samples = checked_samples("joint.steps", steps, j.batch)?
                .checked_add(centre)
                .filter(|&t| t <= 1 << 52)
                .ok_or_else(|| {
                    Error::invalid("joint.steps", steps, "a total below 2^52 samples")
                })?;
            Ok((steps, samples))
        }
    }
}

/// The optimiser's rule: SGD's momentum and Adam's decay rates in [0, 1),
/// its floor `eps` > 0.
fn optimizer(j: &JointConfig) -> Result<OptimizerRule> {
    unit_interval_open_right("joint.momentum", j.momentum)?;
    unit_interval_open_right("joint.beta1", j.beta1)?;
    unit_interval_open_right("joint.beta2", j.beta2)?;
    if !j.eps.is_finite() || j.eps <= 0.0 {
        return Err(Error::invalid("joint.eps", j.eps, "a finite number > 0"));
    }
    Ok(OptimizerRule {
        kind: j.optimizer,
        momentum: j.momentum,
        beta1: j.beta1,
        beta2: j.beta2,
        eps: j.eps,
    })
}

/// `joint.activation`: any link with a derivative; "auto" is h_k* of the
/// task.
fn activation(j: &JointConfig, information_exponent: usize) -> Result<JointActivation> {
    let field = "joint.activation";
    let link = if is_auto(&j.activation) {
        Link::Hermite(hermite_term(information_exponent))
    } else {
        link::parse(field, &j.activation)?
    };
    JointActivation::from_link(&link).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{:?}", j.activation),
            "a link with a derivative: \"auto\" (h_k*), relu, tanh, abs, sigmoid or a Hermite polynomial such as \"h3\"",
        )
    })
}

fn unit_interval_open_right(field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || !(0.0..1.0).contains(&value) {
        return Err(Error::invalid(field, value, "a number in [0, 1)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C = 2 keeps the rate its runs were recorded with, bit for bit.
    #[test]
    fn auto_rate_is_the_base_at_two_clusters_and_grows_with_c() {
        assert_eq!(auto_lr(2).to_bits(), 1e-3f64.to_bits());
        assert_eq!(auto_lr(1), BASE_LR);
        assert!((auto_lr(4) - 3e-3).abs() < 1e-18);
        assert!((auto_lr(8) - 7e-3).abs() < 1e-18);
    }
}
