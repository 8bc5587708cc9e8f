//! Sweeps through the binary: shards, resumption after a kill, parallelism.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GRID: &str = r#"
seeds = [1, 2, 3]
[set]
"phase_one.steps" = 400
"phase_two.steps" = 100
"phase_three.steps" = 600
"readout.samples" = 2000
"metrics.test_samples" = 2000
[grid]
"task.d" = [8, 12]
"task.rho" = { from = 2.0, to = 3.0, step = 1.0 }
"#;

use common::clustermoe;

/// `clustermoe sweep GRID --out OUT -q EXTRA...`, with any Slurm variables
/// of the test's own environment removed (a test sets them itself).
fn sweep_command(grid: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = clustermoe();
    command
        .args([
            "sweep",
            grid.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ])
        .args(extra)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .stdout(Stdio::null());
    command
}

fn sweep(grid: &Path, out: &Path, extra: &[&str]) {
    assert!(sweep_command(grid, out, extra).status().unwrap().success());
}

fn merged(out: &Path) -> (Vec<u8>, Vec<u8>) {
    let o = clustermoe()
        .args(["merge", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        std::fs::read(out.join("results.csv")).unwrap(),
        std::fs::read(out.join("results.jsonl")).unwrap(),
    )
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.toml");
    std::fs::write(&grid, GRID).unwrap();
    (tmp, grid)
}

#[test]
fn shards_in_separate_processes_merge_to_the_unsharded_sweep() {
    let (tmp, grid) = setup();
    let whole = tmp.path().join("whole");
    sweep(&grid, &whole, &["--jobs", "2"]);
    let reference = merged(&whole);
    assert_eq!(
        String::from_utf8_lossy(&reference.0).lines().count(),
        1 + 12,
        "header and 12 runs"
    );

    let sharded = tmp.path().join("sharded");
    // Three processes at once: two with --shard, one as a Slurm array task.
    let mut children: Vec<_> = ["0/3", "1/3"]
        .iter()
        .map(|s| {
            sweep_command(&grid, &sharded, &["--jobs", "1", "--shard", s])
                .spawn()
                .unwrap()
        })
        .collect();
    children.push(
        sweep_command(&grid, &sharded, &["--jobs", "1"])
            .envs([
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ])
            .spawn()
            .unwrap(),
    );
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(merged(&sharded), reference);
}

#[test]
fn a_killed_sweep_resumes_to_the_same_results() {
    let (tmp, grid) = setup();
    let whole = tmp.path().join("whole");
    sweep(&grid, &whole, &["--jobs", "1"]);
    let reference = merged(&whole);

    let out = tmp.path().join("killed");
    let mut child = sweep_command(&grid, &out, &["--jobs", "1"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let complete = |out: &Path| {
        std::fs::read_dir(out.join("runs"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("complete.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    while complete(&out) < 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = complete(&out);
    assert!(
        done_before >= 3,
        "the sweep was killed after {done_before} runs"
    );

    // Merging a partial sweep reports what is missing and keeps going.
    let partial = clustermoe()
        .args(["merge", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(partial.status.success());
    if done_before < 12 {
        // Runs never started, and the one the kill cut short (incomplete).
        let err = String::from_utf8_lossy(&partial.stderr);
        assert!(
            err.contains("not started") || err.contains("incomplete"),
            "{err}"
        );
    }

    let again = sweep_command(&grid, &out, &["--jobs", "1"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        said.contains(&format!("{done_before} already complete")),
        "{said}"
    );
    assert_eq!(merged(&out), reference);
}

#[test]
fn parallel_runs_give_the_same_results_as_sequential_ones() {
    let (tmp, grid) = setup();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    sweep(&grid, &one, &["--jobs", "1"]);
    sweep(&grid, &two, &["--jobs", "2"]);
    assert_eq!(merged(&one), merged(&two));
    // A run of the sweep equals the same configuration run alone.
    let id = std::fs::read_dir(one.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let run = one.join("runs").join(&id);
    let alone = tmp.path().join("alone");
    let o = clustermoe()
        .args([
            "run",
            run.join("config.toml").to_str().unwrap(),
            "-q",
            "--out",
            alone.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    for file in ["summary.json", "model.npz"] {
        assert_eq!(
            std::fs::read(run.join(file)).unwrap(),
            std::fs::read(alone.join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn bad_grids_and_shards_exit_2() {
    let (tmp, grid) = setup();
    let out = tmp.path().join("out");
    for args in [vec!["--shard", "3/3"], vec!["--jobs", "0"]] {
        let o = clustermoe()
            .args([
                "sweep",
                grid.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[grid]\n\"task.d\" = [0]\n").unwrap();
    let o = clustermoe()
        .args([
            "sweep",
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("task.d"));
    let o = clustermoe()
        .args(["merge", tmp.path().join("nothing").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
