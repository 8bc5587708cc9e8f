"""Ctrl-C (SIGINT) stops a run within seconds with KeyboardInterrupt; with
a run directory both models checkpoint first and resume() finishes the run
that was never interrupted. Long calls release the GIL."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import clustermoe as cm
from conftest import SMALL, read_json

# Minutes of phase III: a SIGINT always lands inside the run.
LONG = {**SMALL, "phase_three": {"steps": 5_000_000}}


@pytest.fixture(autouse=True)
def sigint_raises_keyboard_interrupt():
    """Python's own SIGINT handler, as in a terminal or a notebook, also
    where the tests were started with SIGINT ignored (in the background)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_when(ready, done: threading.Event, timeout: float = 60.0) -> threading.Thread:
    """Sends SIGINT to this process once `ready()` holds, unless the call
    under test has returned (`done`)."""

    def watch():
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done.is_set():
            if ready():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def timed_interrupt(call, ready):
    done = threading.Event()
    sent = {}

    def ready_and_stamp():
        if ready():
            sent["at"] = time.monotonic()
            return True
        return False

    interrupt_when(ready_and_stamp, done)
    try:
        with pytest.raises(KeyboardInterrupt) as e:
            call()
    finally:
        done.set()
    return e.value, time.monotonic() - sent["at"]


def test_ctrl_c_stops_a_run_in_memory_within_seconds():
    start = time.monotonic()
    e, after = timed_interrupt(
        lambda: cm.run(LONG, quiet=True), lambda: time.monotonic() - start > 0.5
    )
    assert after < 5, f"the run went on for {after:.1f} s after SIGINT"
    assert str(e).startswith("stopped by signal 2 in ")
    assert "nothing was kept (give out= to keep a checkpoint)" in str(e)


def test_ctrl_c_checkpoints_a_run_directory_and_resume_finishes_it(tmp_path):
    config = {**SMALL, "phase_three": {"steps": 60_000}}
    out = tmp_path / "run"
    e, after = timed_interrupt(
        lambda: cm.run(config, seed=2, out=out, checkpoint_every=500, quiet=True),
        lambda: (out / "checkpoint.moe").exists() and (out / "checkpoint.vanilla").exists(),
    )
    assert after < 5, f"the run went on for {after:.1f} s after SIGINT"
    assert "a checkpoint was written" in str(e)
    assert f"continue with clustermoe.resume(\"{out}\")" in str(e)
    assert not (out / "summary.json").exists()
    resumed = cm.resume(out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == [
        ".clustermoe.lock", "complete.json", "config.toml", "metrics.jsonl", "model.npz", "summary.json"
    ]
    whole = cm.run(config, seed=2, out=tmp_path / "whole", quiet=True)
    assert resumed.summary == whole.summary
    for name in ["summary.json", "metrics.jsonl", "model.npz"]:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # A complete directory is read back as it is.
    assert cm.resume(out, quiet=True).summary == read_json(out / "summary.json")


def test_ctrl_c_stops_a_sweep(tmp_path):
    (tmp_path / "long.toml").write_text(
        "[task]\nd = 16\n[phase_three]\nsteps = 5000000\n"
    )
    grid = tmp_path / "grid.toml"
    grid.write_text('base = "long.toml"\nseeds = [1, 2, 3]\n')
    start = time.monotonic()
    e, after = timed_interrupt(
        lambda: cm.sweep(grid, tmp_path / "s", jobs=1, quiet=True),
        lambda: time.monotonic() - start > 1.0,
    )
    assert after < 10, f"the sweep went on for {after:.1f} s after SIGINT"
    assert str(e).startswith("stopped by signal 2: 3 runs unfinished")


def test_a_run_releases_the_gil():
    ticks = 0
    running = threading.Event()
    stop = threading.Event()

    def count():
        nonlocal ticks
        running.set()
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    running.wait()
    try:
        before = ticks
        started = time.monotonic()
        cm.run(SMALL, quiet=True)
        elapsed = time.monotonic() - started
        during = ticks - before
    finally:
        stop.set()
        t.join()
    # A thread that never got the GIL would not have counted at all.
    assert during > 1000 * elapsed, (during, elapsed)


def test_progress_on_a_pipe_is_one_line_per_phase(capfd):
    cm.run(SMALL, seed=1)
    err = capfd.readouterr().err.splitlines()
    assert err[0].startswith("budget: ")
    for line in ["moe: phase_one (3000 steps)", "moe: phase_two (300 steps)",
                 "moe: phase_three (4000 steps)", "vanilla: train ("]:
        assert any(l.startswith(line) for l in err), (line, err)
    cm.run(SMALL, seed=1, quiet=True)
    assert capfd.readouterr().err == ""


def test_progress_on_a_terminal_is_a_line_redrawn_in_place():
    import io

    from clustermoe import _progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = _progress.RunProgress(stream)
    bar.update([("moe", "phase_one", 4000, 8000), ("vanilla", "train", 10, 35064)], [])
    text = stream.getvalue()
    assert text.startswith("\rmoe phase_one [=========>          ] 4000/8000  vanilla train [")
    bar.close()
    assert stream.getvalue().endswith("\r")


def test_ctrl_c_stops_a_reproduction(tmp_path):
    start = time.monotonic()
    e, after = timed_interrupt(
        lambda: cm.reproduce(tmp_path / "r", quick=True, jobs=2, quiet=True),
        lambda: time.monotonic() - start > 1.0,
    )
    assert after < 10, f"the reproduction went on for {after:.1f} s after SIGINT"
    assert str(e).startswith("stopped by signal 2: ")
    assert "the same sweep command resumes them" in str(e)
    assert not (tmp_path / "r" / "claims.json").exists()
