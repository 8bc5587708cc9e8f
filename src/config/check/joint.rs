//! Validation of the `[joint]` section (`moe.training = "joint"`).

use super::*;

/// Joint training's settings; "auto" steps give each model `budget`
/// samples in all (the staged algorithm's budget, readout included).
pub(super) fn joint(
    j: &JointConfig,
    m: &MoeConfig,
    information_exponent: usize,
    budget: u64,
) -> Result<ValidJoint> {
    positive_count("joint.batch", j.batch, MAX_BATCH)?;
    positive_count("joint.centre_samples", j.centre_samples, MAX_BATCH)?;
    let centre = j.centre_samples as u64;
    let (steps, samples) = match j.steps {
        crate::config::Auto::Auto => {
            if budget <= centre {
                return Err(Error::invalid(
                    "joint.centre_samples",
                    j.centre_samples,
                    format!("fewer than the sample budget {budget} (or set joint.steps)"),
                ));
            }
            ((budget - centre).div_ceil(j.batch as u64), budget)
        }
        crate::config::Auto::Value(steps) => {
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
            (steps, samples)
        }
    };
    let schedule = schedule("joint", j.lr, j.lr_end, j.decay_start, j.schedule)?;
    unit_interval_open_right("joint.momentum", j.momentum)?;
    unit_interval_open_right("joint.beta1", j.beta1)?;
    unit_interval_open_right("joint.beta2", j.beta2)?;
    if !j.eps.is_finite() || j.eps <= 0.0 {
        return Err(Error::invalid("joint.eps", j.eps, "a finite number > 0"));
    }
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
    let field = "joint.activation";
    let link = if j.activation.trim().eq_ignore_ascii_case("auto") {
        let mut c = vec![0.0; information_exponent + 1];
        c[information_exponent] = 1.0;
        Link::Hermite(c)
    } else {
        link::parse(field, &j.activation)?
    };
    let activation = JointActivation::from_link(&link).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{:?}", j.activation),
            "a link with a derivative: \"auto\" (h_k*), relu, tanh, abs, sigmoid or a Hermite polynomial such as \"h3\"",
        )
    })?;
    Ok(ValidJoint {
        steps,
        batch: j.batch,
        schedule,
        optimizer: OptimizerRule {
            kind: j.optimizer,
            momentum: j.momentum,
            beta1: j.beta1,
            beta2: j.beta2,
            eps: j.eps,
        },
        centre_samples: j.centre_samples,
        loss: JointLoss {
            activation,
            gate: GateRule {
                kind: m.gate,
                k: match m.gate {
                    Gate::TopK | Gate::NoisyTopK => m.top_k,
                    _ => 1,
                },
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

fn unit_interval_open_right(field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || !(0.0..1.0).contains(&value) {
        return Err(Error::invalid(field, value, "a number in [0, 1)"));
    }
    Ok(())
}
