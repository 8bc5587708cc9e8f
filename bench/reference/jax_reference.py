#!/usr/bin/env python3
"""JAX reference of clustermoe's default staged algorithm (docs/algorithm.md).

Written the way a JAX researcher would write it: float32 (float64 only in the
readout, as numpy_reference.py), pure functions of
(parameters, PRNG key), every phase one `jax.jit`-compiled function whose SGD
loop is a `jax.lax.scan` (phase I: a scan over blocks of 2,000 steps with the
restart logic between blocks under `lax.cond`), random batches drawn 250 at a
time (one `jax.random` key split off per block of 250 batches). Shapes are
static: the MoE is padded to M experts (masked logits for experts pooled away
in the merge, per-neuron owner indices for phase III's load-based allocation),
so each phase compiles once per (d, M, J, step counts), whatever the seed.

All phases are compiled ahead of time (`jit(...).lower(...).compile()`) before
anything runs, so the script reports compilation (`compile_s`) and the
compiled run (`run_s`, and `phase_s` per phase) separately; `wall_s` counts
both. Same phases, sizes, budgets, batch sizes, learning-rate schedules,
losses and activations as `clustermoe run` with the default configuration, the
same number of samples per model; it does not reproduce clustermoe's random
numbers, and skips clustermoe's metric logging, as numpy_reference.py does.

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
    p.add_argument("--threads", type=int, default=2, help="XLA CPU threads (CPU affinity)")
    p.add_argument("--phase-one-steps", type=int, default=8000)
    p.add_argument("--phase-three-steps", type=int, default=24000)
    return p.parse_args()


ARGS = parse_args()


def _set_threads(n):
    """XLA:CPU sizes its intra-op thread pool (and Eigen's) from the CPUs this
    process may run on, so --threads N pins the process to N CPUs before jax
    loads; for N=1 Eigen's multithreading is switched off as well."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    cpus = sorted(os.sched_getaffinity(0))
    if n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1:
        flags += " --xla_cpu_multi_thread_eigen=false"
    os.environ["XLA_FLAGS"] = flags.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


_set_threads(ARGS.threads)

import json  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

# float64 is needed for the readout alone (features, normal equations,
# Cholesky, test predictions), as numpy_reference.py has it: with ridge 1e-6
# the float32 Gram matrix is not numerically positive definite and the float32
# Cholesky returns NaN (tried: NaN test error on seeds 1-3). Every other array
# is created float32 / int32 explicitly (Python scalars stay weakly typed).
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from jax.scipy.linalg import cho_factor, cho_solve  # noqa: E402

F32, I32 = jnp.float32, jnp.int32
RD = jnp.float64  # the readout's dtype

# ---------------------------------------------------------------- defaults
# The values of `clustermoe defaults` (as numpy_reference.py).
C, RHO, ZETA = 2, 4.0, 0.1  # clusters, separation, label noise
SIGNS = (1.0, -1.0)  # s_c
B = 64  # batch of phases I-III and vanilla
CENTRE_SAMPLES = 4096  # phase I map, phase III routed centres, vanilla centre
LR1 = 0.003  # phase I: constant
RESTART_EVERY = 2000
RATE, FOUND_SHARE = 1.0 / 256.0, 0.1  # phase-I restarts
MERGE_THRESHOLD = 0.5
T2, LR2 = 1000, 0.02  # phase II (router)
LR3, LR3_END, DECAY_START = 0.003, 0.0003, 0.5  # phase III and vanilla: cosine
READOUT_SAMPLES, RIDGE, BIAS_MAX, BIASES = 40_000, 1e-6, 3.0, 4
TEST_SAMPLES = 20_000
CHUNK = 250  # batches drawn per random block

SQRT6 = float(np.sqrt(6.0))


def h3(t):
    """Normalised probabilists' Hermite polynomial He_3 / sqrt(3!)."""
    return (t * t * t - 3.0 * t) / SQRT6


def dh3(t):
    return (3.0 * t * t - 3.0) / SQRT6


def lr_at(step, steps, lr, lr_end, decay_start):
    """clustermoe's LrSchedule::at with cosine decay (step counted from 0, traced)."""
    start = float(np.floor(decay_start * steps))
    span = steps - start
    if span <= 1.0:
        return jnp.asarray(lr, F32)
    step = step.astype(F32)
    frac = jnp.clip((step - start) / (span - 1.0), 0.0, 1.0)
    cos = lr_end + 0.5 * (lr - lr_end) * (1.0 + jnp.cos(jnp.pi * frac))
    return jnp.where(step < start, jnp.asarray(lr, F32), cos).astype(F32)


# ---------------------------------------------------------------- task
def make_task(seed, d):
    """Orthonormal v_1..v_C, w*_1..w*_C, w*_g (QR of a Gaussian d x (2C+1)), and
    the keys of every phase (task / MoE / vanilla / test streams)."""
    ktask, kmoe, kvan, ktest = jax.random.split(jax.random.key(seed), 4)
    q, _ = jnp.linalg.qr(jax.random.normal(ktask, (d, 2 * C + 1), F32))
    task = {"v": q[:, :C].T, "proj": q[:, C:]}  # proj: d x (C+1): w*_1..w*_C, w*_g
    names = ("phase_one", "phase_two", "phase_three", "readout")
    keys = dict(zip(names, jax.random.split(kmoe, 4)))
    keys["vanilla"], keys["vanilla_readout"] = jax.random.split(kvan)
    keys["test"] = ktest
    return task, keys


def sample(task, key, shape):
    """x = rho v_c + z, y = h3(<w*_c, x>) + s_c h3(<w*_g, x>) + zeta eps; any batch shape."""
    d = task["v"].shape[1]
    kc, kx, ke = jax.random.split(key, 3)
    c = jax.random.randint(kc, shape, 0, C, I32)
    x = jax.random.normal(kx, shape + (d,), F32) + RHO * task["v"][c]
    p = x @ task["proj"]
    pc = jnp.take_along_axis(p, c[..., None], axis=-1)[..., 0]
    eps = jax.random.normal(ke, shape, F32)
    y = h3(pc) + jnp.asarray(SIGNS, F32)[c] * h3(p[..., C]) + ZETA * eps
    return x, y


def random_directions(key, n, d):
    w = jax.random.normal(key, (n, d), F32)
    return w / jnp.linalg.norm(w, axis=1, keepdims=True)


def sphere_step(w, xc, coef_scale, lr):
    """One spherical SGD step on the correlation loss -y h3(<w, xc>).

    coef_scale (batch x neurons or batch x 1) is -y / n_routed, zero for the
    samples a neuron does not see."""
    coef = coef_scale * dh3(xc @ w.T)
    g = coef.T @ xc
    g = g - jnp.sum(g * w, axis=1, keepdims=True) * w  # tangent projection
    w = w - lr * g
    return w / jnp.linalg.norm(w, axis=1, keepdims=True)


def scan_batches(step, carry, task, key, n_steps, t0=0):
    """Runs `carry = step(carry, t, x, y)` for t = t0 .. t0+n_steps-1 on fresh
    batches of B, drawn CHUNK batches at a time (one key per chunk). When CHUNK
    does not divide n_steps, the last chunk is padded with steps that leave the
    carry unchanged (one loop body to compile instead of two)."""
    nchunks = -(-n_steps // CHUNK)
    padded = nchunks * CHUNK != n_steps
    end = t0 + n_steps

    def body(carry, xs):
        t, xb, yb = xs
        new = step(carry, t, xb, yb)
        if padded:
            new = jax.tree.map(lambda n, o: jnp.where(t < end, n, o), new, carry)
        return new, None

    def chunk(carry, xs):
        k, start = xs
        x, y = sample(task, k, (CHUNK, B))
        carry, _ = lax.scan(body, carry, (start + jnp.arange(CHUNK, dtype=I32), x, y))
        return carry, None

    starts = t0 + CHUNK * jnp.arange(nchunks, dtype=I32)
    carry, _ = lax.scan(chunk, carry, (jax.random.split(key, nchunks), starts))
    return carry


# ---------------------------------------------------------------- MoE
def restart(u, corr, key):
    """Phase-I restarts of stuck and redundant experts (train.rs `Restarts`):
    experts in decreasing running correlation are kept when found (>= 0.1 x
    best) and not redundant (|<u_m, u_k>| < 0.5 with every kept one); the
    others are redrawn orthogonally to the kept ones (one Gram-Schmidt pass in
    the kept order). M is static: the loops unroll."""
    m_experts, _ = u.shape
    best = jnp.maximum(corr.max(), 0.0)
    order = jnp.argsort(-corr, stable=True)
    kept = jnp.zeros(m_experts, bool)
    kept_pos = []  # kept flag per position in `order`
    for i in range(m_experts):
        m = order[i]
        found = corr[m] >= FOUND_SHARE * best
        redundant = jnp.any(kept & (jnp.abs(u @ u[m]) >= MERGE_THRESHOLD))
        keep = found & ~redundant
        kept = kept.at[m].set(keep)
        kept_pos.append(keep)
    g = random_directions(key, m_experts, u.shape[1])  # candidate for each expert
    for i in range(m_experts):  # Gram-Schmidt against the kept, in the kept order
        uk = u[order[i]]
        g = g - jnp.where(kept_pos[i], g @ uk, 0.0)[:, None] * uk
    norm = jnp.linalg.norm(g, axis=1)
    redraw = ~kept & (norm > 1e-3)
    new_u = jnp.where(redraw[:, None], g / jnp.maximum(norm, 1e-30)[:, None], u)
    new_corr = jnp.where(redraw, 0.0, corr).astype(F32)
    active = best >= 0.02
    return jnp.where(active, new_u, u), jnp.where(active, new_corr, corr)


def phase_one(task, key, *, m, t1):
    """Centre + symmetric whitening from CENTRE_SAMPLES samples; M tied
    directions, t1 spherical SGD steps with restarts every RESTART_EVERY steps."""
    d = task["v"].shape[1]
    kmap, kinit, kfull, krem = jax.random.split(key, 4)
    x, _ = sample(task, kmap, (CENTRE_SAMPLES,))
    mu = x.mean(axis=0)
    xc = x - mu
    cov = xc.T @ xc / CENTRE_SAMPLES
    evals, evecs = jnp.linalg.eigh(cov)
    whiten = (evecs / jnp.sqrt(jnp.maximum(evals, 1e-3))) @ evecs.T
    u = random_directions(kinit, m, d)
    corr = jnp.zeros(m, F32)

    def step(carry, t, x, y):
        u, corr = carry
        xw = (x - mu) @ whiten
        u = sphere_step(u, xw, (-y / B)[:, None], LR1)
        r = jnp.mean(y[:, None] * h3(xw @ u.T), axis=0)
        return u, corr + RATE * (r - corr)

    nfull, rem = divmod(t1, RESTART_EVERY)
    # Restart after block b (steps b*2000) when another full block follows.
    flags = jnp.asarray([(b + 2) * RESTART_EVERY <= t1 for b in range(nfull)], bool)

    def block(carry, xs):
        k, do_restart, b = xs
        ksteps, kre = jax.random.split(k)
        carry = scan_batches(step, carry, task, ksteps, RESTART_EVERY, b * RESTART_EVERY)
        carry = lax.cond(do_restart, lambda c: restart(*c, kre), lambda c: c, carry)
        return carry, None

    carry = (u, corr)
    if nfull:
        blocks = (jax.random.split(kfull, nfull), flags, jnp.arange(nfull, dtype=I32))
        carry, _ = lax.scan(block, carry, blocks)
    if rem:
        carry = scan_batches(step, carry, task, krem, rem, nfull * RESTART_EVERY)
    return mu, whiten, carry[0]


def merge_pool(u):
    """Leads of the greedy pool (|<u_m, u_k>| >= threshold joins an earlier lead)."""
    leads = jnp.zeros(u.shape[0], bool)
    for e in range(u.shape[0]):
        pooled = jnp.any(leads & (jnp.abs(u @ u[e]) >= MERGE_THRESHOLD))
        leads = leads.at[e].set(~pooled)
    return leads


def logits(theta, active, x):
    return jnp.where(active, x @ theta.T, -jnp.inf)


def route(theta, active, x):
    """Hard top-1 gate over the active experts."""
    return jnp.argmax(logits(theta, active, x), axis=-1).astype(I32)


def phase_two(task, key, mu, whiten, u):
    """Merge, then the router Theta (padded to M rows; pooled-away experts
    masked) ascends E[sum_k softmax(Theta x)_k y h3(<u_k, W(x - mu)>)] on raw x."""
    active = merge_pool(u)
    lead_u = jnp.where(active[:, None], u, 0.0)
    theta = jnp.zeros(u.shape, F32)

    def step(theta, t, x, y):
        r = y[:, None] * h3(((x - mu) @ whiten) @ lead_u.T)
        p = jax.nn.softmax(logits(theta, active, x), axis=1)
        coef = p * (r - jnp.sum(p * r, axis=1, keepdims=True)) / B
        return theta + LR2 * (coef.T @ x)

    return scan_batches(step, theta, task, key, T2), active


def allocate_by_load(total, load):
    """total neurons shared by load, largest remainders (ties: lower index)."""
    s = load.sum()
    exact = total * load / jnp.maximum(s, 1.0)
    base = jnp.floor(exact).astype(I32)
    left = total - base.sum()
    order = jnp.argsort(-(exact - jnp.floor(exact)), stable=True)
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(len(load), dtype=I32))
    sizes = base + (rank < left).astype(I32)
    none = jnp.zeros_like(sizes).at[0].set(total)
    return jnp.where(s > 0, sizes, none)


def phase_three(task, key, mu, theta, active, *, m, j, t3):
    """Routed centres and load from CENTRE_SAMPLES fresh samples, M*J neurons
    shared by load (neuron n belongs to expert owner[n]); t3 steps where each
    expert's neurons step on the samples routed to it, centred at its centre."""
    d = task["v"].shape[1]
    kc, kinit, ksteps = jax.random.split(key, 3)
    x, _ = sample(task, kc, (CENTRE_SAMPLES,))
    e = route(theta, active, x)
    onehot = jax.nn.one_hot(e, m, dtype=F32)
    load = onehot.sum(axis=0)
    centres = jnp.where(load[:, None] > 0, (onehot.T @ x) / jnp.maximum(load, 1.0)[:, None], mu)
    sizes = allocate_by_load(m * j, load)
    owner = jnp.repeat(jnp.arange(m, dtype=I32), sizes, total_repeat_length=m * j)
    w = random_directions(kinit, m * j, d)
    cn = centres[owner]  # each neuron's centre

    def step(w, t, x, y):
        e = route(theta, active, x)
        mine = (e[:, None] == owner[None, :]).astype(F32)  # B x MJ: neuron sees sample
        count = jnp.sum(mine, axis=0)  # samples routed to the neuron's expert
        scale = -y[:, None] * mine / jnp.maximum(count, 1.0)
        # <w_n, x - c_n> and the gradient sum_i coef_in (x_i - c_n), without a B x MJ x d tensor
        pre = x @ w.T - jnp.sum(cn * w, axis=1)
        coef = scale * dh3(pre)
        g = coef.T @ x - jnp.sum(coef, axis=0)[:, None] * cn
        g = g - jnp.sum(g * w, axis=1, keepdims=True) * w
        w2 = w - lr_at(t, t3, LR3, LR3_END, DECAY_START) * g
        w2 = w2 / jnp.linalg.norm(w2, axis=1, keepdims=True)
        return jnp.where((count > 0)[:, None], w2, w)  # experts with no routed sample skip

    w = scan_batches(step, w, task, ksteps, t3)
    return w, owner, centres


def readout_features(wr, cr, b, owner_r, e, n_experts, x):
    """ReLU features of every (neuron, bias) plus one constant per expert; a
    sample has non-zero features only in its routed expert's columns, so the
    normal equations below are block diagonal: clustermoe's per-expert ridge."""
    pre = jnp.maximum(x @ wr.T - jnp.sum(cr * wr, axis=1) + b, 0.0).astype(RD)
    pre = pre * (e[:, None] == owner_r[None, :])
    return jnp.concatenate([pre, jax.nn.one_hot(e, n_experts, dtype=RD)], axis=1)


def fit_readout(key, w, owner, centres, e, n_experts, x, y):
    """Phase IV: each direction repeated BIASES times with a bias from
    U[-BIAS_MAX, BIAS_MAX], ridge per expert on its routed samples:
    (Phi^T Phi / n_e + lambda I) a = Phi^T y / n_e (Cholesky)."""
    wr = jnp.repeat(w, BIASES, axis=0)
    owner_r = jnp.repeat(owner, BIASES)
    cr = centres[owner_r]
    b = jax.random.uniform(key, (len(wr),), F32, -BIAS_MAX, BIAS_MAX)
    phi = readout_features(wr, cr, b, owner_r, e, n_experts, x)
    count = jnp.zeros(n_experts, RD).at[e].add(1.0)
    rw = 1.0 / count[e]  # 1 / n_e for each sample
    gram = phi.T @ (phi * rw[:, None]) + RIDGE * jnp.eye(phi.shape[1], dtype=RD)
    a = cho_solve(cho_factor(gram), phi.T @ (y.astype(RD) * rw))
    return {"wr": wr, "cr": cr, "b": b, "owner_r": owner_r, "a": a}


def readout(task, key, w, owner, centres, theta, active):
    """Phase IV of either network on READOUT_SAMPLES fresh samples routed top-1
    (the vanilla network: one active expert owning every neuron). One compiled
    function serves both."""
    kx, kb = jax.random.split(key)
    x, y = sample(task, kx, (READOUT_SAMPLES,))
    e = route(theta, active, x)
    net = fit_readout(kb, w, owner, centres, e, len(centres), x, y)
    return {**net, "theta": theta, "active": active}


def predict(net, x):
    e = route(net["theta"], net["active"], x)
    m = len(net["active"])
    return readout_features(net["wr"], net["cr"], net["b"], net["owner_r"], e, m, x) @ net["a"]


# ---------------------------------------------------------------- vanilla
def vanilla(task, key, *, n_neurons, train_samples):
    """Global centre (no whitening), n_neurons untied neurons, spherical SGD on
    all samples for the MoE's training budget (cosine schedule). The readout
    follows (`readout`, as one expert)."""
    d = task["v"].shape[1]
    kc, kinit, ksteps = jax.random.split(key, 3)
    x, _ = sample(task, kc, (CENTRE_SAMPLES,))
    mu = x.mean(axis=0)
    remaining = train_samples - CENTRE_SAMPLES
    steps = -(-remaining // B)
    last = remaining - (steps - 1) * B  # the last batch may be partial

    def step(w, t, x, y):
        n = jnp.where(t == steps - 1, last, B).astype(F32)
        scale = jnp.where(jnp.arange(B) < n, -y / n, 0.0)[:, None]
        return sphere_step(w, x - mu, scale, lr_at(t, steps, LR3, LR3_END, DECAY_START))

    w = scan_batches(step, random_directions(kinit, n_neurons, d), task, ksteps, steps)
    return w, mu


def as_one_expert(w, mu, m):
    """The vanilla network in the MoE's padded shapes: expert 0 active, owns all."""
    owner = jnp.zeros(len(w), I32)
    centres = jnp.zeros((m, len(mu)), F32).at[0].set(mu)
    return owner, centres, jnp.zeros((m, len(mu)), F32), jnp.arange(m) == 0


def evaluate(task, key, moe_net, vanilla_net):
    x, y = sample(task, key, (TEST_SAMPLES,))
    y = y.astype(RD)
    var_y = jnp.var(y)
    return (
        jnp.mean((predict(moe_net, x) - y) ** 2) / var_y,
        jnp.mean((predict(vanilla_net, x) - y) ** 2) / var_y,
    )


# ---------------------------------------------------------------- main
def main():
    a = ARGS
    m, j, d = a.experts, a.neurons, a.d
    train_samples = (a.phase_one_steps + T2 + a.phase_three_steps) * B + 2 * CENTRE_SAMPLES
    remaining = train_samples - CENTRE_SAMPLES
    samples = {  # what each model draws, as numpy_reference.py counts it
        "moe": 2 * CENTRE_SAMPLES + (a.phase_one_steps + T2 + a.phase_three_steps) * B
        + READOUT_SAMPLES,
        "vanilla": CENTRE_SAMPLES + remaining + READOUT_SAMPLES,
    }
    assert samples["moe"] == samples["vanilla"], samples

    start = time.perf_counter()

    # ---- compile every phase ahead of time from abstract shapes
    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype)

    key_s = jax.eval_shape(lambda: jax.random.key(0))
    seed_s = spec((), jnp.uint32)
    task_s = {"v": spec((C, d), F32), "proj": spec((d, C + 1), F32)}
    fns = {
        "task": (partial(make_task, d=d), (seed_s,)),
        "phase_one": (
            partial(phase_one, m=m, t1=a.phase_one_steps),
            (task_s, key_s),
        ),
        "phase_two": (
            phase_two,
            (task_s, key_s, spec((d,), F32), spec((d, d), F32), spec((m, d), F32)),
        ),
        "phase_three": (
            partial(phase_three, m=m, j=j, t3=a.phase_three_steps),
            (task_s, key_s, spec((d,), F32), spec((m, d), F32), spec((m,), bool)),
        ),
        "readout": (
            readout,
            (
                task_s,
                key_s,
                spec((m * j, d), F32),
                spec((m * j,), I32),
                spec((m, d), F32),
                spec((m, d), F32),
                spec((m,), bool),
            ),
        ),
        "vanilla": (
            partial(vanilla, n_neurons=m * j, train_samples=train_samples),
            (task_s, key_s),
        ),
        "as_one_expert": (partial(as_one_expert, m=m), (spec((m * j, d), F32), spec((d,), F32))),
    }
    compiled = {name: jax.jit(f).lower(*args).compile() for name, (f, args) in fns.items()}
    net_s = compiled["readout"].out_info
    compiled["evaluate"] = jax.jit(evaluate).lower(task_s, key_s, net_s, net_s).compile()
    compile_s = time.perf_counter() - start

    # ---- run
    run_start = time.perf_counter()
    phase_s = {}
    mark = [run_start]

    def timer(name, *outs):
        jax.block_until_ready(outs)
        now = time.perf_counter()
        phase_s[name] = round(now - mark[0], 4)
        mark[0] = now

    task, keys = compiled["task"](np.uint32(a.seed))
    jax.block_until_ready(task)
    mark[0] = time.perf_counter()
    mu, whiten, u = compiled["phase_one"](task, keys["phase_one"])
    timer("phase_one", u)
    theta, active = compiled["phase_two"](task, keys["phase_two"], mu, whiten, u)
    timer("phase_two", theta)
    w, owner, centres = compiled["phase_three"](task, keys["phase_three"], mu, theta, active)
    timer("phase_three", w)
    moe_net = compiled["readout"](task, keys["readout"], w, owner, centres, theta, active)
    timer("readout", moe_net)
    w, mu = compiled["vanilla"](task, keys["vanilla"])
    one_expert = compiled["as_one_expert"](w, mu)
    vanilla_net = compiled["readout"](task, keys["vanilla_readout"], w, *one_expert)
    timer("vanilla", vanilla_net)
    moe_rel, vanilla_rel = compiled["evaluate"](task, keys["test"], moe_net, vanilla_net)
    moe_rel, vanilla_rel = float(moe_rel), float(vanilla_rel)
    end = time.perf_counter()

    print(
        json.dumps(
            {
                "impl": "jax",
                "d": d,
                "threads": a.threads,
                "wall_s": round(end - start, 4),
                "compile_s": round(compile_s, 4),
                "run_s": round(end - run_start, 4),
                "phase_s": phase_s,
                "moe_rel_mse": moe_rel,
                "vanilla_rel_mse": vanilla_rel,
                "samples_per_model": int(samples["moe"]),
                "experts_after_merge": int(np.asarray(active).sum()),
                "jax": jax.__version__,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
