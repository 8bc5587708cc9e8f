//! Joint training (`moe.training = "joint"`, docs/joint-training.md): every parameter of
//! the MoE at once (router, first layers, biases, second layers) by
//! minibatch SGD or Adam on the squared loss with the auxiliary losses, and
//! the vanilla network of M x J neurons the same way. Both models draw
//! their training samples from the same stream (the MoE's data stream), so
//! they see exactly the same samples; each has its own initialisation
//! stream, and the noisy gates their own stream (a long jump from the
//! MoE's initialisation stream), carried in the state.
//!
//! Joint training is a stage type of its own ([`JointStage`]), generic over
//! the model, so checkpoints, resuming and interruption work as for the
//! staged phases.

use std::marker::PhantomData;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::context::{tick, Run};
use super::{
    fill_cluster_overlaps, overlap_probe_due, probe_overlaps, ModelState, Monitor, Sink, Stage,
    Trained,
};
use crate::config::ValidConfig;
use crate::error::Result;
use crate::metrics::samples_to::Target;
use crate::metrics::{self, JointRouting, Record};
use crate::model::joint::{logit_noise, JointLoss, JointModel, Pass, TermsMean};
use crate::model::optim::OptimizerState;
use crate::numerics::rng::{stream, Stream, StreamId};
use crate::phase::{ModelKind, ModelTag, Phase};
use crate::task::{Batch, Task};

/// A model inside joint training, after `step` of its steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JointState {
    pub step: u64,
    pub model: JointModel,
    pub optimizer: OptimizerState,
    /// The noisy gates' stream (drawn from only by a noisy MoE gate).
    pub noise: Stream,
    /// The loss terms since the last record.
    pub terms: TermsMean,
    /// Per cluster, the expert serving it at the last error probe (the
    /// MoE's overlap probes read it; empty before the first).
    #[serde(default)]
    pub serving: Vec<usize>,
}

/// Where joint training of a model stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum JointPoint {
    /// Inside training, after some steps. (The serialised names are those
    /// the checkpoint format has always had; the aliases read files from
    /// before the two models shared this type.)
    #[serde(rename = "Joint", alias = "MoeJoint", alias = "VanillaJoint")]
    Training(Box<JointState>),
    /// Trained.
    #[serde(
        rename = "JointTrained",
        alias = "MoeJointTrained",
        alias = "VanillaJointTrained"
    )]
    Trained(Box<JointModel>),
}

/// The stages of the model `M` (the MoE or the vanilla network) in joint
/// training: its own stage type, so a checkpoint of joint training cannot
/// be handed to staged training, nor the MoE's to the vanilla network.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct JointStage<M> {
    /// Where training stands.
    pub point: JointPoint,
    #[serde(skip)]
    model: PhantomData<M>,
}

impl<M: ModelTag> JointStage<M> {
    fn new(point: JointPoint) -> Self {
        JointStage {
            point,
            model: PhantomData,
        }
    }
}

impl<M: ModelTag> Stage for JointStage<M> {
    const MODEL: ModelKind = M::MODEL;

    fn position(&self) -> Option<(Phase, u64)> {
        match &self.point {
            JointPoint::Training(s) => Some((Phase::Joint, s.step)),
            JointPoint::Trained(_) => None,
        }
    }
}

/// A checkpoint of a jointly trained model.
pub type JointModelState<M> = ModelState<JointStage<M>>;

/// The loss a model of kind `model` trains on.
pub fn joint_loss(cfg: &ValidConfig, model: ModelKind) -> JointLoss {
    match model {
        ModelKind::Moe => cfg.joint.loss.clone(),
        ModelKind::Vanilla => cfg.joint.vanilla_loss(),
    }
}

impl JointState {
    /// Before the first step: the input centre from fresh samples, the
    /// model drawn from the initialisation stream, zero moments.
    fn start<M: ModelTag>(run: &mut Run<JointStage<M>>) -> Self {
        let cfg = run.cfg;
        let p = &cfg.joint;
        let centre = run.input_map(p.centre_samples, false).centre;
        let (experts, neurons) = match M::MODEL {
            ModelKind::Moe => (cfg.experts(), cfg.moe.neurons),
            ModelKind::Vanilla => (1, cfg.vanilla_neurons),
        };
        let model = JointModel::new(
            experts,
            neurons,
            centre.mapv(f64::from),
            &p.init,
            &mut run.init,
        );
        let mut noise = stream(cfg.seed, StreamId::MoeInit);
        noise.long_jump();
        JointState {
            step: 0,
            optimizer: OptimizerState::new(&p.optimizer, model.params.len()),
            model,
            noise,
            terms: TermsMean::default(),
            serving: Vec::new(),
        }
    }
}

