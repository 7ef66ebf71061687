"""Recording files for tests and the executed docs: a shipped Allen sweep written as NWB by pynwb itself."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sbilab.recordings import read_recording


def write_nwb(source: Path, path: Path) -> Path:
    """The recording in ``source`` (a shipped ``.npz``) as an NWB file at ``path``, the way a rig exports one."""
    import pynwb
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    npz = read_recording(source)
    nwb = pynwb.NWBFile(session_description=f"Allen cell {npz.cell_id}, sweep {npz.sweep_number}",
                        identifier=f"allen-{npz.cell_id}", session_start_time=datetime(2015, 1, 1, tzinfo=timezone.utc))
    device = nwb.create_device(name="amplifier")
    electrode = nwb.create_icephys_electrode(name="elec0", description="patch", device=device, cell_id=npz.cell_id)
    common = dict(electrode=electrode, rate=50_000.0, sweep_number=np.uint32(npz.sweep_number), starting_time=0.0)
    nwb.add_acquisition(CurrentClampSeries(name=f"sweep_{npz.sweep_number}",
                                           data=(npz.voltage_mV * 1e-3).astype(np.float32), gain=1.0, **common))
    nwb.add_stimulus(CurrentClampStimulusSeries(name=f"stimulus_{npz.sweep_number}", data=npz.current_uA * 1e-6,
                                                gain=1.0, **common))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
