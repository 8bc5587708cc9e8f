"""The Python API gives what the command line gives: the same summary,
the same files, the same arrays, the same configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest

import clustermoe as cm
from conftest import SMALL, read_json


def test_run_summary_is_the_clis_summary_json(cli, small_toml, tmp_path):
    cli("run", small_toml, "--seed", 7, "--out", tmp_path / "cli", "-q")
    expected = read_json(tmp_path / "cli" / "summary.json")
    from_path = cm.run(small_toml, seed=7, quiet=True)
    assert from_path.summary == expected
    # The same configuration given as a dict, and as keyword sections.
    assert cm.run(SMALL, seed=7, quiet=True).summary == expected
    assert cm.run(seed=7, quiet=True, **SMALL).summary == expected
    # And the metrics are metrics.jsonl's records.
    with open(tmp_path / "cli" / "metrics.jsonl", encoding="utf-8") as f:
        assert from_path.metrics == [json.loads(line) for line in f]


def test_samples_to_learn_and_stopping_at_the_target_are_the_clis(cli, small_toml, tmp_path):
    cli("run", small_toml, "--seed", 2, "--until=2", "--out", tmp_path / "cli", "-q")
    expected = read_json(tmp_path / "cli" / "summary.json")
    res = cm.run(small_toml, seed=2, quiet=True, targets={"until": True, "cap": 2})
    assert res.summary == expected
    moe, vanilla = res.summary["moe"]["samples_to"], res.summary["vanilla"]["samples_to"]
    # The MoE stops when it has learned: its crossing is the samples it trained on.
    assert moe["learned"] == {"status": "reached", "samples": moe["trained"], "since": moe["learned"]["since"]}
    assert moe["until_cap"] == 2.0
    assert set(moe["phases"]) == {"one_weak", "one_strong", "two", "three"}
    # The staged vanilla network never learns w*_g: censored at what it trained.
    assert vanilla["strong"] == {"status": "censored", "within": vanilla["trained"]}
    # The crossing is a record of its own in the metrics.
    reached = [r for r in res.metrics if r.get("reached") == "strong" and r["model"] == "moe"]
    assert [r["samples"] for r in reached] == [moe["strong"]["samples"]]


def test_the_default_run_equals_the_clis(cli, tmp_path):
    cli("run", "--seed", 3, "--out", tmp_path / "cli", "-q")
    res = cm.run(seed=3, quiet=True)
    assert res.summary == read_json(tmp_path / "cli" / "summary.json")
    with np.load(tmp_path / "cli" / "model.npz") as npz:
        assert list(res.model) == list(npz.files)
        for name in npz.files:
            assert res.model[name].dtype == npz[name].dtype, name
            np.testing.assert_array_equal(res.model[name], npz[name], err_msg=name)


def test_a_run_directory_holds_the_clis_files_byte_for_byte(cli, small_toml, tmp_path):
    cli("run", small_toml, "--seed", 5, "--set", "task.rho=3.5", "--out", tmp_path / "cli", "-q")
    res = cm.run(small_toml, seed=5, out=tmp_path / "py", quiet=True, task={"rho": 3.5})
    assert res.path == tmp_path / "py"
    names = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert names == [
        ".clustermoe.lock", "complete.json", "config.toml", "metrics.jsonl", "model.npz", "summary.json"
    ]
    assert sorted(p.name for p in (tmp_path / "py").iterdir()) == names
    for name in names[1:]:  # the lock file holds its last writer's process id
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert res.config_toml == (tmp_path / "cli" / "config.toml").read_text()
    # load() reads a CLI run directory back as the run Python made.
    back = cm.load(tmp_path / "cli")
    assert back.summary == res.summary
    assert back.metrics == res.metrics
    assert back.config == res.config
    assert list(back.model) == list(res.model)
    for name, a in res.model.items():
        np.testing.assert_array_equal(back.model[name], a)


def test_generate_equals_the_clis_npz(cli, tmp_path):
    cli("generate", "--n", 2000, "--seed", 4, "--set", "task.clusters=4", "--out", tmp_path / "d.npz")
    data = cm.generate(2000, seed=4, task={"clusters": 4})
    with np.load(tmp_path / "d.npz") as npz:
        assert list(data) == list(npz.files) == ["x", "y", "c", "v", "w", "wg", "s"]
        for name in npz.files:
            assert data[name].dtype == npz[name].dtype, name
            np.testing.assert_array_equal(data[name], npz[name], err_msg=name)
    # float32: the samples as drawn, equal to the file's after conversion.
    single = cm.generate(2000, seed=4, task={"clusters": 4}, dtype=np.float32)
    assert single["x"].dtype == np.float32 and single["y"].dtype == np.float32
    np.testing.assert_array_equal(single["x"].astype(np.float64), data["x"])
    np.testing.assert_array_equal(single["y"].astype(np.float64), data["y"])
    np.testing.assert_array_equal(single["c"], data["c"])


def test_link_defaults_and_resolve_are_the_clis(cli, small_toml):
    for spec in ["h3", "h3+0.5*h5", "relu", "monomial:0,0,0,1", "tanh"]:
        assert cm.link(spec, degree=6) == json.loads(cli("link", spec, "--degree", 6, "--json").stdout)
    assert cm.defaults(toml=True) == cli("defaults").stdout
    # resolve is what config.toml holds: a staged run leaves out the
    # defaults of joint training and of the targets, which defaults() shows.
    full = cm.defaults()
    del full["joint"], full["targets"], full["moe"]["training"]
    assert cm.resolve() == full
    assert cm.resolve(small_toml) == cm.resolve(SMALL) == cm.resolve(**SMALL)
    assert cm.resolve(SMALL, seed=9, task={"rho": 2})["task"] == {**cm.resolve(SMALL)["task"], "rho": 2.0}
    assert cm.resolve(seed=9)["seed"] == 9


def test_values_reach_the_configuration_exactly():
    rho = 0.1 + 0.2
    config = cm.resolve(
        task={"rho": rho, "signs": (1, -1, 1, -1), "clusters": np.int64(4), "local_link": "h4", "global_link": "h4"},
        moe={"whiten": np.bool_(False)},
        readout={"ridge": np.float32(0.5)},
    )
    assert config["task"]["rho"] == rho
    assert config["task"]["signs"] == [1.0, -1.0, 1.0, -1.0]
    assert config["task"]["clusters"] == 4
    assert config["moe"]["whiten"] is False
    assert config["readout"]["ridge"] == 0.5


def test_sweep_and_merge_give_the_clis_results(cli, small_toml, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'base = "small.toml"\nseeds = [1, 2]\n[grid]\n"task.rho" = [3.0, 4.0]\n'
    )
    report = cm.sweep(grid, tmp_path / "py", jobs=2, quiet=True)
    assert report["planned"] == 4 and report["trained"] == 4 and report["failed"] == []
    assert cm.sweep(grid, tmp_path / "py", jobs=1, quiet=True)["skipped"] == 4
    rows = cm.merge(tmp_path / "py")
    cli("sweep", grid, "--out", tmp_path / "cli", "--jobs", 2, "-q")
    cli("merge", tmp_path / "cli")
    for name in ["results.csv", "results.jsonl", "sweep.json"]:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    header = (tmp_path / "cli" / "results.csv").read_text().splitlines()[0].split(",")
    assert len(rows) == 4
    assert list(rows[0]) == header
    # Grid order: the axes, then the seeds.
    assert [r["config.task.rho"] for r in rows] == [3.0, 3.0, 4.0, 4.0]
    assert [r["config.seed"] for r in rows] == [1, 2, 1, 2]
    first = cm.load(tmp_path / "py" / "runs" / rows[0]["id"])
    assert rows[0]["summary.moe.test_rel_mse"] == first.summary["moe"]["test_rel_mse"]
    table = cm.columns(rows)
    assert table["summary.moe.test_rel_mse"].shape == (4,)
    assert table["summary.moe.test_rel_mse"].dtype == np.float64


def test_shards_partition_a_sweep(small_toml, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('base = "small.toml"\nseeds = [1, 2, 3]\n')
    a = cm.sweep(grid, tmp_path / "s", shard="0/2", quiet=True)
    b = cm.sweep(grid, tmp_path / "s", shard=(1, 2), quiet=True)
    assert (a["planned"], b["planned"]) == (2, 1)
    assert a["shard"] == (0, 2) and b["shard"] == (1, 2)
    assert len(cm.merge(tmp_path / "s")) == 3
