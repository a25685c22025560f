"""lammps-stream: LAMMPS runs streamed through Kafka into online models of run time.

This package holds only what every component shares: configuration, record schemas,
topic names, Kafka client settings, the command line and the local stack.
"""

__version__ = "0.1.0"
