"""One writer per run directory, from Python: a directory another process
writes is refused with InUseError, nothing touched; a run whose files no
longer match its completion record is refused by load with
IncompleteRunError; sweeps on one directory are workers side by side."""

from __future__ import annotations

import subprocess
import time

import pytest

import clustermoe as cm
from conftest import SMALL, SMALL_TOML

def _long_cli_run(cli_binary, out, tmp_path):
    """Starts `clustermoe run` of LONG into `out`; returns the process once
    it holds the directory (its config.toml is written)."""
    config = tmp_path / "long.toml"
    config.write_text(SMALL_TOML.replace("steps = 4000", "steps = 400000"))
    process = subprocess.Popen(
        [str(cli_binary), "run", str(config), "-q", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (out / "config.toml").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process


def test_a_directory_another_process_writes_is_refused(cli_binary, tmp_path):
    out = tmp_path / "busy"
    process = _long_cli_run(cli_binary, out, tmp_path)
    try:
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        with pytest.raises(cm.InUseError) as e:
            cm.run(SMALL, seed=5, out=out, quiet=True)
        assert isinstance(e.value, cm.InputError) and e.value.status == 2
        assert e.value.path == out
        assert e.value.holder == process.pid
        assert str(out) in str(e.value) and "in use" in str(e.value)
        with pytest.raises(cm.InUseError):
            cm.resume(out, quiet=True)
        # load says the run is in progress, not that it is damaged.
        with pytest.raises(cm.InUseError):
            cm.load(out)
        assert "seed = 1\n" in (out / "config.toml").read_text()
        after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        assert after.get("config.toml") == before.get("config.toml")
    finally:
        process.kill()
        process.wait()
    # Killed: the lock went with the process; the directory is free again.
    assert cm.run(SMALL, seed=5, out=out, quiet=True).summary["seed"] == 5


def test_load_refuses_a_run_whose_files_do_not_match_its_record(tmp_path):
    out = tmp_path / "run"
    ran = cm.run(SMALL, seed=2, out=out, quiet=True)
    assert cm.load(out).summary == ran.summary
    metrics = (out / "metrics.jsonl").read_bytes()
    (out / "metrics.jsonl").write_bytes(metrics[: len(metrics) // 2])
    with pytest.raises(cm.IncompleteRunError) as e:
        cm.load(out)
    assert e.value.path == out and e.value.status == 2
    assert "metrics.jsonl" in e.value.reason
    # Resuming redoes it, to the original bytes.
    cm.resume(out, quiet=True)
    assert (out / "metrics.jsonl").read_bytes() == metrics
    assert cm.load(out).summary == ran.summary


def test_two_sweeps_on_one_directory_share_the_runs(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'seeds = [1, 2, 3, 4]\n[set]\n"task.d" = 12\n"phase_one.steps" = 2000\n'
        '"phase_three.steps" = 2000\n"readout.samples" = 3000\n'
        '"metrics.test_samples" = 2000\n'
    )
    out = tmp_path / "sweep"
    # A CLI sweep as the other worker, this process's sweep beside it.
    other = subprocess.Popen(
        [str(_cli()), "sweep", str(grid), "--out", str(out), "-q", "--jobs", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    mine = cm.sweep(grid, out, jobs=1, quiet=True)
    stdout, stderr = other.communicate()
    assert other.returncode == 0, stderr
    theirs = int(stdout.split(" trained")[0].rsplit(", ", 1)[1])
    assert mine["trained"] + theirs == 4, (mine, stdout)
    assert set(mine["busy"]) <= {r["id"] for r in cm.merge(out)}
    again = cm.sweep(grid, out, jobs=1, quiet=True)
    assert again["trained"] == 0 and again["skipped"] == 4 and again["busy"] == []


def _cli():
    from conftest import _cli_path

    return _cli_path()


def test_a_grid_given_as_a_dict_sweeps_as_its_file_does(cli, tmp_path):
    grid = {
        "seeds": [1, 2],
        "set": {"task.d": 12, "phase_one.steps": 1500, "phase_three.steps": 1500,
                "readout.samples": 3000, "metrics.test_samples": 2000},
        "grid": {"task.rho": [3.0, 4.0]},
    }
    text = (
        'seeds = [1, 2]\n[set]\n"task.d" = 12\n"phase_one.steps" = 1500\n'
        '"phase_three.steps" = 1500\n"readout.samples" = 3000\n'
        '"metrics.test_samples" = 2000\n[grid]\n"task.rho" = [3.0, 4.0]\n'
    )
    (tmp_path / "grid.toml").write_text(text)
    done = cm.sweep(grid, tmp_path / "py", jobs=1, quiet=True)
    assert done["planned"] == 4 and done["trained"] == 4
    cli("sweep", tmp_path / "grid.toml", "--out", tmp_path / "cli", "-q", "--jobs", "1")
    rows = cm.merge(tmp_path / "py")
    assert rows == cm.merge(tmp_path / "cli") and len(rows) == 4
    for name in ["results.csv", "results.jsonl", "sweep.json"]:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    with pytest.raises(cm.ParseError, match="argument grid"):
        cm.sweep({"grid": {"task.rho": "x"}, "sedes": [1]}, tmp_path / "bad", quiet=True)
