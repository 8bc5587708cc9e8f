//! End-to-end tests of every `clustermoe` command through the binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clustermoe::config::Config;
use ndarray::{Array1, Array2};
use ndarray_npy::NpzReader;
use serde_json::Value;

/// A small, fast configuration (d = 16) on which the staged algorithm works.
const SMALL: &str = r#"
[task]
d = 16
[moe]
restart_every = 1000
[phase_one]
steps = 3000
[phase_two]
steps = 300
[phase_three]
steps = 4000
[readout]
samples = 10000
[metrics]
test_samples = 5000
log_every = 500
"#;

fn clustermoe(args: &[&str]) -> Output {
    common::output(args)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

use common::stderr;

fn run_small(dir: &Path, name: &str, seed: u64, extra: &[&str]) -> PathBuf {
    let config = write(dir, "small.toml", SMALL);
    let out_dir = dir.join(name);
    let seed = seed.to_string();
    let mut args = vec![
        "run",
        config.to_str().unwrap(),
        "--seed",
        &seed,
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = clustermoe(&args);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    out_dir
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn run_writes_every_output_and_the_same_seed_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_small(tmp.path(), "a", 7, &[]);
    let b = run_small(tmp.path(), "b", 7, &[]);
    let c = run_small(tmp.path(), "c", 8, &[]);
    for file in ["summary.json", "model.npz"] {
        let (fa, fb, fc) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            std::fs::read(c.join(file)).unwrap(),
        );
        assert_eq!(fa, fb, "{file} differs between two runs of the same seed");
        assert_ne!(fa, fc, "{file} is the same for different seeds");
    }

    let s = summary(&a);
    assert_eq!(s["seed"], 7);
    assert_eq!(
        s["samples"]["moe"], s["samples"]["vanilla"],
        "both models get the same budget"
    );
    for model in ["moe", "vanilla"] {
        for key in [
            "test_mse",
            "test_rel_mse",
            "per_cluster_rel_mse",
            "local_overlap_per_cluster",
            "global_overlap_per_cluster",
        ] {
            assert!(!s[model][key].is_null(), "summary lacks {model}.{key}");
        }
    }
    for key in [
        "routing_purity",
        "confusion",
        "expert_cluster",
        "phase1_local_overlap_per_cluster",
        "phase1_weak_recovery_samples",
    ] {
        assert!(!s["moe"][key].is_null(), "summary lacks moe.{key}");
    }
    assert_eq!(s["moe"]["expert_cluster"].as_array().unwrap().len(), 8);

    // config.toml is the full resolved configuration.
    let config =
        Config::from_toml(&std::fs::read_to_string(a.join("config.toml")).unwrap()).unwrap();
    assert_eq!(config.seed, 7);
    assert_eq!(config.task.d, 16);
    assert_eq!(
        config.readout.samples,
        clustermoe::config::Auto::Value(10_000)
    );
    assert_eq!(config.readout.ridge, Config::default().readout.ridge);

    // metrics.jsonl: MoE records then vanilla records, each with the common fields.
    let text = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let phases: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["phase"].as_str().unwrap()))
        .collect();
    for expected in [
        ("moe", "phase_one"),
        ("moe", "phase_two"),
        ("moe", "phase_three"),
        ("moe", "test"),
        ("vanilla", "train"),
        ("vanilla", "test"),
    ] {
        assert!(phases.contains(&expected), "no {expected:?} record");
    }
    let first_vanilla = phases.iter().position(|p| p.0 == "vanilla").unwrap();
    assert!(phases[first_vanilla..].iter().all(|p| p.0 == "vanilla"));
    let samples: Vec<u64> = records[..first_vanilla]
        .iter()
        .map(|r| r["samples"].as_u64().unwrap())
        .collect();
    assert!(
        samples.windows(2).all(|w| w[0] <= w[1]),
        "samples seen never decrease"
    );

    // model.npz: ground truth and learned arrays, loadable as .npy members.
    let mut npz = NpzReader::new(std::fs::File::open(a.join("model.npz")).unwrap()).unwrap();
    let names = npz.names().unwrap();
    for name in [
        "v",
        "w",
        "wg",
        "s",
        "moe_u",
        "router_theta",
        "expert0_w",
        "expert0_a",
        "vanilla_w",
        "vanilla_a",
    ] {
        assert!(
            names
                .iter()
                .any(|n| n == name || n == &format!("{name}.npy")),
            "model.npz lacks {name}: {names:?}"
        );
    }
    let w: Array2<f64> = npz.by_name("w").unwrap();
    assert_eq!(w.dim(), (2, 16));
    let vanilla_w: Array2<f64> = npz.by_name("vanilla_w").unwrap();
    assert_eq!(vanilla_w.ncols(), 16);
}

