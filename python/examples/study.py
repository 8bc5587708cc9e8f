"""A small study with clustermoe from Python: the cells of a notebook.

Trains the MoE and the vanilla network on the default task (k* = 3) and on
a k* = 4 task, plots both models' learning curves from ``Run.metrics``,
then sweeps the cluster separation rho and plots test error and routing
purity against it. About a minute on 2 cores.

    pip install ./python matplotlib
    python python/examples/study.py [OUT_DIR]      # writes OUT_DIR/study.png

In Jupyter, paste the cells (``# %%``) one by one; ``plt.show()`` shows the
figures inline, and Ctrl-C / the stop button interrupts a run cleanly.
"""

# %% Set-up
import pathlib
import sys

import matplotlib

if __name__ == "__main__" and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # a script writes files; a notebook shows figures
import matplotlib.pyplot as plt
import numpy as np

import clustermoe as cm

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 and __name__ == "__main__" else "study")
out.mkdir(parents=True, exist_ok=True)

# %% Two tasks: the paper's default (h3 links, k* = 3) and k* = 4
runs = {
    "default task (k* = 3)": cm.run(seed=1),
    "k* = 4": cm.run(seed=1, task={"local_link": "h4", "global_link": "h4"}),
}
for name, res in runs.items():
    s = res.summary
    print(
        f"{name}: MoE rel. MSE {s['moe']['test_rel_mse']:.3f}, "
        f"vanilla {s['vanilla']['test_rel_mse']:.3f}, "
        f"routing purity {s['moe']['routing_purity']:.4f}, "
        f"{s['samples']['moe']:,} samples per model"
    )

# %% Learning curves: the best overlap with w*_g and w*_c (mean over clusters)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
for ax, (name, res) in zip(axes[:2], runs.items()):
    moe = res.columns("moe", "phase_three")
    one = res.columns("moe", "phase_one")
    vanilla = res.columns("vanilla", "train")
    # Phase I: the best expert per cluster (experts share one direction).
    ax.plot(one["samples"], one["expert_local_overlap"].max(axis=1).mean(axis=1),
            color="tab:blue", ls=":", label="MoE phase I: best expert, w*_c")
    ax.plot(moe["samples"], moe["local_overlap_per_cluster"].mean(axis=1),
            color="tab:blue", ls="--", label="MoE phase III: w*_c")
    ax.plot(moe["samples"], moe["global_overlap_per_cluster"].mean(axis=1),
            color="tab:blue", label="MoE phase III: w*_g")
    ax.plot(vanilla["samples"], vanilla["local_overlap_per_cluster"].mean(axis=1),
            color="tab:red", ls="--", label="vanilla: w*_c")
    ax.plot(vanilla["samples"], vanilla["global_overlap_per_cluster"].mean(axis=1),
            color="tab:red", label="vanilla: w*_g")
    ax.set(title=name, xlabel="samples", ylabel="best overlap", ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower right")

# %% A rho sweep: 5 separations x 3 seeds, run in parallel and resumable
grid = out / "rho.toml"
grid.write_text('seeds = [1, 2, 3]\n[grid]\n"task.rho" = [1.0, 2.0, 3.0, 4.0, 5.0]\n')
cm.sweep(grid, out / "sweeps" / "rho")
table = cm.columns(cm.merge(out / "sweeps" / "rho"))  # or pandas.DataFrame(rows)

ax = axes[2]
rhos = np.unique(table["config.task.rho"])
for key, label, color in [
    ("summary.moe.test_rel_mse", "MoE rel. test MSE", "tab:blue"),
    ("summary.vanilla.test_rel_mse", "vanilla rel. test MSE", "tab:red"),
    ("summary.moe.routing_purity", "MoE routing purity", "tab:green"),
    ("summary.best_linear_router_purity", "best linear router", "black"),
]:
    means = [table[key][table["config.task.rho"] == r].mean() for r in rhos]
    ax.plot(rhos, means, marker="o", color=color, label=label,
            ls=":" if key.startswith("summary.best") else "-")
ax.set(title="cluster separation (3 seeds each)", xlabel="rho", ylim=(0, 1.02))
ax.legend(fontsize=7)

fig.tight_layout()
fig.savefig(out / "study.png", dpi=120)
print(f"wrote {out / 'study.png'}")
plt.show()
