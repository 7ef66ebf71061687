"""Compare the child runs of a sweep or HPO study and log the comparison to its parent run.

    python scripts/compare.py [PARENT_RUN_ID | SWEEP_ID] [--metric NAME] [tracking.uri=...]

Without an id, the most recent sweep/HPO parent in the store is used. Writes
``comparison/runs.csv``, ``runs.md``, ``vs_budget.png`` and (two or more swept
factors) ``heatmap.png`` on the parent, and prints the table.
"""

from __future__ import annotations

import sys

from sbilab import entry


def main(argv: list[str]) -> int:
    ref, metric, overrides, ignored = entry.store_command(argv, __doc__, "ref", "metric")
    if ignored:
        print(f"sbilab: compare: ignoring overrides other than tracking.*/paths.*: {' '.join(ignored)}")

    def task() -> int:
        from sbilab import tracking
        from sbilab.experiments.compare import compare_sweep

        uri = entry.store_uri(overrides)
        parent = tracking.resolve_parent_run(uri, ref)
        if ref is None:
            print(f"sbilab: no sweep given: comparing the most recent one (parent run {parent})")
        comparison = compare_sweep(uri, parent, metric=metric)
        print(comparison.markdown(), end="")
        print(f"sbilab: swept: {', '.join(comparison.factors) or 'nothing varies'}; "
              f"{len(comparison.rows)} child runs")
        print(f"sbilab: logged {', '.join(comparison.artifacts)} to parent run {parent}")
        return 0

    return entry.guarded(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
