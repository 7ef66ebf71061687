"""The simulation stage and what it runs on: chunked, parallel, cached, NaN-filtered."""

from sbilab.simulation.backends import BACKENDS, Backend, LocalProcessBackend, SerialBackend, make_backend
from sbilab.simulation.cache import ChunkStore, cache_key, source_digest
from sbilab.simulation.stage import Dataset, SimulationError, simulate_chunk, simulate_dataset

__all__ = [
    "BACKENDS", "Backend", "ChunkStore", "Dataset", "LocalProcessBackend", "SerialBackend", "SimulationError",
    "cache_key", "make_backend", "simulate_chunk", "simulate_dataset", "source_digest",
]
