//! # clustermoe
//!
//! Mixtures of Experts and plain two-layer networks trained by online SGD on
//! a regression task with latent cluster structure — the system of Kawata et
//! al., *Mixture of Experts Provably Detect and Learn the Latent Cluster
//! Structure in Gradient-Based Learning* (ICML 2025).
//!
//! The modules follow the specification: [`config`] (a configuration,
//! checked once into a `ValidConfig`), [`budget`] (rates and lengths from the
//! theory), [`task`] (data model), [`hermite`] and [`link`] (link
//! functions), [`model`] (activations, the sphere step, two-layer networks,
//! the trained models), [`router`] (gates), [`train`] (one file per phase,
//! and the vanilla baseline), [`readout`] (ridge), [`metrics`],
//! [`experiment`] (a whole run), [`checkpoint`] and [`output`] (run
//! directories), [`sweep`] and [`collect`] (grids of runs). [`phase`] names
//! the models and phases. Without the default features `cli` and `report`
//! the crate is the numerics alone.
//!
//! ```
//! use clustermoe::config::Config;
//!
//! // A small, fast task: d = 16, and short phases.
//! let mut config = Config::default();
//! config.task.d = 16;
//! config.phase_one.steps = 500.into();
//! config.phase_two.steps = 100;
//! config.phase_three.steps = 500.into();
//! config.readout.samples = 2_000;
//! config.metrics.test_samples = 2_000;
//! let valid = config.check().expect("a valid configuration");
//! let out = clustermoe::experiment::run(
//!     &valid,
//!     &mut |_| Ok(()),
//!     &mut |_| Ok(()),
//!     &clustermoe::train::Silent,
//! )?;
//! assert_eq!(out.summary.samples.moe, out.summary.samples.vanilla.unwrap());
//! assert!(out.summary.moe.model.error.test_rel_mse.is_finite());
//! # Ok::<(), clustermoe::error::Error>(())
//! ```

pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod collect;
pub mod config;
pub mod error;
pub mod experiment;
#[cfg(feature = "report")]
pub mod figure;
pub mod hermite;
pub mod linalg;
pub mod link;
pub mod metrics;
pub mod model;
pub mod normal;
pub mod output;
pub mod phase;
pub mod readout;
#[cfg(feature = "report")]
pub mod reproduce;
pub mod rng;
pub mod router;
pub mod sweep;
pub mod task;
pub mod theory;
pub mod train;

pub use config::{Config, ValidConfig};
pub use error::{Error, Result};
