"""hh_extended on constructed traces with known spikes; the downsampled-trace CNN embedding trains and reloads."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sbi.utils import BoxUniform

from sbilab.config import TrainerSettings
from sbilab.methods import FMPE, NPE, NRE
from sbilab.posterior_io import posterior_spec, rebuild_posterior
from sbilab.simulators.hh_equations import HHParams
from sbilab.summaries.embedding import DownsampledTraceCNN, block_mean
from sbilab.summaries.hh_extended import FEATURE_NAMES, HHExtended, hh_extended_array
from sbilab.summaries.hh_features import hh_feature_array
from sbilab.training import train_estimator

ROOT = Path(__file__).resolve().parents[1]
P = HHParams()
T = P.time()
REST = -65.0
SIGMA = 0.2  # ms, Gaussian spike shape


def _trace(spike_times, height: float = 100.0, sigma: float = SIGMA) -> np.ndarray:
    trace = np.full(P.num_steps, REST)
    for t_peak in spike_times:
        trace += height * np.exp(-0.5 * ((T - t_peak) / sigma) ** 2)
    return trace


def _stats(trace: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, hh_extended_array(trace[None], P)[0]))


def test_known_spike_train():
    times = [20.0, 30.0, 50.0, 80.0]  # ISIs 10, 20, 30 ms
    stats = _stats(_trace(times))
    assert stats["spike_count"] == 4
    assert stats["spike_latency"] == pytest.approx(10.0, abs=P.dt)
    assert stats["isi_mean"] == pytest.approx(20.0, abs=1e-6)
    assert stats["isi_cv"] == pytest.approx(np.std([10, 20, 30]) / 20.0, abs=1e-6)
    assert stats["adaptation_index"] == pytest.approx(np.mean([10 / 30, 10 / 50]), abs=1e-6)
    assert stats["ap_amplitude"] == pytest.approx(100.0, abs=1e-3)
    # full width at half amplitude of a Gaussian: 2 σ √(2 ln 2)
    assert stats["ap_width"] == pytest.approx(2 * SIGMA * math.sqrt(2 * math.log(2)), abs=2e-3)


def test_first_seven_are_the_tutorial_statistics():
    rng = np.random.default_rng(0)
    traces = np.stack([_trace([25.0, 40.0]) + rng.normal(0, 0.3, P.num_steps), _trace([])])
    np.testing.assert_array_equal(hh_extended_array(traces, P)[:, :7], hh_feature_array(traces, P))


def test_no_spike_fallbacks_are_finite_and_as_documented():
    trace = _trace([])
    trace[(T > 40) & (T < 60)] += 12.0  # a subthreshold bump of 12 mV
    stats = _stats(trace)
    duration = P.t_off - P.t_on
    assert stats["spike_count"] == 0
    assert stats["spike_latency"] == duration and stats["isi_mean"] == duration
    assert stats["isi_cv"] == 0 and stats["adaptation_index"] == 0 and stats["ap_width"] == 0
    assert stats["ap_amplitude"] == pytest.approx(12.0)


def test_one_and_two_spike_fallbacks():
    one = _stats(_trace([33.0]))
    assert one["spike_count"] == 1 and one["spike_latency"] == pytest.approx(23.0, abs=P.dt)
    assert one["isi_mean"] == P.t_off - P.t_on and one["isi_cv"] == 0 and one["adaptation_index"] == 0
    assert one["ap_width"] > 0
    two = _stats(_trace([30.0, 45.0]))
    assert two["isi_mean"] == pytest.approx(15.0) and two["isi_cv"] == 0 and two["adaptation_index"] == 0


def test_spikes_outside_the_stimulus_and_double_peaks_are_ignored():
    trace = _trace([5.0, 30.0, 115.0])  # 5 and 115 ms lie outside [t_on, t_off]
    trace += 100.0 * np.exp(-0.5 * ((T - 30.3) / 0.1) ** 2)  # second peak 0.3 ms later: same spike
    stats = _stats(trace)
    assert stats["spike_count"] == 1 and stats["spike_latency"] == pytest.approx(20.0, abs=0.5)


def test_summary_callable_on_a_batch_of_simulated_traces():
    from sbilab.simulators.hodgkin_huxley import HodgkinHuxley

    simulator = HodgkinHuxley(duration=40.0, t_off=35.0)
    traces = simulator.simulate(torch.tensor([[50.0, 5.0], [4.0, 15.0], [80.0, 3.0]]), np.arange(3))
    out = HHExtended(duration=40.0, t_off=35.0)(traces)
    assert out.shape == (3, 13) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out[0, 0] >= 1 and out[1, 0] == 0  # the tutorial's θ spikes; a tiny gNa does not


def test_summary_configs_compose_and_instantiate():
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        for name, expected in (("hh_extended", HHExtended), ("hh_cnn", DownsampledTraceCNN)):
            part = OmegaConf.to_container(compose("config", overrides=[f"summary={name}"]).summary, resolve=True)
            summary = instantiate({k: v for k, v in part.items() if k != "name"}, _convert_="all")
            assert isinstance(summary, expected) and part["name"] == name
    assert DownsampledTraceCNN().dim == 300  # 12001 samples of the tutorial's trace, 40 per bin


# --- learned embedding -------------------------------------------------------------------------


def test_block_mean_is_a_fixed_downsampling():
    traces = torch.arange(2 * 10, dtype=torch.float64).reshape(2, 10)
    torch.testing.assert_close(block_mean(traces, 3), torch.tensor([[1.0, 4.0, 7.0], [11.0, 14.0, 17.0]],
                                                                     dtype=torch.float64))
    summary = DownsampledTraceCNN(length=10, factor=3, out_channels_per_layer=[2], kernel_size=1, pool_kernel_size=1)
    assert summary(traces).shape == (2, 3) and summary(traces).dtype == torch.float32
    with pytest.raises(ValueError, match="samples"):
        summary(torch.zeros(2, 20))
    with pytest.raises(ValueError, match="summary.factor"):
        DownsampledTraceCNN(factor=0)


def _toy_traces(num: int, length: int = 400, seed: int = 0) -> tuple[BoxUniform, torch.Tensor, torch.Tensor]:
    """θ = (frequency, amplitude) of a noisy sine trace of ``length`` samples."""
    prior = BoxUniform(torch.tensor([1.0, 0.5]), torch.tensor([4.0, 2.0]))
    generator = torch.Generator().manual_seed(seed)
    theta = prior.low + (prior.high - prior.low) * torch.rand(num, 2, generator=generator)
    t = torch.linspace(0, 1, length)
    noise = 0.1 * torch.randn(num, length, generator=generator)
    traces = theta[:, 1:] * torch.sin(2 * math.pi * theta[:, :1] * t) + noise
    return prior, theta, traces


def test_cnn_embedding_trains_jointly_and_reloads():
    summary_cfg = {"_target_": "sbilab.summaries.embedding.DownsampledTraceCNN", "name": "cnn", "length": 400,
                   "factor": 8, "out_channels_per_layer": [4, 8], "kernel_size": 5, "num_linear_units": 16,
                   "output_dim": 6}
    summary = instantiate({k: v for k, v in summary_cfg.items() if k != "name"})
    prior, theta, traces = _toy_traces(300)
    x = summary(traces)
    assert x.shape == (300, 50)
    trainer = {"batch_size": 50, "learning_rate": 1e-3, "validation_fraction": 0.1, "stop_after_epochs": 3,
               "clip_max_norm": 5.0, "max_epochs": 2}
    estimator_cfg = {"model": "maf", "hidden_features": 16, "num_transforms": 2, "z_score_x": "structured"}

    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in summary.embedding_net().state_dict().items()}
    result = train_estimator(NPE(), estimator_cfg, theta, x, TrainerSettings(**trainer), seed=0,
                             embedding_net=summary.embedding_net)
    embedding = result.estimator.embedding_net
    trained = {k.split(".", 1)[1]: v for k, v in embedding.state_dict().items() if k.startswith("1.")}
    assert trained.keys() == initial.keys()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)  # the CNN was trained
    assert result.epochs == 2 and all(np.isfinite(result.val_losses))

    posterior = NPE().build_posterior(result.estimator, prior)
    samples = posterior.sample((10,), x=x[:1], show_progress_bars=False)
    assert samples.shape == (10, 2) and torch.isfinite(samples).all()

    spec = yaml.safe_load(yaml.safe_dump(posterior_spec({"_target_": "sbilab.methods.NPE"}, estimator_cfg,
                                                        {"_target_": "sbilab.priors.box_uniform", "low": [1.0, 0.5],
                                                         "high": [4.0, 2.0], "names": ["f", "a"]},
                                                        2, x.shape[1], summary_cfg=summary_cfg)))
    rebuilt = rebuild_posterior(spec, result.estimator.state_dict())
    theta_test = prior.sample((5,))
    torch.testing.assert_close(rebuilt.posterior_estimator.log_prob(theta_test[None], x[:5]),
                               result.estimator.log_prob(theta_test[None], x[:5]))


@pytest.mark.parametrize("method", [NRE(), FMPE()])
def test_embedding_net_plugs_into_other_methods(method):
    summary = DownsampledTraceCNN(length=400, factor=8, out_channels_per_layer=[4], num_linear_units=8, output_dim=4)
    _, theta, traces = _toy_traces(60)
    x = summary(traces)
    estimator_cfg = ({"model": "mlp", "hidden_features": 8} if isinstance(method, NRE)
                     else {"model": "mlp", "hidden_features": 16, "num_layers": 2})
    estimator = method.build_estimator(estimator_cfg, theta, x, embedding_net=summary.embedding_net())
    n_embedding = sum(p.numel() for p in summary.embedding_net().parameters())
    assert sum(p.numel() for p in estimator.parameters()) > n_embedding
    torch.manual_seed(0)
    loss = method.loss(estimator, theta[:20], x[:20]).mean()
    loss.backward()
    assert torch.isfinite(loss)


def test_untrusted_summary_target_is_refused():
    spec = posterior_spec({"_target_": "sbilab.methods.NPE"}, {"model": "maf"},
                          {"_target_": "sbilab.priors.box_uniform", "low": [0.0], "high": [1.0], "names": ["a"]},
                          1, 1, summary_cfg={"_target_": "os.system", "command": "true"})
    with pytest.raises(ValueError, match="only sbilab"):
        rebuild_posterior(spec, {})
    spec["summary"] = {"_target_": "sbilab.summaries.identity.Identity", "nested": {"_target_": "os.system"}}
    with pytest.raises(ValueError, match="only sbilab"):
        rebuild_posterior(spec, {})


def test_a_prior_of_your_own_is_rebuilt_when_you_trust_its_package(tmp_path, monkeypatch):
    """Refused by default with a line naming the option; rebuilt with trust=[package] (or the variable)."""
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "priors.py").write_text(
        "import torch\nfrom sbi.utils import BoxUniform\n\n"
        "def square(side, names):\n"
        "    return BoxUniform(torch.zeros(len(names)), torch.full((len(names),), float(side)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    method = instantiate({"_target_": "sbilab.methods.NPE"})
    prior_cfg = {"_target_": "mylab.priors.square", "side": 2.0, "names": ["a", "b"]}
    theta, x = torch.rand(50, 2) * 2, torch.randn(50, 3)
    estimator = method.build_estimator({"model": "maf", "hidden_features": 8, "num_transforms": 1}, theta, x,
                                       prior=BoxUniform(torch.zeros(2), torch.full((2,), 2.0)))
    spec = posterior_spec({"_target_": "sbilab.methods.NPE"}, {"model": "maf", "hidden_features": 8,
                                                               "num_transforms": 1}, prior_cfg, 2, 3)
    with pytest.raises(ValueError, match=r"unless you trust its package: load_posterior\(\.\.\., trust=\['mylab'\]\) "
                                         r"or SBILAB_TRUSTED_PACKAGES=mylab"):
        rebuild_posterior(spec, estimator.state_dict())
    with pytest.raises(ValueError, match="unless you trust"):  # trusting another package is not enough
        rebuild_posterior(spec, estimator.state_dict(), trust=["mylabs"])
    posterior = rebuild_posterior(spec, estimator.state_dict(), trust=["mylab"])
    samples = posterior.sample((20,), x=torch.zeros(3), show_progress_bars=False)
    assert samples.shape == (20, 2) and ((samples >= 0) & (samples <= 2)).all()
    monkeypatch.setenv("SBILAB_TRUSTED_PACKAGES", "other,mylab")
    assert rebuild_posterior(spec, estimator.state_dict()) is not None


def test_a_stored_spec_cannot_call_any_sbilab_function_only_its_own_kind_of_part():
    """sbilab.scaffold.write_model writes files: a prior spec naming it is refused like any foreign code."""
    spec = posterior_spec({"_target_": "sbilab.methods.NPE"}, {"model": "maf"},
                          {"_target_": "sbilab.scaffold.write_model", "name": "evil", "folder": "/tmp"}, 1, 1)
    with pytest.raises(ValueError, match=r"only sbilab.priors.\* parts are rebuilt on load"):
        rebuild_posterior(spec, {})
    spec = posterior_spec({"_target_": "sbilab.priors.box_uniform"}, {"model": "maf"},
                          {"_target_": "sbilab.priors.box_uniform", "low": [0.0], "high": [1.0], "names": ["a"]}, 1, 1)
    with pytest.raises(ValueError, match=r"only sbilab.methods.\* parts"):
        rebuild_posterior(spec, {})
