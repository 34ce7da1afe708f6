"""The reference's `utils` module name, kept for old imports: errors and device choice.

Everything lives in `opengraphau`; nothing inside the package imports this.
"""

from opengraphau.device import resolve_device  # noqa: F401
from opengraphau.errors import OpenGraphAUError as UserError  # noqa: F401
