"""The `softras` command: Hydra-configured subcommands on the experiment engine.

    softras --help                          the subcommands
    softras <sub> [key=value ...]           run one, with Hydra overrides
    softras <sub> --help                    its config and options
    softras <sub> config=<preset|file.yaml> a named preset of configs/experiment/<sub>/, or a YAML file
    softras <sub> resume=<run folder>       continue a run in its folder, with its own config
    softras <sub> -m key=a,b                a multirun sweep
    torchrun --standalone --nproc_per_node=N -m softras.cli <sub> ...   several processes (deform, train-recon)

Each run writes into its own new folder outputs/<sub>/<date>_<time>/, created atomically.
A mistake found before a run starts is one line naming the key or the path (exit 2); an
error inside a running task keeps its traceback (run.log and stderr; exit 1); an interrupted
run exits 130.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "render": ("softras.tasks.render", "turntable GIF and blurry-to-sharp sigma/gamma strip of a mesh"),
    "deform": ("softras.tasks.deform", "deform a template mesh to match multi-view silhouettes"),
    "fit-pose": ("softras.tasks.fit_pose", "fit a rigid pose under heavy occlusion with scheduled blur (trials=N)"),
    "fit-smpl": ("softras.tasks.fit_smpl", "fit a body model to an image whose right hand is hidden (vs hard)"),
    "make-dataset": ("softras.tasks.make_dataset", "write a reconstruction dataset (ShapeNet format)"),
    "train-recon": ("softras.tasks.train_recon", "train single-view mesh reconstruction from multi-view silhouettes"),
    "eval-recon": ("softras.tasks.eval_recon", "voxel IoU per class of a train-recon checkpoint, beside two baselines"),
}
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("softras.build", "build the native backends now (or --cuda-compile-check)"),
}
HELP_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--resolve", "-p", "--package")


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, no traceback."""


def _usage() -> str:
    lines = ["usage: softras <command> [key=value ...] [--help]", "", "commands:"]
    for name, (_, text) in {**SUBCOMMANDS, **EXTRA_COMMANDS}.items():
        lines.append(f"  {name:<12} {text}")
    lines += ["", "Run 'softras <command> --help' for a command's config; see README.md for more."]
    return "\n".join(lines)


# ---- overrides ----------------------------------------------------------------------------------


def _override_value(value: Any) -> str:
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


def _flatten(prefix: str, node: Any, out: list[str]) -> None:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append(f"{prefix}={_override_value(node)}")


def _key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def _expand_home(value: str) -> str:
    """``~`` or ``~user`` at the start of a value is the home folder (as in a shell): Hydra
    cannot read a value starting with ``~``, so nothing else could have been meant."""
    if value.startswith("~"):
        head = value.split("/", 1)[0]
        expanded = os.path.expanduser(head)
        if expanded != head:
            return expanded + value[len(head) :]
    return value


