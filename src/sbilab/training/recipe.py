"""``recipe=auto``: the training a model nobody tuned for gets.

The HH defaults (a cosine schedule over 300 epochs at batch 1,000) were tuned for 30,000 HH
simulations; on another model they waste epochs or stop a fit that still improves. The recipe
instead

- sizes the training by the budget N: batch ``N / batches_per_epoch`` as a power of two in
  [32, 512], learning rate 5e-4 scaled by √(batch/200) (sbi's 5e-4 at sbi's batch 200), a
  validation split of at least 256 pairs, and no epoch cap: early stopping on the held-out loss
  (patience 20) with the learning rate halved on plateaus (``recipe.lr_decay=none``: sbi's constant rate);
- trains each candidate estimator (``recipe.candidates``) on one shared train/validation split,
  so their held-out losses -log q(θ|x) are comparable, then ``extra_seeds`` more networks of the
  best one (other initialisation and batch order); a candidate with ``training: sbi`` is trained
  as plain sbi trains (batch 200, rate 5e-4, constant): the budget-sized training is not better
  on every model (bernoulli_glm: 0.06-0.13 nats a pair worse), so the held-out score chooses between them;
- mixes the networks greedily: starting from the best, a network joins the equal-weight mixture
  only when it lowers the mixture's held-out loss by more than ``min_gain`` nats per pair
  (Caruana et al. 2004's ensemble selection), so an ensemble is used only where it pays;
- stops starting networks once the next would likely pass ``time_budget_s``;
- returns what it tried, what it chose and why, for the run record (``recipe.json``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from sbilab.config import LrDecay, RecipeSettings, TrainerSettings
from sbilab.ensemble import mixture_log_prob
from sbilab.methods import Method
from sbilab.rng import member_seed
from sbilab.training.ensemble import EnsembleTraining
from sbilab.training.fit import TrainingResult, train_estimator

#: the smallest validation split the choice is made on (pairs)
MIN_VALIDATION_PAIRS = 256
#: sbi's own training (``trainer=sbi``'s defaults), for candidates with ``training: sbi``
SBI_TRAINING = TrainerSettings()


def recipe_settings(base: TrainerSettings, num_simulations: int, recipe: RecipeSettings) -> TrainerSettings:
    """The trainer settings for a budget of ``num_simulations`` (device and progress kept from ``base``)."""
    batch = 2 ** round(math.log2(max(1.0, num_simulations / recipe.batches_per_epoch)))
    batch = int(min(512, max(32, batch)))
    validation_fraction = min(0.25, max(0.1, MIN_VALIDATION_PAIRS / max(1, num_simulations)))
    return replace(base, batch_size=batch, learning_rate=5e-4 * math.sqrt(batch / 200),
                   validation_fraction=round(validation_fraction, 4), stop_after_epochs=20, clip_max_norm=5.0,
                   max_epochs=-1,
                   lr_decay=LrDecay(schedule="plateau", factor=0.5, patience=5, min_lr=1e-6)
                   if recipe.lr_decay == "plateau" else None,
                   weight_averaging=None, ensemble_size=1)


def candidate_settings(settings: TrainerSettings, config: Mapping[str, Any]) -> TrainerSettings:
    """The training of one candidate: ``training: sbi`` takes sbi's batch size and constant rate; the split,
    early stopping and clipping stay the recipe's (the split is shared; sbi's stopping and clipping are the same)."""
    if config.get("training", "recipe") != "sbi":
        return settings
    return replace(settings, batch_size=SBI_TRAINING.batch_size, learning_rate=SBI_TRAINING.learning_rate,
                   lr_decay=None)


@dataclass
class Candidate:
    """One network the recipe trained, with its held-out score."""

    name: str
    config: dict[str, Any]
    seed: int
    result: Optional[TrainingResult] = None
    heldout_log_prob: Optional[Tensor] = None  # [N_val] log q(θ|x) on the shared validation split
    error: Optional[str] = None

    @property
    def heldout_loss(self) -> float:
        return float("inf") if self.heldout_log_prob is None else float(-self.heldout_log_prob.mean())

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "seed": self.seed,
                               "training": str(self.config.get("training", "recipe"))}
        if self.error is not None:
            return {**row, "error": self.error}
        assert self.result is not None
        return {**row, "heldout_loss": round(self.heldout_loss, 5), "epochs": self.result.epochs,
                "seconds": round(self.result.seconds, 1)}


@dataclass
class RecipeChoice:
    """What the recipe tried and chose, and why (``recipe.json`` in the run)."""

    settings: TrainerSettings
    candidates: list[Candidate]
    chosen: list[int]  # indices into candidates, the mixture's members in the order they joined
    mixture_loss: float
    skipped: list[str] = field(default_factory=list)

    @property
    def members(self) -> list[Candidate]:
        return [self.candidates[i] for i in self.chosen]

    def summary(self) -> str:
        """One line for the terminal: what was chosen and by how much it beat the best single network."""
        names = " + ".join(c.name for c in self.members)
        best = min(c.heldout_loss for c in self.candidates)
        gain = best - self.mixture_loss
        what = f"a mixture of {len(self.chosen)} ({names})" if len(self.chosen) > 1 else names
        tried = ", ".join(f"{c.name} {c.heldout_loss:.3f}" for c in self.candidates if c.error is None)
        return (f"recipe=auto chose {what}: held-out -log q {self.mixture_loss:.3f}"
                + (f" ({gain:.3f} below the best single network)" if len(self.chosen) > 1 else "")
                + f"; tried {tried}")

    def next_step(self, recipe: RecipeSettings, num_simulations: int) -> str:
        """What the recipe would try next when the run's gates fail (one line)."""
        steps = [f"twice the simulations (simulation.num_simulations={2 * num_simulations})"]
        if len(self.chosen) >= recipe.max_members or self.skipped:
            steps.append(f"a larger mixture (recipe.max_members={recipe.max_members + 2} "
                         f"recipe.extra_seeds={recipe.extra_seeds + 2} recipe.time_budget_s="
                         f"{int(recipe.time_budget_s * 2)})")
        else:
            steps.append(f"more networks of the best candidate (recipe.extra_seeds={recipe.extra_seeds + 3})")
        return "recipe=auto would try next: " + ", then ".join(steps)

    def record(self) -> dict[str, Any]:
        s = self.settings
        return {
            "settings": {"batch_size": s.batch_size, "learning_rate": round(s.learning_rate, 6),
                         "validation_fraction": s.validation_fraction, "stop_after_epochs": s.stop_after_epochs,
                         "max_epochs": s.max_epochs,
                         "lr_decay": "plateau (factor 0.5, patience 5)" if s.lr_decay else "none (constant rate)",
                         "training: sbi": f"batch_size {SBI_TRAINING.batch_size}, learning_rate "
                                          f"{SBI_TRAINING.learning_rate:g}, constant rate (the rest as above)"},
            "candidates": [c.row() for c in self.candidates],
            "chosen": [self.candidates[i].name for i in self.chosen],
            "mixture_heldout_loss": round(self.mixture_loss, 5),
            "skipped": self.skipped,
            "why": self.summary(),
        }

    def metrics(self) -> dict[str, float]:
        return {"recipe/heldout_loss": self.mixture_loss, "recipe/members": float(len(self.chosen)),
                "recipe/networks_trained": float(sum(c.error is None for c in self.candidates))}


