"""From a composed config to a finished run: ranks, device, seeds, the task's setup, the loop."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import distributed
from .checkpoint import CheckpointError, seed_everything
from .loop import TaskSpec, UserError, run_experiment
from .run import RunContext

log = logging.getLogger("softras")


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message (or its type's name)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def plain(cfg: Any) -> Any:
    """A config as plain dicts and lists (resolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def check_loop_keys(cfg: Any) -> None:
    """The keys every step loop shares, where a config has them: ``steps`` and
    ``checkpoint_every`` >= 0, every ``logger.*_every`` >= 1 (errors name the key)."""
    for key in ("steps", "checkpoint_every"):
        if key in cfg and cfg[key] < 0:
            raise ValueError(f"{key}: expected an integer >= 0, got {cfg[key]}")
    for key, value in (cfg.get("logger") or {}).items():
        if str(key).endswith("_every") and value < 1:
            raise ValueError(f"logger.{key}: expected an integer >= 1, got {value}")


def launch(spec: TaskSpec, cfg: Any, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Runs ``spec`` with ``cfg`` in ``run_dir`` (rank 0 writes it) and returns the metrics.

    Raises :class:`UserError` for a mistake found before the run started (nothing written);
    anything raised later propagates with its traceback (logged to run.log by the loop)."""
    ranks = distributed.ranks_from_env()
    if ranks.distributed and not spec.distributed:
        raise UserError(f"'{spec.name}' runs in one process; launch it without torchrun")
    try:
        device = distributed.resolve_device(str(cfg.device), ranks)
    except ValueError as err:
        raise UserError(first_line(err)) from None
    distributed.init_process_group(ranks, device)
    seed_everything(int(cfg.seed), ranks.rank)
    ctx = RunContext(spec.name, run_dir, plain(cfg), ranks, device)
    try:
        check_loop_keys(cfg)
        exp = spec.setup(cfg, ctx)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:
        raise UserError(first_line(err)) from None
    try:
        return run_experiment(spec, exp, ctx, resume=resume)
    except CheckpointError as err:  # raised before the run began
        raise UserError(first_line(err)) from None
