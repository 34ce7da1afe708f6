"""The reference's `conf` module name, kept for old imports: the AU table and the variants.

Everything lives in `opengraphau`; nothing inside the package imports this.
"""
from opengraphau.aus import (AU_COLUMNS, AU_IDS, AU_NAMES, NUM_MAIN_AUS,  # noqa: F401
                             NUM_SUB_AUS, SUB_AU_PARENTS)
from opengraphau.model.variants import ARCHS, STAGES  # noqa: F401
from opengraphau.weights import (CHECKPOINT_DIR, CHECKPOINT_SUFFIXES,  # noqa: F401
                                 OFFICIAL_CHECKPOINTS, OfficialCheckpoint)
