"""Entry point of `softras fit-pose` for a source checkout: `python cli/fit_pose.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["fit-pose", *sys.argv[1:]]))
