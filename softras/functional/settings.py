"""Settings of the soft rasterizer and the checks on them.

All options of :func:`softras.functional.soft_rasterize` travel together as one frozen
:class:`RasterSettings`, validated once when it is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DIST_FUNCS = ("hard", "barycentric", "euclidean")
AGGR_RGB = ("hard", "softmax")
AGGR_ALPHA = ("hard", "sum", "prod")
TEXTURE_TYPES = ("surface", "vertex")
BACKENDS = ("auto", "reference", "cpu", "cuda")

ImageSize = int | Sequence[int]


def _fail(arg: str, expected: str, got: object) -> ValueError:
    return ValueError(f"{arg}: expected {expected}, got {got!r}")


def _choice(arg: str, value: object, options: Sequence[str]) -> str:
    if value not in options:
        raise _fail(arg, "one of " + ", ".join(repr(o) for o in options), value)
    return value  # type: ignore[return-value]


def _real(arg: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numpy scalars and 0-d tensors
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _fail(arg, "a real number", value) from None
    value = float(value)
    if not math.isfinite(value):
        raise _fail(arg, "a finite number", value)
    return value


def image_size_hw(image_size: ImageSize) -> tuple[int, int]:
    """Returns ``(H, W)`` from an int or an ``(H, W)`` pair, checking both are positive."""
    if isinstance(image_size, bool):
        raise _fail("image_size", "a positive int or (H, W)", image_size)
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        try:
            size = tuple(int(s) for s in image_size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise _fail("image_size", "a positive int or (H, W)", image_size) from None
        if len(size) != 2:
            raise _fail("image_size", "a positive int or (H, W)", image_size)
    if size[0] <= 0 or size[1] <= 0:
        raise _fail("image_size", "positive sizes", image_size)
    return size  # type: ignore[return-value]


@dataclass(frozen=True)
class RasterSettings:
    """Every option of the soft rasterizer; see ``softras.functional.soft_rasterize``."""

    image_size: tuple[int, int] = (256, 256)  # (H, W)
    background_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
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

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "image_size", image_size_hw(self.image_size))
        try:
            bg = tuple(_real("background_color", c) for c in self.background_color)
        except TypeError:
            raise _fail("background_color", "3 numbers", self.background_color) from None
        if len(bg) != 3:
            raise _fail("background_color", "3 numbers", self.background_color)
        set_(self, "background_color", bg)
        for name in ("near", "far", "eps", "sigma_val", "dist_eps", "gamma_val"):
            set_(self, name, _real(name, getattr(self, name)))
        if self.sigma_val <= 0:
            raise _fail("sigma_val", "a value > 0", self.sigma_val)
        if self.gamma_val <= 0:
            raise _fail("gamma_val", "a value > 0", self.gamma_val)
        if not 0 < self.dist_eps < 0.5:
            raise _fail("dist_eps", "a value in (0, 0.5)", self.dist_eps)
        if self.near >= self.far:
            raise ValueError(f"near, far: expected near < far, got near={self.near!r}, far={self.far!r}")
        set_(self, "fill_back", bool(self.fill_back))
        _choice("dist_func", self.dist_func, DIST_FUNCS)
        _choice("aggr_func_rgb", self.aggr_func_rgb, AGGR_RGB)
        _choice("aggr_func_alpha", self.aggr_func_alpha, AGGR_ALPHA)
        _choice("texture_type", self.texture_type, TEXTURE_TYPES)

    @property
    def threshold(self) -> float:
        """T = sigma * ln(1/dist_eps - 1): outside a face, D <= dist_eps exactly when d^2 >= T."""
        return self.sigma_val * math.log(1.0 / self.dist_eps - 1.0)

    @property
    def grow(self) -> float:
        """How far (NDC) a face's bounding box is grown: sqrt(T), or 0 for the hard distance."""
        return 0.0 if self.dist_func == "hard" else math.sqrt(self.threshold)
