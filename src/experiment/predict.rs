//! A finished run's models rebuilt from the arrays of its `model.npz`, to
//! predict on new inputs and to evaluate on fresh samples of its task.
//!
//! The arrays hold every parameter the predictions use (stored as float64
//! from the float32 the models train in, so the conversion back is exact):
//! the router, each routed expert and the vanilla network. Rebuilt models
//! predict exactly as the trained ones: on the run's own test set they give
//! the summary's test errors to the bit.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayD, ArrayView2};
use serde::Serialize;

use crate::config::{Training, ValidConfig};
use crate::error::{Error, Result};
use crate::metrics::{self, TestError};
use crate::model::gate::GateRule;
use crate::model::router::Router;
use crate::model::{InputMap, Moe, TwoLayer, Vanilla};
use crate::numerics::rng::{stream, StreamId};
use crate::task::{Batch, Task};

/// The models of a staged run, rebuilt from its arrays.
pub struct Trained {
    task: Task,
    seed: u64,
    moe: Moe,
    vanilla: Option<Vanilla>,
}

/// Both models' test errors on one set of samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Samples evaluated.
    pub samples: usize,
    /// Variance of their labels (the denominator of every relative MSE).
    pub var_y: f64,
    /// The MoE's errors.
    pub moe: TestError,
    /// The vanilla network's errors (None when the run had none).
    pub vanilla: Option<TestError>,
}

/// The array `name` of `arrays` with `rank` axes, or why it cannot be used.
fn array<'a>(
    arrays: &'a BTreeMap<String, ArrayD<f64>>,
    name: &str,
    rank: usize,
) -> Result<&'a ArrayD<f64>> {
    let a = arrays
        .get(name)
        .ok_or_else(|| Error::invalid("model", name, "the arrays of the run's model.npz"))?;
    if a.ndim() != rank {
        return Err(Error::invalid(
            "model",
            format!("{name} with {} axes", a.ndim()),
            format!("{rank} axes, as model.npz holds it"),
        ));
    }
    Ok(a)
}

fn matrix(arrays: &BTreeMap<String, ArrayD<f64>>, name: &str) -> Result<Array2<f32>> {
    let a = array(arrays, name, 2)?;
    Ok(a.mapv(|v| v as f32)
        .into_dimensionality()
        .expect("rank checked"))
}

fn vector(arrays: &BTreeMap<String, ArrayD<f64>>, name: &str) -> Result<Array1<f64>> {
    Ok(array(arrays, name, 1)?
        .clone()
        .into_dimensionality()
        .expect("rank checked"))
}

fn scalar(arrays: &BTreeMap<String, ArrayD<f64>>, name: &str) -> Result<f64> {
    vector(arrays, name)?
        .first()
        .copied()
        .ok_or_else(|| Error::invalid("model", name, "one value"))
}

/// A two-layer network from its arrays `{prefix}_w`, `_centre`, `_bias`, `_a`, `_a0`.
fn two_layer(arrays: &BTreeMap<String, ArrayD<f64>>, prefix: &str, d: usize) -> Result<TwoLayer> {
    let net = TwoLayer {
        w: matrix(arrays, &format!("{prefix}_w"))?,
        centre: vector(arrays, &format!("{prefix}_centre"))?.mapv(|v| v as f32),
        bias: vector(arrays, &format!("{prefix}_bias"))?.mapv(|v| v as f32),
        a: vector(arrays, &format!("{prefix}_a"))?,
        a0: scalar(arrays, &format!("{prefix}_a0"))?,
    };
    let j = net.w.nrows();
    if net.w.ncols() != d || net.centre.len() != d || net.bias.len() != j || net.a.len() != j {
        return Err(Error::invalid(
            "model",
            prefix,
            format!("a network of the run's input dimension {d} with matching arrays"),
        ));
    }
    Ok(net)
}

impl Trained {
    /// Rebuilds the models of the staged run of `cfg` from the arrays of its
    /// `model.npz` (the names that file uses).
    pub fn from_arrays(cfg: &ValidConfig, arrays: &BTreeMap<String, ArrayD<f64>>) -> Result<Self> {
        if cfg.training == Training::Joint {
            return Err(Error::invalid(
                "moe.training",
                "joint",
                "a staged run: predictions from the arrays are for staged runs",
            ));
        }
        let task = Task::new(cfg, &mut stream(cfg.seed, StreamId::Task));
        let d = task.d;
        let router = Router {
            theta: matrix(arrays, "router_theta")?,
        };
        let experts = (0..router.theta.nrows())
            .map(|k| two_layer(arrays, &format!("expert{k}"), d))
            .collect::<Result<Vec<_>>>()?;
        if router.theta.ncols() != d {
            return Err(Error::invalid(
                "model",
                "router_theta",
                format!("one row of dimension {d} per routed expert"),
            ));
        }
        let moe = Moe {
            phase_one_directions: Array2::zeros((0, d)),
            input_map: InputMap {
                centre: Array1::zeros(d),
                whiten: None,
            },
            expert_group: Vec::new(),
            router,
            gate: GateRule {
                kind: cfg.moe.gate,
                k: cfg.moe.top_k,
                noise: cfg.moe.gate_noise,
                renormalise: true,
            },
            experts,
            phase1_weak_recovery_samples: Vec::new(),
            samples: 0,
        };
        let vanilla = arrays
            .contains_key("vanilla_w")
            .then(|| two_layer(arrays, "vanilla", d))
            .transpose()?
            .map(|net| Vanilla { net, samples: 0 });
        Ok(Trained {
            task,
            seed: cfg.seed,
            moe,
            vanilla,
        })
    }

