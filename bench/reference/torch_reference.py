#!/usr/bin/env python3
"""PyTorch (CPU) reference of clustermoe's default staged algorithm (docs/algorithm.md).

Written the way an ML researcher would write it in PyTorch: float32 tensors,
`torch.randn`/`torch.randint` with a `torch.Generator`, matmuls vectorised
over the batch and the neurons, one Python loop over SGD steps.

Gradients: by default the first-layer directions (phases I, III, vanilla) and
the router (phase II) get their gradients from **autograd** (`loss.backward()`
on a leaf tensor), and the spherical projection / renormalisation is done in
place under `torch.no_grad()` -- the idiomatic way. `--grad analytic` writes
the same gradients by hand instead (no autograd graph), for comparison.

Same phases, sizes, budgets, batch sizes, learning-rate schedules, losses and
activations as `clustermoe run` with the default configuration; clustermoe's
random numbers are not reproduced, and its metric logging is skipped.
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
    p.add_argument("--threads", type=int, default=2, help="intra-op threads")
    p.add_argument("--phase-one-steps", type=int, default=8000)
    p.add_argument("--phase-three-steps", type=int, default=24000)
    p.add_argument("--grad", choices=("autograd", "analytic"), default="autograd")
    return p.parse_args()


ARGS = parse_args()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)
torch.set_num_interop_threads(ARGS.threads)
torch.set_default_dtype(torch.float32)
F64 = torch.float64

# ---------------------------------------------------------------- defaults
# The values of `clustermoe defaults`.
C, RHO, ZETA = 2, 4.0, 0.1  # clusters, separation, label noise
SIGNS = torch.tensor([1.0, -1.0])  # s_c
B = 64  # batch of phases I-III and vanilla
CENTRE_SAMPLES = 4096  # phase I map, phase III routed centres, vanilla centre
LR1 = 0.003  # phase I: constant
RESTART_EVERY = 2000
MERGE_THRESHOLD = 0.5
T2, LR2 = 1000, 0.02  # phase II (router)
LR3, LR3_END, DECAY_START = 0.003, 0.0003, 0.5  # phase III and vanilla: cosine
READOUT_SAMPLES, RIDGE, BIAS_MAX, BIASES = 40_000, 1e-6, 3.0, 4
TEST_SAMPLES = 20_000

SQRT6 = math.sqrt(6.0)
AUTOGRAD = ARGS.grad == "autograd"


def h3(t):
    """Normalised probabilists' Hermite polynomial He_3 / sqrt(3!)."""
    return (t * t * t - 3.0 * t) / SQRT6


def dh3(t):
    return (3.0 * t * t - 3.0) / SQRT6


def lr_at(step, steps, lr, lr_end, decay_start):
    """clustermoe's LrSchedule::at for the cosine shape (step counted from 0)."""
    start = math.floor(decay_start * steps)
    span = steps - start
    if step < start or span <= 1.0:
        return lr
    frac = min(max((step - start) / (span - 1.0), 0.0), 1.0)
    return lr_end + 0.5 * (lr - lr_end) * (1.0 + math.cos(math.pi * frac))


# ---------------------------------------------------------------- task
class Task:
    """x = rho v_c + z, y = h3(<w*_c, x>) + s_c h3(<w*_g, x>) + zeta eps."""

    def __init__(self, d, gen):
        q, _ = torch.linalg.qr(torch.randn(d, 2 * C + 1, generator=gen, dtype=F64))
        dirs = q.T.float()
        self.d = d
        self.v = dirs[:C].contiguous()
        self.w = dirs[C : 2 * C].contiguous()
        self.wg = dirs[2 * C].contiguous()
        self.proj = dirs[C:].T.contiguous()  # d x (C+1): w*_1..w*_C, w*_g

    def sample(self, n, gen):
        c = torch.randint(0, C, (n,), generator=gen)
        x = torch.randn(n, self.d, generator=gen)
        x += RHO * self.v[c]
        p = x @ self.proj
        y = h3(p.gather(1, c[:, None]).squeeze(1)) + SIGNS[c] * h3(p[:, C])
        y += ZETA * torch.randn(n, generator=gen)
        return x, y, c


def random_directions(n, d, gen):
    w = torch.randn(n, d, generator=gen)
    return w / w.norm(dim=1, keepdim=True)


def sphere_step(w, xc, y, lr):
    """One spherical SGD step (in place) on the correlation loss -y h3(<w, xc>),
    mean over the batch, summed over neurons."""
    if AUTOGRAD:
        loss = -(y[:, None] * h3(xc @ w.T)).mean(0).sum()
        loss.backward()
        g = w.grad
    else:
        g = (-y / len(y))[:, None].mul(dh3(xc @ w.T)).T @ xc
    with torch.no_grad():
        g -= (g * w).sum(1, keepdim=True) * w  # tangent projection
        w -= lr * g
        w /= w.norm(dim=1, keepdim=True)
    w.grad = None


