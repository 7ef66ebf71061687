"""Every method trains through the Lightning loop; NRE and sequential NPE reproduce sbi's own trainers."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import NullTracker
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sbi.inference import NPE as SbiNPE
from sbi.inference import NPE_C, NRE_B, NRE_C
from sbi.neural_nets import classifier_nn, posterior_nn
from sbi.utils import BoxUniform

from sbilab.config import TrainerSettings
from sbilab.ensemble import ensemble_posterior
from sbilab.errors import ConfigError
from sbilab.methods import FMPE, METHODS, NLE, NPE, NPSE, NRE, SNPE, TSNPE, atomic_npe_loss, methods_for_estimator
from sbilab.posterior_io import posterior_spec, rebuild_posterior
from sbilab.rng import round_seed
from sbilab.simulation import Dataset
from sbilab.training import SequentialTraining, SilentObserver, TrainingProblem, train_estimator, train_sequential

ROOT = Path(__file__).resolve().parents[1]
TRAINER = {"batch_size": 50, "learning_rate": 1e-3, "validation_fraction": 0.1, "stop_after_epochs": 3,
           "clip_max_norm": 5.0, "max_epochs": 3}
MAF = {"model": "maf", "hidden_features": 16, "num_transforms": 2}
MLP_CLASSIFIER = {"family": "classifier", "model": "mlp", "hidden_features": 16}
VF_MLP = {"family": "vector_field", "model": "mlp", "hidden_features": 32, "num_layers": 2}
#: MCMC kept tiny: few chains, few warm-up steps, no thinning
TINY_MCMC = {"mcmc": {"method": "slice_np_vectorized", "num_chains": 4, "warmup_steps": 5, "thin": 1,
                      "init_strategy": "proposal"}}
PRIOR_CFG = {"_target_": "sbilab.priors.box_uniform", "name": "box", "low": [-2.0, -2.0], "high": [2.0, 2.0],
             "names": ["a", "b"]}
X_O = torch.tensor([[0.5, -0.5]])


def _prior() -> BoxUniform:
    return BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))


def _toy(num: int = 300, seed: int = 0) -> tuple[BoxUniform, torch.Tensor, torch.Tensor]:
    """θ ~ U(-2, 2)², x = θ + 0.3 ε."""
    prior = _prior()
    generator = torch.Generator().manual_seed(seed)
    theta = prior.low + (prior.high - prior.low) * torch.rand(num, 2, generator=generator)
    return prior, theta, theta + 0.3 * torch.randn(num, 2, generator=generator)


def _network(posterior) -> torch.nn.Module:
    """The trained network inside an sbi posterior (direct, vector field or potential based)."""
    for owner in (posterior, getattr(posterior, "potential_fn", None)):
        for attribute in ("posterior_estimator", "vector_field_estimator", "likelihood_estimator", "ratio_estimator"):
            if isinstance(getattr(owner, attribute, None), torch.nn.Module):
                return getattr(owner, attribute)
    raise AssertionError(f"no network in {type(posterior).__name__}")


# method config (as in conf/method, with _target_) and a representative estimator
CASES = {
    "npe": ({"_target_": "sbilab.methods.NPE"}, MAF),
    "nle": ({"_target_": "sbilab.methods.NLE", "sampling": TINY_MCMC}, MAF),
    "nre_b": ({"_target_": "sbilab.methods.NRE", "variant": "b", "sampling": TINY_MCMC}, MLP_CLASSIFIER),
    "nre_c": ({"_target_": "sbilab.methods.NRE", "variant": "c", "sampling": TINY_MCMC},
              {**MLP_CLASSIFIER, "model": "resnet"}),
    "fmpe": ({"_target_": "sbilab.methods.FMPE"}, VF_MLP),
    "npse": ({"_target_": "sbilab.methods.NPSE", "sde_type": "ve"}, VF_MLP),
    "nle_rejection": ({"_target_": "sbilab.methods.NLE", "sample_with": "rejection",
                       "sampling": {"rejection": {"num_samples_to_find_max": 200, "num_iter_to_find_max": 5}}}, MAF),
    "nle_vi": ({"_target_": "sbilab.methods.NLE", "sample_with": "vi",
                "sampling": {"vi": {"q": "gaussian_diag", "train": {"max_num_iters": 30, "quality_control": False}}}},
               MAF),
    "npe_mcmc": ({"_target_": "sbilab.methods.NPE", "sample_with": "mcmc", "sampling": TINY_MCMC}, MAF),
    "npse_ode": ({"_target_": "sbilab.methods.NPSE", "sample_with": "ode"}, VF_MLP),
}


@pytest.mark.parametrize("case", list(CASES))
def test_method_trains_samples_and_round_trips(case):
    method_cfg, estimator_cfg = CASES[case]
    method = instantiate(method_cfg, _convert_="all")
    prior, theta, x = _toy()
    result = train_estimator(method, estimator_cfg, theta, x, TrainerSettings(**TRAINER), seed=0)
    assert result.epochs == 3 and all(torch.isfinite(torch.tensor(result.val_losses)))

    posterior = method.build_posterior(result.estimator, prior)
    torch.manual_seed(0)
    samples = posterior.sample((10,), x=X_O, show_progress_bars=False)
    assert samples.shape == (10, 2) and torch.isfinite(samples).all()

    # the posterior artifact (spec + state dict) rebuilds the same network and sampler
    spec = yaml.safe_load(yaml.safe_dump(posterior_spec(method_cfg, estimator_cfg, PRIOR_CFG, 2, 2)))
    rebuilt = rebuild_posterior(spec, result.estimator.state_dict())
    assert type(rebuilt) is type(posterior)
    estimator = _network(rebuilt)
    for (name, ours), theirs in zip(result.estimator.state_dict().items(), estimator.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)
    torch.manual_seed(1)
    before = method.validation_loss(result.estimator, theta[:20], x[:20])
    torch.manual_seed(1)
    after = method.validation_loss(estimator, theta[:20], x[:20])
    torch.testing.assert_close(before, after, rtol=0, atol=1e-6)


def test_sequential_npe_trains_rounds_and_samples():
    prior, theta, x = _toy(400)
    calls = []

    def simulate_round(proposal, round_, num):
        calls.append((round_, num, type(proposal).__name__))
        th = proposal.sample((num,))  # the prior, then the last posterior at x_o
        return th, th + 0.3 * torch.randn_like(th)

    logged = []
    method = SNPE(num_rounds=2)
    result, rounds = train_sequential(
        method, MAF, simulate_round, X_O, prior, TrainerSettings(**TRAINER), seed=3, num_simulations=401,
        on_round_end=lambda r, m: logged.append(r),
    )
    posterior = method.build_posterior(result.estimator, prior)
    assert calls == [(0, 201, "BoxUniform"), (1, 200, "PosteriorAtObservation")] and logged == [0, 1]
    assert [int(m["round/num_simulations"]) for m in rounds] == [201, 200]
    assert result.extra["num_simulations"] == 401 and result.epochs == 3
    samples = posterior.sample((10,), x=X_O, show_progress_bars=False)
    assert samples.shape == (10, 2) and torch.isfinite(samples).all()


def _truncated_rounds(seed: int, **options):
    prior = _prior()
    drawn = []

    def simulate_round(proposal, round_, num):
        th = proposal.sample((num,))  # the prior, then the prior truncated to the last posterior's region
        drawn.append((type(proposal).__name__, proposal, th))
        return th, th + 0.3 * torch.randn_like(th)

    method = TSNPE(num_rounds=3, quantile=1e-3, num_samples_to_estimate_support=5000, **options)
    trainer = TrainerSettings(**{**TRAINER, "max_epochs": 15, "stop_after_epochs": 15})
    torch.manual_seed(seed)
    result, rounds = train_sequential(method, MAF, simulate_round, X_O, prior, trainer, seed=seed,
                                      num_simulations=1200)
    return method, result, rounds, drawn


def test_truncated_npe_draws_each_later_round_inside_the_last_posteriors_region():
    method, result, rounds, drawn = _truncated_rounds(seed=4)
    assert [name for name, _, _ in drawn] == ["BoxUniform", "TruncatedPrior", "TruncatedPrior"]
    for _, region, theta in drawn[1:]:
        assert region.contains(theta).all()  # every θ of the round lies in its region ...
        outside = _prior().sample((4000,))
        assert not region.contains(outside).all()  # ... which is smaller than the prior
    # the region follows the posterior at x_o = (0.5, -0.5) (x = θ + 0.3 ε): it holds the truth, not the far corner
    region = result.extra["last_proposal"]
    assert region is drawn[-1][1]
    assert region.contains(torch.tensor([[0.5, -0.5]])).all() and not region.contains(torch.tensor([[-1.9, 1.9]])).any()
    masses = [m["round/region_prior_mass"] for m in rounds[1:]]
    assert "round/region_prior_mass" not in rounds[0] and all(0.0 < m < 0.6 for m in masses), masses
    assert all(m["round/proposal_s"] > 0 for m in rounds[1:])
    # every round trains NPE's own loss (no atomic correction): the proposal leaves the posterior at x_o unchanged
    theta, x = drawn[-1][2][:50], drawn[-1][2][:50] + 0.1
    torch.testing.assert_close(method.at_round(2, _prior()).loss(result.estimator, theta, x),
                               result.estimator.loss(theta, condition=x))
    # the same seed draws the same regions and θ (a rerun after a kill finds its rounds in the cache)
    _, _, again, drawn_again = _truncated_rounds(seed=4)
    assert [m["round/region_prior_mass"] for m in again[1:]] == masses
    for (_, _, first), (_, _, second) in zip(drawn, drawn_again):
        torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_truncated_rounds_with_the_nesting_correction_weight_their_loss_and_record_how_far_the_regions_nest():
    assert TSNPE().nesting_correction is False  # off by default: sbi's TSNPE
    _, _, rounds, drawn = _truncated_rounds(seed=4, nesting_correction=True)
    assert "round/max_loss_weight" not in rounds[0]  # prior draws only
    # one region inside the prior: nested, every weight 1, the same round as without the correction
    assert rounds[1]["round/max_loss_weight"] == 1.0 and rounds[1]["round/outside_earlier_regions"] == 0.0
    assert rounds[2]["round/max_loss_weight"] >= 1.0
    in_both = drawn[1][1].contains(drawn[2][2])  # round 2's draws (in the last region) also in round 1's region
    assert rounds[2]["round/outside_earlier_regions"] == pytest.approx(float((~in_both).float().mean()), abs=0.05)


def _truncated_fit(ensemble_size: int, seed: int = 4):
    """TSNPE through the sequential strategy (what a run calls), ``ensemble_size`` networks in the last round."""
    prior = _prior()
    drawn = []

    def simulate(proposal, round_, num):
        th = (prior if proposal is None else proposal).sample((num,))
        drawn.append(th)
        return Dataset(th, th + 0.3 * torch.randn_like(th), num, 0, 0.0, 1, 0, f"round-{round_}")

    method = TSNPE(num_rounds=2, quantile=1e-3, num_samples_to_estimate_support=5000)
    trainer = TrainerSettings(**{**TRAINER, "max_epochs": 10, "stop_after_epochs": 10, "ensemble_size": ensemble_size})
    problem = TrainingProblem(method, MAF, prior, trainer, seed, 800, X_O)
    torch.manual_seed(seed)
    return SequentialTraining().fit(problem, simulate, SilentObserver()), drawn


def test_a_truncated_runs_ensemble_adds_fresh_networks_trained_on_every_rounds_simulations():
    single, drawn_single = _truncated_fit(1)
    fitted, drawn = _truncated_fit(2)
    assert len(single.networks.members) == 1 and len(fitted.networks.members) == 2
    # member 0 is the single-network run's last round, bit for bit; the rounds and the region are unchanged
    for a, b in zip(drawn_single, drawn):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for (name, a), b in zip(single.networks.first.estimator.state_dict().items(),
                            fitted.networks.first.estimator.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert fitted.region.prior_mass == single.region.prior_mass
    # member 1 is a fresh network on both rounds' 800 simulations (its own split: 720 train, 80 validation)
    member = fitted.networks.members[1]
    assert member.estimator is not fitted.networks.first.estimator and member.epochs >= 1
    split = member.extra["split"]
    assert len(split.train) + len(split.val) == 800 and len(split.val) == 80
    assert fitted.networks.metrics()["ensemble/size"] == 2
    # the posterior is the members' mixture; its draws at x_o sit in the region it was calibrated on
    posterior = ensemble_posterior([TSNPE().build_posterior(e, _prior()) for e in fitted.networks.estimators])
    samples = posterior.sample((400,), x=X_O, show_progress_bars=False)
    assert fitted.region.contains(samples).float().mean() > 0.95


class _GaussianAtObservation:
    """A posterior whose region is known: N((0.5, -0.5), sd² I) for any x (a real distribution, sampled as sbi's)."""

    def __init__(self, sd: float) -> None:
        self.normal = torch.distributions.MultivariateNormal(torch.tensor([0.5, -0.5]), sd**2 * torch.eye(2))

    def sample(self, shape, x=None, **kwargs):
        return self.normal.sample(shape)

    def log_prob(self, theta, x=None, **kwargs):
        return self.normal.log_prob(theta)


@pytest.mark.parametrize("sd, resamples", [(0.2, False), (0.01, True)])
def test_the_truncated_prior_is_the_prior_on_the_region_whichever_way_it_is_sampled(sd, resamples):
    """The 1e-4 region of a 2-D Gaussian is a disc of radius R = sd·√(2 ln 1e4) and the prior there is uniform,
    so draws lie at mean distance 2R/3 from the centre. A region of prior mass < 1e-3 is importance-resampled:
    from the posterior alone the draws came out at 0.51 R (too central)."""
    from sbilab.methods.proposals import TruncatedPrior

    torch.manual_seed(0)
    region = TruncatedPrior(_prior(), _GaussianAtObservation(sd), X_O, quantile=1e-4,
                            num_samples_to_estimate_support=100_000, seed=1)
    radius = sd * math.sqrt(2 * math.log(1e4))
    assert region.resamples is resamples
    assert region.prior_mass == pytest.approx(math.pi * radius**2 / 16, rel=0.3)  # the disc's share of the box
    theta = region.sample((4000,))
    distance = (theta - torch.tensor([0.5, -0.5])).norm(dim=1) / radius
    assert theta.shape == (4000, 2) and region.contains(theta).all()
    assert distance.mean().item() == pytest.approx(2 / 3, abs=0.03)


@pytest.mark.parametrize("key, value", [("quantile", 0.0), ("quantile", 0.7), ("quantile", "small"),
                                        ("num_samples_to_estimate_support", 100)])
def test_truncated_npe_refuses_a_region_it_cannot_place(key, value):
    with pytest.raises(ConfigError, match=f"^method.{key}=.* is invalid: expected"):
        TSNPE(**{key: value})


@pytest.mark.parametrize("variant", ["b", "c"])
def test_nre_matches_sbi_training(variant):
    """Same data and seed: sbi's NRE_B/NRE_C `.train()` and the Lightning loop give identical networks."""
    prior, theta, x = _toy(600)
    config = {"hidden_features": 20}
    trainer = {**TRAINER, "learning_rate": 5e-4, "max_epochs": 6}
    torch.manual_seed(11)
    if variant == "b":
        sbi_class, train_kwargs = NRE_B, {"num_atoms": 10}
    else:
        sbi_class, train_kwargs = NRE_C, {"num_classes": 5, "gamma": 1.0}
    inference = sbi_class(prior=prior, classifier=classifier_nn("mlp", **config), tracker=NullTracker(),
                          show_progress_bars=False)
    inference.append_simulations(theta, x)
    sbi_net = inference.train(training_batch_size=50, stop_after_epochs=3, max_num_epochs=5, **train_kwargs)
    sbi_val = torch.tensor(inference.summary["validation_loss"])

    torch.manual_seed(11)
    prior.sample((1,))  # sbi's constructor draws once from the prior
    result = train_estimator(NRE(variant=variant), {"model": "mlp", **config}, theta, x, TrainerSettings(**trainer),
                             seed=None)
    # sbi's NRE `_loss` is already a batch mean, and its epoch loss divides by the batch size again
    ours = torch.tensor(result.val_losses, dtype=torch.float64) / 50
    assert len(ours) == len(sbi_val) == 6
    torch.testing.assert_close(ours, sbi_val.double(), rtol=1e-6, atol=1e-9)
    for (name, a), b in zip(result.estimator.state_dict().items(), sbi_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_atomic_loss_matches_sbi():
    prior, theta, x = _toy(100)
    torch.manual_seed(0)
    estimator = posterior_nn(**MAF)(theta, x)
    inference = NPE_C(prior=prior, tracker=NullTracker(), show_progress_bars=False)
    inference._neural_net, inference._num_atoms, inference._use_combined_loss = estimator, 10, False
    torch.manual_seed(5)
    theirs = -inference._log_prob_proposal_posterior_atomic(theta[:50], x[:50], torch.ones(50, 1))
    torch.manual_seed(5)
    ours = atomic_npe_loss(estimator, prior, theta[:50], x[:50], num_atoms=10)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_sequential_npe_matches_sbi_two_rounds():
    """Two rounds of sbi's NPE-C (atomic loss in round 1) and `train_sequential`: identical networks."""
    prior, theta0, x0 = _toy(300)
    noise = 0.3 * torch.randn(300, 2, generator=torch.Generator().manual_seed(9))

    def simulate_round(proposal, round_, num):
        if round_ == 0:
            return theta0, x0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(99)
            theta = proposal.sample((num,), show_progress_bars=False)
        return theta, theta + noise[:num]

    trainer = {**TRAINER, "learning_rate": 5e-4, "max_epochs": 5}
    seed = 5
    inference = SbiNPE(prior=prior, density_estimator=posterior_nn(**MAF), tracker=NullTracker(),
                       show_progress_bars=False)
    torch.manual_seed(round_seed(seed, 0))
    inference.append_simulations(theta0, x0).train(training_batch_size=50, stop_after_epochs=3, max_num_epochs=4)
    proposal = inference.build_posterior().set_default_x(X_O)
    theta1, x1 = simulate_round(proposal, 1, 300)
    torch.manual_seed(round_seed(seed, 1))
    sbi_net = inference.append_simulations(theta1, x1, proposal=proposal).train(
        num_atoms=10, training_batch_size=50, stop_after_epochs=3, max_num_epochs=4)
    sbi_val = inference.summary["validation_loss"]

    result, rounds = train_sequential(SNPE(num_rounds=2, num_atoms=10), MAF, simulate_round, X_O, prior,
                                      TrainerSettings(**trainer), seed, num_simulations=600)
    assert len(sbi_val) == 10 and len(result.val_losses) == 5
    torch.testing.assert_close(torch.tensor(result.val_losses), torch.tensor(sbi_val[5:]), rtol=0, atol=1e-6)
    assert rounds[0]["round/val_loss_best"] == pytest.approx(min(sbi_val[:5]), abs=1e-6)
    for (name, a), b in zip(result.estimator.state_dict().items(), sbi_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "method,estimator",
    [
        (NPE(), {"name": "classifier_mlp", "family": "classifier", "model": "mlp"}),
        (NPE(), {"name": "vf_mlp", "family": "vector_field", "model": "mlp"}),
        (NPE(), {"name": "x", "model": "resnet"}),
        (NLE(), {"name": "vf_mlp", "family": "vector_field", "model": "mlp"}),
        (NRE(), {"name": "maf", "model": "maf"}),
        (NRE(), {"name": "vf_mlp", "family": "vector_field", "model": "mlp"}),
        (FMPE(), {"name": "classifier_resnet", "family": "classifier", "model": "resnet"}),
        (NPSE(), {"name": "nsf", "model": "nsf"}),
        (SNPE(), {"name": "classifier_mlp", "family": "classifier", "model": "mlp"}),
    ],
)
def test_wrong_estimator_family_fails_fast(method, estimator):
    with pytest.raises(ValueError) as error:
        method.check_estimator(estimator)
    message = str(error.value)
    assert "\n" not in message and f"estimator.model={estimator['model']!r}" in message
    assert f"method={method.name!r}" in message and "allowed estimator.model: " + ", ".join(method.models) in message
    _, theta, x = _toy(20)
    with pytest.raises(ValueError, match="estimator.model"):
        method.build_estimator(estimator, theta, x)


@pytest.mark.parametrize(
    "build,key",
    [
        (lambda: NPE(sample_with="ode"), "method.sample_with"),
        (lambda: FMPE(sample_with="mcmc"), "method.sample_with"),
        (lambda: NLE(sampling={"mcmc": {"num_chain": 3}}), "method.sampling.mcmc"),
        (lambda: NLE(sampling={"mcmc": {"thin": 50}}), "method.sampling.mcmc"),
        (lambda: NRE(variant="a"), "method.variant"),
        (lambda: NPSE(sde_type="xx"), "method.sde_type"),
        (lambda: SNPE(num_rounds=0), "method.num_rounds"),
        (lambda: NLE(sign_invariant=[1, 1]), "method.sign_invariant"),
        (lambda: NLE(sign_invariant=[-1]), "method.sign_invariant"),
        (lambda: NLE(sign_invariant=[1]).check_parameters(["a"]), "method.sign_invariant"),
    ],
)
def test_bad_method_settings_fail_fast(build, key):
    with pytest.raises(ValueError) as error:
        build()
    assert str(error.value).startswith(key) and "\n" not in str(error.value)


def test_sign_invariant_likelihood_balances_the_modes_and_round_trips():
    """x = (θ1², θ2) + noise: the true posterior puts equal mass on θ1 > 0 and θ1 < 0. The averaged
    likelihood is exactly invariant, so the modes' masses are equal whatever the network learned,
    and the saved posterior rebuilds with the symmetry."""
    prior, theta, _ = _toy(600)
    noise = torch.randn(600, 2, generator=torch.Generator().manual_seed(1))
    x = torch.stack([theta[:, 0] ** 2, theta[:, 1]], 1) + 0.2 * noise
    method_cfg = {"_target_": "sbilab.methods.NLE", "sample_with": "rejection", "sign_invariant": [0],
                  "sampling": {"rejection": {"num_samples_to_find_max": 200, "num_iter_to_find_max": 5}}}
    method = instantiate(method_cfg, _convert_="all")
    result = train_estimator(method, MAF, theta, x, TrainerSettings(**TRAINER), seed=0)
    posterior = method.build_posterior(result.estimator, prior)
    x_o = torch.tensor([[1.0, 0.5]])
    posterior.set_default_x(x_o)
    grid = prior.sample((50,))
    flipped = grid * torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(posterior.potential(grid), posterior.potential(flipped), rtol=0, atol=1e-4)
    plain = NLE(sample_with="rejection").build_posterior(result.estimator, prior).set_default_x(x_o)
    assert (plain.potential(grid) - plain.potential(flipped)).abs().max() > 1e-3  # the network alone is not
    torch.manual_seed(0)
    samples = posterior.sample((400,), show_progress_bars=False)
    assert abs(float((samples[:, 0] > 0).float().mean()) - 0.5) < 0.1
    spec = yaml.safe_load(yaml.safe_dump(posterior_spec(method_cfg, MAF, PRIOR_CFG, 2, 2)))
    rebuilt = rebuild_posterior(spec, result.estimator.state_dict()).set_default_x(x_o)
    torch.testing.assert_close(rebuilt.potential(grid), posterior.potential(grid), rtol=0, atol=1e-5)


def test_mcmc_backend_without_its_package_fails_fast():
    import importlib.util

    if importlib.util.find_spec("pyro") is not None:
        pytest.skip("pyro is installed")
    with pytest.raises(ValueError, match=r"method.sampling.mcmc.method='nuts_pyro' needs the pyro package"):
        NLE(sampling={"mcmc": {"method": "nuts_pyro"}})


def test_learned_embedding_is_refused_by_nle():
    class WithEmbedding:
        def embedding_net(self):
            return torch.nn.Identity()

    NPE().check_summary(WithEmbedding())
    with pytest.raises(ValueError, match="method='nle'"):
        NLE().check_summary(WithEmbedding())


def test_every_config_composes_and_every_estimator_fits_a_method():
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    methods = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))
    estimators = sorted(p.stem for p in (ROOT / "conf" / "estimator").glob("*.yaml"))
    assert {"npe", "snpe", "nle", "nre", "nre_c", "fmpe", "npse"} <= set(methods)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for name in methods:
            cfg = compose("config", overrides=[f"method={name}"])
            part = OmegaConf.to_container(cfg.method, resolve=True)
            method = instantiate({k: v for k, v in part.items() if k != "name"}, _convert_="all")
            assert type(method) in METHODS.values() and part["name"] == name
        for name in estimators:
            cfg = compose("config", overrides=[f"estimator={name}"])
            part = OmegaConf.to_container(cfg.estimator, resolve=True)
            assert part["name"] == name and "model" in part
            assert methods_for_estimator(part), f"estimator={name} fits no method"


