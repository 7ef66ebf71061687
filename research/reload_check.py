"""A benchmark child run's logged posterior, reloaded with ``sbilab.load_posterior`` and scored at
sbibm observations other than the one the run was made at (observation 1), with the benchmark's
own sample and C2ST seeds: the numbers must equal the run's ``c2st/obs_<k>``.

    .venv/bin/python research/reload_check.py RUN_ID TRACKING_URI [K ...]
"""

import sys

import torch
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

import sbilab
from sbilab.diagnostics.c2st import c2st_score
from sbilab.rng import RunSeeds, seeded
from sbilab.simulators.sbibm_reference import published_observation

run_id, uri, *ks = sys.argv[1:]
torch.set_num_threads(1)
run = MlflowClient(uri).get_run(run_id)
task, seeds = run.data.tags["sbilab.task"], RunSeeds(int(run.data.params["seed"]))
posterior = sbilab.load_posterior(f"runs:/{run_id}/posterior", tracking_uri=uri)
for k in [int(k) for k in ks] or [2, 7]:
    published = published_observation(task, k)
    with seeded(seeds.benchmark_samples(k)):
        samples = posterior.sample((10_000,), x=torch.as_tensor(published.x, dtype=torch.float32),
                                   show_progress_bars=False)
    with threadpool_limits(limits=1):  # as the benchmark: one BLAS thread for sklearn's classifier
        score = c2st_score(samples, published.samples, seed=seeds.benchmark_c2st(k), max_samples=10_000)
    logged = run.data.metrics[f"c2st/obs_{k}"]
    print(f"{task} obs {k}: reloaded {score:.4f}, run's c2st/obs_{k} {logged:.4f}", flush=True)