/// Trains a model (the MoE or the vanilla network, by its stage type)
/// jointly, from the start or from a checkpoint's `resume` state.
pub fn train_joint<M: ModelTag>(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink<JointStage<M>>,
    monitor: &dyn Monitor,
    resume: Option<JointModelState<M>>,
) -> Result<Trained<JointModel>> {
    let init = match M::MODEL {
        ModelKind::Moe => StreamId::MoeInit,
        ModelKind::Vanilla => StreamId::VanillaInit,
    };
    let (mut run, stage) = Run::start(
        cfg,
        task,
        (StreamId::MoeData, init),
        journal,
        monitor,
        resume,
    );
    let model = match stage.map(|s| s.point) {
        Some(JointPoint::Trained(m)) => *m,
        point => {
            let state = match point {
                Some(JointPoint::Training(s)) => *s,
                _ => JointState::start(&mut run),
            };
            let model = joint_steps(&mut run, state)?;
            run.save_trained(|| JointStage::new(JointPoint::Trained(Box::new(model.clone()))))?;
            model
        }
    };
    Ok(Trained {
        model,
        samples_to: run.samples_to(run.samples, true, false),
    })
}

/// The probes of samples to learn in joint training: the relative error
/// on the first [`ERROR_PROBE_SAMPLES`] probe samples (and, for the MoE,
/// the expert serving each cluster), every `every` steps.
struct Probes {
    x: Array2<f32>,
    y: Vec<f32>,
    clusters: Vec<usize>,
    var_y: f64,
    every: u64,
    pass: Pass<f32>,
}

/// Probe samples of the error target: its relative error is then known to
/// a few percent of itself.
const ERROR_PROBE_SAMPLES: usize = 512;

impl Probes {
    fn new(probe: &Batch, batch: usize) -> Self {
        let n = probe.len().min(ERROR_PROBE_SAMPLES);
        let y = probe.y[..n].to_vec();
        // A forward pass over n samples costs about n / 3 samples of
        // training (forward and backward): probing every `every` steps
        // takes 1 % of the time (and as much again at the records).
        let every = (100 * n).div_ceil(3 * batch).max(1) as u64;
        Probes {
            x: probe.x.slice(ndarray::s![..n, ..]).to_owned(),
            var_y: metrics::label_variance(&y),
            clusters: probe.c[..n].to_vec(),
            y,
            every,
            pass: Pass::default(),
        }
    }

    /// The probe's relative error, and per cluster the expert serving it
    /// (its largest gate's, on most of the cluster's probe samples).
    fn measure(&mut self, model: &JointModel, loss: &JointLoss, c: usize) -> (f64, Vec<usize>) {
        let terms = self
            .pass
            .run(model, self.x.view(), &self.y, loss, None, None);
        let rel = 2.0 * terms.main / self.var_y;
        let serving = if model.experts > 1 {
            let fwd = self.pass.forward(terms);
            metrics::serving_expert(&metrics::confusion(
                &self.clusters,
                &fwd.assigned,
                c,
                model.experts,
            ))
        } else {
            Vec::new()
        };
        (rel, serving)
    }
}

