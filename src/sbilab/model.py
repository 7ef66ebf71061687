"""The posterior as an MLflow pyfunc model, saved as code ("models from code").

MLflow stores this file with the model and runs it on load; the model's only
artifact is the run's ``posterior/`` folder (``spec.yaml`` + ``estimator.pt``), which
``sbilab.posterior_io`` rebuilds from configs with ``weights_only=True``. Nothing
is unpickled, so loading a model from a shared store cannot run a stored object.

``predict(x, params={"num_samples": 1000, "seed": 0})``: ``x`` is one summary vector
per row (DataFrame, array or list of rows, ``x_dim`` columns); the result is a
float32 array ``[rows, num_samples, theta_dim]`` of posterior samples, one block per
row. Loading needs sbilab installed (``pip install -e .`` of this project).

Log it with ``sbilab.tracking.log_posterior_model``; load it with
``mlflow.pyfunc.load_model(uri)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model

#: name of the model's artifact that holds the posterior folder
ARTIFACT_KEY = "posterior"
#: default of the ``num_samples`` predict param
DEFAULT_NUM_SAMPLES = 1000
#: the file MLflow saves as the model's code
MODEL_CODE_PATH = Path(__file__).resolve()


class PosteriorModel(mlflow.pyfunc.PythonModel):
    """Posterior samples for each row of x."""

    #: the signature is given when logging; MLflow's type-hint validation would only warn
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        import yaml

        from sbilab.posterior_io import SPEC_FILE, load_posterior_dir

        directory = Path(context.artifacts[ARTIFACT_KEY])
        spec = yaml.safe_load((directory / SPEC_FILE).read_text())
        self.posterior = load_posterior_dir(directory)
        self.x_dim = int(spec["x_dim"])
        self.theta_dim = int(spec["theta_dim"])
        names = spec.get("prior", {}).get("names")
        self.parameter_names = list(names) if names else [f"theta_{i}" for i in range(self.theta_dim)]

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        import torch

        params = params or {}
        num_samples = int(params.get("num_samples", DEFAULT_NUM_SAMPLES))
        seed = int(params.get("seed", 0))
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples}: expected an integer >= 1")
        x = as_rows(model_input, self.x_dim)
        torch.manual_seed(seed)
        samples = [
            self.posterior.sample((num_samples,), x=row[None], show_progress_bars=False).numpy()
            for row in torch.from_numpy(x)
        ]
        if not samples:
            return np.zeros((0, num_samples, self.theta_dim), dtype=np.float32)
        return np.stack(samples).astype(np.float32)


def as_rows(model_input: Any, x_dim: int) -> np.ndarray:
    """DataFrame / array / list / tensor of x rows → float32 ``[N, x_dim]``."""
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    elif hasattr(model_input, "detach"):
        model_input = model_input.detach().cpu().numpy()
    x = np.asarray(model_input, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != x_dim:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected rows of {x_dim} summary values")
    return x


set_model(PosteriorModel())
