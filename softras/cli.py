"""The `softras` command: Hydra-configured subcommands.

    softras --help                          the subcommands
    softras <sub> [key=value ...]           run one, with Hydra overrides
    softras <sub> --help                    its config and options
    softras <sub> config=<preset|file.yaml> a named preset of configs/experiment/<sub>/, or a YAML file
    softras <sub> -m key=a,b                a multirun sweep

Each run writes into its own new folder outputs/<sub>/<date>_<time>/.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "render": ("softras.tasks.render", "turntable GIF and blurry-to-sharp sigma/gamma strip of a mesh"),
    "deform": ("softras.tasks.deform", "deform a template mesh to match multi-view silhouettes"),
    "fit-pose": ("softras.tasks.fit_pose", "fit a rigid pose under heavy occlusion with scheduled blur (trials=N)"),
}
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("softras.demo", "a short render-and-backpropagate demo on the Spot cow (no Hydra)"),
    "build": ("softras.build", "build the native backends now (or --cuda-compile-check)"),
}


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, no traceback."""


def _usage() -> str:
    lines = ["usage: softras <command> [key=value ...] [--help]", "", "commands:"]
    for name, (_, text) in {**SUBCOMMANDS, **EXTRA_COMMANDS}.items():
        lines.append(f"  {name:<12} {text}")
    lines += ["", "Run 'softras <command> --help' for a command's config; see README.md for more."]
    return "\n".join(lines)


def _override_value(value) -> str:
    """A Python value as a Hydra override value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_override_value(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _flatten(prefix: str, node, out: list[str]) -> None:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append(f"{prefix}={_override_value(node)}")


def expand_config_arg(sub: str, args: list[str]) -> list[str]:
    """Turns ``config=<name>`` into the preset ``experiment=<sub>/<name>`` and
    ``config=<file.yaml>`` into the file's values as overrides (before the others)."""
    from .paths import config_dir

    out: list[str] = []
    front: list[str] = []
    for arg in args:
        if not arg.startswith("config="):
            out.append(arg)
            continue
        value = arg.split("=", 1)[1]
        path = Path(value).expanduser()
        if value.endswith((".yaml", ".yml")) or path.is_file():
            if not path.is_file():
                raise UserError(f"config: no such file {value!r}")
            import yaml

            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise UserError(f"config: {value} is not valid YAML ({str(err).splitlines()[0]})") from None
            if not isinstance(data, dict):
                raise UserError(f"config: {value} must hold a mapping of keys to values")
            data.pop("defaults", None)
            _flatten("", data, front)
        else:
            presets = sorted(p.stem for p in (config_dir() / "experiment" / sub).glob("*.yaml"))
            if value not in presets:
                raise UserError(
                    f"config: no preset {value!r} for '{sub}' (presets: {', '.join(presets)}) and no such file"
                )
            out.append(f"experiment={sub}/{value}")
    return front + out


def _run_dir_override(sub: str, args: list[str]) -> list[str]:
    """A run (or sweep) folder that does not exist yet, unless the user chose one."""
    if any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args):
        return []
    from .tasks._run import new_run_dir

    if "-m" in args or "--multirun" in args:
        path = new_run_dir(Path("outputs") / sub, prefix="multirun_")
        path.rmdir()  # Hydra creates it (same-second sweeps get _1, _2, ...)
        return [f"hydra.sweep.dir={path}"]
    path = new_run_dir(Path("outputs") / sub)
    path.rmdir()  # Hydra creates it; the name is ours alone (same-second runs get _1, _2, ...)
    return [f"hydra.run.dir={path}"]


