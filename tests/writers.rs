//! One writer per run directory, and "complete" meaning complete: several
//! `run` and `sweep` processes on one directory at once (some killed at
//! random moments), and damaged complete runs found and redone.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use clustermoe::store::{Completeness, RunDir};
use rand::{Rng, SeedableRng};

use common::clustermoe;

/// The files a complete run holds, each compared byte for byte.
const OUTPUTS: [&str; 5] = [
    "config.toml",
    "metrics.jsonl",
    "model.npz",
    "summary.json",
    "complete.json",
];

/// Runs long enough (about half a second) that two started together overlap.
const RUN_SETS: [&str; 2] = ["task.d=16", "metrics.test_samples=4000"];

/// Six runs of a few tenths of a second each.
const GRID: &str = r#"
seeds = [1, 2, 3]
[set]
"task.d" = 12
"phase_one.steps" = 3000
"phase_two.steps" = 400
"phase_three.steps" = 3000
"readout.samples" = 4000
"metrics.test_samples" = 2000
"metrics.probe_samples" = 1000
[grid]
"task.rho" = [3.0, 4.0]
"#;

fn run_command(seed: u64, out: &Path) -> std::process::Command {
    let mut command = clustermoe();
    command
        .args(["run", "-q", "--threads", "1", "--seed", &seed.to_string()])
        .arg("--out")
        .arg(out);
    for set in RUN_SETS {
        command.args(["--set", set]);
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn sweep_command(grid: &Path, out: &Path) -> std::process::Command {
    let mut command = clustermoe();
    command
        .arg("sweep")
        .arg(grid)
        .arg("--out")
        .arg(out)
        .args(["-q", "--jobs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The bytes of every output file of the run in `dir`.
fn outputs(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    OUTPUTS
        .iter()
        .map(|&name| {
            let bytes = std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
            (name, bytes)
        })
        .collect()
}

fn assert_same_run(reference: &Path, dir: &Path, context: &str) {
    let (want, got) = (outputs(reference), outputs(dir));
    for name in OUTPUTS {
        assert!(
            want[name] == got[name],
            "{context}: {name} of {} differs from the lone run's",
            dir.display()
        );
    }
    assert!(RunDir::new(dir).is_complete(), "{context}");
}

/// Every run of the sweep in `dir` byte-identical to the lone sweep's.
fn assert_same_sweep(reference: &Path, dir: &Path, context: &str) {
    let ids = run_ids(reference);
    assert_eq!(ids.len(), 6);
    assert_eq!(run_ids(dir), ids, "{context}");
    for id in &ids {
        assert_same_run(
            &reference.join("runs").join(id),
            &dir.join("runs").join(id),
            context,
        );
    }
}

fn run_ids(sweep: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(sweep.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// The count before `word` in a sweep's summary line (`2 trained`).
fn count(out: &Output, word: &str) -> usize {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("shard "))
        .unwrap_or_else(|| panic!("no summary line in {text:?}"));
    line.split(", ")
        .flat_map(|part| part.split(": "))
        .find_map(|part| part.strip_suffix(word)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{word}` in {line:?}"))
}

fn lone_sweep(tmp: &Path) -> (PathBuf, PathBuf) {
    let grid = tmp.join("grid.toml");
    std::fs::write(&grid, GRID).unwrap();
    let reference = tmp.join("lone");
    let out = sweep_command(&grid, &reference).output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(count(&out, "trained"), 6);
    (grid, reference)
}

#[test]
fn two_runs_on_one_directory_one_writes_the_other_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lone = BTreeMap::new();
    for (try_, (a, b)) in [(3u64, 4u64), (5, 6), (7, 8)].into_iter().enumerate() {
        let out = tmp.path().join(format!("shared{try_}"));
        let children: Vec<(u64, Child)> = [a, b]
            .into_iter()
            .map(|seed| (seed, run_command(seed, &out).spawn().unwrap()))
            .collect();
        let results: Vec<(u64, Output)> = children
            .into_iter()
            .map(|(seed, c)| (seed, c.wait_with_output().unwrap()))
            .collect();
        let winners: Vec<u64> = results
            .iter()
            .filter(|(_, o)| o.status.success())
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(winners.len(), 1, "try {try_}: exactly one writes");
        for (_, o) in results.iter().filter(|(_, o)| !o.status.success()) {
            let err = common::stderr(o);
            assert_eq!(o.status.code(), Some(2), "{err}");
            assert!(
                err.contains(out.to_str().unwrap()) && err.contains("in use"),
                "{err}"
            );
        }
        // The directory is the winner's run, as a lone run writes it.
        let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
        let seed = winners[0];
        assert!(config.contains(&format!("seed = {seed}\n")), "{config}");
        let reference = lone.entry(seed).or_insert_with(|| {
            let dir = tmp.path().join(format!("lone{seed}"));
            assert!(run_command(seed, &dir).status().unwrap().success());
            dir
        });
        assert_same_run(reference, &out, &format!("try {try_}"));

        // Resuming while another process writes is refused, nothing touched.
        let before = outputs(&out);
        let mut writer = run_command(seed, &out).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let resume = clustermoe()
            .args(["run", "-q", "--resume"])
            .arg(&out)
            .output()
            .unwrap();
        let second_writer_done = writer.try_wait().unwrap().is_some();
        if !second_writer_done {
            assert_eq!(resume.status.code(), Some(2), "{}", common::stderr(&resume));
            assert!(common::stderr(&resume).contains("in use"));
        }
        assert!(writer.wait().unwrap().success());
        assert_eq!(outputs(&out), before, "rewritten to the same bytes");
    }
}

#[test]
fn two_sweeps_on_one_directory_are_two_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let (grid, reference) = lone_sweep(tmp.path());
    let shared = tmp.path().join("shared");
    let workers: Vec<Child> = (0..2)
        .map(|_| sweep_command(&grid, &shared).spawn().unwrap())
        .collect();
    let outs: Vec<Output> = workers
        .into_iter()
        .map(|w| w.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(o.status.success(), "{}", common::stderr(o));
    }
    // No run trained twice: between them the two trained each run once.
    let trained: usize = outs.iter().map(|o| count(o, "trained")).sum();
    assert_eq!(trained, 6, "{:?}", outs);
    let again = sweep_command(&grid, &shared).output().unwrap();
    assert!(again.status.success());
    assert_eq!(count(&again, "trained"), 0);
    assert_eq!(count(&again, "already complete"), 6);
    assert_same_sweep(&reference, &shared, "two workers");
}

#[test]
fn sweeps_killed_at_random_moments_leave_no_mixed_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (grid, reference) = lone_sweep(tmp.path());
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for round in 0..2 {
        let shared = tmp.path().join(format!("shared{round}"));
        // Waves of three sweeps at once; two of each wave are killed at a
        // random moment, the third runs to its end.
        for _wave in 0..2 {
            let mut workers: Vec<Child> = (0..3)
                .map(|_| sweep_command(&grid, &shared).spawn().unwrap())
                .collect();
            for w in workers.iter_mut().take(2) {
                std::thread::sleep(Duration::from_millis(rng.gen_range(20..600)));
                let _ = w.kill(); // SIGKILL
            }
            for mut w in workers {
                let _ = w.wait();
            }
        }
        let last = sweep_command(&grid, &shared).output().unwrap();
        assert!(last.status.success(), "{}", common::stderr(&last));
        assert_same_sweep(&reference, &shared, &format!("round {round}"));
        let merge = clustermoe().arg("merge").arg(&shared).output().unwrap();
        assert!(merge.status.success());
        assert_eq!(common::stderr(&merge), "", "every run complete");
    }
}

#[test]
fn damaged_runs_are_found_incomplete_and_redone_to_the_original_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (grid, reference) = lone_sweep(tmp.path());
    let damaged = tmp.path().join("damaged");
    common::copy_dir(&reference, &damaged);
    let ids = run_ids(&damaged);
    let run = |k: usize| damaged.join("runs").join(&ids[k]);
    // A truncated metrics.jsonl, a changed byte in model.npz, and the
    // config.toml of another run (another seed) put in place.
    let metrics = std::fs::read(run(0).join("metrics.jsonl")).unwrap();
    std::fs::write(
        run(0).join("metrics.jsonl"),
        &metrics[..metrics.len() * 2 / 3],
    )
    .unwrap();
    let mut model = std::fs::read(run(1).join("model.npz")).unwrap();
    let at = model.len() - 100;
    model[at] ^= 0x01;
    std::fs::write(run(1).join("model.npz"), &model).unwrap();
    let other = (0..ids.len())
        .find(|&k| {
            let config = |k: usize| std::fs::read_to_string(run(k).join("config.toml")).unwrap();
            let seed = |t: String| {
                t.lines()
                    .find(|l| l.starts_with("seed"))
                    .unwrap()
                    .to_string()
            };
            seed(config(k)) != seed(config(2))
        })
        .unwrap();
    std::fs::copy(run(other).join("config.toml"), run(2).join("config.toml")).unwrap();

    for (k, file) in [(0, "metrics.jsonl"), (1, "model.npz"), (2, "config.toml")] {
        match RunDir::new(run(k)).completeness() {
            Completeness::Incomplete(reason) => assert!(reason.contains(file), "{reason}"),
            Completeness::Complete(_) => panic!("run {k} with a damaged {file} passes"),
        }
        let e = RunDir::new(run(k)).read_complete().err().unwrap();
        assert_eq!(e.exit_status(), 2);
        assert!(e.to_string().contains("not a complete run"), "{e}");
    }
    let merge = clustermoe().arg("merge").arg(&damaged).output().unwrap();
    let err = common::stderr(&merge);
    assert!(merge.status.success(), "{err}");
    assert!(err.contains("3 runs are incomplete"), "{err}");
    for id in &ids[..3] {
        assert!(err.contains(id.as_str()), "{err} does not name {id}");
    }
    // The sweep again redoes exactly those three, to the original bytes.
    let again = sweep_command(&grid, &damaged).output().unwrap();
    assert!(again.status.success(), "{}", common::stderr(&again));
    assert_eq!(count(&again, "trained"), 3);
    assert_eq!(count(&again, "already complete"), 3);
    assert_same_sweep(&reference, &damaged, "redone");
}
