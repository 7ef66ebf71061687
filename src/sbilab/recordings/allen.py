"""The ten Allen Cell Types recordings of Gonçalves et al. 2020 (eLife 9:e56261, Fig. 7).

Two of them ship with sbilab (``sbilab/recordings/data/allen``, attribution in the
README there); the others are read from a directory holding the same ``.npz`` layout
(e.g. ``../shared/data/allen``). :func:`allen_recording` applies the corrections
that paper (and the NPE-PF paper, Vetter et al. 2025) apply before fitting: the
-14 mV liquid junction potential added to the voltages, and each cell's membrane
area for the current density (``list_cells_AllenDB`` in
mackelab/IdentifyMechanisticModels_2020, ``6_allen/01_model_fitting.ipynb``; the
same table is in mackelab/npe-pfn, ``tasks/allen/allen_utils.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from sbilab.errors import ObservationError
from sbilab.recordings.readers import read_recording
from sbilab.recordings.recording import Recording

#: Liquid junction potential added to the recorded voltages (mV), as in both papers.
JUNCTION_POTENTIAL_MV = -14.0

#: Cell id → (sweep number, membrane area in cm²), in the NPE-PF paper's observation order 1..10.
CELLS: dict[int, tuple[int, float]] = {
    518290966: (57, 0.0234 / 126),
    509881736: (39, 0.0153 / 184),
    566517779: (46, 0.0195 / 198),
    567399060: (38, 0.0259 / 161),
    569469018: (44, 0.033 / 403),
    532571720: (42, 0.0139 / 127),
    555060623: (34, 0.0294 / 320),
    534524026: (29, 0.027 / 209),
    532355382: (33, 0.0199 / 230),
    526950199: (37, 0.0186 / 218),
}

#: The recordings shipped inside the package.
SHIPPED_DIRECTORY = Path(__file__).resolve().parent / "data" / "allen"


def cell_file_name(cell_id: int) -> str:
    """``cell_<id>_sweep_<n>.npz``: the file name of one of the ten cells."""
    return f"cell_{cell_id}_sweep_{CELLS[cell_id][0]}.npz"


def find_cell_file(cell_id: int, directories: Iterable[str | Path] = ()) -> Path:
    """The cell's file in the shipped recordings or else in ``directories`` (searched in order)."""
    if cell_id not in CELLS:
        raise ObservationError(f"Allen cell {cell_id!r} is not one of the ten cells; allowed: "
                               f"{', '.join(str(c) for c in CELLS)}")
    searched = [SHIPPED_DIRECTORY, *(Path(d) for d in directories)]
    for directory in searched:
        candidate = directory / cell_file_name(cell_id)
        if candidate.is_file():
            return candidate
    raise ObservationError(f"Allen cell {cell_id}: {cell_file_name(cell_id)} is in none of "
                           f"{', '.join(str(d) for d in searched)}")


def allen_recording(cell_id: int, directories: Iterable[str | Path] = (), *,
                    junction_potential_mV: float = JUNCTION_POTENTIAL_MV,
                    soma_area_cm2: Optional[float] = None) -> Recording:
    """One of the ten cells as a checked recording, corrected as Gonçalves et al. 2020 do.

    ``soma_area_cm2`` overrides the paper's area for the cell; ``junction_potential_mV``
    its -14 mV correction.
    """
    cell_id = int(cell_id)
    path = find_cell_file(cell_id, directories)
    area = CELLS[cell_id][1] if soma_area_cm2 is None else soma_area_cm2
    return read_recording(path, junction_potential_mV=junction_potential_mV, soma_area_cm2=area)
