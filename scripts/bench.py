"""Benchmark of the compiled Hodgkin-Huxley kernel (``make bench``).

Prints, in one run on this machine:

* kernel sims/s with the 7 statistics fused (1 process, 1 thread);
* the plain per-simulation Python loop over time steps (the sbi tutorial's
  approach: scalar NumPy per step, statistics afterwards), timed on a handful of
  simulations, and the kernel/loop ratio; a leaner ``math``-module loop is shown too;
* peak RSS (``ru_maxrss``) of a fresh subprocess simulating 100,000 simulations,
  features only, in chunks;
* scaling with 1 vs 2 worker processes, each running its share of the simulations;
* the 8-parameter model (``simulator=hodgkin_huxley_8p``, θ from ``prior=hh8_box``) on
  its 1,450 ms Allen protocol (72,500 steps): kernel sims/s and the same two Python
  loops, timed in this run;

then a pass/fail table against the targets (>= 4,000 sims/s on both cores,
>= 500x the loop for both models, < 1.5 GB for 100,000 simulations). ``--quick`` is
a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from sbilab.rng import per_index_seeds
from sbilab.simulators import hh_kernel
from sbilab.simulators.hh_equations import TUTORIAL_INFERRED, HHParams
from sbilab.summaries.hh_features import hh_feature_array

#: The tutorial's prior box over (gbar_Na, gbar_K).
PRIOR_LOW, PRIOR_HIGH = np.array([0.5, 1e-4]), np.array([80.0, 15.0])
TARGET_SIMS_PER_S, TARGET_RATIO, TARGET_RSS_GB = 4000.0, 500.0, 1.5


def prior_theta(count: int, seed: int) -> np.ndarray:
    """Parameters drawn from the tutorial's uniform prior."""
    return np.random.default_rng(seed).uniform(PRIOR_LOW, PRIOR_HIGH, size=(count, 2))


def eight_parameter_model() -> tuple[HHParams, tuple[str, ...], np.ndarray]:
    """Constants, θ's columns and 1,024 prior draws of ``simulator=hodgkin_huxley_8p prior=hh8_box`` (the configs)."""
    from hydra import compose, initialize_config_dir

    from sbilab.spec import instantiate_part, part_config

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["simulator=hodgkin_huxley_8p", "prior=hh8_box"])
    simulator = instantiate_part(part_config(cfg, "simulator"))
    low, high = np.array(cfg.prior.low), np.array(cfg.prior.high)
    return simulator.params, simulator.inferred, np.random.default_rng(5).uniform(low, high, size=(1024, len(low)))


def kernel_rate(
    count: int, repeats: int, p: HHParams, num_threads: int = 1, traces: bool = False,
    theta: Optional[np.ndarray] = None, inferred: tuple[str, ...] = TUTORIAL_INFERRED,
) -> tuple[float, float]:
    """Best-of-``repeats`` kernel sims/s (features, or traces only) and that run's CPU time / wall time.

    ``theta``: parameter rows to cycle through (default: the tutorial's prior)."""
    theta = prior_theta(count, 1) if theta is None else np.resize(theta, (count, theta.shape[1]))
    seeds = per_index_seeds(1, 0, count)
    hh_kernel.run(theta[:16], seeds[:16], p, traces=False, features=True, inferred=inferred)  # load the library
    best, cpu_share = math.inf, 0.0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        hh_kernel.run(theta, seeds, p, traces=traces, features=not traces, num_threads=num_threads, inferred=inferred)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best:
            best, cpu_share = wall, cpu / wall
    return count / best, cpu_share


