"""The reference's `model` package name, kept for old imports: `from model import load_model`.

Everything lives in `opengraphau.model`; nothing inside the package imports this.
"""

from opengraphau.model import *  # noqa: F401,F403
from opengraphau.model import __all__  # noqa: F401
