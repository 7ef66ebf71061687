"""The sbibm benchmark: C2ST of amortised methods against sbibm's published reference posteriors.

    python scripts/benchmark.py [--tasks TASK ...] [--methods METHOD ...] [--output-dir DIR] [key=value ...]

Per task × method the config of ``scripts/train.py experiment=<task> [method=<method>] key=value ...``
is trained (amortised methods once; sequential ones once per observation) and scored on sbibm's
observations 1-10 (C2ST against the published 10,000 reference samples). One MLflow parent run,
children per fit; the table is printed and written to ``<output dir>/results.md`` (default:
outputs/benchmark/<time>/).
Exit 0: every run finished (targets missed are reported, not an error); 1: a run failed;
2: bad input or sbibm's files unavailable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sbilab import entry

DEFAULT_TASKS = ("two_moons", "gaussian_linear", "gaussian_mixture", "slcp")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options and the Hydra-style ``key=value`` overrides (applied to every job)."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK")
    parser.add_argument("--methods", nargs="+", default=["preset"], metavar="METHOD",
                        help="method options, or preset (each task preset's own method; the default)")
    parser.add_argument("--output-dir", type=Path, help="default: outputs/benchmark/<date_time>")
    return parser.parse_args([a for a in argv if a not in overrides]), overrides


def main(argv: list[str]) -> int:
    args, overrides = parse(argv)

    def task() -> int:
        from sbilab.experiments.benchmark import check_selection, default_output_dir, run_benchmark
        from sbilab.simulators.sbibm_reference import SbibmDataUnavailable

        conf_dir = entry.ROOT / "conf"
        check_selection(args.tasks, args.methods, conf_dir)  # before the heavy imports
        try:
            result = run_benchmark(args.tasks, args.methods, overrides, conf_dir=conf_dir,
                                   output_dir=args.output_dir or default_output_dir(entry.ROOT))
        except SbibmDataUnavailable as error:
            entry.fail(str(error))
        print()
        print(result.table, end="")
        print(f"\nsbilab: {result.benchmark_id}: {result.parent_summary}; parent run {result.parent_run_id}; "
              f"table in {result.output_dir / 'results.md'}")
        missed = [f"{r.task}/{r.method} ({r.mean:.4f} > {r.target:.2f})" for r in result.results if r.verdict == "no"]
        if missed:
            print(f"sbilab: targets missed: {', '.join(missed)}")
        sys.stdout.flush()
        if not result.ok:
            print("sbilab: a run failed: the parent run is marked FAILED", file=sys.stderr)
            return 1
        return 0

    return entry.guarded(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
