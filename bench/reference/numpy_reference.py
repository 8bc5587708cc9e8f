#!/usr/bin/env python3
"""NumPy reference of clustermoe's default staged algorithm (docs/algorithm.md).

Written the way an ML researcher would write it in NumPy: vectorised over the
batch (and over neurons), float32 wherever clustermoe uses f32, one Python loop
over SGD steps, `np.random.default_rng(seed)` for every random draw. It runs
the same phases with the same sizes, budgets, batch sizes, learning-rate
schedules, losses and activations as `clustermoe run` with the default
configuration; it does not reproduce clustermoe's random numbers, and it skips
clustermoe's metric logging (overlaps every 250 steps), which is not part of
the algorithm.

Prints one JSON line at the end (see README.md).
"""
import argparse
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=32, help="input dimension (task.d)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--experts", type=int, default=8, help="M (moe.experts)")
    p.add_argument("--neurons", type=int, default=8, help="J per expert (moe.neurons)")
    p.add_argument("--threads", type=int, default=2, help="BLAS threads")
    p.add_argument("--phase-one-steps", type=int, default=8000)
    p.add_argument("--phase-three-steps", type=int, default=24000)
    return p.parse_args()


ARGS = parse_args()
# Thread counts must be fixed before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

F32 = np.float32

# ---------------------------------------------------------------- defaults
# The values of `clustermoe defaults`.
C, RHO, ZETA = 2, 4.0, 0.1  # clusters, separation, label noise
SIGNS = np.array([1.0, -1.0], dtype=F32)  # s_c
B = 64  # batch of phases I-III and vanilla
CENTRE_SAMPLES = 4096  # phase I map, phase III routed centres, vanilla centre
LR1 = 0.003  # phase I: constant
RESTART_EVERY = 2000
MERGE_THRESHOLD = 0.5
T2, LR2 = 1000, 0.02  # phase II (router)
LR3, LR3_END, DECAY_START = 0.003, 0.0003, 0.5  # phase III and vanilla: cosine
READOUT_SAMPLES, RIDGE, BIAS_MAX, BIASES = 40_000, 1e-6, 3.0, 4
TEST_SAMPLES = 20_000

SQRT6 = float(np.sqrt(6.0))


def h3(t):
    """Normalised probabilists' Hermite polynomial He_3 / sqrt(3!)."""
    return (t * t * t - 3.0 * t) / SQRT6


def dh3(t):
    return (3.0 * t * t - 3.0) / SQRT6


def lr_at(step, steps, lr, lr_end, decay_start, cosine):
    """clustermoe's LrSchedule::at (step counted from 0)."""
    start = np.floor(decay_start * steps)
    span = steps - start
    if not cosine or step < start or span <= 1.0:
        return lr
    frac = min(max((step - start) / (span - 1.0), 0.0), 1.0)
    return lr_end + 0.5 * (lr - lr_end) * (1.0 + np.cos(np.pi * frac))


# ---------------------------------------------------------------- task
class Task:
    """x = rho v_c + z, y = h3(<w*_c, x>) + s_c h3(<w*_g, x>) + zeta eps."""

    def __init__(self, d, rng):
        q, _ = np.linalg.qr(rng.standard_normal((d, 2 * C + 1)))  # Haar-like rotation
        dirs = q.T
        self.d = d
        self.v = dirs[:C].astype(F32)
        self.w = dirs[C : 2 * C].astype(F32)
        self.wg = dirs[2 * C].astype(F32)
        self.proj = np.vstack([self.w, self.wg[None]]).T.copy()  # d x (C+1)

    def sample(self, n, rng):
        c = rng.integers(0, C, n)
        x = rng.standard_normal((n, self.d), dtype=F32)
        x += RHO * self.v[c]
        p = x @ self.proj
        y = h3(p[np.arange(n), c]) + SIGNS[c] * h3(p[:, C])
        y += ZETA * rng.standard_normal(n, dtype=F32)
        return x, y, c


def random_directions(n, d, rng):
    w = rng.standard_normal((n, d), dtype=F32)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def sphere_step(w, xc, y, lr):
    """One spherical SGD step on the correlation loss -y h3(<w, xc>), mean over the batch."""
    pre = xc @ w.T
    coef = (-y / len(y))[:, None] * dh3(pre)
    g = coef.T @ xc
    g -= np.sum(g * w, axis=1, keepdims=True) * w  # tangent projection
    w = w - F32(lr) * g
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def fit_readout(w, centre, x, y, rng):
    """Phase IV for one network: each direction repeated BIASES times with a
    bias from U[-BIAS_MAX, BIAS_MAX], ReLU features plus a constant, ridge on
    the mean squared loss: (Phi^T Phi / n + lambda I) a = Phi^T y / n."""
    wr = np.repeat(w, BIASES, axis=0)
    b = rng.uniform(-BIAS_MAX, BIAS_MAX, len(wr)).astype(F32)
    net = (wr, centre, b, None)
    if len(y) == 0:
        return (wr, centre, b, np.zeros(len(wr) + 1))
    phi = features(net, x)
    n = len(y)
    gram = phi.T @ phi / n + RIDGE * np.eye(phi.shape[1])
    a = np.linalg.solve(gram, phi.T @ y.astype(np.float64) / n)
    return (wr, centre, b, a)