    /// The run's task (its directions drawn from the run's seed).
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Each model's predictions for the rows of `x` (n x d): the MoE's and,
    /// if the run has one, the vanilla network's. A noisy gate draws from
    /// the stream the run's own evaluation uses.
    pub fn predict(&self, x: ArrayView2<f32>) -> Result<(Array1<f64>, Option<Array1<f64>>)> {
        if x.ncols() != self.task.d {
            return Err(Error::invalid(
                "x",
                format!("{} columns", x.ncols()),
                format!("one column per input dimension: {}", self.task.d),
            ));
        }
        let mut noise = stream(self.seed, StreamId::Test);
        noise.jump();
        let moe = self.moe.predict(x, &mut noise);
        let vanilla = self.vanilla.as_ref().map(|v| v.net.predict(x));
        Ok((moe, vanilla))
    }

    /// Both models' errors on `data`, samples of the run's task.
    pub fn evaluate_on(&self, data: &Batch) -> Result<Evaluation> {
        let (moe, vanilla) = self.predict(data.x.view())?;
        let var_y = metrics::label_variance(&data.y);
        let c = self.task.clusters();
        Ok(Evaluation {
            samples: data.y.len(),
            var_y,
            moe: metrics::test_error(&moe, data, c, var_y),
            vanilla: vanilla.map(|v| metrics::test_error(&v, data, c, var_y)),
        })
    }

    /// Both models' errors on `n` fresh samples of the run's task, drawn
    /// from the seed `seed`'s stream of `generate` (the task's directions
    /// stay the run's).
    pub fn evaluate(&self, n: usize, seed: u64) -> Result<Evaluation> {
        if !(2..=super::MAX_GENERATE).contains(&n) {
            return Err(Error::invalid(
                "n",
                n,
                format!("a number of samples from 2 to {}", super::MAX_GENERATE),
            ));
        }
        let data = self.task.sample(n, &mut stream(seed, StreamId::Generate));
        self.evaluate_on(&data)
    }

    /// Both models' errors on the run's own test set (the samples its
    /// summary was measured on): the summary's numbers, recomputed.
    pub fn evaluate_test_set(&self, cfg: &ValidConfig) -> Result<Evaluation> {
        let test = super::execute::test_set(&self.task, cfg.metrics.test_samples, self.seed);
        self.evaluate_on(&test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::output::{model_arrays, NpzArray};
    use crate::{Config, Experiment};

    fn small() -> ValidConfig {
        let mut config = Config::default();
        config.task.d = 12;
        config.phase_one.steps = 800.into();
        config.phase_two.steps = 100;
        config.phase_three.steps = 800.into();
        config.readout.samples = 3_000.into();
        config.metrics.test_samples = 3_000;
        config.seed = 4;
        config.check().unwrap()
    }

    fn arrays(out: &super::super::RunOutput) -> BTreeMap<String, ArrayD<f64>> {
        model_arrays(out)
            .into_iter()
            .map(|(name, a)| {
                let a = match a {
                    NpzArray::F64(a) => a,
                    NpzArray::I64(a) => a.mapv(|v| v as f64),
                };
                (name, a)
            })
            .collect()
    }

    #[test]
    fn rebuilt_models_give_the_summarys_errors_to_the_bit() {
        let cfg = small();
        let out = Experiment::new(&cfg).run().unwrap();
        let trained = Trained::from_arrays(&cfg, &arrays(&out)).unwrap();
        let e = trained.evaluate_test_set(&cfg).unwrap();
        assert_eq!(e.moe, out.summary.moe.model.error);
        assert_eq!(
            e.vanilla.as_ref(),
            out.summary.vanilla.as_ref().map(|v| &v.error)
        );
        // Fresh samples: near the test set's errors (a sampling error).
        let fresh = trained.evaluate(20_000, 99).unwrap();
        let (a, b) = (fresh.moe.test_rel_mse, e.moe.test_rel_mse);
        assert!((a - b).abs() < 0.05 + 0.2 * b, "{a} against {b}");
        assert_ne!(fresh.moe.test_mse, e.moe.test_mse);
    }

    #[test]
    fn bad_arrays_and_inputs_are_named() {
        let cfg = small();
        let out = Experiment::new(&cfg).run().unwrap();
        let mut a = arrays(&out);
        a.remove("expert0_a");
        let e = Trained::from_arrays(&cfg, &a).err().unwrap();
        assert!(e.to_string().contains("expert0_a"), "{e}");
        let trained = Trained::from_arrays(&cfg, &arrays(&out)).unwrap();
        let e = trained.predict(Array2::zeros((3, 5)).view()).unwrap_err();
        assert!(e.to_string().contains("12"), "{e}");
        assert!(trained.evaluate(1, 1).is_err());
    }
}
