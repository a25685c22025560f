"""``python -m lammps_stream`` is the ``lammps-stream`` command."""

from lammps_stream.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