def features(net, x):
    wr, centre, b, _ = net
    pre = np.maximum((x - centre) @ wr.T + b, 0.0)
    return np.hstack([pre.astype(np.float64), np.ones((len(x), 1))])


def predict(net, x):
    return features(net, x) @ net[3]


# ---------------------------------------------------------------- MoE
class Restarts:
    """Phase-I restarts of stuck and redundant experts (train.rs `Restarts`)."""

    RATE, FOUND_SHARE = 1.0 / 256.0, 0.1

    def __init__(self, m):
        self.corr = np.zeros(m)

    def observe(self, u, xw, y):
        r = np.mean(y[:, None] * h3(xw @ u.T), axis=0, dtype=np.float64)
        self.corr += self.RATE * (r - self.corr)

    def restart(self, u, rng):
        best = max(self.corr.max(), 0.0)
        if best < 0.02:
            return u
        u = u.copy()
        kept, redraw = [], []
        for m in np.argsort(-self.corr, kind="stable"):
            found = self.corr[m] >= self.FOUND_SHARE * best
            redundant = bool(kept) and np.abs(u[kept] @ u[m]).max() >= MERGE_THRESHOLD
            (kept if found and not redundant else redraw).append(m)
        for m in redraw:
            g = random_directions(1, u.shape[1], rng)[0]
            for kk in kept:  # one Gram-Schmidt pass, as train.rs does
                g -= (g @ u[kk]) * u[kk]
            norm = np.linalg.norm(g)
            if norm > 1e-3:
                u[m] = g / norm
                self.corr[m] = 0.0
        return u


def merge_pool(u):
    """Groups experts with |<u_m, u_k>| >= threshold; returns group per expert and leads."""
    leads, group = [], []
    for e in range(len(u)):
        o = np.abs(u[leads] @ u[e]) if leads else np.zeros(0)
        if len(o) and o.max() >= MERGE_THRESHOLD:
            group.append(int(np.argmax(o)))
        else:
            group.append(len(leads))
            leads.append(e)
    return group, leads


def allocate_by_load(total, load):
    s = load.sum()
    if s <= 0:
        out = np.zeros(len(load), dtype=int)
        out[0] = total
        return out
    exact = total * load / s
    out = np.floor(exact).astype(int)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    out[order[: total - out.sum()]] += 1
    return out


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_moe(task, rng, m, j, t1, t3, timer):
    d, samples = task.d, 0

    # Phase I: centre + symmetric whitening, one tied direction per expert.
    x, _, _ = task.sample(CENTRE_SAMPLES, rng)
    samples += CENTRE_SAMPLES
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=0)
    cov = np.cov(x64, rowvar=False, bias=True)
    evals, evecs = np.linalg.eigh(cov)
    whiten = ((evecs / np.sqrt(np.maximum(evals, 1e-3))) @ evecs.T).astype(F32)
    mu = mu.astype(F32)
    u = random_directions(m, d, rng)
    restarts = Restarts(m)
    for step in range(1, t1 + 1):
        x, y, _ = task.sample(B, rng)
        samples += B
        xw = (x - mu) @ whiten
        u = sphere_step(u, xw, y, LR1)
        restarts.observe(u, xw, y)
        if step % RESTART_EVERY == 0 and step + RESTART_EVERY <= t1:
            u = restarts.restart(u, rng)
    timer("phase_one")

    # Merge redundant experts (pool), then Phase II: the router ascends
    # E[sum_k softmax(Theta x)_k y h3(<u_k, W(x - mu)>)] on raw x.
    group, leads = merge_pool(u)
    k = len(leads)
    lead_u = u[leads]
    theta = np.zeros((k, d), dtype=F32)
    for _ in range(T2):
        x, y, _ = task.sample(B, rng)
        samples += B
        r = y[:, None] * h3(((x - mu) @ whiten) @ lead_u.T)
        p = softmax(x @ theta.T)
        coef = p * (r - np.sum(p * r, axis=1, keepdims=True)) / B
        theta += F32(LR2) * (coef.T @ x)
    timer("phase_two")

    def route(x):  # hard top-1 gate
        return np.argmax(x @ theta.T, axis=1)

    # Routed centres and allocation of M*J neurons by load.
    x, _, _ = task.sample(CENTRE_SAMPLES, rng)
    samples += CENTRE_SAMPLES
    e = route(x)
    load = np.bincount(e, minlength=k).astype(np.float64)
    sums = np.zeros((k, d))
    np.add.at(sums, e, x.astype(np.float64))
    centres = np.where(load[:, None] > 0, sums / np.maximum(load, 1)[:, None], mu).astype(F32)
    sizes = allocate_by_load(m * j, load)
    neurons = [random_directions(n, d, rng) for n in sizes]

    # Phase III: each expert, spherical SGD on the samples routed to it.
    for step in range(1, t3 + 1):
        x, y, _ = task.sample(B, rng)
        samples += B
        e = route(x)
        lr = lr_at(step - 1, t3, LR3, LR3_END, DECAY_START, cosine=True)
        for i in range(k):
            if sizes[i] == 0:
                continue
            rows = e == i
            if not rows.any():
                continue
            neurons[i] = sphere_step(neurons[i], x[rows] - centres[i], y[rows], lr)
    timer("phase_three")

    # Phase IV: readout per expert on the samples routed to it (hard gate:
    # the joint ridge system is block diagonal).
    x, y, _ = task.sample(READOUT_SAMPLES, rng)
    samples += READOUT_SAMPLES
    e = route(x)
    experts = [fit_readout(neurons[i], centres[i], x[e == i], y[e == i], rng) for i in range(k)]
    timer("readout")

    def moe_predict(x):
        e = route(x)
        out = np.zeros(len(x))
        for i in range(k):
            rows = e == i
            if rows.any():
                out[rows] = predict(experts[i], x[rows])
        return out

    return moe_predict, samples


