//! Long runs: killed at random moments and resumed, a run writes the same
//! bytes as one never interrupted; damaged checkpoints and summaries get a
//! clear answer; SIGTERM stops a run and a sweep cleanly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// A small task whose phases each take a noticeable share of the run.
const SETS: [&str; 8] = [
    "task.d=16",
    "phase_one.steps=3000",
    "phase_two.steps=3000",
    "phase_three.steps=3000",
    "readout.samples=60000",
    "metrics.test_samples=2000",
    "metrics.probe_samples=500",
    "metrics.log_every=100",
];

fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    run_args(&SETS, out, extra)
}

/// `run -q --out OUT` with each of `sets` as a `--set`, then `extra`.
fn run_args(sets: &[&str], out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "-q".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    for &s in sets {
        a.push("--set".into());
        a.push(s.into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn(args: &[String]) -> Child {
    common::clustermoe()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

use common::{copy_dir, output};

fn resume_args(dir: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "-q".into(),
        "--resume".into(),
        dir.display().to_string(),
    ]
}

const OUTPUTS: [&str; 3] = ["summary.json", "model.npz", "metrics.jsonl"];

fn assert_same_outputs(reference: &Path, dir: &Path, context: &str) {
    for f in OUTPUTS {
        let a = std::fs::read(reference.join(f)).unwrap();
        let b = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{context}: {f}: {e}"));
        assert!(a == b, "{context}: {f} differs from the uninterrupted run");
    }
    for f in ["checkpoint.moe", "checkpoint.vanilla", "metrics.moe.part"] {
        assert!(!dir.join(f).exists(), "{context}: {f} left behind");
    }
}

/// The stage a checkpoint file holds (the JSON enum tag) and its step.
fn stage(path: &Path) -> Option<(String, u64)> {
    let bytes = std::fs::read(path).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let v: serde_json::Value = serde_json::from_slice(&bytes[newline + 1..]).ok()?;
    let stage = &v["state"]["stage"];
    let (name, body) = stage.as_object()?.iter().next()?;
    Some((name.clone(), body["step"].as_u64().unwrap_or(0)))
}

/// Which phase was running at a kill, judged from the newest checkpoints
/// (written every 25 steps).
fn phases_at_kill(dir: &Path) -> Vec<&'static str> {
    let mut out = Vec::new();
    match stage(&dir.join("checkpoint.moe")) {
        None => out.push("phase_one"),
        Some((s, step)) => out.push(match s.as_str() {
            "PhaseOne" => "phase_one",
            "PhaseTwo" => "phase_two",
            "PhaseThree" if step < 3000 => "phase_three",
            "PhaseThree" => "phase_four",
            _ => "evaluation",
        }),
    }
    out.push(match stage(&dir.join("checkpoint.vanilla")) {
        None => "vanilla_train",
        Some((s, _)) if s == "VanillaTrain" => "vanilla_train",
        Some(_) => "vanilla_done",
    });
    out
}

#[test]
fn killed_at_random_moments_and_resumed_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    let out = output(&args(&reference, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = start.elapsed();

    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    let wanted = [
        "phase_one",
        "phase_two",
        "phase_three",
        "phase_four",
        "vanilla_train",
    ];
    let enough =
        |k: &BTreeMap<&str, usize>| wanted.iter().all(|p| k.get(p).copied().unwrap_or(0) >= 5);
    let mut chains = 0;
    let mut completed = 0;
    while !enough(&kills) {
        chains += 1;
        assert!(
            chains <= 60,
            "not enough kills in every phase after 60 runs: {kills:?}"
        );
        let dir = tmp.path().join(format!("run{chains}"));
        let first = args(&dir, &["--checkpoint-every", "25"]);
        kill_until_done(
            first,
            &dir,
            whole.mul_f64(0.02)..whole.mul_f64(0.6),
            &mut rng,
            |dir| {
                for phase in phases_at_kill(dir) {
                    *kills.entry(phase).or_default() += 1;
                }
            },
        );
        assert_same_outputs(&reference, &dir, &format!("run {chains}"));
        completed += 1;
    }
    eprintln!("{completed} killed-and-resumed runs; kills by phase: {kills:?}");
}

/// Runs `first`, kills it (SIGKILL) after a random time in `wait`, resumes
/// it, kills it again... until a run gets to its end; `killed` looks at the
/// run directory after each kill.
fn kill_until_done(
    first: Vec<String>,
    dir: &Path,
    wait: std::ops::Range<Duration>,
    rng: &mut impl Rng,
    mut killed: impl FnMut(&Path),
) {
    let mut next = first;
    loop {
        let mut child = spawn(&next);
        let deadline = Instant::now() + rng.gen_range(wait.clone());
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "run failed: {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if !dir.join("config.toml").exists() {
            // Killed before its configuration was written (while checking
            // it, or writing it): nothing to resume, so start it again,
            // which a directory holding no run accepts.
            continue;
        }
        killed(dir);
        next = resume_args(dir);
    }
}

/// A run directory stopped by SIGTERM in phase I, with its checkpoints.
fn stopped_run(dir: &Path) {
    stopped_run_of(&args(dir, &["--checkpoint-every", "25"]), dir);
}

/// The run of `args` writing to `dir`, stopped by SIGTERM in phase I.
fn stopped_run_of(args: &[String], dir: &Path) {
    let child = spawn(args);
    // Wait for a checkpoint that follows some metric records, then ask for a stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stage(&dir.join("checkpoint.moe")).is_none_or(|(_, step)| step < 250) {
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(2));
    }
    unsafe_term(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return; // it finished first; the callers check what they need
    }
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    assert!(stderr.contains("stopped by signal 15"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
}

/// Sends SIGTERM (the standard library only sends SIGKILL).
fn unsafe_term(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_stops_after_a_checkpoint_and_the_run_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    assert!(output(&args(&reference, &[])).status.success());
    let dir = tmp.path().join("stopped");
    stopped_run(&dir);
    assert!(
        dir.join("metrics.jsonl").exists(),
        "the metrics so far are on disk"
    );
    let out = output(&resume_args(&dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_outputs(&reference, &dir, "after SIGTERM");
    // Resuming a complete run changes nothing.
    let out = output(&resume_args(&dir));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already complete"));
    assert_same_outputs(&reference, &dir, "resumed twice");
}

/// At d = 256 on two threads each batch is drawn while the step before it
/// computes; the checkpoints still hold the stream where the step left it,
/// so a stopped run resumes to the bytes of one uninterrupted thread.
#[test]
fn batches_drawn_ahead_on_two_threads_resume_to_the_same_bytes() {
    let mut sets = SETS.to_vec();
    sets[0] = "task.d=256";
    sets[1] = "phase_one.steps=1500";
    sets[3] = "phase_three.steps=500";
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = output(&run_args(&sets, &reference, &["--threads", "1"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("stopped");
    let two = ["--threads", "2", "--checkpoint-every", "25"];
    stopped_run_of(&run_args(&sets, &dir, &two), &dir);
    let mut resume = resume_args(&dir);
    resume.extend(["--threads".into(), "2".into()]);
    let out = output(&resume);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_outputs(&reference, &dir, "drawn ahead, stopped and resumed");
}

fn header_and_body(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
    (bytes[..=newline].to_vec(), bytes[newline + 1..].to_vec())
}

#[test]
fn damaged_checkpoints_get_a_clear_error_and_exit_status_2() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    stopped_run(&pristine);
    assert!(
        pristine.join("checkpoint.moe").exists(),
        "the run was stopped with a checkpoint"
    );
    let (header, body) = header_and_body(&pristine.join("checkpoint.moe"));
    let mut flipped = body.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x04;
    let text = String::from_utf8(header.clone()).unwrap();
    type Damage = Box<dyn Fn(&Path)>;
    fn ckpt(dir: &Path) -> PathBuf {
        dir.join("checkpoint.moe")
    }
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "truncated",
            {
                let (h, b) = (header.clone(), body.clone());
                Box::new(move |d: &Path| {
                    std::fs::write(ckpt(d), [&h[..], &b[..b.len() / 3]].concat()).unwrap()
                })
            },
            "truncated",
        ),
        (
            "cut in the header",
            {
                let h = header.clone();
                Box::new(move |d: &Path| std::fs::write(ckpt(d), &h[..10]).unwrap())
            },
            "no header line",
        ),
        (
            "empty",
            Box::new(|d: &Path| std::fs::write(ckpt(d), b"").unwrap()),
            "no header line",
        ),
        (
            "flipped bit",
            {
                let (h, f) = (header.clone(), flipped.clone());
                Box::new(move |d: &Path| {
                    std::fs::write(ckpt(d), [&h[..], &f[..]].concat()).unwrap()
                })
            },
            "checksum",
        ),
        (
            "another version",
            {
                let (t, b) = (text.clone(), body.clone());
                Box::new(move |d: &Path| {
                    let current = format!("checkpoint {} ", clustermoe::store::checkpoint::FORMAT);
                    let h = t.replacen(&current, "checkpoint 999 ", 1);
                    std::fs::write(ckpt(d), [h.as_bytes(), &b[..]].concat()).unwrap()
                })
            },
            "format 999",
        ),
        (
            "garbage",
            Box::new(|d: &Path| {
                std::fs::write(ckpt(d), [0x89u8, 0x50, 0x4e, 0x47, b'\n', 0, 1]).unwrap()
            }),
            "not text",
        ),
        (
            "another run's",
            Box::new(|d: &Path| {
                let p = d.join("config.toml");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("seed = 1", "seed = 2");
                std::fs::write(p, t).unwrap()
            }),
            "another configuration",
        ),
        (
            "the other model's",
            Box::new(|d: &Path| {
                std::fs::copy(d.join("checkpoint.vanilla"), d.join("checkpoint.moe")).unwrap();
            }),
            "vanilla model's state",
        ),
        (
            "metrics cut short",
            Box::new(|d: &Path| std::fs::write(d.join("metrics.moe.part"), b"").unwrap()),
            "fewer than",
        ),
        (
            "no config",
            Box::new(|d: &Path| std::fs::remove_file(d.join("config.toml")).unwrap()),
            "no config.toml",
        ),
        (
            "not a directory",
            Box::new(|d: &Path| {
                std::fs::remove_dir_all(d).unwrap();
                std::fs::write(d, b"x").unwrap()
            }),
            "not a directory",
        ),
    ];
    for (i, (name, damage, reason)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        copy_dir(&pristine, &dir);
        damage(&dir);
        let out = output(&resume_args(&dir));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("cannot resume from"), "{name}: {stderr}");
        assert!(
            stderr.contains(reason),
            "{name}: expected `{reason}` in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        if dir.is_dir() {
            assert!(
                !dir.join("summary.json").exists(),
                "{name}: no result from a bad checkpoint"
            );
        }
    }
}

#[test]
fn a_damaged_summary_is_never_kept_resuming_rewrites_it() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    assert!(output(&args(&reference, &[])).status.success());
    let good = std::fs::read(reference.join("summary.json")).unwrap();
    let damages: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        Vec::new(),
        b"{\"seed\": 1}".to_vec(),
        vec![0xff; 64],
    ];
    for (i, bytes) in damages.into_iter().enumerate() {
        let dir = tmp.path().join(format!("damaged{i}"));
        copy_dir(&reference, &dir);
        std::fs::write(dir.join("summary.json"), bytes).unwrap();
        let out = output(&resume_args(&dir));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_outputs(&reference, &dir, &format!("damage {i}"));
    }
}

/// A kill after `summary.json` but before the clean-up leaves checkpoints of
/// a finished run; resuming it finishes the clean-up and keeps the outputs.
#[test]
fn resuming_a_complete_run_removes_its_leftover_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    assert!(output(&args(&reference, &[])).status.success());
    let dir = tmp.path().join("leftovers");
    copy_dir(&reference, &dir);
    for f in ["checkpoint.moe", "checkpoint.vanilla", "metrics.moe.part"] {
        std::fs::write(dir.join(f), b"stale").unwrap();
    }
    let out = output(&resume_args(&dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_outputs(&reference, &dir, "leftovers");
}

fn sweep_args(grid: &Path, out: &Path) -> Vec<String> {
    vec![
        "sweep".into(),
        grid.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--jobs".into(),
        "2".into(),
        "--checkpoint-every".into(),
        "25".into(),
        "-q".into(),
    ]
}

#[test]
fn a_sweep_stopped_by_sigterm_resumes_run_by_run_to_the_runs_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut grid = String::from("seeds = [1, 2, 3]\n[set]\n");
    for s in SETS {
        let (k, v) = s.split_once('=').unwrap();
        grid.push_str(&format!("\"{k}\" = {v}\n"));
    }
    let grid_path = tmp.path().join("grid.toml");
    std::fs::write(&grid_path, grid).unwrap();
    let out = tmp.path().join("sweep");
    let child = spawn(&sweep_args(&grid_path, &out));
    let deadline = Instant::now() + Duration::from_secs(60);
    let checkpointed = |out: &Path| -> bool {
        std::fs::read_dir(out.join("runs"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().join("checkpoint.moe").exists())
            })
            .unwrap_or(false)
    };
    while !checkpointed(&out) {
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(2));
    }
    unsafe_term(&child);
    let stopped = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("the same sweep command resumes them"),
        "{stderr}"
    );
    let again = output(&sweep_args(&grid_path, &out));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(stdout.contains("resumed"), "{stdout}");
    // Each run equals the same configuration run alone.
    for entry in std::fs::read_dir(out.join("runs")).unwrap() {
        let dir = entry.unwrap().path();
        let config = dir.join("config.toml");
        let alone: PathBuf = tmp.path().join(format!(
            "alone-{}",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let out = output(&[
            "run".into(),
            "-q".into(),
            config.display().to_string(),
            "--out".into(),
            alone.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_outputs(&alone, &dir, &dir.display().to_string());
    }
}

/// A jointly trained run (`moe.training = "joint"`): the same bytes with
/// one thread or several, and killed at random moments during joint
/// training and resumed, the same bytes as the uninterrupted run.
#[test]
fn a_joint_run_killed_and_resumed_gives_identical_bytes() {
    const JOINT: [&str; 7] = [
        "task.d=16",
        "moe.training=joint",
        "moe.gate=noisy_top_k",
        "joint.steps=6000",
        "metrics.test_samples=2000",
        "metrics.probe_samples=500",
        "metrics.log_every=100",
    ];
    let joint_args = |out: &Path, extra: &[&str]| run_args(&JOINT, out, extra);
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    let out = output(&joint_args(&reference, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = start.elapsed();
    let one_thread = tmp.path().join("one_thread");
    let status = common::clustermoe()
        .args(joint_args(&one_thread, &[]))
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_outputs(&reference, &one_thread, "one thread");
    let summary = std::fs::read_to_string(reference.join("summary.json")).unwrap();
    assert!(summary.contains("\"joint\""), "{summary}");

    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(8);
    let mut joint_kills = 0;
    let mut chains = 0;
    while joint_kills < 6 {
        chains += 1;
        assert!(
            chains <= 30,
            "only {joint_kills} kills inside joint training"
        );
        let dir = tmp.path().join(format!("run{chains}"));
        let first = joint_args(&dir, &["--checkpoint-every", "50"]);
        kill_until_done(
            first,
            &dir,
            whole.mul_f64(0.05)..whole.mul_f64(0.7),
            &mut rng,
            |dir| {
                if stage(&dir.join("checkpoint.moe")).is_some_and(|(s, _)| s == "Joint") {
                    joint_kills += 1;
                }
            },
        );
        assert_same_outputs(&reference, &dir, &format!("joint run {chains}"));
    }
}
