"""The diagnostics stage of every experiment preset: exit code, wall time, stage time and peak memory
(``make bench-diagnostics``).

    python scripts/bench_diagnostics.py [--presets NAME ...] [--forms own given_x] [--jobs N] [key=value ...]

Each preset runs through ``scripts/train.py`` as ``make train ARGS="experiment=<preset>"`` does, with its own
observation (``own``) and with x_o given (``given_x``: ``observation=summary`` with the benchmark's x_o or
the README's HH statistics), into a temporary store. The diagnostics run at the preset's own settings
(test points, samples, chains, the per-x sampler's time budget); the training budget is shrunk by
default (``--train preset`` keeps the preset's) because the diagnostics' cost depends on the sampler,
not on how long the network trained. The table shows the bounds each row is held to: the diagnostics
stage ≤ 300 s and ≤ 2,048 MB beyond what was resident when it began (``memory/diagnose_beyond_start_mb``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the README's 7 statistics (hh_features) for the HH presets' given-x form
HH_X = "observation.x=[12,-63.2,0.4,-48.1,160,1.9,7]"
SMALL_TRAINING = ["simulation.num_simulations=2000", "trainer.max_epochs=30"]
STAGE_SECONDS_MAX = 300.0
STAGE_MEMORY_MB_MAX = 2048.0


def presets() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def form_overrides(preset: str, form: str) -> list[str]:
    if form == "own":
        return []
    text = (ROOT / "conf" / "experiment" / f"{preset}.yaml").read_text()
    return ["observation=summary", "observation.x=${benchmark.x_o}" if "benchmark:" in text else HH_X]


def run_one(preset: str, form: str, overrides: list[str], training: list[str], folder: Path) -> dict:
    """One preset × form in its own store; the run's metrics read back from it."""
    from mlflow.tracking import MlflowClient

    store = folder / f"{preset}-{form}"
    uri = f"sqlite:///{store}/mlflow.db"
    args = [f"experiment={preset}", *form_overrides(preset, form), *training, *overrides, f"tracking.uri={uri}",
            f"tracking.artifact_location=file://{store}/artifacts", f"paths.cache_dir={store}/cache",
            f"hydra.run.dir={store}/out"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args], capture_output=True,
                            text=True, cwd=ROOT)
    row = {"preset": preset, "form": form, "exit": result.returncode, "wall_s": time.perf_counter() - started,
           "error": (result.stderr.strip().splitlines() or [""])[-1] if result.returncode else ""}
    if result.returncode == 0:
        client = MlflowClient(uri)
        (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        metrics = run.data.metrics
        row.update(status=run.info.status, gates=run.data.tags.get("sbilab.gates", "-"),
                   diagnose_s=metrics.get("time/diagnose_s", float("nan")),
                   peak_mb=metrics.get("memory/diagnose_beyond_start_mb", float("nan")),
                   points=metrics.get("diagnostics/num_test_points", float("nan")),
                   per_point_s=metrics.get("diagnostics/sampler_seconds_per_point", float("nan")))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| preset | form | exit | status | gates | wall s | diagnose s | test points | s per point | "
             "diagnose MB beyond start | within bounds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ok = (row["exit"] == 0 and row.get("diagnose_s", 1e9) <= STAGE_SECONDS_MAX
              and row.get("peak_mb", 1e9) <= STAGE_MEMORY_MB_MAX)
        lines.append(f"| {row['preset']} | {row['form']} | {row['exit']} | {row.get('status', '-')} | "
                     f"{row.get('gates', '-')} | {row['wall_s']:.0f} | {row.get('diagnose_s', float('nan')):.0f} | "
                     f"{row.get('points', float('nan')):.0f} | {row.get('per_point_s', float('nan')):.2f} | "
                     f"{row.get('peak_mb', float('nan')):.0f} | {'yes' if ok else 'NO ' + row['error']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=presets())
    parser.add_argument("--forms", nargs="+", default=["own", "given_x"], choices=["own", "given_x"])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (1: each row timed on a quiet core)")
    parser.add_argument("--train", choices=["small", "preset"], default="small",
                        help="small: 2,000 simulations, 30 epochs; preset: the preset's own training budget")
    args = parser.parse_args([a for a in argv if a not in overrides])
    training = SMALL_TRAINING if args.train == "small" else []
    with tempfile.TemporaryDirectory(prefix="sbilab-bench-diagnostics-") as folder:
        cases = [(p, f) for p in args.presets for f in args.forms]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda case: run_one(*case, overrides, training, Path(folder)), cases))
    print(f"sbilab: diagnostics stage per preset (training: {args.train}; bounds: stage <= {STAGE_SECONDS_MAX:.0f} s, "
          f"<= {STAGE_MEMORY_MB_MAX:.0f} MB beyond its start)")
    print(table(rows))
    return 0 if all(row["exit"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
