"""Every error class is raised with the CLI's message; bad input is a
ValueError, a failed run a RuntimeError, never a panic."""

from __future__ import annotations

import pytest

import clustermoe as cm
from clustermoe import errors
from conftest import SMALL, cli_error

INPUT = [
    errors.InvalidValueError,
    errors.UnknownFieldError,
    errors.ParseError,
    errors.UnreadableError,
    errors.CheckpointError,
]
RUN = [
    errors.DivergedError,
    errors.ReadoutError,
    errors.NonFiniteError,
    errors.FileError,
    errors.FigureError,
    errors.RunsFailedError,
]


def small(**override):
    config = {k: dict(v) for k, v in SMALL.items()}
    for section, fields in override.items():
        config.setdefault(section, {}).update(fields)
    return config


def test_the_hierarchy():
    for cls in INPUT:
        assert issubclass(cls, errors.InputError) and issubclass(cls, ValueError)
        assert issubclass(cls, cm.Error) and cls.status == 2
    for cls in RUN:
        assert issubclass(cls, errors.RunError) and issubclass(cls, RuntimeError)
        assert issubclass(cls, cm.Error) and cls.status == 1
    assert set(errors.__all__) <= set(cm.__all__)


def test_an_invalid_value_names_the_field_the_value_and_what_is_allowed(cli):
    with pytest.raises(cm.InvalidValueError) as e:
        cm.run(quiet=True, phase_one={"lr": -0.1})
    expected = cli_error(cli("run", "--set", "phase_one.lr=-0.1", check=False))
    assert str(e.value) == expected == "invalid value for `phase_one.lr`: -0.1 (a finite number > 0)"
    assert (e.value.field, e.value.value, e.value.allowed) == ("phase_one.lr", "-0.1", "a finite number > 0")
    assert e.value.status == 2
    with pytest.raises(ValueError, match=r"invalid value for `task.d`: 0"):
        cm.generate(10, task={"d": 0})


def test_an_unknown_field_names_the_closest_one(cli):
    with pytest.raises(cm.UnknownFieldError) as e:
        cm.run(quiet=True, moe={"expert": 4})
    assert str(e.value) == cli_error(cli("run", "--set", "moe.expert=4", check=False))
    assert "did you mean `moe.experts`?" in str(e.value)
    assert e.value.field == "moe.expert"
    # An unknown section, and an unknown field of a dict configuration.
    with pytest.raises(cm.UnknownFieldError, match="did you mean `task`"):
        cm.resolve(tsk={"d": 3})
    with pytest.raises(cm.UnknownFieldError, match="`task.dd`"):
        cm.resolve({"task": {"dd": 3}})


def test_unknown_keywords_and_bad_sections_get_python_words():
    with pytest.raises(cm.UnknownFieldError, match="did you mean `quiet`") as e:
        cm.run(quite=True)
    assert e.value.field == "quite"
    with pytest.raises(cm.UnknownFieldError, match="did you mean `dtype`"):
        cm.generate(3, dtpye="float32")
    with pytest.raises(cm.InvalidValueError, match="a dict of the \\[task\\] section's fields") as e:
        cm.run(task=5, quiet=True)
    assert e.value.field == "task"
    for bad in [{"d": -5}, {"d": -5.0}]:
        with pytest.raises(cm.InputError) as e:
            cm.run(task=bad, quiet=True)
        message = str(e.value)
        assert "task.d" in message and "--set" not in message, message
        for rust in ["usize", "u64", "f64", "struct"]:
            assert rust not in message, message
    with pytest.raises(cm.InvalidValueError, match="an integer from 1 to 65536"):
        cm.run(task={"d": -5}, quiet=True)