def candidate_name(config: Mapping[str, Any]) -> str:
    """A short name: the config's ``name`` or its sbi model."""
    return str(config.get("name") or config.get("model"))


@torch.no_grad()
def heldout_log_prob(method: Method, result: TrainingResult, theta: Tensor, x: Tensor) -> Tensor:
    """log q(θ|x) of the trained network on its validation rows (the split every candidate shares)."""
    val = result.extra["split"].val
    estimator = result.estimator.eval()
    return -method.validation_loss(estimator, theta[val], x[val]).detach().double()


def mixture_loss(log_probs: Sequence[Tensor]) -> float:
    """Held-out -log of the equal-weight mixture of the networks' densities, per pair."""
    weights = torch.full((len(log_probs),), 1.0 / len(log_probs), dtype=torch.float64)
    return float(-mixture_log_prob(list(log_probs), weights).mean())


def select_mixture(candidates: Sequence[Candidate], max_members: int, min_gain: float) -> tuple[list[int], float]:
    """Greedy forward selection: the best network, then whichever lowers the mixture's held-out loss most,
    while it lowers it by more than ``min_gain`` and the mixture has fewer than ``max_members``."""
    usable = [i for i, c in enumerate(candidates) if c.heldout_log_prob is not None
              and math.isfinite(c.heldout_loss)]
    if not usable:
        raise RuntimeError("recipe=auto: no candidate network trained; see recipe.json for their errors")
    chosen = [min(usable, key=lambda i: candidates[i].heldout_loss)]
    loss = candidates[chosen[0]].heldout_loss
    while len(chosen) < max_members:
        trials = {i: mixture_loss([candidates[j].heldout_log_prob for j in (*chosen, i)])  # type: ignore[misc]
                  for i in usable if i not in chosen}
        if not trials:
            break
        best = min(trials, key=trials.__getitem__)
        if loss - trials[best] <= min_gain:
            break
        chosen.append(best)
        loss = trials[best]
    return chosen, loss


