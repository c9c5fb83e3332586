"""Typed config groups shared by the subcommands (Hydra structured configs).

Each task declares its top-level config as a dataclass built from these groups and registers
it with :func:`register`; its YAML file lists that schema first in its defaults, so Hydra
checks every value's type while composing and a wrong type or an unknown key is one line
naming the key. Range checks that a type cannot state stay in the code that uses the value
(``RasterSettings``, ``Schedule``, the tasks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..functional.settings import RasterSettings


@dataclass
class RendererConfig:
    """Every raster option (the keys of ``RasterSettings``), the camera's field of view and
    the backend: the same keys in every subcommand."""

    image_size: Any = 64  # int or [H, W]
    background_color: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    near: float = 1.0
    far: float = 100.0
    fill_back: bool = True
    eps: float = 1e-3
    sigma_val: float = 1e-5
    dist_func: str = "euclidean"
    dist_eps: float = 1e-4
    gamma_val: float = 1e-4
    aggr_func_rgb: str = "softmax"
    aggr_func_alpha: str = "prod"
    texture_type: str = "surface"
    anti_aliasing: bool = False  # render at twice the size and average 2x2 pixels
    viewing_angle: float = 30.0  # half field of view, degrees
    backend: str = "auto"  # auto | reference | cpu | cuda


def raster_settings(r: Any, **changes: Any) -> RasterSettings:
    """The ``RasterSettings`` of a renderer config (errors name ``renderer.<key>``)."""
    names = {f.name for f in fields(RasterSettings)}
    values = {k: r[k] for k in names if k in r}
    size = values.get("image_size")
    if not isinstance(size, str) and hasattr(size, "__len__"):  # a list (ListConfig) -> (H, W); '64' is refused
        values["image_size"] = tuple(values["image_size"])
    if "background_color" in values:
        values["background_color"] = tuple(float(c) for c in values["background_color"])
    values.update(changes)
    try:
        return RasterSettings(**values)
    except (TypeError, ValueError) as err:
        message = str(err).strip().splitlines()[0]
        raise ValueError(message if message.startswith("renderer.") else f"renderer.{message}") from None


@dataclass
class LoggerConfig:
    """What goes to TensorBoard (tb/ in the run folder) and how often, in steps."""

    scalars_every: int = 10
    images_every: int = 100
    mesh_every: int = 500
    gif_every: int = 20


@dataclass
class OptimConfig:
    """An optimizer built by ``hydra.utils.instantiate`` (``_partial_``: the parameters come later)."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    fused: Any = None  # null: torch's default; true: one fused kernel per step (CPU and CUDA)


@dataclass
class SchedulerConfig:
    """A learning-rate factor per step (``softras.schedules.Schedule``)."""

    _target_: str = "softras.schedules.Schedule"
    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0
    begin: float = 0.0
    until: float = 1.0
    levels: int = 4


@dataclass
class CameraConfig:
    """A look_at camera: from (distance, elevation, azimuth) in degrees, or an explicit eye."""

    distance: float = 2.732
    elevation: float = 30.0
    azimuth: float = 0.0
    eye: Any = None  # [x, y, z]: overrides distance/elevation/azimuth
    at: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    up: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.0])


@dataclass
class PathsConfig:
    data_dir: str = "${softras.data:}"


@dataclass
class BaseConfig:
    """Keys every subcommand has."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:<k>
    resume: Any = None  # a run folder to continue (its own config is used)
    paths: PathsConfig = field(default_factory=PathsConfig)


def register(name: str, node: type) -> None:
    """Registers a task's top-level schema as ``<name>_schema`` in Hydra's ConfigStore (the
    command does it before composing; tasks themselves never import Hydra)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=f"{name}_schema", node=node)


def _instantiate(key: str, node: Any) -> Any:
    """``hydra.utils.instantiate(node)``; a failure is one line naming ``key``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except InstantiationException as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ValueError(f"{key}: {message}") from None


def build_optimizer(cfg_optim: Any, params: Any) -> Any:
    """The optimizer of an ``optim`` config (``_partial_``) over ``params`` (errors name ``optim``)."""
    betas = list(cfg_optim.get("betas", []) or [])
    if betas and (len(betas) != 2 or not all(0 <= b < 1 for b in betas)):
        raise ValueError(f"optim.betas: expected two numbers in [0, 1), got {betas}")
    if not float(cfg_optim.lr) > 0:
        raise ValueError(f"optim.lr: expected a number > 0, got {cfg_optim.lr}")
    factory = _instantiate("optim", cfg_optim)
    try:
        return factory(params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"optim: cannot build {cfg_optim.get('_target_')} ({str(err).strip()})") from None


def build_schedule(cfg_scheduler: Any, key: str = "scheduler") -> Any:
    """The ``softras.schedules.Schedule`` of a ``scheduler`` config (errors name ``key``)."""
    return _instantiate(key, cfg_scheduler)
