"""Where an slcp posterior's error is: the four modes' weights (signs of θ3, θ4) and each mode's
mean and spread, for a benchmark run's samples against sbibm's published reference samples.

    .venv/bin/python research/slcp_modes.py RUN_ID TRACKING_URI K [K ...]
"""

import sys
import tempfile

import numpy as np
from mlflow.tracking import MlflowClient

from sbilab.simulators.sbibm_reference import published_observation

run_id, uri, *ks = sys.argv[1:]
client = MlflowClient(uri)
for k in map(int, ks):
    with tempfile.TemporaryDirectory() as tmp:
        ours = np.load(client.download_artifacts(run_id, f"samples/obs_{k}.npy", tmp))
    ref = np.asarray(published_observation("slcp", k).samples)
    print(f"obs {k}: mode (sign θ3, sign θ4): weight ours / reference; mean |θ| per dim ours vs reference")
    for s3 in (-1, 1):
        for s4 in (-1, 1):
            a = ours[(np.sign(ours[:, 2]) == s3) & (np.sign(ours[:, 3]) == s4)]
            b = ref[(np.sign(ref[:, 2]) == s3) & (np.sign(ref[:, 3]) == s4)]
            print(f"  ({s3:+d},{s4:+d}) {len(a) / len(ours):.3f} / {len(b) / len(ref):.3f}  "
                  f"mean {np.round(a.mean(0), 2)} vs {np.round(b.mean(0), 2)}  "
                  f"sd {np.round(a.std(0), 2)} vs {np.round(b.std(0), 2)}")
