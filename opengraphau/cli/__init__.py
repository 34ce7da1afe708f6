"""The command line, a thin shell over `opengraphau.run`: flags -> Options -> run -> exit status."""

from .main import main

__all__ = ["main"]
