"""Issue-13 tuning harness: a benchmark job composed as `make benchmark` does, trained once, scored by C2ST
on a subset of observations (the same sample and C2ST seeds), nothing recorded in MLflow.

    .venv/bin/python research/tune.py TASK METHOD|preset --obs 1 2 3 --tag NAME key=value ...

Appends one JSON line per run to research/tune.jsonl (C2ST per observation, CPU and wall seconds).
The rows of docs/benchmark.md marked "tune" came from it (the slcp rows "sign flips" from a
prototype of what is now ``method.sign_invariant``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(ROOT / "src"))
from sbilab import entry  # noqa: E402,F401


class NoRecorder:
    """Samples are not kept."""

    def log_array(self, *args, **kwargs) -> None:
        pass


def main() -> None:
    argv = sys.argv[1:]
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    p = argparse.ArgumentParser()
    p.add_argument("task")
    p.add_argument("method")
    p.add_argument("--obs", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--tag", default="")
    args = p.parse_args([a for a in argv if a not in overrides])
    import torch

    from sbilab import pipeline
    from sbilab.experiments.benchmark import compose_job, fits, score_observation
    torch.set_num_threads(1)
    tag = args.tag or f"{args.task}-{args.method}"
    job = compose_job(ROOT / "conf", args.task, args.method, [*overrides, "num_threads=1", "simulation.num_workers=1"],
                      ROOT / "research" / "out" / tag)
    rec = {"tag": tag, "task": args.task, "method": args.method, "overrides": overrides, "obs": {}}
    c0, w0 = time.process_time(), time.perf_counter()
    train_cpu = 0.0
    for fit in fits(job):
        obs = [k for k in fit.observations if k in args.obs]
        if not obs:
            continue
        t = time.process_time()
        fitted = pipeline.train(fit.spec)
        posterior = pipeline.build_posterior(fit.spec, fitted)
        train_cpu += time.process_time() - t
        for k in obs:
            score, s_s, c_s = score_observation(job, fit.spec, posterior, k, NoRecorder())
            rec["obs"][k] = score
            print(f"[{tag}] obs {k}: {score:.4f} sample {s_s:.1f}s c2st {c_s:.1f}s", flush=True)
    rec["mean"] = sum(rec["obs"].values()) / len(rec["obs"])
    rec["train_cpu"] = train_cpu
    rec["total_cpu"] = time.process_time() - c0
    rec["total_wall"] = time.perf_counter() - w0
    print(f"[{tag}] MEAN {rec['mean']:.4f} train_cpu {train_cpu:.0f} total_cpu {rec['total_cpu']:.0f} "
          f"wall {rec['total_wall']:.0f}", flush=True)
    with open(ROOT / "research" / "tune.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
