"""Entry point of `softras fit-smpl` for a source checkout: `python cli/fit_smpl.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["fit-smpl", *sys.argv[1:]]))
