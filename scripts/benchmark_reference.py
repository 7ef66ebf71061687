"""sbibm's published observations and reference posteriors, and a check of ours against them.

    python scripts/benchmark_reference.py fetch [--wheel PATH]
    python scripts/benchmark_reference.py show [--task TASK ...]
    python scripts/benchmark_reference.py check [--task TASK ...] [--observations 1 2 3] [--num-samples N]

``fetch`` caches the true parameters, observations and 10,000 reference samples of
sbibm 1.1.0 (observations 1-10 of two_moons, gaussian_linear, slcp and
gaussian_mixture) in ``<project root>/.cache/sbibm-1.1.0/``: the wheel is
downloaded from PyPI with ``pip download --no-deps`` (never installed), or taken
from ``--wheel``. ``show`` prints θ* and x_o per observation (1-3 without the
cache). ``check`` samples each simulator's own reference posterior at sbibm's
x_o, times it, and prints c2st(ours, published) (sbi's random-forest c2st;
0.5 = indistinguishable).
"""

from __future__ import annotations

import argparse
import time

from sbilab import entry


def show(tasks: list[str]) -> None:
    import numpy as np

    from sbilab.simulators import sbibm_reference as ref

    for task in tasks:
        if ref.is_cached():
            rows = [(k, ref.published_observation(task, k)) for k in range(1, ref.NUM_OBSERVATIONS + 1)]
            items = [(k, o.theta.tolist(), o.x.tolist()) for k, o in rows]
        else:
            items = [(k, *ref.benchmark_observation(task, k)) for k in sorted(ref.OBSERVATIONS[task])]
        print(f"{task}:")
        for k, theta, x in items:
            print(f"  {k:2d}  theta=[{', '.join(str(np.float32(v)) for v in theta)}]")
            print(f"      x    =[{', '.join(str(np.float32(v)) for v in x)}]")


def check(tasks: list[str], observations: list[int], num_samples: int) -> None:
    import numpy as np
    import torch
    from sbi.utils.metrics import c2st

    from sbilab.simulators import sbibm_reference as ref
    from sbilab.simulators.benchmark_tasks import TASKS

    torch.set_num_threads(1)
    ref.fetch()
    print(f"{'task':18s} {'obs':>3s} {'c2st':>6s} {'seconds':>8s}  (ours vs published, {num_samples} samples each)")
    for task in tasks:
        simulator = TASKS[task]()
        scores = []
        for k in observations:
            published = ref.published_observation(task, k)
            started = time.perf_counter()
            ours = simulator.reference_posterior(torch.as_tensor(published.x), num_samples, seed=k)
            seconds = time.perf_counter() - started
            rows = np.random.default_rng(k).permutation(published.samples.shape[0])[:num_samples]
            score = float(c2st(ours, torch.as_tensor(published.samples[rows], dtype=torch.float32), seed=k))
            scores.append(score)
            print(f"{task:18s} {k:3d} {score:6.3f} {seconds:8.2f}", flush=True)
        print(f"{task:18s} mean {np.mean(scores):.3f}, max {np.max(scores):.3f}")


def main() -> int:
    from sbilab.simulators import sbibm_reference as ref

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fetch", "show", "check"))
    parser.add_argument("--wheel", help=f"local copy of {ref.WHEEL_NAME} (fetch, offline)")
    parser.add_argument("--task", action="append", choices=ref.TASKS,
                        help="repeatable; default: all ten (check: the four with their own reference)")
    parser.add_argument("--observations", type=int, nargs="+", default=list(range(1, ref.NUM_OBSERVATIONS + 1)))
    parser.add_argument("--num-samples", type=int, default=10_000)
    args = parser.parse_args()
    from sbilab.simulators.benchmark_tasks import TASKS as WITH_REFERENCE

    # check: the tasks whose simulator computes its own reference posterior (the four class-based ones; the six
    # function tasks are checked against sbibm by scripts/check_sbibm_tasks.py)
    tasks = args.task or (list(WITH_REFERENCE) if args.command == "check" else list(ref.TASKS))
    unchecked = [t for t in tasks if args.command == "check" and t not in WITH_REFERENCE]
    if unchecked:
        entry.fail(f"--task {unchecked[0]}: check compares a simulator's own reference posterior; allowed: "
                   f"{', '.join(WITH_REFERENCE)} (the others: scripts/check_sbibm_tasks.py)")

    def task() -> int:
        try:
            if args.command == "fetch":
                print(f"sbilab: sbibm {ref.SBIBM_VERSION} reference files in {ref.fetch(wheel=args.wheel)}")
            elif args.command == "show":
                show(tasks)
            else:
                check(tasks, args.observations, args.num_samples)
        except ref.SbibmDataUnavailable as error:
            entry.fail(str(error))
        return 0

    return entry.guarded(task)


if __name__ == "__main__":
    raise SystemExit(main())
