//! The two models and the phases of a run, as files and messages name them
//! (`"moe"`, `"phase_one"`, ...): types, so that a renamed phase cannot
//! silently fall through a string match.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which of the two models.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The mixture of experts, trained by the staged algorithm.
    #[default]
    Moe,
    /// The vanilla two-layer network of the same size and budget.
    Vanilla,
}

impl ModelKind {
    /// Both models, in the order of every file and table.
    pub const ALL: [ModelKind; 2] = [ModelKind::Moe, ModelKind::Vanilla];

    /// The name files and messages use.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Moe => "moe",
            ModelKind::Vanilla => "vanilla",
        }
    }
}

/// A phase of a model's run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// MoE phase I: experts find directions.
    #[default]
    PhaseOne,
    /// MoE phase II: the router.
    PhaseTwo,
    /// MoE phase III: the experts' neurons.
    PhaseThree,
    /// MoE phase IV: the readout.
    PhaseFour,
    /// The vanilla network's training.
    Train,
    /// The vanilla network's readout.
    Readout,
    /// The final evaluation of either model.
    Test,
    /// Joint training of either model (`moe.training = "joint"`).
    Joint,
}

impl Phase {
    /// The name files, messages and configuration sections use.
    pub fn name(self) -> &'static str {
        match self {
            Phase::PhaseOne => "phase_one",
            Phase::PhaseTwo => "phase_two",
            Phase::PhaseThree => "phase_three",
            Phase::PhaseFour => "phase_four",
            Phase::Train => "train",
            Phase::Readout => "readout",
            Phase::Test => "test",
            Phase::Joint => "joint",
        }
    }
}

/// A model as a type, for what is generic over the model (the stages of
/// joint training): a checkpoint of one model then cannot be handed to the
/// other.
pub trait ModelTag: Clone + Copy + fmt::Debug + Default + Send + Sync + 'static {
    /// The model this type stands for.
    const MODEL: ModelKind;
}

/// The mixture of experts, as a type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoeTag;

/// The vanilla network, as a type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VanillaTag;

impl ModelTag for MoeTag {
    const MODEL: ModelKind = ModelKind::Moe;
}

impl ModelTag for VanillaTag {
    const MODEL: ModelKind = ModelKind::Vanilla;
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialised_forms() {
        for m in ModelKind::ALL {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        for p in [
            Phase::PhaseOne,
            Phase::PhaseTwo,
            Phase::PhaseThree,
            Phase::PhaseFour,
            Phase::Train,
            Phase::Readout,
            Phase::Test,
            Phase::Joint,
        ] {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
            let back: Phase = serde_json::from_str(&format!("\"{}\"", p.name())).unwrap();
            assert_eq!(back, p);
        }
    }
}
