"""The `softras` command."""

from __future__ import annotations

import sys

COMMANDS = {
    "demo": ("softras.demo", "render the bundled Spot cow and backpropagate through it"),
    "build": ("softras.build", "build the native backends now (or --cuda-compile-check)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: softras <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"softras: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    import importlib

    result = importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
