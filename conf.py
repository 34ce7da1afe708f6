"""The reference's `conf` module name, kept for old imports: the AU table and the variants.

Everything lives in `opengraphau`; nothing inside the package imports this.
"""

from opengraphau.aus import (
    AU_COLUMNS,
    AU_IDS,
    AU_NAMES,
    NUM_MAIN_AUS,
    NUM_SUB_AUS,
    SUB_AU_PARENTS,
)
from opengraphau.model.variants import ARCHS, STAGES
from opengraphau.weights import (
    CHECKPOINT_DIR,
    CHECKPOINT_SUFFIXES,
    OFFICIAL_CHECKPOINTS,
    OfficialCheckpoint,
)

__all__ = [
    "ARCHS",
    "AU_COLUMNS",
    "AU_IDS",
    "AU_NAMES",
    "CHECKPOINT_DIR",
    "CHECKPOINT_SUFFIXES",
    "NUM_MAIN_AUS",
    "NUM_SUB_AUS",
    "OFFICIAL_CHECKPOINTS",
    "STAGES",
    "SUB_AU_PARENTS",
    "OfficialCheckpoint",
]
