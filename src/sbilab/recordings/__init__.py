"""Recorded current-clamp traces as observations.

``read_recording(path)`` reads an ``.npz`` (Allen layout), CSV or NWB file into a
checked :class:`Recording` (voltage, sampling interval, a single-step stimulus,
origin); ``allen_recording(cell_id)`` reads one of the ten Allen cells with the
corrections of Gonçalves et al. 2020; ``protocol_keys(recording)`` gives the HH
simulator's protocol keys, so that x_o and every simulation share one protocol.
"""

from sbilab.recordings.allen import allen_recording
from sbilab.recordings.readers import read_recording
from sbilab.recordings.recording import Recording, StepProtocol, make_recording, protocol_keys

__all__ = ["Recording", "StepProtocol", "allen_recording", "make_recording", "protocol_keys", "read_recording"]
