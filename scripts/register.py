"""Register a run's posterior as a new version of an MLflow registered model.

    python scripts/register.py RUN_ID [--name NAME] [tracking.uri=...]

The run's pyfunc posterior model (``posterior_model``) is logged first when the run
has none yet (runs recorded before models were logged). ``NAME`` defaults to
``<experiment>_posterior``. Load the version anywhere sbilab is installed with
``mlflow.pyfunc.load_model("models:/NAME/VERSION").predict(x, params={"num_samples": 1000})``.
"""

from __future__ import annotations

import sys

import _entry

STORE_KEYS = ("tracking.", "paths.")


def parse_args(argv: list[str]) -> tuple[str, str | None, list[str]]:
    run_id, name, overrides = None, None, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if arg == "--name" or arg.startswith("--name="):
            name = arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else _entry.fail("--name needs a value"))
        elif "=" in arg:
            if not arg.lstrip("+").startswith(STORE_KEYS):
                _entry.fail(f"{arg}: only tracking.* and paths.* overrides apply to register")
            overrides.append(arg)
        elif run_id is None:
            run_id = arg
        else:
            _entry.fail(f"one run id expected, got {run_id!r} and {arg!r}")
    if not run_id:
        _entry.fail("which run? usage: make register RUN=<run id> [NAME=<registered model name>]")
    return run_id, name, overrides


def main(argv: list[str]) -> int:
    run_id, name, overrides = parse_args(argv)

    def task() -> int:
        from hydra import compose, initialize_config_dir

        from sbilab import tracking

        with initialize_config_dir(config_dir=str(_entry.ROOT / "conf"), version_base="1.3"):
            uri = str(compose("config", overrides=overrides).tracking.uri)
        registered, version, model_uri = tracking.register_posterior_model(uri, run_id, name)
        print(f"sbilab: registered {registered} version {version} from run {run_id}: {model_uri}")
        print(f"sbilab: load it with mlflow.pyfunc.load_model({model_uri!r}).predict(x, params={{'num_samples': 1000}})"
              f" (tracking URI {uri})")
        return 0

    return _entry.guarded(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
