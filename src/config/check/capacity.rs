//! Model sizes that follow the task: `moe.experts` and the `[readout]`
//! section, resolved from "auto" by [`crate::capacity`].

use super::{finite_at_least, positive_count, MAX_UNITS};
use crate::budget::Budget;
use crate::capacity::{
    experts_for, p_all_found, readout_plan, ExpertsChoice, ReadoutFixed, ReadoutNeeds,
};
use crate::config::{Allocation, Auto, MoeConfig, ReadoutConfig, ValidReadout, ValidTask};
use crate::error::{Error, Result};
use crate::numerics::link::Link;

/// `moe.experts`: the number given, or the fewest with which phase I finds
/// every cluster with probability 0.999, counting the restarts of the
/// budget laws' phase I (three) unless restarts are off
/// (`restart_every` 0). The model's size follows the task, not the phase
/// lengths a run sets.
pub(super) fn experts(
    task: &ValidTask,
    m: &MoeConfig,
    restart_every: u64,
    budget: &Budget,
) -> ExpertsChoice {
    let restart_rounds = if restart_every == 0 {
        0
    } else {
        budget.phase_one_steps.saturating_sub(1) / budget.restart_every.max(1)
    };
    match m.experts {
        Auto::Auto => experts_for(task.clusters, restart_rounds),
        Auto::Value(experts) => ExpertsChoice {
            experts,
            restart_rounds,
            p_all_found: p_all_found(task.clusters, experts, restart_rounds),
        },
    }
}

/// `[readout]` with its "auto" fields resolved for both models: `sizes` are
/// the MoE's settings, its resolved M and the vanilla network's neurons;
/// the features aim at a tenth of the relative-error target.
pub(super) fn readout(
    ro: &ReadoutConfig,
    task: &ValidTask,
    (m, experts, vanilla_neurons): (&MoeConfig, usize, usize),
    relative_error: f64,
) -> Result<ValidReadout> {
    if let Auto::Value(samples) = ro.samples {
        positive_count("readout.samples", samples, 1 << 30)?;
    }
    finite_at_least("readout.ridge", ro.ridge, 0.0)?;
    if let Auto::Value(b) = ro.bias_max {
        finite_at_least("readout.bias_max", b, 0.0)?;
    }
    if let Auto::Value(b) = ro.biases {
        positive_count("readout.biases", b, 1024)?;
    }
    let (moe, vanilla) = needs(task, m, experts, vanilla_neurons);
    let fixed = ReadoutFixed {
        samples: value(ro.samples),
        biases: value(ro.biases),
        bias_max: value(ro.bias_max),
    };
    let choice = readout_plan(&moe, &vanilla, fixed, ro.ridge, relative_error / 10.0);
    let widest =
        (experts * m.neurons * choice.moe.biases).max(vanilla_neurons * choice.vanilla.biases);
    if widest > MAX_UNITS {
        return Err(Error::invalid(
            "readout.biases",
            choice.moe.biases.max(choice.vanilla.biases),
            format!("at most {MAX_UNITS} readout features in all (neurons x readout.biases)"),
        ));
    }
    Ok(ValidReadout {
        samples: choice.samples,
        ridge: ro.ridge,
        moe: choice.moe,
        vanilla: choice.vanilla,
    })
}

fn value<T: Copy>(a: Auto<T>) -> Option<T> {
    match a {
        Auto::Value(v) => Some(v),
        Auto::Auto => None,
    }
}

/// What each model's readout fits: the MoE's experts each carry their
/// cluster's local link and the global one, on the M x J neurons shared by
/// the C routed experts; the vanilla network carries every link, on its
/// neurons spread over the C + 1 directions. Either fits each link on one
/// cluster's samples.
fn needs(
    task: &ValidTask,
    m: &MoeConfig,
    experts: usize,
    vanilla_neurons: usize,
) -> (ReadoutNeeds, ReadoutNeeds) {
    let c = task.clusters;
    let global = task.signs.iter().any(|s| *s != 0.0) && task.global_link.variance() > 0.0;
    let mut links: Vec<Link> = Vec::new();
    for l in task
        .local_links
        .iter()
        .chain(global.then_some(&task.global_link))
    {
        if !links.contains(l) {
            links.push(l.clone());
        }
    }
    let per_expert = match m.allocation {
        Allocation::ByLoad => experts * m.neurons / c.min(experts),
        Allocation::PerExpert => m.neurons * (experts / c).max(1),
    };
    let moe_directions = 1 + global as usize;
    let share = 1.0 / c as f64;
    (
        ReadoutNeeds {
            links: links.clone(),
            neurons_per_direction: (per_expert / moe_directions).max(1),
            share,
        },
        ReadoutNeeds {
            links,
            neurons_per_direction: (vanilla_neurons / (c + global as usize)).max(1),
            share,
        },
    )
}
