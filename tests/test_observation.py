"""Observation sources: θ* (simulated, seeded), an explicit x, a recording (file or Allen cell)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbilab.config import (
    ConfigError,
    RecordingObservation,
    StepStimulus,
    SummaryObservation,
    SyntheticObservation,
    load_observation,
)
from sbilab.observation import ObservationError, make_observation, read_observed_recording
from sbilab.simulators.hodgkin_huxley import HodgkinHuxley
from sbilab.summaries.hh_features import HHFeatures

SIM = HodgkinHuxley(backend="numpy")
SUMMARY = HHFeatures()


def _make(theta=None, x=None, file=None, seed=2026, **recording_keys):
    recording = None
    if theta is not None:
        settings = SyntheticObservation(theta=theta, seed=seed)
    elif x is not None:
        settings = SummaryObservation(x=x)
    else:
        settings = RecordingObservation(file=file, **recording_keys)
        recording = read_observed_recording(settings)
    return make_observation(SIM, SUMMARY, settings, x_dim=7, recording=recording)


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


def write_trace(path, trace, *, time=True, current=True):
    """A CSV recording of ``trace`` on the simulator's protocol: time, voltage and injected current columns."""
    p = SIM.params
    columns = {"time_ms": p.time(), "voltage_mV": trace, "current_pA": p.input_current() * p.soma_area * 1e6}
    keep = [name for name in columns if (name != "time_ms" or time) and (name != "current_pA" or current)]
    np.savetxt(path, np.stack([columns[name] for name in keep], axis=1), delimiter=",", header=",".join(keep),
               comments="", fmt="%.17g")


def test_recording_file_is_summarised_like_a_simulation(tmp_path):
    reference = _make(theta=[50.0, 5.0])
    path = tmp_path / "trace.csv"
    write_trace(path, reference.raw.numpy())
    obs = _make(file=str(path))
    torch.testing.assert_close(obs.x, reference.x)
    assert obs.source == "file" and obs.recording.step.t_on_ms == SIM.params.t_on
    # a voltage-only file takes its sampling interval and step from the config
    write_trace(path, reference.raw.numpy(), time=False, current=False)
    step = StepStimulus(t_on=SIM.params.t_on, t_off=SIM.params.t_off, amplitude_pA=SIM.params.current * 1e6)
    torch.testing.assert_close(_make(file=str(path), dt_ms=SIM.params.dt, step=step).x, reference.x)


@pytest.mark.parametrize(
    "content,message",
    [(None, "no such file"), ("", "no header row and no data"), ("voltage_mV,time_ms\n1,0\nnan,0.01\n", "NaN"),
     ("a,b\n", "no voltage_mV column")],
)
def test_bad_recording_files_fail_with_the_key(tmp_path, content, message):
    path = tmp_path / "trace.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ObservationError, match=f"observation.file: .*trace.csv.*({message})"):
        _make(file=str(path))


def test_recording_takes_one_of_file_and_cell():
    for keys in ({}, {"file": "a.npz", "cell": 509881736}):
        with pytest.raises(ConfigError, match="one of observation.file .* and observation.cell"):
            load_observation({"name": "recording", **keys})
    with pytest.raises(ObservationError, match="observation.cell: Allen cell 123 is not one of the ten cells"):
        read_observed_recording(load_observation({"name": "recording", "cell": 123}))


def test_wrong_dimensions_and_sources_are_rejected():
    with pytest.raises(ObservationError, match="observation.theta has 3 values"):
        _make(theta=[1.0, 2.0, 3.0])
    with pytest.raises(ObservationError, match="gives 2 summary values but the summary produces 7"):
        _make(x=[1.0, 2.0])
    with pytest.raises(ConfigError, match="observation=synthetic|summary|recording"):
        load_observation({"name": "both", "theta": [50.0, 5.0], "x": [1.0] * 7})
    with pytest.raises(ObservationError, match="finite"):
        _make(x=[float("nan")] * 7)
