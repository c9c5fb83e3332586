"""Entry point of `softras train-recon` for a source checkout: `python cli/train_recon.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-recon", *sys.argv[1:]]))
