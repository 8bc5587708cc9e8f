//! Joint training (`moe.training = "joint"`, docs/joint-training.md): every parameter of
//! the MoE at once (router, first layers, biases, second layers) by
//! minibatch SGD or Adam on the squared loss with the auxiliary losses, and
//! the vanilla network of M x J neurons the same way. Both models draw
//! their training samples from the same stream (the MoE's data stream), so
//! they see exactly the same samples; each has its own initialisation
//! stream, and the noisy gates their own stream (a long jump from the
//! MoE's initialisation stream), carried in the state.
//!
//! Joint training is one stage ([`JointState`]) of each model's stage type,
//! so checkpoints, resuming and interruption work as for the staged phases.

use super::*;
use crate::metrics::JointRouting;
use crate::model::joint::{logit_noise, JointLoss, JointModel, Pass, TermsMean};
use crate::model::optim::OptimizerState;

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
}

/// Where joint training of a model stands.
pub enum JointPoint {
    Training(Box<JointState>),
    Trained(Box<JointModel>),
}

/// A model's stage type that can hold joint training.
pub trait JointStages: Stage {
    fn training(state: JointState) -> Self;
    fn trained(model: JointModel) -> Self;
    /// The joint stage this is, or None for a stage of staged training.
    fn joint_point(self) -> Option<JointPoint>;
}

impl JointStages for MoeStage {
    fn training(state: JointState) -> Self {
        MoeStage::Joint(Box::new(state))
    }
    fn trained(model: JointModel) -> Self {
        MoeStage::JointTrained(Box::new(model))
    }
    fn joint_point(self) -> Option<JointPoint> {
        match self {
            MoeStage::Joint(s) => Some(JointPoint::Training(s)),
            MoeStage::JointTrained(m) => Some(JointPoint::Trained(m)),
            _ => None,
        }
    }
}

impl JointStages for VanillaStage {
    fn training(state: JointState) -> Self {
        VanillaStage::Joint(Box::new(state))
    }
    fn trained(model: JointModel) -> Self {
        VanillaStage::JointTrained(Box::new(model))
    }
    fn joint_point(self) -> Option<JointPoint> {
        match self {
            VanillaStage::Joint(s) => Some(JointPoint::Training(s)),
            VanillaStage::JointTrained(m) => Some(JointPoint::Trained(m)),
            _ => None,
        }
    }
}

/// The loss a model of kind `model` trains on.
pub fn joint_loss(cfg: &ValidConfig, model: ModelKind) -> JointLoss {
    match model {
        ModelKind::Moe => cfg.joint.loss.clone(),
        ModelKind::Vanilla => cfg.joint.vanilla_loss(),
    }
}

/// The error of a checkpoint of one training handed to the other.
pub(super) fn wrong_training(found: &str) -> Error {
    Error::invalid(
        "moe.training",
        format!("a checkpoint of {found} training"),
        "a checkpoint of the training the configuration asks for",
    )
}

impl JointState {
    /// Before the first step: the input centre from fresh samples, the
    /// model drawn from the initialisation stream, zero moments.
    fn start<S: Stage>(run: &mut Run<S>) -> Self {
        let cfg = run.cfg;
        let p = &cfg.joint;
        let centre = run.input_map(p.centre_samples, false).centre;
        let (experts, neurons) = match S::MODEL {
            ModelKind::Moe => (cfg.moe.experts, cfg.moe.neurons),
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
        }
    }
}

