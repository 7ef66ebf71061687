"""Local calibration at the observation: sbi's L-C2ST (Linhart et al. 2023).

A classifier learns to tell ``(θ_i, x_i)`` (joint draws: the held-out test set) from
``(θ'_i, x_i)`` with ``θ'_i ~ q(θ | x_i)`` (the first of the test set's posterior samples,
already drawn: nothing is sampled again). At x_o its predicted class probabilities over
posterior samples at x_o should sit at 0.5; the statistic is their mean squared distance
from 0.5, its null distribution comes from ``num_trials_null`` classifiers trained on
permuted labels (``LC2ST``) or, for a normalising flow, on two sets of base-distribution
draws (``LC2ST_NF``, tested in the flow's base space, where the null is N(0, I)).

Metrics: ``lc2st/statistic``, ``lc2st/pvalue``; for flows also ``lc2st/nf_statistic``,
``lc2st/nf_pvalue``. Small p: the posterior at x_o differs from the true one there.

Classifier: sbi's default MLP (two hidden layers of 10·D units, early stopping) on z-scored
inputs; ``classifier_patience`` replaces sklearn's 50 epochs without improvement (measured:
the null trials dominate the cost, and most classifiers stop within 60 epochs at 50).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.diagnostics.sampling import as_float_tensor
from sbilab.diagnostics.settings import LC2STSettings
from sbilab.rng import seeded


@dataclass
class LC2STResult:
    """One L-C2ST at x_o: statistic, p-value and what the probability-probability plot needs."""

    variant: str  # "lc2st" (permutation null) or "nf" (the flow's base space)
    statistic: float
    p_value: float
    null_statistics: np.ndarray  # [T]
    probabilities: np.ndarray  # [n_eval] classifier probabilities at x_o
    null_probabilities: np.ndarray  # [T, n_eval] the same under the null
    num_calibration: int  # joint pairs the classifiers were trained on

    @property
    def prefix(self) -> str:
        return "lc2st/" if self.variant == "lc2st" else "lc2st/nf_"

    def metrics(self) -> dict[str, float]:
        return {f"{self.prefix}statistic": float(self.statistic), f"{self.prefix}pvalue": float(self.p_value)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path: the statistic under the null and the probabilities at x_o."""
        name = "lc2st" if self.variant == "lc2st" else "lc2st_nf"
        return {f"diagnostics/{name}_null_statistics.npy": self.null_statistics,
                f"diagnostics/{name}_probabilities.npy": self.probabilities}


def permutation_p_value(statistic: float, null_statistics: np.ndarray) -> float:
    """(1 + #null >= statistic) / (T + 1): exact under the null, never 0 (sbi's is the plain fraction).

    A p-value of 0 would fail any level, so a posterior that is exact would still fail with probability
    1/(T + 1); with the +1 the gate's level holds and a family-wise correction (Holm) can apply to it.
    """
    null_statistics = np.asarray(null_statistics, dtype=np.float64).reshape(-1)
    return float((1 + np.sum(null_statistics >= statistic)) / (null_statistics.size + 1))


def _classifier_kwargs(settings: LC2STSettings, seed: int) -> dict[str, Any]:
    return {"random_state": int(seed) % 2**32, "n_iter_no_change": settings.classifier_patience}


def _evaluate(test: Any, variant: str, x_o: Tensor, num_calibration: int, **theta_o: Tensor) -> LC2STResult:
    """Statistic, p-value and probabilities of a trained sbi L-C2ST object at ``x_o``."""
    observed = test.get_scores(x_o=x_o, trained_clfs=test.trained_clfs, **theta_o)
    null = test.get_statistics_under_null_hypothesis(x_o=x_o, verbosity=0, **theta_o)
    statistic = float(observed.scores.mean())
    null_statistics = np.asarray(null.scores, dtype=np.float64)
    return LC2STResult(
        variant=variant,
        statistic=statistic,
        p_value=permutation_p_value(statistic, null_statistics),
        null_statistics=null_statistics,
        probabilities=np.asarray(observed.probabilities, dtype=np.float64).reshape(-1),
        null_probabilities=np.asarray(null.probabilities, dtype=np.float64).reshape(len(null.scores), -1),
        num_calibration=num_calibration,
    )


