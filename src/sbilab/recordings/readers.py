"""Readers: a recording file (.npz in the Allen layout, CSV, NWB) to a checked :class:`Recording`.

- ``.npz``: the layout of ``../shared/data/allen`` (keys ``voltage_mV``, ``current_uA``,
  ``dt_ms``, optional ``stimulus_on_ms``/``stimulus_off_ms``, ``cell_id``, ``sweep_number``);
  never unpickled.
- ``.csv``: a header row naming the columns, ``#`` comments allowed. ``voltage_mV`` is
  required; the sampling interval comes from a uniform ``time_ms`` (or ``time_s``)
  column or the ``dt_ms`` argument; the stimulus from a ``current_pA``, ``current_nA``
  or ``current_uA`` column or the ``step`` argument.
- ``.nwb``: NWB 2 via pynwb (the optional ``nwb`` extra): a ``CurrentClampSeries`` in
  ``acquisition`` and its ``CurrentClampStimulusSeries`` in ``stimulus`` (paired by
  sweep number, or the only one), in the units the file declares.

ABF (Axon) files are not read directly: pyabf would do it, but NWB is the format
the Allen Institute and DANDI distribute and pynwb can also write the test files.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from sbilab.errors import ObservationError
from sbilab.recordings.recording import Recording, StepProtocol, make_recording

SUFFIXES = (".npz", ".csv", ".nwb")
#: CSV current columns and their factor to µA
CSV_CURRENT_UNITS = {"current_pA": 1e-6, "current_nA": 1e-3, "current_uA": 1.0}


def read_recording(
    path: str | Path,
    *,
    dt_ms: Optional[float] = None,
    step: Optional[StepProtocol] = None,
    cell_id: Optional[str] = None,
    soma_area_cm2: Optional[float] = None,
    junction_potential_mV: float = 0.0,
    series: Optional[str] = None,
) -> Recording:
    """Read and check a recording; the format follows the suffix (:data:`SUFFIXES`).

    ``dt_ms`` and ``step`` fill in what a CSV file may lack; ``series`` picks the sweep
    of an NWB file holding several; ``junction_potential_mV`` is added to the voltages
    (Gonçalves et al. 2020 use -14 mV for the Allen cells); ``soma_area_cm2`` is the
    cell's area for the current density. Any problem: ObservationError naming the file.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ObservationError(f"{path}: unsupported file type {path.suffix!r}; supported: {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise ObservationError(f"{path}: no such file")
    reader = {".npz": _npz_fields, ".csv": _csv_fields, ".nwb": _nwb_fields}[path.suffix.lower()]
    fields = reader(path, dt_ms=dt_ms, series=series)
    if step is not None:
        fields["step"] = step
    if cell_id is not None:
        fields["cell_id"] = cell_id
    declared = fields.pop("declared_ms", None)
    if declared is not None and declared[1] > (len(fields["voltage_mV"]) - 1) * float(fields["dt_ms"]):
        raise ObservationError(f"{path}: the file's stimulus ends at {declared[1]} ms but the trace at "
                               f"{(len(fields['voltage_mV']) - 1) * float(fields['dt_ms']):.2f} ms: truncated trace?")
    recording = make_recording(source=path, soma_area_cm2=soma_area_cm2, junction_potential_mV=junction_potential_mV,
                               **fields)
    if declared is not None:
        # the file states the step's first and last sample times; the step found in the current must agree
        found = (recording.step.t_on_ms, recording.step.t_off_ms - recording.dt_ms)
        if max(abs(a - b) for a, b in zip(found, declared)) > 1.5 * recording.dt_ms:
            raise ObservationError(f"{path}: the file states a stimulus from {declared[0]} to {declared[1]} ms but "
                                   f"its current steps from {found[0]} to {recording.step.t_off_ms} ms")
    return recording


