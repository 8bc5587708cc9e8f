//! The vanilla baseline: N untied neurons by spherical SGD on all data for
//! the MoE's whole training budget, then the same readout.

use super::phase_one::restart_stuck;
use super::*;

/// Trains the vanilla network: N untied neurons by phase-I SGD on all data
/// for the MoE's whole training budget, then the same readout.
pub fn train_vanilla(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink,
    monitor: &dyn Monitor,
    resume: Option<ModelState>,
) -> Result<Vanilla> {
    let streams = (StreamId::VanillaData, StreamId::VanillaInit);
    let (mut run, stage) = Run::start(
        cfg,
        task,
        ModelKind::Vanilla,
        streams,
        journal,
        monitor,
        resume,
    );
    let p = &cfg.vanilla;
    let threshold = cfg.metrics.recovery_threshold;
    let (done, map, mut w, stats) = match stage {
        None => {
            let map = run.input_map(p.centre_samples, false);
            let w = model::random_directions(cfg.vanilla_neurons, task.d, &mut run.init);
            (0, map, w, None)
        }
        Some(Stage::VanillaTrain {
            step,
            map,
            w,
            neurons,
        }) => (step, map, w, Some(neurons)),
        Some(Stage::VanillaTrained(vanilla)) => return Ok(*vanilla),
        Some(other) => return Err(wrong_stage(ModelKind::Vanilla, &other)),
    };
    let remaining = cfg.train_samples - p.centre_samples as u64;
    let restart_every = remaining.div_ceil(p.batch as u64) / (cfg.vanilla_restarts as u64 + 1);
    run.sphere_sgd(
        Phase::Train,
        p,
        remaining,
        done,
        &mut w,
        stats,
        &map,
        |run, step, w, lr, _, sgd| {
            if restart_every > 0
                && step.is_multiple_of(restart_every)
                && step / restart_every <= cfg.vanilla_restarts as u64
            {
                restart_stuck(w, sgd, &mut run.init);
            }
            if run.log_due(step, p.steps) {
                let all = vec![&*w; task.clusters()];
                run.record(Phase::Train, step, |rec| {
                    rec.lr = Some(lr);
                    fill_cluster_overlaps(rec, task, &all, threshold);
                })?;
            }
            run.save_point(step, || Stage::VanillaTrain {
                step,
                map: map.clone(),
                w: w.clone(),
                neurons: sgd.stats().clone(),
            })
        },
    )?;
    let mut net = random_bias_network(w, map.centre, &cfg.readout, &mut run.init);
    monitor.phase(ModelKind::Vanilla, Phase::Readout, 1);
    readout::fit_single(&mut net, task, cfg, &mut run.data)?;
    run.samples += cfg.readout.samples as u64;
    monitor.advance(ModelKind::Vanilla, 1);
    let vanilla = Vanilla {
        net,
        samples: run.samples,
    };
    run.save_trained(Stage::VanillaTrained(Box::new(vanilla.clone())))?;
    Ok(vanilla)
}
