//! Long calls: the work runs on its own thread without the GIL while the
//! calling thread polls for signals (Ctrl-C, a notebook's interrupt) and
//! refreshes the progress display every 50 ms. A signal (or an exception
//! of the progress display) sets the stop flag of the run's `Control`, so
//! training checkpoints (in a run directory) and stops; the exception is
//! raised once the work has returned.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use clustermoe::experiment::Monitor;
use clustermoe::phase::{ModelKind, Phase};

/// How often the calling thread looks for signals and shows progress.
const POLL: Duration = Duration::from_millis(50);

/// SIGINT's number: what the stop flag is set to, as the CLI's handler does.
pub const SIGINT: usize = 2;

/// Runs `work` on a new thread without the GIL; meanwhile calls
/// `poll(py)` every 50 ms after checking for signals. Returns the work's
/// result and the first exception a signal or `poll` raised (the work was
/// asked to stop through `stop` then). A panic of the work becomes a
/// `RuntimeError`.
pub fn blocking<T: Send>(
    py: Python<'_>,
    stop: &AtomicUsize,
    mut poll: impl FnMut(Python<'_>) -> PyResult<()>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<(T, Option<PyErr>)> {
    let caller = std::thread::current();
    let done = AtomicBool::new(false);
    let finished = &done;
    let (result, pending) = std::thread::scope(|s| {
        // The main thread's stack size, which the CLI runs the library on.
        let spawned = std::thread::Builder::new()
            .name("clustermoe".into())
            .stack_size(8 << 20)
            .spawn_scoped(s, move || {
                let out = work();
                finished.store(true, Ordering::SeqCst);
                caller.unpark();
                out
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => return (Err(Box::new(e.to_string()) as _), None),
        };
        let mut pending: Option<PyErr> = None;
        // A panic ends the thread without setting `done`.
        let over = || done.load(Ordering::SeqCst) || handle.is_finished();
        while !over() {
            py.detach(|| std::thread::park_timeout(POLL));
            if over() {
                break;
            }
            if pending.is_none() {
                if let Err(e) = py.check_signals().and_then(|()| poll(py)) {
                    stop.store(SIGINT, Ordering::SeqCst);
                    pending = Some(e);
                }
            }
        }
        (handle.join(), pending)
    });
    let result = result.map_err(|panic| {
        // A panic's payload, or why the thread could not start.
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        PyRuntimeError::new_err(format!("clustermoe failed unexpectedly (a panic: {what})"))
    })?;
    if pending.is_none() {
        poll(py)?;
    }
    Ok((result, pending))
}

/// Where each model of a run is: its phase, steps done, steps in the
/// phase; and the phases started since the display last looked.
#[derive(Default)]
pub struct Tracker {
    states: Mutex<[Option<(Phase, u64, u64)>; 2]>,
    started: Mutex<Vec<(&'static str, &'static str, u64)>>,
}

fn index(model: ModelKind) -> usize {
    match model {
        ModelKind::Moe => 0,
        ModelKind::Vanilla => 1,
    }
}

impl Monitor for Tracker {
    fn phase(&self, model: ModelKind, phase: Phase, steps: u64) {
        if let Ok(mut s) = self.states.lock() {
            s[index(model)] = Some((phase, 0, steps));
        }
        if let Ok(mut s) = self.started.lock() {
            s.push((model.name(), phase.name(), steps));
        }
    }

    fn advance(&self, model: ModelKind, steps: u64) {
        if let Ok(mut s) = self.states.lock() {
            if let Some(state) = &mut s[index(model)] {
                state.1 += steps;
            }
        }
    }
}

/// Each model's `(model, phase, done, steps)`.
pub type States = Vec<(&'static str, &'static str, u64, u64)>;
/// Phases started: `(model, phase, steps)`.
pub type Started = Vec<(&'static str, &'static str, u64)>;

impl Tracker {
    /// `(model, phase, done, steps)` of each model that has started, and
    /// the phases started since the last call.
    pub fn snapshot(&self) -> (States, Started) {
        let s = self.states.lock().map(|s| *s).unwrap_or_default();
        let states = ModelKind::ALL
            .iter()
            .zip(s)
            .filter_map(|(m, s)| s.map(|(p, done, steps)| (m.name(), p.name(), done, steps)))
            .collect();
        let started = self
            .started
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        (states, started)
    }
}
