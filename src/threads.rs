//! The threads of one run.
//!
//! A run uses the threads of the rayon pool it runs in: the MoE and the
//! vanilla network train side by side, phase III's experts step in
//! parallel, and large matrix products (see `numerics::linalg`)
//! are split into blocks of output rows or columns. Every split is into
//! independent pieces that each do the sequential computation of the
//! whole, and the random draws stay on the calling thread in their order,
//! so the results are bit-identical for every thread count.
//!
//! [`install`] runs a closure inside a pool of N threads built for it;
//! without a count (`None`) it runs in the caller's pool (rayon's global
//! pool: all cores, or `RAYON_NUM_THREADS`).

use crate::error::{Error, Result, RunOption};

/// The most threads a run may be given.
pub const MAX_THREADS: usize = 1024;

/// Checks a thread count (the [`RunOption::Threads`] option): from 1 to
/// [`MAX_THREADS`].
pub fn check(threads: usize) -> Result<usize> {
    if (1..=MAX_THREADS).contains(&threads) {
        Ok(threads)
    } else {
        Err(Error::invalid_option(
            RunOption::Threads,
            threads,
            format!("a number of threads from 1 to {MAX_THREADS}"),
        ))
    }
}

/// A rayon pool of `threads` threads (checked).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    let threads = check(threads)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            Error::invalid_option(
                RunOption::Threads,
                threads,
                format!("a usable thread count ({e})"),
            )
        })
}

/// Runs `f` inside a new pool of `threads` threads (checked), or in the
/// caller's pool when `threads` is None.
pub fn install<T: Send>(threads: Option<usize>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match threads {
        None => f(),
        Some(n) => pool(n)?.install(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outside_one_to_the_maximum_name_the_option_and_what_is_allowed() {
        for bad in [0, MAX_THREADS + 1] {
            let err = check(bad).unwrap_err();
            assert_eq!(err.exit_status(), 2);
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid value for `threads`: {bad} (a number of threads from 1 to {MAX_THREADS})"
                )
            );
        }
        assert_eq!(check(3).unwrap(), 3);
        let inside = install(Some(3), || Ok(rayon::current_num_threads()));
        assert_eq!(inside.unwrap(), 3);
        assert!(install(Some(0), || Ok(())).is_err());
    }
}
