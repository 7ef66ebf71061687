"""Command line: ``PYTHONPATH=scripts python -m services <command> --state DIR ...``.

  up SERVICE...            start, print the client environment, hold until Ctrl-C or `stop`, tear down
  run SERVICE... -- CMD    start, run CMD with the client environment, tear down; exits with CMD's code
  status                   what runs under DIR (exit 0: all answer, 3: nothing runs, 1: some do not answer)
  stop                     ask the `up` process of DIR to tear down, wait until it has
  migrate SQLITE_DB        copy an SQLite MLflow store into the running server of DIR

The daemons are children of the `up`/`run` process (this VM's PID 1 does not reap orphans), which is
why there is no detached `start`: run `up` in its own terminal (or with `&` in a script that stays).
SERVICE is one of postgres, mlflow (brings postgres), slurm, dask.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .procs import ServiceError, port_open
from .stack import NAMES, Stack, clean_stale, read_record, supervisor_alive


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "run"):
        command = commands.add_parser(name)
        command.add_argument("services", nargs="+", choices=NAMES, metavar="SERVICE")
        command.add_argument("--port", type=int, default=None, help="mlflow server port (default: a free one)")
        command.add_argument("--host", default="127.0.0.1",
                             help="mlflow server address to listen on (0.0.0.0: the LAN too; default: this machine)")
        command.add_argument("--no-auth", action="store_true", help="mlflow server without basic auth")
        command.add_argument("--mlflow-workers", type=int, default=1)
        command.add_argument("--dask-workers", type=int, default=2)
    for name in ("status", "stop", "migrate"):
        commands.add_parser(name)
    commands.choices["migrate"].add_argument("source", type=Path, help="an MLflow SQLite file (mlruns/mlflow.db)")
    for command in commands.choices.values():
        command.add_argument("--state", type=Path, required=True, help="folder for the services' data and logs")
    return parser


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    state = args.state.resolve()
    if args.command in ("up", "run"):
        return _up(args, state, command)
    if args.command == "status":
        return _status(state)
    if args.command == "stop":
        return _stop(state)
    from .migrate import migrate_into_server

    record = read_record(state)
    if record is None or not supervisor_alive(record):
        raise ServiceError(f"no mlflow server runs under {state}: start it first (make server)")
    report = migrate_into_server(args.source.resolve(), state)
    print(f"services: migrated {report}")
    return 0


def _up(args: argparse.Namespace, state: Path, command: list[str]) -> int:
    if args.command == "run" and not command:
        raise ServiceError("run needs a command after --")
    record = read_record(state)
    if record is not None and supervisor_alive(record):
        print(f"services: already running under {state} (pid {record['pid']}); `source {state}/env.sh`")
        return 0 if args.command == "up" else 1
    if clean_stale(state):
        print(f"services: stopped the leftovers of a stack whose process died ({state})")
    stack = Stack(state, args.services, mlflow_port=args.port, mlflow_host=args.host, auth=not args.no_auth,
                  mlflow_workers=args.mlflow_workers, dask_workers=args.dask_workers)
    for signum in (signal.SIGTERM, signal.SIGINT):  # `stop`, Ctrl-C, CI's teardown; even if started with `&`
        signal.signal(signum, _interrupt)
    try:
        stack.start()
        print(" ".join(f"{name} {seconds:.1f} s" for name, seconds in stack.timings.items()), flush=True)
        if args.command == "run":
            return subprocess.run(command, env={**os.environ, **stack.env()}).returncode
        print(f"services: up under {state}; clients: `source {state}/env.sh`; stop: Ctrl-C or "
              f"`python -m services stop --state {state}`", flush=True)
        for key, value in stack.env().items():
            print(f"  {key}={value if 'PASSWORD' not in key else '<in env.sh>'}")
        return _watch(stack)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        stack.stop()
        print("services: stopped; " + " ".join(f"{name} {seconds:.1f} s" for name, seconds in stack.timings.items()
                                                if name.endswith("down")), flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _watch(stack: Stack) -> int:
    """Hold while every daemon runs; when one exits on its own, say which and return 1 (teardown follows)."""
    while True:
        for daemon in stack.daemons():
            if not daemon.alive():
                print(f"services: error: {daemon.name} exited; its log {daemon.log}:\n{daemon.log_tail()}",
                      file=sys.stderr, flush=True)
                return 1
        time.sleep(1)


def _status(state: Path) -> int:
    record = read_record(state)
    if record is None or not supervisor_alive(record):
        print(f"services: nothing runs under {state}")
        return 3
    env = record["env"]
    print(f"services: pid {record['pid']} runs {', '.join(record['services'])} under {state}")
    checks = {key: value for key, value in env.items() if key in ("MLFLOW_TRACKING_URI", "DASK_SCHEDULER_ADDRESS")}
    answering = True
    for key, value in checks.items():
        port = int(value.rsplit(":", 1)[1])
        ok = port_open(port)
        answering &= ok
        print(f"  {key}={value} {'answers' if ok else 'DOES NOT ANSWER'}")
    return 0 if answering else 1


def _stop(state: Path) -> int:
    record = read_record(state)
    if record is None or not supervisor_alive(record):
        print(f"services: nothing runs under {state}" + (" (cleaned leftovers)" if clean_stale(state) else ""))
        return 0
    os.kill(int(record["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 60
    while supervisor_alive(record) and time.monotonic() < deadline:
        time.sleep(0.2)
    if supervisor_alive(record):
        raise ServiceError(f"pid {record['pid']} did not stop within 60 s")
    print(f"services: stopped (pid {record['pid']})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ServiceError as error:
        print(f"services: error: {error}", file=sys.stderr)
        sys.exit(2)
