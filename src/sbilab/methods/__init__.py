"""Inference methods: which sbi estimator to build, its training loss, and the posterior.

A method is what differs between NPE, NLE, NRE, FMPE, NPSE and sequential NPE: the
network family, the per-sample loss the Lightning loop minimises, and how the
trained network becomes an sbi posterior (and how that posterior is sampled).
Everything else (data, loop, diagnostics, records) is shared.

Families and the sbi builder each one uses:

==========  ==============  =========================  ===================================
method      family          builder                    posterior (default ``sample_with``)
==========  ==============  =========================  ===================================
npe, snpe   density         ``posterior_nn``           DirectPosterior (``direct``)
nle         density         ``likelihood_nn``          MCMCPosterior (``mcmc``, slice)
nre         classifier      ``classifier_nn``          MCMCPosterior (``mcmc``, slice)
fmpe        vector_field    ``posterior_flow_nn``      VectorFieldPosterior (``ode``)
npse        vector_field    ``posterior_score_nn``     VectorFieldPosterior (``sde``)
==========  ==============  =========================  ===================================

An ``estimator`` config names its sbi ``model`` and may state its ``family``
(``density`` / ``classifier`` / ``vector_field``); without ``family`` the family is
inferred from the model name (``mlp`` is both a classifier and a vector field).

Losses that differ from sbi's trainers (all tested against sbi in tests/test_methods.py):

- NRE-B / NRE-C: sbi computes the contrastive loss of a batch as one scalar inside
  its trainer; here the method returns the per-row terms whose mean is that scalar,
  so the gradient step is identical. sbi then divides its *logged* epoch losses by
  the batch size a second time (its ``_loss`` is already a mean); ``val/loss`` here
  is the plain mean (sbi's value × batch size). Early stopping decisions are the same.
- FMPE / NPSE: sbi logs an EMA of the losses and stops on a statistical rule (an
  epoch counts as "no improvement" only when its loss is > 2 std above the best).
  sbilab trains the same per-sample loss, evaluates the validation loss on sbi's
  fixed grid of diffusion/flow times (``validation_times``, nugget 0.05; the mean
  over the grid per row) and uses the same Lightning early stopping on the raw
  validation loss as for every other method, with the best weights restored. Why:
  one stopping rule and one loss-curve meaning across methods, so runs compare in
  MLflow; the fixed time grid already removes the time-sampling variance that the
  2-σ rule was designed for, and best-weight restore makes a noisy late epoch harmless.
- SNPE: round 0 is NPE's loss; later rounds use sbi NPE-C's atomic (APT) loss,
  ``num_atoms`` contrasting θ drawn from the rest of the batch. sbi switches to its
  closed-form MoG loss when proposal, network and prior are all MoG/Gaussian/uniform;
  sbilab always uses the atomic loss (also for ``mdn``).
- TSNPE: every round is NPE's loss on all simulations so far (sbi's ``force_first_round_loss=True``);
  later rounds draw from sbi's ``RestrictedPrior`` with ``get_density_thresholder``, sampled by
  rejection from the prior, as in sbi's TSNPE tutorial.
"""


from __future__ import annotations

from typing import Any, Mapping

from sbilab.methods.base import Method
from sbilab.methods.estimators import (
    CLASSIFIER_MODELS,
    DENSITY_MODELS,
    FAMILY_MODELS,
    POSTERIOR_MODELS,
    UNCONSTRAINED,
    VECTOR_FIELD_MODELS,
    estimator_family,
    estimator_kwargs,
    placeholder_batch,
)
from sbilab.methods.nle import NLE
from sbilab.methods.npe import NPE, SNPE, TSNPE, atomic_npe_loss
from sbilab.methods.nre import NRE, classifier_logits, nre_b_loss, nre_c_loss
from sbilab.methods.samplers import POSTERIOR_PARAMETERS, FittedVIPosterior
from sbilab.methods.vector_field import FMPE, NPSE

#: ``method.name`` → class (each ``conf/method/*.yaml`` names its class with ``_target_``)
METHODS: dict[str, type[Method]] = {"npe": NPE, "snpe": SNPE, "tsnpe": TSNPE, "nle": NLE, "nre": NRE, "fmpe": FMPE,
                                    "npse": NPSE}


def methods_for_estimator(estimator_cfg: Mapping[str, Any]) -> list[str]:
    """Names of the methods that can train this estimator config."""
    fits = []
    for name, cls in METHODS.items():
        if estimator_cfg.get("model") in cls.models and estimator_family(estimator_cfg) in (None, cls.family) \
                and cls.accepts_z_scoring(estimator_cfg):
            fits.append(name)
    return fits


__all__ = [
    "CLASSIFIER_MODELS", "DENSITY_MODELS", "FAMILY_MODELS", "FMPE", "FittedVIPosterior", "METHODS", "Method", "NLE",
    "NPE", "NPSE", "NRE", "POSTERIOR_MODELS", "POSTERIOR_PARAMETERS", "SNPE", "TSNPE", "UNCONSTRAINED",
    "VECTOR_FIELD_MODELS", "atomic_npe_loss", "classifier_logits", "estimator_family", "estimator_kwargs",
    "methods_for_estimator", "nre_b_loss", "nre_c_loss", "placeholder_batch",
]
