"""Entry point of `softras eval-recon` for a source checkout: `python cli/eval_recon.py key=value ...`."""

import sys

from softras.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval-recon", *sys.argv[1:]]))
