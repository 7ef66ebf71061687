"""Posterior ensembles: training K members, sampling and scoring their mixture, saving and reloading it."""

from __future__ import annotations

import math

import torch
from sbi.inference.posteriors import DirectPosterior
from sbi.utils import BoxUniform

from sbilab.config import TrainerSettings
from sbilab.diagnostics.sampling import posterior_log_prob_batched, sample_posterior_batched
from sbilab.ensemble import PosteriorEnsemble, ensemble_posterior, mixture_log_prob
from sbilab.methods import NPE
from sbilab.posterior_io import estimators_state, posterior_spec, rebuild_posterior
from sbilab.rng import member_seed
from sbilab.training import EnsembleTraining, member_prefix, train_ensemble, train_estimator

PRIOR = BoxUniform(-10 * torch.ones(2), 10 * torch.ones(2))
FLOW = {"model": "mdn", "hidden_features": 10, "num_components": 1}
TRAINER = {"batch_size": 50, "learning_rate": 5e-4, "validation_fraction": 0.1, "stop_after_epochs": 2,
           "clip_max_norm": 5.0, "max_epochs": 3}


def _member_at(centre: float, seed: int) -> torch.nn.Module:
    """An untrained flow whose z-scoring puts its mass near θ = (centre, centre), sd about 0.1."""
    generator = torch.Generator().manual_seed(seed)
    theta = centre + 0.1 * torch.randn(200, 2, generator=generator)
    x = torch.randn(200, 2, generator=generator)
    torch.manual_seed(seed)
    return NPE().build_estimator(FLOW, theta, x)


def _two_member_ensemble() -> tuple[PosteriorEnsemble, list[torch.nn.Module]]:
    estimators = [_member_at(-5.0, 0), _member_at(5.0, 1)]
    posterior = ensemble_posterior([NPE().build_posterior(e, PRIOR) for e in estimators])
    assert isinstance(posterior, PosteriorEnsemble)
    return posterior, estimators


def test_a_single_member_is_the_plain_posterior():
    posterior = NPE().build_posterior(_member_at(0.0, 0), PRIOR)
    assert ensemble_posterior([posterior]) is posterior


def test_member_zero_trains_as_a_single_network_and_the_others_differ():
    generator = torch.Generator().manual_seed(0)
    theta = PRIOR.sample((300,))
    x = theta + torch.randn(300, 2, generator=generator)
    single = train_estimator(NPE(), FLOW, theta, x, TrainerSettings(**TRAINER), seed=11)
    trained = train_ensemble(NPE(), FLOW, theta, x, TrainerSettings(**TRAINER, ensemble_size=3), seed=11)
    assert len(trained.members) == 3 and member_seed(11, 0) == 11
    assert len({member_seed(11, k) for k in range(3)}) == 3
    first, *others = trained.estimators
    for (name, a), (_, b) in zip(first.state_dict().items(), single.estimator.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    for other in others:
        assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))
    metrics = trained.metrics()
    assert metrics["val/loss_best"] == single.best_val_loss and metrics["ensemble/size"] == 3
    assert metrics["time/train_s"] == sum(m.seconds for m in trained.members)
    assert math.isclose(metrics["ensemble/val_loss_best_mean"],
                        sum(m.best_val_loss for m in trained.members) / 3)
    assert {f"member_{k}/val/loss_best" for k in (1, 2)} <= set(metrics)
    assert member_prefix(0) == "" and member_prefix(2) == "member_2/"
    assert set(EnsembleTraining([single]).metrics()) == {"val/loss_best", "train/epochs", "time/train_s"}


def test_samples_mix_the_members_in_random_order():
    posterior, _ = _two_member_ensemble()
    x = torch.zeros(2)
    torch.manual_seed(0)
    samples = posterior.sample((2000,), x=x, show_progress_bars=False)
    from_second = (samples[:, 0] > 0).float()
    assert 0.45 < float(from_second.mean()) < 0.55  # equal weights
    assert 0.35 < float(from_second[:100].mean()) < 0.65  # the first draws (the PPC's) are not one member's
    batched = posterior.sample_batched((1000,), x=torch.zeros(3, 2), show_progress_bars=False)
    assert batched.shape == (1000, 3, 2)
    assert 0.35 < float((batched[:100, :, 0] > 0).float().mean()) < 0.65


def test_batched_diagnostic_samples_and_log_probs_are_the_mixtures():
    posterior, estimators = _two_member_ensemble()
    xs = torch.zeros(4, 2)
    torch.manual_seed(1)
    samples = sample_posterior_batched(posterior, xs, 500)
    assert samples.shape == (500, 4, 2) and torch.isfinite(samples).all()
    share = (samples[..., 0] > 0).float().mean(0)
    assert ((share > 0.38) & (share < 0.62)).all()
    assert 0.3 < float((samples[:50, :, 0] > 0).float().mean()) < 0.7  # shuffled across members

    theta = samples[:20]
    members = [DirectPosterior(posterior_estimator=e, prior=PRIOR, device="cpu") for e in estimators]
    expected = torch.logsumexp(torch.stack([
        posterior_log_prob_batched(m, theta, xs) for m in members]) + math.log(0.5), dim=0)
    torch.testing.assert_close(posterior_log_prob_batched(posterior, theta, xs), expected)
    torch.testing.assert_close(posterior.log_prob_batched(theta, x=xs, norm_posterior=False), expected)


def test_mixture_log_prob_is_the_log_of_the_weighted_densities():
    a, b = torch.distributions.Normal(-1.0, 1.0), torch.distributions.Normal(2.0, 0.5)
    points = torch.linspace(-4, 4, 17)
    mixed = mixture_log_prob([a.log_prob(points), b.log_prob(points)], torch.tensor([0.25, 0.75]))
    expected = torch.log(0.25 * a.log_prob(points).exp() + 0.75 * b.log_prob(points).exp())
    torch.testing.assert_close(mixed, expected)


def test_an_ensemble_round_trips_through_its_saved_state():
    posterior, estimators = _two_member_ensemble()
    spec = posterior_spec({"_target_": "sbilab.methods.NPE"}, FLOW,
                          {"_target_": "sbilab.priors.box_uniform", "low": [-10, -10], "high": [10, 10],
                           "names": ["a", "b"]},
                          theta_dim=2, x_dim=2, ensemble_size=2)
    assert spec["ensemble_size"] == 2 and "ensemble_size" not in posterior_spec({}, {}, {}, 2, 2)
    state = estimators_state(estimators)
    assert set(state) == {f"{k}.{key}" for k in (0, 1) for key in estimators[0].state_dict()}
    rebuilt = rebuild_posterior(spec, state)
    assert isinstance(rebuilt, PosteriorEnsemble) and len(rebuilt.posteriors) == 2
    theta = torch.tensor([[-5.0, -5.0], [5.0, 5.0], [0.0, 0.0]])
    x = torch.zeros(2)
    torch.testing.assert_close(rebuilt.log_prob(theta, x=x), posterior.log_prob(theta, x=x))
