"""Where a record is learned: the Faust worker that predicts, scores and learns river
models one RunRecord at a time, and publishes every prediction.

Installs with ``pip install lammps-stream-ml[service]``: no LAMMPS, no MPI.
"""
