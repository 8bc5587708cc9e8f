//! # clustermoe
//!
//! Mixtures of Experts and plain two-layer networks trained by online SGD on
//! a regression task with latent cluster structure — the system of Kawata et
//! al., *Mixture of Experts Provably Detect and Learn the Latent Cluster
//! Structure in Gradient-Based Learning* (ICML 2025).
//!
//! The modules follow the specification: [`config`] (a configuration,
//! checked once into a `ValidConfig`), [`budget`] (rates and lengths from the
//! theory), [`task`] (data model), [`numerics`] (Hermite polynomials, link
//! functions, the Gaussian sampler, random streams), [`model`] (activations,
//! the sphere step, two-layer networks, the router and its gates, the trained
//! models), [`train`] (one file per phase, the readout, and the vanilla
//! baseline), [`metrics`], [`experiment`] (a whole run), [`store`] (run
//! directories and checkpoints), [`sweep`] (grids of runs). [`phase`] names
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
pub mod config;
pub mod error;
pub mod experiment;
pub mod metrics;
pub mod model;
pub mod numerics;
pub mod phase;
#[cfg(feature = "report")]
pub mod report;
#[cfg(feature = "report")]
pub mod reproduce;
pub mod store;
pub mod sweep;
pub mod task;
pub mod theory;
pub mod train;

pub use config::{Config, ValidConfig};
pub use error::{Error, Result};
