"""The nesting correction of truncated sequential rounds: masses of regions that are not nested, recovered from
the rounds' own draws, and loss weights that make the training set uniform under the prior across the last
region (where without them it is not); nested regions leave every weight at 1, so nothing changes there."""

from __future__ import annotations

import pytest
import torch

from sbilab.training.truncation import nesting_weights, region_masses


def _rounds(regions: list[tuple[float, float]], num: int = 20_000, seed: int = 0):
    """θ from U(0, 1) (round 0), then from U(region) for each later round; membership [N, K] and sizes."""
    generator = torch.Generator().manual_seed(seed)
    bounds = [(0.0, 1.0), *regions]
    theta = torch.cat([low + (high - low) * torch.rand(num, generator=generator) for low, high in bounds])
    membership = torch.stack([(theta >= low) & (theta <= high) for low, high in bounds], dim=1)
    return theta, membership, [num] * len(bounds)


def _weighted_histogram(theta, weights, low, high, bins=6):
    inside = (theta >= low) & (theta <= high)
    index = ((theta[inside] - low) / (high - low) * bins).long().clamp(max=bins - 1)
    counts = torch.zeros(bins).index_add_(0, index, weights[inside])
    return counts / counts.mean()


def test_masses_of_regions_that_are_not_nested_come_from_the_draws_alone():
    _, membership, sizes = _rounds([(0.0, 0.5), (0.3, 0.6), (0.45, 0.55)])
    torch.testing.assert_close(region_masses(membership, sizes),
                               torch.tensor([1.0, 0.5, 0.3, 0.1], dtype=torch.float64), atol=0.01, rtol=0)


def test_weights_make_the_training_set_uniform_across_a_last_region_that_leaves_an_earlier_one():
    # R2 = [0.3, 0.6] leaves R1 = [0, 0.5] on [0.5, 0.6]: the unweighted draws there are a third too rare
    theta, membership, sizes = _rounds([(0.0, 0.5), (0.3, 0.6)])
    unweighted = _weighted_histogram(theta, torch.ones_like(theta), 0.3, 0.6)
    assert unweighted[-1] < 0.8 and unweighted[0] > 1.1
    weights = nesting_weights(membership, sizes)
    assert weights.mean().item() == pytest.approx(1.0)
    torch.testing.assert_close(_weighted_histogram(theta, weights, 0.3, 0.6), torch.ones(6), atol=0.04, rtol=0)
    # outside the last region every weight stays the same (the round keeps its focus on the region)
    outside = ~membership[:, -1]
    assert torch.unique(weights[outside]).numel() == 1


def test_nested_regions_leave_every_weight_at_one():
    _, membership, sizes = _rounds([(0.1, 0.7), (0.2, 0.5), (0.3, 0.4)])
    assert torch.equal(nesting_weights(membership, sizes), torch.ones(membership.shape[0]))


def test_the_weights_reach_the_training_and_validation_losses():
    """Adam is blind to a constant factor on the loss, so weights of 2 train the same network and report twice
    the losses: the per-row weights are what the Lightning loop minimises and early stopping watches."""
    from sbilab.config import TrainerSettings
    from sbilab.methods import NPE
    from sbilab.training import train_estimator

    generator = torch.Generator().manual_seed(0)
    theta = torch.rand(400, 2, generator=generator)
    x = theta + 0.1 * torch.randn(400, 2, generator=generator)
    settings = TrainerSettings(batch_size=50, learning_rate=1e-3, validation_fraction=0.2, stop_after_epochs=5,
                               clip_max_norm=1e6, max_epochs=3, lr_decay=None)
    estimator = {"model": "maf", "hidden_features": 8, "num_transforms": 1}
    plain = train_estimator(NPE(), estimator, theta, x, settings, seed=1)
    doubled = train_estimator(NPE(), estimator, theta, x, settings, seed=1, weights=torch.full((400,), 2.0))
    torch.testing.assert_close(torch.tensor(doubled.val_losses), 2 * torch.tensor(plain.val_losses), rtol=1e-3, atol=0)
