"""A one-node SLURM cluster in a folder: munge, MariaDB + slurmdbd (accounting), slurmctld, slurmd.

Accounting is not optional: submitit asks ``sacct`` for the state of a job that died before writing
its result; without it a killed job makes the Hydra launcher wait forever. The node is called
``localhost`` (``slurmd -N localhost``) whatever the host's name; no systemd or cgroups are needed
(``proctrack/linuxproc``, ``task/none``). Every daemon runs with ``-D`` as a child. Clients need only
``SLURM_CONF`` (``env()``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from .mariadb import ACCOUNTING_DB, ACCOUNTING_USER, MariaDB
from .munge import Munge
from .procs import Daemon, ServiceError, binary, free_port, own_dir, port_open, reap_adopted, run

CLUSTER = "sbilab"
PARTITION = "debug"


class Slurm:
    """slurmctld, slurmd and slurmdbd on 127.0.0.1 ports of their own, configured under ``folder/etc``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.etc = folder / "etc"
        self.munge = Munge(folder / "munge")
        self.mariadb = MariaDB(folder / "mariadb")
        self.ports = {"ctld": free_port(), "slurmd": free_port(), "dbd": free_port()}
        log = folder / "log"
        self.dbd = Daemon("slurmdbd", [binary("slurmdbd"), "-D"], log / "slurmdbd.log", env=self.env())
        self.ctld = Daemon("slurmctld", [binary("slurmctld"), "-D", "-i"], log / "slurmctld.log", env=self.env())
        self.slurmd = Daemon("slurmd", [binary("slurmd"), "-D", "-N", "localhost"], log / "slurmd.log", env=self.env())

    @property
    def conf(self) -> Path:
        return self.etc / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What sbatch, srun, sacct and submitit need to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> "Slurm":
        """Start the daemons in dependency order, each healthy before the next."""
        own_dir(self.folder, None, 0o755)
        for sub in ("etc", "state", "spool", "log"):
            own_dir(self.folder / sub, None, 0o755)
        self.munge.start()
        self.mariadb.start()
        self._write_configs()
        self.dbd.start()
        self.dbd.wait_until(lambda: port_open(self.ports["dbd"]), timeout, "listening")
        if CLUSTER not in self.sacctmgr("show", "cluster", "format=cluster").split():
            self.sacctmgr("add", "cluster", CLUSTER)
        self.ctld.start()
        self.ctld.wait_until(lambda: "UP" in self.command("scontrol", "ping"), timeout, "answering")
        self.slurmd.start()
        self.slurmd.wait_until(lambda: self.node_state() in ("idle", "mixed", "allocated"), timeout,
                               "registered (node localhost idle)")
        return self

    def stop(self) -> None:
        for part in (self.slurmd, self.ctld, self.dbd, self.mariadb, self.munge):
            part.stop()
        reap_adopted({"slurmstepd", "srun"})  # job processes that fork away from slurmd

    def daemons(self) -> list[Daemon]:
        return [*self.munge.daemons(), *self.mariadb.daemons(), self.dbd, self.ctld, self.slurmd]

    def node_state(self) -> str:
        return self.command("sinfo", "-h", "-N", "-n", "localhost", "-o", "%T").strip().rstrip("*")

    def command(self, *args: str, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        return run([binary(args[0]), *args[1:]], args[0], env=self.env(), timeout=timeout)

    def sacctmgr(self, *args: str) -> str:
        return self.command("sacctmgr", "-i", "-n", "-P", *args)

    def _write_configs(self) -> None:
        node = _node_line()
        socket = self.munge.socket
        self.conf.write_text("\n".join([
            f"ClusterName={CLUSTER}",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={self.ports['ctld']}",
            f"SlurmdPort={self.ports['slurmd']}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={socket}",
            f"StateSaveLocation={self.folder / 'state'}",
            f"SlurmdSpoolDir={self.folder / 'spool'}",
            f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.folder / 'slurmd.pid'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/linux",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",  # memory checked against the node, not consumed: jobs share it
            "MinJobAge=300",
            "KillWait=5",
            "MailProg=/bin/true",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost",
            f"AccountingStoragePort={self.ports['dbd']}",
            f"AccountingStoragePass={socket}",  # the munge socket, else sacct looks in /run/munge
            "JobCompType=jobcomp/none",
            f"{node} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")
        dbd = self.etc / "slurmdbd.conf"
        dbd.write_text("\n".join([
            "AuthType=auth/munge",
            f"AuthInfo=socket={socket}",
            "DbdHost=localhost",
            f"DbdPort={self.ports['dbd']}",
            "SlurmUser=root",
            f"PidFile={self.folder / 'slurmdbd.pid'}",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={self.mariadb.port}",
            f"StorageUser={ACCOUNTING_USER}",
            f"StoragePass={self.mariadb.password}",
            f"StorageLoc={ACCOUNTING_DB}",
        ]) + "\n")
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read (it holds the password)


def _node_line(name: str = "localhost") -> str:
    """This machine's NodeName line as ``slurmd -C`` measures it, renamed to ``name``."""
    measured = subprocess.run([binary("slurmd"), "-C"], capture_output=True, text=True).stdout.splitlines()
    line: Optional[str] = next((entry for entry in measured if entry.startswith("NodeName=")), None)
    if line is None:
        raise ServiceError("`slurmd -C` printed no NodeName line")
    return " ".join([f"NodeName={name}", *line.split()[1:]])
