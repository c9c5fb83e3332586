"""Entry point of `softras deform` for a source checkout: `python cli/deform.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["deform", *sys.argv[1:]]))
