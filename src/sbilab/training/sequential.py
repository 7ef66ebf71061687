"""Sequential NPE: several rounds of simulate → train, each round's proposal built from the last posterior
at x_o (the method's ``next_proposal``: the posterior itself for SNPE, the prior truncated to its
highest-density region for TSNPE).

This reproduces sbi's multi-round NPE-C loop (``append_simulations(θ, x, proposal)``
then ``train()`` per round, defaults ``retrain_from_scratch=False``,
``discard_prior_samples=False``):

- round 0 simulates from the prior and trains a fresh network with NPE's loss;
- round r > 0 simulates from the round r−1 posterior at x_o, appends the new pairs to
  all earlier ones, re-splits all of them (new ``randperm``), and continues training the
  *same* network (its z-scoring stays that of round 0) with a new Adam optimiser, a reset
  early-stopping state and sbi NPE-C's atomic loss (:func:`sbilab.methods.atomic_npe_loss`).

Each round seeds the global generator with :func:`sbilab.rng.round_seed` before its split,
so a run is reproducible and the test can replay the same stream through sbi's own trainer.

A truncating method that corrects for regions that are not nested (TSNPE's ``nesting_correction``)
trains each later round with the loss weights of :mod:`sbilab.training.truncation`.
"""

from __future__ import annotations

import time
from copy import deepcopy
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.distributions import Distribution

from sbilab.config import TrainerSettings
from sbilab.methods import SNPE
from sbilab.rng import round_seed
from sbilab.training.fit import TrainingResult, train_estimator
from sbilab.training.truncation import nesting_weights

#: (proposal, round, number of simulations) → (θ [n, D], x [n, d]); round 0's proposal is the prior,
#: later ones the method's ``next_proposal`` (``proposal.sample((n,))`` works for all)
SimulateRound = Callable[[Any, int, int], tuple[Tensor, Tensor]]


