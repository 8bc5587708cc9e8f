//! Samples to learn: every run's probes time when each model reaches its
//! targets (or say it did not), stopping at them ends training there, and
//! the crossings agree with the metric records.

use clustermoe::config::Config;
use clustermoe::metrics::samples_to::{Crossing, SamplesTo, Target};
use clustermoe::metrics::Record;
use clustermoe::{Experiment, Summary};

fn config(seed: u64, sets: &[&str]) -> clustermoe::ValidConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = Config {
        seed,
        ..Config::from_toml_with_overrides("", &sets).unwrap()
    };
    config.check().unwrap()
}

fn run(seed: u64, sets: &[&str]) -> (Summary, Vec<Record>, Vec<Record>) {
    let valid = config(seed, sets);
    let (mut moe, mut vanilla) = (Vec::new(), Vec::new());
    let mut moe_log = |r: &Record| {
        moe.push(r.clone());
        Ok(())
    };
    let mut vanilla_log = |r: &Record| {
        vanilla.push(r.clone());
        Ok(())
    };
    let out = Experiment::new(&valid)
        .records(&mut moe_log, &mut vanilla_log)
        .run()
        .unwrap();
    (out.summary, moe, vanilla)
}

fn samples_to(s: &Summary) -> (&SamplesTo, &SamplesTo) {
    (
        &s.moe.model.samples_to,
        &s.vanilla.as_ref().unwrap().samples_to,
    )
}

/// The staged default task at d = 16: short, and the MoE learns it.
const STAGED: [&str; 2] = ["task.d=16", "metrics.test_samples=4000"];

/// The staged MoE reaches every target, phase by phase and in order; the
/// staged vanilla network never learns w*_g, so its `strong` target is
/// censored at the samples it trained on.
#[test]
fn a_staged_run_times_every_target_and_censors_the_vanilla_network() {
    for seed in [1, 2] {
        let (s, moe_records, vanilla_records) = run(seed, &STAGED);
        let (moe, vanilla) = samples_to(&s);
        let phases = moe.phases.as_ref().expect("the staged MoE has phases");
        let at = |c: &Crossing| c.samples().unwrap_or_else(|| panic!("{moe:?}"));
        let one = at(&phases.one_strong.run);
        let two = at(&phases.two.expect("two clusters: phase II's target").run);
        let three = at(&phases.three.run);
        assert!(at(&phases.one_weak.run) <= one, "{phases:?}");
        assert!(one < two && two < three, "{phases:?}");
        assert_eq!(moe.strong, phases.three.run);
        assert_eq!(moe.learned, moe.strong);
        assert!(moe.error.is_none() && vanilla.error.is_none());
        // Counted from the phase's start: the phase-I crossing less the
        // centre samples drawn before phase I.
        let centre = 4096;
        assert_eq!(at(&phases.one_strong.phase), one - centre);
        // Crossings lie inside training, and `since` before `samples`.
        assert_eq!(moe.trained, s.samples.moe - 40_000, "readout excluded");
        for c in [&moe.weak, &moe.strong] {
            let Crossing::Reached { samples, since } = *c else {
                panic!("{c:?}")
            };
            assert!(since < samples && samples <= moe.trained, "{c:?}");
        }
        assert_eq!(
            vanilla.strong,
            Crossing::Censored {
                within: vanilla.trained
            },
            "{vanilla:?}"
        );
        assert_eq!(vanilla.learned, vanilla.strong);
        // Each crossing is a record of its own, at its samples.
        let reached = |records: &[Record], t: Target| {
            records
                .iter()
                .filter(|r| r.reached == Some(t))
                .map(|r| r.samples)
                .collect::<Vec<_>>()
        };
        assert_eq!(reached(&moe_records, Target::PhaseOneStrong), [one]);
        assert_eq!(reached(&moe_records, Target::Strong), [three]);
        assert!(reached(&vanilla_records, Target::Strong).is_empty());
    }
}