def fit_recipe(
    method: Method, theta: Tensor, x: Tensor, base: TrainerSettings, recipe: RecipeSettings, seed: int,
    callbacks_for: Callable[[int], Sequence[Callback]] = lambda k: (), *,
    prior: Optional[Any] = None, embedding_net: Optional[Callable[[], Any]] = None,
) -> tuple[EnsembleTraining, RecipeChoice]:
    """Train the candidates and extra seeds of the best on one split; return the chosen mixture and the record.

    ``callbacks_for(k)``: Lightning callbacks of the k-th network trained (the run logs its epochs).
    """
    settings = recipe_settings(base, theta.shape[0], recipe)
    started = time.perf_counter()
    candidates: list[Candidate] = []
    skipped: list[str] = []

    def train(config: Mapping[str, Any], name: str) -> None:
        k = len(candidates)
        candidate = Candidate(name, dict(config), member_seed(seed, k))
        spent = time.perf_counter() - started
        longest = max((c.result.seconds for c in candidates if c.result is not None), default=0.0)
        if candidates and spent + longest > recipe.time_budget_s:
            skipped.append(f"{name}: the time budget ({recipe.time_budget_s:.0f} s) would be passed "
                           f"({spent:.0f} s spent, the longest network took {longest:.0f} s)")
            return
        try:
            candidate.result = train_estimator(method, config, theta, x, candidate_settings(settings, config),
                                               candidate.seed, callbacks_for(k),
                                               embedding_net=embedding_net, prior=prior, split_seed=seed)
            candidate.heldout_log_prob = heldout_log_prob(method, candidate.result, theta, x)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # a candidate that cannot model this prior or data: the others still can
            candidate.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
        candidates.append(candidate)

    for config in recipe.candidates:
        train(config, candidate_name(config))
    trained = [c for c in candidates if c.result is not None and math.isfinite(c.heldout_loss)]
    if not trained:
        raise RuntimeError("recipe=auto: every candidate failed: "
                           + "; ".join(f"{c.name}: {c.error}" for c in candidates))
    best = min(trained, key=lambda c: c.heldout_loss)
    for extra in range(recipe.extra_seeds):
        train(best.config, f"{best.name}#{extra + 2}")
    chosen, loss = select_mixture(candidates, recipe.max_members, recipe.min_gain)
    choice = RecipeChoice(settings, candidates, chosen, loss, skipped)
    members = [candidates[i].result for i in chosen]
    return EnsembleTraining([m for m in members if m is not None],
                            configs=[candidates[i].config for i in chosen], choice=choice), choice
