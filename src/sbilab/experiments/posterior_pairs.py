"""C2ST between the posteriors of a sweep's runs at their shared observation.

A sweep over parts that should give the same posterior (``summary=hh_features,hh_cnn``, two
estimators) is compared where it matters: a classifier tries to tell the runs' posterior samples at
x_o apart (0.5: the same posterior; 1.0: disjoint). Only for a few runs that share one observation:
the pairs grow quadratically. Logged to the parent as ``comparison/posterior_c2st.{csv,md}``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sbilab.experiments.compare import factor_value
from sbilab.experiments.tables import to_csv, to_markdown

#: params that define the observation; runs agreeing on all of them conditioned on the same x_o source
OBSERVATION_PARAMS = ("observation.name", "observation.theta", "observation.x", "observation.file",
                      "observation.cell", "observation.seed", "simulator.name")
#: pairwise C2ST only for sweeps this small (pairs grow quadratically)
MAX_C2ST_RUNS = 6


def same_observation_runs(children: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The FINISHED children when they all share one observation and are few enough to pair up, else []."""
    finished = [c for c in children if c.get("status") == "FINISHED"]
    observations = {tuple(c.get("params", {}).get(k) for k in OBSERVATION_PARAMS) for c in finished}
    return finished if 2 <= len(finished) <= MAX_C2ST_RUNS and len(observations) == 1 else []


def posterior_c2st_rows(runs: Sequence[Mapping[str, Any]], factors: Sequence[str], samples: Any,
                        max_samples: int = 2000, seed: int = 0) -> tuple[list[str], list[dict[str, Any]]]:
    """C2ST between the posterior samples of every two runs; ``samples(run_id)`` loads a run's samples
    (``None``: the run has none, and is left out)."""
    from sbilab.diagnostics.c2st import c2st_score

    label = {r["run_id"]: ", ".join(f"{k}={factor_value(r, k)}" for k in factors) or r["run_id"] for r in runs}
    loaded = {r["run_id"]: samples(r["run_id"]) for r in runs}
    runs = [r for r in runs if loaded[r["run_id"]] is not None]  # runs without samples are left out
    rows = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            score = c2st_score(loaded[a["run_id"]], loaded[b["run_id"]], seed=seed, max_samples=max_samples)
            rows.append({"run_a": label[a["run_id"]], "run_b": label[b["run_id"]], "c2st": score,
                         "run_id_a": a["run_id"], "run_id_b": b["run_id"]})
    return ["run_a", "run_b", "c2st", "run_id_a", "run_id_b"], rows


def log_posterior_c2st(uri: str, recorder: Any, children: Sequence[Mapping[str, Any]],
                       factors: Sequence[str]) -> list[str]:
    """``comparison/posterior_c2st.{csv,md}`` when the children share one observation; the paths logged."""
    from sbilab import tracking

    paired = same_observation_runs(children)
    if not paired:
        return []
    columns, rows = posterior_c2st_rows(
        paired, factors, lambda run_id: tracking.load_run_array(uri, run_id, "posterior_samples.npy"))
    if not rows:
        return []
    recorder.log_text(to_csv(columns, rows), "comparison/posterior_c2st.csv")
    recorder.log_text("# C2ST between the runs' posteriors at the shared observation (0.5: identical)\n\n"
                      + to_markdown(columns, rows), "comparison/posterior_c2st.md")
    return ["comparison/posterior_c2st.csv", "comparison/posterior_c2st.md"]
