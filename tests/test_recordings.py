"""Recordings: the shipped Allen cells, the three readers on real files, validation, the simulator protocol."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sbilab.errors import ObservationError
from sbilab.recordings import allen_recording, make_recording, protocol_keys, read_recording
from sbilab.recordings.allen import CELLS, JUNCTION_POTENTIAL_MV, SHIPPED_DIRECTORY, cell_file_name
from sbilab.recordings.recording import StepProtocol
from sbilab.rng import per_index_seeds
from sbilab.simulators.hh_equations import INFERABLE
from sbilab.simulators.hodgkin_huxley import HodgkinHuxley
from sbilab.summaries.hh_features import HHFeatures

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "allen"  # ../shared beside the checkout
CELL = 509881736  # shipped; about 25 spikes during the step (data README)
ALLEN_FILE = SHIPPED_DIRECTORY / cell_file_name(CELL)


def features_of(recording) -> np.ndarray:
    keys = protocol_keys(recording)
    summary = HHFeatures(duration=keys["duration"], dt=keys["dt"], t_on=keys["t_on"], t_off=keys["t_off"])
    return summary(torch.from_numpy(recording.voltage_mV)[None])[0].numpy()


def write_allen_npz(path: Path, **changes) -> Path:
    """A copy of the shipped cell's .npz with some arrays replaced or removed (None)."""
    with np.load(ALLEN_FILE, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_at_least_two_cells_ship_with_their_attribution_and_stay_small() -> None:
    files = sorted(SHIPPED_DIRECTORY.glob("*.npz"))
    assert len(files) >= 2 and all(f.name in {cell_file_name(c) for c in CELLS} for f in files)
    assert sum(f.stat().st_size for f in files) < 200_000
    readme = (SHIPPED_DIRECTORY / "README.md").read_text()
    for credit in ("Allen Institute for Brain Science", "Gouwens et al. 2019", "Gonçalves et al. 2020"):
        assert credit in readme


def test_allen_cell_reads_with_the_papers_corrections_and_its_protocol() -> None:
    recording = allen_recording(CELL)
    with np.load(ALLEN_FILE) as raw:
        expected = raw["voltage_mV"].astype(np.float64) + JUNCTION_POTENTIAL_MV
    np.testing.assert_array_equal(recording.voltage_mV, expected)
    assert recording.num_samples == 72_500 and recording.dt_ms == 0.02 and recording.duration_ms == 1449.98
    assert recording.step == StepProtocol(205.0, 1205.0, pytest.approx(130e-6))
    assert recording.cell_id == str(CELL) and recording.sweep_number == 39
    assert recording.soma_area_cm2 == pytest.approx(0.0153 / 184)
    keys = protocol_keys(recording)
    assert keys == {"duration": 1449.98, "dt": 0.02, "t_on": 205.0, "t_off": 1205.0,
                    "current": recording.step.amplitude_uA, "V0": recording.voltage_mV[0],
                    "soma_area_cm2": recording.soma_area_cm2}
    meta = recording.metadata()
    assert meta["amplitude_pA"] == pytest.approx(130.0) and meta["cell_id"] == str(CELL) and len(meta["digest"]) == 16
    x_o = features_of(recording)
    assert 20 <= x_o[0] <= 30 and -85 < x_o[1] < -78  # ~25 spikes; rest ≈ -67 mV - 14 mV


def test_simulator_takes_the_recordings_protocol_sample_for_sample() -> None:
    recording = allen_recording(CELL)
    simulator = HodgkinHuxley(inferred=INFERABLE, **protocol_keys(recording))
    time, current_density, to_nA = simulator.trace_axes()
    np.testing.assert_allclose(time, recording.time_ms(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(current_density * simulator.params.soma_area, recording.current_uA, rtol=1e-6, atol=0)
    assert HHFeatures(*simulator.params.timing).kernel_fusion.timing == simulator.params.timing


def test_eight_parameter_model_at_the_published_fit_reproduces_the_recording() -> None:
    """NPE-PF's synthetic θ for cell 518290966 (its -V_T, -E_leak negated), simulated on that cell's protocol."""
    recording = allen_recording(518290966)
    keys = protocol_keys(recording)
    simulator = HodgkinHuxley(inferred=INFERABLE, **keys)
    summary = HHFeatures(duration=keys["duration"], dt=keys["dt"], t_on=keys["t_on"], t_off=keys["t_off"])
    theta = torch.tensor([[8.932692, 2.006126, 0.028068965, 0.03327207, 2792.28, -65.309746, 0.03135364, -86.49111]])
    simulated = simulator.simulate_summaries(theta.repeat(8, 1), per_index_seeds(0, 0, 8), summary).numpy()
    observed = features_of(recording)
    assert np.all(np.abs(simulated[:, 0] - observed[0]) <= 2)  # spike count 12 ± 2
    assert np.all(np.abs(simulated[:, 1] - observed[1]) < 0.5)  # resting potential (mV)
    assert np.all(np.abs(simulated[:, 3] - observed[3]) < 1.0)  # mean potential during the step (mV)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the ten cells of ../shared/data/allen are not here")
def test_all_ten_cells_read_validate_and_map_onto_the_simulator() -> None:
    for cell in CELLS:
        recording = allen_recording(cell, [SHARED])
        assert recording.step.t_on_ms == 205.0 and recording.step.t_off_ms == 1205.0
        assert 80e-6 < recording.step.amplitude_uA < 260e-6
        assert HodgkinHuxley(**protocol_keys(recording)).params.num_steps == recording.num_samples
        assert features_of(recording)[0] > 0  # every cell spikes during the step


def test_csv_and_npz_readers_agree(tmp_path: Path) -> None:
    npz = read_recording(ALLEN_FILE)
    csv = tmp_path / "cell.csv"
    header = "# exported from the Allen .npz\ntime_ms,voltage_mV,current_pA"
    table = np.stack([npz.time_ms(), npz.voltage_mV, npz.current_uA * 1e6], axis=1)
    np.savetxt(csv, table, delimiter=",", header=header, comments="", fmt="%.9g")
    recording = read_recording(csv, cell_id="509881736")
    np.testing.assert_allclose(recording.voltage_mV, npz.voltage_mV, rtol=1e-7)
    assert recording.dt_ms == 0.02 and recording.step.t_on_ms == 205.0 and recording.step.t_off_ms == 1205.0
    assert recording.step.amplitude_uA == pytest.approx(npz.step.amplitude_uA, rel=1e-8)
    assert protocol_keys(recording)["duration"] == 1449.98
    cut = tmp_path / "cut.csv"
    cut.write_text(csv.read_text()[:-12])  # the last row loses its last fields
    with pytest.raises(ObservationError) as error:
        read_recording(cut)
    assert_one_line(error, str(cut), "truncated file?")
    voltage_only = tmp_path / "voltage.csv"
    np.savetxt(voltage_only, npz.voltage_mV, header="voltage_mV", comments="", fmt="%.9g")
    given = read_recording(voltage_only, dt_ms=0.02, step=npz.step)
    assert given.step == npz.step and given.current_uA is None
    with pytest.raises(ObservationError) as error:
        read_recording(voltage_only, dt_ms=0.02)
    assert_one_line(error, str(voltage_only), "no stimulus")


def test_nwb_reader_on_a_file_written_by_pynwb(tmp_path: Path) -> None:
    pytest.importorskip("pynwb")
    from recording_files import write_nwb

    npz = read_recording(ALLEN_FILE)
    path = write_nwb(ALLEN_FILE, tmp_path / "cell.nwb")
    recording = read_recording(path)
    np.testing.assert_allclose(recording.voltage_mV, npz.voltage_mV, rtol=1e-6)
    assert recording.step == npz.step and recording.dt_ms == pytest.approx(0.02)
    assert recording.cell_id == "509881736" and recording.sweep_number == 39
    truncated = tmp_path / "truncated.nwb"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ObservationError) as error:
        read_recording(truncated)
    assert_one_line(error, str(truncated), "truncated file?")


def test_nans_fail_with_one_line_naming_the_file(tmp_path: Path) -> None:
    with np.load(ALLEN_FILE) as data:
        voltage = data["voltage_mV"].copy()
    voltage[30_000:30_010] = np.nan
    path = write_allen_npz(tmp_path / "nan.npz", voltage_mV=voltage)
    with pytest.raises(ObservationError) as error:
        read_recording(path)
    assert_one_line(error, str(path), "10 NaN/inf samples", "t = 600.00 ms")


@pytest.mark.parametrize("cut", ["during the step", "file bytes", "voltage only"])
def test_truncated_traces_fail_with_one_line_naming_the_file(tmp_path: Path, cut: str) -> None:
    with np.load(ALLEN_FILE) as data:
        voltage, current = data["voltage_mV"], data["current_uA"]
    path = tmp_path / "truncated.npz"
    if cut == "during the step":
        write_allen_npz(path, voltage_mV=voltage[:50_000], current_uA=current[:50_000])
    elif cut == "voltage only":
        write_allen_npz(path, voltage_mV=voltage[:60_000])
    else:
        shutil.copy(ALLEN_FILE, path)
        path.write_bytes(path.read_bytes()[:40_000])
    with pytest.raises(ObservationError) as error:
        read_recording(path)
    assert_one_line(error, str(path), "truncated")


def square(samples: int, *pulses: tuple[int, int, float]) -> np.ndarray:
    current = np.zeros(samples)
    for start, stop, amplitude in pulses:
        current[start:stop] = amplitude
    return current


@pytest.mark.parametrize(
    "current,problem",
    [
        (square(5000), "zero throughout"),
        (square(5000, (500, 1000, -5e-5), (2000, 4000, 1e-4)), "2 separate pulses"),
        (np.concatenate([np.zeros(1000), np.linspace(1e-5, 2e-4, 3000), np.zeros(1000)]), "not a constant step"),
        (square(5000, (0, 4000, 1e-4)), "resting period"),
        (square(5000, (1000, 5000, 1e-4)), "truncated"),
    ],
)
def test_unsupported_stimuli_fail_with_one_line(current: np.ndarray, problem: str) -> None:
    with pytest.raises(ObservationError) as error:
        make_recording(np.full(current.shape, -70.0), 0.02, "cell.npz", current_uA=current)
    assert_one_line(error, "cell.npz", problem)


def test_unknown_formats_missing_files_and_keys(tmp_path: Path) -> None:
    for path, problem in [(tmp_path / "cell.abf", "unsupported file type"), (tmp_path / "absent.npz", "no such file")]:
        path.write_bytes(b"x") if path.suffix == ".abf" else None
        with pytest.raises(ObservationError) as error:
            read_recording(path)
        assert_one_line(error, str(path), problem)
    no_voltage = write_allen_npz(tmp_path / "novoltage.npz", voltage_mV=None)
    with pytest.raises(ObservationError) as error:
        read_recording(no_voltage)
    assert_one_line(error, str(no_voltage), "missing voltage_mV")
    with pytest.raises(ObservationError) as error:
        allen_recording(123)
    assert_one_line(error, "123", "not one of the ten cells")


def test_extended_features_on_the_recording_and_on_the_eight_parameter_model() -> None:
    """sbilab's 13 statistics work on the 1,450 ms protocol: the recording and simulations at the published fit."""
    from sbilab.summaries.hh_extended import FEATURE_NAMES, HHExtended

    recording = allen_recording(518290966)
    keys = protocol_keys(recording)
    summary = HHExtended(duration=keys["duration"], dt=keys["dt"], t_on=keys["t_on"], t_off=keys["t_off"])
    observed = summary(torch.from_numpy(recording.voltage_mV)[None])[0].numpy()
    assert observed[0] == features_of(recording)[0]
    theta = torch.tensor([[8.932692, 2.006126, 0.028068965, 0.03327207, 2792.28, -65.309746, 0.03135364, -86.49111]])
    simulator = HodgkinHuxley(inferred=INFERABLE, **keys)
    simulated = simulator.simulate_summaries(theta.repeat(3, 1), per_index_seeds(1, 0, 3), summary).numpy()
    assert simulated.shape == (3, len(FEATURE_NAMES)) and np.isfinite(simulated).all()
    for name in ("isi_mean", "ap_amplitude", "ap_width"):  # spike shape and timing close to the cell's
        column = FEATURE_NAMES.index(name)
        assert np.all(np.abs(simulated[:, column] / observed[column] - 1) < 0.25), name