def test_every_shipped_density_and_field_estimator_builds():
    """Each conf/estimator file builds with its method on a toy batch (sizes from the config)."""
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    _, theta, x = _toy(50)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for path in sorted((ROOT / "conf" / "estimator").glob("*.yaml")):
            cfg = OmegaConf.to_container(compose("config", overrides=[f"estimator={path.stem}"]).estimator)
            method = METHODS[methods_for_estimator(cfg)[0]]()
            estimator = method.build_estimator(cfg, theta, x, prior=_prior())  # the prior: for unconstrained θ
            torch.manual_seed(0)
            assert torch.isfinite(method.loss(estimator, theta[:10], x[:10])).all(), path.stem


def test_flow_on_the_priors_unbounded_space_stays_inside_the_box_and_round_trips():
    """z_score_theta=transform_to_unconstrained (sbi's option, given the prior): the flow's own samples never
    leave the prior's support, so no rejection is needed, and the saved posterior rebuilds identically."""
    method_cfg = {"_target_": "sbilab.methods.NPE"}
    estimator_cfg = {"model": "zuko_maf", "hidden_features": 16, "num_transforms": 2,
                     "z_score_theta": "transform_to_unconstrained"}
    method = instantiate(method_cfg, _convert_="all")
    method.check_estimator(estimator_cfg)
    prior, theta, x = _toy()
    result = train_estimator(method, estimator_cfg, theta, x, TrainerSettings(**TRAINER), seed=0, prior=prior)
    raw = result.estimator.sample((2000,), condition=X_O)  # the bare flow, no truncation
    assert raw.abs().max() < 2.0
    posterior = method.build_posterior(result.estimator, prior)
    spec = yaml.safe_load(yaml.safe_dump(posterior_spec(method_cfg, estimator_cfg, PRIOR_CFG, 2, 2)))
    rebuilt = rebuild_posterior(spec, result.estimator.state_dict())
    inside = torch.tensor([[0.3, -0.2], [1.9, -1.9]])
    torch.testing.assert_close(posterior.log_prob(inside, x=X_O), rebuilt.log_prob(inside, x=X_O))


