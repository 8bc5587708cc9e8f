"""Shared fixtures: the CLI binary to compare with, a small fast
configuration, and helpers to run the CLI."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# tests/cli.rs's small configuration: d = 16, short phases (about 0.3 s).
SMALL_TOML = """\
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
"""

SMALL = {
    "task": {"d": 16},
    "moe": {"restart_every": 1000},
    "phase_one": {"steps": 3000},
    "phase_two": {"steps": 300},
    "phase_three": {"steps": 4000},
    "readout": {"samples": 10000},
    "metrics": {"test_samples": 5000, "log_every": 500},
}


def _cli_path() -> pathlib.Path:
    """The `clustermoe` binary: $CLUSTERMOE_CLI, or the release build of
    this checkout (built here if missing; `cargo test --release` in CI has
    built it before)."""
    if os.environ.get("CLUSTERMOE_CLI"):
        return pathlib.Path(os.environ["CLUSTERMOE_CLI"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release" / "clustermoe"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return binary


@pytest.fixture(scope="session")
def cli_binary() -> pathlib.Path:
    return _cli_path()


@pytest.fixture
def cli(cli_binary, tmp_path):
    """Runs the CLI; returns the CompletedProcess (text)."""

    def call(*args, check=True):
        result = subprocess.run(
            [str(cli_binary), *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"clustermoe {args} failed: {result.stderr}")
        return result

    return call


@pytest.fixture
def small_toml(tmp_path) -> pathlib.Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_TOML)
    return path


def read_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cli_error(result) -> str:
    """The CLI's error message: its stderr's `error: ` line."""
    lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert lines, result.stderr
    return lines[0][len("error: "):]
