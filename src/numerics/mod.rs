//! The numerical building blocks: Hermite polynomials and quadrature,
//! link functions, the Gaussian sampler, the random streams and the few
//! dense-matrix kernels the training loops call.

pub mod hermite;
pub(crate) mod linalg;
pub mod link;
pub(crate) mod normal;
pub mod rng;
