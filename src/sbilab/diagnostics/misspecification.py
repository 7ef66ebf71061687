"""Could the simulator have produced x_o? Tests of x_o against the prior predictive.

The prior predictive is the held-out test set's x (simulated from the prior, drawn anyway).
Two of sbi's tests (``sbi.diagnostics.misspecification``):

* MMD (Schmitt et al. 2023): the kernel MMD between x_o and the prior predictive against its
  distribution when x_o is itself a prior-predictive draw (``mmd_num_shuffles`` shuffles of
  ``mmd_max_samples`` simulations). Statistics are z-scored with the prior predictive's mean
  and standard deviation first: the kernel's bandwidth is one number, and summary statistics
  live on scales from 0.01 to 300 (HH). Run in summary space, and in the learned embedding's
  space when the summary has an embedding net (``summary=hh_cnn``).
* Marginal log-probability: a flow of p(x) (sbi's ``MarginalTrainer``, zuko MAF) trained on
  80 % of the prior predictive; the p-value is the fraction of the other 20 % whose
  log-density is below x_o's. Run on the embedding when there is one (a flow on a raw trace
  of hundreds of values does not train on 1,000 simulations), else on the summaries.

``misspecified`` when any p-value is below ``alpha`` (0.01: an x_o the simulator produces is
flagged with probability at most about 2 % over the two or three tests). A warning about x_o,
not a calibration gate: the posterior is still recorded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from sbilab.diagnostics.sampling import as_float_tensor
from sbilab.diagnostics.settings import MisspecificationSettings
from sbilab.rng import seeded


@dataclass
class MMDTest:
    """sbi's MMD misspecification test in one space."""

    space: str  # "summary" or "embedding"
    p_value: float
    statistic: float  # MMD between x_o and the prior predictive
    null: np.ndarray  # [shuffles] MMDs of prior-predictive draws


@dataclass
class MisspecificationResult:
    """The misspecification tests of x_o and their verdict."""

    alpha: float
    mmd: MMDTest
    mmd_embedding: Optional[MMDTest] = None
    logprob_p_value: Optional[float] = None
    logprob_space: str = ""
    logprob_reference: Optional[np.ndarray] = None  # [n] log-densities of held-out simulations
    logprob_observation: Optional[float] = None  # log-density of x_o
    notes: list[str] = field(default_factory=list)

    @property
    def p_values(self) -> dict[str, float]:
        """Every test's p-value by metric name."""
        out = {"misspecification/mmd_pvalue": self.mmd.p_value}
        if self.mmd_embedding is not None:
            out["misspecification/mmd_embedding_pvalue"] = self.mmd_embedding.p_value
        if self.logprob_p_value is not None:
            out["misspecification/logprob_pvalue"] = self.logprob_p_value
        return out

    @property
    def misspecified(self) -> bool:
        """Whether any test rejects "x_o comes from the prior predictive" at ``alpha``."""
        return any(p < self.alpha for p in self.p_values.values())

    def metrics(self) -> dict[str, float]:
        out = {**self.p_values, "misspecification/mmd": self.mmd.statistic,
               "misspecification/misspecified": float(self.misspecified)}
        if self.mmd_embedding is not None:
            out["misspecification/mmd_embedding"] = self.mmd_embedding.statistic
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Raw arrays by artifact path: the null distributions the observation was compared with."""
        out = {"diagnostics/misspecification_mmd_null.npy": self.mmd.null}
        if self.mmd_embedding is not None:
            out["diagnostics/misspecification_mmd_embedding_null.npy"] = self.mmd_embedding.null
        if self.logprob_reference is not None:
            out["diagnostics/misspecification_logprob_reference.npy"] = self.logprob_reference
        return out


def standardise(reference: Tensor, *others: Tensor) -> list[Tensor]:
    """``reference`` and ``others`` z-scored with the reference's column means and deviations."""
    mean = reference.mean(dim=0)
    std = reference.std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return [(t - mean) / std for t in (reference, *others)]