/// Trains a model (the MoE or the vanilla network, by its stage type)
/// jointly, from the start or from a checkpoint's `resume` state.
pub fn train_joint<S: JointStages>(
    cfg: &ValidConfig,
    task: &Task,
    journal: Sink<S>,
    monitor: &dyn Monitor,
    resume: Option<ModelState<S>>,
) -> Result<JointModel> {
    let init = match S::MODEL {
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
    let state = match stage.map(S::joint_point) {
        None => JointState::start(&mut run),
        Some(Some(JointPoint::Training(s))) => *s,
        Some(Some(JointPoint::Trained(m))) => return Ok(*m),
        Some(None) => return Err(wrong_training("staged")),
    };
    let model = joint_steps(&mut run, state)?;
    run.save_trained(|| S::trained(model.clone()))?;
    Ok(model)
}

/// The steps from `state` to the last, with records and save points.
fn joint_steps<S: JointStages>(run: &mut Run<S>, mut state: JointState) -> Result<JointModel> {
    let (cfg, task) = (run.cfg, run.task);
    let p = &cfg.joint;
    let loss = joint_loss(cfg, S::MODEL);
    let steps = p.steps;
    let last_batch = (p.train_samples() - (steps - 1) * p.batch as u64) as usize;
    let probe = task.sample(
        cfg.metrics.probe_samples,
        &mut stream(cfg.seed, StreamId::Probe),
    );
    let experts = state.model.experts;
    // Buffers reused by every step: the pass's, the gradient (in the
    // pass's f32), the logit noise, and the records' pass over the probe.
    let mut pass = Pass::<f32>::default();
    let mut probe_pass = Pass::<f32>::default();
    let mut grad = vec![0.0f32; state.model.params.len()];
    let mut noise = Array2::<f32>::zeros((p.batch, experts));
    let mut batch = Batch::new(p.batch, task.d);
    run.monitor.phase(S::MODEL, Phase::Joint, steps);
    run.monitor.advance(S::MODEL, state.step);
    for step in state.step + 1..=steps {
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
        if run.log_due(step, steps) {
            let terms = state.terms.take();
            let model = &state.model;
            run.record(Phase::Joint, step, |rec| {
                rec.lr = Some(lr);
                rec.loss = Some(terms.total);
                rec.loss_main = Some(terms.main);
                if S::MODEL == ModelKind::Moe {
                    rec.loss_balance = Some(terms.balance);
                    rec.loss_z = Some(terms.z);
                }
                fill_joint(rec, cfg, task, model, &loss, &probe, &mut probe_pass);
            })?;
        }
        run.save_point(step, || S::training(state.clone()))?;
        tick(run.monitor, S::MODEL, step, steps);
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

    /// An easy joint task: C = 2 at d = 8 with linear links (k* = 1), so
    /// each cluster's target is a different linear function and the
    /// clusters are far apart (rho = 4).
    fn easy(edit: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        c.task.d = 8;
        c.task.local_link = crate::config::Links::One("h1".into());
        c.task.global_link = "h1".into();
        c.moe.training = Training::Joint;
        c.moe.experts = 2;
        c.moe.neurons = 8;
        c.moe.gate = crate::config::Gate::Softmax;
        c.joint.steps = 3000.into();
        c.joint.lr = 3e-3;
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
            c.moe.experts = 3;
            c.moe.neurons = 4;
            c.moe.gate = crate::config::Gate::NoisyTopK;
            c.moe.top_k = 2;
            c.joint.steps = 60.into();
            c.joint.centre_samples = 100;
            c.joint.lambda_z = 0.01;
            c.joint.sphere = true;
        });
        let json = |v: &JointModel| serde_json::to_string(v).unwrap();
        let mut keep = Keep {
            every: 20,
            states: Vec::new(),
        };
        let moe = train_joint::<MoeStage>(&cfg, &task, &mut keep, &Silent, None).unwrap();
        let again = train_joint::<MoeStage>(&cfg, &task, &mut no_records, &Silent, None).unwrap();
        assert_eq!(json(&moe), json(&again));
        assert_eq!(keep.states.len(), 4, "steps 20, 40, 60 and trained");
        for state in keep.states {
            let text = serde_json::to_string(&state).unwrap();
            let state: MoeState = serde_json::from_str(&text).unwrap();
            let resumed =
                train_joint::<MoeStage>(&cfg, &task, &mut no_records, &Silent, Some(state))
                    .unwrap();
            assert_eq!(json(&resumed), json(&moe));
        }
        // On the sphere every first-layer row stays a unit vector.
        for row in moe.w().rows() {
            assert!((row.dot(&row) - 1.0).abs() < 1e-9);
        }
        let mut keep = Keep {
            every: 30,
            states: Vec::new(),
        };
        let vanilla = train_joint::<VanillaStage>(&cfg, &task, &mut keep, &Silent, None).unwrap();
        assert_eq!((vanilla.experts, vanilla.neurons), (1, 12));
        for state in keep.states {
            let resumed =
                train_joint::<VanillaStage>(&cfg, &task, &mut no_records, &Silent, Some(state))
                    .unwrap();
            assert_eq!(json(&resumed), json(&vanilla));
        }
        // A staged checkpoint is refused by joint training, and the reverse.
        let staged = ModelState {
            model: ModelKind::Moe,
            samples: 0,
            data: stream(1, StreamId::MoeData),
            init: stream(1, StreamId::MoeInit),
            stage: MoeStage::JointTrained(Box::new(moe)),
        };
        let e = train_moe(&cfg, &task, &mut no_records, &Silent, Some(staged)).unwrap_err();
        assert!(e.to_string().contains("moe.training"), "{e}");
    }
}
