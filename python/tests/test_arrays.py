"""Arrays have the documented shapes and dtypes; metrics come as records
and as columns; the package is typed and documented."""

from __future__ import annotations

import ast
import inspect
import pathlib

import numpy as np
import pytest

import clustermoe as cm
from conftest import SMALL


@pytest.fixture(scope="module")
def small_run():
    return cm.run(SMALL, seed=1, quiet=True)


def test_model_arrays_have_the_documented_shapes_and_dtypes(small_run):
    m, config = small_run.model, small_run.config
    d, c = config["task"]["d"], config["task"]["clusters"]
    # "auto" sizes as the run resolved them (config.toml keeps "auto").
    budget = small_run.summary["budget"]
    experts = budget["experts"]["experts"]
    assert m["v"].shape == (c, d) and m["w"].shape == (c, d)
    assert m["wg"].shape == (d,) and m["s"].shape == (c,)
    assert m["moe_u"].shape == (experts, d)
    assert m["moe_global_centre"].shape == (d,)
    # The whitening W = bulk I + U' diag(scales - bulk) U: the spikes above
    # the noise bulk (C - 1 = 1 here: the clusters' spread), orthonormal.
    assert m["moe_whitening_bulk"].shape == (1,)
    spikes = m["moe_whitening_directions"]
    assert spikes.shape == (c - 1, d) and m["moe_whitening_scales"].shape == (c - 1,)
    np.testing.assert_allclose(spikes @ spikes.T, np.eye(c - 1), atol=1e-5)
    assert (m["moe_whitening_scales"] < m["moe_whitening_bulk"][0]).all()
    assert m["moe_expert_group"].shape == (experts,) and m["moe_expert_group"].dtype == np.int64
    routed = m["router_theta"].shape[0]
    assert m["router_theta"].shape == (routed, d)
    assert routed == len(small_run.summary["moe"]["confusion"][0])
    neurons = 0
    for k in range(routed):
        rows = m[f"expert{k}_w"].shape[0]
        neurons += rows
        assert m[f"expert{k}_w"].shape == (rows, d)
        assert m[f"expert{k}_centre"].shape == (d,)
        assert m[f"expert{k}_bias"].shape == (rows,)
        assert m[f"expert{k}_a"].shape == (rows,)
        assert m[f"expert{k}_a0"].shape == (1,)
    biases = budget["readout"]["moe"]["biases"]
    assert neurons == experts * config["moe"]["neurons"] * biases
    n = m["vanilla_w"].shape[0]
    assert n == experts * config["moe"]["neurons"] * budget["readout"]["vanilla"]["biases"]
    assert m["vanilla_w"].shape == (n, d)
    assert m["vanilla_centre"].shape == (d,)
    assert m["vanilla_bias"].shape == (n,) and m["vanilla_a"].shape == (n,)
    assert m["vanilla_a0"].shape == (1,)
    for name, a in m.items():
        if name != "moe_expert_group":
            assert a.dtype == np.float64, name
        assert a.flags.c_contiguous and a.flags.writeable, name
    # The ground truth: unit directions, mutually orthonormal by default.
    directions = np.vstack([m["v"], m["w"], m["wg"]])
    np.testing.assert_allclose(directions @ directions.T, np.eye(2 * c + 1), atol=1e-12)


def test_without_whitening_or_vanilla_those_arrays_are_absent():
    res = cm.run(SMALL, seed=1, quiet=True, moe={"whiten": False}, vanilla={"enabled": False})
    assert not any(k.startswith("moe_whitening") for k in res.model)
    assert not any(k.startswith("vanilla_") for k in res.model)
    assert res.summary["vanilla"] is None


def test_generate_arrays_have_the_documented_shapes_and_dtypes():
    data = cm.generate(1000, seed=2, task={"d": 20, "clusters": 3, "signs": [2, -1, -1]})
    shapes = {k: (v.shape, v.dtype) for k, v in data.items()}
    assert shapes == {
        "x": ((1000, 20), np.float64),
        "y": ((1000,), np.float64),
        "c": ((1000,), np.int64),
        "v": ((3, 20), np.float64),
        "w": ((3, 20), np.float64),
        "wg": ((20,), np.float64),
        "s": ((3,), np.float64),
    }
    assert set(np.unique(data["c"])) == {0, 1, 2}
    np.testing.assert_array_equal(data["s"], [2.0, -1.0, -1.0])
    single = cm.generate(10, seed=2, dtype="float32")
    assert single["x"].dtype == np.float32 and single["x"].shape == (10, 32)
    assert single["y"].dtype == np.float32 and single["c"].dtype == np.int64
    assert single["v"].dtype == np.float64
    # The same seed gives the same samples; another seed others.
    np.testing.assert_array_equal(cm.generate(10, seed=2)["x"], cm.generate(10, seed=2)["x"])
    assert not np.array_equal(cm.generate(10, seed=2)["x"], cm.generate(10, seed=3)["x"])


