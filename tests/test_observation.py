"""Observation sources: θ* (simulated, seeded), an explicit x, a recorded trace file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbilab.config import ConfigError, RecordingObservation, SummaryObservation, SyntheticObservation, load_observation
from sbilab.observation import ObservationError, make_observation
from sbilab.simulators.hodgkin_huxley import HodgkinHuxley
from sbilab.summaries.hh_features import HHFeatures

SIM = HodgkinHuxley(backend="numpy")
SUMMARY = HHFeatures()


def _make(theta=None, x=None, file=None, seed=2026):
    if theta is not None:
        settings = SyntheticObservation(theta=theta, seed=seed)
    elif x is not None:
        settings = SummaryObservation(x=x)
    else:
        settings = RecordingObservation(file=file)
    return make_observation(SIM, SUMMARY, settings, x_dim=7)


def test_theta_source_is_simulated_with_the_observation_seed():
    a = _make(theta=[50.0, 5.0])
    b = _make(theta=[50.0, 5.0])
    c = _make(theta=[50.0, 5.0], seed=1)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.theta.tolist() == [50.0, 5.0] and a.raw.shape == (12_001,)
    assert a.x[0] >= 1  # θ* = (50, 5) spikes


def test_explicit_x_is_used_as_it_is():
    values = [3.0, -70.0, 0.1, -55.0, 300.0, 3.0, 15.0]
    obs = _make(x=values)
    assert obs.x.tolist() == pytest.approx(values) and obs.theta is None


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".txt"])
def test_trace_file_is_summarised_like_a_simulation(tmp_path, suffix):
    reference = _make(theta=[50.0, 5.0])
    path = tmp_path / f"trace{suffix}"
    trace = reference.raw.numpy()
    if suffix == ".npy":
        np.save(path, trace)
    else:
        np.savetxt(path, trace, delimiter="," if suffix == ".csv" else " ", fmt="%.17g")
    obs = _make(file=str(path))
    torch.testing.assert_close(obs.x, reference.x)
    assert obs.source == "file"


@pytest.mark.parametrize(
    "content,message",
    [(None, "no such file"), ("", "holds no values|unreadable"), ("1,2,nan\n", "NaN"), ("a,b\n", "unreadable")],
)
def test_bad_trace_files_fail_with_the_key(tmp_path, content, message):
    path = tmp_path / "trace.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ObservationError, match=f"observation.file.*({message})"):
        _make(file=str(path))


def test_wrong_dimensions_and_sources_are_rejected():
    with pytest.raises(ObservationError, match="observation.theta has 3 values"):
        _make(theta=[1.0, 2.0, 3.0])
    with pytest.raises(ObservationError, match="gives 2 summary values but the summary produces 7"):
        _make(x=[1.0, 2.0])
    with pytest.raises(ConfigError, match="observation=synthetic|summary|recording"):
        load_observation({"name": "both", "theta": [50.0, 5.0], "x": [1.0] * 7})
    with pytest.raises(ObservationError, match="finite"):
        _make(x=[float("nan")] * 7)
