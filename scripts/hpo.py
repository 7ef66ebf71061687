"""Hyperparameter search with Optuna (TPE); every trial is a child run of one MLflow parent run.

    python scripts/hpo.py [hpo=<name>] [hpo.<key>=<value> ...] [run overrides ...]

``hpo.*`` keys change the study (``conf/hpo/<name>.yaml``: n_trials, n_jobs, metric, params, ...);
any other argument overrides every trial's run config, like ``scripts/train.py`` arguments.
The best configuration lands on the parent (params ``best.*``, ``hpo.best_*`` tags, ``hpo/best.json``).
"""

from __future__ import annotations

import sys

import _entry


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0

    def task() -> int:
        from sbilab.hpo import load_settings, run_study, split_args, summary_lines

        name, hpo_overrides, run_overrides = split_args(argv)
        settings = load_settings(_entry.ROOT / "conf", name, hpo_overrides)
        result = run_study(settings, run_overrides, _entry.ROOT / "conf")
        for line in summary_lines(result):
            print(line)
        sys.stdout.flush()
        if result.best is None:
            return 1
        if any(not trial.ok for trial in result.trials):
            print("sbilab: some trials failed: the parent run is marked FAILED", file=sys.stderr)
            return 1
        return 0

    return _entry.guarded(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
