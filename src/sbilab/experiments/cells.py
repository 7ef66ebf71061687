"""One network for many recordings: amortised NPE over several cells' protocols, diagnosed at each.

A per-cell run (``experiment=allen_cell``) trains a posterior for one recording. Here one NPE network
is trained once on simulations of every cell's protocol, each simulation's summary carrying its
protocol's context (``simulator.context``: the step's current density and V0), so the network is
q(θ | statistics, context). It is then sampled at every cell's x_o in one batched call (sbi's
``sample_batched``), and each cell gets a child run with the same diagnostics a per-cell run has
(predictive distance and overlay at the recording; SBC, coverage and TARP on test simulations of
that cell's protocol). The parent run holds the training, the network and the table of cells.

The training budget ``simulation.num_simulations`` is split evenly over the cells; each cell's share
is simulated (and cached) under its own protocol with its own θ draws.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from sbilab.errors import ConfigError
from sbilab.spec import RunSpec, prepare


@dataclass
class CellResult:
    """One cell's child run."""

    cell: int
    run_id: str
    gates: Optional[str]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class CellsResult:
    """The parent run (training) and one child per cell."""

    run_id: str
    experiment_id: str
    cells: list[CellResult]
    train_seconds: float
    total_seconds: float


def cell_list(cfg: DictConfig) -> list[int]:
    """``cells``: the Allen cell ids to train on and diagnose at (at least two, distinct)."""
    cells = OmegaConf.select(cfg, "cells", default=None)
    values = [cells] if isinstance(cells, (int, str)) else list(cells or [])
    try:
        ids = [int(c) for c in values]
    except (TypeError, ValueError):
        ids = []
    if len(ids) < 2 or len(set(ids)) != len(ids) or len(ids) != len(values):
        raise ConfigError(f"cells={values}: expected a list of at least two distinct Allen cell ids "
                          "(e.g. cells=[518290966,509881736]); one cell is experiment=allen_cell")
    return ids


def cell_specs(cfg: DictConfig, cells: Sequence[int]) -> list[RunSpec]:
    """One checked spec per cell: ``cfg`` observing that cell (its protocol merged into the simulator)."""
    if OmegaConf.select(cfg, "observation.name", default=None) != "recording":
        raise ConfigError("make cells fits recordings: observation=recording (experiment=allen_cells sets it)")
    if not OmegaConf.select(cfg, "simulator.context", default=None):
        raise ConfigError("simulator.context is empty: one network for several protocols must be told which "
                          "protocol made each summary; allowed: e.g. [current_density,V0] (experiment=allen_cells)")
    num = int(OmegaConf.select(cfg, "simulation.num_simulations", default=0) or 0)
    if num < len(cells):
        raise ConfigError(f"simulation.num_simulations={num} is split over {len(cells)} cells; allowed: "
                          f">= {len(cells)} (one simulation per cell at least)")
    specs = []
    for cell in cells:
        cell_cfg = copy.deepcopy(cfg)
        with open_dict(cell_cfg):
            cell_cfg.observation.cell = int(cell)
            cell_cfg.tracking.run_name = f"cell_{cell}"
        specs.append(prepare(cell_cfg))
    method = specs[0].parts.method
    if not method.amortised or specs[0].trainer.ensemble_size != 1:
        raise ConfigError(f"method={method.name}: one network for many cells is trained once on prior "
                          "simulations; allowed: an amortised method (e.g. method=npe), trainer.ensemble_size=1")
    return specs


def mixed_simulations(specs: Sequence[RunSpec], num: int) -> Any:
    """``num`` prior simulations split evenly over the specs' protocols (each cached on its own), concatenated."""
    from sbilab import pipeline
    from sbilab.simulation import Dataset

    shares = [num // len(specs) + (1 if k < num % len(specs) else 0) for k in range(len(specs))]
    parts = [pipeline.simulate(spec, f"train-cell-{spec.observation.recording.cell_id}", share)
             for spec, share in zip(specs, shares)]
    return Dataset(theta=torch.cat([p.theta for p in parts]), x=torch.cat([p.x for p in parts]),
                   num_requested=sum(p.num_requested for p in parts), num_invalid=sum(p.num_invalid for p in parts),
                   seconds=sum(p.seconds for p in parts), chunks_total=sum(p.chunks_total for p in parts),
                   chunks_from_cache=sum(p.chunks_from_cache for p in parts),
                   key=hashlib.sha256("+".join(p.key for p in parts).encode()).hexdigest()[:len(parts[0].key)])


def train_cells(specs: Sequence[RunSpec], parent_name: str = "allen_cells") -> CellsResult:
    """Train one network on every spec's protocol, then diagnose it at each spec's x_o (a child run each)."""
    from threadpoolctl import threadpool_limits

    from sbilab import pipeline
    from sbilab.rng import seeded
    from sbilab.run_record import record

    first = specs[0].with_tracking(run_name=parent_name)
    torch.set_num_threads(first.num_threads)
    started = time.perf_counter()
    cells = [int(spec.observation.recording.cell_id) for spec in specs]
    tags = {"sbilab.cells": ",".join(str(c) for c in cells)}
    with threadpool_limits(limits=first.num_threads), pipeline.open_run(first, extra_tags=tags) as parent:
        fitted = pipeline.train(first, pipeline.RecordingObserver(parent, first),
                                simulate_round=lambda proposal, round_, num: mixed_simulations(specs, num))
        posterior = pipeline.build_posterior(first, fitted)
        record(parent, first, fitted, None)
        train_seconds = time.perf_counter() - started  # simulating, training and recording the network
        x_o = torch.stack([spec.observation.x for spec in specs])
        with seeded(first.seeds.observation_samples):  # every cell's samples in one batched call
            samples = posterior.sample_batched((first.diagnostics.num_observation_samples,), x=x_o,
                                               show_progress_bars=False)
        sample_seconds = time.perf_counter() - started - train_seconds
        parent.log_metrics({"time/simulate_and_train_s": train_seconds, "time/sample_all_s": sample_seconds})
        results = [diagnose_cell(spec, posterior, samples[:, k], parent.run_id, tags)
                   for k, spec in enumerate(specs)]
        total = time.perf_counter() - started
        parent.log_metrics({"time/total_s": total})
    return CellsResult(parent.run_id, parent.experiment_id, results, train_seconds, total)


def diagnose_cell(spec: RunSpec, posterior: Any, samples: torch.Tensor, parent_run_id: str,
                  tags: dict[str, str]) -> CellResult:
    """One cell's child run: every diagnostic of a per-cell run, on the shared network."""
    from sbilab import pipeline
    from sbilab.run_record import record_diagnosis

    started = time.perf_counter()
    cell = int(spec.observation.recording.cell_id)
    tags = {**tags, "sbilab.overrides": f"observation.cell={cell}"}  # what varies, as a sweep job's tag says
    with pipeline.open_run(spec, parent_run_id=parent_run_id, extra_tags=tags) as child:
        diagnosis = pipeline.diagnose(spec, posterior, samples=samples)
        record_diagnosis(child, spec, diagnosis)
        seconds = time.perf_counter() - started
        child.log_metrics({"time/total_s": seconds})
    return CellResult(cell, child.run_id, diagnosis.verdict, {**diagnosis.metrics, "time/total_s": seconds})


def describe(result: CellsResult, uri: str) -> None:
    """The parent's description: the cells' table (sbilab's sweep overview, over these child runs)."""
    from sbilab.experiments.compare import compare_sweep

    compare_sweep(uri, result.run_id, figures=False)