def run_lc2st(theta: Tensor, x: Tensor, posterior_samples: Tensor, x_o: Any, theta_o: Any,
              settings: LC2STSettings, *, seed: int) -> LC2STResult:
    """sbi's ``LC2ST``: joint pairs ``(theta, x)`` against ``(posterior_samples, x)`` (one posterior
    sample per x), evaluated on ``theta_o``, posterior samples at ``x_o``."""
    from sbi.diagnostics import LC2ST

    theta_o = as_float_tensor(theta_o)
    theta_o = theta_o[torch.isfinite(theta_o).all(dim=1)]
    if theta_o.shape[0] == 0:
        raise ValueError("no finite posterior samples at x_o")
    with seeded(seed):
        test = LC2ST(as_float_tensor(theta), as_float_tensor(x), as_float_tensor(posterior_samples),
                     seed=int(seed) % 2**31, z_score=True, num_trials_null=settings.num_trials_null,
                     classifier_kwargs=_classifier_kwargs(settings, seed))
        test.train_on_observed_data(verbosity=0).train_under_null_hypothesis(verbosity=0)
        return _evaluate(test, "lc2st", as_float_tensor(x_o).reshape(-1), theta.shape[0], theta_o=theta_o)


def flow_of(posterior: Any) -> Optional[Any]:
    """The normalising flow behind an sbi ``DirectPosterior`` whose base distribution is N(0, I),
    or None (ensembles, MCMC posteriors, mixture density networks, vector fields)."""
    estimator = getattr(posterior, "posterior_estimator", None)
    if estimator is None or not hasattr(estimator, "inverse_transform"):
        return None
    return estimator if standard_normal_base(estimator) else None


def standard_normal_base(estimator: Any) -> bool:
    """Whether a zuko or nflows flow (as sbi wraps them) maps to a standard normal base."""
    net = getattr(estimator, "net", None)
    base = getattr(net, "base", None)
    if base is not None:  # zuko: an unconditional distribution module
        dist = base()
        try:
            return bool(torch.allclose(dist.mean, torch.zeros_like(dist.mean))
                        and torch.allclose(dist.stddev, torch.ones_like(dist.stddev)))
        except NotImplementedError:
            return False
    # nflows keeps its base in a private attribute; sbi's builders always use StandardNormal
    return type(getattr(net, "_distribution", None)).__name__ == "StandardNormal"


def run_lc2st_nf(theta: Tensor, x: Tensor, posterior_samples: Tensor, x_o: Any, flow: Any,
                 settings: LC2STSettings, *, seed: int, num_eval: int) -> LC2STResult:
    """sbi's ``LC2ST_NF``: the same test in the flow's base space (null: N(0, I), no permutations);
    ``num_eval`` base draws are evaluated at ``x_o``."""
    from sbi.diagnostics import LC2ST_NF

    theta, x, posterior_samples = (as_float_tensor(t) for t in (theta, x, posterior_samples))
    dim = theta.shape[1]
    base = torch.distributions.MultivariateNormal(torch.zeros(dim), torch.eye(dim))

    def inverse(t: Tensor, xs: Tensor) -> Tensor:
        with torch.no_grad():
            return flow.inverse_transform(t, xs)

    with seeded(seed):
        test = LC2ST_NF(theta, x, posterior_samples, flow_inverse_transform=inverse, flow_base_dist=base,
                        num_eval=num_eval, seed=int(seed) % 2**31, z_score=True,
                        num_trials_null=settings.num_trials_null,
                        classifier_kwargs=_classifier_kwargs(settings, seed))
        test.train_on_observed_data(verbosity=0).train_under_null_hypothesis(verbosity=0)
        return _evaluate(test, "nf", as_float_tensor(x_o).reshape(-1), theta.shape[0])