# ---------------------------------------------------------------- vanilla
def train_vanilla(task, rng, n_neurons, train_samples, timer):
    d, samples = task.d, 0
    x, _, _ = task.sample(CENTRE_SAMPLES, rng)
    samples += CENTRE_SAMPLES
    mu = x.astype(np.float64).mean(axis=0).astype(F32)
    remaining = train_samples - CENTRE_SAMPLES
    steps = -(-remaining // B)
    last = remaining - (steps - 1) * B
    w = random_directions(n_neurons, d, rng)
    for step in range(1, steps + 1):
        x, y, _ = task.sample(B if step < steps else last, rng)
        samples += len(y)
        lr = lr_at(step - 1, steps, LR3, LR3_END, DECAY_START, cosine=True)
        w = sphere_step(w, x - mu, y, lr)
    x, y, _ = task.sample(READOUT_SAMPLES, rng)
    samples += READOUT_SAMPLES
    net = fit_readout(w, mu, x, y, rng)
    timer("vanilla")
    return (lambda x: predict(net, x)), samples


# ---------------------------------------------------------------- main
def main():
    a = ARGS
    start = time.perf_counter()
    phase_s = {}
    mark = [start]

    def timer(name):
        now = time.perf_counter()
        phase_s[name] = round(now - mark[0], 4)
        mark[0] = now

    task_rng, moe_rng, vanilla_rng, test_rng = np.random.default_rng(a.seed).spawn(4)
    task = Task(a.d, task_rng)
    train_samples = (a.phase_one_steps + T2 + a.phase_three_steps) * B + 2 * CENTRE_SAMPLES
    mark[0] = time.perf_counter()
    moe, moe_samples = train_moe(
        task, moe_rng, a.experts, a.neurons, a.phase_one_steps, a.phase_three_steps, timer
    )
    vanilla, vanilla_samples = train_vanilla(
        task, vanilla_rng, a.experts * a.neurons, train_samples, timer
    )
    assert moe_samples == vanilla_samples, (moe_samples, vanilla_samples)

    x, y, _ = task.sample(TEST_SAMPLES, test_rng)
    y64 = y.astype(np.float64)
    var_y = y64.var()
    rel = {
        name: float(np.mean((f(x) - y64) ** 2) / var_y)
        for name, f in (("moe", moe), ("vanilla", vanilla))
    }
    print(
        json.dumps(
            {
                "impl": "numpy",
                "d": a.d,
                "threads": a.threads,
                "wall_s": round(time.perf_counter() - start, 4),
                "phase_s": phase_s,
                "moe_rel_mse": rel["moe"],
                "vanilla_rel_mse": rel["vanilla"],
                "samples_per_model": int(moe_samples),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