def mmd_test(prior_predictive: Tensor, x_o: Tensor, space: str, settings: MisspecificationSettings) -> MMDTest:
    """sbi's ``calc_misspecification_mmd`` on z-scored statistics (the caller seeds the shuffles)."""
    from sbi.diagnostics.misspecification import calc_misspecification_mmd

    ref, obs = standardise(prior_predictive, x_o.reshape(1, -1))
    p_value, (null, statistic) = calc_misspecification_mmd(obs, ref, mode="x_space",
                                                           n_shuffle=settings.mmd_num_shuffles,
                                                           max_samples=min(settings.mmd_max_samples, ref.shape[0]))
    return MMDTest(space=space, p_value=float(p_value), statistic=float(statistic),
                   null=np.asarray(null, dtype=np.float64))


def logprob_test(prior_predictive: Tensor, x_o: Tensor, settings: MisspecificationSettings,
                 notes: list[str]) -> tuple[float, np.ndarray, float]:
    """sbi's ``calc_misspecification_logprob`` with a marginal flow trained on 80 % of the prior predictive
    (the caller seeds). Returns the p-value, the held-out log-densities and x_o's."""
    from sbi.diagnostics.misspecification import calc_misspecification_logprob
    from sbi.inference import MarginalTrainer
    from sbi.neural_nets.factory import ZukoFlowType, marginal_nn

    order = torch.randperm(prior_predictive.shape[0])
    split = int(0.8 * prior_predictive.shape[0])
    fit, held_out = prior_predictive[order[:split]], prior_predictive[order[split:]]
    trainer = MarginalTrainer(density_estimator=marginal_nn(ZukoFlowType.MAF), tracker=_NoTracking(),
                              show_progress_bars=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "max_num_epochs reached": a capped flow is good enough for a p-value
        flow = trainer.append_samples(fit).train(max_num_epochs=settings.logprob_max_epochs)
    flow.eval()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        p_value, _ = calc_misspecification_logprob(held_out, x_o.reshape(1, -1), flow, alpha=settings.alpha)
        reference = flow.log_prob(held_out).double().numpy()
        observed = float(flow.log_prob(x_o.reshape(1, -1)).reshape(-1)[0])
    for warning in caught:
        if "c2st" in str(warning.message):
            notes.append("marginal log-prob test: its flow is distinguishable from the simulations "
                         f"({str(warning.message).splitlines()[0]}); read its p-value as indicative")
    return float(p_value), reference, observed


class _NoTracking:
    """An sbi tracker that records nothing (sbi's default writes TensorBoard files to ./sbi-logs)."""

    log_dir = None

    def log_metric(self, *args: Any, **kwargs: Any) -> None: ...
    def log_metrics(self, *args: Any, **kwargs: Any) -> None: ...
    def log_params(self, *args: Any, **kwargs: Any) -> None: ...
    def add_figure(self, *args: Any, **kwargs: Any) -> None: ...
    def flush(self) -> None: ...


def check_misspecification(
    prior_predictive_x: Any,
    x_o: Any,
    settings: MisspecificationSettings,
    *,
    seed: int,
    embedding_net: Optional[Callable[[Tensor], Tensor]] = None,
) -> MisspecificationResult:
    """The MMD tests (summary space, and embedding space with ``embedding_net``) and the marginal
    log-prob test of ``x_o [d]`` against ``prior_predictive_x [N, d]`` (finite rows only)."""
    x = as_float_tensor(prior_predictive_x)
    x = x.reshape(x.shape[0], -1)
    x = x[torch.isfinite(x).all(dim=1)]
    obs = as_float_tensor(x_o).reshape(-1)
    notes: list[str] = []
    with seeded(seed):
        mmd = mmd_test(x, obs, "summary", settings)
        embedded: Optional[tuple[Tensor, Tensor]] = None
        mmd_embedding = None
        if embedding_net is not None:
            with torch.no_grad():
                embedded = (as_float_tensor(embedding_net(x)), as_float_tensor(embedding_net(obs[None]))[0])
            mmd_embedding = mmd_test(*embedded, "embedding", settings)
        result = MisspecificationResult(alpha=settings.alpha, mmd=mmd, mmd_embedding=mmd_embedding, notes=notes)
        if settings.logprob:
            space, (ref, o) = ("embedding", embedded) if embedded is not None else ("summary", (x, obs))
            ref, o = standardise(ref, o)  # the flow z-scores too; this keeps x_o = 1e6 finite in float32 steps
            p, reference, observed = logprob_test(ref, o, settings, notes)
            result.logprob_p_value, result.logprob_space = p, space
            result.logprob_reference, result.logprob_observation = reference, observed
    return result