def _npz_fields(path: Path, *, dt_ms: Optional[float], series: Optional[str]) -> dict[str, Any]:
    """Fields of an ``.npz`` in the Allen layout."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("voltage_mV", "dt_ms") if key not in data.files]
            if missing:
                raise ObservationError(f"{path}: missing {', '.join(missing)}; the .npz layout has voltage_mV, "
                                       "current_uA, dt_ms (and optionally stimulus_on_ms, stimulus_off_ms, cell_id, "
                                       "sweep_number)")
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise ObservationError(f"{path}: unreadable as .npz ({type(error).__name__}: {error}): "
                               "truncated file?") from None
    fields: dict[str, Any] = {
        "voltage_mV": arrays["voltage_mV"],
        "dt_ms": float(arrays["dt_ms"]) if dt_ms is None else dt_ms,
        "current_uA": arrays.get("current_uA"),
    }
    if "cell_id" in arrays:
        fields["cell_id"] = str(int(arrays["cell_id"]))
    if "sweep_number" in arrays:
        fields["sweep_number"] = int(arrays["sweep_number"])
    if "stimulus_on_ms" in arrays and "stimulus_off_ms" in arrays:
        fields["declared_ms"] = (float(arrays["stimulus_on_ms"]), float(arrays["stimulus_off_ms"]))
    return fields


def _csv_fields(path: Path, *, dt_ms: Optional[float], series: Optional[str]) -> dict[str, Any]:
    """Fields of a CSV file with named columns."""
    with path.open() as lines:  # the header is the first line that is neither blank nor a comment
        skip = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), None)
    if skip is None:
        raise ObservationError(f"{path}: the file holds no header row and no data (an empty file?)")
    try:
        table = np.genfromtxt(path, delimiter=",", names=True, comments="#", dtype=np.float64, invalid_raise=True,
                              deletechars="", autostrip=True, skip_header=skip)
    except ValueError as error:  # a row with too few or too many fields: a cut-off file
        first = str(error).strip().splitlines()[-1].strip()
        raise ObservationError(f"{path}: malformed CSV ({first}): truncated file?") from None
    names = table.dtype.names or ()
    if "voltage_mV" not in names:
        raise ObservationError(f"{path}: no voltage_mV column (columns: {', '.join(names) or 'none'}); expected "
                               f"voltage_mV and optionally time_ms or time_s and one of {', '.join(CSV_CURRENT_UNITS)}")
    table = np.atleast_1d(table)
    fields: dict[str, Any] = {"voltage_mV": table["voltage_mV"], "dt_ms": dt_ms}
    time_column = next((c for c in ("time_ms", "time_s") if c in names), None)
    if time_column is not None and dt_ms is None:
        time = table[time_column] * (1e3 if time_column == "time_s" else 1.0)
        steps = np.diff(time)
        if steps.size == 0 or not np.all(np.isfinite(steps)) or np.ptp(steps) > 1e-6 * abs(np.mean(steps)):
            raise ObservationError(f"{path}: the {time_column} column is not uniformly sampled")
        fields["dt_ms"] = float(f"{np.mean(steps):.12g}")  # a printed time column: 0.02, not 0.019999999999999993
    if fields["dt_ms"] is None:
        raise ObservationError(f"{path}: no time_ms or time_s column and no dt_ms given: unknown sampling interval")
    unit = next((c for c in CSV_CURRENT_UNITS if c in names), None)
    if unit is not None:
        fields["current_uA"] = table[unit] * CSV_CURRENT_UNITS[unit]
    return fields


def _nwb_fields(path: Path, *, dt_ms: Optional[float], series: Optional[str]) -> dict[str, Any]:
    """Fields of one current-clamp sweep of an NWB 2 file."""
    try:
        from pynwb import NWBHDF5IO
        from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries
    except ImportError:
        raise ObservationError(f"{path}: reading NWB needs pynwb: pip install 'sbilab[nwb]'") from None
    try:
        with NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            responses = {n: s for n, s in nwb.acquisition.items() if isinstance(s, CurrentClampSeries)}
            response = _pick(responses, series, path, "CurrentClampSeries in acquisition")
            stimuli = [s for s in nwb.stimulus.values() if isinstance(s, CurrentClampStimulusSeries)]
            paired = [s for s in stimuli if s.sweep_number is not None and s.sweep_number == response.sweep_number]
            stimulus = paired[0] if len(paired) == 1 else (stimuli[0] if len(stimuli) == 1 else None)
            electrode = response.electrode
            fields: dict[str, Any] = {
                "voltage_mV": _si(response, "volts", path) * 1e3,
                "dt_ms": _sampling_ms(response, path) if dt_ms is None else dt_ms,
                "current_uA": None if stimulus is None else _si(stimulus, "amperes", path) * 1e6,
                "cell_id": getattr(electrode, "cell_id", None) or nwb.identifier,
            }
            if response.sweep_number is not None:
                fields["sweep_number"] = int(response.sweep_number)
            return fields
    except ObservationError:
        raise
    except Exception as error:  # h5py / hdmf raise many types for damaged files
        raise ObservationError(f"{path}: unreadable as NWB ({type(error).__name__}: {error}): "
                               "truncated file?") from None


def _pick(candidates: dict[str, Any], name: Optional[str], path: Path, what: str) -> Any:
    if name is not None:
        if name not in candidates:
            raise ObservationError(f"{path}: no {what} named {name!r}; available: {', '.join(candidates) or 'none'}")
        return candidates[name]
    if len(candidates) != 1:
        raise ObservationError(f"{path}: {len(candidates)} {what}; name one (series=...): "
                               f"{', '.join(candidates) or 'none'}")
    return next(iter(candidates.values()))


def _si(series: Any, unit: str, path: Path) -> np.ndarray:
    """A series' data in SI units (data · conversion + offset), checking the declared unit."""
    if series.unit != unit:
        raise ObservationError(f"{path}: {series.name} is in {series.unit!r}, expected {unit!r}")
    return np.asarray(series.data[:], dtype=np.float64) * series.conversion + getattr(series, "offset", 0.0)


def _sampling_ms(series: Any, path: Path) -> float:
    """The sampling interval (ms) from the rate or from uniform timestamps."""
    if series.rate is not None:
        return 1e3 / float(series.rate)
    steps = np.diff(np.asarray(series.timestamps[:], dtype=np.float64))
    if steps.size == 0 or np.ptp(steps) > 1e-6 * abs(np.mean(steps)):
        raise ObservationError(f"{path}: {series.name} is not uniformly sampled")
    return float(np.mean(steps)) * 1e3
