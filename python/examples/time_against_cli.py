"""Times the same run through the command line and through Python.

    python python/examples/time_against_cli.py [--repeats 5] [--cli PATH]

Interleaves, per repeat: `clustermoe run --out DIR -q` as a process (wall
time of the whole process), `clustermoe.run(out=DIR)` (wall time of the
call, files written as the CLI writes them) and `clustermoe.run()` in
memory, all the default configuration with seed 1; prints each one's median, range and the summary's
MoE error, which must agree. Default CLI: target/release/clustermoe of
this checkout.
"""

import argparse
import pathlib
import statistics
import subprocess
import tempfile
import time

import clustermoe as cm

REPO = pathlib.Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cli", default=str(REPO / "target" / "release" / "clustermoe"))
    args = p.parse_args()
    times = {"CLI (process)": [], "Python, out=": [], "Python, in memory": []}
    errors = set()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for i in range(args.repeats):
            t = time.perf_counter()
            subprocess.run([args.cli, "run", "--seed", "1", "--out", str(tmp / f"cli{i}"), "-q"],
                           check=True, stdout=subprocess.DEVNULL)
            times["CLI (process)"].append(time.perf_counter() - t)
            errors.add(cm.load(tmp / f"cli{i}").summary["moe"]["test_rel_mse"])
            t = time.perf_counter()
            res = cm.run(seed=1, out=tmp / f"py{i}", quiet=True)
            times["Python, out="].append(time.perf_counter() - t)
            errors.add(res.summary["moe"]["test_rel_mse"])
            t = time.perf_counter()
            res = cm.run(seed=1, quiet=True)
            times["Python, in memory"].append(time.perf_counter() - t)
            errors.add(res.summary["moe"]["test_rel_mse"])
    assert len(errors) == 1, f"the runs disagree: {errors}"
    base = statistics.median(times["CLI (process)"])
    print(f"{args.repeats} repeats, seed 1, MoE rel. MSE {errors.pop():.4f} in every run")
    print("| how | median wall time | range | against the CLI |")
    print("|---|---:|---:|---:|")
    for how, ts in times.items():
        m = statistics.median(ts)
        print(f"| {how} | {m:.2f} s | {min(ts):.2f}-{max(ts):.2f} s | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
