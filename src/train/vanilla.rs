//! The vanilla baseline: N untied neurons by spherical SGD on all data for
//! the MoE's whole training budget, then the same readout.

use super::context::Run;
use super::phase_one::restart_stuck;
use super::readout::{fit_single, random_bias_network};
use super::{
    fill_cluster_overlaps, overlap_probe_due, probe_overlaps, Monitor, Sink, Trained, VanillaStage,
    VanillaState,
};
use crate::config::ValidConfig;
use crate::error::Result;
use crate::metrics::samples_to::Target;
use crate::model;
use crate::model::{InputMap, NeuronStats, Vanilla};
use crate::numerics::rng::StreamId;
use crate::phase::{ModelKind, Phase};
use crate::task::Task;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// The vanilla network's first layer after `step` of its steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VanillaTrainState {
    pub step: u64,
    /// The global input centre.
    pub map: InputMap,
    /// The neurons (rows).
    pub w: Array2<f32>,
    /// Their running correlations and signs.
    pub neurons: NeuronStats,
}

impl VanillaTrainState {
    /// Before the first step: the global centre from fresh samples, and
    /// random neurons.
    fn start(run: &mut Run<VanillaStage>) -> Self {
        let (cfg, task) = (run.cfg, run.task);
        let map = run.input_map(cfg.vanilla.centre_samples, false);
        let w = model::random_directions(cfg.vanilla_neurons, task.d, &mut run.init);
        VanillaTrainState {
            step: 0,
            map,
            neurons: NeuronStats::new(cfg.vanilla.sign, w.nrows()),
            w,
        }
    }
}

/// Trains the vanilla network: N untied neurons by phase-I SGD on all data
/// for the MoE's whole training budget, then the same readout; from the
/// start or from a checkpoint's `resume` state.
pub fn train_vanilla(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink<VanillaStage>,
    monitor: &dyn Monitor,
    resume: Option<VanillaState>,
) -> Result<Trained<Vanilla>> {
    let streams = (StreamId::VanillaData, StreamId::VanillaInit);
    let (mut run, stage) = Run::start(cfg, task, streams, journal, monitor, resume);
    let mut stage = match stage {
        Some(stage) => stage,
        None => VanillaStage::Train(VanillaTrainState::start(&mut run)),
    };
    loop {
        stage = match stage {
            VanillaStage::Train(s) => {
                let trained = first_layer(&mut run, s)?;
                let vanilla = with_readout(&mut run, trained)?;
                run.save_trained(|| VanillaStage::Trained(Box::new(vanilla.clone())))?;
                VanillaStage::Trained(Box::new(vanilla))
            }
            VanillaStage::Trained(vanilla) => {
                let trained = run.samples - cfg.readout.samples as u64;
                return Ok(Trained {
                    model: *vanilla,
                    samples_to: run.samples_to(trained, false, false),
                });
            }
        }
    }
}

/// The first layer from `state` to its last step, with restarts of stuck
/// neurons evenly spaced over training.
fn first_layer(run: &mut Run<VanillaStage>, state: VanillaTrainState) -> Result<VanillaTrainState> {
    let (cfg, task) = (run.cfg, run.task);
    let p = &cfg.vanilla;
    let threshold = cfg.metrics.recovery_threshold;
    let VanillaTrainState {
        step: done,
        map,
        mut w,
        neurons,
    } = state;
    let remaining = cfg.train_samples - p.centre_samples as u64;
    let steps = remaining.div_ceil(p.batch as u64);
    let restart_every = steps / (cfg.vanilla_restarts as u64 + 1);
    let (sgd, steps) = run.sphere_sgd(
        Phase::Train,
        p,
        remaining,
        (done, &[Target::Strong]),
        &mut w,
        neurons,
        &map,
        |run, step, w, lr, _, sgd| {
            if restart_every > 0
                && step.is_multiple_of(restart_every)
                && step / restart_every <= cfg.vanilla_restarts as u64
            {
                restart_stuck(w, sgd, &mut run.init);
            }
            if overlap_probe_due(step, steps) {
                probe_overlaps(run, Phase::Train, step, &|_| w.view(), &[])?;
            }
            if run.log_due(step, p.steps) {
                let all = vec![&*w; task.clusters()];
                run.record(Phase::Train, step, |rec| {
                    rec.lr = Some(lr);
                    fill_cluster_overlaps(rec, task, &all, threshold);
                })?;
            }
            run.save_point(step, || {
                VanillaStage::Train(VanillaTrainState {
                    step,
                    map: map.clone(),
                    w: w.clone(),
                    neurons: sgd.stats().clone(),
                })
            })
        },
    )?;
    Ok(VanillaTrainState {
        step: steps,
        map,
        w,
        neurons: sgd.stats().clone(),
    })
}

/// The readout on the trained first layer, with random biases.
fn with_readout(run: &mut Run<VanillaStage>, trained: VanillaTrainState) -> Result<Vanilla> {
    let cfg = run.cfg;
    let mut net = random_bias_network(
        trained.w,
        trained.map.centre,
        &cfg.readout.vanilla,
        &mut run.init,
    );
    run.monitor.phase(ModelKind::Vanilla, Phase::Readout, 1);
    fit_single(&mut net, run.task, cfg, &mut run.data)?;
    run.samples += cfg.readout.samples as u64;
    run.monitor.advance(ModelKind::Vanilla, 1);
    Ok(Vanilla {
        net,
        samples: run.samples,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// On all data the local directions are visible (information exponent
    /// 3) and the vanilla network finds both. (Its failure on w*_g needs
    /// d^4 samples to show, far more than a unit test runs.)
    #[test]
    fn the_vanilla_network_learns_the_local_directions() {
        let (cfg, task) = small_task(|c| {
            c.phase_one.steps = 1000.into();
            c.phase_two.steps = 100;
            c.phase_three.steps = 2000.into();
        });
        let mut journal = no_records;
        let mut run = context(&cfg, &task, &mut journal);
        let start = VanillaTrainState::start(&mut run);
        let before = local_overlaps(&task, &start.w);
        let end = first_layer(&mut run, start).unwrap();
        let after = local_overlaps(&task, &end.w);
        assert!(after.iter().all(|&o| o >= 0.9), "{before:?} -> {after:?}");
        // The MoE's training budget, to the sample.
        assert_eq!(run.samples, cfg.train_samples);
    }
}
