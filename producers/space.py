"""Parameter spaces live in :mod:`lammps_stream.space`, shared with the model service (which
draws the candidates of active sampling from the same space); this name stays for the
producers' code and for users' imports.

>>> from producers.space import ParameterSpace
>>> ParameterSpace.from_mapping({"decks": ["lj"], "x": [1, 3]}).describe()["x"]
'[1, 3]'
"""

from lammps_stream.space import (
    INT_DIMENSIONS,
    Dimension,
    ParameterSpace,
    SpaceSet,
    candidate_params,
    space_from_config,
)

__all__ = [
    "INT_DIMENSIONS",
    "Dimension",
    "ParameterSpace",
    "SpaceSet",
    "candidate_params",
    "space_from_config",
]