def tutorial_loop(theta: np.ndarray, seed: int, p: HHParams) -> np.ndarray:
    """One simulation as in the sbi tutorial: scalar NumPy calls at every time step."""
    gbar_na, gbar_k = np.float64(theta[0]), np.float64(theta[1])
    t = p.time()
    current = p.input_current()
    rng = np.random.RandomState(seed)

    def efun(z):
        return 1 - z / 2 if np.abs(z) < 1e-4 else z / (np.exp(z) - 1)

    def alpha_m(x): return 0.32 * efun(-0.25 * (x - p.V_T - 13.0)) / 0.25
    def beta_m(x): return 0.28 * efun(0.2 * (x - p.V_T - 40.0)) / 0.2
    def alpha_h(x): return 0.128 * np.exp(-(x - p.V_T - 17.0) / 18.0)
    def beta_h(x): return 4.0 / (1 + np.exp(-0.2 * (x - p.V_T - 40.0)))
    def alpha_n(x): return 0.032 * efun(-0.2 * (x - p.V_T - 15.0)) / 0.2
    def beta_n(x): return 0.5 * np.exp(-(x - p.V_T - 10.0) / 40)
    def tau_n(x): return 1 / (alpha_n(x) + beta_n(x))
    def n_inf(x): return alpha_n(x) / (alpha_n(x) + beta_n(x))
    def tau_m(x): return 1 / (alpha_m(x) + beta_m(x))
    def m_inf(x): return alpha_m(x) / (alpha_m(x) + beta_m(x))
    def tau_h(x): return 1 / (alpha_h(x) + beta_h(x))
    def h_inf(x): return alpha_h(x) / (alpha_h(x) + beta_h(x))
    def p_inf(x): return 1.0 / (1.0 + np.exp(-0.1 * (x + 35.0)))
    def tau_p(x): return p.tau_max / (3.3 * np.exp(0.05 * (x + 35.0)) + np.exp(-0.05 * (x + 35.0)))

    V = np.zeros_like(t)
    V[0] = p.V0
    n, m, h, pp = n_inf(V[0]), m_inf(V[0]), h_inf(V[0]), p_inf(V[0])
    for i in range(1, t.shape[0]):
        tau_v_inv = ((m**3) * gbar_na * h + (n**4) * gbar_k + p.g_leak + p.gbar_M * pp) / p.C
        v_inf = (
            (m**3) * gbar_na * h * p.E_Na + (n**4) * gbar_k * p.E_K + p.g_leak * p.E_leak + p.gbar_M * pp * p.E_K
            + current[i - 1] + p.noise_scale * rng.randn() / p.dt**0.5
        ) / (tau_v_inv * p.C)
        V[i] = v_inf + (V[i - 1] - v_inf) * np.exp(-p.dt * tau_v_inv)
        n = n_inf(V[i]) + (n - n_inf(V[i])) * np.exp(-p.dt / tau_n(V[i]))
        m = m_inf(V[i]) + (m - m_inf(V[i])) * np.exp(-p.dt / tau_m(V[i]))
        h = h_inf(V[i]) + (h - h_inf(V[i])) * np.exp(-p.dt / tau_h(V[i]))
        pp = p_inf(V[i]) + (pp - p_inf(V[i])) * np.exp(-p.dt / tau_p(V[i]))
    return V


def math_loop(theta: np.ndarray, seed: int, p: HHParams) -> np.ndarray:
    """One simulation with plain floats and the math module (a leaner Python loop)."""
    gbar_na, gbar_k = float(theta[0]), float(theta[1])
    steps = p.num_steps
    current = p.input_current().tolist()
    noise = (p.noise_scale * np.random.default_rng(seed).standard_normal(steps - 1) / math.sqrt(p.dt)).tolist()
    exp, dt = math.exp, p.dt

    def efun(z: float) -> float:
        return 1.0 - z / 2.0 if abs(z) < 1e-4 else z / (exp(z) - 1.0)

    def rates(V: float) -> tuple[float, ...]:
        v = V - p.V_T
        am, bm = 0.32 * efun(-0.25 * (v - 13.0)) / 0.25, 0.28 * efun(0.2 * (v - 40.0)) / 0.2
        ah, bh = 0.128 * exp(-(v - 17.0) / 18.0), 4.0 / (1.0 + exp(-0.2 * (v - 40.0)))
        an, bn = 0.032 * efun(-0.2 * (v - 15.0)) / 0.2, 0.5 * exp(-(v - 10.0) / 40.0)
        vp = V + 35.0
        p_tau = p.tau_max / (3.3 * exp(0.05 * vp) + exp(-0.05 * vp))
        p_inf = 1 / (1 + exp(-0.1 * vp))
        return am / (am + bm), am + bm, ah / (ah + bh), ah + bh, an / (an + bn), an + bn, p_inf, p_tau

    V = [p.V0] * steps
    mi, _, hi, _, ni, _, pi, _ = rates(p.V0)
    m, h, n, q = mi, hi, ni, pi
    for i in range(1, steps):
        g_na, g_k, g_m = m * m * m * h * gbar_na, n**4 * gbar_k, p.gbar_M * q
        tvi = (g_na + g_k + p.g_leak + g_m) / p.C
        v_inf = (g_na * p.E_Na + g_k * p.E_K + p.g_leak * p.E_leak + g_m * p.E_K + current[i - 1] + noise[i - 1]) / (
            tvi * p.C
        )
        V[i] = v = v_inf + (V[i - 1] - v_inf) * exp(-dt * tvi)
        mi, sm, hi, sh, ni, sn, pi, tp = rates(v)
        m, h, n = mi + (m - mi) * exp(-dt * sm), hi + (h - hi) * exp(-dt * sh), ni + (n - ni) * exp(-dt * sn)
        q = pi + (q - pi) * exp(-dt / tp)
    return np.array(V)