/// The steps from `state` to the last, with records and save points.
fn joint_steps<M: ModelTag>(
    run: &mut Run<JointStage<M>>,
    mut state: JointState,
) -> Result<JointModel> {
    let (cfg, task) = (run.cfg, run.task);
    let p = &cfg.joint;
    let loss = joint_loss(cfg, M::MODEL);
    let steps = p.steps;
    let last_batch = (p.train_samples() - (steps - 1) * p.batch as u64) as usize;
    let probe = task.sample(
        cfg.metrics.probe_samples,
        &mut stream(cfg.seed, StreamId::Probe),
    );
    let experts = state.model.experts;
    let mut probes = Probes::new(&probe, p.batch);
    for target in [Target::Weak, Target::Strong, Target::Error] {
        run.watch.begin(target, run.samples);
    }
    // Buffers reused by every step: the pass's, the gradient (in the
    // pass's f32), the logit noise, and the records' pass over the probe.
    let mut pass = Pass::<f32>::default();
    let mut probe_pass = Pass::<f32>::default();
    let mut grad = vec![0.0f32; state.model.params.len()];
    let mut noise = Array2::<f32>::zeros((p.batch, experts));
    let mut batch = Batch::new(p.batch, task.d);
    run.monitor.phase(M::MODEL, Phase::Joint, steps);
    run.monitor.advance(M::MODEL, state.step);
    for step in state.step + 1..=steps {
        // Checked before the step, as the staged phases do.
        if run.stop_at(&[Target::Strong, Target::Error]) {
            break;
        }
        if step == steps && last_batch != batch.len() {
            batch = Batch::new(last_batch, task.d);
            noise = Array2::zeros((last_batch, experts));
        }
        run.draw(&mut batch);
        let noisy = loss.gate.noisy();
        if noisy {
            logit_noise(&mut noise, loss.gate.noise, &mut state.noise);
        }
        let terms = pass.run(
            &state.model,
            batch.x.view(),
            &batch.y,
            &loss,
            noisy.then(|| noise.view()),
            Some(&mut grad),
        );
        let finite = grad.iter().fold(true, |ok, g| ok & g.is_finite());
        if !terms.total.is_finite() || !finite {
            return Err(run.diverged(Phase::Joint, step, "the joint loss"));
        }
        if p.sphere {
            state.model.project_tangent(&mut grad);
        }
        let lr = p.schedule.at(step - 1, steps);
        state
            .optimizer
            .update(&p.optimizer, &mut state.model.params, &grad, lr);
        if p.sphere {
            state.model.retract();
        }
        state.terms.add(&terms, batch.len());
        state.step = step;
        let log = run.log_due(step, steps);
        let probe_rel_mse = if log || step == 1 || step.is_multiple_of(probes.every) {
            let (rel, serving) = probes.measure(&state.model, &loss, task.clusters());
            run.probe(
                Phase::Joint,
                step,
                Target::Error,
                rel <= cfg.targets.relative_error,
            )?;
            state.serving = serving;
            Some(rel)
        } else {
            None
        };
        if overlap_probe_due(step, steps) && (experts == 1 || !state.serving.is_empty()) {
            let dirs: Vec<Array2<f32>> = if experts == 1 {
                vec![state.model.all_directions()]
            } else {
                let serving = &state.serving;
                serving
                    .iter()
                    .map(|&m| state.model.expert_directions(m))
                    .collect()
            };
            let serving = |c: usize| dirs[c.min(dirs.len() - 1)].view();
            probe_overlaps(run, Phase::Joint, step, &serving, &[])?;
        }
        if log {
            let terms = state.terms.take();
            let model = &state.model;
            run.record(Phase::Joint, step, |rec| {
                rec.lr = Some(lr);
                rec.probe_rel_mse = probe_rel_mse;
                rec.loss = Some(terms.total);
                rec.loss_main = Some(terms.main);
                if M::MODEL == ModelKind::Moe {
                    rec.loss_balance = Some(terms.balance);
                    rec.loss_z = Some(terms.z);
                }
                fill_joint(rec, cfg, task, model, &loss, &probe, &mut probe_pass);
            })?;
        }
        run.save_point(step, || {
            JointStage::new(JointPoint::Training(Box::new(state.clone())))
        })?;
        tick(run.monitor, M::MODEL, step, steps);
    }
    Ok(state.model)
}

