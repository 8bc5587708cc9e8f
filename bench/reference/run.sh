#!/usr/bin/env bash
# Times clustermoe against the NumPy, PyTorch and JAX references on this
# machine, same thread count, same configuration. See README.md.
#
#   bench/reference/run.sh [--d D] [--threads N] [--repeats R] [--seed S]
#                          [--skip-torch] [--torch-analytic] [--skip-jax] [--bin PATH]
#
# --bin PATH uses an existing clustermoe binary instead of `cargo build --release`
# (the build honours CARGO_TARGET_DIR).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
D=32
THREADS=2
REPEATS=3
SEED=1
SKIP_TORCH=0
TORCH_ANALYTIC=0
SKIP_JAX=0
BIN=""

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --d) D="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --repeats) REPEATS="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --skip-torch) SKIP_TORCH=1; shift ;;
        --torch-analytic) TORCH_ANALYTIC=1; shift ;;
        --skip-jax) SKIP_JAX=1; shift ;;
        --bin) BIN="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- environment
VENV="$HERE/.venv"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "== creating $VENV" >&2
    python3 -m venv "$VENV"
fi
if ! "$PY" -c "import numpy, threadpoolctl" 2>/dev/null; then
    echo "== pip install numpy threadpoolctl" >&2
    "$PY" -m pip install -q numpy threadpoolctl
fi
if [ "$SKIP_TORCH" = 0 ] && ! "$PY" -c "import torch" 2>/dev/null; then
    # PyPI's only Linux x86_64 torch wheel is the CUDA build: `import torch`
    # needs the nvidia-* libraries it links against (libtorch_cpu alone needs
    # libcudart and libcupti), so `--no-deps` does not work. The full install
    # is ~5.4 GB and takes a minute or two here; CUDA is simply unused on CPU.
    echo "== pip install torch (CUDA wheel from PyPI, used on CPU; ~5 GB)" >&2
    "$PY" -m pip install -q torch
fi
if [ "$SKIP_JAX" = 0 ] && ! "$PY" -c "import jax" 2>/dev/null; then
    echo "== pip install jax[cpu]" >&2
    "$PY" -m pip install -q "jax[cpu]"
fi

if [ -z "$BIN" ]; then
    echo "== cargo build --release" >&2
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/clustermoe"
fi
[ -x "$BIN" ] || { echo "run.sh: no clustermoe binary at $BIN" >&2; exit 1; }

# ---------------------------------------------------------------- runs
OUT="$HERE/results"
mkdir -p "$OUT"
RUNS="$OUT/runs.jsonl"
: > "$RUNS"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }

# One line per run: {"impl", "rep", "process_s", "result": <the impl's JSON or summary>}
record() { # impl rep start end result-json
    "$PY" -c 'import json,sys; print(json.dumps({"impl": sys.argv[1], "rep": int(sys.argv[2]),
        "process_s": float(sys.argv[4]) - float(sys.argv[3]), "result": json.loads(sys.argv[5])}))' \
        "$@" >> "$RUNS"
}

run_clustermoe() { # rep
    local dir="$OUT/clustermoe-run"
    rm -rf "$dir"
    local t0 t1
    t0=$(now)
    RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" \
        "$BIN" run -q --seed "$SEED" --out "$dir" --set "task.d=$D" >/dev/null
    t1=$(now)
    local summary
    summary=$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))
print(json.dumps({"moe_rel_mse": s["moe"]["test_rel_mse"],
    "vanilla_rel_mse": s["vanilla"]["test_rel_mse"], "samples_per_model": s["samples"]["moe"]}))' \
        "$dir/summary.json")
    record clustermoe "$1" "$t0" "$t1" "$summary"
}

run_script() { # impl rep script args...
    local impl="$1" rep="$2" script="$3"
    shift 3
    local t0 t1 line
    t0=$(now)
    line=$("$PY" "$HERE/$script" --d "$D" --threads "$THREADS" --seed "$SEED" "$@" | tail -n 1)
    t1=$(now)
    record "$impl" "$rep" "$t0" "$t1" "$line"
}

