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
//! functions), [`model`] (the gates, the router, two-layer networks, the
//! trained models), [`metrics`], [`experiment`] (the one executor of every
//! run), [`results`] (what a run produces), [`store`] (run directories and
//! checkpoints), [`sweep`] (grids of runs), `reproduce` and `report` (the
//! study and its report, feature `report`), [`theory`] (the drift
//! dynamics). [`phase`] names the models and phases. The stage machine that
//! trains the models, the random streams, the sampler and the SIMD kernels
//! are internal. Without the default features `cli` and `report` the crate
//! builds without the command line and the figures.
//!
//! A run in three lines (see [`Experiment`] for a small, fast one):
//!
//! ```no_run
//! let valid = clustermoe::Config::default().check()?;
//! let out = clustermoe::Experiment::new(&valid).run()?;
//! println!("MoE test error {:.3}", out.summary.moe.model.error.test_rel_mse);
//! # Ok::<(), clustermoe::Error>(())
//! ```

// Every public item is documented; the benches' `internals` re-export
// building blocks that are not part of the interface.
#![cfg_attr(not(feature = "internals"), deny(missing_docs))]

pub mod bench;
pub mod budget;
pub mod capacity;
pub mod config;
pub mod error;
pub mod experiment;
pub use config::memory;
pub mod metrics;
pub mod model;
pub mod numerics;
pub mod phase;
#[cfg(feature = "report")]
pub mod report;
#[cfg(feature = "report")]
pub mod reproduce;
pub mod results;
pub mod store;
pub mod sweep;
pub mod task;
pub mod theory;
pub mod threads;
pub(crate) mod train;

/// Building blocks that the criterion benchmarks time, behind the cargo
/// feature `internals` (`cargo bench --features internals`); not part of
/// the library's interface.
#[cfg(feature = "internals")]
pub mod internals {
    pub use crate::model::gate::GateRule;
    pub use crate::model::router::{router_gradient, Router};
    pub use crate::model::sphere::SphereStep;
    pub use crate::model::{random_directions, InputMap, NeuronSign, TwoLayer};
    pub use crate::numerics::linalg::centre_rows;
    pub use crate::numerics::normal::fill as fill_normal;
    pub use crate::numerics::rng::{stream, Stream, StreamId};
    pub use crate::train::readout::fit_single as fit_readout;
    pub use crate::train::Routed;
}

pub use config::{Config, ValidConfig};
pub use error::{Error, Result};
pub use experiment::{Experiment, Monitor};
pub use results::{RunOutput, Summary};
