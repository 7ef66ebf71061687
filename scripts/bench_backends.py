"""Client memory and wall time of the simulation stage on each backend: ``local`` (the baseline) and ``dask``.

    python scripts/bench_backends.py [--num 200000] [--chunk 2000] [--workers 2] [--summary hh_features]
    PYTHONPATH=scripts python -m services run --state /tmp/bench dask -- python scripts/bench_backends.py

Each backend runs in a fresh process that simulates the default HH dataset (cache off) once; the table
gives that process's resident memory before the stage and at its peak (psutil, sampled every 10 ms),
the peak of Python allocations during the stage (tracemalloc: what the client holds, imports aside),
and the wall time. ``dask`` uses the scheduler at DASK_SCHEDULER_ADDRESS when it is set (its workers
are then not in the client's memory), else a local cluster of ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(backend: str, num: int, chunk: int, workers: int, summary: str) -> dict:
    """Simulate in this process on ``backend``; memory and time as a dict."""
    import psutil
    from hydra import compose, initialize_config_dir

    from sbilab.pipeline import simulate
    from sbilab.spec import prepare

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"simulation={backend}", f"simulation.num_simulations={num}", f"simulation.chunk_size={chunk}",
            f"simulation.num_workers={workers}", "simulation.cache=false", f"summary={summary}",
            "paths.output_dir=/tmp/sbilab-bench-backends"])
    spec = prepare(cfg)
    process, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    before = process.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    tracemalloc.start()
    sampler.start()
    started = time.perf_counter()
    data = simulate(spec, "train", num)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"backend": backend, "address": os.environ.get("DASK_SCHEDULER_ADDRESS", "") if backend == "dask" else "",
            "simulations": num, "x_mb": data.x.numel() * 4 / 2**20, "rss_before_mb": before / 2**20,
            "rss_peak_mb": peak[0] / 2**20, "traced_peak_mb": traced_peak / 2**20, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summary", default="hh_features")
    parser.add_argument("--backends", nargs="+", default=["local", "dask"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args.child, args.num, args.chunk, args.workers, args.summary)))
        return 0
    print(f"{'backend':8} {'simulations':>11} {'x MB':>7} {'RSS before':>11} {'RSS peak':>9} {'traced peak':>12} "
          f"{'seconds':>8}  scheduler")
    for backend in args.backends:
        child = subprocess.run([sys.executable, __file__, "--child", backend, "--num", str(args.num), "--chunk",
                                str(args.chunk), "--workers", str(args.workers), "--summary", args.summary],
                               capture_output=True, text=True, env={**os.environ, "PROJECT_ROOT": str(ROOT)})
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return child.returncode
        r = json.loads(child.stdout.split("RESULT ", 1)[1])
        print(f"{r['backend']:8} {r['simulations']:>11,} {r['x_mb']:>7.1f} {r['rss_before_mb']:>8.0f} MB "
              f"{r['rss_peak_mb']:>6.0f} MB {r['traced_peak_mb']:>9.1f} MB {r['seconds']:>8.1f}  "
              f"{r['address'] or ('local cluster' if backend == 'dask' else '-')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
