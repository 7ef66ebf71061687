"""Dask workers as SLURM jobs (dask-jobqueue's ``SLURMCluster``) for ``simulation=dask``.

    python scripts/dask_slurm.py --jobs 8 [--cores 4] [--memory 8GB] [--walltime 02:00:00] [--partition NAME]
    # prints `export DASK_SCHEDULER_ADDRESS=tcp://...`; in another shell, after that export:
    make train ARGS="simulation=dask simulation.num_simulations=1000000"

The scheduler runs in this process (on the login node, or in a job of its own) and holds until Ctrl-C
or SIGTERM, which cancels the worker jobs. Each job runs ``--cores`` single-threaded worker processes
with this checkout's Python (the checkout and its .venv must be on a filesystem the nodes share).
``--host`` is the address the scheduler listens on: one the nodes can reach (default: every interface).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="SLURM jobs of workers (default 2)")
    parser.add_argument("--cores", type=int, default=1, help="CPUs per job: one single-threaded worker each")
    parser.add_argument("--memory", default="4GB", help="memory per job (default 4GB)")
    parser.add_argument("--walltime", default="01:00:00", help="time limit of each job (default 01:00:00)")
    parser.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    parser.add_argument("--host", default="0.0.0.0", help="address the scheduler listens on (default 0.0.0.0)")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the workers (default 600)")
    args = parser.parse_args(argv)

    from dask_jobqueue import SLURMCluster
    from distributed import Client

    cluster = SLURMCluster(queue=args.partition, cores=args.cores, processes=args.cores, memory=args.memory,
                           walltime=args.walltime, job_name="sbilab-dask", scheduler_options={"host": args.host},
                           worker_extra_args=["--nthreads", "1"])
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster.scale(jobs=args.jobs)
        print(f"export DASK_SCHEDULER_ADDRESS={cluster.scheduler_address}", flush=True)
        with Client(cluster) as client:
            try:
                client.wait_for_workers(args.jobs * args.cores, timeout=args.wait)
            except TimeoutError:
                print(f"sbilab: error: the workers did not start within {args.wait:.0f} s (squeue -n sbilab-dask: "
                      "pending? a partition or memory the cluster refuses?)", file=sys.stderr)
                return 1
            print(f"sbilab: {args.jobs * args.cores} Dask workers in {args.jobs} SLURM jobs; Ctrl-C stops them",
                  flush=True)
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.close()  # cancels the worker jobs
        print("sbilab: Dask workers stopped", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
