"""Hydra's submitit launchers (``hydra/launcher=slurm``, ``submitit_local``), except that a multirun ends
only when every one of its jobs has.

Hydra's own launcher collects results in job order and raises at the first failed job while the others
still run, so a sweep's parent run closed after it (``sbilab.experiments.sweep``) would close before its
children. These wait for every job, then raise the first failure (after naming every failed job and
its log). Ctrl-C cancels the jobs that are left (``scancel``: their runs close KILLED) and waits for
them, so the parent closes last. Without the ``slurm`` extra (submitit) nothing is defined here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # pragma: no cover - the slurm extra is not installed
    BaseSubmititLauncher = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: seconds to wait for cancelled jobs to end before giving up on them
CANCEL_WAIT_S = 120


def wait_for_all(jobs: Sequence[Any], poll_s: float = 1.0) -> List[Any]:
    """Every job's first result once all are done; the first failure is raised only then.

    On Ctrl-C the unfinished jobs are cancelled and awaited (at most ``CANCEL_WAIT_S``).
    """
    try:
        while not all(job.done() for job in jobs):
            time.sleep(poll_s)
    except KeyboardInterrupt:
        left = [job for job in jobs if not job.done()]
        log.warning("Ctrl-C: cancelling %d unfinished job(s) and waiting for them", len(left))
        for job in left:
            job.cancel(check=False)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while any(not job.done() for job in left) and time.monotonic() < deadline:
            time.sleep(poll_s)
        raise
    results, failures = [], []
    for job in jobs:
        try:
            results.append(job.results()[0])
        except Exception as error:  # the job died (killed, out of memory, sys.exit): no JobReturn
            failures.append((job, error))
    for job, _ in failures:
        log.error("job %s failed: see %s", job.job_id, job.paths.stderr)
    if failures:
        raise failures[0][1]
    return results


if BaseSubmititLauncher is not None:

    class _WaitingLauncher(BaseSubmititLauncher):
        """Hydra's ``launch``, with :func:`wait_for_all` collecting the results."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            import submitit

            assert self.config is not None and len(job_overrides) > 0
            init_keys = {"submitit_folder", "max_num_timeout"}
            executor = submitit.AutoExecutor(
                cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                **{f"{self._EXECUTOR}_max_num_timeout": self.params[key] for key in ("max_num_timeout",)
                   if key in self.params})
            common = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(**{key if key in common else f"{self._EXECUTOR}_{key}": value
                                          for key, value in self.params.items() if key not in init_keys})
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
            job_params = []
            for index, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
                job_params.append((list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}",
                                   Singleton.get_state()))
            jobs = executor.map_array(self, *zip(*job_params))
            return wait_for_all(jobs)

    class SlurmLauncher(_WaitingLauncher):
        _EXECUTOR = "slurm"

    class LocalLauncher(_WaitingLauncher):
        _EXECUTOR = "local"