def run_subcommand(sub: str, args: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from .config import register_resolvers
    from .paths import config_dir

    register_resolvers()
    module_name = SUBCOMMANDS[sub][0]
    helping = any(a in ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info") for a in args)
    args = expand_config_arg(sub, args)
    sweep_dir: Path | None = None
    multirun = "-m" in args or "--multirun" in args
    if not helping:
        _check_overrides(sub, args, multirun)
        # -m first, then the folder: a flag between two overrides would split them for argparse
        flags = [a for a in args if a in ("-m", "--multirun")]
        folder = _run_dir_override(sub, args)
        args = flags + folder + [a for a in args if a not in ("-m", "--multirun")]
        if multirun and folder:
            sweep_dir = Path(folder[0].split("=", 1)[1])
    result: dict = {}

    def task(cfg) -> float | None:
        module = importlib.import_module(module_name)
        out_dir = HydraConfig.get().runtime.output_dir
        try:
            metrics = module.run(cfg, out_dir=out_dir)
        except (FileNotFoundError, ValueError, UserError) as err:
            result.setdefault("errors", []).append(str(err))
            _remove_if_unused(Path(out_dir))
            return None
        result["metrics"] = metrics
        if isinstance(metrics, dict) and metrics.get("status") == "interrupted":
            result["interrupted"] = True
            if multirun:
                raise KeyboardInterrupt  # one Ctrl-C (or SIGTERM) ends the whole sweep
        key = getattr(module, "PRIMARY_METRIC", None)
        return metrics.get(key) if isinstance(metrics, dict) and key else None

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[softras] %(message)s"))
    logging.getLogger("softras").addHandler(handler)
    main = hydra.main(version_base=None, config_path=str(config_dir()), config_name=sub)(task)
    saved = sys.argv
    sys.argv = [f"softras {sub}"] + args
    try:
        main()
    except UserError as err:
        print(f"softras {sub}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as err:
        return int(err.code or 0) if not isinstance(err.code, str) else 1
    except KeyboardInterrupt:  # outside a run's own handling (or a sweep stopped)
        result["interrupted"] = True
    finally:
        sys.argv = saved
        logging.getLogger("softras").removeHandler(handler)
    if sweep_dir is not None:
        _remove_if_unused(sweep_dir, keep_out=("multirun.yaml",))  # a sweep whose every job failed at once
    for err in result.get("errors", []):
        print(f"softras {sub}: error: {err}", file=sys.stderr)
    if result.get("interrupted"):
        print(f"softras {sub}: interrupted", file=sys.stderr)
        return 130  # the shell's code for Ctrl-C: the run did not complete
    return 2 if result.get("errors") else 0


def _first_of_sweep(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job (``a=1,2`` -> ``a=1``); sweeps that cannot be
    listed here (globs, intervals for optimizing sweepers) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    out: list[str] = []
    for ov in OverridesParser.create().parse_overrides(overrides):
        if not ov.is_sweep_override():
            out.append(str(ov.input_line))
        elif ov.is_range_sweep() or ov.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
            first = next(iter(ov.sweep_string_iterator()), None)
            if first is not None:
                out.append(f"{ov.get_key_element()}={first}")
    return out


def _check_overrides(sub: str, args: list[str], multirun: bool = False) -> None:
    """Composes the config once up front so a bad override is one line naming the key
    (for a sweep: the first job's config)."""
    from .config import compose

    overrides = [a for a in args if not a.startswith(("hydra.", "-"))]
    try:
        if multirun:
            overrides = _first_of_sweep(overrides)
        compose(sub, overrides)
    except Exception as err:  # noqa: BLE001 - Hydra's composition and parse errors
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise UserError(" ".join(lines[:3]) or type(err).__name__) from None


def _remove_if_unused(path: Path, keep_out: tuple[str, ...] = ()) -> None:
    """Removes a run folder that holds nothing but Hydra's own notes (the run never began)."""
    import shutil

    if path.is_dir() and all(p.name in (".hydra", *keep_out) for p in path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    sub, rest = argv[0], argv[1:]
    try:
        if sub in SUBCOMMANDS:
            return run_subcommand(sub, rest)
        if sub in EXTRA_COMMANDS:
            result = importlib.import_module(EXTRA_COMMANDS[sub][0]).main(rest)
            return result if isinstance(result, int) else 0
    except UserError as err:
        print(f"softras {sub}: error: {err}", file=sys.stderr)
        return 2
    print(f"softras: unknown command {sub!r}\n\n{_usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
