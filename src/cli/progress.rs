//! Progress on the terminal: bars when stderr is one, plain lines otherwise,
//! nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use clustermoe::experiment::Monitor;
use clustermoe::phase::{ModelKind, Phase};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Progress bars on a terminal, one plain line per phase otherwise.
pub struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<ModelKind, ProgressBar>>)>,
    quiet: bool,
}

impl Monitor for Progress {
    fn phase(&self, model: ModelKind, phase: Phase, steps: u64) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((multi, bars)) => {
                let mut bars = bars.lock().expect("progress lock");
                if let Some(old) = bars.remove(&model) {
                    old.finish_and_clear();
                }
                let bar = multi.add(ProgressBar::new(steps));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>8} {msg:<12} [{bar:30}] {pos}/{len} steps {elapsed}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(model.name());
                bar.set_message(phase.name());
                bars.insert(model, bar);
            }
            None => eprintln!("{model}: {phase} ({steps} steps)"),
        }
    }

    fn advance(&self, model: ModelKind, steps: u64) {
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.lock().expect("progress lock").get(&model) {
                bar.inc(steps);
            }
        }
    }
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Progress { bars, quiet }
    }

    pub fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.lock().expect("progress lock").values() {
                bar.finish_and_clear();
            }
        }
    }
}

/// A bar (or spinner) for a sweep or a reproduction: `report(message)`
/// shows each step; `set(done, planned)` moves the bar.
pub struct Steps {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Steps {
    /// A bar of runs for a sweep.
    pub fn runs(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(ProgressBar::no_length);
        if let Some(bar) = &bar {
            bar.set_style(
                ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} runs {elapsed} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
        }
        Steps { bar, quiet }
    }

    /// A spinner with a message.
    pub fn spinner(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(ProgressBar::new_spinner);
        Steps { bar, quiet }
    }

    /// Shows `message`: on the bar, or as a line.
    pub fn report(&self, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(message.to_string());
                bar.tick();
            }
            None if !self.quiet => eprintln!("{message}"),
            None => {}
        }
    }

    /// Run `done` of `planned` (with id `id`) is finished.
    pub fn run_done(&self, done: usize, planned: usize, id: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(planned as u64);
                bar.set_position(done as u64);
                bar.set_message(id.to_string());
            }
            None if !self.quiet => eprintln!("run {done}/{planned}: {id}"),
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
