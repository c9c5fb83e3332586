"""Entry point of `softras make-dataset` for a source checkout: `python cli/make_dataset.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-dataset", *sys.argv[1:]]))
