//! `--threads N` and `Experiment::threads`: a run's bytes are the same for
//! every thread count, on a task large enough (d = 256) for every parallel
//! path to run: the models side by side, phase III's experts in parallel,
//! and block-split products (phase I's whitening, the vanilla network's
//! steps, the readouts' features). No timing is asserted.

mod common;

use std::path::Path;

use clustermoe::config::Config;
use clustermoe::metrics::Record;
use clustermoe::results::Models;
use clustermoe::Experiment;
use common::{output, stderr};

/// d = 256 with short phases: a second or so a run.
const WIDE: &str = r#"
[task]
d = 256
[phase_one]
steps = 200
[phase_two]
steps = 50
[phase_three]
steps = 200
[readout]
samples = 4000
[metrics]
test_samples = 2000
log_every = 50
"#;

fn wide_config() -> Config {
    Config::from_toml_with_overrides(WIDE, &[]).unwrap()
}

/// summary.json, model.npz and metrics.jsonl of a run directory.
fn run_bytes(dir: &Path) -> Vec<Vec<u8>> {
    ["summary.json", "model.npz", "metrics.jsonl"]
        .iter()
        .map(|name| std::fs::read(dir.join(name)).unwrap())
        .collect()
}

#[test]
fn run_writes_the_same_bytes_on_1_2_and_3_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("wide.toml");
    std::fs::write(&config, WIDE).unwrap();
    let mut runs = Vec::new();
    for threads in ["1", "2", "3"] {
        let dir = tmp.path().join(format!("t{threads}"));
        let out = output(&[
            "run",
            config.to_str().unwrap(),
            "-q",
            "--threads",
            threads,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        runs.push(run_bytes(&dir));
    }
    assert!(runs[0] == runs[1], "1 and 2 threads differ");
    assert!(runs[0] == runs[2], "1 and 3 threads differ");
}

#[test]
fn a_bad_thread_count_exits_2_naming_the_flag_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["0", "1025"] {
        let dir = tmp.path().join(format!("bad{bad}"));
        let out = output(&[
            "run",
            "-q",
            "--threads",
            bad,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "invalid value for `--threads`: {bad} (a number of threads from 1 to 1024)"
            )),
            "{}",
            stderr(&out)
        );
        assert!(!dir.exists());
        let out = output(&["bench", "-q", "--d", "8", "--threads", bad]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("`--threads`"), "{}", stderr(&out));
    }
    let help = String::from_utf8_lossy(&output(&["run", "--help"]).stdout).into_owned();
    assert!(help.contains("--threads <N>"), "{help}");
}

/// Everything a library run gives: the summary, the trained models, and
/// every record of both journals, as JSON.
fn library_run(config: &Config, threads: usize) -> String {
    let valid = config.clone().check().unwrap();
    let (mut moe_records, mut vanilla_records) = (Vec::new(), Vec::new());
    let mut moe_log = |r: &Record| {
        moe_records.push(r.clone());
        Ok(())
    };
    let mut vanilla_log = |r: &Record| {
        vanilla_records.push(r.clone());
        Ok(())
    };
    let out = Experiment::new(&valid)
        .records(&mut moe_log, &mut vanilla_log)
        .threads(threads)
        .run()
        .unwrap();
    let models = match &out.models {
        Models::Staged { moe, vanilla } => serde_json::json!({ "moe": moe, "vanilla": vanilla }),
        Models::Joint { moe, vanilla } => serde_json::json!({ "moe": moe, "vanilla": vanilla }),
    };
    serde_json::json!({
        "summary": out.summary,
        "models": models,
        "moe_records": moe_records,
        "vanilla_records": vanilla_records,
    })
    .to_string()
}

#[test]
fn the_library_run_is_the_same_on_1_2_and_3_threads_staged_and_joint() {
    let staged = wide_config();
    let mut joint = wide_config();
    joint.moe.training = clustermoe::config::Training::Joint;
    joint.joint.steps = 100.into();
    joint.metrics.log_every = 25;
    for config in [staged, joint] {
        let one = library_run(&config, 1);
        assert_eq!(library_run(&config, 2), one);
        assert_eq!(library_run(&config, 3), one);
    }
}

#[test]
fn the_library_checks_the_thread_count() {
    let valid = wide_config().check().unwrap();
    let err = Experiment::new(&valid).threads(0).run().unwrap_err();
    assert_eq!(err.exit_status(), 2);
    assert!(err.to_string().contains("`threads`: 0"), "{err}");
}

/// `bench --threads 1,2` measures every d at each count, and its plot has
/// the whole run's series for both counts.
#[test]
fn bench_measures_each_thread_count_of_a_list() {
    let tmp = tempfile::tempdir().unwrap();
    let (json, plot) = (tmp.path().join("b.json"), tmp.path().join("b.svg"));
    let out = output(&[
        "bench",
        "-q",
        "--d",
        "8,16",
        "--steps-scale",
        "0.02",
        "--threads",
        "1,2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let measured: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let dims: Vec<(u64, u64)> = measured["dims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["d"].as_u64().unwrap(), r["threads"].as_u64().unwrap()))
        .collect();
    assert_eq!(dims, [(8, 1), (16, 1), (8, 2), (16, 2)]);
    for r in measured["dims"].as_array().unwrap() {
        assert!(r["run_samples_per_second"].as_f64().unwrap() > 0.0, "{r}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("whole run, 1 thread") && svg.contains("whole run, 2 threads"));
}
