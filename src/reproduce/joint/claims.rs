//! E6's hypotheses as claims, each with its line of the section's text:
//! per variant, the jointly trained MoE specialises and beats the jointly
//! trained vanilla network; and that vanilla network fails as in E1.

use serde_json::json;

use super::measured::{Measured, Staged};
use super::variants::VariantRuns;
use super::{PURITY_BAR, VANILLA_BAR};
use crate::reproduce::claims::{vanilla_miss, Quorum, Tally};
use crate::reproduce::stats::{max, mean, median, min, round4};
use crate::reproduce::Claim;

/// The variant's claims: E6.KEY.specialises (purity >= the bar in 90 % of
/// seeds) and E6.KEY.beats_vanilla (lower error than the joint vanilla
/// network of the same seed in 90 % of seeds).
pub(super) fn variant_claims(v: &VariantRuns, joint_vanilla: &Measured) -> [Claim; 2] {
    let (key, label, moe) = (v.variant.key, v.variant.label, &v.moe);
    let specialises = Tally::new(&moe.seeds, Quorum::Ninety, |i| {
        let p = moe.purity[i];
        let apart = p >= PURITY_BAR;
        (!apart)
            .then(|| format!("purity {p:.4} < {PURITY_BAR}"))
            .into_iter()
            .collect()
    });
    let beats: Vec<bool> = moe
        .rel_mse
        .iter()
        .zip(&joint_vanilla.rel_mse)
        .map(|(m, v)| m < v)
        .collect();
    let beats_vanilla = Tally::new(&moe.seeds[..beats.len()], Quorum::Ninety, |i| {
        let (m, v) = (moe.rel_mse[i], joint_vanilla.rel_mse[i]);
        (!beats[i])
            .then(|| format!("joint MoE relative MSE {m:.4} >= the joint vanilla network's {v:.4}"))
            .into_iter()
            .collect()
    });
    [
        specialises.claim(
            format!("E6.{key}.specialises"),
            format!("{label}: the jointly trained MoE routes the clusters apart, purity >= {PURITY_BAR} in at least 90% of seeds"),
            json!({ "seeds_held": specialises.held, "seeds": moe.purity.len(), "mean_purity": round4(mean(&moe.purity)) }),
        ),
        beats_vanilla.claim(
            format!("E6.{key}.beats_vanilla"),
            format!("{label}: lower test error than the jointly trained vanilla network of the same seed in at least 90% of seeds"),
            json!({ "seeds_held": beats_vanilla.held, "seeds": beats.len(), "median_rel_mse": round4(median(&moe.rel_mse)), "vanilla_median_rel_mse": round4(median(&joint_vanilla.rel_mse)) }),
        ),
    ]
}

/// The variant's line of the section's text.
pub(super) fn variant_line(v: &VariantRuns) -> String {
    let moe = &v.moe;
    format!(
        "* {}: relative test MSE median {:.3} (range {:.3}–{:.3}), purity mean {:.3} (min {:.3}), worst-cluster w*_c / w*_g overlap mean {:.3} / {:.3}, {:.1} dead experts on average.",
        v.variant.label,
        median(&moe.rel_mse),
        min(&moe.rel_mse),
        max(&moe.rel_mse),
        mean(&moe.purity),
        min(&moe.purity),
        mean(&moe.local),
        mean(&moe.global),
        mean(&moe.dead),
    )
}

/// Claim E6.vanilla: trained jointly, the vanilla network still fails as
/// in E1 in every seed.
pub(super) fn vanilla_claim(joint_vanilla: &Measured) -> Claim {
    let fails = Tally::new(&joint_vanilla.seeds, Quorum::Every, |i| {
        vanilla_miss(
            joint_vanilla.rel_mse[i],
            joint_vanilla.global[i],
            VANILLA_BAR,
            0.5,
        )
        .into_iter()
        .collect()
    });
    fails.claim(
        "E6.vanilla",
        format!("trained jointly, the vanilla network still fails as in E1: relative test MSE >= {VANILLA_BAR:.2} with w*_g overlap < 0.5 in every seed"),
        json!({ "seeds_held": fails.held, "seeds": joint_vanilla.rel_mse.len(), "median_rel_mse": round4(median(&joint_vanilla.rel_mse)), "max_global_overlap": round4(max(&joint_vanilla.global)) }),
    )
}

/// The joint vanilla network's line of the section's text, beside the
/// staged models of the same seeds.
pub(super) fn vanilla_line(joint_vanilla: &Measured, staged: &Staged) -> String {
    format!(
        "* joint vanilla: relative test MSE median {:.3} (range {:.3}–{:.3}), w*_g overlap mean {:.3} (max {:.3}); the staged vanilla network of the same seeds: median {:.3}, w*_g overlap max {:.3}. \
         The staged MoE: median {:.3}, purity mean {:.3}.",
        median(&joint_vanilla.rel_mse),
        min(&joint_vanilla.rel_mse),
        max(&joint_vanilla.rel_mse),
        mean(&joint_vanilla.global),
        max(&joint_vanilla.global),
        median(&staged.vanilla.rel_mse),
        max(&staged.vanilla.global),
        median(&staged.moe.rel_mse),
        mean(&staged.moe.purity),
    )
}
