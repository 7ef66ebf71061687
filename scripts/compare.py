"""Compare the child runs of a sweep or HPO study and log the comparison to its parent run.

    python scripts/compare.py [PARENT_RUN_ID | SWEEP_ID] [--metric NAME] [tracking.uri=...]

Without an id, the most recent sweep/HPO parent in the store is used. Writes
``comparison/runs.csv``, ``runs.md``, ``vs_budget.png`` and (two or more swept
factors) ``heatmap.png`` on the parent, and prints the table.
"""

from __future__ import annotations

import sys

import _entry

#: override keys that apply here (where the store is); anything else is ignored
STORE_KEYS = ("tracking.", "paths.")


def parse_args(argv: list[str]) -> tuple[str | None, str | None, list[str], list[str]]:
    """(ref, metric, store overrides, ignored overrides)."""
    ref, metric, overrides, ignored = None, None, [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if arg == "--metric" or arg.startswith("--metric="):
            metric = arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else _entry.fail("--metric needs a name"))
        elif "=" in arg:
            (overrides if arg.lstrip("+").startswith(STORE_KEYS) else ignored).append(arg)
        elif ref is None:
            ref = arg
        else:
            _entry.fail(f"one parent run id or sweep id expected, got {ref!r} and {arg!r}")
    return ref, metric, overrides, ignored


def store_uri(overrides: list[str]) -> str:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(_entry.ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return str(cfg.tracking.uri)


def main(argv: list[str]) -> int:
    ref, metric, overrides, ignored = parse_args(argv)
    if ignored:
        print(f"sbilab: compare: ignoring overrides other than tracking.*/paths.*: {' '.join(ignored)}")

    def task() -> int:
        from sbilab import tracking
        from sbilab.compare import compare_sweep

        uri = store_uri(overrides)
        parent = tracking.resolve_parent_run(uri, ref)
        if ref is None:
            print(f"sbilab: no sweep given: comparing the most recent one (parent run {parent})")
        comparison = compare_sweep(uri, parent, metric=metric)
        print(comparison.markdown(), end="")
        print(f"sbilab: swept: {', '.join(comparison.factors) or 'nothing varies'}; "
              f"{len(comparison.rows)} child runs")
        print(f"sbilab: logged {', '.join(comparison.artifacts)} to parent run {parent}")
        return 0

    return _entry.guarded(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
