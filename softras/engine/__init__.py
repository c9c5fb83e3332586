"""The experiment engine under every subcommand: run folders, ranks, logging, checkpoints,
exact resume and the one training loop (see :mod:`softras.engine.loop`).

Layering: the CLI composes a config and calls :func:`launch` with a task's
:class:`TaskSpec`; tasks build an :class:`Experiment` from the library; the engine never
imports a task.
"""

from .checkpoint import CheckpointError, seed_everything
from .distributed import Ranks, shard
from .launch import first_line, launch, plain
from .loop import CHECKPOINT, Experiment, TaskSpec, UserError, run_experiment
from .run import RunContext
from .schema import (
    BaseConfig,
    CameraConfig,
    LoggerConfig,
    OptimConfig,
    PathsConfig,
    RendererConfig,
    SchedulerConfig,
    build_optimizer,
    build_schedule,
    raster_settings,
    register,
)

__all__ = [
    "CHECKPOINT",
    "BaseConfig",
    "CameraConfig",
    "CheckpointError",
    "Experiment",
    "LoggerConfig",
    "OptimConfig",
    "PathsConfig",
    "Ranks",
    "RendererConfig",
    "RunContext",
    "SchedulerConfig",
    "TaskSpec",
    "UserError",
    "build_optimizer",
    "build_schedule",
    "first_line",
    "launch",
    "plain",
    "raster_settings",
    "register",
    "run_experiment",
    "seed_everything",
    "shard",
]