def test_a_value_of_the_wrong_type_is_a_parse_error(cli, tmp_path):
    with pytest.raises(cm.ParseError) as e:
        cm.run(quiet=True, task={"rho": "fast"})
    assert str(e.value).replace("argument", "--set", 1) == cli_error(
        cli("run", "--set", 'task.rho="fast"', check=False)
    )
    # Python's words: an argument, not a flag, and no Rust type.
    assert str(e.value).startswith("cannot parse argument task.rho=")
    assert "expected a number in `task.rho`" in str(e.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nd = 3\n")
    with pytest.raises(cm.ParseError) as e:
        cm.run(bad, quiet=True)
    assert str(e.value) == cli_error(cli("run", bad, check=False))
    assert e.value.input == str(bad)


def test_a_missing_file_is_unreadable(cli, tmp_path):
    with pytest.raises(cm.UnreadableError) as e:
        cm.run(tmp_path / "missing.toml", quiet=True)
    assert str(e.value) == cli_error(cli("run", tmp_path / "missing.toml", check=False))
    assert e.value.path == tmp_path / "missing.toml"
    with pytest.raises(cm.UnreadableError):
        cm.load(tmp_path)


def test_a_directory_without_a_run_cannot_be_resumed(cli, tmp_path):
    with pytest.raises(cm.CheckpointError) as e:
        cm.resume(tmp_path)
    assert str(e.value) == cli_error(cli("run", "--resume", tmp_path, check=False))
    assert "holds no config.toml" in str(e.value)


def test_a_diverging_run_names_the_phase_and_step(cli, tmp_path):
    sets = {"phase_three": {"activation": "1e30*h3"}, "vanilla": {"enabled": False}}
    with pytest.raises(cm.DivergedError) as e:
        cm.run(small(**sets), out=tmp_path / "py", quiet=True)
    expected = cli_error(cli(
        "run", "--out", tmp_path / "cli",
        *[a for section, fields in small(**sets).items() for k, v in fields.items()
          for a in ("--set", f"{section}.{k}={v!r}".replace("'", '"').replace("False", "false"))],
        check=False,
    ))
    assert str(e.value) == expected
    assert isinstance(e.value, RuntimeError) and e.value.status == 1
    assert (e.value.model, e.value.phase) == ("moe", "phase_three")
    # Like the CLI: the metrics up to the failure are kept, no summary.
    assert (tmp_path / "py" / "metrics.jsonl").exists()
    assert not (tmp_path / "py" / "summary.json").exists()


def test_an_unsolvable_readout():
    with pytest.raises(cm.ReadoutError, match="try a larger `readout.ridge`") as e:
        cm.run(small(readout={"ridge": 0, "samples": 10}), quiet=True)
    assert e.value.model in ("moe", "vanilla")


def test_a_non_finite_result_writes_no_summary(tmp_path):
    with pytest.raises(cm.NonFiniteError, match="not a finite number; no summary.json is written"):
        cm.run(small(metrics={"test_samples": 1}), out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r" / "summary.json").exists()


def test_an_unwritable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(cm.InvalidValueError, match="a part of its path is an existing file") as e:
        cm.run(SMALL, out=blocker / "run", quiet=True)
    assert e.value.field == "out" and e.value.value == str(blocker / "run")
    assert str(e.value).startswith("invalid value for `out`")
    with pytest.raises(cm.InvalidValueError, match="it is an existing file"):
        cm.run(SMALL, out=blocker, quiet=True)


def test_a_directory_with_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(cm.InvalidValueError, match="it holds `notes.txt`"):
        cm.run(SMALL, out=tmp_path, quiet=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_failed_runs_of_a_sweep(small_toml, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'base = "small.toml"\nseeds = [1]\n[set]\n"vanilla.enabled" = false\n'
        '[grid]\n"phase_three.activation" = ["h3", "1e30*h3"]\n'
    )
    with pytest.raises(cm.RunsFailedError) as e:
        cm.sweep(grid, tmp_path / "s", jobs=1, quiet=True)
    assert str(e.value).startswith("1 of 2 runs failed; running the sweep again retries them\n  run ")
    assert "diverged in phase_three" in str(e.value)
    assert (e.value.failed, e.value.planned) == (1, 2)
    assert e.value.report["trained"] == 1 and len(e.value.report["failed"]) == 1


def test_parameters_of_the_python_api_are_checked():
    with pytest.raises(cm.InvalidValueError, match="`n`: 0 "):
        cm.generate(0)
    with pytest.raises(cm.InvalidValueError, match="`n`: -5 "):
        cm.generate(-5)
    with pytest.raises(cm.InvalidValueError, match="`seed`: -1 "):
        cm.run(seed=-1)
    with pytest.raises(cm.InvalidValueError, match="`degree`: 31 .an integer from 0 to 30"):
        cm.link("h3", degree=31)
    with pytest.raises(cm.InvalidValueError, match="`jobs`: 0"):
        cm.sweep("grid.toml", "out", jobs=0)
    with pytest.raises(cm.InvalidValueError, match="`shard`"):
        cm.sweep("grid.toml", "out", shard="2/2")
    with pytest.raises(cm.InvalidValueError, match="`checkpoint_every`: 0"):
        cm.run(checkpoint_every=0, out="x")
    with pytest.raises(cm.InvalidValueError, match="`checkpoint_every`: 5 .None without out="):
        cm.run(checkpoint_every=5)
    with pytest.raises(cm.InvalidValueError, match="`task.d`: None"):
        cm.resolve(task={"d": None})
    with pytest.raises(cm.InvalidValueError, match="`config`: 5"):
        cm.resolve(5)
    with pytest.raises(cm.InvalidValueError, match="`dtype`"):
        cm.generate(3, dtype="int8")
    with pytest.raises(cm.InvalidValueError, match="the spec ends after `\\+`"):
        cm.link("h3+")


@pytest.mark.parametrize(
    "kind,cls,message",
    [
        ("Invalid", cm.InvalidValueError, "invalid value for `phase_one.lr`: -0.1 (a finite number > 0)"),
        ("UnknownField", cm.UnknownFieldError, "unknown field `moe.expert`; did you mean `moe.experts`?"),
        ("Parse", cm.ParseError, "cannot parse grid.toml: expected `=`"),
        ("Unreadable", cm.UnreadableError, "cannot read missing.toml: entity not found"),
        ("Checkpoint", cm.CheckpointError, "cannot resume from runs/x/checkpoint.moe: corrupted: the checksum does not match"),
        ("InUse", cm.InUseError, "runs/x is in use by another clustermoe process (pid 4242): one writer per directory; wait for it to finish, or give another directory"),
        ("Incomplete", cm.IncompleteRunError, "runs/x is not a complete run: `model.npz` has the recorded length but not its SHA-256 (a byte changed); resume it, or run it (or its sweep) again"),
        ("Io", cm.FileError, "cannot write runs/x/summary.json: permission denied"),
        ("Diverged", cm.DivergedError, "moe diverged in phase_three at step 1: a first-layer weight is not finite; try a smaller learning rate (e.g. `phase_three.lr` divided by 10)"),
        ("RunsFailed", cm.RunsFailedError, "1 of 4 runs failed; running the sweep again retries them"),
        ("Readout", cm.ReadoutError, "vanilla readout failed: the matrix is not positive definite; try a larger `readout.ridge`"),
        ("Figure", cm.FigureError, "cannot draw a figure: no font"),
        ("NonFinite", cm.NonFiniteError, "the run finished but its `vanilla.test_rel_mse` is NaN, not a finite number; no summary.json is written (the metrics are kept)"),
        ("Interrupted", KeyboardInterrupt, "stopped by signal 2 in moe phase_two after step 1442; a checkpoint was written"),
        ("SweepStopped", KeyboardInterrupt, "stopped by signal 2: 2 runs unfinished (those in progress were checkpointed); the same sweep command resumes them"),
    ],
)
def test_every_library_error_maps_to_its_class(kind, cls, message):
    """Each variant of the library's Error, built in Rust, becomes its class
    with the message and exit status the CLI gives it."""
    e = cm._native._error_example(kind)
    assert type(e) is cls
    assert str(e) == message
    if cls is not KeyboardInterrupt:
        assert e.status == (2 if issubclass(cls, cm.InputError) else 1)