def prepare_overrides(args: list[str]) -> list[str]:
    """The command line's overrides with ``~`` expanded in their values; an override Hydra
    cannot parse (a path with ``=``, say) is refused naming its key and the quoting that works."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    out: list[str] = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            out.append(arg)
            continue
        key, value = arg.split("=", 1)
        arg = f"{key}={_expand_home(value)}"
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            name, text = key.lstrip("+~"), arg.split("=", 1)[1]
            quoted = f"{key}='" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
            try:
                parser.parse_overrides([quoted])
            except OverrideParseException:
                raise UserError(f"{name}: cannot read the override {arg!r}") from None
            raise UserError(f"{name}: cannot read {text!r} as a value; put the value in quotes: {quoted}") from None
        out.append(arg)
    return out


def expand_config_arg(sub: str, args: list[str], origins: dict[str, str] | None = None) -> list[str]:
    """Turns ``config=<name>`` into the preset ``experiment=<sub>/<name>`` and
    ``config=<file.yaml>`` into the file's values as overrides (before the others); with
    ``origins``, records the file each of those keys came from (for error messages)."""
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
                # where the broken construct begins (a bracket left open), else where it broke
                mark = getattr(err, "context_mark", None) or getattr(err, "problem_mark", None)
                where = f" line {mark.line + 1}" if mark is not None else ""
                raise UserError(f"config: {value}{where} is not valid YAML ({str(err).splitlines()[0]})") from None
            if not isinstance(data, dict):
                raise UserError(f"config: {value} must hold a mapping of keys to values")
            data.pop("defaults", None)
            start = len(front)
            _flatten("", data, front)
            if origins is not None:
                origins.update({_key(a): value for a in front[start:]})
        else:
            presets = sorted(p.stem for p in (config_dir() / "experiment" / sub).glob("*.yaml"))
            if value not in presets:
                raise UserError(
                    f"config: no preset {value!r} for '{sub}' (presets: {', '.join(presets)}) and no such file"
                )
            out.append(f"experiment={sub}/{value}")
    return front + out


def _resume_args(sub: str, spec: Any, args: list[str]) -> tuple[list[str], Path | None]:
    """With ``resume=<folder>``: that run's saved config as overrides, plus the user's
    overrides that are safe to change on resume (anything else is refused)."""
    given = [a for a in args if _key(a) == "resume" and not a.startswith("-")]
    if not given:
        return args, None
    value = given[-1].split("=", 1)[1].strip().strip("'\"")
    if value in ("", "null", "None"):
        return [a for a in args if a not in given], None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise UserError(f"resume: no such run folder {value}")
    saved_path = folder / "config.yaml"
    if not saved_path.is_file() or not (folder / "checkpoint.pt").is_file():
        raise UserError(f"resume: {folder} is not a resumable {sub} run (no config.yaml and checkpoint.pt)")
    import yaml

    saved = yaml.safe_load(saved_path.read_text()) or {}
    rest = [a for a in args if a not in given]
    flags = [a for a in rest if a.startswith("-")]
    overrides = [a for a in rest if not a.startswith("-")]
    for arg in overrides:
        key = _key(arg)
        if key.startswith("hydra.") or key == "config" or key == "experiment":
            raise UserError(f"resume: {key} cannot be given with resume (the run keeps its folder and config)")
        if not any(key == safe or key.startswith(safe + ".") for safe in spec.resume_safe):
            allowed = ", ".join(spec.resume_safe)
            raise UserError(f"resume: {key} would change the problem of the resumed run; only {allowed} may change")
    saved.pop("resume", None)
    front: list[str] = []
    _flatten("", saved, front)
    return flags + front + overrides + [f"resume={_override_value(str(folder))}"], folder


def _first_of_sweep(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job (``a=1,2`` -> ``a=1``)."""
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


def _groups() -> set[str]:
    """The config groups (folders of configs/), which ``+group=option`` may add."""
    from .paths import config_dir

    return {p.name for p in config_dir().iterdir() if p.is_dir()}


def _composition_error(sub: str, err: BaseException) -> str:
    """One line for a Hydra composition or parse error, naming the key."""
    import re

    text = str(err)
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        return f"{unknown.group(1)}: no such key in '{sub}' (see 'softras {sub} --help' for its keys)"
    cause = err.__cause__
    if text.startswith("Error merging override") and cause is not None:
        lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
        full = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), None)
        key = full or _key(text.removeprefix("Error merging override").strip())
        return f"{key}: {lines[0] if lines else type(cause).__name__}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:3]) or type(err).__name__


