"""slcp's mode weights come from the chains' starts: rescore a logged NLE posterior at one observation
with a larger pool of candidate starts (``init_strategy_parameters.num_candidate_samples``), same seeds.

    .venv/bin/python research/slcp_pool.py RUN_ID TRACKING_URI K POOL
"""

import sys

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

import sbilab
from sbilab.diagnostics.c2st import c2st_score
from sbilab.rng import RunSeeds, seeded
from sbilab.simulators.sbibm_reference import published_observation

run_id, uri, k, pool = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
run = MlflowClient(uri).get_run(run_id)
seeds = RunSeeds(int(run.data.params["seed"]))
posterior = sbilab.load_posterior(f"runs:/{run_id}/posterior", tracking_uri=uri)
published = published_observation("slcp", k)
with seeded(seeds.benchmark_samples(k)):
    samples = posterior.sample((10_000,), x=torch.as_tensor(published.x, dtype=torch.float32),
                               init_strategy_parameters={"num_candidate_samples": pool}, show_progress_bars=False)
signs = np.sign(samples[:, 2:4].numpy())
weights = [float(np.mean((signs[:, 0] == a) & (signs[:, 1] == b))) for a in (-1, 1) for b in (-1, 1)]
with threadpool_limits(limits=1):
    score = c2st_score(samples, published.samples, seed=seeds.benchmark_c2st(k), max_samples=10_000)
print(f"slcp obs {k}, pool {pool}: c2st {score:.4f} (run's {run.data.metrics[f'c2st/obs_{k}']:.4f}); "
      f"mode weights {np.round(weights, 3)}", flush=True)