def train_sequential(
    method: SNPE,
    estimator_cfg: Mapping[str, Any],
    simulate_round: SimulateRound,
    x_o: Tensor,
    prior: Distribution,
    settings: TrainerSettings,
    seed: int,
    num_simulations: int,
    *,
    callbacks_for_round: Optional[Callable[[int], Sequence[Callback]]] = None,
    on_round_end: Optional[Callable[[int, dict[str, float]], None]] = None,
    embedding_net: Optional[Callable[[], torch.nn.Module]] = None,
) -> tuple[TrainingResult, list[dict[str, float]]]:
    """Run ``method.num_rounds`` rounds; return the last round's training and per-round metrics.

    ``num_simulations`` is the total budget, split with ``method.round_sizes``.
    ``callbacks_for_round(r)``: Lightning callbacks for round r (e.g. an epoch logger
    with a per-round prefix). ``on_round_end(r, metrics)``: called after each round,
    e.g. to log ``metrics`` with step = r. Non-finite rows returned by
    ``simulate_round`` are dropped (counted in ``round/invalid``); the atomic loss
    couples rows, so they cannot stay.

    Per-round metrics: ``round/num_simulations``, ``round/invalid``, ``round/simulate_s``,
    ``round/train_s``, ``round/epochs``, ``round/val_loss_best`` (round 0: −log q; later
    SNPE rounds: the atomic loss, so the values of different rounds do not compare; TSNPE:
    −log q throughout); rounds > 0 also ``round/proposal_s`` (building their proposal) and the
    method's ``proposal_metrics`` (TSNPE: ``round/region_prior_mass``); with the nesting correction
    also ``round/outside_earlier_regions`` (the share of the last region's simulations that some earlier
    region left out) and ``round/max_loss_weight``.
    """
    sizes = method.round_sizes(int(num_simulations))
    x_o = torch.as_tensor(x_o, dtype=torch.float32).reshape(1, -1)
    thetas: list[Tensor] = []
    xs: list[Tensor] = []
    proposal: Any = prior
    proposal_metrics: dict[str, float] = {}  # what building this round's proposal measured
    regions: list[Any] = []  # the truncated proposals of rounds 1, 2, ... (weighted rounds only)
    estimator = None
    result: Optional[TrainingResult] = None
    per_round: list[dict[str, float]] = []
    total_seconds = 0.0
    for round_, size in enumerate(sizes):
        started = time.perf_counter()
        theta, x = simulate_round(proposal, round_, size)
        simulate_s = time.perf_counter() - started
        theta = torch.as_tensor(theta, dtype=torch.float32).reshape(theta.shape[0], -1)
        x = torch.as_tensor(x, dtype=torch.float32).reshape(x.shape[0], -1)
        valid = torch.isfinite(theta).all(dim=1) & torch.isfinite(x).all(dim=1)
        thetas.append(theta[valid])
        xs.append(x[valid])

        round_method = method.at_round(round_, prior)
        callbacks = list(callbacks_for_round(round_)) if callbacks_for_round is not None else []
        weights, weight_metrics = _round_weights(regions, thetas, round_seed(seed, round_))
        result = train_estimator(
            round_method, estimator_cfg, torch.cat(thetas), torch.cat(xs), settings, round_seed(seed, round_),
            callbacks=callbacks, embedding_net=embedding_net if estimator is None else None, estimator=estimator,
            prior=prior, weights=weights,
        )
        estimator = result.estimator
        total_seconds += simulate_s + result.seconds
        metrics = {
            "round/num_simulations": float(theta.shape[0]),
            "round/invalid": float((~valid).sum()),
            "round/simulate_s": simulate_s,
            "round/train_s": result.seconds,
            "round/epochs": float(result.epochs),
            "round/val_loss_best": result.best_val_loss,
            **proposal_metrics,
            **weight_metrics,
        }
        per_round.append(metrics)
        if on_round_end is not None:
            on_round_end(round_, metrics)
        if round_ + 1 < len(sizes):  # the next round's proposal must not follow the network while it trains on
            started = time.perf_counter()
            proposal = method.next_proposal(method.build_posterior(deepcopy(estimator), prior), x_o, prior,
                                            round_seed(seed, round_ + 1))
            proposal_metrics = {**method.proposal_metrics(proposal), "round/proposal_s": time.perf_counter() - started}
            if getattr(method, "nesting_correction", False):
                regions.append(proposal)
            total_seconds += proposal_metrics["round/proposal_s"]

    assert result is not None
    result.extra["rounds"] = per_round
    # what the last round trained on, so an ensemble's further members can train on the same (TSNPE)
    result.extra["last_round_data"] = (torch.cat(thetas), torch.cat(xs), weights, round_method)
    result.extra["total_seconds"] = total_seconds
    result.extra["num_simulations"] = int(sum(t.shape[0] for t in thetas))
    result.extra["last_proposal"] = proposal  # the prior after one round
    return result, per_round


def _round_weights(regions: Sequence[Any], thetas: Sequence[Tensor], seed: int
                   ) -> tuple[Optional[Tensor], dict[str, float]]:
    """The loss weights of a round after truncated ones (``None`` before any), and what they measured.

    ``regions[k]`` produced ``thetas[k + 1]`` (``thetas[0]``: the prior's). Membership asks each
    region's thresholder, whose sbi posterior estimates its leakage by sampling: seeded here, so the
    round's own stream stays the same.
    """
    if not regions:
        return None, {}
    theta = torch.cat(list(thetas))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            inside = [torch.ones(theta.shape[0], dtype=torch.bool)] + [region.contains(theta) for region in regions]
    membership = torch.stack(inside, dim=1)
    weights = nesting_weights(membership, [t.shape[0] for t in thetas])
    last = membership[:, -1]
    metrics = {
        "round/outside_earlier_regions": float((~membership[last].all(dim=1)).float().mean()) if last.any() else 0.0,
        "round/max_loss_weight": float(weights.max() / weights.min()),
    }
    return weights, metrics