# Implementations interleaved within each repeat, so that a change in the
# machine's load hits all of them alike.
for rep in $(seq 1 "$REPEATS"); do
    echo "== repeat $rep/$REPEATS: clustermoe" >&2
    run_clustermoe "$rep"
    echo "== repeat $rep/$REPEATS: numpy" >&2
    run_script numpy "$rep" numpy_reference.py
    if [ "$SKIP_TORCH" = 0 ]; then
        echo "== repeat $rep/$REPEATS: torch" >&2
        run_script torch "$rep" torch_reference.py
        if [ "$TORCH_ANALYTIC" = 1 ]; then
            echo "== repeat $rep/$REPEATS: torch (analytic gradients)" >&2
            run_script torch-analytic "$rep" torch_reference.py --grad analytic
        fi
    fi
    if [ "$SKIP_JAX" = 0 ]; then
        echo "== repeat $rep/$REPEATS: jax" >&2
        run_script jax "$rep" jax_reference.py
    fi
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- summary
"$PY" - "$RUNS" "$HERE/results.json" "$D" "$THREADS" "$REPEATS" "$SEED" "$LOAD_BEFORE" "$LOAD_AFTER" <<'EOF'
import json, os, platform, statistics, sys

runs_path, out_path, d, threads, repeats, seed, load_before, load_after = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
impls = list(dict.fromkeys(r["impl"] for r in runs))
med = statistics.median
summary = {}
for impl in impls:
    rs = [r for r in runs if r["impl"] == impl]
    res = [r["result"] for r in rs]
    s = {
        "runs": len(rs),
        "wall_s": med(r["process_s"] for r in rs),  # whole process, as timed here
        "moe_rel_mse": med(x["moe_rel_mse"] for x in res),
        "vanilla_rel_mse": med(x["vanilla_rel_mse"] for x in res),
        "samples_per_model": res[0]["samples_per_model"],
        "all_wall_s": [round(r["process_s"], 3) for r in rs],
    }
    if "wall_s" in res[0]:  # the script's own timer: no interpreter start-up or imports
        s["in_script_wall_s"] = med(x["wall_s"] for x in res)
        s["phase_s"] = {k: med(x["phase_s"][k] for x in res) for k in res[0]["phase_s"]}
    if "run_s" in res[0]:  # JAX: ahead-of-time compilation timed apart from the run
        s["compile_s"] = med(x["compile_s"] for x in res)
        s["run_s"] = med(x["run_s"] for x in res)
        s["all_compile_s"] = [x["compile_s"] for x in res]
        s["all_run_s"] = [x["run_s"] for x in res]
    summary[impl] = s
base = summary["clustermoe"]["wall_s"]
for s in summary.values():
    s["ratio_to_clustermoe"] = s["wall_s"] / base
    if "run_s" in s:
        s["run_ratio_to_clustermoe"] = s["run_s"] / base

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
versions = {"python": platform.python_version()}
for mod in ("numpy", "torch", "jax", "jaxlib"):
    try:
        versions[mod] = __import__(mod).__version__
    except ImportError:
        pass
result = {
    "config": {"d": int(d), "threads": int(threads), "repeats": int(repeats), "seed": int(seed)},
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "loadavg_before": load_before,
                "loadavg_after": load_after},
    "versions": versions,
    "summary": summary,
    "runs": runs,
}
with open(out_path, "w") as f:
    json.dump(result, f, indent=2)

print(f"\nd={d}, threads={threads}, seed={seed}, median of {repeats} runs; "
      f"load average before/after: {load_before} / {load_after}")
print(f"{'implementation':<22}{'wall s':>9}{'in-script s':>13}{'MoE rel.MSE':>13}"
      f"{'vanilla rel.MSE':>17}{'x clustermoe':>14}")

def row(name, wall, ins, s, ratio):
    print(f"{name:<22}{wall:>9}{ins:>13}{s['moe_rel_mse']:>13.4f}"
          f"{s['vanilla_rel_mse']:>17.4f}{ratio:>14.2f}")

for impl, s in summary.items():
    ins = f"{s['in_script_wall_s']:.2f}" if "in_script_wall_s" in s else "-"
    if "run_s" in s:  # once compiled (the run after AOT compilation), then the whole process
        row(f"{impl} (compiled)", "-", f"{s['run_s']:.2f}", s, s["run_ratio_to_clustermoe"])
        impl = f"{impl} (with compile)"
    row(impl, f"{s['wall_s']:.2f}", ins, s, s["ratio_to_clustermoe"])
for impl, s in summary.items():
    if "compile_s" in s:
        print(f"{impl}: compilation {s['compile_s']:.2f} s (median; in the 'with compile' "
              f"times, not in 'compiled', whose x clustermoe is run time / clustermoe wall)")
print(f"\nwrote {out_path}")
EOF