/// Stopping at the target: each staged phase ends at its target, so the
/// MoE trains exactly until its `learned` crossing, far below the budget;
/// phase I's crossing is the one the full-length run has (the same
/// dynamics up to it); the vanilla network, censored, trains to the cap.
#[test]
fn until_stops_each_phase_at_its_target_and_the_vanilla_network_at_the_cap() {
    let (full, _, _) = run(3, &STAGED);
    let until_sets = [STAGED[0], STAGED[1], "targets.until=true", "targets.cap=2"];
    let (until, _, _) = run(3, &until_sets);
    let (moe, vanilla) = samples_to(&until);
    let (full_moe, full_vanilla) = samples_to(&full);
    assert_eq!(moe.until_cap, Some(2.0));
    assert_eq!(moe.learned.samples(), Some(moe.trained), "{moe:?}");
    assert!(
        4 * moe.trained < full_moe.trained,
        "{} of {}",
        moe.trained,
        full_moe.trained
    );
    let (p, q) = (moe.phases.unwrap(), full_moe.phases.unwrap());
    assert_eq!(p.one_strong, q.one_strong);
    // Phase II starts right after phase I's crossing (its centre is phase
    // I's), so it ends at its own target too.
    let two = p.two.unwrap();
    assert_eq!(
        two.run.samples().unwrap() - two.phase.samples().unwrap(),
        p.one_strong.run.samples().unwrap()
    );
    // The vanilla network trains to the cap: the MoE's phases, twice as
    // long (their centres' samples are not stretched).
    let ratio = vanilla.trained as f64 / full_vanilla.trained as f64;
    assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
    assert_eq!(
        vanilla.learned,
        Crossing::Censored {
            within: vanilla.trained
        }
    );
    // Stopping warns that the decaying phase-III rate follows the cap.
    assert!(
        until
            .warnings
            .iter()
            .any(|w| w.contains("phase_three.schedule")),
        "{:?}",
        until.warnings
    );
}

/// A jointly trained run on an easy task (linear links at d = 8): both
/// models reach the error target, and its crossing agrees with the
/// records' `probe_rel_mse` curve: every record before it is above the
/// target, the first record at or below it comes at or after it.
#[test]
fn a_joint_runs_error_crossing_agrees_with_its_metrics_curve() {
    let sets = [
        "task.d=8",
        "task.local_link=\"h1\"",
        "task.global_link=\"h1\"",
        "moe.training=\"joint\"",
        "moe.experts=2",
        "moe.neurons=8",
        "joint.steps=3000",
        "joint.lr=0.003",
        "joint.centre_samples=1000",
        "metrics.log_every=50",
        "metrics.test_samples=4000",
    ];
    for seed in [1, 2] {
        let (s, moe_records, vanilla_records) = run(seed, &sets);
        let (moe, vanilla) = samples_to(&s);
        for (records, st) in [(&moe_records, moe), (&vanilla_records, vanilla)] {
            let error = st.error.expect("joint models have an error target");
            let crossing = error.samples().unwrap_or_else(|| panic!("{st:?}"));
            let curve: Vec<(u64, f64)> = records
                .iter()
                .filter_map(|r| Some((r.samples, r.probe_rel_mse?)))
                .collect();
            assert!(curve.len() >= 50, "{}", curve.len());
            let first_below = curve
                .iter()
                .find(|&&(_, e)| e <= 0.2)
                .expect("the curve reaches 0.2");
            assert!(first_below.0 >= crossing, "{first_below:?} {error:?}");
            // The error falls fast on this task: the curve confirms the
            // crossing within a few records.
            assert!(
                first_below.0 - crossing <= 200 * 64,
                "{first_below:?} {error:?}"
            );
            assert!(
                curve.iter().all(|&(n, e)| n >= crossing || e > 0.2),
                "{curve:?} {error:?}"
            );
            // Learned: the later of strong and error, censored if either is.
            // (Linear links are fitted by several ReLU neurons together, so
            // no single neuron needs to reach overlap 0.9 here.)
            assert_eq!(
                st.learned.reached(),
                st.strong.reached() && error.reached(),
                "{st:?}"
            );
            if let (Some(a), Some(b)) = (st.strong.samples(), error.samples()) {
                assert_eq!(st.learned.samples(), Some(a.max(b)));
            }
            assert_eq!(st.trained, s.samples.moe);
        }
    }
}

/// A resumed run and an uninterrupted one time the same crossings; so do
/// a run with records every step and one with none (probes never move a
/// training stream).
#[test]
fn logging_does_not_move_the_crossings() {
    let quiet = [STAGED[0], STAGED[1], "metrics.log_every=0"];
    let chatty = [STAGED[0], STAGED[1], "metrics.log_every=7"];
    let (a, _, _) = run(4, &quiet);
    let (b, _, _) = run(4, &chatty);
    assert_eq!(samples_to(&a), samples_to(&b));
    assert_eq!(a.moe.model.error, b.moe.model.error);
}
