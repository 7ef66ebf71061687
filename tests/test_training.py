"""The Lightning path trains exactly like sbi's own `NPE(...).train()`."""

from __future__ import annotations

import torch
from sbi.inference import NPE as SbiNPE
from sbi.utils import BoxUniform

from sbilab.methods import NPE
from sbilab.training import train_estimator
from conftest import NullTracker

TRAINER = {"batch_size": 50, "learning_rate": 5e-4, "validation_fraction": 0.1, "stop_after_epochs": 5,
           "clip_max_norm": 5.0, "max_epochs": 15}


def _toy(num: int = 600) -> tuple[BoxUniform, torch.Tensor, torch.Tensor]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    generator = torch.Generator().manual_seed(0)
    theta = prior.low + (prior.high - prior.low) * torch.rand(num, 2, generator=generator)
    x = theta + 0.3 * torch.randn(num, 2, generator=generator)
    return prior, theta, x


def test_lightning_matches_sbi_train_bit_for_bit():
    prior, theta, x = _toy()
    seed = 123

    torch.manual_seed(seed)
    inference = SbiNPE(prior=prior, density_estimator="maf", tracker=NullTracker(), show_progress_bars=False)
    inference.append_simulations(theta, x)
    sbi_net = inference.train(training_batch_size=50, stop_after_epochs=5, max_num_epochs=TRAINER["max_epochs"] - 1)
    sbi_val = inference.summary["validation_loss"]

    # sbi's constructor draws once from the prior (device check); replay that draw
    torch.manual_seed(seed)
    prior.sample((1,))
    estimator_cfg = {"model": "maf", "hidden_features": 50, "num_transforms": 5}
    result = train_estimator(NPE(), estimator_cfg, theta, x, TRAINER, seed=None)  # type: ignore[arg-type]

    assert len(result.val_losses) == len(sbi_val)
    torch.testing.assert_close(torch.tensor(result.val_losses), torch.tensor(sbi_val), rtol=0, atol=1e-6)
    for (name, ours), (_, theirs) in zip(result.estimator.state_dict().items(), sbi_net.state_dict().items()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=name)
    x_o = torch.zeros(1, 2)
    torch.manual_seed(7)
    ours = NPE().build_posterior(result.estimator, prior).sample((200,), x=x_o, show_progress_bars=False)
    torch.manual_seed(7)
    theirs = inference.build_posterior(sbi_net).sample((200,), x=x_o, show_progress_bars=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_best_weights_are_restored_and_early_stopping_applies():
    prior, theta, x = _toy(400)
    config = {**TRAINER, "max_epochs": -1, "stop_after_epochs": 3}
    result = train_estimator(NPE(), {"model": "mdn", "hidden_features": 20, "num_components": 2}, theta, x, config, seed=1)
    best = min(result.val_losses)
    assert result.best_val_loss == best
    assert result.epochs == result.val_losses.index(best) + 1 + 3  # stopped 3 epochs after the best
    assert len(result.train_losses) == result.epochs
