//! What E6 measures of each seed's run: the MoE's and the vanilla
//! network's error, purity, worst-cluster overlaps and router health, and
//! their row of table `e6`.

use crate::reproduce::runs::Runs;
use crate::reproduce::stats::{fmt, max, mean, median, min};

/// Per-seed measures of one model in one variant, in seed order.
#[derive(Default)]
pub(super) struct Measured {
    /// The seeds, in the order of every other field.
    pub(super) seeds: Vec<u64>,
    pub(super) rel_mse: Vec<f64>,
    pub(super) purity: Vec<f64>,
    /// Worst cluster's best |<w, w*_c>| and |<w, w*_g>|.
    pub(super) local: Vec<f64>,
    pub(super) global: Vec<f64>,
    pub(super) dead: Vec<f64>,
    pub(super) entropy: Vec<f64>,
}

impl Measured {
    /// The MoE of the runs of seeds 1 to `seeds`.
    pub(super) fn moe(runs: &Runs, seeds: i64) -> Self {
        let mut m = Measured::default();
        for s in runs
            .rows
            .iter()
            .map(|r| &r.summary)
            .filter(|s| s.seed as i64 <= seeds)
        {
            m.seeds.push(s.seed);
            m.rel_mse.push(s.moe.model.error.test_rel_mse);
            m.purity.push(s.moe.routing_purity);
            m.local.push(min(&s.moe.model.local_overlap_per_cluster));
            m.global.push(min(&s.moe.model.global_overlap_per_cluster));
            if let Some(j) = &s.joint {
                m.dead.push(j.routing.dead_experts.len() as f64);
                m.entropy.push(j.routing.router_entropy);
            }
        }
        m
    }

    /// The vanilla network of the runs of seeds 1 to `seeds` that train one.
    pub(super) fn vanilla(runs: &Runs, seeds: i64) -> Self {
        let mut m = Measured::default();
        for s in runs
            .rows
            .iter()
            .map(|r| &r.summary)
            .filter(|s| s.seed as i64 <= seeds)
        {
            if let Some(v) = &s.vanilla {
                m.seeds.push(s.seed);
                m.rel_mse.push(v.error.test_rel_mse);
                m.local.push(min(&v.local_overlap_per_cluster));
                m.global.push(min(&v.global_overlap_per_cluster));
            }
        }
        m
    }

    /// Its row of table `e6`, as model `label` trained on `samples`.
    pub(super) fn row(&self, label: &str, samples: u64) -> Vec<String> {
        let opt = |v: &[f64]| {
            if v.is_empty() {
                "".into()
            } else {
                fmt(mean(v))
            }
        };
        vec![
            label.to_string(),
            self.rel_mse.len().to_string(),
            samples.to_string(),
            fmt(median(&self.rel_mse)),
            fmt(min(&self.rel_mse)),
            fmt(max(&self.rel_mse)),
            opt(&self.purity),
            fmt(mean(&self.local)),
            fmt(mean(&self.global)),
            opt(&self.dead),
            opt(&self.entropy),
        ]
    }
}

/// E1's staged runs of the default task, the same seeds as E6's.
pub(super) struct Staged {
    pub(super) moe: Measured,
    pub(super) vanilla: Measured,
    /// Samples per model: the staged budget.
    pub(super) samples: u64,
    /// E6's seeds: 1 to this.
    pub(super) seeds: i64,
}

impl Staged {
    /// Seeds 1 to `seeds` of E1's default-task runs `staged`.
    pub(super) fn of(staged: &Runs, seeds: i64) -> Self {
        Staged {
            moe: Measured::moe(staged, seeds),
            vanilla: Measured::vanilla(staged, seeds),
            samples: staged.rows[0].summary.samples.moe,
            seeds,
        }
    }
}