def loop_rate(
    loop, count: int, p: HHParams, theta: Optional[np.ndarray] = None, inferred: tuple[str, ...] = TUTORIAL_INFERRED
) -> float:
    """sims/s of a per-simulation Python loop, statistics included; a row's constants replace ``p``'s."""
    theta = prior_theta(count, 2) if theta is None else theta
    start = time.perf_counter()
    for i in range(count):
        values = dict(zip(inferred, theta[i]))
        row = replace(p, **values)
        hh_feature_array(loop((row.gbar_Na, row.gbar_K), i, row)[None, :], p)
    return count / (time.perf_counter() - start)


def rss_child(count: int, chunk: int) -> None:
    """(Subprocess) simulate ``count`` sims in chunks, features only; print peak RSS as JSON."""
    import resource

    p = HHParams()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = np.empty((count, 7))
    start_time = time.perf_counter()
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        theta = prior_theta(stop - start, start)
        _, out[start:stop] = hh_kernel.run(theta, per_index_seeds(3, start, stop - start), p, traces=False,
                                           features=True, num_threads=2)
    elapsed = time.perf_counter() - start_time
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_kib": peak, "import_kib": before, "seconds": elapsed}))


def peak_rss(count: int) -> dict:
    """Peak RSS of a fresh interpreter running :func:`rss_child`."""
    code = f"import sys; sys.path.insert(0, {sys.path[0]!r}); import bench; bench.rss_child({count}, 10_000)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(start: int, count: int, barrier, results) -> None:
    """(Worker process) load the kernel, wait for all workers, then time its share of the sims."""
    p = HHParams()
    theta, seeds = prior_theta(count, start), per_index_seeds(4, start, count)
    hh_kernel.run(theta[:16], seeds[:16], p, traces=False, features=True)  # imports and library loaded
    barrier.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    hh_kernel.run(theta, seeds, p, traces=False, features=True)
    results.put((count, time.perf_counter() - wall, time.process_time() - cpu))


