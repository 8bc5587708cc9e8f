//! From trained models and a test set to the sections of `summary.json`
//! and the final metric record of each model.

use crate::config::ValidConfig;
use crate::metrics::samples_to::SamplesTo;
use crate::metrics::{self, JointRouting, Record};
use crate::model::joint::JointModel;
use crate::model::{Moe, Vanilla};
use crate::numerics::rng::{stream, StreamId};
use crate::phase::{ModelKind, Phase};
use crate::results::{JointSummary, ModelSummary, MoeSummary};
use crate::task::{Batch, Task};
use crate::train::{self, Trained};

/// The summaries of jointly trained models on the test samples.
pub(super) fn summarise_joint(
    cfg: &ValidConfig,
    task: &Task,
    moe: &Trained<JointModel>,
    vanilla: Option<&Trained<JointModel>>,
    test: &Batch,
    var_y: f64,
) -> (MoeSummary, Option<ModelSummary>, JointSummary) {
    let (moe_samples_to, moe) = (moe.samples_to.clone(), &moe.model);
    let c = task.clusters();
    let x = test.x.mapv(f64::from);
    let y: Vec<f64> = test.y.iter().map(|&v| f64::from(v)).collect();
    let fwd = moe.forward(
        x.view(),
        &y,
        &train::joint::joint_loss(cfg, ModelKind::Moe),
        None,
        None,
    );
    let routing = JointRouting::measure(&fwd, &test.c, c);
    let serving = metrics::serving_expert(&routing.confusion);
    let experts: Vec<_> = (0..moe.experts).map(|m| moe.expert_directions(m)).collect();
    let summary = MoeSummary {
        model: ModelSummary {
            error: metrics::test_error(&fwd.output, test, c, var_y),
            local_overlap_per_cluster: (0..c)
                .map(|k| metrics::best_overlap(experts[serving[k]].view(), task.w.row(k)))
                .collect(),
            global_overlap_per_cluster: (0..c)
                .map(|k| metrics::best_overlap(experts[serving[k]].view(), task.wg.view()))
                .collect(),
            samples_to: moe_samples_to,
        },
        routing_purity: routing.purity,
        confusion: routing.confusion.clone(),
        expert_cluster: Vec::new(),
        expert_group: Vec::new(),
        phase1_local_overlap_per_cluster: Vec::new(),
        phase1_weak_recovery_samples: Vec::new(),
    };
    let vanilla_fwd = vanilla.map(|v| {
        let loss = train::joint::joint_loss(cfg, ModelKind::Vanilla);
        (v, v.model.forward(x.view(), &y, &loss, None, None))
    });
    let vanilla_summary = vanilla_fwd.as_ref().map(|(v, f)| {
        let (local, global) = metrics::neuron_overlaps(task, v.model.all_directions().view());
        ModelSummary {
            error: metrics::test_error(&f.output, test, c, var_y),
            local_overlap_per_cluster: local,
            global_overlap_per_cluster: vec![global; c],
            samples_to: v.samples_to.clone(),
        }
    });
    let joint = JointSummary {
        steps: cfg.joint.steps,
        samples: cfg.joint.samples,
        routing,
        expert_local_overlap: experts
            .iter()
            .map(|w| metrics::overlap_matrix(w.view(), task.w.view()))
            .map(|o| {
                (0..c)
                    .map(|k| o.iter().map(|r| r[k]).fold(0.0, f64::max))
                    .collect()
            })
            .collect(),
        expert_global_overlap: experts
            .iter()
            .map(|w| metrics::best_overlap(w.view(), task.wg.view()))
            .collect(),
        moe_test_loss: fwd.terms.main,
        vanilla_test_loss: vanilla_fwd.map(|(_, f)| f.terms.main),
    };
    (summary, vanilla_summary, joint)
}

/// The last record of a model: its test error and final overlaps.
pub(super) fn test_record(model: ModelKind, samples: u64, m: &ModelSummary) -> Record {
    Record {
        model,
        phase: Phase::Test,
        samples,
        test_mse: Some(m.error.test_mse),
        test_rel_mse: Some(m.error.test_rel_mse),
        per_cluster_rel_mse: Some(m.error.per_cluster_rel_mse.clone()),
        local_overlap_per_cluster: Some(m.local_overlap_per_cluster.clone()),
        global_overlap_per_cluster: Some(m.global_overlap_per_cluster.clone()),
        ..Record::default()
    }
}

pub(super) fn summarise_moe(
    cfg: &ValidConfig,
    task: &Task,
    moe: &Moe,
    test: &Batch,
    var_y: f64,
    samples_to: SamplesTo,
) -> MoeSummary {
    let c = task.clusters();
    // The noisy gate draws from its own stream so evaluation is reproducible.
    let mut noise = stream(cfg.seed, StreamId::Test);
    noise.jump();
    let prediction = moe.predict(test.x.view(), &mut noise);
    let assigned = moe.router.assign(test.x.view(), &moe.gate, &mut noise);
    let confusion = metrics::confusion(&test.c, &assigned, c, moe.experts.len());
    let serving = metrics::serving_expert(&confusion);
    let threshold = cfg.metrics.recovery_threshold;
    let u = moe.phase_one_directions.view();
    let phase_one = metrics::overlap_matrix(u, task.w.view());
    MoeSummary {
        model: ModelSummary {
            error: metrics::test_error(&prediction, test, c, var_y),
            local_overlap_per_cluster: (0..c)
                .map(|k| metrics::best_overlap(moe.experts[serving[k]].w.view(), task.w.row(k)))
                .collect(),
            global_overlap_per_cluster: (0..c)
                .map(|k| metrics::best_overlap(moe.experts[serving[k]].w.view(), task.wg.view()))
                .collect(),
            samples_to,
        },
        routing_purity: metrics::routing_purity(&confusion),
        confusion,
        expert_cluster: phase_one
            .iter()
            .map(|row| {
                let (best, o) =
                    row.iter()
                        .enumerate()
                        .fold((0, 0.0), |b, (i, &o)| if o > b.1 { (i, o) } else { b });
                (o >= threshold).then_some(best)
            })
            .collect(),
        expert_group: moe.expert_group.clone(),
        phase1_local_overlap_per_cluster: (0..c)
            .map(|k| phase_one.iter().map(|r| r[k]).fold(0.0, f64::max))
            .collect(),
        phase1_weak_recovery_samples: moe.phase1_weak_recovery_samples.clone(),
    }
}

pub(super) fn summarise_vanilla(
    task: &Task,
    vanilla: &Vanilla,
    test: &Batch,
    var_y: f64,
    samples_to: SamplesTo,
) -> ModelSummary {
    let (local, global) = metrics::neuron_overlaps(task, vanilla.net.w.view());
    ModelSummary {
        error: metrics::test_error(
            &vanilla.net.predict(test.x.view()),
            test,
            task.clusters(),
            var_y,
        ),
        local_overlap_per_cluster: local,
        global_overlap_per_cluster: vec![global; task.clusters()],
        samples_to,
    }
}