#[test]
fn on_a_small_task_the_moe_learns_the_global_direction_and_the_vanilla_network_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in [1, 2] {
        let s = summary(&run_small(tmp.path(), &format!("s{seed}"), seed, &[]));
        let moe = s["moe"]["test_rel_mse"].as_f64().unwrap();
        let vanilla = s["vanilla"]["test_rel_mse"].as_f64().unwrap();
        assert!(moe < 0.25, "seed {seed}: MoE relative MSE {moe}");
        assert!(
            vanilla > moe + 0.4,
            "seed {seed}: vanilla {vanilla} vs MoE {moe}"
        );
        assert!(
            floats(&s["moe"]["global_overlap_per_cluster"])
                .iter()
                .all(|&o| o > 0.9),
            "seed {seed}: {s}"
        );
        assert!(s["moe"]["routing_purity"].as_f64().unwrap() > 0.97);
    }
}

#[test]
fn thread_count_does_not_change_results() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write(tmp.path(), "small.toml", SMALL);
    let mut bytes = Vec::new();
    for threads in ["1", "2"] {
        let dir = tmp.path().join(format!("t{threads}"));
        let out = Command::new(env!("CARGO_BIN_EXE_clustermoe"))
            .args([
                "run",
                config.to_str().unwrap(),
                "-q",
                "--set",
                "phase_three.steps=500",
                "--out",
                dir.to_str().unwrap(),
            ])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        bytes.push((
            std::fs::read(dir.join("summary.json")).unwrap(),
            std::fs::read(dir.join("model.npz")).unwrap(),
        ));
    }
    assert!(bytes[0] == bytes[1]);
}