def worker_scaling(total: int, workers: int) -> tuple[float, list[float], float]:
    """Aggregate sims/s of ``workers`` processes sharing ``total`` sims, each worker's sims/s,
    and the lowest worker CPU time / wall time (below ~0.9: other processes took the cores).

    The clock starts when every worker has imported and loaded the kernel (a barrier),
    so process start-up is not counted.
    """
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    bounds = [w * total // workers for w in range(workers + 1)]
    procs = [ctx.Process(target=_worker, args=(bounds[w], bounds[w + 1] - bounds[w], barrier, results))
             for w in range(workers)]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.perf_counter()
    done = [results.get() for _ in procs]
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    return total / wall, [count / seconds for count, seconds, _ in done], min(c / w for _, w, c in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (smaller counts; RSS on 10,000 sims)")
    args = parser.parse_args()
    p = HHParams()
    n_kernel, n_scale, n_rss = (2048, 2048, 10_000) if args.quick else (8192, 16384, 100_000)
    n_tutorial, n_math = (1, 1) if args.quick else (3, 5)
    n_eight, n_eight_loop = (128, 1) if args.quick else (1024, 2)
    t_start = time.perf_counter()

    print(f"HH kernel benchmark: T={p.num_steps} steps (dt={p.dt} ms), theta from the tutorial prior, "
          f"{hh_kernel.lanes()} lanes/block{'  [--quick]' if args.quick else ''}\n", flush=True)
    load_before = os.getloadavg()[0]
    kernel, kernel_cpu = kernel_rate(n_kernel, 2, p)
    threads2, threads_cpu = kernel_rate(n_kernel, 1, p, num_threads=2)
    traces_rate, _ = kernel_rate(1024, 1, p, traces=True)
    tutorial = loop_rate(tutorial_loop, n_tutorial, p)
    leaner = loop_rate(math_loop, n_math, p)
    rss = peak_rss(n_rss)
    one, _, one_cpu = worker_scaling(n_scale, 1)
    two, per_worker, two_cpu = worker_scaling(n_scale, 2)
    p8, inferred8, theta8 = eight_parameter_model()
    eight, eight_cpu = kernel_rate(n_eight, 2, p8, theta=theta8, inferred=inferred8)
    eight2, _ = kernel_rate(n_eight, 1, p8, num_threads=2, theta=theta8, inferred=inferred8)
    eight_tutorial = loop_rate(tutorial_loop, n_eight_loop, p8, theta8, inferred8)
    eight_math = loop_rate(math_loop, n_eight_loop, p8, theta8, inferred8)

    rows = [
        ("kernel, features fused, 1 process 1 thread", f"{kernel:,.0f} sims/s",
         f"{n_kernel} sims, best of 2; CPU/wall {kernel_cpu:.2f}"),
        ("kernel, 1 process, num_threads=2", f"{threads2:,.0f} sims/s",
         f"{n_kernel} sims; CPU/wall {threads_cpu:.2f} (of 2.00)"),
        ("kernel, full traces instead (no target)", f"{traces_rate:,.0f} sims/s", "1024 sims, 98 MB of output"),
        ("Python loop, tutorial style (NumPy scalars)", f"{tutorial:,.2f} sims/s", f"{n_tutorial} sims"),
        ("Python loop, math module floats", f"{leaner:,.2f} sims/s", f"{n_math} sims"),
        ("ratio kernel / tutorial loop", f"{kernel / tutorial:,.0f}x", "1 core each"),
        ("ratio kernel / math-module loop", f"{kernel / leaner:,.0f}x", "1 core each"),
        (f"peak RSS, {n_rss:,} sims features only", f"{rss['peak_kib'] * 1024 / 1e9:.3f} GB",
         f"fresh process, chunks of 10,000, 2 threads; {rss['import_kib'] * 1024 / 1e9:.3f} GB after imports;"
         f" {rss['seconds']:.1f} s"),
        ("workers=1 (processes)", f"{one:,.0f} sims/s", f"{n_scale} sims; CPU/wall {one_cpu:.2f}"),
        ("workers=2 (processes)", f"{two:,.0f} sims/s",
         f"{n_scale} sims; per worker " + ", ".join(f"{r:,.0f}" for r in per_worker)
         + f"; speed-up {two / one:.2f}x; min CPU/wall {two_cpu:.2f}"),
        (f"8-parameter model, {p8.duration:g} ms protocol (T={p8.num_steps})", "", "theta from prior=hh8_box"),
        ("  kernel, features fused, 1 process 1 thread", f"{eight:,.0f} sims/s",
         f"{n_eight} sims, best of 2; CPU/wall {eight_cpu:.2f}"),
        ("  kernel, 1 process, num_threads=2", f"{eight2:,.0f} sims/s", f"{n_eight} sims"),
        ("  Python loop, tutorial style (NumPy scalars)", f"{eight_tutorial:,.3f} sims/s", f"{n_eight_loop} sims"),
        ("  Python loop, math module floats", f"{eight_math:,.3f} sims/s", f"{n_eight_loop} sims"),
        ("  ratio kernel / tutorial loop", f"{eight / eight_tutorial:,.0f}x", "1 core each"),
        ("  ratio kernel / math-module loop", f"{eight / eight_math:,.0f}x", "1 core each"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>16}   {note}")

    rss_gb = rss["peak_kib"] * 1024 / 1e9
    checks = [
        (f"throughput, both cores >= {TARGET_SIMS_PER_S:,.0f} sims/s", f"{two:,.0f}", two >= TARGET_SIMS_PER_S),
        (f"speed-up vs tutorial loop >= {TARGET_RATIO:.0f}x", f"{kernel / tutorial:,.0f}x",
         kernel / tutorial >= TARGET_RATIO),
        (f"peak RSS for {n_rss:,} sims < {TARGET_RSS_GB} GB", f"{rss_gb:.3f} GB", rss_gb < TARGET_RSS_GB),
        (f"8-parameter speed-up vs tutorial loop >= {TARGET_RATIO:.0f}x", f"{eight / eight_tutorial:,.0f}x",
         eight / eight_tutorial >= TARGET_RATIO),
    ]
    print("\nTargets:")
    for label, value, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<52} {value}")
    if args.quick:
        print("  (--quick: RSS measured on 10,000 sims, not 100,000)")
    if min(kernel_cpu, one_cpu, two_cpu, eight_cpu) < 0.9:
        print(f"  WARNING: the machine was busy (1-min load {load_before:.2f} at start; a timed process got"
              f" < 90% of a core): throughput numbers are lower bounds")
    print(f"\nbench took {time.perf_counter() - t_start:.0f} s")
    sys.exit(0 if all(ok for *_, ok in checks) else 1)


if __name__ == "__main__":
    main()