def leaf(t):
    return t.requires_grad_(AUTOGRAD)


@torch.no_grad()
def fit_readout(w, centre, x, y, gen):
    """Phase IV for one network: each direction repeated BIASES times with a
    bias from U[-BIAS_MAX, BIAS_MAX], ReLU features plus a constant, ridge on
    the mean squared loss: (Phi^T Phi / n + lambda I) a = Phi^T y / n (Cholesky)."""
    wr = w.detach().repeat_interleave(BIASES, dim=0)
    b = (2.0 * torch.rand(len(wr), generator=gen) - 1.0) * BIAS_MAX
    net = [wr, centre, b, torch.zeros(len(wr) + 1, dtype=F64)]
    n = len(y)
    if n == 0:
        return net
    phi = features(net, x)
    gram = phi.T @ phi / n + RIDGE * torch.eye(phi.shape[1], dtype=F64)
    rhs = phi.T @ y.double() / n
    net[3] = torch.cholesky_solve(rhs[:, None], torch.linalg.cholesky(gram)).squeeze(1)
    return net


def features(net, x):
    wr, centre, b, _ = net
    pre = torch.relu((x - centre) @ wr.T + b).double()
    return torch.cat([pre, torch.ones(len(x), 1, dtype=F64)], dim=1)


@torch.no_grad()
def predict(net, x):
    return features(net, x) @ net[3]


# ---------------------------------------------------------------- MoE
class Restarts:
    """Phase-I restarts of stuck and redundant experts (train.rs `Restarts`)."""

    RATE, FOUND_SHARE = 1.0 / 256.0, 0.1

    def __init__(self, m):
        self.corr = torch.zeros(m, dtype=F64)

    @torch.no_grad()
    def observe(self, u, xw, y):
        r = (y[:, None] * h3(xw @ u.T)).double().mean(0)
        self.corr += self.RATE * (r - self.corr)

    @torch.no_grad()
    def restart(self, u, gen):
        best = max(self.corr.max().item(), 0.0)
        if best < 0.02:
            return
        kept, redraw = [], []
        for m in torch.argsort(-self.corr, stable=True).tolist():
            found = self.corr[m].item() >= self.FOUND_SHARE * best
            redundant = bool(kept) and (u[kept] @ u[m]).abs().max().item() >= MERGE_THRESHOLD
            (kept if found and not redundant else redraw).append(m)
        for m in redraw:
            g = random_directions(1, u.shape[1], gen)[0]
            for kk in kept:  # one Gram-Schmidt pass, as train.rs does
                g -= (g @ u[kk]) * u[kk]
            norm = g.norm()
            if norm > 1e-3:
                u[m] = g / norm
                self.corr[m] = 0.0


def merge_pool(u):
    """Groups experts with |<u_m, u_k>| >= threshold; returns group per expert and leads."""
    leads, group = [], []
    for e in range(len(u)):
        o = (u[leads] @ u[e]).abs() if leads else torch.zeros(0)
        if len(o) and o.max().item() >= MERGE_THRESHOLD:
            group.append(int(o.argmax()))
        else:
            group.append(len(leads))
            leads.append(e)
    return group, leads


def allocate_by_load(total, load):
    s = load.sum().item()
    if s <= 0:
        out = torch.zeros(len(load), dtype=torch.long)
        out[0] = total
        return out.tolist()
    exact = total * load / s
    out = exact.floor().long()
    order = torch.argsort(-(exact - exact.floor()), stable=True)
    out[order[: total - int(out.sum())]] += 1
    return out.tolist()