#[test]
fn generate_writes_the_documented_arrays_following_the_law() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data.npz");
    let out = clustermoe(&[
        "generate",
        "--n",
        "20000",
        "--seed",
        "3",
        "--set",
        "task.noise=0.5",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut npz = NpzReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let x: Array2<f64> = npz.by_name("x").unwrap();
    let y: Array1<f64> = npz.by_name("y").unwrap();
    let c: Array1<i64> = npz.by_name("c").unwrap();
    let v: Array2<f64> = npz.by_name("v").unwrap();
    let w: Array2<f64> = npz.by_name("w").unwrap();
    let wg: Array1<f64> = npz.by_name("wg").unwrap();
    let s: Array1<f64> = npz.by_name("s").unwrap();
    assert_eq!(x.dim(), (20000, 32));
    assert_eq!(
        (y.len(), c.len(), v.dim(), w.dim(), wg.len()),
        (20000, 20000, (2, 32), (2, 32), 32)
    );
    assert_eq!(s.to_vec(), vec![1.0, -1.0]);
    assert!(c.iter().all(|&ci| ci == 0 || ci == 1));
    let h3 = |t: f64| (t * t * t - 3.0 * t) / 6f64.sqrt();
    let residual: Vec<f64> = (0..20000)
        .map(|i| {
            let ci = c[i] as usize;
            let xi = x.row(i);
            y[i] - h3(xi.dot(&w.row(ci))) - s[ci] * h3(xi.dot(&wg))
        })
        .collect();
    let std = (residual.iter().map(|r| r * r).sum::<f64>() / 20000.0).sqrt();
    assert!((std - 0.5).abs() < 0.02, "residual std {std}");
    // Each cluster's mean is rho v_c with rho = 4.
    let mean0: Array1<f64> = (0..20000)
        .filter(|&i| c[i] == 0)
        .map(|i| x.row(i).to_owned())
        .fold(Array1::zeros(32), |a, r| a + r)
        / c.iter().filter(|&&ci| ci == 0).count() as f64;
    assert!((mean0.dot(&v.row(0)) - 4.0).abs() < 0.05);
}

#[test]
fn link_reports_coefficients_and_information_exponent() {
    for (spec, k) in [
        ("h3", 3),
        ("relu", 1),
        ("abs", 2),
        ("h3+h5", 3),
        ("tanh", 1),
    ] {
        let out = clustermoe(&["link", spec, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["information_exponent"], k, "{spec}");
    }
    let out = clustermoe(&["link", "relu", "--degree", "4"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("information exponent 1"), "{text}");
    assert!(text.contains("c_4"));
    let bad = clustermoe(&["link", "wiggle"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("link"));
}

#[test]
fn defaults_print_a_configuration_that_parses_back() {
    let out = clustermoe(&["defaults"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config, Config::default());
    // Every field, those a staged run's config.toml leaves out included.
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["moe"]["training"].as_str(), Some("staged"));
    let joint = table["joint"].as_table().expect("a [joint] section");
    for field in ["optimizer", "lr", "steps", "lambda_bal", "activation"] {
        assert!(joint.contains_key(field), "[joint] lacks {field}");
    }
}

#[test]
fn bad_input_names_the_field_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 12] = [
        ("[task]\nd = 0\n", "task.d"),
        ("[targets]\ncap = 0.5\n", "targets.cap"),
        ("[task]\nclusters = 0\n", "task.clusters"),
        ("[task]\ndimension = 32\n", "dimension"),
        ("[phase_one]\nlr = -0.1\n", "phase_one.lr"),
        ("[task]\nrho = nan\n", "task.rho"),
        ("[moe]\nexperts = 0\n", "moe.experts"),
        (
            "[task]\nglobal_link = \"hermite:0,0,0\"\n",
            "task.global_link",
        ),
        (
            "[phase_one]\nsteps = 4294967295\nbatch = 1048576\n",
            "phase_one.steps",
        ),
        ("[task]\nd = 4\n", "task.d"),
        ("[moe]\ngate = \"top2\"\n", "top2"),
        ("[task\n", "TOML"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let config = write(tmp.path(), &format!("bad{i}.toml"), text);
        let dir = tmp.path().join(format!("out{i}"));
        let out = clustermoe(&[
            "run",
            config.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains(field),
            "{text:?}: message does not name {field}: {message}"
        );
        assert_eq!(
            message.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "one clear message: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert!(!dir.exists(), "{text:?}: an output directory was created");
    }
    let missing = clustermoe(&[
        "run",
        "/nonexistent/config.toml",
        "--out",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("/nonexistent/config.toml"));

    let set = clustermoe(&[
        "run",
        "--set",
        "task.rho=-1",
        "--out",
        tmp.path().join("s").to_str().unwrap(),
    ]);
    assert_eq!(set.status.code(), Some(2));
    assert!(stderr(&set).contains("task.rho"));

    // A type error from a `--set` blames the `--set`, not the file; one in
    // the file blames the file.
    let cases = [
        (
            "fine.toml",
            "[task]\nd = 16\n",
            "task.rho=fast",
            "--set task.rho=fast",
            "task.rho",
            "fine.toml",
        ),
        (
            "typo.toml",
            "[task]\nd = \"sixteen\"\n",
            "task.rho=3",
            "typo.toml: ",
            "task.d",
            "--set",
        ),
    ];
    for (i, (name, text, set, blamed, field, not_blamed)) in cases.into_iter().enumerate() {
        let config = write(tmp.path(), name, text);
        let typed = clustermoe(&[
            "run",
            config.to_str().unwrap(),
            "--set",
            set,
            "--out",
            tmp.path().join(format!("typed{i}")).to_str().unwrap(),
        ]);
        assert_eq!(typed.status.code(), Some(2));
        let message = stderr(&typed);
        assert!(
            message.contains(blamed) && message.contains(field) && !message.contains(not_blamed),
            "{message}"
        );
    }

    // A directory that is not a run directory is never overwritten.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("thesis.tex"), "precious").unwrap();
    let config = write(tmp.path(), "ok.toml", SMALL);
    let out = clustermoe(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        busy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(busy.join("thesis.tex")).unwrap(),
        "precious"
    );
}

/// `--until[=CAP]` is `--set targets.until=true --set targets.cap=CAP`:
/// a cap below 1 is refused by name, and the flag needs its `=`.
#[test]
fn until_stops_at_the_target_and_a_bad_cap_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad");
    let out = clustermoe(&["run", "--until=0.5", "--out", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("targets.cap"), "{}", stderr(&out));
    assert!(!bad.exists());
    let dir = run_small(tmp.path(), "until", 1, &["--until"]);
    let s = summary(&dir);
    let moe = &s["moe"]["samples_to"];
    assert_eq!(moe["until_cap"], 4.0);
    assert_eq!(moe["learned"]["status"], "reached", "{moe}");
    assert_eq!(moe["learned"]["samples"], moe["trained"]);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        config.contains("[targets]") && config.contains("until = true"),
        "{config}"
    );
}

#[test]
fn divergence_names_phase_and_step_and_keeps_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write(tmp.path(), "small.toml", SMALL);
    let dir = tmp.path().join("diverged");
    let out = clustermoe(&[
        "run",
        config.to_str().unwrap(),
        // First-layer steps are clipped to max_step radians, so no rate
        // diverges them; an activation scaled past f32 does.
        "--set",
        "phase_three.activation=\"1e30*h3\"",
        "--set",
        "vanilla.enabled=false",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("phase_three") && message.contains("step"),
        "{message}"
    );
    assert!(message.contains("smaller learning rate"), "{message}");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(
        metrics.lines().any(|l| l.contains("\"phase_two\"")),
        "metrics up to the failure stay on disk"
    );
    assert!(!dir.join("summary.json").exists());
}

/// `moe.training = "joint"` through the binary: a run directory with the
/// joint summary and records; a bad joint field exits 2 naming it, and
/// writes nothing.
#[test]
fn a_joint_run_writes_its_summary_and_records_and_bad_joint_fields_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_small(
        tmp.path(),
        "joint",
        3,
        &[
            "--set",
            "moe.training=joint",
            "--set",
            "joint.steps=300",
            "--set",
            "metrics.log_every=100",
        ],
    );
    let s = summary(&dir);
    assert_eq!(s["joint"]["steps"], 300);
    assert!(s["joint"]["routing"]["expert_load"].is_array(), "{s}");
    assert!(s["moe"]["test_rel_mse"].as_f64().unwrap().is_finite());
    assert_eq!(s["samples"]["moe"], s["samples"]["vanilla"]);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("training = \"joint\""), "{config}");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let joint: Vec<Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["phase"] == "joint" && r.get("reached").is_none())
        .collect();
    // Three records per model (besides those of targets reached), the
    // MoE's with its routing and loss terms.
    assert_eq!(joint.len(), 6, "{metrics}");
    assert!(joint[0]["loss_balance"].is_number() && joint[0]["router_entropy"].is_number());
    for (set, field) in [
        ("joint.lr=0", "joint.lr"),
        ("joint.optimizer=lbfgs", "joint.optimizer"),
        ("moe.training=both", "moe.training"),
        ("joint.activation=sign", "joint.activation"),
    ] {
        let out_dir = tmp.path().join("bad");
        let out = clustermoe(&["run", "--set", set, "--out", out_dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", stderr(&out));
        assert!(stderr(&out).contains(field), "{set}: {}", stderr(&out));
        assert!(!out_dir.exists(), "{set}");
    }
}

/// Words of Rust and serde that no message meant for a user may hold.
const RUST_WORDS: [&str; 10] = [
    "usize",
    "u64",
    "u32",
    "i64",
    "f64",
    "f32",
    "struct ",
    "untagged enum",
    "a sequence",
    "a map",
];

#[test]
fn every_field_rejects_bad_values_in_words_not_rust_types() {
    let defaults: toml::Table = toml::from_str(&Config::default().to_full_toml()).unwrap();
    let mut fields = Vec::new();
    for (section, value) in &defaults {
        match value {
            toml::Value::Table(t) => fields.extend(t.keys().map(|k| format!("{section}.{k}"))),
            _ => fields.push(section.clone()),
        }
    }
    assert!(fields.len() > 60, "{} fields", fields.len());
    let mut rejected = 0;
    for field in &fields {
        for value in ["-5", "fast", "[1, 2]", "true", "{ a = 1 }", "-1.5", "NaN"] {
            let set = format!("{field}={value}");
            let result = Config::from_toml_with_overrides("", std::slice::from_ref(&set))
                .and_then(|c| c.check().map(|_| ()));
            let Err(e) = result else { continue };
            rejected += 1;
            let message = e.to_string();
            assert_eq!(e.exit_status(), 2, "{set}: {message}");
            assert!(message.contains(field.as_str()), "{set}: {message}");
            for word in RUST_WORDS {
                assert!(!message.contains(word), "{set}: {message:?} holds {word:?}");
            }
        }
    }
    assert!(rejected > fields.len() * 4, "{rejected} rejections");
    // A negative count gets the field's own range, as 0 does.
    let e = Config::from_toml_with_overrides("", &["task.d=-5".into()]).unwrap_err();
    let zero = Config::from_toml_with_overrides("", &["task.d=0".into()])
        .unwrap()
        .check()
        .unwrap_err();
    match (e, zero) {
        (
            clustermoe::error::Error::Invalid { value, allowed, .. },
            clustermoe::error::Error::Invalid { allowed: want, .. },
        ) => {
            assert_eq!(value, "-5");
            assert_eq!(allowed, want);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nan_and_inf_read_the_same_in_any_case() {
    let message = |value: &str| {
        let set = format!("task.rho={value}");
        Config::from_toml_with_overrides("", &[set])
            .and_then(|c| c.check().map(|_| ()))
            .unwrap_err()
            .to_string()
    };
    for (forms, want) in [
        (["nan", "NaN", "NAN", "+nan"], "`task.rho`: NaN"),
        (["inf", "Inf", "INF", "+Infinity"], "`task.rho`: inf"),
        (["-inf", "-Inf", "-INF", "-infinity"], "`task.rho`: -inf"),
    ] {
        for form in forms {
            let m = message(form);
            assert!(m.contains(want), "{form}: {m}");
        }
    }
}

#[test]
fn an_unusable_out_exits_2_saying_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "afile", "not a directory");
    let grid = write(tmp.path(), "grid.toml", "seeds = [1]\n");
    let under = file.join("run");
    for args in [
        vec!["run", "-q", "--out", file.to_str().unwrap()],
        vec!["run", "-q", "--out", under.to_str().unwrap()],
        vec![
            "sweep",
            grid.to_str().unwrap(),
            "-q",
            "--out",
            file.to_str().unwrap(),
        ],
    ] {
        let out = clustermoe(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("`--out`") && err.contains("existing file"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn the_summary_table_lines_up_for_any_number_of_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    for clusters in [2, 3, 5] {
        let signs = match clusters {
            2 => "[1, -1]",
            3 => "[1, 1, -2]",
            _ => "[1, -1, 1, -1, 0]",
        };
        let text = format!("{SMALL}\n");
        let text = text.replace(
            "[task]\nd = 16\n",
            &format!("[task]\nd = 16\nclusters = {clusters}\nsigns = {signs}\n"),
        );
        let config = write(tmp.path(), "c.toml", &text);
        let out_dir = tmp.path().join(format!("c{clusters}"));
        let out = clustermoe(&[
            "run",
            config.to_str().unwrap(),
            "-q",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().take(3).collect();
        // Every column starts where its header starts.
        for header in ["test_rel_mse", "local_overlap", "global_overlap", "samples"] {
            let at = lines[0].find(header).unwrap();
            let (start, end) = if header == "test_rel_mse" || header == "samples" {
                (at + header.len() - 1, at + header.len())
            } else {
                (at, at + 1)
            };
            for row in &lines[1..] {
                let cell = &row[start..end];
                assert!(
                    cell.chars().all(|c| c.is_ascii_digit() || c == '.'),
                    "C = {clusters}, {header}: {:?}\n{text}",
                    cell
                );
            }
        }
    }
}

#[test]
fn a_run_that_does_not_fit_in_memory_exits_2_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    // Lengths and rates fixed: the laws' are beyond any step count at this d.
    let mut args = vec![
        "run",
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "task.d=65536",
    ];
    for set in [
        "phase_one.steps=1000",
        "phase_one.lr=0.001",
        "phase_three.steps=1000",
        "phase_three.lr=0.001",
        "phase_three.lr_end=0.0001",
        "vanilla.lr=0.001",
        "vanilla.lr_end=0.0001",
    ] {
        args.extend(["--set", set]);
    }
    // A cap of 4 GB, as a batch scheduler's cgroup would set: the test set
    // alone (20000 samples x 65536 x f32) is 5 GB.
    let out = common::clustermoe()
        .env("CLUSTERMOE_MEMORY_LIMIT", "4000000000")
        .args(&args)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for words in [
        "not enough memory: a run of task.d = 65536 needs an estimated",
        "more than the 3.7 GiB of the limit set by CLUSTERMOE_MEMORY_LIMIT",
        "test set",
        "metrics.test_samples",
        "lower those fields or task.d",
    ] {
        assert!(err.contains(words), "{words:?} not in {err}");
    }
    assert!(!dir.exists(), "a refused run created {}", dir.display());

    let out = common::clustermoe()
        .env("CLUSTERMOE_MEMORY_LIMIT", "4 GB")
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("CLUSTERMOE_MEMORY_LIMIT"),
        "{}",
        stderr(&out)
    );

    // The address-space limit of `ulimit -v` (KiB), read by getrlimit.
    #[cfg(target_os = "linux")]
    {
        let shell = format!(
            "ulimit -v 4000000 && exec {} \"$@\"",
            env!("CARGO_BIN_EXE_clustermoe")
        );
        let out = Command::new("bash")
            .args(["-c", &shell, "clustermoe"])
            .args(&args)
            .env_remove("CLUSTERMOE_MEMORY_LIMIT")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("address-space limit (ulimit -v, RLIMIT_AS)"),
            "{err}"
        );
        assert!(!dir.exists());
    }
}
