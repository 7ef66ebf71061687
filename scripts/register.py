"""Register a run's posterior as a new version of an MLflow registered model.

    python scripts/register.py RUN_ID [--name NAME] [tracking.uri=...]

The run's pyfunc posterior model (``posterior_model``) is logged first when the run
has none yet (runs recorded before models were logged). ``NAME`` defaults to
``<experiment>_posterior``. Load the version anywhere sbilab is installed with
``mlflow.pyfunc.load_model("models:/NAME/VERSION").predict(x, params={"num_samples": 1000})``.
"""

from __future__ import annotations

import sys

from sbilab import entry


def main(argv: list[str]) -> int:
    run_id, name, overrides, ignored = entry.store_command(argv, __doc__, "run_id", "name")
    if ignored:
        entry.fail(f"{' '.join(ignored)}: only tracking.* and paths.* overrides apply to register")
    if not run_id:
        entry.fail("which run? usage: make register RUN=<run id> [NAME=<registered model name>]")

    def task() -> int:
        from sbilab import tracking

        uri = entry.store_uri(overrides)
        registered, version, model_uri = tracking.register_posterior_model(uri, run_id, name)
        print(f"sbilab: registered {registered} version {version} from run {run_id}: {model_uri}")
        print(f"sbilab: load it with mlflow.pyfunc.load_model({model_uri!r}).predict(x, params={{'num_samples': 1000}})"
              f" (tracking URI {uri})")
        return 0

    return entry.guarded(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