@pytest.mark.parametrize("method_cfg, model", [({"_target_": "sbilab.methods.NPE"}, "maf"),
                                               ({"_target_": "sbilab.methods.NLE"}, "zuko_maf")])
def test_unbounded_theta_space_is_refused_where_sbi_cannot_do_it(method_cfg, model):
    method = instantiate(method_cfg, _convert_="all")
    with pytest.raises(ConfigError, match="estimator.z_score_theta=transform_to_unconstrained"):
        method.check_estimator({"model": model, "z_score_theta": "transform_to_unconstrained"})


def test_direct_sampling_refuses_a_flow_whose_mass_lies_outside_the_prior_and_is_sbis_own_otherwise():
    """sbi's rejection loop has no draw limit: a flow with almost no mass in a 10-d box would sample for
    hours. The probe refuses it in one line; where the flow fits, the samples are sbi's, bit for bit."""
    from sbi.inference.posteriors import DirectPosterior

    from sbilab.errors import SamplingError
    from sbilab.methods.samplers import ProbedDirectPosterior

    torch.manual_seed(0)
    prior = BoxUniform(-torch.ones(10), torch.ones(10))
    x = torch.randn(500, 3)
    outside = posterior_nn("maf", hidden_features=10, num_transforms=1)(torch.randn(500, 10) + 50.0, x).eval()
    with pytest.raises(SamplingError, match=r"mass inside the prior .*estimator=zuko_maf_unconstrained"):
        ProbedDirectPosterior(posterior_estimator=outside, prior=prior).sample((10,), x=x[0], show_progress_bars=False)

    inside = posterior_nn("maf", hidden_features=10, num_transforms=1)(0.1 * torch.randn(500, 10), x).eval()
    probed, plain = (cls(posterior_estimator=inside, prior=prior) for cls in (ProbedDirectPosterior, DirectPosterior))
    torch.manual_seed(1)
    ours = probed.sample((200,), x=x[0], show_progress_bars=False)
    torch.manual_seed(1)
    theirs = plain.sample((200,), x=x[0], show_progress_bars=False)
    assert torch.equal(ours, theirs)