def _check_overrides(sub: str, args: list[str], multirun: bool = False, origins: dict[str, str] | None = None) -> None:
    """Composes the config once up front so that a bad override, a wrong type or an unknown
    key is one line naming the key (for a sweep: the first job's config). Unknown keys are
    errors with or without Hydra's ``+``: only a config group, or a new key of a mapping (a
    ``dict`` in the schema, such as ``loss.pose_prior_joints``) may be added."""
    from omegaconf import DictConfig, OmegaConf

    from .config import compose

    overrides = [a for a in args if not a.startswith(("hydra.", "-"))]
    origins = origins or {}
    try:
        if multirun:
            overrides = _first_of_sweep(overrides)
        compose(sub, overrides)
        groups = _groups()
        added = [a for a in overrides if a.startswith("+") and not ("." not in _key(a) and _key(a) in groups)]
        if added:
            base = compose(sub, [a for a in overrides if not a.startswith("+")])
            for arg in added:
                parent = OmegaConf.select(base, _key(arg).rpartition(".")[0], default=None)
                if isinstance(parent, DictConfig) and OmegaConf.get_type(parent) is dict:
                    continue  # a new key of a mapping (e.g. loss.pose_prior_joints), typed by its schema
                if OmegaConf.select(base, _key(arg), default=_ABSENT) is _ABSENT:
                    where = f" (in {origins[_key(arg)]})" if _key(arg) in origins else ""
                    raise UserError(
                        f"{_key(arg)}: no such key in '{sub}'{where}; unknown keys are errors, with or without '+' "
                        f"(see 'softras {sub} --help' for its keys)"
                    )
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - Hydra's composition and parse errors
        text = _composition_error(sub, err)
        key = text.split(":", 1)[0]
        if key in origins:
            text += f" (in {origins[key]})"
        raise UserError(text) from None


_ABSENT = object()


# ---- run folders --------------------------------------------------------------------------------


def new_run_dir(root: str | Path, prefix: str = "") -> Path:
    """Creates and returns a new folder ``root/<prefix><date>_<time>`` (``_1``, ``_2``, ... if
    taken). ``mkdir`` is atomic: two runs started together never get the same folder."""
    root = Path(root)
    stamp = prefix + datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for k in range(100000):
        path = root / (stamp if k == 0 else f"{stamp}_{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder under {root}")


def _claim_dir(key: str, value: str) -> Path:
    """A folder the user named: created if missing, used if empty, refused otherwise."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}: {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{key}: cannot create {path} ({err.strerror})") from None
    if any(path.iterdir()):
        raise UserError(f"{key}: {path} already holds files; name a new or empty folder (nothing is overwritten)")
    return path


def _first_missing(path: Path) -> Path | None:
    """The highest folder of ``path`` (itself or an ancestor) that does not exist yet."""
    path = Path(path).expanduser().absolute()
    top = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        top = folder
    return top


def _run_folder(sub: str, args: list[str], multirun: bool) -> tuple[list[str], Path, Path | None]:
    """The run (or sweep) folder, created now: (its overrides, the folder, the highest
    folder this created, to remove if the run never starts)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    named = [a for a in args if a.startswith(key + "=")]
    if named:
        value = named[-1].split("=", 1)[1].strip("'\"")
        top = _first_missing(Path(value))
        path = _claim_dir(key, value)
        return [f"{key}={_override_value(str(path))}"], path, top or path
    root = Path("outputs") / sub
    top = _first_missing(root)
    path = new_run_dir(root, prefix="multirun_" if multirun else "")
    return [f"{key}={_override_value(str(path))}"], path, top or path


def _remove_if_unused(path: Path, top: Path | None = None) -> None:
    """Removes a folder this command made that holds nothing but Hydra's own notes, and its
    parents up to ``top`` (the highest folder the command made) when that leaves them empty."""
    import shutil

    if not (path.is_dir() and all(p.name in (".hydra", "multirun.yaml") for p in path.iterdir())):
        return
    shutil.rmtree(path, ignore_errors=True)
    if top is None:
        return
    top, folder = top.absolute(), path.absolute().parent
    while top == folder or top in folder.parents:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            break
        folder = folder.parent


# ---- running ------------------------------------------------------------------------------------


def _init_ranks() -> Any:
    """Under torchrun: joins the process group (so rank 0 can share the run folder)."""
    from .engine import distributed

    ranks = distributed.ranks_from_env()
    if ranks.distributed:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
    return ranks