def train_moe(task, gen, m, j, t1, t3, timer):
    d, samples = task.d, 0

    # Phase I: centre + symmetric whitening, one tied direction per expert.
    x, _, _ = task.sample(CENTRE_SAMPLES, gen)
    samples += CENTRE_SAMPLES
    x64 = x.double()
    mu = x64.mean(0)
    xc = x64 - mu
    evals, evecs = torch.linalg.eigh(xc.T @ xc / len(x))
    whiten = ((evecs / evals.clamp_min(1e-3).sqrt()) @ evecs.T).float()
    mu = mu.float()
    u = leaf(random_directions(m, d, gen))
    restarts = Restarts(m)
    for step in range(1, t1 + 1):
        x, y, _ = task.sample(B, gen)
        samples += B
        xw = (x - mu) @ whiten
        sphere_step(u, xw, y, LR1)
        restarts.observe(u.detach(), xw, y)
        if step % RESTART_EVERY == 0 and step + RESTART_EVERY <= t1:
            restarts.restart(u.detach(), gen)
    timer("phase_one")

    # Merge redundant experts (pool), then Phase II: the router ascends
    # E[sum_k softmax(Theta x)_k y h3(<u_k, W(x - mu)>)] on raw x.
    u = u.detach()
    group, leads = merge_pool(u)
    k = len(leads)
    lead_u = u[leads]
    theta = leaf(torch.zeros(k, d))
    for _ in range(T2):
        x, y, _ = task.sample(B, gen)
        samples += B
        r = y[:, None] * h3(((x - mu) @ whiten) @ lead_u.T)
        if AUTOGRAD:
            objective = (torch.softmax(x @ theta.T, dim=1) * r).sum(1).mean()
            objective.backward()
            with torch.no_grad():
                theta += LR2 * theta.grad
            theta.grad = None
        else:
            p = torch.softmax(x @ theta.T, dim=1)
            coef = p * (r - (p * r).sum(1, keepdim=True)) / B
            theta += LR2 * (coef.T @ x)
    theta = theta.detach()
    timer("phase_two")

    def route(x):  # hard top-1 gate
        return (x @ theta.T).argmax(1)

    # Routed centres and allocation of M*J neurons by load.
    x, _, _ = task.sample(CENTRE_SAMPLES, gen)
    samples += CENTRE_SAMPLES
    e = route(x)
    load = torch.bincount(e, minlength=k).double()
    sums = torch.zeros(k, d, dtype=F64).index_add_(0, e, x.double())
    centres = torch.where(load[:, None] > 0, sums / load.clamp_min(1)[:, None], mu.double()).float()
    sizes = allocate_by_load(m * j, load)
    neurons = [leaf(random_directions(n, d, gen)) for n in sizes]

    # Phase III: each expert, spherical SGD on the samples routed to it.
    for step in range(1, t3 + 1):
        x, y, _ = task.sample(B, gen)
        samples += B
        e = route(x)
        lr = lr_at(step - 1, t3, LR3, LR3_END, DECAY_START)
        for i in range(k):
            if sizes[i] == 0:
                continue
            rows = e == i
            if not rows.any():
                continue
            sphere_step(neurons[i], x[rows] - centres[i], y[rows], lr)
    timer("phase_three")

    # Phase IV: readout per expert on the samples routed to it (hard gate:
    # the joint ridge system is block diagonal).
    x, y, _ = task.sample(READOUT_SAMPLES, gen)
    samples += READOUT_SAMPLES
    e = route(x)
    experts = [fit_readout(neurons[i], centres[i], x[e == i], y[e == i], gen) for i in range(k)]
    timer("readout")

    def moe_predict(x):
        e = route(x)
        out = torch.zeros(len(x), dtype=F64)
        for i in range(k):
            rows = e == i
            if rows.any():
                out[rows] = predict(experts[i], x[rows])
        return out

    return moe_predict, samples


# ---------------------------------------------------------------- vanilla
def train_vanilla(task, gen, n_neurons, train_samples, timer):
    d, samples = task.d, 0
    x, _, _ = task.sample(CENTRE_SAMPLES, gen)
    samples += CENTRE_SAMPLES
    mu = x.double().mean(0).float()
    remaining = train_samples - CENTRE_SAMPLES
    steps = -(-remaining // B)
    last = remaining - (steps - 1) * B
    w = leaf(random_directions(n_neurons, d, gen))
    for step in range(1, steps + 1):
        x, y, _ = task.sample(B if step < steps else last, gen)
        samples += len(y)
        sphere_step(w, x - mu, y, lr_at(step - 1, steps, LR3, LR3_END, DECAY_START))
    x, y, _ = task.sample(READOUT_SAMPLES, gen)
    samples += READOUT_SAMPLES
    net = fit_readout(w, mu, x, y, gen)
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

    gens = [torch.Generator().manual_seed(1_000_003 * a.seed + i) for i in range(4)]
    task_gen, moe_gen, vanilla_gen, test_gen = gens
    task = Task(a.d, task_gen)
    train_samples = (a.phase_one_steps + T2 + a.phase_three_steps) * B + 2 * CENTRE_SAMPLES
    mark[0] = time.perf_counter()
    moe, moe_samples = train_moe(
        task, moe_gen, a.experts, a.neurons, a.phase_one_steps, a.phase_three_steps, timer
    )
    vanilla, vanilla_samples = train_vanilla(
        task, vanilla_gen, a.experts * a.neurons, train_samples, timer
    )
    assert moe_samples == vanilla_samples, (moe_samples, vanilla_samples)

    x, y, _ = task.sample(TEST_SAMPLES, test_gen)
    y64 = y.double()
    var_y = y64.var(unbiased=False)
    rel = {
        name: ((f(x) - y64).pow(2).mean() / var_y).item()
        for name, f in (("moe", moe), ("vanilla", vanilla))
    }
    print(
        json.dumps(
            {
                "impl": "torch" if AUTOGRAD else "torch-analytic",
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