/// The routing (on `probe`, noise-free gates, computed in f32 like the
/// training steps, through `pass`) and the overlaps of a jointly trained
/// model: per cluster, of the neurons of the expert serving it (all neurons
/// for the vanilla network).
pub(crate) fn fill_joint(
    rec: &mut Record,
    cfg: &ValidConfig,
    task: &Task,
    model: &JointModel,
    loss: &JointLoss,
    probe: &Batch,
    pass: &mut Pass<f32>,
) {
    let c = task.clusters();
    let threshold = cfg.metrics.recovery_threshold;
    if model.experts > 1 {
        let terms = pass.run(model, probe.x.view(), &probe.y, loss, None, None);
        let fwd = pass.forward(terms);
        let routing = JointRouting::measure(&fwd, &probe.c, c);
        let serving = metrics::serving_expert(&routing.confusion);
        let dirs: Vec<Array2<f32>> = serving
            .iter()
            .map(|&m| model.expert_directions(m))
            .collect();
        fill_cluster_overlaps(rec, task, &dirs.iter().collect::<Vec<_>>(), threshold);
        routing.fill(rec);
    } else {
        let all = model.all_directions();
        fill_cluster_overlaps(rec, task, &vec![&all; c], threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::config::{Config, Training};
    use crate::experiment::Experiment;
    use crate::phase::{MoeTag, VanillaTag};
    use crate::train::Silent;

    /// An easy joint task: C = 2 at d = 8 with linear links (k* = 1), so
    /// each cluster's target is a different linear function and the
    /// clusters are far apart (rho = 4).
    fn easy(edit: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        c.task.d = 8;
        c.task.local_link = crate::config::Links::One("h1".into());
        c.task.global_link = "h1".into();
        c.moe.training = Training::Joint;
        c.moe.experts = 2.into();
        c.moe.neurons = 8;
        c.moe.gate = crate::config::Gate::Softmax;
        c.joint.steps = 3000.into();
        c.joint.lr = 3e-3.into();
        c.joint.centre_samples = 1000;
        c.metrics.log_every = 500;
        c.metrics.test_samples = 4000;
        c.metrics.probe_samples = 1000;
        edit(&mut c);
        c
    }

    /// On the easy task, joint training of the MoE reaches a low error with
    /// every gate, and the hard gates (top-1, noisy top-1) route the
    /// clusters apart. (The softmax gate fits the task as well without
    /// routing: its experts act as one network, and its router stays near
    /// uniform; measured purity about 0.7.)
    #[test]
    fn joint_training_learns_an_easy_clustered_task() {
        use crate::config::Gate;
        for gate in [Gate::Top1, Gate::NoisyTop1, Gate::Softmax] {
            let cfg = easy(|c| c.moe.gate = gate).check().unwrap();
            let out = Experiment::new(&cfg).run().unwrap();
            let s = &out.summary;
            let moe = &s.moe;
            eprintln!(
                "{gate:?}: moe {:.4} purity {:.4} vanilla {:.4} local {:?} load {:?}",
                moe.model.error.test_rel_mse,
                moe.routing_purity,
                s.vanilla.as_ref().unwrap().error.test_rel_mse,
                moe.model.local_overlap_per_cluster,
                s.joint.as_ref().unwrap().routing.expert_load,
            );
            // The noise floor is zeta^2 / Var(y) = 0.005.
            assert!(moe.model.error.test_rel_mse < 0.02, "{gate:?}: {s:?}");
            if gate != Gate::Softmax {
                assert!(moe.routing_purity > 0.98, "{gate:?}: {s:?}");
                assert!(s.joint.as_ref().unwrap().routing.dead_experts.is_empty());
            }
            assert_eq!(s.samples.moe, cfg.joint.samples);
            assert_eq!(s.samples.vanilla, Some(cfg.joint.samples));
        }
    }

    /// Joint training is deterministic, and resumed from any checkpoint
    /// (through its JSON form) ends at exactly the same model, for both
    /// models and a noisy gate (whose stream the state carries).
    #[test]
    fn joint_training_is_deterministic_and_resumes_exactly() {
        let (cfg, task) = small_task(|c| {
            c.task.d = 8;
            c.moe.training = Training::Joint;
            c.moe.experts = 3.into();
            c.moe.neurons = 4;
            c.moe.gate = crate::config::Gate::NoisyTopK;
            c.moe.top_k = 2;
            c.joint.steps = 60.into();
            c.joint.centre_samples = 100;
            c.joint.lambda_z = 0.01;
            c.joint.sphere = true;
        });
        // The model, and the probes' crossings: resuming keeps both.
        let json = |v: &Trained<JointModel>| {
            let model = serde_json::to_string(&v.model).unwrap();
            format!("{model} {:?}", v.samples_to)
        };
        let mut keep = Keep {
            every: 20,
            states: Vec::new(),
        };
        let moe = train_joint::<MoeTag>(&cfg, &task, &mut keep, &Silent, None).unwrap();
        let again = train_joint::<MoeTag>(&cfg, &task, &mut no_records, &Silent, None).unwrap();
        assert_eq!(json(&moe), json(&again));
        assert_eq!(keep.states.len(), 4, "steps 20, 40, 60 and trained");
        for state in keep.states {
            let text = serde_json::to_string(&state).unwrap();
            let state: JointModelState<MoeTag> = serde_json::from_str(&text).unwrap();
            let resumed =
                train_joint::<MoeTag>(&cfg, &task, &mut no_records, &Silent, Some(state)).unwrap();
            assert_eq!(json(&resumed), json(&moe));
        }
        // On the sphere every first-layer row stays a unit vector.
        for row in moe.model.w().rows() {
            assert!((row.dot(&row) - 1.0).abs() < 1e-9);
        }
        let mut keep = Keep {
            every: 30,
            states: Vec::new(),
        };
        let vanilla = train_joint::<VanillaTag>(&cfg, &task, &mut keep, &Silent, None).unwrap();
        assert_eq!((vanilla.model.experts, vanilla.model.neurons), (1, 12));
        for state in keep.states {
            let resumed =
                train_joint::<VanillaTag>(&cfg, &task, &mut no_records, &Silent, Some(state))
                    .unwrap();
            assert_eq!(json(&resumed), json(&vanilla));
        }
        // Checkpoints name the stage as they always have, and those written
        // when each model had its own joint variant still read.
        let trained = JointStage::<MoeTag>::new(JointPoint::Trained(Box::new(vanilla.model)));
        let text = serde_json::to_string(&trained).unwrap();
        assert!(text.starts_with(r#"{"JointTrained":"#), "{text}");
        let old = text.replacen("JointTrained", "VanillaJointTrained", 1);
        let back: JointStage<VanillaTag> = serde_json::from_str(&old).unwrap();
        assert_eq!(back.position(), None);
    }
}
