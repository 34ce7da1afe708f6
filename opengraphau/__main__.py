"""`python -m opengraphau`: the same command as `opengraphau` and the clone's `demo.py`."""

import sys

from .cli.main import main

sys.exit(main(prog="opengraphau"))
