"""Entry point of `softras render` for a source checkout: `python cli/render.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["render", *sys.argv[1:]]))
