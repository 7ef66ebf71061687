"""recipe=auto: training sized by the budget, candidates compared on one held-out split, a mixture only where
it lowers the held-out loss, and the choice recorded; chosen by default for a model nobody named parts for."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
from conftest import run_train
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient
from sbi.utils import BoxUniform

from sbilab.config import RecipeSettings, TrainerSettings, recipe_decision
from sbilab.errors import ConfigError
from sbilab.methods import NLE, NPE
from sbilab.posterior_io import estimators_state, posterior_spec, rebuild_posterior
from sbilab.spec import check_recipe
from sbilab.training.recipe import Candidate, fit_recipe, mixture_loss, recipe_settings, select_mixture

SMALL = [
    {"name": "small_nsf", "model": "zuko_nsf", "hidden_features": 16, "num_transforms": 2,
     "z_score_theta": "transform_to_unconstrained", "z_score_x": "independent"},
    {"name": "small_maf", "model": "maf", "hidden_features": 16, "num_transforms": 2,
     "z_score_theta": "independent", "z_score_x": "independent"},
]


def test_training_is_sized_by_the_budget_with_no_epoch_cap():
    recipe = RecipeSettings(candidates=SMALL)
    small, sbibm, large = (recipe_settings(TrainerSettings(), n, recipe) for n in (500, 10_000, 100_000))
    assert (small.batch_size, sbibm.batch_size, large.batch_size) == (32, 256, 512)
    assert small.validation_fraction == 0.25 and sbibm.validation_fraction == 0.1  # >= 256 held-out pairs
    assert sbibm.learning_rate == pytest.approx(5e-4 * math.sqrt(256 / 200))
    assert all(s.max_epochs == -1 and s.lr_decay.schedule == "plateau" for s in (small, sbibm, large))
    constant = recipe_settings(TrainerSettings(), 10_000, RecipeSettings(candidates=SMALL, lr_decay="none"))
    assert constant.lr_decay is None and constant.batch_size == sbibm.batch_size  # sbi's constant rate


class SeenTraining(Callback):
    """What Lightning actually trained with: batch size, starting learning rate, whether a scheduler decays it."""

    def __init__(self, seen: dict[int, tuple[int, float, bool]], k: int) -> None:
        self.seen, self.k = seen, k

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == 0:
            self.seen[self.k] = (len(batch[0]), trainer.optimizers[0].param_groups[0]["lr"],
                                 bool(trainer.lr_scheduler_configs))


def test_a_candidate_with_sbi_training_trains_as_plain_sbi_does_on_the_shared_split():
    torch.manual_seed(1)
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    theta = prior.sample((3000,))
    x = theta + 0.3 * torch.randn_like(theta)
    sbi_maf = {**SMALL[1], "name": "small_maf_sbi", "training": "sbi"}
    recipe = RecipeSettings(apply="always", candidates=[SMALL[1], sbi_maf], extra_seeds=0)
    seen: dict[int, tuple[int, float, bool]] = {}
    _, choice = fit_recipe(NPE(), theta, x, TrainerSettings(), recipe, seed=0, prior=prior,
                           callbacks_for=lambda k: [SeenTraining(seen, k)])
    ours = recipe_settings(TrainerSettings(), 3000, recipe)
    assert seen[0] == (ours.batch_size, pytest.approx(ours.learning_rate), True)  # budget-sized, plateau decay
    assert seen[1] == (200, pytest.approx(5e-4), False)  # sbi's batch and constant rate
    assert torch.equal(choice.candidates[0].result.extra["split"].val, choice.candidates[1].result.extra["split"].val)
    assert [row["training"] for row in choice.record()["candidates"]] == ["recipe", "sbi"]
    with pytest.raises(ConfigError, match=r"recipe.candidates\[1\].training='fast'; allowed: recipe, sbi"):
        check_recipe(RecipeSettings(apply="always", candidates=[SMALL[1], {**sbi_maf, "training": "fast"}]), NPE())


def candidate(name: str, log_prob: list[float]) -> Candidate:
    return Candidate(name, {"model": name}, 0, heldout_log_prob=torch.tensor(log_prob, dtype=torch.float64))


def test_a_network_joins_the_mixture_only_when_it_lowers_the_heldout_loss():
    # a and b are good on different halves of the held-out pairs; c copies a (mixing it gains nothing)
    a = candidate("a", [0.0, 0.0, -4.0, -4.0])
    b = candidate("b", [-4.0, -4.0, 0.0, -0.1])
    c = candidate("c", [0.0, 0.0, -4.0, -4.0])
    chosen, loss = select_mixture([a, b, c], max_members=4, min_gain=0.005)
    assert chosen == [0, 1]  # a (lowest loss, ties to the first), then b; c would not lower the loss
    assert loss == pytest.approx(mixture_loss([a.heldout_log_prob, b.heldout_log_prob]))
    assert loss < a.heldout_loss
    alone, _ = select_mixture([a, b, c], max_members=1, min_gain=0.0)
    assert alone == [0]
    strict, _ = select_mixture([a, b, c], max_members=4, min_gain=10.0)
    assert strict == [0]


def test_recipe_compares_networks_on_one_split_and_its_mixture_round_trips():
    torch.manual_seed(0)
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    theta = prior.sample((600,))
    x = theta + 0.3 * torch.randn_like(theta)
    recipe = RecipeSettings(apply="always", candidates=SMALL, extra_seeds=1, max_members=3, min_gain=0.0)
    method = NPE()
    networks, choice = fit_recipe(method, theta, x, TrainerSettings(), recipe, seed=3, prior=prior)
    best = min(choice.candidates[:2], key=lambda c: c.heldout_loss)
    assert [c.name for c in choice.candidates] == ["small_nsf", "small_maf", f"{best.name}#2"]
    vals = [c.result.extra["split"].val for c in choice.candidates]
    assert all(torch.equal(vals[0], v) for v in vals[1:])  # one shared validation split
    assert len({c.seed for c in choice.candidates}) == 3  # but different initialisations
    assert choice.mixture_loss <= min(c.heldout_loss for c in choice.candidates) + 1e-9
    record = choice.record()
    assert record["chosen"] == [c.name for c in choice.members] and record["settings"]["batch_size"] == 32
    assert "recipe=auto chose" in choice.summary()
    assert "simulation.num_simulations=1200" in choice.next_step(recipe, 600)
    # the chosen networks, possibly of different estimators, are saved and rebuilt as one posterior
    prior_cfg = {"_target_": "sbilab.priors.box_uniform", "low": [-2.0, -2.0], "high": [2.0, 2.0],
                 "names": ["a", "b"]}
    spec = posterior_spec({"_target_": "sbilab.methods.NPE"}, networks.configs[0], prior_cfg, 2, 2,
                          ensemble_size=len(networks.members), member_estimators=networks.configs)
    rebuilt = rebuild_posterior(spec, estimators_state(networks.estimators))
    members = networks.estimators
    lp_members = torch.stack([m.log_prob(theta[:5][None], condition=x[:5]).squeeze(0) for m in members])
    expected = torch.logsumexp(lp_members, 0) - math.log(len(members))
    got = rebuilt.log_prob_batched(theta[:5][None], x=x[:5], norm_posterior=False)[0]
    assert torch.allclose(got, expected, atol=1e-4)


def test_when_unnamed_means_another_simulator_and_no_estimator_or_trainer_named():
    recipe = {"tuned_simulators": ["hodgkin_huxley", "hodgkin_huxley_8p"]}
    defaults = {"estimator": "zuko_maf_unconstrained", "trainer": "cosine"}
    unnamed = {"simulator": "function", "estimator": "zuko_maf_unconstrained", "trainer": "cosine",
               "experiment": None}
    assert recipe_decision(recipe, unnamed, ["simulator=function"], defaults)[0] == "always"
    assert recipe_decision(recipe, {**unnamed, "simulator": "hodgkin_huxley"}, [], defaults)[0] == "never"
    # a sequential or likelihood method with nothing named keeps the defaults (the recipe would refuse it)
    assert recipe_decision(recipe, unnamed, ["method=tsnpe"], defaults, method="tsnpe") == (
        "never", "method=tsnpe is not one the recipe trains (npe)")
    assert recipe_decision(recipe, unnamed, ["estimator=zuko_maf_unconstrained"], defaults)[0] == "never"
    apply, why = recipe_decision(recipe, unnamed, ["trainer.batch_size=64"], defaults)
    assert apply == "never" and "trainer.batch_size=64" in why
    apply, why = recipe_decision(recipe, {**unnamed, "estimator": "maf", "experiment": "sir"}, [], defaults)
    assert apply == "never" and "experiment=sir" in why


def test_the_recipe_refuses_a_method_that_does_not_train_a_posterior_density():
    recipe = RecipeSettings(apply="always", candidates=SMALL)
    check_recipe(recipe, NPE())
    with pytest.raises(ConfigError, match=r"recipe=auto chooses among NPE .* method='nle'"):
        check_recipe(recipe, NLE())
    with pytest.raises(ConfigError, match=r"recipe.candidates\[0\]: estimator.model='mlp'"):
        check_recipe(RecipeSettings(apply="always", candidates=[{"model": "mlp"}]), NPE())


def test_a_user_model_with_nothing_named_gets_the_recipe_and_says_what_it_chose(store, tmp_path):
    """The path a new user runs: a function simulator and a prior, no estimator or trainer named."""
    (tmp_path / "shiftsim.py").write_text(textwrap.dedent('''
        import numpy as np
        def simulate(theta, rng):
            return np.concatenate([theta, theta[:1] * theta[1:]]) + 0.2 * rng.standard_normal(3)
    '''))
    candidates = json.dumps(SMALL).replace('"', "")
    result = run_train([
        "simulator=function", "simulator.fn=shiftsim:simulate", "prior=box", "prior.low=[-1,-1]",
        "prior.high=[1,1]", "prior.names=[a,b]", "summary=identity", "observation.theta=[0.3,-0.2]",
        "simulation.num_simulations=600", "diagnostics=fast", "diagnostics.num_test=50",
        "diagnostics.num_posterior_samples=50", f"recipe.candidates={candidates}",
        "recipe.extra_seeds=0", *store["overrides"], f"paths.cache_dir={tmp_path}/cache",  # extra seeds: above
    ], env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sbilab: recipe=auto chose" in result.stdout and "calibration gates:" in result.stdout
    client = MlflowClient(store["uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("function").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["sbilab.recipe"] == "auto" and run.data.tags["sbilab.estimator"] == "auto"
    assert run.data.params["recipe.decided"] == "simulator=function with no estimator or trainer named"
    record = json.loads(open(client.download_artifacts(run.info.run_id, "recipe.json", str(tmp_path))).read())
    assert [c["name"] for c in record["candidates"]][:2] == ["small_nsf", "small_maf"]
    assert len(record["candidates"]) == 2 and record["chosen"]
    assert run.data.metrics["recipe/members"] == len(record["chosen"])
    from sbilab import load_posterior

    posterior = load_posterior(f"runs:/{run.info.run_id}/posterior", tracking_uri=store["uri"])
    samples = posterior.sample((50,), x=torch.tensor([0.3, -0.2, -0.06]), show_progress_bars=False)
    assert samples.shape == (50, 2) and bool(np.all(np.abs(samples.numpy()) <= 1.0))
