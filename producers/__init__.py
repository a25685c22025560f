"""Where a record is born: sample parameters, run LAMMPS under MPI, publish the result.

Installs with ``pip install lammps-stream-ml[producer]``: no Faust, no river.
"""
