r"""The reference demo's command, kept for old habits and scripts:

    python demo.py --arc resnet50 --stage 1 --resume checkpoints/FILE.pth \
        --input face.jpg --draw_text

The tool itself is the `opengraphau` package (installed, it is the `opengraphau` command); this
file only runs its command line. See README.md and `python demo.py --help`.
"""

import sys

from opengraphau.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="demo.py"))
