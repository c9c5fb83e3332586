"""Settings of the soft rasterizer and the checks on them.

All options of :func:`softras.functional.soft_rasterize` travel together as one frozen
:class:`RasterSettings`, validated once when it is built.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

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


MAX_IMAGE_SIDE = 16384  # pixels per side of one image, as the largest GPU framebuffers
_SIZE_EXPECTED = "a positive int or (H, W) pair of ints"


def _size_int(value: object, whole: object) -> int:
    """One side: an int, a numpy or 0-d torch integer, or an integral float (64.0)."""
    if isinstance(value, (bool, str, bytes)) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
        raise _fail("image_size", _SIZE_EXPECTED, whole)
    if getattr(value, "ndim", 0) != 0:  # arrays and tensors of more than one value
        raise _fail("image_size", _SIZE_EXPECTED, whole)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise _fail("image_size", _SIZE_EXPECTED, whole) from None
    if not math.isfinite(number) or number != int(number) or number <= 0:
        raise _fail("image_size", _SIZE_EXPECTED, whole)
    return int(number)


def _image_size(value: object) -> tuple[int, int]:
    """``(H, W)`` from an int or an ``(H, W)`` pair of ints (numpy and 0-d torch integers
    and integral floats count as ints), each side in [1, MAX_IMAGE_SIDE]; anything else
    (strings, bools, 64.7, 0, three sizes...) raises ValueError naming ``image_size``."""
    if isinstance(value, (str, bytes)) or value is None:
        raise _fail("image_size", _SIZE_EXPECTED, value)
    if getattr(value, "ndim", None) == 0 or not hasattr(value, "__len__"):
        size = (_size_int(value, value),) * 2
    else:
        try:
            items = list(value)  # type: ignore[call-overload]
        except TypeError:
            raise _fail("image_size", _SIZE_EXPECTED, value) from None
        if len(items) != 2:
            raise _fail("image_size", _SIZE_EXPECTED, value)
        size = (_size_int(items[0], value), _size_int(items[1], value))
    if max(size) > MAX_IMAGE_SIDE:
        raise _fail("image_size", f"sides of at most {MAX_IMAGE_SIDE} pixels", value)
    return size


def image_size_hw(image_size: ImageSize) -> tuple[int, int]:
    """Returns ``(H, W)`` from an int or an ``(H, W)`` pair of ints (see ``_image_size``)."""
    return _image_size(image_size)


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


def settings_from(options: Mapping[str, object]) -> RasterSettings:
    """The :class:`RasterSettings` of a mapping that holds every one of its fields (a SoftRas
    constructor's ``locals()``, say; other keys are ignored), checked once."""
    return RasterSettings(**{f.name: options[f.name] for f in fields(RasterSettings)})


REFERENCE_CHUNK_PAIRS = 1 << 20  # (pixel, face) pairs the reference evaluates at once


def raster_memory_bytes(settings: RasterSettings, batch: int, backend: str, dtype) -> int:
    """An estimate of the bytes one forward and backward pass allocates for ``batch`` images.

    Native backends (``cpu``, ``cuda``), per pixel: RGBA 4, its three aggregates for the
    backward pass 3, depth 1 and the incoming RGBA gradient 4 values of ``dtype``, plus an
    int64 face index. The reference, per pixel: RGBA 4 and depth 1 values three times
    (chunk results, their concatenation, the stacked batch), the pixel's coordinates 2 and
    the RGBA gradient 4, plus three int64 face indices; and one chunk of
    ``REFERENCE_CHUNK_PAIRS`` (pixel, face) pairs with about 32 temporaries each. Face data
    (proportional to F, not to the image) is left out.
    """
    H, W = settings.image_size
    item = dtype.itemsize
    pixels = int(batch) * H * W
    if backend == "reference":
        return pixels * (21 * item + 24) + REFERENCE_CHUNK_PAIRS * 32 * item
    return pixels * (12 * item + 8)


def available_memory_bytes(device_type: str = "cpu", device=None) -> int | None:
    """Memory free for new tensors: the GPU's free memory for ``cuda``, else the system's
    ``MemAvailable`` (Linux), else its physical memory; None when nothing says."""
    if device_type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_raster_memory(settings: RasterSettings, batch: int, backend: str, dtype, device=None) -> None:
    """Refuses (ValueError naming ``image_size``) a rasterization whose estimated memory
    (:func:`raster_memory_bytes`) exceeds what is available, before anything is allocated."""
    need = raster_memory_bytes(settings, batch, backend, dtype)
    if need < (1 << 30):  # below 1 GiB: never worth asking the system
        return
    have = available_memory_bytes("cuda" if backend == "cuda" else "cpu", device)
    if have is not None and need > have:
        H, W = settings.image_size
        raise ValueError(
            f"image_size: {H}x{W} for {batch} image{'s' if batch != 1 else ''} needs about {need / 1e9:.1f} GB "
            f"of memory on the {backend} backend, more than the {have / 1e9:.1f} GB available; "
            "use a smaller image_size or fewer images per call"
        )
