//! The numerical building blocks: Hermite polynomials and quadrature,
//! link functions, the Gaussian sampler, the random streams and the few
//! dense-matrix kernels the training loops call. Everything that depends
//! on the CPU's instruction set (intrinsics, paths chosen at run time) is
//! in `kernels`, behind a safe API.

pub mod hermite;
pub(crate) mod kernels;
pub(crate) mod linalg;
pub mod link;
pub(crate) mod normal;
pub(crate) mod rng;
