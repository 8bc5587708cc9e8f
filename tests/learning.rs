//! Learning outcomes on small fast tasks that the two defects of k* = 4
//! would fail: a direction whose leading Hermite coefficient is negative
//! at an even k* (learnable only with a second-layer sign), and directions
//! kept, not lost, when phase III trains three times longer. Each test also
//! runs the old behaviour on the same task and checks that it fails there,
//! so the test keeps its teeth; and six clusters at the defaults (experts,
//! routing and readout that follow the task).

use clustermoe::config::Config;
use clustermoe::{Experiment, Summary};

fn summary(seed: u64, sets: &[&str]) -> Summary {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = Config {
        seed,
        ..Config::from_toml_with_overrides("", &sets).unwrap()
    };
    let valid = config.check().unwrap();
    Experiment::new(&valid).run().unwrap().summary
}

fn smallest(overlaps: &[&[f64]]) -> f64 {
    overlaps
        .iter()
        .flat_map(|o| o.iter().copied())
        .fold(f64::INFINITY, f64::min)
}

/// y = -h_4(<w*_c, x>) + s_c h_4(<w*_g, x>): the local links' leading
/// coefficient is negative, which a neuron with a positive second layer is
/// repelled from (h_4 is even, so flipping w cannot absorb the sign).
const NEGATIVE_H4: [&str; 3] = [
    "task.d=16",
    "task.local_link=\"-h4\"",
    "task.global_link=\"h4\"",
];

#[test]
fn a_negative_leading_coefficient_at_even_k_star_is_learned() {
    for seed in [1, 2] {
        let s = summary(seed, &NEGATIVE_H4);
        let moe = &s.moe.model;
        let moe_least = smallest(&[
            &moe.local_overlap_per_cluster,
            &moe.global_overlap_per_cluster,
        ]);
        assert!(moe_least >= 0.9, "seed {seed}: MoE overlaps {moe:?}");
        assert!(moe.error.test_rel_mse <= 0.2, "seed {seed}: {moe:?}");
        let vanilla = s.vanilla.as_ref().unwrap();
        assert!(
            smallest(&[&vanilla.local_overlap_per_cluster]) >= 0.9,
            "seed {seed}: the vanilla network must learn -h4 directions too: {vanilla:?}"
        );

        // Every neuron's second layer held at +1: the old behaviour.
        let mut positive = NEGATIVE_H4.to_vec();
        positive.extend([
            "phase_one.sign=\"positive\"",
            "phase_three.sign=\"positive\"",
            "vanilla.sign=\"positive\"",
        ]);
        let old = summary(seed, &positive);
        assert!(
            smallest(&[&old.moe.model.local_overlap_per_cluster]) < 0.5,
            "seed {seed}: with positive signs the MoE should miss a -h4 direction"
        );
        assert!(
            smallest(&[&old.vanilla.unwrap().local_overlap_per_cluster]) < 0.5,
            "seed {seed}: with positive signs the vanilla network should miss a -h4 direction"
        );
    }
}

/// k* = 4 with phase III three times as long as the budget laws choose
/// (before steps were clipped, seed 2 lost w*_1 here even at those rates).
const LONG_H4: [&str; 5] = [
    "task.d=16",
    "task.local_link=\"h4\"",
    "task.global_link=\"h4\"",
    "phase_three.steps=72000",
    "vanilla.enabled=false",
];

#[test]
fn directions_found_at_k_star_4_are_kept_when_phase_three_runs_three_times_longer() {
    let mut lost = Vec::new();
    for seed in [1, 2, 3] {
        let s = summary(seed, &LONG_H4);
        let moe = &s.moe.model;
        let least = smallest(&[
            &moe.local_overlap_per_cluster,
            &moe.global_overlap_per_cluster,
        ]);
        assert!(least >= 0.9, "seed {seed}: {moe:?}");

        // The old behaviour: the fixed rate 0.003 to the end, steps in effect
        // never shortened; the heavy-tailed steps of a degree-4 activation knock
        // a found direction off in most seeds (seeds 1 and 3 of these three,
        // 5 of seeds 1-6, with the lane-wise sampler's streams).
        let mut constant = LONG_H4.to_vec();
        constant.extend([
            "phase_three.lr=0.003",
            "phase_three.lr_end=0.003",
            "phase_three.max_step=3.14",
        ]);
        let old = summary(seed, &constant);
        let old_least = smallest(&[
            &old.moe.model.local_overlap_per_cluster,
            &old.moe.model.global_overlap_per_cluster,
        ]);
        if old_least < 0.5 {
            lost.push(seed);
        }
    }
    assert!(
        lost.len() >= 2,
        "at a constant 0.003 a direction should be lost in most seeds; lost in {lost:?}"
    );
}

/// Six clusters with only task fields set: "auto" gives phase I enough
/// experts (11) to find every cluster, phase II routes each to its best
/// expert, and the MoE learns every direction, routes within a point of
/// the best linear router and reaches the error bar; the vanilla network
/// of as many neurons does not learn w*_g.
#[test]
fn six_clusters_are_learned_at_the_defaults() {
    for seed in [1, 2] {
        let s = summary(seed, &["task.clusters=6", "task.d=16"]);
        let m = &s.moe.model;
        let overlaps = smallest(&[&m.local_overlap_per_cluster, &m.global_overlap_per_cluster]);
        assert!(overlaps >= 0.9, "seed {seed}: smallest overlap {overlaps}");
        assert!(
            m.error.test_rel_mse <= 0.2,
            "seed {seed}: {}",
            m.error.test_rel_mse
        );
        let best = s.best_linear_router_purity.expect("orthonormal centres");
        assert!(
            s.moe.routing_purity >= best - 0.01,
            "seed {seed}: purity {}",
            s.moe.routing_purity
        );
        let v = s.vanilla.as_ref().expect("vanilla trained");
        assert!(
            v.error.test_rel_mse >= 0.4,
            "seed {seed}: vanilla {}",
            v.error.test_rel_mse
        );
    }
}