def run_subcommand(sub: str, args: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from .config import register_resolvers, register_schema
    from .engine import distributed
    from .engine import launch as engine_launch
    from .engine.loop import UserError as EngineUserError
    from .engine.run import stderr_handler
    from .paths import config_dir

    register_resolvers()
    spec = importlib.import_module(SUBCOMMANDS[sub][0]).TASK
    register_schema(spec)
    helping = any(a in HELP_FLAGS for a in args)
    multirun = "-m" in args or "--multirun" in args
    ranks = distributed.ranks_from_env()
    folder: Path | None = None
    result: dict[str, Any] = {}
    setup: dict[str, Any] = {}
    if helping:  # --help, --cfg job ...: the preset or YAML file still applies
        args = [x for a in args for x in (expand_config_arg(sub, [a]) if a.startswith("config=") else [a])]
    else:
        if ranks.distributed and multirun:
            raise UserError("-m: a sweep cannot run under torchrun; launch each run of it with torchrun instead")
        ranks = _init_ranks()
        if ranks.is_main:
            try:
                origins: dict[str, str] = {}
                args = expand_config_arg(sub, prepare_overrides(args), origins)
                args, resumed = _resume_args(sub, spec, args)
                _check_overrides(sub, args, multirun, origins)
                flags = [a for a in args if a in ("-m", "--multirun")]
                rest = [a for a in args if a not in flags and not a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
                if resumed is not None:
                    where = [f"hydra.run.dir={_override_value(str(resumed))}", "hydra.output_subdir=null"]
                    folder, top = resumed, None
                else:
                    where, folder, top = _run_folder(sub, args, multirun)
                setup = {
                    "args": flags + where + rest,
                    "folder": str(folder),
                    "created": top is not None,
                    "top": None if top is None else str(top),
                }
            except UserError as err:
                setup = {"error": str(err)}
        setup = distributed.broadcast_object(setup)
        if "error" in setup:
            if ranks.is_main:
                raise UserError(setup["error"])
            return 2
        args = setup["args"]
        folder = Path(setup["folder"])
        if not ranks.is_main:
            args = args + ["hydra.output_subdir=null"]

    def task(cfg: Any) -> float | None:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            metrics = engine_launch(spec, cfg, out_dir, resume=cfg.get("resume") is not None)
        except EngineUserError as err:
            result.setdefault("errors", []).append(str(err))
            result["unused_dir"] = out_dir  # removed once every rank is done with it
            return None
        except KeyboardInterrupt:  # a third signal: the clean-up was cut short
            result["interrupted"] = True
            raise
        except Exception as err:  # noqa: BLE001 - a bug in a running task: its traceback is kept
            result["failed"] = True
            if not getattr(err, "softras_logged", False):
                logging.getLogger("softras").exception("%s: failed", sub)
            return None
        result["metrics"] = metrics
        if metrics.get("status") == "interrupted":
            result["interrupted"] = True
            if multirun:
                raise KeyboardInterrupt  # one Ctrl-C (or SIGTERM) ends the whole sweep
        key = spec.primary_metric
        return metrics.get(key) if key else None

    handler = stderr_handler()
    logger = logging.getLogger("softras")
    if ranks.is_main:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    main = hydra.main(version_base=None, config_path=str(config_dir()), config_name=sub)(task)
    saved = sys.argv
    sys.argv = [f"softras {sub}"] + args
    code = 0
    try:
        main()
    except SystemExit as err:
        code = int(err.code or 0) if not isinstance(err.code, str) else 1
        if code == 0 and result.get("failed"):
            code = 1
    except KeyboardInterrupt:
        result["interrupted"] = True
    finally:
        sys.argv = saved
        logger.removeHandler(handler)
        distributed.barrier()  # no rank still touches the folder when rank 0 tidies it
        distributed.destroy_process_group()
    if ranks.is_main and setup.get("created") and "unused_dir" in result:
        _remove_if_unused(result["unused_dir"], Path(setup["top"]))
    if multirun and folder is not None and setup.get("created"):
        _remove_if_unused(folder, Path(setup["top"]))  # a sweep whose every job failed before it began
    if ranks.is_main:
        for err in result.get("errors", []):
            print(f"softras {sub}: error: {err}", file=sys.stderr)
    if result.get("failed"):
        return 1
    if result.get("interrupted"):
        if ranks.is_main:
            print(f"softras {sub}: interrupted; resume with: softras {sub} resume={folder}", file=sys.stderr)
        return 130  # the shell's code for Ctrl-C: the run did not complete
    if result.get("errors"):
        return 2
    return code


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
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    sys.exit(main())