def test_metrics_as_records_and_columns(small_run):
    records = small_run.metrics
    assert records[0]["model"] == "moe" and records[-1]["model"] == "vanilla"
    assert records[-1]["phase"] == "test"
    one = small_run.columns("moe", "phase_one")
    n = sum(1 for r in records if r["model"] == "moe" and r["phase"] == "phase_one")
    experts = small_run.summary["budget"]["experts"]["experts"]
    c = small_run.config["task"]["clusters"]
    assert one["step"].shape == (n,) and one["step"].dtype == np.int64
    assert one["samples"].dtype == np.int64
    assert one["lr"].shape == (n,) and one["lr"].dtype == np.float64
    assert one["expert_local_overlap"].shape == (n, experts, c)
    assert one["expert_global_overlap"].shape == (n, experts)
    assert list(one["phase"]) == ["phase_one"] * n
    everything = small_run.columns("moe")
    m = sum(1 for r in records if r["model"] == "moe")
    assert everything["step"].shape == (m,)
    # A field only some records have: NaN elsewhere.
    assert np.isnan(everything["routing_purity"][0])
    assert np.isfinite(everything["routing_purity"]).any()
    assert np.isnan(everything["expert_local_overlap"][-1]).all()
    vanilla = small_run.columns("vanilla", "train")
    assert vanilla["global_overlap_per_cluster"].shape[1] == c
    test = small_run.columns("moe", "test")
    assert test["test_rel_mse"][0] == small_run.summary["moe"]["test_rel_mse"]
    with pytest.raises(cm.InvalidValueError):
        small_run.columns("both")


def test_columns_of_mixed_records():
    cols = cm.columns([
        {"a": 1, "b": [1.0, 2.0], "s": "x", "t": True},
        {"a": 2.5, "c": None, "s": "y", "t": False},
    ])
    assert list(cols) == ["a", "b", "s", "t", "c"]
    np.testing.assert_array_equal(cols["a"], [1.0, 2.5])
    assert cols["b"].shape == (2, 2) and np.isnan(cols["b"][1]).all()
    assert list(cols["s"]) == ["x", "y"]
    assert cols["t"].dtype == bool
    assert np.isnan(cols["c"]).all()


def test_the_run_repr_and_the_defaults(small_run):
    assert repr(small_run).startswith("Run(seed=1, moe test_rel_mse=")
    config = cm.defaults()
    assert list(config) == ["seed", "task", "moe", "phase_one", "phase_two", "phase_three",
                            "readout", "vanilla", "metrics", "joint", "targets"]
    assert config["moe"]["training"] == "staged" and list(config["moe"])[0] == "experts"
    assert config["task"]["d"] == 32


STUBS = pathlib.Path(cm.__file__).with_name("_native.pyi")


def test_the_stubs_match_the_compiled_module():
    tree = ast.parse(STUBS.read_text())
    stubbed = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    compiled = {n for n in dir(cm._native) if callable(getattr(cm._native, n)) and not n.startswith("__")}
    assert set(stubbed) == compiled
    for name, f in stubbed.items():
        params = [a.arg for a in f.args.args]
        actual = list(inspect.signature(getattr(cm._native, name)).parameters)
        assert params == actual, name


def test_every_public_function_is_documented_and_typed():
    for name in cm.__all__:
        obj = getattr(cm, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, name
    assert (pathlib.Path(cm.__file__).parent / "py.typed").exists()


def test_predict_and_evaluate_reproduce_the_runs_test_error(small_run):
    """Run.predict on fresh samples of the run's task (cm.generate with its
    configuration) gives the run's test relative MSE within sampling
    error, for both models; Run.evaluate() without arguments recomputes the
    summary's errors exactly, and with n and seed measures fresh samples."""
    data = cm.generate(20_000, small_run.config)
    pred = small_run.predict(data["x"])
    var_y = np.var(data["y"], ddof=1)
    for model in ["moe", "vanilla"]:
        rel = np.mean((pred[model] - data["y"]) ** 2) / var_y
        want = small_run.summary[model]["test_rel_mse"]
        assert abs(rel - want) < 0.03 + 0.15 * want, (model, rel, want)
    exact = small_run.evaluate()
    for model in ["moe", "vanilla"]:
        for field in ["test_mse", "test_rel_mse", "per_cluster_rel_mse"]:
            assert exact[model][field] == small_run.summary[model][field], (model, field)
    fresh = small_run.evaluate(n=20_000, seed=12)
    assert fresh["samples"] == 20_000
    assert fresh["moe"]["test_mse"] != exact["moe"]["test_mse"]
    assert abs(fresh["moe"]["test_rel_mse"] - exact["moe"]["test_rel_mse"]) < 0.05
    # The vanilla network misses w*_g: far worse than the MoE on new samples too.
    assert fresh["vanilla"]["test_rel_mse"] > fresh["moe"]["test_rel_mse"] + 0.2
    with pytest.raises(cm.InvalidValueError, match="`x`"):
        small_run.predict(np.zeros((3, 5)))
    with pytest.raises(cm.InvalidValueError, match="`n`"):
        small_run.evaluate(n=1)
